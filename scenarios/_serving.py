"""What the scenarios' server sides share: answers, windows, and store connections.

Each scenario module (``ids``, ``tickets``, ``bank``, ``session``) implements its
own operation once per store; this module holds the plumbing they all need:

- ``answer``: a JSON answer stamped with pid, thread and server times (the keys
  the swarm reads, as the counter's ``/incr`` has them);
- ``window_of``: the window callable between the read and the write (``None``
  for ``none``: the naive code runs as written);
- ``Sqlite``, ``Postgres``, ``Redis``, ``Memcached``: one connection (or pool)
  per worker process, opened lazily after a fork, with every client error turned
  into ``StoreUnavailable`` (the app answers 503: the effect is unknown);
- ``table_name``, ``drop_tables``, ``delete_keys``: one run's tables and keys.

Nothing retries an operation: a retried sale or transfer whose first attempt
reached the store would happen twice. Only an optimistic update tries again,
and only after the store said its write did not apply (``scenarios._updates``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from demo_server.basics.errors import ConfigError, StoreUnavailable
from scenarios._clients import (
    POOL_SIZE,
    PerProcess,
    memcached_client,
    memcached_ping,
    one_line,
    psycopg_waits_cooperatively,
    redis_client,
    redis_ping,
    sqlite_connect,
)
from scenarios._updates import Conflict

if TYPE_CHECKING:
    from flask import Flask, Response

    from demo_server.served.config import ServerConfig

__all__ = [
    "Memcached",
    "Postgres",
    "Redis",
    "Sqlite",
    "answer",
    "cleanup_store",
    "delete_keys",
    "drop_tables",
    "pg_create",
    "prepare_store",
    "table_name",
    "window_of",
]


def answer(app: Flask, arrival_ns: int, status: int = 200, **values: Any) -> tuple[Response, int]:
    """A JSON answer with ``values`` and what the server says of itself.

    Args:
        app: the app (its ``RACELAB_IDENTITY``: store, window, mode, ...).
        arrival_ns: ``time.monotonic_ns()`` when the request arrived.
        status: the HTTP status.
        values: the operation's own keys (the value spec names one of them).
    """
    from flask import jsonify

    body = {**values, "pid": os.getpid(), "tid": threading.get_ident(),
            "arrival_ns": arrival_ns, **app.config["RACELAB_IDENTITY"]}
    body["departure_ns"] = time.monotonic_ns()
    return jsonify(body), status


def window_of(config: ServerConfig) -> Callable[[], None] | None:
    """The window between read and write, or None for ``none`` (the naive code as is)."""
    from demo_server.served.windows import make_window

    return None if config.window == "none" else make_window(config.window, config.work_us)


def table_name(kind: str, namespace: str) -> str:
    """A PostgreSQL table of run ``namespace`` (``racelab_<kind>_<namespace>``, a valid name)."""
    safe = re.sub(r"[^a-z0-9_]", "_", namespace.lower())
    return f"racelab_{kind}_{safe}"[:63]


# --- SQLite --------------------------------------------------------------------------


class Sqlite:
    """One autocommit connection per thread (and process) to an SQLite file in WAL mode."""

    def __init__(self, config: ServerConfig, schema: str) -> None:
        if not config.sqlite_path:
            raise ConfigError("the sqlite store needs RACELAB_SQLITE_PATH")
        self.path = config.sqlite_path
        self.schema = schema
        self._local = threading.local()

    @staticmethod
    def prepare(config: ServerConfig, schema: str) -> None:
        """Create the file and its tables once, before any worker starts."""
        if not config.sqlite_path:
            return
        try:
            Sqlite(config, schema).conn().close()
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"cannot open the SQLite database {config.sqlite_path}: {exc}") from None

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite_connect(self.path)
            conn.executescript(self.schema)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def immediate(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: the write lock is taken before the first read."""
        conn = self.conn()
        with self.errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite {self.path}: {one_line(exc)}") from exc


# --- PostgreSQL ----------------------------------------------------------------------


class Postgres:
    """A connection pool per process; ``transaction()`` lends a connection inside BEGIN/COMMIT."""

    def __init__(self, config: ServerConfig, schema: Callable[[Any], None]) -> None:
        self.dsn = config.postgres_dsn
        self.schema = schema
        self._pool = PerProcess(self._open)

    def _open(self) -> Any:
        from psycopg_pool import ConnectionPool

        if psycopg_waits_cooperatively() is False:
            from psycopg import waiting

            waiting.wait = waiting.wait_poll  # type: ignore[assignment]
        try:
            pool = ConnectionPool(self.dsn, min_size=1, max_size=POOL_SIZE, open=False,
                                  timeout=10.0, kwargs={"autocommit": True, "connect_timeout": 3},
                                  name="racelab-scenario")
            pool.open(wait=True, timeout=10.0)
            with pool.connection() as conn:
                self.schema(conn)
        except Exception as exc:  # one line; retried on the next request
            raise StoreUnavailable(f"PostgreSQL at {self.dsn}: {one_line(exc)}") from exc
        return pool

    @staticmethod
    def prepare(config: ServerConfig, schema: Callable[[Any], None]) -> None:
        import psycopg

        try:
            with psycopg.connect(config.postgres_dsn, autocommit=True, connect_timeout=3) as conn:
                schema(conn)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"PostgreSQL at {config.postgres_dsn} is not usable ({one_line(exc)}); "
                "set --postgres-dsn or RACELAB_POSTGRES_DSN, or pass --start-services") from None

    @contextlib.contextmanager
    def transaction(self, isolation: str = "") -> Iterator[Any]:
        """A pooled connection inside BEGIN/COMMIT, at ``isolation`` (else the server's default).

        Raises:
            Conflict: a serialization failure or a deadlock (an optimistic attempt lost).
            StoreUnavailable: any other failure of the store.
        """
        import psycopg
        import psycopg_pool
        from psycopg import errors

        try:
            pool: Any = self._pool.get()
            with pool.connection() as conn, conn.transaction():
                if isolation:
                    conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
                yield conn
        except (errors.SerializationFailure, errors.DeadlockDetected) as exc:
            raise Conflict(one_line(exc)) from exc
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise StoreUnavailable(f"PostgreSQL at {self.dsn}: {one_line(exc)}") from exc


def drop_tables(config: ServerConfig, *tables: str) -> None:
    """Drop this run's tables (after its server stopped)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(config.postgres_dsn, autocommit=True, connect_timeout=3) as conn:
        for table in tables:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


# --- Redis ---------------------------------------------------------------------------


class Redis:
    """A redis-py client per process (a blocking pool, no retries)."""

    def __init__(self, config: ServerConfig) -> None:
        self.url = config.redis_url
        self._client = PerProcess(lambda: redis_client(self.url))

    @staticmethod
    def prepare(config: ServerConfig) -> None:
        redis_ping(config.redis_url)

    @property
    def client(self) -> Any:
        return self._client.get()

    def call(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(client)``, with Redis errors as ``StoreUnavailable``."""
        import redis

        try:
            return fn(self.client)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis at {self.url}: {one_line(exc)}") from exc


def delete_keys(config: ServerConfig, pattern: str) -> None:
    """Delete this run's Redis keys matching ``pattern`` (after its server stopped)."""
    client = redis_client(config.redis_url)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
    finally:
        client.close()


# --- memcached -----------------------------------------------------------------------


class Memcached:
    """A pymemcache pooled client per process."""

    def __init__(self, config: ServerConfig) -> None:
        self.address = config.memcached
        self._client = PerProcess(lambda: memcached_client(self.address))

    @staticmethod
    def prepare(config: ServerConfig) -> None:
        memcached_ping(config.memcached)

    def call(self, fn: Callable[[Any], Any]) -> Any:
        from pymemcache.exceptions import MemcacheError  # type: ignore[import-untyped]

        try:
            return fn(self._client.get())
        except (MemcacheError, OSError) as exc:
            raise StoreUnavailable(f"memcached at {self.address}: {one_line(exc)}") from exc


def pg_create(conn: Any, table: str, columns: str, fill: str, args: tuple[Any, ...]) -> None:
    """``CREATE TABLE IF NOT EXISTS table (columns)``, then ``fill`` (``{}`` names the table)."""
    from psycopg import errors, sql

    ident = sql.Identifier(table)
    # Another worker may create it at the same moment.
    with contextlib.suppress(errors.UniqueViolation, errors.DuplicateTable):
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (" + columns + ")").format(ident))
    conn.execute(sql.SQL(fill).format(ident), args)


def prepare_store(config: ServerConfig, *, sqlite: Callable[[ServerConfig], str],
                  postgres: Callable[[ServerConfig], Callable[[Any], None]]) -> None:
    """Before a server starts: create the store's schema, or check the store answers.

    Args:
        config: the run's configuration; only its store is prepared.
        sqlite: the SQLite schema for a config (a script).
        postgres: the PostgreSQL schema function for a config (``schema(conn)``).
    """
    if config.store == "sqlite":
        Sqlite.prepare(config, sqlite(config))
    elif config.store == "postgres":
        Postgres.prepare(config, postgres(config))
    elif config.store == "redis":
        Redis.prepare(config)
    elif config.store == "memcached":
        Memcached.prepare(config)


def cleanup_store(config: ServerConfig, kind: str,
                  memcached: Callable[[ServerConfig], None] | None = None) -> None:
    """After a server stopped: drop the run's table ``racelab_<kind>_<namespace>``, delete
    its Redis keys ``<namespace>:<kind>:*``, or call ``memcached(config)``."""
    if config.store == "postgres":
        drop_tables(config, table_name(kind, config.namespace))
    elif config.store == "redis":
        delete_keys(config, f"{config.namespace}:{kind}:*")
    elif config.store == "memcached" and memcached is not None:
        memcached(config)
