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
import os
import stat
from collections.abc import Collection
from pathlib import Path

from reports.history._arrow import Untrusted, read_csv_columnar, read_parquet, to_arrow
from reports.history._model import (
    _PARQUET_MAGIC,
    FAIL,
    INFO,
    KNOWN_COLUMNS,
    OK,
    REQUIRED_COLUMNS,
    HistoryTable,
    MalformedHistory,
    _encoding_error,
    _line_of_row,
    _parse,
    validate,
)

__all__ = [
    "FAIL",
    "INFO",
    "KNOWN_COLUMNS",
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


def read_history(path: Path | str, columns: Collection[str] | None = None) -> HistoryTable:
    """Read a history file: CSV, or Parquet (recognised by its magic bytes).

    Args:
        path: the file (CSV: UTF-8, with a header row; or ``write_parquet``'s output).
        columns: the columns a caller reads (``reports.history.checkers.columns_for``); every
            other column is still read and checked, then left out of the table
            (zeros, not known; empty error texts), which saves its memory. The
            columns the reader's own checks need (``op_id``, ``outcome``,
            ``invoke_ns``, ``complete_ns``) are always kept. None keeps every column.

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
            magic = handle.read(6)
    except OSError as exc:
        raise MalformedHistory(f"cannot open: {exc.strerror or exc}") from None
    _refuse_compressed(magic)
    magic = magic[:4]
    if magic == _PARQUET_MAGIC:
        return read_parquet(path, columns)
    try:
        return read_csv_columnar(path, columns)
    except Untrusted:
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


#: The first bytes of compressed files, and the command that undoes each.
_COMPRESSED = ((b"\x1f\x8b", "gzip", "gunzip"), (b"BZh", "bzip2", "bunzip2"),
               (b"\xfd7zXZ\x00", "xz", "unxz"), (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
               (b"PK\x03\x04", "zip", "unzip"))


def _refuse_compressed(head: bytes) -> None:
    """Refuse a compressed file by its magic bytes, naming the tool that opens it."""
    for magic, kind, tool in _COMPRESSED:
        if head.startswith(magic):
            raise MalformedHistory(f"a {kind}-compressed file; decompress it first "
                                   f"({tool}) and check the history inside")


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
    import pyarrow.parquet as pq  # pyarrow costs a CSV-only check its import time

    csv_path = Path(csv_path)
    out = Path(parquet_path) if parquet_path is not None else csv_path.with_suffix(".parquet")
    table = read_history(csv_path)
    partial = out.with_name(out.name + ".partial")
    pq.write_table(to_arrow(table), partial, compression="zstd")
    partial.replace(out)
    return out


