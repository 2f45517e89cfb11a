"""What one server runs: scenario, store, window, update and mode, passed to workers by
environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from demo_server.basics import defaults
from demo_server.basics.errors import ConfigError

__all__ = [
    "MODES",
    "SESSION_BACKENDS",
    "STORES",
    "UPDATES",
    "WINDOWS",
    "Connections",
    "ServerConfig",
]

STORES = (
    "global",
    "lock",
    "manager",
    "sqlite",
    "g",
    "redis",
    "postgres",
    "memcached",
    "session",
)
WINDOWS = ("none", "call", "work", "yield", "io")
#: How a shared store is changed: one step in the store (``atomic``), the naive read, window
#: and write (``read-write``), the read under a lock (``locked``), or a write that applies only
#: if nobody wrote since the read, retried (``optimistic``).
UPDATES = ("atomic", "read-write", "locked", "optimistic")
SESSION_BACKENDS = ("filesystem", "redis")
MODES = (
    "single",
    "threaded",
    "processes",
    "gunicorn-sync",
    "gunicorn-gthread",
    "gevent",
    "cluster",
)
# Stores whose state is a copy per process; the others are shared by every process.
PER_PROCESS_STORES = frozenset({"global", "lock", "g"})

_ENV_PREFIX = "RACELAB_"


@dataclasses.dataclass(frozen=True)
class Connections:
    """Where the shared stores are: one value from the command line to every store.

    Args:
        redis_url: Redis (``redis`` store, and the ``session`` store's redis backend).
        postgres_dsn: PostgreSQL (``postgres`` store).
        memcached: ``host:port`` of memcached.
        session_backend: ``filesystem`` or ``redis``.
    """

    redis_url: str = defaults.REDIS_URL
    postgres_dsn: str = defaults.POSTGRES_DSN
    memcached: str = defaults.MEMCACHED
    session_backend: str = defaults.SESSION_BACKEND


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Everything a worker needs to build the app.

    Args:
        scenario: the shared-state operation (``counter``).
        store: where the state lives (see ``STORES``).
        window: what runs between the read and the write (see ``WINDOWS``).
        update: how a shared store is changed (see ``UPDATES``).
        work_us: length of the ``work`` window in microseconds of CPU time.
        mode: how the app is served; informational inside the app.
        sqlite_path: database file of the ``sqlite`` store.
        manager_address: ``host:port`` of the counter manager of the ``manager`` store.
        manager_key_file: the file holding that manager's hex authkey (mode 0600; the
            key itself is never in a worker's environment).
        redis_url: URL of the Redis server (``redis`` and ``session`` stores).
        postgres_dsn: connection string of the ``postgres`` store.
        memcached: ``host:port`` of the memcached server.
        namespace: key prefix or table suffix that isolates one run's state.
        session_dir: directory of the file-backed Flask-Session store.
        session_backend: ``filesystem`` or ``redis``.
        instance: index of this instance in ``cluster`` mode.
        stock: seats on sale when a ``tickets`` run starts.
    """

    scenario: str = defaults.SCENARIO
    store: str = defaults.STORE
    window: str = defaults.WINDOW
    update: str = defaults.UPDATE
    work_us: int = defaults.WORK_US
    mode: str = defaults.MODE
    sqlite_path: str = ""
    manager_address: str = ""
    manager_key_file: str = ""
    redis_url: str = defaults.REDIS_URL
    postgres_dsn: str = defaults.POSTGRES_DSN
    memcached: str = defaults.MEMCACHED
    namespace: str = defaults.NAMESPACE
    session_dir: str = ""
    session_backend: str = defaults.SESSION_BACKEND
    instance: int = 0
    stock: int = defaults.STOCK

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for an unknown name or an out-of-range number.

        Whether the scenario has that store, and a window there, is the
        scenario's to say (``scenarios.registry.check_cell``, at the boundary).
        """
        for field, allowed in (
            ("store", STORES),
            ("window", WINDOWS),
            ("update", UPDATES),
            ("mode", MODES),
        ):
            value = getattr(self, field)
            if value not in allowed:
                raise ConfigError(
                    f"unknown {field} {value!r}; choose one of: {', '.join(allowed)}"
                )
        if self.work_us <= 0:
            raise ConfigError(f"work_us must be positive, got {self.work_us}")
        if self.stock <= 0:
            raise ConfigError(f"stock must be positive, got {self.stock}")

    @property
    def per_process(self) -> bool:
        """True when every process holds its own copy of the state."""
        return self.store in PER_PROCESS_STORES

    def to_env(self) -> dict[str, str]:
        """Environment variables that ``from_env`` turns back into this config."""
        return {
            _ENV_PREFIX + f.name.upper(): str(getattr(self, f.name))
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        """Build a config from ``RACELAB_*`` variables; absent ones keep their defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(_ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            if f.type in ("int", int):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ConfigError(f"{_ENV_PREFIX}{f.name.upper()} must be an integer") from None
            else:
                values[f.name] = raw
        return cls(**values)  # type: ignore[arg-type]
