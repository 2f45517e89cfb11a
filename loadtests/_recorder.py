"""The recorder: a listener on one Locust process's events that writes its history.

While the load runs, a swarm user only appends each operation to
``Recorder.held`` as it came back (times, connection, status, head and body;
about 500 bytes). ``settle`` turns held operations into history rows:
it reads the value (``scenarios.operation.read_value``), the server's facts
(response headers, else the JSON body), and maps the status to an outcome.
That happens every quarter of a second (``persist``, called by the process's
progress loop, which reports only rows already in the file), when the test
stops, or 8,192 at a time once ``hold`` operations are held. What ``persist``
wrote is in the file, where it outlives a load generator killed outright
(SIGKILL): the runner merges it. An answer that turns out unusable is counted
as a Locust failure, before Locust reports its final statistics, so the
history and Locust's counts agree.

Held entries are tuples ``(connection, operation index, invoke ns, complete
ns, status, head, body, burst)``; for an operation without an answer, status
is the outcome (``"fail"`` or ``"info"``), head None and body the error.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from demo_server.basics.files import write_text
from loadtests._config import HOLD
from loadtests.framing import header_value
from loadtests.history import COLUMNS, HistoryWriter
from scenarios.operation import SERVER_HEADERS, read_value

__all__ = [
    "BURST_COLUMNS", "OpError", "Recorder", "RowWriter", "csv_field", "ok_line", "snippet",
    "status_error",
]

BURST_COLUMNS = ("round", "process", "requests", "first_sent_ns", "last_sent_ns")
SETTLE_ROWS = 8192  # written at a time once the hold is full: short pauses, not one long
_FACTS = ("pid", "tid", "arrival_ns", "departure_ns")
_HEADER_KEYS = tuple(SERVER_HEADERS[f] for f in _FACTS)
_ROW_ORDER = (  # rows are built positionally, in this order
    "op_id", "client", "op", "outcome", "value", "invoke_ns", "complete_ns", "server_pid",
    "server_tid", "server_arrival_ns", "server_departure_ns", "url", "burst", "error", "status",
)
#: histories written before the ``status`` column existed lack it (readers accept both)
_STATUS = COLUMNS[-1:] == ("status",)
_STATUS_CELL = ("",) if _STATUS else ()
if _ROW_ORDER[:len(COLUMNS)] != COLUMNS:
    raise ImportError("loadtests.history.COLUMNS changed: update the rows built here")


class OpError(Exception):
    """Why an operation is ``fail`` or ``info``; Locust counts it as a failure."""


class RowWriter(HistoryWriter):
    """A ``HistoryWriter`` fed with ready-made rows, in file order.

    Building a mapping per operation and reading it back column by column
    costs more than the rest of recording. Rows arrive as tuples in
    ``COLUMNS`` order (``append``), or, for the common successful call, as a
    line already formatted from a per-connection template (``append_line``)
    whose text fields were quoted by the csv module once.
    """

    def __init__(self, path: Path | str, flush_every: int = 2048) -> None:
        super().__init__(path, flush_every)
        self._buffer = io.StringIO()
        self._lines = csv.writer(self._buffer, lineterminator="\n")
        self._queued = 0

    def append(self, row: tuple[Any, ...]) -> None:
        """Queue one row whose fields are in ``COLUMNS`` order."""
        self._lines.writerow(row)
        self._queued_one()

    def append_line(self, line: str) -> None:
        """Queue one row already rendered as a CSV line (ending in a newline)."""
        self._buffer.write(line)
        self._queued_one()

    def _queued_one(self) -> None:
        self.count += 1
        self._queued += 1
        if self._queued >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        if self._queued:
            self._file.write(self._buffer.getvalue())
            self._buffer.seek(0)
            self._buffer.truncate()
            self._queued = 0
        super().flush()


def csv_field(text: str) -> str:
    """``text`` as the csv module writes it in a history row."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([text])
    return out.getvalue()


def snippet(body: bytes) -> str:
    text = body[:60].decode("utf-8", "replace").replace("\n", " ").replace("\r", " ")
    return text + ("..." if len(body) > 60 else "")


def ok_line(client: str, op: str, url: str) -> str:
    """The %-template of a successful row of ``op`` by ``client`` to ``url``.

    Placeholders: op_id, value, invoke, complete, pid, tid, arrival, departure
    (all ``%d``), burst (``%s``), status (``%d``).
    """
    def quoted(text: str) -> str:
        return csv_field(text).replace("%", "%%")

    status = ",%d" if _STATUS else "%.0s"
    return f"%d,{quoted(client)},{quoted(op)},ok,%d,%d,%d,%d,%d,%d,%d,{quoted(url)},%s,{status}\n"


class Recorder:
    """Holds one process's operations and writes them to ``history-<n>.csv``.

    Registered on the environment's ``test_stop`` and ``quitting`` events: at
    the stop every held operation is written and the file closed (listeners
    registered after it find the file complete).

    Args:
        environment: the Locust environment.
    """

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.writer: RowWriter | None = None
        self.held: list[tuple[Any, ...]] = []
        self.hold = HOLD
        self.path: Path | None = None
        self.rows = 0  # written, once closed
        environment.events.test_stop.add_listener(self.on_test_stop)
        environment.events.quitting.add_listener(self.on_quitting)

    @property
    def recording(self) -> bool:
        return self.writer is not None

    def open(self, path: Path, hold: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = RowWriter(path, flush_every=4096)
        self.path = path
        self.held = []
        self.hold = max(1, hold)

    def persist(self) -> int:
        """Write every held operation and hand the file its rows; the rows written so far.

        Rows handed to the file survive this process being killed outright: the
        runner merges them (``loadtests.runner``).
        """
        writer = self.writer
        if writer is None:
            return self.rows
        self.settle(len(self.held))
        writer.flush()
        return writer.count

    def add(self, entry: tuple[Any, ...]) -> None:
        """Hold one operation (see the module docstring); write the oldest past the hold."""
        held = self.held
        held.append(entry)
        if len(held) >= self.hold:
            self.settle(min(SETTLE_ROWS, self.hold))

    def close(self) -> int:
        """Write everything held and close the file; the number of rows written."""
        writer = self.writer
        if writer is None:
            return 0
        self.settle(len(self.held))
        self.writer = None
        writer.close()
        self.rows = writer.count
        return writer.count

    def on_test_stop(self, **_kw: Any) -> None:
        self.close()  # before the final statistics: unusable answers count as failures

    def on_quitting(self, **_kw: Any) -> None:
        self.close()

    def settle(self, count: int) -> None:
        """Write the oldest ``count`` held operations to the history, in completion order."""
        writer = self.writer
        if writer is None or not self.held:
            return
        batch = self.held[:count]
        del self.held[:count]
        log_error = self.environment.stats.log_error
        append, append_line = writer.append, writer.append_line
        for conn, index, invoke, complete, status, head, body, burst in batch:
            op = conn.operations[index]
            burst_field = "" if burst is None else burst
            if head is None:  # no answer: status is the outcome, body the error
                append((writer.count, conn.client.id, op.name, status, "", invoke, complete,
                        "", "", "", "", conn.url, burst_field, body, *_STATUS_CELL))
                continue
            outcome = op.outcome(status)
            value: Any = ""
            data: Any = None
            error = ""
            if outcome == "ok":
                try:
                    found, data = read_value(op.value, body)
                except ValueError as exc:
                    outcome, error = "info", str(exc)
                    log_error(op.method, op.path, OpError(error))
                else:
                    value = "" if found is None else found
            else:
                error = status_error(status, head, body)
            pid, tid, arrival, departure = _facts(head, body, data)
            if (outcome == "ok" and type(value) is type(pid) is type(tid) is type(arrival)
                    is type(departure) is int):
                append_line(conn.lines[index] % (writer.count, value, invoke, complete, pid,
                                                 tid, arrival, departure, burst_field, status))
            else:  # odd types, or not ok: let the csv module render (and quote) them
                append((writer.count, conn.client.id, op.name, outcome, value, invoke,
                        complete, pid, tid, arrival, departure, conn.url, burst_field, error,
                        *((status,) if _STATUS else ())))

    def write_bursts(self, sent: dict[int, list[int]], process: int) -> Path | None:
        """Write ``bursts-<process>.csv`` beside the history; its path (None without rounds)."""
        if not sent or self.path is None:
            return None
        path = self.path.parent / f"bursts-{process}.csv"
        lines = [",".join(BURST_COLUMNS)]
        for burst in sorted(sent):
            count, first, last = sent[burst]
            lines.append(f"{burst},{process},{count},{first},{last}")
        write_text(path, "\n".join(lines) + "\n")
        return path


def status_error(status: int, head: bytes, body: bytes) -> str:
    """The error of an answer whose status is not ``ok`` (a redirect names its target)."""
    if 300 <= status < 400:
        location = header_value(head, "location")
        where = "" if location is None else location.decode("latin-1")[:200]
        return f"HTTP {status}: redirect to {where or '(no Location)'} not followed"
    return f"HTTP {status}: {snippet(body)}"


def _facts(head: bytes, body: bytes, data: Any) -> tuple[Any, Any, Any, Any]:
    """The server's pid, tid, arrival and departure: from headers, else the JSON body."""
    if b"\r\nx-racelab-" in head.lower():
        values = []
        for key in _HEADER_KEYS:
            raw = header_value(head, key)
            values.append("" if raw is None else
                          int(raw) if raw.isdigit() else raw.decode("latin-1"))
        return values[0], values[1], values[2], values[3]
    if data is None and body[:1] == b"{":
        try:
            data = json.loads(body)
        except ValueError:
            data = None
    if type(data) is dict:
        get = data.get
        return get("pid", ""), get("tid", ""), get("arrival_ns", ""), get("departure_ns", "")
    return "", "", "", ""
