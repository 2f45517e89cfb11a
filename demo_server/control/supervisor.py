"""Start a serving mode, wait until every worker answers, watch it, and stop its whole tree."""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from demo_server.basics._context import StartStop
from demo_server.basics.client import get_json, probe_until
from demo_server.basics.errors import ServerNotReady, TargetError
from demo_server.basics.files import fresh_file
from demo_server.basics.procs import (
    SOURCE_ROOT,
    ProcessGroup,
    Zygote,
    check_host,
    check_port,
    free_port,
    free_ports,
    group_members,
    spawn,
    stop_groups,
    url_host,
)
from demo_server.control.modes import MULTI_WORKER_MODES, LaunchSpec, server_command
from demo_server.control.services import running_service
from demo_server.control.watch import EventLog, ServerWatch, ServiceWatch, Watcher, pool_workers
from demo_server.served.config import ServerConfig
from demo_server.served.stamp import HEALTH_PATH
from demo_server.served.target import ENV_ERRORS, ENV_LOADED, ENV_TARGET, Target, resolve_target
from scenarios.registry import get_scenario

__all__ = ["OwnedService", "ServerZygotes", "Supervisor", "check_app_loads", "free_port",
           "group_members"]

#: Unix socket paths longer than this do not fit in ``sockaddr_un`` everywhere.
_MAX_SOCKET_PATH = 100


def _tail(path: Path | None, lines: int = 20) -> str:
    if path is None:
        return "(no log)"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class OwnedService(Protocol):
    """A store process racelab started itself: what faults may stop, pause and restart."""

    name: str
    group: ProcessGroup
    #: True when a restart finds the store's data again; False when it starts empty
    keeps_state: bool

    def alive(self) -> bool: ...

    def stop(self, grace: float = 5.0) -> None: ...

    def restart(self) -> None: ...


class _Manager:
    """The ``manager`` store's counter manager process (``demo_server.served._manager``).

    Whoever holds its authkey may send it pickles, which it unpickles: run code as
    racelab's user. So the key is in no argv (``ps`` shows those to every user)
    and in no environment: the manager reads it on its stdin, and the workers
    from ``manager.key``, a file only racelab's user can read (mode 0600, created
    afresh, never through a symbolic link), removed when the run stops.
    """

    name = "manager"
    keeps_state = False  # a restarted manager holds a fresh, empty counter

    def __init__(self, run_dir: Path) -> None:
        self._authkey = secrets.token_hex(16)
        self.key_file = run_dir / "manager.key"
        self._write_key()
        self.log_path = fresh_file(run_dir / "manager.log")  # a restart appends to it
        self.port = 0
        self.group: ProcessGroup = self._spawn()

    def _write_key(self) -> None:
        self.key_file.unlink(missing_ok=True)  # a link left there is removed, not followed
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(self._authkey + "\n")

    def _spawn(self) -> ProcessGroup:
        argv = [sys.executable, "-m", "demo_server.served._manager"]
        if self.port:
            argv.append(str(self.port))
        group = spawn(argv, "manager", log_path=self.log_path, stdout=subprocess.PIPE,
                      stdin=subprocess.PIPE, env={**os.environ, "PYTHONPATH": SOURCE_ROOT})
        assert group.popen.stdin is not None and group.popen.stdout is not None
        try:
            group.popen.stdin.write(self._authkey.encode() + b"\n")
            group.popen.stdin.close()
        except OSError:
            pass  # it died at once: its log says why, below
        line = group.popen.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            stop_groups([group], 1.0, raise_leftovers=False)
            raise ServerNotReady(f"the counter manager did not start:\n{_tail(self.log_path)}")
        self.port = int(line.split()[1])
        return group

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.group.alive()

    def stop(self, grace: float = 5.0) -> None:
        stop_groups([self.group], grace)

    def forget_key(self) -> None:
        """Remove the key file: the run is over."""
        self.key_file.unlink(missing_ok=True)

    def restart(self) -> None:
        """Start it again on its old port (with a fresh, empty counter)."""
        if not self.alive():
            self.group = self._spawn()


_LOAD_ONCE = """import sys
from demo_server.basics.errors import TargetError
from demo_server.served.target import load_target
try:
    load_target(sys.argv[1])
except TargetError as exc:
    print(f"\\n{exc}", flush=True)  # the last line of its output (an app may print too)
    sys.exit(2)
"""


def check_app_loads(text: str, timeout: float = 30.0) -> Target:
    """Import a user's app once in a fresh interpreter, as each worker will.

    A matrix calls it before its first cell: an app that cannot be imported is
    one line of bad input, not a column of failed cells.

    Raises:
        TargetError: a bad target, an import that raises or calls ``sys.exit``,
            or one that has not returned after ``timeout`` seconds.
    """
    target = resolve_target(text)
    paths = [SOURCE_ROOT] + ([] if target.is_file else [os.getcwd()])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (*paths, os.environ.get("PYTHONPATH", "")) if p)}
    group = spawn([sys.executable, "-c", _LOAD_ONCE, str(target)], "app-import",
                  stdout=subprocess.PIPE, env=env)
    try:
        out, _ = group.popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TargetError(f"cannot load the app {text!r}: importing it had not returned after "
                          f"{timeout:.0f} s (an import that hangs, or waits for something that "
                          "never comes?)") from None
    finally:
        stop_groups([group], 1.0, raise_leftovers=False)
    if group.popen.returncode:
        lines = (out or b"").decode(errors="replace").strip().splitlines()
        raise TargetError(lines[-1] if lines else f"cannot load the app {text!r}: importing it "
                          f"ended its interpreter with code {group.popen.returncode}")
    return target


#: What a server zygote imports, per family of modes: only what that server process
#: imports anyway before it serves. gevent's workers patch the standard library
#: before they import the app, so their zygote imports gunicorn and its gevent worker alone.
_ZYGOTE_MODULES = {
    "werkzeug": ("demo_server.app.serve", "demo_server.app", "scenarios.counter.stores"),
    "gunicorn": ("gunicorn", "gunicorn.app.wsgiapp", "gunicorn.workers.sync",
                 "gunicorn.workers.gthread", "demo_server.app", "scenarios.counter.stores"),
    "gevent": ("gunicorn", "gunicorn.app.wsgiapp", "gunicorn.workers.ggevent"),
}
_ZYGOTE_FAMILY = {"single": "werkzeug", "threaded": "werkzeug", "processes": "werkzeug",
                  "gunicorn-sync": "gunicorn", "gunicorn-gthread": "gunicorn",
                  "gevent": "gevent"}


class ServerZygotes:
    """One zygote per family of serving modes, started on first use, for a whole matrix.

    A server forked from one is the process ``python -m gunicorn ...`` (or
    ``demo_server.app.serve``) would be, without importing gunicorn, Werkzeug and Flask
    again (``demo_server.basics.procs.Zygote``). racelab's own app only: a user's app is
    always started afresh.
    """

    def __init__(self) -> None:
        self._zygotes: dict[str, Zygote] = {}

    def __enter__(self) -> ServerZygotes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def for_mode(self, mode: str) -> Zygote:
        """The zygote that serves ``mode`` (a non-cluster mode)."""
        family = _ZYGOTE_FAMILY[mode]
        if family not in self._zygotes:
            self._zygotes[family] = Zygote(_ZYGOTE_MODULES[family])
        return self._zygotes[family]

    def prepare(self, modes: Iterable[str]) -> None:
        """Start the zygotes that ``modes`` will need now: their imports run meanwhile."""
        for mode in modes:
            self.for_mode(LaunchSpec(mode=mode).instance_spec().mode)

    def wait_ready(self) -> None:
        """Wait until every zygote started has done its imports, so none runs during a swarm."""
        for zygote in self._zygotes.values():
            zygote.wait_ready()

    def close(self) -> None:
        for zygote in self._zygotes.values():
            zygote.close()
        self._zygotes.clear()


class Supervisor(StartStop["Supervisor"]):
    """Run one server (or a cluster of instances) for the length of a ``with`` block.

    Each process starts in its own process group on loopback and a free port.
    While it runs, a watcher records worker deaths and restarts, instances that
    stop accepting connections and store processes that die (``events()``). On
    exit, even on error or Ctrl-C, every process tree gets SIGTERM, then SIGKILL
    after ``stop_grace`` seconds, no process may be left, and the events are
    written to ``events.json`` in the run directory.

    Args:
        config: what the app runs (scenario, store, window).
        spec: how it is served (mode, workers, threads, instances, host, port, app).
        run_dir: where server logs, embedded store files and ``events.json`` go.
        ready_timeout: seconds to wait for every worker to answer.
        stop_grace: seconds between SIGTERM and SIGKILL.
        zygotes: fork racelab's own servers from these instead of starting
            each interpreter afresh (a matrix keeps one set for all its cells).

    Example:
        >>> with Supervisor(ServerConfig(store="lock"), LaunchSpec("threaded"), tmp) as sup:
        ...     get_json(sup.url + "/incr")
    """

    def __init__(
        self,
        config: ServerConfig,
        spec: LaunchSpec,
        run_dir: Path,
        ready_timeout: float = 30.0,
        stop_grace: float = 5.0,
        zygotes: ServerZygotes | None = None,
    ) -> None:
        self.spec = spec
        self.zygotes = zygotes
        self.run_dir = Path(run_dir).resolve()
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.config = dataclasses.replace(
            config,
            mode=spec.mode,
            sqlite_path=config.sqlite_path or str(self.run_dir / "counter.sqlite3"),
            session_dir=config.session_dir or str(self.run_dir / "sessions"),
            namespace=(
                config.namespace
                if config.namespace != "racelab"
                else f"racelab_{uuid.uuid4().hex[:10]}"
            ),
        )
        self.urls: list[str] = []
        #: worker pids seen answering, per instance URL
        self.worker_pids: dict[str, set[int]] = {}
        self.target: Target | None = None
        self._procs: list[ProcessGroup] = []
        self._manager: _Manager | None = None
        self._prepared = False
        self._log = EventLog()
        self._watcher: Watcher | None = None

    # -- public surface ---------------------------------------------------------------
    @property
    def url(self) -> str:
        """The first (or only) instance's base URL."""
        return self.urls[0]

    @property
    def log_paths(self) -> list[Path]:
        return [p.log_path for p in self._procs if p.log_path is not None]

    @property
    def health_path(self) -> str:
        """The readiness path: racelab's ``/healthz``, or the stamp's for a user's app."""
        return HEALTH_PATH if self.spec.app else "/healthz"

    def start(self) -> Supervisor:
        """Start every process and wait until all of them answer.

        Raises:
            BadHost: the host is not an address of this machine.
            PortInUse: a requested port is taken.
            TargetError: the user's app cannot be found, imported or started.
            ServerNotReady: a server exited, or not every worker answered in time.
        """
        check_host(self.spec.host, allow_remote=self.spec.allow_remote)
        if self.spec.app:
            self.target = resolve_target(self.spec.app)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        scenario = get_scenario(self.config.scenario)
        if self.config.store == "sqlite":  # every run starts from a fresh file
            for suffix in ("", "-wal", "-shm"):
                Path(self.config.sqlite_path + suffix).unlink(missing_ok=True)
        scenario.prepare(self.config)
        self._prepared = True
        try:
            if self.config.store == "manager":
                self._manager = _Manager(self.run_dir)
                self.config = dataclasses.replace(
                    self.config, manager_address=self._manager.address,
                    manager_key_file=str(self._manager.key_file))
            instance = self.spec.instance_spec()
            ports = self._ports()
            for index, port in enumerate(ports):
                config = dataclasses.replace(self.config, instance=index)
                name = "server" if len(ports) == 1 else f"server-{index}"
                argv = server_command(instance, port, self._control_socket(name))
                self._procs.append(self._spawn(argv, config.to_env(), name))
                self.urls.append(f"http://{url_host(self.spec.host)}:{port}")
            for proc, url in zip(self._procs, self.urls, strict=True):
                self._wait_ready(proc, url, instance.expected_workers)
            self._watch(instance, ports)
        except BaseException:
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        """True while every launched server process is still running."""
        return all(p.alive() for p in self._procs)

    def exit_codes(self) -> list[int | None]:
        return [p.popen.poll() for p in self._procs]

    def events(self) -> list[dict[str, Any]]:
        """Everything recorded so far: ``{"t_ns", "wall", "kind", "detail", ...}`` dicts.

        ``t_ns`` is ``time.monotonic_ns()``; see ``demo_server.control.watch`` for the kinds.
        """
        return self._log.events()

    def record(self, kind: str, detail: str, **extra: Any) -> dict[str, Any]:
        """Add an event (faults use it) to the run's list."""
        return self._log.record(kind, detail, **extra)

    @property
    def server_pids(self) -> list[int]:
        """The pid of each instance's server process (a gunicorn arbiter, or Werkzeug)."""
        return [p.pid for p in self._procs]

    def workers(self, instance: int = 0) -> list[int]:
        """The pids serving instance ``instance`` now: a gunicorn pool's workers, or the server."""
        proc = self._procs[instance]
        if self.spec.instance_spec().mode in MULTI_WORKER_MODES:
            return sorted(pool_workers(proc))
        return [proc.pid] if proc.alive() else []

    def owned_services(self) -> list[OwnedService]:
        """The store processes of this run that racelab itself started.

        The ``manager`` store's manager, or a private Redis / PostgreSQL /
        memcached started by ``demo_server.control.services`` at the store's address.
        An external server the user runs is never listed.
        """
        found: list[OwnedService] = []
        if self._manager is not None:
            found.append(self._manager)
        config = self.config
        wanted = {
            "redis": [("redis", config.redis_url)],
            "postgres": [("postgres", config.postgres_dsn)],
            "memcached": [("memcached", config.memcached)],
            "session": [("redis", config.redis_url)] if config.session_backend == "redis" else [],
        }.get(config.store, [])
        for name, address in wanted:
            service = running_service(name, address)
            if service is not None:
                found.append(service)
        return found

    def expect_down(self, name: str) -> None:
        """A store process is stopped on purpose: the watch does not call it died."""
        if self._watcher is not None:
            self._watcher.hold(name)

    def expect_up(self, name: str) -> None:
        """The store process is back: the watch reports it again if it dies."""
        if self._watcher is not None:
            self._watcher.release(name)

    def read_state(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The ``/state`` of every worker process that answers, one dict per pid.

        For per-process stores, each worker's copy is its own state, so this
        probes concurrently until every worker running now has answered (or
        ``timeout`` passes; missing workers are simply absent). A shared store
        gives one answer for all, unless its update is not atomic: each worker
        then counts its own retries and aborts, and every one is read. A worker
        that died during the run is not waited for; its replacement answers with
        its own, fresh copy.
        """
        states: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        if self.spec.mode == "processes":
            # Every request is served by a fresh fork: a worker's copy dies with it.
            body = get_json(f"{self.url}/state", timeout=timeout)
            body["url"] = self.url
            return [body]
        pool = self.spec.instance_spec().mode in MULTI_WORKER_MODES
        every = self.config.per_process or self.config.update != "atomic"
        for index, url in enumerate(self.urls):
            expected = set(self.workers(index)) if pool else self.worker_pids.get(url, set())
            hold = 10 if len(expected) > 1 else 0

            def enough(seen: set[int], expected: set[int] = expected) -> bool:
                return expected <= seen or not every

            answers = probe_until(f"{url}/state?hold_ms={hold}", enough,
                                  max(1, 2 * len(expected)), until=deadline, timeout=5)
            for pid, body in answers.items():
                body["url"] = url
                states.setdefault(pid, body)
            if not every and states:
                break  # a shared store gives one answer for all
        return list(states.values())

    def stop(self, quick: bool = False) -> list[int]:
        """Stop every process tree; return the pids that had to be killed with SIGKILL.

        Args:
            quick: the run is over and its final state read, so nothing the server
                still holds matters: racelab's own app gets SIGKILL at once (a
                graceful gunicorn stop takes 0.1-0.3 s: its arbiter reaps its workers
                in steps of 0.1 s). A user's app may still have work to do at exit:
                its gunicorn gevent server gets SIGQUIT (gunicorn's quick shutdown:
                workers exit at once) instead of SIGTERM (the graceful one, which
                takes its gevent workers about a second; measured, sync and gthread
                workers stop faster on SIGTERM, since the arbiter then runs one stop
                instead of two).

        Raises:
            LeftoverProcesses: if a process survives SIGKILL.
        """
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        manager = self._manager
        groups = self._procs + ([manager.group] if manager else [])
        first: dict[str, int] = {}
        if quick and self.target is None:
            first = {p.name: signal.SIGKILL for p in self._procs}
        elif quick and self.spec.instance_spec().mode == "gevent":
            first = {p.name: signal.SIGQUIT for p in self._procs}
        try:
            killed = stop_groups(groups, self.stop_grace, first_signal=first)
        finally:
            for proc in self._procs:  # a killed gunicorn leaves its control socket behind
                socket_path = self._control_socket(proc.name)
                if socket_path:
                    Path(socket_path).unlink(missing_ok=True)
            self._procs, self._manager = [], None
            if manager is not None:
                manager.forget_key()
            if self._prepared:
                self._prepared = False
                try:
                    get_scenario(self.config.scenario).cleanup(self.config)
                except Exception as exc:  # cleanup must not hide the run
                    self.record("info:cleanup-error", f"{type(exc).__name__}: {exc}")
            if self.run_dir.is_dir():
                self._log.write(self.run_dir / "events.json")
        return killed

    # -- helpers ----------------------------------------------------------------------
    def _ports(self) -> list[int]:
        count = self.spec.instance_count
        if self.spec.port:
            first = self.spec.port
            for port in range(first, first + count):
                check_port(self.spec.host, port)
            return list(range(first, first + count))
        return free_ports(count, self.spec.host)

    def _control_socket(self, name: str) -> str:
        path = str(self.run_dir / f"{name}.ctl")
        return path if len(path.encode()) <= _MAX_SOCKET_PATH else ""

    def _spawn(self, argv: list[str], env_extra: dict[str, str], name: str) -> ProcessGroup:
        env = {**os.environ, **env_extra, "PYTHONUNBUFFERED": "1"}
        paths = [SOURCE_ROOT]
        if self.target is not None:
            env[ENV_TARGET] = str(self.target)
            for variable, suffix in ((ENV_ERRORS, "target-error"), (ENV_LOADED, "target-loaded")):
                marker = self.run_dir / f"{name}.{suffix}"
                marker.unlink(missing_ok=True)
                env[variable] = str(marker)
            if not self.target.is_file:
                paths.append(os.getcwd())  # ``package.module:app`` from where racelab runs
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (*paths, env.get("PYTHONPATH", "")) if p
        )
        log_path = fresh_file(self.run_dir / f"{name}.log")  # this run's log alone
        # racelab's zygotes imported Flask and gunicorn under racelab's own interpreter:
        # a server on another one starts afresh.
        if self.zygotes is not None and self.target is None and self.spec.own_python:
            zygote = self.zygotes.for_mode(self.spec.instance_spec().mode)
            return zygote.spawn(argv, name, log_path, env=env, append=True)
        return spawn(argv, name, log_path=log_path, env=env)

    def _exited_error(self, proc: ProcessGroup) -> Exception:
        error_file = self.run_dir / f"{proc.name}.target-error"
        if self.target is not None and error_file.is_file():
            reason = error_file.read_text(encoding="utf-8", errors="replace").strip()
            return TargetError(f"{reason} (the whole traceback is in {proc.log_path})")
        return ServerNotReady(
            f"{self.spec.mode} server exited with code {proc.popen.returncode} "
            f"before answering; last lines of {proc.log_path}:\n{_tail(proc.log_path)}"
        )

    def _wait_ready(self, proc: ProcessGroup, url: str, workers: int) -> None:
        deadline = time.monotonic() + self.ready_timeout
        pids: set[int] = set()
        self.worker_pids[url] = pids
        # Every request of ``processes`` is a fresh fork: one answer is all there is.
        want = 1 if self.spec.mode == "processes" else workers
        answers: dict[int, dict[str, Any]] = {}
        # Concurrent probes that each keep their worker busy 10 ms reach every
        # worker of a pool; they end as soon as every worker has answered.
        probe = f"{url}{self.health_path}" + ("?hold_ms=10" if want > 1 else "")
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise self._exited_error(proc)
            answers = probe_until(probe, lambda seen: len(seen) >= want, 2 * want,
                                  until=min(deadline, time.monotonic() + 0.25), seen=answers)
            pids.update(answers)
            if len(pids) >= want:
                return
        if self.target is not None and not pids and not (
                self.run_dir / f"{proc.name}.target-loaded").exists():
            raise TargetError(
                f"cannot load the app {str(self.target)!r}: importing it had not returned after "
                f"{self.ready_timeout:.0f} s (an import that hangs, or waits for something that "
                f"never comes?); its output is in {proc.log_path}")
        raise ServerNotReady(
            f"{self.spec.mode} server at {url} did not become ready within "
            f"{self.ready_timeout:.0f} s ({len(pids)} of {want} workers answered); "
            f"last lines of {proc.log_path}:\n{_tail(proc.log_path)}"
        )

    def _watch(self, instance: LaunchSpec, ports: list[int]) -> None:
        pool = instance.mode in MULTI_WORKER_MODES
        servers = [ServerWatch(p.name, p, self.spec.host, port, pool)
                   for p, port in zip(self._procs, ports, strict=True)]
        services = [ServiceWatch(s.name, s.alive) for s in self.owned_services()]
        self._watcher = Watcher(self._log, servers, services).start()
