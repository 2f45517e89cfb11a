"""Private Redis, PostgreSQL and memcached servers for one run (``--start-services``).

Where a store's server binary is installed but nothing answers at the
configured address, ``PrivateServices`` starts a throwaway instance on a free
loopback port, in a temporary directory and in its own process group, and
stops it (and removes the directory) when the ``with`` block ends::

    with PrivateServices(settings) as settings:
        ...  # settings.redis_url etc. now point at running servers

PostgreSQL refuses to run as root: as root, ``initdb`` and ``postgres`` run as
the ``postgres`` user when it exists (the temporary directory is handed to
it); otherwise PostgreSQL is skipped with the reason in ``skipped``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from demo_server.basics._context import StartStop
from demo_server.basics.errors import StoreUnavailable
from demo_server.basics.procs import (
    ProcessGroup,
    free_port,
    reachable,
    spawn,
    stop_groups,
    wait_listening,
)

__all__ = [
    "SERVICES",
    "PrivateServices",
    "Service",
    "running_service",
    "service_address",
    "services_for",
    "services_needed",
]

#: The services a store needs, by store name.
_NEEDS: dict[str, tuple[str, ...]] = {
    "redis": ("redis",),
    "postgres": ("postgres",),
    "memcached": ("memcached",),
}
SERVICES = ("redis", "postgres", "memcached")
#: Settings field that holds each service's address.
_FIELD = {"redis": "redis_url", "postgres": "postgres_dsn", "memcached": "memcached"}
_DEFAULT_PORT = {"redis": 6379, "postgres": 5432, "memcached": 11211}
_POSTGRES_DIRS = ("/usr/local/bin", "/usr/lib/postgresql/*/bin")

S = TypeVar("S")


#: Private services running now, by (host, port): what faults may stop, and the watch sees.
_RUNNING: dict[tuple[str, int], Service] = {}


def service_address(service: str, value: str) -> tuple[str, int]:
    """(host, port) of a service's configured address (a URL, DSN or ``host:port``)."""
    parts = urlsplit(value if "://" in value else f"tcp://{value}")
    return parts.hostname or "127.0.0.1", parts.port or _DEFAULT_PORT[service]


_address = service_address


def running_service(service: str, value: str) -> Service | None:
    """The private ``service`` racelab started at that address, if it is running one."""
    found = _RUNNING.get(service_address(service, value))
    return found if found is not None and found.name == service else None


def services_needed(stores: Collection[str], session_backend: str = "filesystem") -> list[str]:
    """The services the given stores need, in a stable order."""
    wanted = {s for store in stores for s in _NEEDS.get(store, ())}
    if "session" in stores and session_backend == "redis":
        wanted.add("redis")
    return [s for s in SERVICES if s in wanted]


def _postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for pattern in _POSTGRES_DIRS:
        for candidate in sorted(Path("/").glob(pattern.lstrip("/")), reverse=True):
            if (candidate / name).is_file():
                return str(candidate / name)
    return None


@dataclasses.dataclass
class Service:
    """One private server: what runs, where, and how to reach it."""

    name: str
    address: str
    port: int
    directory: Path
    group: ProcessGroup
    log_path: Path
    stop_signal: int = signal.SIGTERM
    argv: tuple[str, ...] = ()
    user: str | None = None
    ready_timeout: float = 30.0
    #: whether a restart finds the data again (PostgreSQL's files) or starts empty
    #: (Redis without persistence, memcached)
    keeps_state: bool = False

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        return self.group.popen

    def alive(self) -> bool:
        return self.group.alive()

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server's whole tree: ``stop_signal``, then SIGKILL after ``grace``."""
        stop_groups([self.group], grace, first_signal=self.stop_signal)

    def restart(self) -> None:
        """Start the server again on the same port and directory (after ``stop``).

        Raises:
            StoreUnavailable: if it does not accept connections in time.
        """
        if self.alive():
            return
        self.group = spawn(self.argv, self.name, log_path=self.log_path, cwd=self.directory,
                           **_as_user(self.user))
        _wait_started(self)


class PrivateServices(StartStop[Any]):
    """Start private servers where none answer; stop them when the block ends.

    Args:
        settings: a dataclass with ``redis_url``, ``postgres_dsn`` and
            ``memcached`` fields (the CLI's Settings, or anything alike).
        names: which services to consider (default: all three).
        force: start a private instance even where the configured one answers
            (tests that stop a server mid-run must never stop a shared one).
        ready_timeout: seconds to wait for each server to accept connections.

    Attributes:
        services: the servers started, by name.
        skipped: why a service was not started, by name (binary missing,
            PostgreSQL as root without a ``postgres`` user, ...).
    """

    def __init__(
        self,
        settings: S,
        names: Collection[str] = SERVICES,
        force: bool = False,
        ready_timeout: float = 30.0,
    ) -> None:
        unknown = set(names) - set(SERVICES)
        if unknown:
            raise StoreUnavailable(f"no private service for {', '.join(sorted(unknown))}")
        self.settings = settings
        self.names = [n for n in SERVICES if n in names]
        self.force = force
        self.ready_timeout = ready_timeout
        self.services: dict[str, Service] = {}
        self.skipped: dict[str, str] = {}
        self._root: Path | None = None

    # -- public surface ---------------------------------------------------------------
    def start(self) -> Any:
        """Start what is needed; return a copy of the settings pointing at the servers."""
        changes: dict[str, str] = {}
        try:
            for name in self.names:
                current = getattr(self.settings, _FIELD[name])
                if not self.force and reachable(*_address(name, current)):
                    continue
                service = self._start(name)
                if service is not None:
                    self.services[name] = service
                    changes[_FIELD[name]] = service.address
        except BaseException:
            self.stop()
            raise
        return dataclasses.replace(self.settings, **changes)  # type: ignore[type-var]

    def stop_one(self, name: str) -> None:
        """Stop one private server now (the others keep running)."""
        self.services[name].stop()

    def stop(self) -> None:
        """Stop every private server and remove its directory."""
        for service in self.services.values():
            _RUNNING.pop(("127.0.0.1", service.port), None)
        try:
            stop_groups([s.group for s in self.services.values()], 5.0,
                        first_signal={s.name: s.stop_signal for s in self.services.values()})
        finally:
            self.services.clear()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    # -- helpers ----------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="racelab-services-"))
            self._root.chmod(0o755)
        path = self._root / name
        path.mkdir()
        return path

    def _start(self, name: str) -> Service | None:
        starter = {
            "redis": self._start_redis,
            "memcached": self._start_memcached,
            "postgres": self._start_postgres,
        }[name]
        return starter()

    def _spawn(
        self, name: str, argv: list[str], directory: Path, port: int, address: str,
        user: str | None = None, stop_signal: int = signal.SIGTERM,
        keeps_state: bool = False,
    ) -> Service:
        log_path = directory / f"{name}.log"
        group = spawn(argv, name, log_path=log_path, cwd=directory, **_as_user(user))
        service = Service(name, address, port, directory, group, log_path, stop_signal,
                          tuple(argv), user, self.ready_timeout, keeps_state)
        _wait_started(service)
        _RUNNING[("127.0.0.1", port)] = service
        return service

    def _start_redis(self) -> Service | None:
        binary = shutil.which("redis-server")
        if binary is None:
            self.skipped["redis"] = "redis-server is not installed (apt-get install redis-server)"
            return None
        directory, port = self._dir("redis"), free_port()
        argv = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory), "--protected-mode", "no",
            "--daemonize", "no",
        ]
        return self._spawn("redis", argv, directory, port, f"redis://127.0.0.1:{port}/0")

    def _start_memcached(self) -> Service | None:
        binary = shutil.which("memcached")
        if binary is None:
            self.skipped["memcached"] = "memcached is not installed (apt-get install memcached)"
            return None
        directory, port = self._dir("memcached"), free_port()
        argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-c", "4096"]
        if os.geteuid() == 0:
            # memcached will not run as root unless told which user to become.
            argv += ["-u", _unprivileged_user() or "root"]
        return self._spawn("memcached", argv, directory, port, f"127.0.0.1:{port}")

    def _start_postgres(self) -> Service | None:
        initdb, postgres = _postgres_binary("initdb"), _postgres_binary("postgres")
        if initdb is None or postgres is None:
            self.skipped["postgres"] = (
                "initdb/postgres are not installed (apt-get install postgresql)"
            )
            return None
        user: str | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                self.skipped["postgres"] = (
                    "PostgreSQL refuses to run as root and there is no 'postgres' user to run it as"
                )
                return None
            user = owner.pw_name
        directory, port = self._dir("postgres"), free_port()
        if user is not None:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        data = directory / "data"
        init = subprocess.run(
            [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync",
             "-E", "UTF8", "--locale", "C"],
            cwd=directory, capture_output=True, start_new_session=True, check=False,
            **_as_user(user),
        )
        if init.returncode != 0:
            lines = init.stderr.decode(errors="replace").strip().splitlines()[-2:]
            raise StoreUnavailable(f"initdb failed: {' | '.join(lines)}")
        argv = [
            postgres, "-D", str(data), "-p", str(port), "-k", str(directory),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=300",
        ]
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for clients to leave.
        return self._spawn(
            "postgres", argv, directory, port,
            f"postgresql://postgres@127.0.0.1:{port}/postgres", user=user,
            stop_signal=signal.SIGINT, keeps_state=True,
        )


def _wait_started(service: Service) -> None:
    if not wait_listening("127.0.0.1", service.port, service.ready_timeout, service.alive):
        service.stop()
        tail = service.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise StoreUnavailable(
            f"private {service.name} did not start on port {service.port}: {' | '.join(tail)}"
        )


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that run a child as ``user`` (its uid, gid and no other groups)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _unprivileged_user() -> str | None:
    for name in ("memcache", "nobody"):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            continue
    return None


@contextlib.contextmanager
def services_for(
    settings: S, stores: Collection[str], session_backend: str = "filesystem"
) -> Iterator[S]:
    """Settings whose services are running, when ``settings.start_services`` asks for it.

    Commands wrap their work in it::

        with services_for(settings, ["redis", "global"]) as settings:
            ...

    Without ``start_services`` (or when no store needs a server) the settings
    come back unchanged and nothing is started.

    Args:
        settings: the CLI settings (a dataclass with ``start_services`` and the
            address fields).
        stores: the stores the command will run.
        session_backend: the session store's backend (``redis`` needs Redis).
    """
    names = services_needed(stores, session_backend)
    if not getattr(settings, "start_services", False) or not names:
        yield settings
        return
    with PrivateServices(settings, names) as started:
        yield started
