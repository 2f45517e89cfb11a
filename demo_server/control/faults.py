"""Fault injection during a run, after Jepsen's nemesis: kill a worker, stop or pause the store.

A fault is written ``KIND@AT[+FOR]``, times in seconds (``s``) or milliseconds
(``ms``) from the start of the load::

    kill-worker@2s        SIGKILL one worker of the server 2 s in (gunicorn starts a new one)
    stop-store@1s+2s      stop the store's process at 1 s, start it again 2 s later
    pause-store@1s+2s     SIGSTOP the store's process at 1 s, SIGCONT 2 s later
    pause-store           the same with the defaults: at 1 s, for 1 s

Store faults act only on a process racelab started itself: the ``manager``
store's manager, or a private Redis / PostgreSQL / memcached of
``--start-services``. A server the user runs is never touched (``FaultError``).

``FaultScheduler(supervisor, faults)`` is started when the load starts and
stopped after it; every fault it performs is an event in the supervisor's list
(kinds ``fault:kill-worker``, ``fault:stop-store``, ``fault:restart-store``,
``fault:pause-store``, ``fault:resume-store``; ``info:fault-skipped`` for one that
never came due, ``fault-error`` for one that could not be performed). A
``fault:restart-store`` says whether the store came back empty (``"state":
"lost"``: the manager, a private Redis or memcached) or with its data
(``"kept"``: PostgreSQL): numbers handed out again after an empty restart are the
restart's doing, so the analysis never calls them a race. Stopping
it early undoes what is still in effect: a paused store is resumed, a stopped
one restarted.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from demo_server.basics._context import StartStop
from demo_server.basics.errors import FaultError, RacelabError

if TYPE_CHECKING:  # parsing a spec needs no server machinery
    from demo_server.control.supervisor import OwnedService, Supervisor

__all__ = [
    "FAULT_KINDS",
    "FaultScheduler",
    "FaultSpec",
    "check_store_faults",
    "parse_fault",
    "parse_faults",
]

FAULT_KINDS = ("kill-worker", "stop-store", "pause-store")
_STORE_FAULTS = frozenset({"stop-store", "pause-store"})
_DEFAULT_AT, _DEFAULT_FOR = 1.0, 1.0
_MAX_SECONDS = 24 * 3600.0
_FORMS = ("kill-worker@2s, stop-store@1s+2s or pause-store@1s+2s "
          "(times in s or ms from the start of the load)")
_SPEC = re.compile(r"^(?P<kind>[a-z-]+)(?:@(?P<at>[^+]+))?(?:\+(?P<for>.+))?$")
_TIME = re.compile(r"^(?P<n>\d+(?:\.\d+)?|\.\d+)(?P<unit>ms|s)?$")


@dataclasses.dataclass(frozen=True)
class FaultSpec:
    """One fault: what, when (seconds after the load starts), and for how long.

    Attributes:
        kind: one of ``FAULT_KINDS``.
        at_s: seconds from the start of the load.
        duration_s: how long a store stays stopped or paused (0 for ``kill-worker``).
    """

    kind: str
    at_s: float
    duration_s: float = 0.0

    def __str__(self) -> str:
        text = f"{self.kind}@{self.at_s:g}s"
        return text + (f"+{self.duration_s:g}s" if self.duration_s else "")

    @property
    def on_store(self) -> bool:
        return self.kind in _STORE_FAULTS


def _seconds(text: str, whole: str) -> float:
    match = _TIME.match(text.strip())
    if not match:
        raise FaultError(f"cannot read the time {text!r} in fault {whole!r}; give {_FORMS}")
    value = float(match["n"]) / (1000 if match["unit"] == "ms" else 1)
    if not math.isfinite(value) or value > _MAX_SECONDS:
        raise FaultError(f"the time {text!r} in fault {whole!r} is beyond 24 hours; "
                         f"give {_FORMS}")
    return value


def parse_fault(text: str) -> FaultSpec:
    """Read one fault spec.

    Raises:
        FaultError: one sentence naming the accepted forms.
    """
    match = _SPEC.match(text.strip())
    if not match or match["kind"] not in FAULT_KINDS:
        raise FaultError(f"unknown fault {text!r}; give {_FORMS}")
    kind = match["kind"]
    at = _seconds(match["at"], text) if match["at"] is not None else _DEFAULT_AT
    if kind == "kill-worker":
        if match["for"] is not None:
            raise FaultError(f"kill-worker takes no duration ({text!r}); give {_FORMS}")
        return FaultSpec(kind, at)
    duration = _seconds(match["for"], text) if match["for"] is not None else _DEFAULT_FOR
    if duration <= 0:
        raise FaultError(f"{kind} needs a duration above 0 ({text!r}); give {_FORMS}")
    return FaultSpec(kind, at, duration)


def parse_faults(texts: Iterable[str | FaultSpec]) -> tuple[FaultSpec, ...]:
    """Read several fault specs (``FaultSpec`` values pass through)."""
    return tuple(t if isinstance(t, FaultSpec) else parse_fault(t) for t in texts)


#: The stores whose server racelab starts when asked (``--start-services``).
_EXTERNAL = {"redis": ("redis", "redis_url"), "postgres": ("postgres", "postgres_dsn"),
             "memcached": ("memcached", "memcached")}


def check_store_faults(faults: Iterable[str | FaultSpec], store: str,
                       session_backend: str = "filesystem", config: Any = None) -> None:
    """Refuse a store fault that no process of this run could take, before anything starts.

    Args:
        faults: the run's fault specs.
        store: the store under test ("" for a user's app, whose state is its own).
        session_backend: the session store's backend (``redis`` has a server).
        config: the run's ``ServerConfig`` once its stores are known: an external
            store's server must then be one racelab started (``--start-services``).

    Raises:
        FaultError: one sentence naming what racelab can stop.
    """
    if not any(f.on_store for f in parse_faults(faults)):
        return
    if store == "manager":
        return  # racelab starts the manager of every run
    external = _EXTERNAL.get("redis" if store == "session" and session_backend == "redis"
                             else store)
    if external is None:
        what = f"the {store} store" if store else "your app's state"
        raise FaultError(
            f"cannot stop or pause {what}: it has no process of its own (store faults apply "
            "to the manager store, and to redis, postgres, memcached started with "
            "--start-services)")
    if config is None:
        return
    from demo_server.control.services import running_service

    if running_service(external[0], getattr(config, external[1])) is None:
        raise FaultError(
            f"cannot stop or pause the {store} store: its server was not started by "
            "racelab, and racelab never stops a server it did not start "
            "(--start-services runs a private one)")


@dataclasses.dataclass(order=True)
class _Action:
    at_s: float
    order: int
    fault: FaultSpec = dataclasses.field(compare=False)
    begin: bool = dataclasses.field(compare=False, default=True)


class FaultScheduler(StartStop["FaultScheduler"]):
    """Perform faults against a running supervisor on a timeline that starts with ``start``.

    Args:
        supervisor: the running server.
        faults: fault specs (text or ``FaultSpec``).

    Raises:
        FaultError: a spec cannot be read, or a store fault has no process racelab
            started to act on (an external store, or a store without a server).
    """

    def __init__(self, supervisor: Supervisor, faults: Sequence[str | FaultSpec]) -> None:
        self.supervisor = supervisor
        self.faults = parse_faults(faults)
        self._service: OwnedService | None = None
        if any(f.on_store for f in self.faults):
            self._service = self._store_service()
        actions: list[_Action] = []
        for fault in self.faults:
            actions.append(_Action(fault.at_s, len(actions), fault))
            if fault.on_store:
                actions.append(_Action(fault.at_s + fault.duration_s, len(actions), fault, False))
        self._actions = sorted(actions)
        self._active: list[FaultSpec] = []
        self._done: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _store_service(self) -> OwnedService:
        config = self.supervisor.config
        services = self.supervisor.owned_services()
        if services:
            return services[0]
        store = "" if self.supervisor.spec.app else config.store
        check_store_faults(self.faults, store, config.session_backend, config)
        raise FaultError(f"cannot stop or pause the {config.store} store: no process of it "
                         "was found")

    # -- public surface ---------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> FaultScheduler:
        """Start the timeline now (call it as the load starts); again: no effect."""
        if self._thread is None and not self._stop.is_set():
            self._t0 = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="racelab-faults",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Cancel faults not yet due and undo those in effect (resume, restart).

        A fault that never came due is recorded as ``info:fault-skipped``, so a run
        never looks faulted, or unfaulted, by mistake.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            active, self._active = self._active, []
        for fault in active:
            self._end(fault, early=True)
        for action in self._actions:
            if action.begin and action.order not in self._done:
                self._done.add(action.order)
                self._record("info:fault-skipped", action.fault,
                             f"{action.fault} did not come due before the load ended")

    # -- the timeline -----------------------------------------------------------------
    def _run(self) -> None:
        for action in self._actions:
            delay = self._t0 + action.at_s - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if self._stop.is_set():
                return
            try:
                if action.begin:
                    self._done.add(action.order)
                    self._begin(action.fault)
                else:
                    with self._lock:
                        if action.fault not in self._active:
                            continue
                        self._active.remove(action.fault)
                    self._end(action.fault)
            except (OSError, RacelabError) as exc:
                self._record("fault-error", action.fault, f"{action.fault} failed: {exc}")

    def _record(self, kind: str, fault: FaultSpec, detail: str, **extra: Any) -> None:
        self.supervisor.record(kind, detail, fault=str(fault), **extra)

    def _begin(self, fault: FaultSpec) -> None:
        if fault.kind == "kill-worker":
            self._kill_worker(fault)
            return
        service = self._service
        assert service is not None
        with self._lock:
            self._active.append(fault)
        if fault.kind == "pause-store":
            self._record("fault:pause-store", fault,
                         f"SIGSTOP to the {service.name} process (pid {service.group.pid})",
                         service=service.name, pid=service.group.pid)
            service.group.signal(signal.SIGSTOP)
        else:
            self.supervisor.expect_down(service.name)
            self._record("fault:stop-store", fault,
                         f"stopping the {service.name} process (pid {service.group.pid})",
                         service=service.name, pid=service.group.pid)
            service.stop(grace=2.0)

    def _end(self, fault: FaultSpec, early: bool = False) -> None:
        service = self._service
        assert service is not None
        when = " (the load ended first)" if early else ""
        if fault.kind == "pause-store":
            service.group.signal(signal.SIGCONT)
            self._record("fault:resume-store", fault,
                         f"SIGCONT to the {service.name} process{when}", service=service.name)
            return
        try:
            service.restart()
        finally:
            self.supervisor.expect_up(service.name)
        state = "kept" if service.keeps_state else "lost"
        emptied = "" if service.keeps_state else " with none of its earlier state"
        self._record("fault:restart-store", fault,
                     f"the {service.name} process runs again (pid {service.group.pid})"
                     f"{emptied}{when}", service=service.name, pid=service.group.pid,
                     state=state)

    def _kill_worker(self, fault: FaultSpec) -> None:
        workers = self.supervisor.workers(0)
        if not workers:
            self._record("fault:kill-worker", fault, "no worker was running to kill")
            return
        pid = workers[0]
        mode = self.supervisor.spec.mode
        what = "worker" if pid != self.supervisor.server_pids[0] else f"{mode} server process"
        self._record("fault:kill-worker", fault, f"SIGKILL to {what} {pid}", pid=pid)
        os.kill(pid, signal.SIGKILL)
