"""Start a serving mode, wait until every worker answers, and stop its whole process tree."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from demo_server.client import get_json, probe_many
from demo_server.config import ServerConfig
from demo_server.errors import LeftoverProcesses, PortInUse, ServerNotReady
from demo_server.modes import LaunchSpec, server_command
from scenarios.registry import get_scenario

__all__ = ["Supervisor", "free_port", "group_members"]

_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} on {host} is already in use") from None
            raise PortInUse(f"cannot bind {host}:{port}: {exc.strerror}") from None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel whether the group exists
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces): state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclasses.dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    name: str


class Supervisor:
    """Run one server (or a cluster of instances) for the length of a ``with`` block.

    Each process starts in its own process group on loopback and a free port.
    On exit, even on error or Ctrl-C, every group gets SIGTERM, then SIGKILL
    after ``stop_grace`` seconds, and no process of any group may be left.

    Args:
        config: what the app runs (scenario, store, window).
        spec: how it is served (mode, workers, threads, instances, host, port).
        run_dir: where server logs and embedded store files go.
        ready_timeout: seconds to wait for every worker to answer.
        stop_grace: seconds between SIGTERM and SIGKILL.

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
    ) -> None:
        self.spec = spec
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
        self._procs: list[_Proc] = []
        self._manager: _Proc | None = None
        self._prepared = False

    # -- public surface ---------------------------------------------------------------
    @property
    def url(self) -> str:
        """The first (or only) instance's base URL."""
        return self.urls[0]

    @property
    def log_paths(self) -> list[Path]:
        return [p.log_path for p in self._procs]

    def start(self) -> Supervisor:
        """Start every process and wait until all of them answer."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        scenario = get_scenario(self.config.scenario)
        if self.config.store == "sqlite":  # every run starts from a fresh file
            for suffix in ("", "-wal", "-shm"):
                Path(self.config.sqlite_path + suffix).unlink(missing_ok=True)
        scenario.prepare(self.config)
        self._prepared = True
        try:
            if self.config.store == "manager":
                self._start_manager()
            instance = self.spec.instance_spec()
            ports = self._ports()
            for index, port in enumerate(ports):
                config = dataclasses.replace(self.config, instance=index)
                name = "server" if len(ports) == 1 else f"server-{index}"
                proc = self._spawn(server_command(instance, port), config.to_env(), name)
                self._procs.append(proc)
                self.urls.append(f"http://{self.spec.host}:{port}")
            for proc, url in zip(self._procs, self.urls, strict=True):
                self._wait_ready(proc, url, instance.expected_workers)
        except BaseException:
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        """True while every launched server process is still running."""
        return all(p.popen.poll() is None for p in self._procs)

    def exit_codes(self) -> list[int | None]:
        return [p.popen.poll() for p in self._procs]

    def read_state(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The ``/state`` of every worker process that answers, one dict per pid.

        For per-process stores, each worker's copy is its own state, so this
        probes concurrently until every worker pid seen at start-up has answered
        (or ``timeout`` passes; missing workers are simply absent).
        """
        states: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        if self.spec.mode == "processes":
            # Every request is served by a fresh fork: a worker's copy dies with it.
            body = get_json(f"{self.url}/state", timeout=timeout)
            body["url"] = self.url
            return [body]
        for url in self.urls:
            expected = self.worker_pids.get(url, set())
            while True:
                hold = 30 if len(expected) > 1 else 0
                for body in probe_many(f"{url}/state?hold_ms={hold}", max(1, 2 * len(expected))):
                    body["url"] = url
                    states.setdefault(int(body["pid"]), body)
                if expected <= states.keys() or time.monotonic() > deadline:
                    break
            if not self.config.per_process and states:
                break  # a shared store gives one answer for all
        return list(states.values())

    def stop(self) -> list[int]:
        """Stop every process group; return the pids that had to be killed with SIGKILL.

        Raises:
            LeftoverProcesses: if a process of a group survives SIGKILL.
        """
        killed: list[int] = []
        procs = self._procs + ([self._manager] if self._manager else [])
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        for proc in procs:
            while group_members(proc.popen.pid) and time.monotonic() < deadline:
                proc.popen.poll()
                time.sleep(0.02)
            left = group_members(proc.popen.pid)
            if left:
                killed += left
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
        survivors: list[int] = []
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)
            end = time.monotonic() + 5
            while group_members(proc.popen.pid) and time.monotonic() < end:
                time.sleep(0.02)
            survivors += group_members(proc.popen.pid)
            proc.log.close()
        self._procs, self._manager = [], None
        if self._prepared:
            self._prepared = False
            with contextlib.suppress(Exception):
                get_scenario(self.config.scenario).cleanup(self.config)
        if survivors:
            raise LeftoverProcesses(f"processes {survivors} survived SIGKILL")
        return killed

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers ----------------------------------------------------------------------
    def _ports(self) -> list[int]:
        count = self.spec.instance_count
        if self.spec.port:
            first = self.spec.port
            for port in range(first, first + count):
                _check_port(self.spec.host, port)
            return list(range(first, first + count))
        ports: list[int] = []
        while len(ports) < count:
            port = free_port(self.spec.host)
            if port not in ports:
                ports.append(port)
        return ports

    def _spawn(self, argv: list[str], env_extra: dict[str, str], name: str) -> _Proc:
        log_path = self.run_dir / f"{name}.log"
        log = log_path.open("ab")
        env = {**os.environ, **env_extra, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p
        )
        popen = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        return _Proc(popen, log_path, log, name)

    def _start_manager(self) -> None:
        authkey = secrets.token_hex(16)
        log_path = self.run_dir / "manager.log"
        log = log_path.open("ab")
        popen = subprocess.Popen(
            [sys.executable, "-m", "demo_server._manager", authkey],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": _PACKAGE_ROOT},
            start_new_session=True,
        )
        self._manager = _Proc(popen, log_path, log, "manager")
        assert popen.stdout is not None
        line = popen.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            raise ServerNotReady(f"the counter manager did not start:\n{_tail(log_path)}")
        self.config = dataclasses.replace(
            self.config,
            manager_address=f"127.0.0.1:{line.split()[1]}",
            manager_authkey=authkey,
        )

    def _wait_ready(self, proc: _Proc, url: str, workers: int) -> None:
        deadline = time.monotonic() + self.ready_timeout
        pids: set[int] = set()
        self.worker_pids[url] = pids
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise ServerNotReady(
                    f"{self.spec.mode} server exited with code {proc.popen.returncode} "
                    f"before answering; last lines of {proc.log_path}:\n{_tail(proc.log_path)}"
                )
            if not pids:
                try:
                    pids.add(int(get_json(f"{url}/healthz", timeout=1)["pid"]))
                except (OSError, ValueError, KeyError):
                    time.sleep(0.05)
                    continue
            if len(pids) >= workers or self.spec.mode == "processes":
                return
            for body in probe_many(f"{url}/healthz?hold_ms=50", 4 * workers, timeout=2):
                pids.add(int(body["pid"]))
        raise ServerNotReady(
            f"{self.spec.mode} server at {url} did not become ready within "
            f"{self.ready_timeout:.0f} s ({len(pids)} of {workers} workers answered); "
            f"last lines of {proc.log_path}:\n{_tail(proc.log_path)}"
        )
