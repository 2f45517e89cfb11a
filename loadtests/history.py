"""The history: one row per operation a swarm made, Jepsen style.

Format: CSV with a header row, UTF-8, one operation per line, columns in the
order of ``COLUMNS``. ``pandas.read_csv("history.csv")`` reads it in one line.
Empty cells mean "not known" (a failed request has no value, no server pid).

| column | meaning |
| --- | --- |
| op_id | integer, unique within the history |
| client | who made the call (a Locust user, e.g. ``w0-u12``) |
| op | operation name: ``incr`` (increment and get) or ``read`` |
| outcome | ``ok``; ``fail``: certainly no effect (connection refused); ``info``: unknown |
| value | integer the server returned (``ok`` only) |
| invoke_ns, complete_ns | client's ``time.monotonic_ns()`` before sending, after the response |
| server_pid, server_tid | process and thread (or greenlet's thread) that answered |
| server_arrival_ns, server_departure_ns | server's ``time.monotonic_ns()`` on arrival, on leaving |
| url | base URL of the instance called (``cluster`` mode spreads over several) |
| burst | burst round number, empty for plain swarms |
| error | why a ``fail`` or ``info`` happened |
| status | the HTTP status code of the answer, empty when none came |

``time.monotonic_ns()`` is one system-wide clock on Linux, so client and server
times of processes on one machine are comparable.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "OUTCOMES", "HistoryWriter"]

COLUMNS = (
    "op_id",
    "client",
    "op",
    "outcome",
    "value",
    "invoke_ns",
    "complete_ns",
    "server_pid",
    "server_tid",
    "server_arrival_ns",
    "server_departure_ns",
    "url",
    "burst",
    "error",
    "status",
)
OUTCOMES = ("ok", "fail", "info")


class HistoryWriter:
    """Append history rows to a CSV file, buffered so that recording stays cheap.

    Args:
        path: the file to write; its header is written on open.
        flush_every: rows kept in memory between writes.
    """

    def __init__(self, path: Path | str, flush_every: int = 2048) -> None:
        self.path = Path(path)
        self._file = self.path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(COLUMNS)
        self._rows: list[tuple[Any, ...]] = []
        self._flush_every = flush_every
        self.count = 0

    def add(self, row: Mapping[str, Any]) -> None:
        """Queue one operation (a mapping with the keys of ``COLUMNS``; missing = empty)."""
        self._rows.append(tuple(row.get(c, "") for c in COLUMNS))
        self.count += 1
        if len(self._rows) >= self._flush_every:
            self.flush()

    def add_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def flush(self) -> None:
        if self._rows:
            self._writer.writerows(self._rows)
            self._rows.clear()
        self._file.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def to_csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """Render rows as history CSV text (for tests and small examples)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row.get(c, "") for c in COLUMNS])
    return out.getvalue()
