"""Write the history a swarm records (the format: ``reports.history.columns``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from demo_server.basics.files import open_new
from reports.history.columns import COLUMNS

__all__ = ["COLUMNS", "HistoryWriter"]


class HistoryWriter:
    """Append history rows to a CSV file, buffered so that recording stays cheap.

    Args:
        path: the file to write; its header is written on open.
        flush_every: rows kept in memory between writes.
    """

    def __init__(self, path: Path | str, flush_every: int = 2048) -> None:
        self.path = Path(path)
        self._file = open_new(self.path, newline="")
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
