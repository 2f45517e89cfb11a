"""The columnar reader and writer of histories: pyarrow's CSV reader, Parquet, Arrow tables.

``reports.history.table.read_history`` tries this fast path first; anything it
cannot trust (``Untrusted``) is read again row by row, the path that names the
first bad line, so every malformed-history message stays the row reader's.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from reports.history._model import (
    _MASKED_INTS,
    _OUTCOME_CODE,
    _REQUIRED_INTS,
    _TEXTS,
    OUTCOMES,
    REQUIRED_COLUMNS,
    HistoryTable,
    MalformedHistory,
    _line_of_row,
    validate,
)

__all__ = ["Untrusted", "read_csv_columnar", "read_parquet", "to_arrow"]


# --- the columnar reader (pyarrow) --------------------------------------------------


class Untrusted(Exception):
    """The columnar reader refused the file or a check failed: read it row by row."""


def _header(path: Path) -> list[str]:
    with path.open("rb") as handle:
        first = handle.readline(1 << 20)
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Untrusted from None
    names = [h.strip() for h in next(csv.reader([line]), [])]
    if not any(names) or len(set(names)) != len(names) or '"' in line:
        raise Untrusted
    if any(c not in names for c in REQUIRED_COLUMNS):
        raise Untrusted
    return names


def read_csv_columnar(path: Path, keep: Collection[str] | None = None) -> HistoryTable:
    """Read a history CSV with pyarrow; ``keep``: as ``read_history``'s ``columns``.

    Raises:
        Untrusted: the reader refused the file, or a check failed.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = _header(path)
    ints = [c for c in (*_REQUIRED_INTS, *_MASKED_INTS) if c in names]
    texts = [c for c in (*_TEXTS, "outcome", "error") if c in names]
    # Few distinct names: decoded straight into dictionary codes, block by block.
    coded = pa.dictionary(pa.int32(), pa.string())
    types = ({c: pa.int64() for c in ints} | {c: pa.string() for c in texts}
             | {c: coded for c in (*_TEXTS, "outcome", "error") if c in names})
    try:
        arrow = pacsv.read_csv(
            path,
            # Buffers freed column by column go back to the C allocator, where numpy
            # reuses them: the peak is the file's columns once, not twice.
            memory_pool=pa.system_memory_pool(),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1,
                                           block_size=8 << 20),
            # A field can only span lines inside quotes; parsing is faster without them.
            parse_options=pacsv.ParseOptions(newlines_in_values=_has_quotes(path)),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=ints + texts, null_values=[""],
                strings_can_be_null=False, quoted_strings_can_be_null=True),
        )
    except (pa.ArrowException, OSError, ValueError):
        raise Untrusted from None
    if _longest_text(arrow) > csv.field_size_limit():
        raise Untrusted  # the row reader refuses it, naming the line
    columns = _Columns(arrow, keep)
    del arrow
    try:
        return _from_arrow(columns, str(path), lambda i: f"line {_line_of_row(path, i)}")
    except MalformedHistory:
        raise Untrusted from None
    finally:
        del columns
        _trim_heap()


def _longest_text(arrow: Any) -> int:
    """The most characters in one text field (dictionary columns: their few names)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    longest = 0
    for column in arrow.columns:
        for chunk in column.chunks:
            if pa.types.is_dictionary(chunk.type):
                chunk = chunk.dictionary
            if (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)) and len(
                    chunk):
                longest = max(longest, pc.max(pc.utf8_length(chunk)).as_py() or 0)
    return longest


def _trim_heap() -> None:
    """Hand the reader's freed buffers back to the system (glibc keeps them otherwise, in
    the arenas of the reader's threads, where numpy cannot reuse them)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None on a C library without it."""
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def _has_quotes(path: Path) -> bool:
    """Whether the file holds a double quote anywhere (a memory-mapped scan)."""
    import mmap

    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return False
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(b'"') != -1


def read_parquet(path: Path, keep: Collection[str] | None = None) -> HistoryTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise MalformedHistory(f"not a readable Parquet file: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in arrow.column_names]
    if missing:
        raise MalformedHistory(
            f"missing column {missing[0]!r} (found: {', '.join(arrow.column_names)})",
            "", missing[0])
    columns = _Columns(arrow, keep)
    del arrow
    return _from_arrow(columns, str(path), lambda i: f"row {i + 1}")


class _Columns:
    """A pyarrow table's columns, each handed out once (``pop``) and then released;
    ``keep``: the columns converted (None: all), the others only checked."""

    def __init__(self, arrow: Any, keep: Collection[str] | None = None) -> None:
        self.num_rows = int(arrow.num_rows)
        self.column_names = list(arrow.column_names)
        self._left = dict(zip(self.column_names, arrow.columns, strict=True))
        self._keep = None if keep is None else {*keep, *_REQUIRED_INTS, "outcome", "complete_ns"}

    def kept(self, name: str) -> bool:
        return self._keep is None or name in self._keep

    def pop(self, name: str) -> Any:
        _trim_heap()  # the column converted before this one is gone: return its memory
        return self._left.pop(name)


def _from_arrow(arrow: _Columns, source: str, where: Callable[[int], str]) -> HistoryTable:
    """Convert a pyarrow table's history columns into a ``HistoryTable``, releasing each
    arrow column once it is converted."""
    import pyarrow as pa

    n = arrow.num_rows

    def column(name: str, kind: Any, col: Any = None) -> Any:
        col = arrow.pop(name) if col is None else col
        if col.type != kind:
            try:
                col = col.cast(kind)
            except (pa.ArrowException, ValueError):
                raise MalformedHistory(f"a {col.type} column; expected {kind}", "",
                                       name) from None
        return col

    def ints(name: str, required: bool) -> tuple[np.ndarray, np.ndarray]:
        if name not in arrow.column_names or not arrow.kept(name):
            if name in arrow.column_names:
                column(name, pa.int64())  # its type checked, its values left out
            return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
        values, known = _int64_arrays(column(name, pa.int64()), n)
        if required and not known.all():
            i = int(np.flatnonzero(~known)[0])
            raise MalformedHistory("empty; an integer is required", where(i), name)
        return values, known

    def codes(name: str) -> tuple[np.ndarray, tuple[str, ...]]:
        if name not in arrow.column_names or not arrow.kept(name):
            if name in arrow.column_names:
                arrow.pop(name)  # any text will do: nothing to check
            return np.zeros(n, dtype=np.int32), ("",) if n else ()
        if not n:
            return np.zeros(0, dtype=np.int32), ()
        col = arrow.pop(name)
        if pa.types.is_dictionary(col.type):
            col = col.unify_dictionaries()
            names = col.chunk(0).dictionary if col.num_chunks else pa.array([], pa.string())
            if col.null_count or not pa.types.is_string(names.type):
                col = column(name, pa.string(), col)
            else:
                indices = pa.chunked_array([c.indices for c in col.chunks], pa.int32())
                return (np.asarray(indices, dtype=np.int32),
                        tuple(str(x) for x in names.to_pylist()))
        import pyarrow.compute as pc  # only for columns not already dictionary-coded

        col = column(name, pa.string(), col)
        if col.null_count:
            col = pc.fill_null(col, "")
        encoded = col.dictionary_encode().combine_chunks()
        return (np.asarray(encoded.indices, dtype=np.int32),
                tuple(encoded.dictionary.to_pylist()))

    values = {name: ints(name, True)[0] for name in _REQUIRED_INTS}
    masked = {name: ints(name, False) for name in _MASKED_INTS}
    client, client_names = codes("client")
    op, op_names = codes("op")
    url, url_names = codes("url")
    outcome_codes, outcome_names = codes("outcome")
    for i, name in enumerate(outcome_names):
        if name not in _OUTCOME_CODE:
            row = int(np.flatnonzero(outcome_codes == i)[0])
            raise MalformedHistory(
                f"unknown outcome {name!r}; expected one of: {', '.join(OUTCOMES)}",
                where(row), "outcome")
    lookup = np.array([_OUTCOME_CODE[name] for name in outcome_names] or [0], dtype=np.int8)
    if "error" in arrow.column_names and not arrow.kept("error"):
        arrow.pop("error")
        error = np.broadcast_to(np.array([""], dtype=object), (n,))  # read-only, no memory
    elif "error" in arrow.column_names and n:
        # Few distinct messages: one str object each, shared by the rows that hold it.
        error_codes, error_names = codes("error")
        error = np.array([*error_names, ""], dtype=object)[error_codes]
    else:
        error = np.full(n, "", dtype=object)
    table = HistoryTable(
        op_id=values["op_id"], client=client, client_names=client_names, op=op,
        op_names=op_names, outcome=lookup[outcome_codes],
        value=masked["value"][0], value_known=masked["value"][1],
        invoke_ns=values["invoke_ns"],
        complete_ns=masked["complete_ns"][0], complete_known=masked["complete_ns"][1],
        server_pid=masked["server_pid"][0], server_pid_known=masked["server_pid"][1],
        server_tid=masked["server_tid"][0], server_tid_known=masked["server_tid"][1],
        arrival_ns=masked["server_arrival_ns"][0], arrival_known=masked["server_arrival_ns"][1],
        departure_ns=masked["server_departure_ns"][0],
        departure_known=masked["server_departure_ns"][1],
        url=url, url_names=url_names,
        burst=masked["burst"][0], burst_known=masked["burst"][1],
        error=error, source=source,
        status=masked["status"][0], status_known=masked["status"][1],
    )
    validate(table, where)
    return table


def _int64_arrays(col: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """An int64 arrow column as (values, known), read from its buffers: no copy through
    floats (which would round beyond 2**53), and no pyarrow.compute import."""
    values = np.zeros(n, dtype=np.int64)
    if col.null_count == n:  # an empty column (burst, in a plain swarm): nothing to copy
        return values, np.zeros(n, dtype=bool)
    known = np.ones(n, dtype=bool)
    at = 0
    for chunk in col.chunks:
        size, offset = len(chunk), chunk.offset
        validity, data = chunk.buffers()[:2]
        if data is not None and size:
            values[at:at + size] = np.frombuffer(data, dtype=np.int64,
                                                 count=offset + size)[offset:]
        if chunk.null_count:
            bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8),
                                 bitorder="little")[offset:offset + size]
            known[at:at + size] = bits.astype(bool)
            values[at:at + size][~known[at:at + size]] = 0
        at += size
    return values, known


def to_arrow(table: HistoryTable) -> Any:
    """The history as a ``pyarrow.Table``: int64 columns (null where not known), strings.

    Args:
        table: a history.

    Returns:
        A ``pyarrow.Table`` with the columns of ``loadtests.history`` (and ``status``).
    """
    import pyarrow as pa

    def masked(values: np.ndarray, known: np.ndarray) -> Any:
        return pa.array(values, type=pa.int64(), mask=~known)

    def named(codes: np.ndarray, names: tuple[str, ...]) -> Any:
        dictionary = pa.array(list(names) or [""], type=pa.string())
        return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), dictionary)

    assert table.status is not None and table.status_known is not None
    columns = {
        "op_id": pa.array(table.op_id, type=pa.int64()),
        "client": named(table.client, table.client_names),
        "op": named(table.op, table.op_names),
        "outcome": named(table.outcome.astype(np.int32), OUTCOMES),
        "value": masked(table.value, table.value_known),
        "invoke_ns": pa.array(table.invoke_ns, type=pa.int64()),
        "complete_ns": masked(table.complete_ns, table.complete_known),
        "server_pid": masked(table.server_pid, table.server_pid_known),
        "server_tid": masked(table.server_tid, table.server_tid_known),
        "server_arrival_ns": masked(table.arrival_ns, table.arrival_known),
        "server_departure_ns": masked(table.departure_ns, table.departure_known),
        "url": named(table.url, table.url_names),
        "burst": masked(table.burst, table.burst_known),
        "error": pa.array(table.error.tolist(), type=pa.string()),
        "status": masked(table.status, table.status_known),
    }
    return pa.table(columns)
