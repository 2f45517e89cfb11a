"""Processes, ports and reachability, once: what every launcher of racelab uses.

Every process racelab starts (servers, the counter manager, private services,
Locust) starts with ``spawn`` in a session (and process group) of its own and is
stopped with ``stop_groups``, which stops the whole *tree*: the group and every
descendant seen before the first signal, since a forked child (Werkzeug's
``processes=N``) can outlive its parent and a child may leave the group.
psutil does the walking, so this works wherever psutil does (Linux, macOS).

Example:
    >>> group = spawn([sys.executable, "-m", "http.server", str(free_port())], name="web")
    >>> wait_listening("127.0.0.1", port, timeout=10, alive=group.alive)
    >>> stop_groups([group])  # SIGTERM, SIGKILL after the grace period, nothing left
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

from demo_server.basics.errors import BadHost, LeftoverProcesses, PortInUse
from demo_server.basics.files import open_new

__all__ = [
    "SOURCE_ROOT",
    "ProcessGroup",
    "Zygote",
    "check_host",
    "check_port",
    "free_port",
    "free_ports",
    "group_alive",
    "group_members",
    "is_loopback",
    "live",
    "reachable",
    "spawn",
    "spawn_to_files",
    "stop_groups",
    "tree",
    "url_host",
    "wait_listening",
]


# -- ports and reachability ------------------------------------------------------------
def check_host(host: str, allow_remote: bool = False) -> str:
    """Check that ``host`` is an address (or name) this machine can listen on.

    Args:
        host: the address or name to bind.
        allow_remote: the user said that a listener other machines reach is wanted
            (gunicorn too binds loopback unless told otherwise).

    Returns:
        ``host`` unchanged.

    Raises:
        BadHost: when it is not a valid address, does not resolve, is not one of
            this machine's addresses, or (without ``allow_remote``) is not loopback.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host or len(host) > 253 or any(c.isspace() for c in host):
            raise BadHost(f"{host!r} is not a host name or IP address") from None
    try:
        infos = socket.getaddrinfo(host, 0, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise BadHost(f"cannot listen on {host!r}: not an IP address or a known host name"
                      ) from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address[0], 0))
        except OSError as exc:
            raise BadHost(f"cannot listen on {host}: {exc.strerror or exc}") from None
    if not allow_remote and not is_loopback(host):
        raise BadHost(f"{host} is not loopback: other machines could reach the server there, "
                      "and it answers anyone (no authentication); say so with --allow-remote")
    return host


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing listens on right now.

    Raises:
        BadHost: when ``host`` cannot be bound at all.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, 0))
        except (OSError, OverflowError, UnicodeError) as exc:
            raise BadHost(f"cannot listen on {host!r}: {getattr(exc, 'strerror', None) or exc}"
                          ) from None
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports on ``host``."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


def check_port(host: str, port: int) -> None:
    """Raise PortInUse unless ``port`` on ``host`` can be bound right now.

    The probe binds as the servers do, with ``SO_REUSEADDR``: connections of an
    earlier run left in TIME_WAIT do not stop gunicorn or Werkzeug, so they do not
    make the port "in use"; a socket listening there does.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} on {host} is already in use") from None
            raise PortInUse(f"cannot bind {host}:{port}: {exc.strerror}") from None


def url_host(host: str) -> str:
    """``host`` as a URL or a ``HOST:PORT`` bind names it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is this machine's loopback."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None)
    except (OSError, UnicodeError):
        return False
    try:
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)
    except ValueError:
        return False


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connection to ``host:port`` opens within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except (OSError, OverflowError, UnicodeError):
        return False


def wait_listening(
    host: str, port: int, timeout: float, alive: Callable[[], bool] = lambda: True,
    interval: float = 0.05,
) -> bool:
    """Wait until ``host:port`` accepts connections.

    Returns:
        True once it does; False when ``timeout`` passes or ``alive()`` turns false.
    """
    deadline = time.monotonic() + timeout
    while not reachable(host, port, timeout=0.2):
        if not alive() or time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# -- process trees -----------------------------------------------------------------------
def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _is_live(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def live(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    """The processes of ``procs`` still running (zombies count as gone: PID 1 may not reap)."""
    return [p for p in procs if _is_live(p)]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (OSError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return members


def tree(pid: int, pgid: int | None = None) -> list[psutil.Process]:
    """``pid``, all its live descendants and the live members of group ``pgid``."""
    found: dict[int, psutil.Process] = {}
    root = _process(pid)
    if root is not None:
        found[root.pid] = root
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            for child in root.children(recursive=True):
                found.setdefault(child.pid, child)
    if pgid is not None:
        for member in group_members(pgid):
            proc = _process(member)
            if proc is not None:
                found.setdefault(member, proc)
    return live(found.values())


class ProcessGroup:
    """A child started in a session of its own, and everything it starts.

    Attributes:
        popen: the leader.
        name: a short name for messages and log files.
        log_path: where its output goes (or None).
    """

    def __init__(self, popen: subprocess.Popen[bytes], name: str,
                 log_path: Path | None = None, log: IO[bytes] | None = None) -> None:
        self.popen = popen
        self.name = name
        self.log_path = log_path
        self._log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def pgid(self) -> int:
        """The group id: the leader's pid (``start_new_session``)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the leader runs."""
        return self.popen.poll() is None

    def members(self) -> list[psutil.Process]:
        """The live tree: leader, descendants and group members."""
        return tree(self.popen.pid, self.pgid)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole group (and to descendants that left it)."""
        procs = self.members()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc.send_signal(sig)

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def spawn(
    argv: Sequence[str],
    name: str,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdout: int | IO[bytes] | None = None,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    **popen: Any,
) -> ProcessGroup:
    """Start ``argv`` in a new session (its own process group), stdin closed unless given.

    Args:
        argv: the command.
        name: a short name for messages.
        log_path: append stdout and stderr to this file (unless ``stdout`` is given,
            then only stderr goes there); a link there is replaced, never followed.
        env: the whole environment (default: this process's).
        cwd: working directory.
        stdout: where stdout goes instead (e.g. ``subprocess.PIPE``).
        stdin: where stdin comes from (``subprocess.PIPE``: a secret the child reads
            there is never in its argv or its environment).
        **popen: more ``subprocess.Popen`` arguments (``user``, ``group``...).

    Returns:
        The started group.
    """
    log = open_new(log_path, "wb", append=True) if log_path is not None else None
    out: int | IO[bytes] | None = stdout if stdout is not None else (
        log if log is not None else subprocess.DEVNULL)
    err: int | IO[bytes] | None = (
        log if stdout is not None and log is not None
        else subprocess.STDOUT if log is not None else subprocess.DEVNULL)
    try:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=err, stdin=stdin,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
            **popen,
        )
    except BaseException:
        if log is not None:
            log.close()
        raise
    return ProcessGroup(proc, name, log_path, log)


def stop_groups(
    groups: Sequence[ProcessGroup],
    grace: float = 5.0,
    first_signal: int | Mapping[str, int] = signal.SIGTERM,
    raise_leftovers: bool = True,
) -> list[int]:
    """Stop every group's whole tree: ``first_signal``, then SIGKILL after ``grace``.

    The trees are walked before the first signal, so children that outlive
    their parent, or left its group, are stopped too.

    Args:
        groups: what to stop (all at once).
        grace: seconds between the first signal and SIGKILL.
        first_signal: the polite signal, or one per group name (PostgreSQL's is SIGINT).
        raise_leftovers: raise LeftoverProcesses when anything survives SIGKILL.

    Returns:
        The pids that had to be killed with SIGKILL.

    Raises:
        LeftoverProcesses: if a process survives SIGKILL (and ``raise_leftovers``).
    """
    trees = {id(g): g.members() for g in groups}
    for group in groups:
        sig = (first_signal.get(group.name, signal.SIGTERM)
               if isinstance(first_signal, Mapping) else first_signal)
        for proc in trees[id(group)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc.send_signal(sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group.pgid, sig)
    deadline = time.monotonic() + grace
    everything = [p for g in groups for p in trees[id(g)]]
    pause = 0.002  # most processes are gone within milliseconds; a few take longer
    while time.monotonic() < deadline:
        for group in groups:
            group.popen.poll()
        if not live(everything) and not any(group_alive(g) for g in groups):
            break
        time.sleep(pause)
        pause = min(2 * pause, 0.02)
    killed: list[int] = []
    for group in groups:
        left = live(trees[id(group)]) + [p for p in group.members()
                                         if p.pid not in {q.pid for q in trees[id(group)]}]
        if left:
            killed += [p.pid for p in left]
            for proc in left:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    proc.kill()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group.pgid, signal.SIGKILL)
    survivors: list[int] = []
    for group in groups:
        with contextlib.suppress(subprocess.TimeoutExpired):
            group.popen.wait(timeout=5)
        end = time.monotonic() + 5
        while (live(trees[id(group)]) or group_alive(group)) and time.monotonic() < end:
            time.sleep(0.02)
        survivors += [p.pid for p in live(trees[id(group)])]
        survivors += [pid for pid in group_members(group.pgid) if pid not in survivors]
        group.close_log()
    if survivors and raise_leftovers:
        raise LeftoverProcesses(f"processes {sorted(set(survivors))} survived SIGKILL")
    return sorted(set(killed))


def group_alive(group: ProcessGroup) -> bool:
    """True while any live (non-zombie) member of ``group``'s process group exists."""
    try:
        os.killpg(group.pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return bool(group_members(group.pgid))


def spawn_to_files(
    argv: Sequence[str],
    name: str,
    stdout: Path,
    stderr: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    append: bool = False,
) -> ProcessGroup:
    """``spawn`` with stdout and stderr in files of their own (truncated unless ``append``).

    Args:
        argv: the command.
        name: a short name for messages.
        stdout: the file its stdout goes to.
        stderr: the file its stderr goes to (None: with stdout).
        env: its whole environment (default: this process's).
        cwd: its working directory.
        append: append to those files instead of truncating them.
    """
    with contextlib.ExitStack() as files:
        out = files.enter_context(open_new(stdout, "wb", append=append))
        err = None if stderr is None else files.enter_context(
            open_new(stderr, "wb", append=append))
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT if err is None else err,
            stdin=subprocess.DEVNULL, env=dict(env) if env is not None else None,
            cwd=cwd, start_new_session=True)
    return ProcessGroup(proc, name, stdout if stderr is None else stderr)


# -- a pre-warmed launcher -----------------------------------------------------------------
#: The folder that holds racelab's packages: on ``PYTHONPATH``, a process racelab starts
#: imports them under any interpreter, racelab installed there or not.
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


class ZygoteChild:
    """What ``ProcessGroup`` and ``stop_groups`` use of ``subprocess.Popen``, for a zygote's child.

    Attributes:
        pid: the child's pid (it leads a session and a process group of its own).
        args: the argv it stands for.
        returncode: None while it runs; then its exit code (``-N``: killed by signal N).
    """

    def __init__(self, zygote: Zygote, pid: int, args: list[str]) -> None:
        self._zygote = zygote
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.returncode(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode


class Zygote:
    """A process that has imported ``modules`` once and forks ``python -m MODULE`` children.

    Starting ``python -m locust`` costs about a second of imports; a child forked
    from a zygote that made them starts in a few milliseconds and is otherwise
    the same process (``demo_server.basics._zygote``). ``spawn`` is ``procs.spawn`` for
    ``[sys.executable, "-m", MODULE, ...]`` with ``MODULE`` among ``modules``;
    any other command, or every command once the zygote failed, is started the
    ordinary way. The zygote's own imports run while the caller does other work:
    only the first ``spawn`` waits for them.

    Args:
        modules: what to import (the first is what it launches, its ``-m`` module).
        env: the environment the zygote imports them in (default: this process's,
            with racelab on ``PYTHONPATH``).
        ready_timeout: seconds the first ``spawn`` waits for the imports.

    Example:
        >>> with Zygote(["locust", "locust.main"]) as zygote:
        ...     group = zygote.spawn([sys.executable, "-m", "locust", ...], "locust")
        ...     stop_groups([group])
    """

    def __init__(self, modules: Sequence[str], env: Mapping[str, str] | None = None,
                 ready_timeout: float = 30.0) -> None:
        self.modules = list(modules)
        self.ready_timeout = ready_timeout
        self.error = ""
        self._lock = threading.Lock()
        self._ready = False
        self._children: list[int] = []
        if env is None:
            base = dict(os.environ)
            base["PYTHONPATH"] = os.pathsep.join(
                p for p in (SOURCE_ROOT, base.get("PYTHONPATH", "")) if p)
            base["PYTHONUNBUFFERED"] = "1"
            env = base
        self._group: ProcessGroup | None = ProcessGroup(subprocess.Popen(
            [sys.executable, "-m", "demo_server.basics._zygote", *self.modules],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=dict(env), start_new_session=True, bufsize=0,
        ), "zygote")

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def handles(self, argv: Sequence[str]) -> bool:
        """True if ``argv`` is ``python -m MODULE ...`` for a module this zygote imported."""
        return (len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m"
                and argv[2] in self.modules and self._group is not None and not self.error)

    def spawn(
        self,
        argv: Sequence[str],
        name: str,
        stdout: Path,
        stderr: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        append: bool = False,
    ) -> ProcessGroup:
        """Start ``argv`` as ``spawn_to_files`` would (same arguments): a session of its
        own, stdin closed; forked from the zygote when ``handles(argv)``, else started
        by ``spawn_to_files`` itself."""
        env = dict(os.environ if env is None else env)
        cwd = str(cwd or os.getcwd())
        mode = "a" if append else "w"
        if self.handles(argv):
            request = {"spawn": {
                "module": argv[2], "args": list(argv[3:]), "env": env, "cwd": cwd,
                "stdout": [str(stdout), mode],
                "stderr": "stdout" if stderr is None else [str(stderr), mode],
            }}
            reply = self._ask(request)
            if reply is not None and "pid" in reply:
                pid = int(reply["pid"])
                return ProcessGroup(ZygoteChild(self, pid, list(argv)),  # type: ignore[arg-type]
                                    name, stdout if stderr is None else stderr)
        return spawn_to_files(argv, name, stdout, stderr, env, cwd, append)

    def returncode(self, pid: int) -> int | None:
        """``pid``'s exit code once it has ended, else None."""
        reply = self._ask({"poll": [pid]})
        if reply is not None and "codes" in reply:
            code = reply["codes"].get(str(pid))
            if code is None:
                return None
            with contextlib.suppress(ValueError):
                self._children.remove(pid)
            return int(code)
        # The zygote is gone: its children went to init, which reaps them.
        proc = _process(pid)
        return None if proc is not None and _is_live(proc) else -signal.SIGKILL

    def close(self) -> None:
        """End the zygote, and any child of it still running (its launcher normally stops it)."""
        reply = self._ask({"poll": list(self._children)}) if self._children else None
        if reply is not None:
            running = [int(pid) for pid, code in (reply.get("codes") or {}).items()
                       if code is None]
        else:  # it cannot say (gone, or a signal cut a start short): ask the system
            running = [pid for pid in self._children
                       if (proc := _process(pid)) is not None and _is_live(proc)]
        if running:
            stop_groups([ProcessGroup(ZygoteChild(self, pid, []), "leftover")  # type: ignore[arg-type]
                         for pid in running], grace=2.0, raise_leftovers=False)
        with self._lock:
            group, self._group = self._group, None
        if group is None:
            return
        # Its children are stopped, and nothing in the zygote itself is worth a graceful
        # exit: SIGKILL spares the interpreter's teardown (a tenth of a second with
        # Locust's modules), and ends one still importing (a command stopped early).
        popen = group.popen
        with contextlib.suppress(OSError):
            if popen.stdin is not None:
                popen.stdin.close()
        stop_groups([group], grace=1.0, first_signal=signal.SIGKILL, raise_leftovers=False)
        if popen.stdout is not None:
            popen.stdout.close()

    def wait_ready(self) -> bool:
        """Wait for the zygote's imports (at most ``ready_timeout``); True if it can fork."""
        with self._lock:
            return self._group is not None and self._await_ready()

    def _await_ready(self) -> bool:
        """With the lock held: read the zygote's first line once; False once it failed."""
        if self.error:
            return False
        if not self._ready:
            assert self._group is not None
            try:
                first = self._read_line(self._group.popen, self.ready_timeout)
                if "ready" not in first:
                    raise OSError(str(first.get("error") or "the zygote did not start"))
            except (OSError, ValueError) as exc:
                self.error = str(exc) or type(exc).__name__
                return False
            self._ready = True
        return True

    def _ask(self, request: Mapping[str, object]) -> dict[str, Any] | None:
        """Send one request, read its answer; None (and the zygote given up) on failure.

        A signal (``KeyboardInterrupt``) that arrives once the request is sent waits
        for the answer, so that a child forked meanwhile is known and ``close`` stops it.
        """
        with self._lock:
            group = self._group
            if group is None or not self._await_ready():
                return None
            popen = group.popen
            assert popen.stdin is not None and popen.stdout is not None
            try:
                popen.stdin.write(json.dumps(request).encode() + b"\n")
            except (OSError, ValueError) as exc:
                self.error = str(exc) or type(exc).__name__
                return None
            interrupted: BaseException | None = None
            while True:
                try:
                    reply = self._read_line(popen, 10.0)
                    break
                except (OSError, ValueError) as exc:
                    self.error = str(exc) or type(exc).__name__
                    reply = None
                    break
                except BaseException as exc:  # re-raised once the answer is in
                    interrupted = exc
            if reply is not None and "pid" in reply:
                self._children.append(int(reply["pid"]))
            if interrupted is not None:
                if reply is not None and "pid" in reply:
                    self.error = "interrupted while starting a process"
                raise interrupted
            return reply

    @staticmethod
    def _read_line(popen: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
        import select

        assert popen.stdout is not None
        ready, _, _ = select.select([popen.stdout], [], [], timeout)
        if not ready:
            raise OSError(f"the zygote did not answer within {timeout:g} s")
        line = popen.stdout.readline()
        if not line:
            raise OSError("the zygote exited")
        value = json.loads(line)
        if not isinstance(value, dict):
            raise ValueError("the zygote answered something else")
        return value
