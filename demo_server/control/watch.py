"""What happened to a server while it ran: worker deaths, restarts, lost listeners, dead stores.

A ``Watcher`` thread looks at a running server every ~150 ms (a psutil scan of
the arbiter's children, a TCP connect every half second, the liveness of the
store's process) and records each change into an ``EventLog``. Injected
faults (``demo_server.control.faults``) record into the same log, so a run has one
list of everything that was not a plain run: ``events.json``.

An event is a plain dict::

    {"t_ns": 123456789, "wall": 1764580000.1, "kind": "worker-died",
     "detail": "worker 4242 of server is gone", "pid": 4242}

``t_ns`` is ``time.monotonic_ns()`` (the clock of the history's invoke and
complete times, on the same machine), ``wall`` is ``time.time()``. Kinds:
``worker-died``, ``worker-replaced``, ``server-exited``, ``instance-unreachable``,
``info:instance-reachable``, ``service-died``, ``watch-error``, ``fault:<name>``
for injected faults, and ``load-generator-died`` (recorded by the experiment when a
Locust process died during the swarm). A kind starting with ``info:`` is not a fault (the report and
the verdict leave those out).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from demo_server.basics.files import write_text
from demo_server.basics.procs import ProcessGroup, live, reachable

__all__ = ["EVENTS_SCHEMA", "EventLog", "ServerWatch", "ServiceWatch", "Watcher"]

EVENTS_SCHEMA = "racelab.events/1"


class EventLog:
    """A thread-safe, append-only list of events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self.origin_ns = time.monotonic_ns()
        self.origin_wall = time.time()

    def record(self, kind: str, detail: str, **extra: Any) -> dict[str, Any]:
        """Append one event now; return it."""
        event: dict[str, Any] = {"t_ns": time.monotonic_ns(), "wall": time.time(),
                                 "kind": kind, "detail": detail, **extra}
        with self._lock:
            self._events.append(event)
        return event

    def events(self) -> list[dict[str, Any]]:
        """A copy of every event so far, oldest first."""
        with self._lock:
            return [dict(e) for e in self._events]

    def write(self, path: Path) -> None:
        """Write ``{"schema", "origin_ns", "origin_wall", "events"}`` as JSON to ``path``."""
        doc = {"schema": EVENTS_SCHEMA, "origin_ns": self.origin_ns,
               "origin_wall": self.origin_wall, "events": self.events()}
        write_text(path, json.dumps(doc, indent=2))


@dataclass
class ServerWatch:
    """One server instance to watch.

    Args:
        name: its name (``server``, ``server-1``).
        group: its process group.
        host: where it listens.
        port: its port.
        pool: True when its workers are the leader's children (gunicorn): their
            pid set is watched. Werkzeug's per-request forks are not workers.
    """

    name: str
    group: ProcessGroup
    host: str
    port: int
    pool: bool
    workers: set[int] = field(default_factory=set)
    exited: bool = False
    unreachable: bool = False
    size: int = 0
    scanned: float = 0.0
    procs: dict[int, psutil.Process | None] = field(default_factory=dict)

    def learn(self, workers: set[int]) -> None:
        """Remember the current workers (and their psutil handles, safe from pid reuse)."""
        self.workers = workers
        self.procs = {pid: self.procs.get(pid) or _handle(pid) for pid in workers}
        self.scanned = time.monotonic()

    def any_gone(self) -> bool:
        return len(live(p for p in self.procs.values() if p is not None)) < len(self.workers)


def _handle(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None  # already gone: the next look does a full scan


@dataclass
class ServiceWatch:
    """A store process racelab started: its name and how to ask whether it runs."""

    name: str
    alive: Callable[[], bool]
    dead: bool = False


def pool_workers(group: ProcessGroup) -> set[int]:
    """Live direct children of ``group``'s leader (a gunicorn arbiter's workers)."""
    try:
        children = psutil.Process(group.pid).children()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return set()
    return {p.pid for p in live(children)}


class Watcher:
    """Watch servers and services in a thread until ``stop``; record changes in ``log``.

    Args:
        log: where events go.
        servers: the server instances.
        services: the store processes.
        interval: seconds between looks: each known worker's liveness (cheap).
        probe_interval: seconds between TCP reachability probes of each instance.
        scan_interval: seconds between full scans of an arbiter's children (a
            psutil scan of every process, ~5 ms); also done at once when a worker
            is gone, until the pool is back to its size.
    """

    def __init__(
        self,
        log: EventLog,
        servers: Sequence[ServerWatch],
        services: Sequence[ServiceWatch] = (),
        interval: float = 0.15,
        probe_interval: float = 0.5,
        scan_interval: float = 2.0,
    ) -> None:
        self.log = log
        self.servers = list(servers)
        self.services = list(services)
        self.interval = interval
        self.probe_interval = probe_interval
        self.scan_interval = scan_interval
        self._stop = threading.Event()
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_probe = 0.0

    def start(self) -> Watcher:
        for server in self.servers:
            if server.pool:
                server.learn(pool_workers(server.group))
                server.size = len(server.workers)
        self._thread = threading.Thread(target=self._run, name="racelab-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (before the servers are stopped on purpose)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def hold(self, name: str) -> None:
        """A service is down on purpose (an injected fault): do not report it as died."""
        with self._lock:
            self._held.add(name)

    def release(self, name: str) -> None:
        """The service is back (or should be): report it again when it dies."""
        with self._lock:
            self._held.discard(name)
        for service in self.services:
            if service.name == name:
                service.dead = not service.alive()

    def scan(self) -> None:
        """One look at everything (the thread calls it every ``interval``)."""
        now = time.monotonic()
        probe = now - self._last_probe >= self.probe_interval
        if probe:
            self._last_probe = now
        for server in self.servers:
            self._scan_server(server, probe)
        for service in self.services:
            with self._lock:
                held = service.name in self._held
            if held or service.dead:
                continue
            if not service.alive():
                service.dead = True
                self.log.record("service-died", f"the {service.name} process racelab started "
                                f"is no longer running", service=service.name)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.scan()
            except Exception as exc:  # a watcher's failure must not end a run
                self.log.record("watch-error", f"{type(exc).__name__}: {exc}")
                return

    def _scan_server(self, server: ServerWatch, probe: bool) -> None:
        if server.exited:
            return
        code = server.group.popen.poll()
        if code is not None:
            server.exited = True
            self.log.record("server-exited", f"{server.name} (pid {server.group.pid}) exited "
                            f"with code {code}", pid=server.group.pid, instance=server.name)
            return
        if server.pool:
            if not (server.any_gone() or len(server.workers) < server.size
                    or time.monotonic() - server.scanned >= self.scan_interval):
                current = server.workers
            else:
                current = pool_workers(server.group)
            gone = sorted(server.workers - current)
            for pid in gone:
                self.log.record("worker-died", f"worker {pid} of {server.name} is gone",
                                pid=pid, instance=server.name)
            for pid in sorted(current - server.workers):
                self.log.record("worker-replaced", f"new worker {pid} of {server.name}"
                                + (f" (after {', '.join(map(str, gone))})" if gone else ""),
                                pid=pid, instance=server.name)
            if current is not server.workers:
                server.learn(current)
        if probe:
            ok = reachable(server.host, server.port, timeout=0.5)
            if not ok and not server.unreachable:
                server.unreachable = True
                self.log.record("instance-unreachable", f"{server.name} at {server.host}:"
                                f"{server.port} refuses connections", instance=server.name)
            elif ok and server.unreachable:
                server.unreachable = False
                self.log.record("info:instance-reachable", f"{server.name} at {server.host}:"
                                f"{server.port} accepts connections again",
                                instance=server.name)
