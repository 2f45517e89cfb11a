"""racelab's Locust swarm: every ``/incr`` call becomes one history row.

Only ever imported inside a Locust process (``python -m locust -f
loadtests/locustfile.py``): Locust and gevent patch the standard library on
import, so the orchestrator runs this file in its own process and reads back
files (see ``loadtests.runner``).

Two user classes:

- ``IncrUser``: a plain swarm; each user calls ``/incr`` as fast as it can.
- ``BurstUser``: users meet at a rendezvous and are released together, round
  after round. Across processes a round is released at a shared deadline
  (``t0 + round * interval``, from a start time the master hands out).

Each user keeps one pre-connected keep-alive socket per instance URL and sends
a pre-built request with one ``send``; the response is framed by hand
(``Content-Length``, chunked, or until close: see ``_read_response``), which
costs a fraction of a general HTTP client's parser. That keeps the time from
release to "request fully sent" at a few microseconds per user, leaves the
cores to the server under test, and tells apart what certainly had no effect
(``fail``: nothing was sent) from what is unknown (``info``: sent, but no
usable answer).

The per-request path is kept lean because on a small machine every
microsecond the swarm spends is taken from the server it measures: no HTTP
client objects, no gevent timeout per wait (``_watchdog`` ends requests that
outlive ``--racelab-timeout``), Locust's statistics logged directly rather
than through its ``request`` event, and no JSON decoding or row formatting
while the load runs: an operation is held in memory as it came back (times,
connection, raw body) and written out when the test stops, or in chunks once
``--racelab-hold`` are held (``_settle``), the way Jepsen keeps its history in
memory. A body that turns out not to be a usable answer is then counted as a
Locust failure, before the final statistics are reported, so the history and
Locust's counts still agree.

Configuration comes from ``--racelab-*`` options (or ``RACELAB_SWARM_*``
environment variables) on the master or local process; Locust hands them to
its workers with every spawn message. The request budget is shared: a local
process owns it, workers lease it from the master in chunks. Workers send
their history files to the master in chunks when the test stops, so remote
workers need no shared disk.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.event
from gevent.socket import wait as _wait_for
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser
from locust.runners import LocalRunner, MasterRunner, WorkerRunner
from locust.user.task import LOCUST_STATE_STOPPING

from loadtests.history import COLUMNS, HistoryWriter

__all__ = ["BurstUser", "IncrUser"]

BURST_COLUMNS = ("round", "process", "requests", "first_sent_ns", "last_sent_ns")
_CHUNK_BYTES = 1 << 20
_PROGRESS_EVERY = 0.25
_SPIN_NS = 1_500_000  # busy-wait the last 1.5 ms before a burst deadline
_IDLE_NS = 1_000_000_000  # reconnect before using a connection idle this long
_START_WAIT_S = 10.0  # plain users wait at most this long for every user to spawn
_RECV_BYTES = 65536
_HOLD = 100_000  # default of --racelab-hold: operations held before the oldest are written
_SETTLE_ROWS = 8192  # written at a time once the hold is full: short pauses, not one long
_MAX_HEAD = 65536  # bytes of status line and headers before a response is garbage
_OK_PREFIX = ("incr", "ok")  # columns op, outcome of a successful row
_JSON = json.JSONDecoder()
_ROW_ORDER = (  # the hot path builds rows positionally, in this order
    "op_id", "client", "op", "outcome", "value", "invoke_ns", "complete_ns", "server_pid",
    "server_tid", "server_arrival_ns", "server_departure_ns", "url", "burst", "error",
)
if COLUMNS != _ROW_ORDER:
    raise ImportError("loadtests.history.COLUMNS changed: update the rows built here")


class OpError(Exception):
    """Why an operation is ``fail`` or ``info``; Locust counts it as a failure."""


class _Closed(Exception):
    """The server closed the connection before a whole response arrived."""


class _BadResponse(Exception):
    """What came back is not an HTTP response."""


# -- shared request budget -----------------------------------------------------------


class _Budget:
    """Requests this process may still make; workers lease more from the master."""

    def __init__(self) -> None:
        self.unbounded = True
        self.remaining = 0
        self.exhausted = False
        self.leased = False  # True on workers: ask the master for more
        self._pending: gevent.event.Event | None = None

    def reset(self, total: int, leased: bool) -> None:
        self.unbounded = total <= 0
        self.leased = leased
        self.remaining = 0 if leased else total
        self.exhausted = False

    def take(self) -> bool:
        """One request's permission; False once the shared budget is spent."""
        while True:
            if self.unbounded:
                return True
            if self.remaining > 0:
                self.remaining -= 1
                return True
            if self.exhausted or not self.leased:
                self.exhausted = True
                return False
            if self._pending is None:
                self._pending = gevent.event.Event()
                _send_to_master("racelab_lease", {})
            pending = self._pending
            if not pending.wait(timeout=30):
                self.exhausted = True  # the master is gone
                return False

    def grant(self, count: int) -> None:
        if count <= 0:
            self.exhausted = True
        self.remaining += max(count, 0)
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.set()


# -- burst rendezvous ----------------------------------------------------------------


class _Generation:
    __slots__ = ("event", "round")

    def __init__(self) -> None:
        self.event = gevent.event.Event()
        self.round = -1


class _Rendezvous:
    """Users of one process meet here; the last to arrive releases them all at once.

    With ``interval_ns`` set, a round is released only at ``t0 + round *
    interval`` (monotonic ns), so that rounds of several processes coincide.
    """

    def __init__(self) -> None:
        self.parties = 0
        self.arrived = 0
        self.cancelled = False
        self.started = gevent.event.Event()
        self.interval_ns = 0
        self.t0_ns = 0
        self.last_round = -1
        self.gen = _Generation()
        #: round -> [requests, first sent ns, last sent ns]
        self.sent: dict[int, list[int]] = {}

    def configure(self, interval_ns: int, t0_ns: int) -> None:
        self.interval_ns, self.t0_ns = interval_ns, t0_ns

    def join(self) -> None:
        self.parties += 1

    def leave(self) -> None:
        self.parties -= 1
        if self.parties > 0 and self.arrived >= self.parties:
            self._release()

    def wait(self) -> int | None:
        """Block until the round is released; its number, or None once cancelled."""
        self.started.wait()
        if self.cancelled:
            return None
        gen = self.gen
        self.arrived += 1
        if self.arrived >= self.parties:
            self._release()
        else:
            gen.event.wait()
        return None if self.cancelled else gen.round

    def cancel(self) -> None:
        self.cancelled = True
        self.started.set()
        self.gen.event.set()

    def note_sent(self, burst: int, sent_ns: int) -> None:
        entry = self.sent.get(burst)
        if entry is None:
            self.sent[burst] = [1, sent_ns, sent_ns]
        else:
            entry[0] += 1
            entry[2] = sent_ns

    def _release(self) -> None:
        gen, self.gen, self.arrived = self.gen, _Generation(), 0
        if self.interval_ns:
            now = time.monotonic_ns()
            slot = math.ceil((now + 200_000 - self.t0_ns) / self.interval_ns)
            gen.round = max(self.last_round + 1, slot)
            release_at = self.t0_ns + gen.round * self.interval_ns
            if release_at - now > _SPIN_NS:
                gevent.sleep((release_at - now - _SPIN_NS) / 1e9)
            while time.monotonic_ns() < release_at:
                pass
        else:
            gen.round = self.last_round + 1
        self.last_round = gen.round
        gen.event.set()


# -- per-process state ---------------------------------------------------------------


class _RowWriter(HistoryWriter):
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


def _csv_field(text: str) -> str:
    """``text`` as the csv module writes it in a history row."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([text])
    return out.getvalue()


class _Swarm:
    """What one Locust process knows about the swarm."""

    def __init__(self) -> None:
        self.environment: Any = None
        self.role = "local"
        self.process = 0
        self.urls: list[str] = []
        self.record = True
        self.timeout = 30.0
        self.timeout_ns = 30_000_000_000
        self.reconnect = 0  # requests per connection before a new one (0: no limit)
        self.hold = _HOLD
        self.connections: list[_Connection] = []  # of every user, for the watchdog
        self.budget = _Budget()
        self.rendezvous = _Rendezvous()
        self.writer: _RowWriter | None = None
        #: operations not yet written: (connection, invoke, complete, raw body or
        #: (outcome, error), burst); see ``_settle``
        self.held: list[tuple[Any, ...]] = []
        self.history_dir = Path(".")
        self.scratch: Path | None = None
        self.users = 0
        self.live = 0
        self.idle_sent = False
        self.finishing = False
        # master only
        self.to_grant = 0
        self.unbounded = True
        self.asked: set[str] = set()
        self.idle: set[str] = set()
        self.done: set[str] = set()
        self.expected: set[str] = set()
        self.rows: dict[str, int] = {}
        self.files: dict[str, Any] = {}


_SWARM = _Swarm()


def _send_to_master(kind: str, data: dict[str, Any]) -> None:
    runner = _SWARM.environment.runner
    runner.send_message(kind, data)


def _option(name: str, default: Any) -> Any:
    options = _SWARM.environment.parsed_options
    value = getattr(options, name, None) if options is not None else None
    return default if value is None else value


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_kw: Any) -> None:
    group = parser.add_argument_group("racelab")
    group.add_argument("--racelab-urls", env_var="RACELAB_SWARM_URLS", default="",
                       help="Comma-separated instance base URLs (default: --host).")
    group.add_argument("--racelab-requests", env_var="RACELAB_SWARM_REQUESTS", type=int,
                       default=0, help="Total requests over all users and processes (0: no bound).")
    group.add_argument("--racelab-duration", env_var="RACELAB_SWARM_DURATION", type=float,
                       default=0.0, help="Seconds of load before a graceful stop (0: no bound).")
    group.add_argument("--racelab-burst-interval-ms", env_var="RACELAB_SWARM_BURST_INTERVAL_MS",
                       type=float, default=20.0,
                       help="Time between burst rounds when several processes burst together.")
    group.add_argument("--racelab-record", env_var="RACELAB_SWARM_RECORD", type=int, default=1,
                       help="1 records every operation; 0 only counts (for benchmarks).")
    group.add_argument("--racelab-timeout", env_var="RACELAB_SWARM_TIMEOUT", type=float,
                       default=30.0, help="Connect and read timeout of one request (seconds).")
    group.add_argument("--racelab-reconnect", env_var="RACELAB_SWARM_RECONNECT", type=int,
                       default=0, help="Open a new connection after this many requests on one "
                       "(0: keep it while it lives), as clients do: it spreads a user over a "
                       "server's worker processes instead of sticking to the first to accept.")
    group.add_argument("--racelab-hold", env_var="RACELAB_SWARM_HOLD", type=int, default=_HOLD,
                       help="Operations held in memory (about 300 bytes each) before the oldest "
                       "are written to the history; the rest are written when the test stops.")


@events.init.add_listener
def _on_init(environment: Any, **_kw: Any) -> None:
    _SWARM.environment = environment
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        _SWARM.role = "master"
        runner.register_message("racelab_lease", _master_on_lease)
        runner.register_message("racelab_idle", _master_on_idle)
        runner.register_message("racelab_file", _master_on_file)
        runner.register_message("racelab_done", _master_on_done)
        runner.register_message("racelab_progress", _master_on_progress)
    elif isinstance(runner, WorkerRunner):
        _SWARM.role = "worker"
        runner.register_message("racelab_grant", lambda environment, msg, **kw: (
            _SWARM.budget.grant(int(msg.data["n"]))))
    elif isinstance(runner, LocalRunner):
        _SWARM.role = "local"


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    swarm = _SWARM
    runner = environment.runner
    urls = [u.strip().rstrip("/") for u in str(_option("racelab_urls", "")).split(",")]
    swarm.urls = [u for u in urls if u] or [str(environment.host).rstrip("/")]
    swarm.record = bool(int(_option("racelab_record", 1)))
    swarm.timeout = float(_option("racelab_timeout", 30.0))
    swarm.timeout_ns = int(swarm.timeout * 1e9)
    swarm.reconnect = max(0, int(_option("racelab_reconnect", 0)))
    swarm.hold = max(1, int(_option("racelab_hold", _HOLD)))
    total = int(_option("racelab_requests", 0))
    duration = float(_option("racelab_duration", 0.0))
    swarm.history_dir = Path(os.environ.get("RACELAB_SWARM_HISTORY_DIR", "."))
    if swarm.role == "master":
        swarm.to_grant, swarm.unbounded = total, total <= 0
        swarm.expected = {node.id for node in runner.clients.all}
        # Handed to the workers with the spawn messages that follow.
        environment.parsed_options.racelab_t0_wall_ns = time.time_ns()
        gevent.spawn(_progress_loop)
        if duration > 0:
            gevent.spawn_later(duration, _finish)
        return
    swarm.rendezvous = _Rendezvous()
    if swarm.role == "worker":
        swarm.process = max(int(runner.worker_index), 0)
        swarm.budget.reset(total, leased=True)
        interval_ns = int(float(_option("racelab_burst_interval_ms", 20.0)) * 1e6)
        t0_wall = int(_option("racelab_t0_wall_ns", time.time_ns()))
        t0_mono = t0_wall - (time.time_ns() - time.monotonic_ns())
        swarm.rendezvous.configure(interval_ns, t0_mono)
        swarm.scratch = Path(tempfile.mkdtemp(prefix="racelab-worker-"))
        out_dir = swarm.scratch
        gevent.spawn(_worker_progress_loop)
    else:
        swarm.budget.reset(total, leased=False)
        out_dir = swarm.history_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        gevent.spawn(_progress_loop)
        if duration > 0:
            gevent.spawn_later(duration, _finish)
    swarm.writer = _RowWriter(out_dir / f"history-{swarm.process}.csv", flush_every=4096)
    swarm.held = []
    swarm.connections = []
    gevent.spawn(_watchdog)


@events.spawning_complete.add_listener
def _on_spawning_complete(**_kw: Any) -> None:
    # The last users spawned have not run yet: let them join before round 0.
    gevent.spawn_later(0.05, _SWARM.rendezvous.started.set)


@events.test_stopping.add_listener
def _on_test_stopping(**_kw: Any) -> None:
    _SWARM.rendezvous.cancel()


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kw: Any) -> None:
    swarm = _SWARM
    if swarm.role == "master" or swarm.writer is None:
        return
    _settle(len(swarm.held))  # before the final statistics: garbage bodies count as failures
    writer, swarm.writer = swarm.writer, None
    writer.close()
    bursts = _write_bursts(writer.path.parent)
    if swarm.role == "worker":
        for path in (writer.path, bursts):
            if path is not None:
                _ship(path)
        _send_to_master("racelab_done", {"rows": writer.count, "process": swarm.process})
        with contextlib.suppress(Exception):
            environment.runner._send_stats()  # the final counts reach the master first
        if swarm.scratch is not None:
            shutil.rmtree(swarm.scratch, ignore_errors=True)
        # One experiment per worker process: leave once everything is handed over.
        gevent.spawn_later(0.2, environment.runner.quit)


@events.quitting.add_listener
def _on_quitting(**_kw: Any) -> None:
    if _SWARM.writer is not None:
        _settle(len(_SWARM.held))
        _SWARM.writer.close()
        _SWARM.writer = None
    for handle in _SWARM.files.values():
        handle.close()
    _SWARM.files.clear()


def _write_bursts(directory: Path) -> Path | None:
    sent = _SWARM.rendezvous.sent
    if not sent:
        return None
    path = directory / f"bursts-{_SWARM.process}.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write(",".join(BURST_COLUMNS) + "\n")
        for burst in sorted(sent):
            count, first, last = sent[burst]
            out.write(f"{burst},{_SWARM.process},{count},{first},{last}\n")
    return path


def _ship(path: Path) -> None:
    with path.open("r", encoding="utf-8", newline="") as handle:
        first = True
        while True:
            chunk = handle.read(_CHUNK_BYTES)
            if not chunk and not first:
                break
            _send_to_master("racelab_file", {"name": path.name, "data": chunk, "first": first})
            first = False
            if not chunk:
                break


def _finish() -> None:
    """Stop the test gracefully: in-flight requests finish, then histories are saved."""
    swarm = _SWARM
    if swarm.finishing:
        return
    swarm.finishing = True
    runner = swarm.environment.runner
    if swarm.role == "local":
        runner.quit()
        return
    runner.stop()  # asks every worker to stop its users gracefully
    deadline = time.monotonic() + 60
    while not swarm.expected <= swarm.done and time.monotonic() < deadline:
        gevent.sleep(0.05)
    gevent.sleep(0.2)
    runner.quit()


def _progress_loop() -> None:
    path = os.environ.get("RACELAB_SWARM_PROGRESS_FILE")
    if not path:
        return
    swarm = _SWARM
    while True:
        rows = sum(swarm.rows.values()) if swarm.role == "master" else _recorded()
        stats = swarm.environment.runner.stats.total
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump({"rows": rows, "locust_requests": stats.num_requests,
                       "locust_failures": stats.num_failures}, out)
        os.replace(tmp, path)
        gevent.sleep(_PROGRESS_EVERY)


def _recorded() -> int:
    """Operations recorded so far by this process (written or still held)."""
    writer = _SWARM.writer
    return 0 if writer is None else writer.count + len(_SWARM.held)


def _worker_progress_loop() -> None:
    while _SWARM.writer is not None:
        _send_to_master("racelab_progress", {"rows": _recorded()})
        gevent.sleep(_PROGRESS_EVERY)


def _watchdog() -> None:
    """End requests that outlive the timeout: shut their socket down, mark them expired.

    Sockets carry no gevent timeout (arming one per wait costs as much as
    parsing the response); one check every few hundred ms replaces them, so a
    hung request ends between ``timeout`` and ``timeout`` + the check interval.
    """
    swarm = _SWARM
    while swarm.writer is not None:
        gevent.sleep(min(max(swarm.timeout / 4, 0.01), 0.25))
        now = time.monotonic_ns()
        for conn in swarm.connections:
            if 0 < conn.deadline_ns < now and conn.sock is not None and not conn.expired:
                conn.expired = True
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)


# -- master's message handlers -------------------------------------------------------


def _master_on_lease(environment: Any, msg: Any, **_kw: Any) -> None:
    swarm = _SWARM
    swarm.asked.add(msg.node_id)
    if swarm.unbounded:
        count = 1 << 30
    else:
        workers = max(len(environment.runner.clients), 1)
        count = min(swarm.to_grant, max(1, min(2000, math.ceil(swarm.to_grant / (2 * workers)))))
        swarm.to_grant -= count
    environment.runner.send_message("racelab_grant", {"n": count}, client_id=msg.node_id)
    _master_check_spent()


def _master_on_idle(environment: Any, msg: Any, **_kw: Any) -> None:
    _SWARM.idle.add(msg.node_id)
    _master_check_spent()


def _master_check_spent() -> None:
    swarm = _SWARM
    if not swarm.unbounded and swarm.to_grant <= 0 and swarm.asked <= swarm.idle:
        gevent.spawn(_finish)


def _master_on_file(environment: Any, msg: Any, **_kw: Any) -> None:
    name = Path(str(msg.data["name"])).name  # never a path from the network
    swarm = _SWARM
    if msg.data["first"] or name not in swarm.files:
        if name in swarm.files:
            swarm.files[name].close()
        swarm.history_dir.mkdir(parents=True, exist_ok=True)
        swarm.files[name] = (swarm.history_dir / name).open("w", encoding="utf-8", newline="")
    swarm.files[name].write(msg.data["data"])


def _master_on_done(environment: Any, msg: Any, **_kw: Any) -> None:
    swarm = _SWARM
    for handle in swarm.files.values():
        handle.flush()
    swarm.rows[msg.node_id] = int(msg.data["rows"])
    swarm.done.add(msg.node_id)


def _master_on_progress(environment: Any, msg: Any, **_kw: Any) -> None:
    _SWARM.rows[msg.node_id] = int(msg.data["rows"])


# -- one operation -------------------------------------------------------------------


class _Connection:
    """One keep-alive connection to one instance, with the request pre-built."""

    __slots__ = ("client", "deadline_ns", "expired", "host", "jar", "ok_line", "path", "pending",
                 "port", "readable", "request", "sent", "siblings", "sock", "url", "used_ns")

    def __init__(self, url: str, jar: dict[bytes, bytes] | None = None) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = (parts.path or "").rstrip("/") + "/incr"
        #: the user's cookies, shared by all its connections: one user is one client
        self.jar = {} if jar is None else jar
        self.siblings: list[_Connection] = [self]
        self.request = b""
        self.build()
        self.sock: socket.socket | None = None
        self.readable: Any = None  # the event loop's read watcher of ``sock``
        self.pending = b""  # bytes received past the last response
        self.used_ns = 0
        #: a successful row with %-placeholders (see ``_RecordingUser.on_start``)
        self.ok_line = ""
        self.client = ""  # the user's client id
        self.deadline_ns = 0  # while a request is in flight: when the watchdog ends it
        self.expired = False  # the watchdog ended the request in flight

    def build(self) -> None:
        """Pre-build the request, with the user's cookies."""
        cookie = b"; ".join(k + b"=" + v for k, v in self.jar.items())
        self.request = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "User-Agent: racelab\r\nContent-Length: 0\r\n"
        ).encode("latin-1") + (b"Cookie: " + cookie + b"\r\n" if cookie else b"") + b"\r\n"

    def keep_cookies(self, head: bytes) -> None:
        """Store every ``Set-Cookie`` of a response head and rebuild the user's requests."""
        changed = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() != b"set-cookie":
                continue
            pair = value.split(b";", 1)[0].strip()
            key, eq, val = pair.partition(b"=")
            if eq and self.jar.get(key) != val:
                self.jar[key] = val
                changed = True
        if changed:
            for conn in self.siblings:
                conn.build()

    def connect(self, timeout: float) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)  # requests are timed by ``_watchdog``
        self.sock = sock
        self.readable = gevent.get_hub().loop.io(sock.fileno(), 1)
        self.pending = b""
        self.expired = False
        self.sent = 0
        self.used_ns = time.monotonic_ns()

    def refresh(self, timeout: float) -> None:
        """Reconnect a connection idle long enough for the server to have closed it.

        Servers close idle keep-alive connections (gunicorn after 2 s); a request
        sent into one that is closing gets no answer and would count as unknown.
        """
        if self.sock is not None and time.monotonic_ns() - self.used_ns < _IDLE_NS:
            return
        self.close()
        with contextlib.suppress(OSError):
            self.connect(timeout)

    def close(self) -> None:
        if self.readable is not None:
            self.readable.close()
            self.readable = None
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def send(self) -> None:
        """Send the request (one ``send`` call unless the socket buffer is full)."""
        sock = self.sock
        assert sock is not None
        request = self.request
        sent = sock.send(request)
        if sent < len(request):
            sock.sendall(request[sent:])

    def receive(self) -> tuple[int, bytes]:
        """Read one response: its status and body; closes the connection if it ends.

        Raises:
            _Closed: the connection ended before a whole response arrived.
            _BadResponse: what arrived is not an HTTP response.
            OSError: from the socket (timeouts included).
        """
        sock = self.sock
        assert sock is not None
        if not self.pending:
            # Wait for the answer in the event loop before reading. A read tried
            # first nearly always finds nothing yet: a wasted system call. And on
            # loopback the server can answer inside this user's send, call after
            # call; a user that found its answer every time would never pass
            # through the loop, and would keep its process to itself for seconds
            # while the other users' answers waited (and their keep-alive
            # connections timed out under them).
            _wait_for(self.readable)
        status, body, keep_alive, rest, head = _read_response(sock.recv, self.pending)
        if head is not None:
            self.keep_cookies(head)
        if keep_alive:
            self.pending = rest
            self.used_ns = time.monotonic_ns()
        else:
            self.close()
        return status, body


def _read_response(recv: Any, data: bytes) -> tuple[int, bytes, bool, bytes, bytes | None]:
    """Frame one HTTP/1.x response from ``data`` plus what ``recv`` returns.

    Returns:
        (status, body, keep-alive, bytes past the response, the head as sent when
        it sets a cookie, else None).
    """
    while (end := data.find(b"\r\n\r\n")) < 0:
        if len(data) > _MAX_HEAD:
            raise _BadResponse("no end of headers")
        data += _more(recv, data)
    head = data[:end].lower()
    if not head.startswith(b"http/1.") or len(head) < 12 or not head[9:12].isdigit():
        raise _BadResponse(f"status line {data[:40]!r}")
    status = int(head[9:12])
    keep_alive = _connection_header(head, default=head[7:8] == b"1")
    cookies = data[:end] if b"\r\nset-cookie:" in head else None
    start = end + 4
    length = _header(head, b"\r\ncontent-length:")
    if length is not None:
        if not length.isdigit():
            raise _BadResponse(f"Content-Length {length!r}")
        stop = start + int(length)
        while len(data) < stop:
            data += _more(recv, data)
        return status, data[start:stop], keep_alive, data[stop:], cookies
    if 100 <= status < 200 or status in (204, 304):
        return status, b"", keep_alive, data[start:], cookies
    if b"chunked" in (_header(head, b"\r\ntransfer-encoding:") or b""):
        body, rest = _read_chunked(recv, data, start)
        return status, body, keep_alive, rest, cookies
    while chunk := recv(_RECV_BYTES):  # no framing: the body ends with the connection
        data += chunk
    return status, data[start:], False, b"", cookies


def _more(recv: Any, data: bytes) -> bytes:
    chunk: bytes = recv(_RECV_BYTES)
    if not chunk:
        raise _Closed("connection closed mid-response" if data else
                      "connection closed before the response")
    return chunk


def _header(head: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (lower case, with its leading CRLF) in ``head``."""
    pos = head.find(name)
    if pos < 0:
        return None
    stop = head.find(b"\r\n", pos + 2)
    return head[pos + len(name):stop if stop >= 0 else len(head)].strip()


def _connection_header(head: bytes, default: bool) -> bool:
    value = _header(head, b"\r\nconnection:")
    if value is None:
        return default
    if b"close" in value:
        return False
    return True if b"keep-alive" in value else default


def _read_chunked(recv: Any, data: bytes, pos: int) -> tuple[bytes, bytes]:
    """A chunked body starting at ``data[pos:]``: the body and the bytes after it."""
    parts: list[bytes] = []
    while True:
        while (eol := data.find(b"\r\n", pos)) < 0:
            data += _more(recv, data)
        size_text = data[pos:eol].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadResponse(f"chunk size {size_text[:20]!r}") from None
        pos = eol + 2
        if size == 0:
            break
        while len(data) < pos + size + 2:
            data += _more(recv, data)
        parts.append(data[pos:pos + size])
        pos += size + 2
    while True:  # trailer lines, up to an empty one
        while (eol := data.find(b"\r\n", pos)) < 0:
            data += _more(recv, data)
        line, pos = data[pos:eol], eol + 2
        if not line:
            return b"".join(parts), data[pos:]


class _RecordingUser(FastHttpUser):
    """What both swarms share: connections, one recorded operation, the budget."""

    abstract = True
    wait_time = constant(0)
    host = "http://127.0.0.1"  # replaced by --host; the calls go to --racelab-urls

    def on_start(self) -> None:
        swarm = _SWARM
        number = swarm.users
        swarm.users += 1
        swarm.live += 1
        self.client_id = f"p{swarm.process}-u{number}"
        jar: dict[bytes, bytes] = {}
        self.connections = [_Connection(url, jar) for url in swarm.urls]
        for conn in self.connections:
            conn.siblings = self.connections
            conn.client = self.client_id
        swarm.connections.extend(self.connections)
        client = _csv_field(self.client_id).replace("%", "%%")
        for conn in self.connections:
            # op_id, value, invoke_ns, complete_ns, server pid, tid, arrival, departure, burst
            conn.ok_line = (f"%d,{client},incr,ok,%d,%d,%d,%d,%d,%d,%d,"
                            f"{_csv_field(conn.url).replace('%', '%%')},%s,\n")
        self.next_index = number % len(self.connections)
        self.stopped = False
        self.request_stats = self.environment.stats
        for conn in self.connections:  # pre-connect; failures show up on first use
            with contextlib.suppress(OSError):
                conn.connect(swarm.timeout)

    def on_stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for conn in self.connections:
            conn.close()
        swarm = _SWARM
        swarm.live -= 1
        if swarm.live == 0 and swarm.budget.exhausted and not swarm.idle_sent:
            swarm.idle_sent = True
            if swarm.role == "worker":
                _send_to_master("racelab_idle", {})
            elif swarm.role == "local":
                gevent.spawn(_finish)

    def operation(self, burst: int | None) -> None:
        """Make one ``/incr`` call and record it (``burst``: the round, or None)."""
        connections = self.connections
        conn = connections[self.next_index]
        if len(connections) > 1:
            self.next_index = (self.next_index + 1) % len(connections)
        swarm = _SWARM
        invoke = time.monotonic_ns()
        if conn.sock is not None and (invoke - conn.used_ns > _IDLE_NS or
                                      conn.sent == swarm.reconnect > 0):
            conn.close()
        if conn.sock is None:
            try:
                conn.connect(swarm.timeout)
            except OSError as exc:
                self._report(conn, burst, invoke, "fail", f"connect failed: {_describe(exc)}")
                return
        conn.deadline_ns = invoke + swarm.timeout_ns
        conn.sent += 1
        try:
            conn.send()
        except OSError as exc:
            conn.deadline_ns = 0
            conn.close()
            self._report(conn, burst, invoke, "fail", f"send failed: {_describe(exc, conn)}")
            return
        if burst is not None:
            swarm.rendezvous.note_sent(burst, time.monotonic_ns())
        try:
            status, body = conn.receive()
        except BaseException as exc:  # every way of not getting an answer
            conn.deadline_ns = 0
            conn.close()
            self._report(conn, burst, invoke, "info", _describe(exc, conn))
            if not isinstance(exc, Exception):
                raise  # GreenletExit on a forced stop: recorded, now let it stop the user
            return
        conn.deadline_ns = 0
        if not swarm.record:
            complete = time.monotonic_ns()
            self._fire(invoke, complete, len(body), None if status == 200 else f"HTTP {status}")
            return
        if status != 200:
            self._report(conn, burst, invoke, "info", f"HTTP {status}: {_snippet(body)}",
                         length=len(body))
            return
        complete = time.monotonic_ns()
        if swarm.writer is not None:
            held = swarm.held
            held.append((conn, invoke, complete, body, burst))
            if len(held) >= swarm.hold:
                _settle(min(_SETTLE_ROWS, swarm.hold))
        self._fire(invoke, complete, len(body), None)

    def _report(self, conn: _Connection, burst: int | None, invoke: int, outcome: str,
                error: str, length: int = 0) -> None:
        complete = time.monotonic_ns()
        if _SWARM.writer is not None and _SWARM.record:
            _SWARM.held.append((conn, invoke, complete, (outcome, error), burst))
        self._fire(invoke, complete, length, error)

    def _fire(self, invoke: int, complete: int, length: int, error: str | None) -> None:
        # What Locust's runner does on each ``request`` event, without the event:
        # firing it costs as much again, and nothing else listens in a swarm.
        stats = self.request_stats
        stats.log_request("POST", "/incr", (complete - invoke) / 1e6, length)
        if error is not None:
            stats.log_error("POST", "/incr", OpError(error))


def _settle(count: int) -> None:
    """Write the oldest ``count`` held operations to the history, in completion order.

    A ``200`` body is decoded here: an answer without an integer ``value`` becomes
    an ``info`` row, and a failure in Locust's statistics (its request was
    counted when it completed).
    """
    swarm = _SWARM
    writer = swarm.writer
    if writer is None or not swarm.held:
        return
    batch = swarm.held[:count]
    del swarm.held[:count]
    stats = swarm.environment.stats
    append, append_line = writer.append, writer.append_line
    for conn, invoke, complete, body, burst in batch:
        burst_field = "" if burst is None else burst
        if type(body) is tuple:  # already known to be a fail or info
            outcome, error = body
        else:
            answer = _answer(body)
            if type(answer) is tuple:
                value, pid, tid, arrival, departure = answer
                if type(pid) is type(tid) is type(arrival) is type(departure) is int:
                    append_line(conn.ok_line % (writer.count, value, invoke, complete, pid, tid,
                                                arrival, departure, burst_field))
                else:  # odd types: let the csv module render (and quote) them
                    append((writer.count, conn.client, *_OK_PREFIX, value, invoke, complete, pid,
                            tid, arrival, departure, conn.url, burst_field, ""))
                continue
            outcome, error = "info", answer
            stats.log_error("POST", "/incr", OpError(error))
        append((writer.count, conn.client, "incr", outcome, "", invoke, complete, "", "", "", "",
                conn.url, burst_field, error))


def _answer(body: bytes) -> tuple[int, Any, Any, Any, Any] | str:
    """A ``200`` body's value, server pid, tid, arrival and departure; or why it is unusable."""
    try:
        data = _decode_json(body)
        value = data["value"]
    except (ValueError, TypeError, KeyError):
        return f"not a JSON body with a value: {_snippet(body)}"
    if type(value) is not int:
        return f"value is not an integer: {value!r}"
    get = data.get
    return value, get("pid", ""), get("tid", ""), get("arrival_ns", ""), get("departure_ns", "")


def _describe(exc: BaseException, conn: _Connection | None = None) -> str:
    if isinstance(exc, TimeoutError | socket.timeout) or (conn is not None and conn.expired):
        return "timeout"
    if isinstance(exc, _Closed):
        return str(exc)
    if isinstance(exc, _BadResponse):
        return f"bad HTTP response ({exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if not isinstance(exc, Exception):
        return "stopped before the response"
    return f"{type(exc).__name__}: {exc}"


def _decode_json(body: bytes) -> Any:
    """``json.loads(body)``, a third cheaper for the usual UTF-8 object.

    Raises:
        ValueError: the body is not one JSON document.
    """
    if not body.startswith(b"{"):
        return json.loads(body)
    text = body.decode("utf-8")
    data, end = _JSON.raw_decode(text)
    if end != len(text) and text[end:].strip(" \t\n\r"):  # JSON's whitespace
        raise ValueError(f"extra data after the JSON document at {end}")
    return data


def _snippet(body: bytes) -> str:
    text = body[:60].decode("utf-8", "replace").replace("\n", " ").replace("\r", " ")
    return text + ("..." if len(body) > 60 else "")


class IncrUser(_RecordingUser):
    """Plain swarm: call ``/incr`` back to back until the budget or the time is spent."""

    abstract = False

    @task
    def incr(self) -> None:
        # One long task: Locust's per-task scheduling and sleep(0) would cost a
        # hub switch per request. A graceful stop lets the current call finish.
        # Start together: the first users spawned must not spend the whole budget
        # before the others have connected (a few clients would then stand for all).
        _SWARM.rendezvous.started.wait(_START_WAIT_S)
        take = _SWARM.budget.take
        while self._state != LOCUST_STATE_STOPPING:
            if not take():
                raise StopUser()
            self.operation(None)


class BurstUser(_RecordingUser):
    """Burst swarm: every user of every process fires at once, round after round."""

    abstract = False

    def on_start(self) -> None:
        _SWARM.rendezvous.join()  # before connecting: connecting yields to other users
        super().on_start()

    def on_stop(self) -> None:
        if not self.stopped:
            _SWARM.rendezvous.leave()
        super().on_stop()

    @task
    def burst(self) -> None:
        if not _SWARM.budget.take():
            raise StopUser()
        self.connections[self.next_index].refresh(_SWARM.timeout)  # not after the release
        burst = _SWARM.rendezvous.wait()
        if burst is None:
            raise StopUser()
        self.operation(burst)
