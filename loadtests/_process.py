"""What one load-generating Locust process (local, or a worker) knows and does.

``LoadProcess`` is a listener object: created on Locust's ``init`` event, it
registers itself on the environment's events and messages, and the swarm users
find it as ``environment.racelab``. Its recorder (``loadtests._recorder``) is
registered first, so that at the test's stop the history is complete before
this process ships it to the master.

Interrupts: ``interrupt(grace)`` (SIGUSR1 from the runner on a local process,
``racelab_interrupt`` from the master on a worker) stops handing out requests,
lets in-flight ones finish for ``grace`` seconds, then ends the rest, each
recorded as ``info`` "interrupted"; a second interrupt ends them at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import gevent

from demo_server.basics.files import write_text
from loadtests._budget import Budget
from loadtests._config import SwarmConfig
from loadtests._connection import Connection
from loadtests._recorder import Recorder
from loadtests._rendezvous import Rendezvous

__all__ = ["INTERRUPT_SIGNAL", "LoadProcess", "write_progress"]

#: the signal the runner sends a master or local process to interrupt the swarm
INTERRUPT_SIGNAL = signal.SIGUSR1
CHUNK_BYTES = 1 << 20
PROGRESS_EVERY = 0.25
_DRAIN_AFTER_S = 3.0  # after the grace: how long ended requests get to be recorded
_QUIT_RECORD_S = 1.0  # at quitting: how long ended requests get to be recorded
_JOIN_WAIT_S = 0.05  # after spawning: how long round 0 waits for users still connecting


def write_progress(path: str, rows: int, stats: Any,
                   lost: list[dict[str, Any]] | None = None) -> None:
    """Write the progress file the runner polls (atomically).

    Args:
        path: the file.
        rows: operations in the history files so far (not merely held in memory).
        stats: Locust's total statistics.
        lost: load generators that died (``{"t_ns", "detail", "rows"}``), if any.
    """
    doc = {"rows": rows, "locust_requests": stats.num_requests,
           "locust_failures": stats.num_failures}
    if lost:
        doc["lost"] = lost
    write_text(path, json.dumps(doc))


class LoadProcess:
    """A local process or a worker: budget, rendezvous, connections, recorder.

    Args:
        environment: the Locust environment.
        role: ``local`` or ``worker``.
    """

    def __init__(self, environment: Any, role: str) -> None:
        self.environment = environment
        self.role = role
        self.process = 0
        self.config = SwarmConfig(urls=[])
        self.recorder = Recorder(environment)  # its test_stop listener runs before ours
        self.budget = Budget(ask=self._ask_lease if role == "worker" else None)
        self.rendezvous = Rendezvous()
        self.connections: list[Connection] = []  # of every user, for the watchdog
        self.clients: dict[int, Any] = {}
        self.users = 0
        self.connected = 0
        self.live = 0
        self.idle_sent = False
        self.finishing = False
        self.interrupts = 0
        self.scratch: Path | None = None
        self.stopped = False
        events = environment.events
        events.test_start.add_listener(self.on_test_start)
        events.spawning_complete.add_listener(self.on_spawning_complete)
        events.test_stopping.add_listener(self.on_test_stopping)
        events.test_stop.add_listener(self.on_test_stop)
        # Quitting listeners run last-registered first: this one before the recorder's.
        events.quitting.add_listener(self.on_quitting)
        runner = environment.runner
        if role == "worker":
            runner.register_message("racelab_grant", self._on_grant)
            runner.register_message("racelab_interrupt", self._on_interrupt)
        else:
            gevent.signal_handler(INTERRUPT_SIGNAL, self.interrupt)
        environment.racelab = self

    # -- events -----------------------------------------------------------------------

    def on_test_start(self, environment: Any, **_kw: Any) -> None:
        config = self.config = SwarmConfig.from_environment(environment)
        self.rendezvous = Rendezvous()
        self.connections = []
        self.clients = {}
        history_dir = Path(os.environ.get("RACELAB_SWARM_HISTORY_DIR", "."))
        if self.role == "worker":
            self.process = max(int(environment.runner.worker_index), 0)
            self.budget.reset(config.requests, leased=True)
            t0_mono = config.t0_wall_ns - (time.time_ns() - time.monotonic_ns())
            self.rendezvous.configure(config.burst_interval_ns, t0_mono)
            # Inside the run directory when the runner set it, else the working directory.
            scratch_root = Path(os.environ.get("RACELAB_SWARM_SCRATCH_DIR") or ".")
            self.scratch = scratch_root / f"racelab-worker-{os.getpid()}"
            out_dir = self.scratch
            gevent.spawn(self._progress_to_master)
        else:
            self.budget.reset(config.requests, leased=False)
            out_dir = history_dir
            gevent.spawn(self._progress_to_file)
            if config.duration > 0:
                gevent.spawn_later(config.duration, self.finish)
        self.recorder.open(out_dir / f"history-{self.process}.csv", config.hold)
        gevent.spawn(self._watchdog)

    def on_spawning_complete(self, **_kw: Any) -> None:
        # The last users spawned have not run yet: let them join before round 0.
        gevent.spawn(self._start_when_connected)

    def _start_when_connected(self) -> None:
        """Round 0 once every user spawned here has connected, or ``_JOIN_WAIT_S`` on."""
        deadline = time.monotonic() + _JOIN_WAIT_S
        expected = self.environment.runner.user_count
        while self.connected < expected and time.monotonic() < deadline:
            gevent.sleep(0.001)
        self.rendezvous.started.set()

    def on_test_stopping(self, **_kw: Any) -> None:
        self.rendezvous.cancel()

    def on_test_stop(self, environment: Any, **_kw: Any) -> None:
        recorder = self.recorder
        recorder.close()  # normally done already by its own listener
        path = recorder.path
        if path is None or self.stopped:
            return
        self.stopped = True
        bursts = recorder.write_bursts(self.rendezvous.sent, self.process)
        if self.role != "worker":
            return
        for part in (path, bursts):
            if part is not None:
                self._ship(part)
        self._send("racelab_done", {"rows": recorder.rows, "process": self.process})
        with contextlib.suppress(Exception):
            environment.runner._send_stats()  # the final counts reach the master first
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        # One experiment per worker process: leave once everything is handed over.
        gevent.spawn_later(0.2, environment.runner.quit)

    def on_quitting(self, **_kw: Any) -> None:
        """Locust quits (a SIGTERM, or the end): record what is in flight before the file closes.

        A SIGTERM reaches Locust without the interrupt before it when the runner
        stops a swarm it believed not yet started, or at its hard timeout. Each
        request still open then becomes an ``info`` row (``interrupted``), as an
        interrupt's would, instead of vanishing with the process.
        """
        self.budget.stop()  # no user starts another request
        self.rendezvous.cancel()
        if not self._in_flight():
            return
        self._end_in_flight()
        deadline = time.monotonic() + _QUIT_RECORD_S
        while self._in_flight() and time.monotonic() < deadline:
            gevent.sleep(0.005)  # each user records its own unanswered request

    # -- users ------------------------------------------------------------------------

    def user_started(self) -> int:
        """A user starts: its number in this process."""
        number = self.users
        self.users += 1
        self.live += 1
        return number

    def user_connected(self) -> None:
        """A user is ready to make its first operation (connected, or failed to)."""
        self.connected += 1

    def user_stopped(self) -> None:
        self.live -= 1
        if self.live == 0 and self.budget.exhausted and not self.idle_sent:
            self.idle_sent = True
            if self.role == "worker":
                self._send("racelab_idle", {})
            else:
                gevent.spawn(self.finish)

    # -- stopping ---------------------------------------------------------------------

    def finish(self) -> None:
        """Stop the test gracefully: in-flight requests finish, then the history is saved."""
        if not self.finishing:
            self.finishing = True
            self.environment.runner.quit()

    def interrupt(self, grace: float | None = None) -> None:
        """Stop the load (see the module docstring); a second call ends in-flight requests."""
        self.interrupts += 1
        if self.interrupts > 1:
            self._end_in_flight()
            return
        self.budget.stop()
        self.rendezvous.cancel()
        wait = self.config.grace if grace is None else grace
        gevent.spawn(self._drain, max(0.0, wait))

    def _drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while self.live > 0 and time.monotonic() < deadline and self._in_flight():
            gevent.sleep(0.02)
        self._end_in_flight()
        deadline = time.monotonic() + _DRAIN_AFTER_S
        while self.live > 0 and time.monotonic() < deadline:
            gevent.sleep(0.02)
        if self.role != "worker":
            self.finish()
        elif not self.idle_sent:
            self.idle_sent = True
            self._send("racelab_idle", {})

    def _in_flight(self) -> bool:
        return any(conn.deadline_ns for conn in self.connections)

    def _end_in_flight(self) -> None:
        for conn in self.connections:
            if conn.deadline_ns:
                conn.end("interrupted")

    # -- worker messages --------------------------------------------------------------

    def _send(self, kind: str, data: dict[str, Any]) -> None:
        self.environment.runner.send_message(kind, data)

    def _ask_lease(self) -> None:
        self._send("racelab_lease", {})

    def _on_grant(self, environment: Any, msg: Any, **_kw: Any) -> None:
        self.budget.grant(int(msg.data["n"]))

    def _on_interrupt(self, environment: Any, msg: Any, **_kw: Any) -> None:
        self.interrupt(float(msg.data.get("grace", self.config.grace)))

    def _ship(self, path: Path) -> None:
        with path.open("r", encoding="utf-8", newline="") as handle:
            first = True
            while True:
                chunk = handle.read(CHUNK_BYTES)
                if not chunk and not first:
                    break
                self._send("racelab_file", {"name": path.name, "data": chunk, "first": first})
                first = False
                if not chunk:
                    break

    # -- background loops -------------------------------------------------------------

    def _progress_to_file(self) -> None:
        path = os.environ.get("RACELAB_SWARM_PROGRESS_FILE")
        if not path:
            return
        while True:
            write_progress(path, self.recorder.persist(), self.environment.runner.stats.total)
            gevent.sleep(PROGRESS_EVERY)

    def _progress_to_master(self) -> None:
        """Tell the master, four times a second, the rows in this worker's file and who it is
        (host and pid: a master on the same host sees at once if this process dies)."""
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        while self.recorder.recording:
            self._send("racelab_progress", {"rows": self.recorder.persist(), **me})
            gevent.sleep(PROGRESS_EVERY)

    def _watchdog(self) -> None:
        """End requests that outlive the timeout: shut their socket down, mark them expired.

        Sockets carry no gevent timeout (arming one per wait costs as much as
        parsing the response); one check every few hundred ms replaces them, so a
        hung request ends between ``timeout`` and ``timeout`` + the check interval.
        """
        timeout = self.config.timeout
        while self.recorder.recording:
            gevent.sleep(min(max(timeout / 4, 0.01), 0.25))
            now = time.monotonic_ns()
            for conn in self.connections:
                if 0 < conn.deadline_ns < now:
                    conn.end("timeout")
