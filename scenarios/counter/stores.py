"""Counter stores: where the shared number lives and how it is incremented.

``global`` is the original question's code, literally. The others are the
alternatives people reach for. External stores (Redis, PostgreSQL, memcached,
Flask-Session) live in ``scenarios.counter.external`` and are imported only when used.

A shared store increments in one step by default (``atomic``); the SQLite,
Redis, PostgreSQL and memcached stores also offer the other updates
(``scenarios._updates``): the naive ``read-write`` (read, window, write back),
``locked`` and ``optimistic``. ``Store.update_form(config, "incr")`` picks the
method of the configured one.
"""

from __future__ import annotations

import abc
import importlib
import os
import sqlite3
import threading
from collections.abc import Callable
from multiprocessing.managers import RemoteError
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from flask import g

from demo_server.basics.errors import ConfigError, StoreUnavailable
from demo_server.served._manager import CounterManager
from demo_server.served.config import ServerConfig
from demo_server.served.windows import make_window
from scenarios._clients import PerProcess, one_line, sqlite_connect
from scenarios._updates import Conflict, UpdateForms

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "GStore",
    "GlobalStore",
    "LockStore",
    "ManagerStore",
    "SomeObj",
    "SqliteStore",
    "Store",
    "global_obj",
    "make_store",
]


class SomeObj:
    """The object of the original question, unchanged."""

    def __init__(self) -> None:
        self.param = 0

    def query(self) -> int:
        self.param += 1
        return self.param


# The module-level global the question is about.
global_obj = SomeObj()


class WindowedObj(SomeObj):
    """The same object with the read and the write pulled apart by a window."""

    def __init__(self, window: Callable[[], None]) -> None:
        super().__init__()
        self.window = window

    def query(self) -> int:
        value = self.param
        self.window()
        self.param = value + 1
        return self.param


class Store(UpdateForms, abc.ABC):
    """A counter: ``incr`` adds one and returns the new value (``incr_<update>`` for the
    other updates a shared store offers: ``scenarios._updates.UpdateForms``)."""

    name: ClassVar[str]
    #: True when all processes (and hosts) see one value.
    shared: ClassVar[bool]

    @classmethod
    def prepare(cls, config: ServerConfig) -> None:
        """Before a server starts: check the store is reachable (raise StoreUnavailable)."""

    @classmethod
    def cleanup(cls, config: ServerConfig) -> None:
        """After a server stopped: remove what this run's namespace left in the store."""

    def init_app(self, app: Flask) -> None:
        """Hook for stores that need the app (sessions, teardown)."""

    @abc.abstractmethod
    def incr(self) -> int:
        """Add one and return the new value."""

    @abc.abstractmethod
    def value(self) -> int:
        """The current value, unchanged."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Set the value back to zero."""


def _module_object(config: ServerConfig) -> SomeObj:
    if config.window == "none":
        return global_obj
    return WindowedObj(make_window(config.window, config.work_us))


class GlobalStore(Store):
    """The naive module-level object, one copy per process."""

    name = "global"
    shared = False

    def __init__(self, config: ServerConfig) -> None:
        self.obj = _module_object(config)

    def incr(self) -> int:
        return self.obj.query()

    def value(self) -> int:
        return self.obj.param

    def reset(self) -> None:
        self.obj.param = 0


class LockStore(GlobalStore):
    """The same object behind a threading.Lock: safe across threads, not processes."""

    name = "lock"

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.lock = threading.Lock()

    def incr(self) -> int:
        with self.lock:
            return self.obj.query()

    def reset(self) -> None:
        with self.lock:
            self.obj.param = 0


class GStore(Store):
    """flask.g: lives for one request, so every request starts from zero."""

    name = "g"
    shared = False

    def __init__(self, config: ServerConfig | None = None) -> None:
        """flask.g needs no configuration: every request gets a fresh one."""

    def incr(self) -> int:
        g.racelab_counter = g.get("racelab_counter", 0) + 1
        return int(g.racelab_counter)

    def value(self) -> int:
        return int(g.get("racelab_counter", 0))

    def reset(self) -> None:
        g.pop("racelab_counter", None)





class ManagerStore(Store):
    """A counter held by a multiprocessing.Manager server that every worker connects to."""

    name = "manager"
    shared = True

    def __init__(self, config: ServerConfig) -> None:
        if not config.manager_address:
            raise ConfigError("the manager store needs RACELAB_MANAGER_ADDRESS (host:port)")
        host, _, port = config.manager_address.rpartition(":")
        self.address = (host, int(port))
        try:
            self.authkey = bytes.fromhex(
                Path(config.manager_key_file).read_text(encoding="ascii").strip())
        except (OSError, ValueError) as exc:
            raise StoreUnavailable(f"cannot read the counter manager's key from "
                                   f"{config.manager_key_file!r}: {exc}") from None
        self._proxy = PerProcess(self._connect)

    def _connect(self) -> object:
        manager = CounterManager(
            address=self.address, authkey=self.authkey, serializer="racelab"
        )
        try:
            manager.connect()
        except OSError as exc:
            raise StoreUnavailable(
                f"counter manager at {self.address[0]}:{self.address[1]} is unreachable: {exc}"
            ) from exc
        return manager.counter()  # type: ignore[attr-defined]

    def _call(self, method: str) -> Any:
        # A manager that died (or was restarted) leaves a dead proxy: drop it, so
        # that the next call connects to the manager running then.
        try:
            return getattr(self._proxy.get(), method)()
        except (OSError, EOFError, KeyError, RemoteError) as exc:
            self._proxy.reset()
            raise StoreUnavailable(
                f"lost the counter manager at {self.address[0]}:{self.address[1]}: {exc!r}"
            ) from exc

    def incr(self) -> int:
        return int(self._call("incr"))

    def value(self) -> int:
        return int(self._call("value"))

    def reset(self) -> None:
        self._call("reset")


def _create_counter(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, value INTEGER)")
    conn.execute("INSERT OR IGNORE INTO counter (id, value) VALUES (1, 0)")


class SqliteStore(Store):
    """A row in an SQLite file, incremented atomically with ``UPDATE ... RETURNING``.

    The other updates: ``read-write`` as Python's ``sqlite3`` module runs it by
    default (the ``SELECT`` outside any transaction, the ``UPDATE`` in one of its
    own: in WAL mode a read inside a deferred transaction would make the stale
    write fail with "database is locked" instead); ``locked``, the read and the
    write in one ``BEGIN IMMEDIATE`` transaction; ``optimistic``,
    ``UPDATE ... WHERE value = :read``, tried again when no row matched.
    """

    name = "sqlite"
    shared = True
    updates = ("atomic", "read-write", "locked", "optimistic")

    def __init__(self, config: ServerConfig) -> None:
        if not config.sqlite_path:
            raise ConfigError("the sqlite store needs RACELAB_SQLITE_PATH")
        if sqlite3.sqlite_version_info < (3, 35):
            raise StoreUnavailable(
                f"SQLite {sqlite3.sqlite_version} lacks UPDATE ... RETURNING (needs 3.35)"
            )
        self.path = config.sqlite_path
        self._local = threading.local()
        _create_counter(self._conn())

    @classmethod
    def prepare(cls, config: ServerConfig) -> None:
        # Once, before any worker starts: several processes switching a new file to
        # WAL at the same moment can fail with "database is locked".
        if not config.sqlite_path:
            return
        try:
            conn = sqlite_connect(config.sqlite_path)
            try:
                _create_counter(conn)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"cannot open the SQLite database {config.sqlite_path}: {exc}"
            ) from None

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite_connect(self.path)
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def incr(self) -> int:
        row = self._conn().execute(
            "UPDATE counter SET value = value + 1 WHERE id = 1 RETURNING value"
        ).fetchone()
        return int(row[0])

    def value(self) -> int:
        return int(self._conn().execute("SELECT value FROM counter WHERE id = 1").fetchone()[0])

    def reset(self) -> None:
        self._conn().execute("UPDATE counter SET value = 0 WHERE id = 1")

    def _read(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM counter WHERE id = 1").fetchone()[0])

    def _errors(self, work: Callable[[sqlite3.Connection], int]) -> int:
        try:
            return work(self._conn())
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite {self.path}: {one_line(exc)}") from exc

    def incr_read_write(self) -> int:
        def work(conn: sqlite3.Connection) -> int:
            value = self._read(conn) + 1
            self.wait()
            conn.execute("UPDATE counter SET value = ? WHERE id = 1", (value,))
            return value

        return self._errors(work)

    def incr_locked(self) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                value = self._read(conn) + 1
                self.wait()
                conn.execute("UPDATE counter SET value = ? WHERE id = 1", (value,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return value

        return self._errors(work)

    def incr_optimistic(self) -> int:
        def attempt(conn: sqlite3.Connection) -> int:
            read = self._read(conn)
            if not conn.execute("UPDATE counter SET value = ? WHERE id = 1 AND value = ?",
                                (read + 1, read)).rowcount:
                raise Conflict
            return read + 1

        return self._errors(lambda conn: self.retry(f"SQLite {self.path}", lambda: attempt(conn)))


_BUILTIN: dict[str, type[Store]] = {
    "global": GlobalStore,
    "lock": LockStore,
    "g": GStore,
    "manager": ManagerStore,
    "sqlite": SqliteStore,
}
# External stores, imported on first use so their client libraries stay optional.
_EXTERNAL = {
    "redis": "scenarios.counter.external:RedisStore",
    "postgres": "scenarios.counter.external:PostgresStore",
    "memcached": "scenarios.counter.external:MemcachedStore",
    "session": "scenarios.counter.external:SessionStore",
}


def store_class(name: str) -> type[Store]:
    """The Store class registered under ``name``."""
    if name in _BUILTIN:
        return _BUILTIN[name]
    if name in _EXTERNAL:
        module, _, attr = _EXTERNAL[name].partition(":")
        try:
            cls: type[Store] = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"store {name!r} is not available: {exc}") from exc
        return cls
    raise ConfigError(f"unknown store {name!r}")


def make_store(config: ServerConfig) -> Store:
    """Build the store ``config.store`` names.

    Args:
        config: the server configuration.

    Returns:
        A ready Store.
    """
    return store_class(config.store)(config)  # type: ignore[call-arg]

