"""Read a history CSV into numpy columns, so that checkers run in linear time.

The format is ``loadtests.history``'s: a header row naming the columns, one
operation per line, empty cells for "not known". The columns ``op_id``,
``client``, ``op``, ``outcome``, ``value``, ``invoke_ns`` and ``complete_ns`` are
required; the server-side ones (``server_pid``, ``server_tid``,
``server_arrival_ns``, ``server_departure_ns``), ``url``, ``burst`` and ``error``
may be absent (a history from another tool), and are then read as empty.
Columns may come in any order; extra columns are ignored.

Text columns with few distinct values (client, op, url) are stored as integer
codes into a tuple of names. Integer columns that may be empty come with a
boolean ``*_known`` mask; their empty cells hold 0.

The file is read with pyarrow's CSV reader, typed column by column; a file it
refuses, or whose columns fail a check, is read again row by row with the csv
module, which finds the first bad line and says what is wrong with it. A file
that starts with Parquet's magic bytes (``write_parquet``'s output) is read as
Parquet, whatever its name. FIFOs and devices are refused before any read.

Anything the reader cannot trust raises ``MalformedHistory``, whose message
names the line (``row`` for Parquet and rows in memory) and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import itertools
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demo_server.errors import RacelabError
from loadtests.history import COLUMNS, OUTCOMES

__all__ = [
    "FAIL",
    "INFO",
    "OK",
    "REQUIRED_COLUMNS",
    "HistoryTable",
    "MalformedHistory",
    "find_history",
    "read_history",
    "to_arrow",
    "validate",
    "where_of",
    "write_parquet",
]

OK, FAIL, INFO = 0, 1, 2
_OUTCOME_CODE = {name: code for code, name in enumerate(OUTCOMES)}
assert _OUTCOME_CODE == {"ok": OK, "fail": FAIL, "info": INFO}

REQUIRED_COLUMNS = ("op_id", "client", "op", "outcome", "value", "invoke_ns", "complete_ns")
#: Integer columns that may be empty, each read with a ``*_known`` mask. ``status``
#: (the HTTP status code) is optional and may be absent from older histories.
_MASKED_INTS = ("value", "complete_ns", "server_pid", "server_tid",
                "server_arrival_ns", "server_departure_ns", "burst", "status")
_REQUIRED_INTS = ("op_id", "invoke_ns")
_TEXTS = ("client", "op", "url")
#: Every column the reader knows, in ``loadtests.history`` order (``status`` last).
KNOWN_COLUMNS = tuple(COLUMNS) + tuple(c for c in ("status",) if c not in COLUMNS)
_CHUNK_ROWS = 65_536
_PARQUET_MAGIC = b"PAR1"

IntArray = np.ndarray  # int64, one entry per operation
BoolArray = np.ndarray


class MalformedHistory(RacelabError):
    """A history file or row set that cannot be read as a history.

    Args:
        message: what is wrong, in plain words.
        where: ``"line 7"`` for a file, ``"row 7"`` for rows given in memory.
        column: the column at fault, when there is one.
    """

    def __init__(self, message: str, where: str = "", column: str | None = None) -> None:
        self.where = where
        self.column = column
        prefix = where
        if column is not None:
            prefix = f"{prefix}, column {column!r}" if prefix else f"column {column!r}"
        super().__init__(f"{prefix}: {message}" if prefix else message)


@dataclasses.dataclass(frozen=True, eq=False)
class HistoryTable:
    """A history as numpy columns, one entry per operation, in file order.

    Attributes:
        op_id: operation ids (int64).
        client, op, url: int32 codes into ``client_names``, ``op_names``, ``url_names``.
        outcome: int8 codes ``OK`` (0), ``FAIL`` (1), ``INFO`` (2).
        value: returned values (int64); ``value_known`` says which cells were not empty.
        invoke_ns, complete_ns: client times; an empty ``complete_ns`` (allowed for
            ``fail`` and ``info`` only) is False in ``complete_known``.
        server_pid, server_tid, arrival_ns, departure_ns, burst: int64 with ``*_known`` masks.
        error: the error text of each operation (object array of str).
        source: where the rows came from (a path, or ``"rows"``).
    """

    op_id: IntArray
    client: IntArray
    client_names: tuple[str, ...]
    op: IntArray
    op_names: tuple[str, ...]
    outcome: IntArray
    value: IntArray
    value_known: BoolArray
    invoke_ns: IntArray
    complete_ns: IntArray
    complete_known: BoolArray
    server_pid: IntArray
    server_pid_known: BoolArray
    server_tid: IntArray
    server_tid_known: BoolArray
    arrival_ns: IntArray
    arrival_known: BoolArray
    departure_ns: IntArray
    departure_known: BoolArray
    url: IntArray
    url_names: tuple[str, ...]
    burst: IntArray
    burst_known: BoolArray
    error: np.ndarray
    source: str = ""
    status: IntArray | None = None
    status_known: BoolArray | None = None

    def __post_init__(self) -> None:
        if self.status is None or self.status_known is None:  # a history without statuses
            object.__setattr__(self, "status", np.zeros(len(self), dtype=np.int64))
            object.__setattr__(self, "status_known", np.zeros(len(self), dtype=bool))

    def __len__(self) -> int:
        return int(self.op_id.shape[0])

    def op_is(self, name: str) -> BoolArray:
        """Boolean mask of the operations named ``name`` (all False if none is)."""
        if name not in self.op_names:
            return np.zeros(len(self), dtype=bool)
        return self.op == self.op_names.index(name)

    def to_rows(self) -> list[dict[str, Any]]:
        """The operations as dicts keyed like ``COLUMNS`` (empty cells ``""``); slow, for tests."""

        def masked(values: IntArray, known: BoolArray) -> list[int | str]:
            pairs = zip(values.tolist(), known.tolist(), strict=True)
            return [int(v) if k else "" for v, k in pairs]

        columns: dict[str, list[Any]] = {
            "op_id": self.op_id.tolist(),
            "client": [self.client_names[c] for c in self.client.tolist()],
            "op": [self.op_names[c] for c in self.op.tolist()],
            "outcome": [OUTCOMES[c] for c in self.outcome.tolist()],
            "value": masked(self.value, self.value_known),
            "invoke_ns": self.invoke_ns.tolist(),
            "complete_ns": masked(self.complete_ns, self.complete_known),
            "server_pid": masked(self.server_pid, self.server_pid_known),
            "server_tid": masked(self.server_tid, self.server_tid_known),
            "server_arrival_ns": masked(self.arrival_ns, self.arrival_known),
            "server_departure_ns": masked(self.departure_ns, self.departure_known),
            "url": [self.url_names[c] for c in self.url.tolist()],
            "burst": masked(self.burst, self.burst_known),
            "error": [str(e) for e in self.error.tolist()],
        }
        names = list(COLUMNS)
        assert self.status is not None and self.status_known is not None
        if self.status_known.any():
            columns["status"] = masked(self.status, self.status_known)
            names += [c for c in ("status",) if c not in names]
        elif "status" in names:
            columns["status"] = [""] * len(self)
        rows = zip(*(columns[c] for c in names), strict=True)
        return [dict(zip(names, values, strict=True)) for values in rows]

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> HistoryTable:
        """Build a table from mappings keyed like ``COLUMNS`` (missing or None = empty).

        Raises:
            MalformedHistory: as ``read_history`` does, naming the row (counted from 1).
        """
        cells = [
            ["" if row.get(c) is None else str(row.get(c)) for c in KNOWN_COLUMNS]
            for row in rows
        ]
        return _parse(iter([list(KNOWN_COLUMNS), *cells]), "rows", lambda i: f"row {i + 1}")


def read_history(path: Path | str) -> HistoryTable:
    """Read a history file: CSV, or Parquet (recognised by its magic bytes).

    Args:
        path: the file (CSV: UTF-8, with a header row; or ``write_parquet``'s output).

    Returns:
        The history's columns.

    Raises:
        MalformedHistory: the file cannot be read, is not a regular file, is
            empty, lacks a required column, has a line with the wrong number of
            fields, a non-numeric number or one beyond 64 bits, an unknown
            outcome, a repeated op_id, a completion before its invocation, or is
            not UTF-8.
    """
    path = Path(path)
    _refuse_special(path)
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise MalformedHistory(f"cannot open: {exc.strerror or exc}") from None
    if magic == _PARQUET_MAGIC:
        return _read_parquet(path)
    try:
        return _read_csv_columnar(path)
    except _Untrusted:
        pass  # read it again row by row: that path names the first bad line
    return _read_csv_rows(path)


def find_history(run_dir: Path | str) -> Path:
    """The history file of an experiment directory: ``history.parquet``, else ``history.csv``.

    Args:
        run_dir: an experiment's directory (or a history file, returned as it is).

    Returns:
        The path (``run_dir / "history.csv"`` when neither exists, for the caller's message).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return run_dir
    parquet = run_dir / "history.parquet"
    return parquet if parquet.is_file() else run_dir / "history.csv"


def where_of(table: HistoryTable, row: int) -> str:
    """Where row ``row`` (from 0) of a table came from, as messages name it.

    Returns:
        ``"line N"`` for a CSV file, ``"row N"`` (from 1) for Parquet or rows in memory.
    """
    path = Path(table.source)
    try:
        with path.open("rb") as handle:
            if handle.read(4) != _PARQUET_MAGIC:
                return f"line {_line_of_row(path, row)}"
    except (OSError, ValueError):
        pass
    return f"row {row + 1}"


def _refuse_special(path: Path) -> None:
    """Refuse FIFOs, devices and sockets: reading one could block for ever."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise MalformedHistory(f"cannot open: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise MalformedHistory("is a directory; give the history file (history.csv)")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode)
                or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
        raise MalformedHistory(f"not a regular file ({kind}); give a history file")


def _read_csv_rows(path: Path) -> HistoryTable:
    """The row-by-row reader: slower, and precise about the first bad line."""
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise MalformedHistory(f"cannot open: {exc.strerror or exc}") from None
    with handle:
        try:
            return _parse(csv.reader(handle), str(path), lambda i: f"line {_line_of_row(path, i)}")
        except UnicodeDecodeError:
            pass
        except csv.Error as exc:
            raise MalformedHistory(_csv_problem(exc), _csv_line(path, exc)) from None
    raise _encoding_error(path)


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return (f"a field longer than {csv.field_size_limit():,} characters; "
                "no history field is that long (a truncated or binary file?)")
    return f"not a CSV file: {text}"


def _csv_line(path: Path, exc: csv.Error) -> str:
    """The line the csv module stopped at (read again: its count is lost with the error)."""
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            for _ in reader:
                pass
        except csv.Error:
            return f"line {reader.line_num}"
    return ""  # pragma: no cover - the error did not repeat


# --- the columnar reader (pyarrow) --------------------------------------------------


class _Untrusted(Exception):
    """The columnar reader refused the file or a check failed: read it row by row."""


def _header(path: Path) -> list[str]:
    with path.open("rb") as handle:
        first = handle.readline(1 << 20)
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _Untrusted from None
    names = [h.strip() for h in next(csv.reader([line]), [])]
    if not any(names) or len(set(names)) != len(names) or '"' in line:
        raise _Untrusted
    if any(c not in names for c in REQUIRED_COLUMNS):
        raise _Untrusted
    return names


def _read_csv_columnar(path: Path) -> HistoryTable:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = _header(path)
    ints = [c for c in (*_REQUIRED_INTS, *_MASKED_INTS) if c in names]
    texts = [c for c in (*_TEXTS, "outcome", "error") if c in names]
    # Few distinct names: decoded straight into dictionary codes, block by block.
    coded = pa.dictionary(pa.int32(), pa.string())
    types = ({c: pa.int64() for c in ints} | {c: pa.string() for c in texts}
             | {c: coded for c in (*_TEXTS, "outcome") if c in names})
    try:
        arrow = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1,
                                           block_size=8 << 20),
            # A field can only span lines inside quotes; parsing is faster without them.
            parse_options=pacsv.ParseOptions(newlines_in_values=_has_quotes(path)),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=ints + texts, null_values=[""],
                strings_can_be_null=False, quoted_strings_can_be_null=True),
        )
    except (pa.ArrowException, OSError, ValueError):
        raise _Untrusted from None
    try:
        return _from_arrow(arrow, str(path), lambda i: f"line {_line_of_row(path, i)}")
    except MalformedHistory:
        raise _Untrusted from None


def _has_quotes(path: Path) -> bool:
    """Whether the file holds a double quote anywhere (a memory-mapped scan)."""
    import mmap

    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return False
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(b'"') != -1


def _read_parquet(path: Path) -> HistoryTable:
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
    return _from_arrow(arrow, str(path), lambda i: f"row {i + 1}")


def _from_arrow(arrow: Any, source: str, where: Callable[[int], str]) -> HistoryTable:
    """Convert a pyarrow table with history columns into a ``HistoryTable``."""
    import pyarrow as pa

    n = arrow.num_rows

    def column(name: str, kind: Any) -> Any:
        col = arrow.column(name)
        if col.type != kind:
            try:
                col = col.cast(kind)
            except (pa.ArrowException, ValueError):
                raise MalformedHistory(f"a {col.type} column; expected {kind}", "",
                                       name) from None
        return col

    def ints(name: str, required: bool) -> tuple[np.ndarray, np.ndarray]:
        if name not in arrow.column_names:
            return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
        values, known = _int64_arrays(column(name, pa.int64()), n)
        if required and not known.all():
            i = int(np.flatnonzero(~known)[0])
            raise MalformedHistory("empty; an integer is required", where(i), name)
        return values, known

    def codes(name: str) -> tuple[np.ndarray, tuple[str, ...]]:
        if name not in arrow.column_names:
            return np.zeros(n, dtype=np.int32), ("",) if n else ()
        if not n:
            return np.zeros(0, dtype=np.int32), ()
        col = arrow.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.unify_dictionaries()
            names = col.chunk(0).dictionary if col.num_chunks else pa.array([], pa.string())
            if col.null_count or not pa.types.is_string(names.type):
                col = column(name, pa.string())
            else:
                indices = pa.chunked_array([c.indices for c in col.chunks], pa.int32())
                return (np.asarray(indices, dtype=np.int32),
                        tuple(str(x) for x in names.to_pylist()))
        import pyarrow.compute as pc  # only for columns not already dictionary-coded

        col = column(name, pa.string())
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
    if "error" in arrow.column_names and n:
        error_col = column("error", pa.string())
        error = error_col.to_numpy(zero_copy_only=False).astype(object)
        if error_col.null_count:  # Parquet may hold nulls; CSV reads empty cells as ""
            error[np.fromiter(map(_is_none, error), bool, n)] = ""
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


def _is_none(value: object) -> bool:
    return value is None


def _int64_arrays(col: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """An int64 arrow column as (values, known), read from its buffers: no copy through
    floats (which would round beyond 2**53), and no pyarrow.compute import."""
    values = np.zeros(n, dtype=np.int64)
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


def write_parquet(csv_path: Path | str, parquet_path: Path | str | None = None) -> Path:
    """Convert a history CSV into Parquet (zstd), checked on the way like ``read_history``.

    Args:
        csv_path: the history CSV.
        parquet_path: where to write; by default beside it, as ``history.parquet``
            for ``history.csv`` (the suffix replaced).

    Returns:
        The Parquet file's path; ``read_history`` reads it by its magic bytes.

    Raises:
        MalformedHistory: the CSV is malformed (nothing is written then).
    """
    import pyarrow.parquet as pq

    csv_path = Path(csv_path)
    out = Path(parquet_path) if parquet_path is not None else csv_path.with_suffix(".parquet")
    table = read_history(csv_path)
    partial = out.with_name(out.name + ".partial")
    pq.write_table(to_arrow(table), partial, compression="zstd")
    partial.replace(out)
    return out


# --- parsing -------------------------------------------------------------------------


def _parse(reader: Iterator[list[str]], source: str, where: Callable[[int], str]) -> HistoryTable:
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise MalformedHistory(
            "empty file; expected a header row: " + ",".join(COLUMNS),
            "line 1" if source != "rows" else "",
        )
    names = [h.strip() for h in header]
    for column in REQUIRED_COLUMNS:
        if column not in names:
            raise MalformedHistory(
                f"missing column {column!r} in the header (found: {', '.join(names)})",
                "line 1" if source != "rows" else "",
                column,
            )
    builder = _Builder(names, where)
    base = 0
    collecting = gc.isenabled()
    gc.disable()  # millions of short-lived row lists, no cycles: collections only cost time
    try:
        while True:
            chunk = [row for row in itertools.islice(reader, _CHUNK_ROWS) if row]
            if not chunk:
                break
            builder.add(chunk, base)
            base += len(chunk)
    finally:
        if collecting:
            gc.enable()
    return builder.finish(source)


class _Builder:
    """Convert chunks of string rows into numpy column pieces, then join them."""

    def __init__(self, header: list[str], where: Callable[[int], str]) -> None:
        self.header = header
        self.width = len(header)
        self.index: dict[str, int] = {}
        for i, name in enumerate(header):
            self.index.setdefault(name, i)
        self.where = where
        self.pieces: dict[str, list[np.ndarray]] = {}
        self.codes: dict[str, dict[str, int]] = {"client": {}, "op": {}, "url": {}}

    def _put(self, name: str, array: np.ndarray) -> None:
        self.pieces.setdefault(name, []).append(array)

    def add(self, chunk: list[list[str]], base: int) -> None:
        lengths = np.fromiter(map(len, chunk), dtype=np.int64, count=len(chunk))
        wrong = np.flatnonzero(lengths != self.width)
        if wrong.size:
            i = int(wrong[0])
            got = int(lengths[i])
            hint = " (truncated line?)" if got < self.width else ""
            column = self.header[got] if got < self.width else None
            raise MalformedHistory(
                f"expected {self.width} fields, got {got}{hint}", self.where(base + i), column
            )
        columns = list(zip(*chunk, strict=True))
        empty: tuple[str, ...] = ("",) * len(chunk)

        def cells(name: str) -> Sequence[str]:
            return columns[self.index[name]] if name in self.index else empty

        for name in ("op_id", "invoke_ns"):
            values, _ = self._ints(cells(name), name, base, allow_empty=False)
            self._put(name, values)
        for name in _MASKED_INTS:
            values, known = self._ints(cells(name), name, base, allow_empty=True)
            self._put(name, values)
            self._put(name + "/known", known)
        for name in ("client", "op", "url"):
            self._put(name, self._categories(cells(name), name))
        self._put("outcome", self._outcomes(cells("outcome"), base))
        self._put("error", np.array(cells("error"), dtype=object))

    def _ints(
        self, cells: Sequence[str], name: str, base: int, allow_empty: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        count = len(cells)
        try:
            return np.fromiter(map(int, cells), np.int64, count), np.ones(count, dtype=bool)
        except (ValueError, OverflowError):
            pass
        known = np.fromiter(map(bool, cells), bool, count)
        if not allow_empty and not known.all():
            i = int(np.flatnonzero(~known)[0])
            raise MalformedHistory("empty; an integer is required", self.where(base + i), name)
        if not known.any():
            return np.zeros(count, dtype=np.int64), known
        try:
            return np.fromiter(map(int, [c or "0" for c in cells]), np.int64, count), known
        except (ValueError, OverflowError):
            for i, cell in enumerate(cells):
                if cell and not _is_int64(cell):
                    problem = ("integer out of the 64-bit range" if _is_int(cell)
                               else "not an integer")
                    raise MalformedHistory(
                        f"{problem}: {_shown(cell)}", self.where(base + i), name
                    ) from None
            raise  # pragma: no cover - numpy refused what Python accepts

    def _categories(self, cells: Sequence[str], name: str) -> np.ndarray:
        table = self.codes[name]
        for cell in dict.fromkeys(cells):
            table.setdefault(cell, len(table))
        return np.fromiter(map(table.__getitem__, cells), np.int32, len(cells))

    def _outcomes(self, cells: Sequence[str], base: int) -> np.ndarray:
        for cell in dict.fromkeys(cells):
            if cell not in _OUTCOME_CODE:
                raise MalformedHistory(
                    f"unknown outcome {cell!r}; expected one of: {', '.join(OUTCOMES)}",
                    self.where(base + list(cells).index(cell)),
                    "outcome",
                )
        return np.fromiter(map(_OUTCOME_CODE.__getitem__, cells), np.int8, len(cells))

    def _joined(self, name: str, dtype: Any) -> np.ndarray:
        parts = self.pieces.get(name)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    def finish(self, source: str) -> HistoryTable:
        def names(column: str) -> tuple[str, ...]:
            table = self.codes[column]
            return tuple(sorted(table, key=table.__getitem__))

        ints = {name: self._joined(name, np.int64) for name in (*_REQUIRED_INTS, *_MASKED_INTS)}
        known = {name: self._joined(name + "/known", bool) for name in _MASKED_INTS}
        outcome = self._joined("outcome", np.int8)
        table = HistoryTable(
            op_id=ints["op_id"],
            client=self._joined("client", np.int32),
            client_names=names("client"),
            op=self._joined("op", np.int32),
            op_names=names("op"),
            outcome=outcome,
            value=ints["value"],
            value_known=known["value"],
            invoke_ns=ints["invoke_ns"],
            complete_ns=ints["complete_ns"],
            complete_known=known["complete_ns"],
            server_pid=ints["server_pid"],
            server_pid_known=known["server_pid"],
            server_tid=ints["server_tid"],
            server_tid_known=known["server_tid"],
            arrival_ns=ints["server_arrival_ns"],
            arrival_known=known["server_arrival_ns"],
            departure_ns=ints["server_departure_ns"],
            departure_known=known["server_departure_ns"],
            url=self._joined("url", np.int32),
            url_names=names("url"),
            burst=ints["burst"],
            burst_known=known["burst"],
            error=self._joined("error", object),
            source=source,
            status=ints["status"],
            status_known=known["status"],
        )
        validate(table, self.where)
        return table


def validate(table: HistoryTable, where: Callable[[int], str]) -> None:
    """Checks across columns: ok rows complete, completions not before invocations,
    op_ids unique.

    Args:
        table: a history just read.
        where: names row ``i`` (from 0) for a message: ``"line 7"``, ``"row 7"``.

    Raises:
        MalformedHistory: at the first row that fails a check.
    """
    no_completion = np.flatnonzero((table.outcome == OK) & ~table.complete_known)
    if no_completion.size:
        raise MalformedHistory(
            "empty; an ok operation needs its completion time",
            where(int(no_completion[0])),
            "complete_ns",
        )
    backwards = np.flatnonzero(table.complete_known & (table.complete_ns < table.invoke_ns))
    if backwards.size:
        i = int(backwards[0])
        raise MalformedHistory(
            f"completed at {int(table.complete_ns[i])}, before it was invoked at "
            f"{int(table.invoke_ns[i])} (invoke_ns); the two times are swapped or "
            "from different clocks",
            where(i),
            "complete_ns",
        )
    if len(table) > 1 and not (table.op_id[1:] > table.op_id[:-1]).all():
        order = np.argsort(table.op_id, kind="stable")
        ids = table.op_id[order]
        repeats = np.flatnonzero(ids[1:] == ids[:-1])
        if repeats.size:
            # The later of the two rows, in file order, is the one at fault.
            pairs = np.stack([order[repeats], order[repeats + 1]], axis=1)
            first, second = (int(i) for i in pairs[np.argmin(pairs.max(axis=1))])
            first, second = min(first, second), max(first, second)
            raise MalformedHistory(
                f"op_id {int(table.op_id[second])} repeats the one on "
                f"{where(first)}",
                where(second),
                "op_id",
            )


def _is_int(cell: str) -> bool:
    try:
        int(cell)
    except ValueError:
        return False
    return True


def _shown(cell: str) -> str:
    """A cell as an error message quotes it: in full up to 40 characters."""
    return repr(cell) if len(cell) <= 40 else f"{cell[:20]!r}... ({len(cell):,} characters)"


def _is_int64(cell: str) -> bool:
    try:
        value = int(cell)
    except ValueError:
        return False
    return -(2**63) <= value < 2**63


def _line_of_row(path: Path, row: int) -> int:
    """The line number (from 1) where data row ``row`` (from 0) starts; only used for errors."""
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        start = reader.line_num + 1
        seen = 0
        for record in reader:
            if record:
                if seen == row:
                    return start
                seen += 1
            start = reader.line_num + 1
    return start


def _encoding_error(path: Path) -> MalformedHistory:
    data = path.read_bytes()
    header = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff")
    names = [h.strip() for h in next(csv.reader([header]), [])]
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            field = line[: exc.start].count(b",")
            column = names[field] if field < len(names) else None
            return MalformedHistory(
                f"not UTF-8 (byte 0x{line[exc.start]:02x} at character {exc.start + 1}); "
                "save the history as UTF-8",
                f"line {number}",
                column,
            )
    return MalformedHistory("not UTF-8; save the history as UTF-8")  # pragma: no cover
