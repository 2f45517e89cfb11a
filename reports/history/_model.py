"""The history in memory: ``HistoryTable``, its numpy columns, and the row parser.

``reports.history.table`` reads files into it (see there for the format and
the checks); ``_arrow`` is the fast pyarrow path to the same table.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demo_server.basics.errors import RacelabError
from reports.history.columns import COLUMNS, OUTCOMES

__all__ = [
    "FAIL",
    "INFO",
    "KNOWN_COLUMNS",
    "OK",
    "OUTCOMES",
    "REQUIRED_COLUMNS",
    "HistoryTable",
    "MalformedHistory",
    "validate",
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
