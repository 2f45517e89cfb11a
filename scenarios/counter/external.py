"""Counter stores that keep the number outside the app: Redis, PostgreSQL, memcached, sessions.

These are the real alternatives to a module global. Redis ``INCR``, a
PostgreSQL ``UPDATE ... RETURNING`` and memcached ``incr`` are each one atomic
operation on a server every worker process (and every host) talks to, so no
two requests can see the same number. Flask-Session is different: it keeps
one counter *per client* on the server side, loaded when a request starts and
saved when it ends, so clients never see each other's numbers but two
concurrent requests of one client overwrite each other (the last write wins).

Every connection is built lazily, once per process (``PerProcess``), so that
nothing opened before a fork is shared by the forked workers. All clients
work under gunicorn's gevent worker:

* redis-py and pymemcache talk through the ``socket`` module, which gevent
  patches, so a request waiting for Redis or memcached yields to the others.
* psycopg 3 drives libpq in non-blocking mode and waits for its socket with a
  wait function chosen when ``psycopg`` is first imported. Its C wait
  function (``wait_c``) calls ``poll()`` from C and would block the whole
  worker; psycopg 3.1.14 and later detect that gevent has patched ``select``
  and use ``wait_poll`` instead, which yields. The gevent worker patches
  before it loads the app, and this module imports ``psycopg`` only inside the
  worker, so the cooperative function is the one chosen.
  ``psycopg_waits_cooperatively()`` tells which one is in use; if psycopg was
  imported before the patch (gunicorn ``--preload``), the store switches to
  ``wait_poll`` itself rather than block the worker.

Failures of the store (server down, timeout) raise ``StoreUnavailable``,
which the app answers with HTTP 503. No client retries an increment: a
retried ``INCR`` whose first attempt reached the server would count twice.
Only an optimistic update is tried again, and only when the store said that
its write did not apply (``scenarios._updates.retrying``).

Each store also offers the updates people write before they find the atomic
one (``scenarios._updates``): ``read-write`` (Redis ``GET`` then ``SET``;
``SELECT`` then ``UPDATE ... SET value = :read + 1`` in one transaction at
PostgreSQL's default isolation, READ COMMITTED; memcached ``get`` then
``set``), ``locked`` (redis-py's ``Lock``; ``SELECT ... FOR UPDATE``) and
``optimistic`` (``WATCH``/``MULTI``/``EXEC``; the same transaction at
REPEATABLE READ, retried on a serialization failure; ``gets``/``cas``).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo_server.basics.errors import StoreUnavailable
from demo_server.served.config import ServerConfig
from scenarios._clients import (
    CONNECT_TIMEOUT,
    FAIL_FAST_S,
    IO_TIMEOUT,
    POOL_SIZE,
    POSTGRES_HINT,
    PerProcess,
    memcached_client,
    memcached_ping,
    one_line,
    psycopg_waits_cooperatively,
    redis_client,
    redis_ping,
)
from scenarios._updates import PG_ISOLATION, Conflict
from scenarios.counter.stores import Store

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "MemcachedStore",
    "PostgresStore",
    "RedisStore",
    "SessionStore",
    "postgres_table",
    "psycopg_waits_cooperatively",
]

# -- Redis ------------------------------------------------------------------------------
class RedisStore(Store):
    """A Redis key incremented with ``INCR``: one atomic command on a shared server."""

    name = "redis"
    shared = True
    updates = ("atomic", "read-write", "locked", "optimistic")

    def __init__(self, config: ServerConfig) -> None:
        self.url = config.redis_url
        self.key = f"{config.namespace}:counter"
        self._client = PerProcess(lambda: redis_client(self.url))

    @classmethod
    def prepare(cls, config: ServerConfig) -> None:
        redis_ping(config.redis_url)

    @classmethod
    def cleanup(cls, config: ServerConfig) -> None:
        client = redis_client(config.redis_url)
        try:
            client.delete(f"{config.namespace}:counter", f"{config.namespace}:counter:lock")
        finally:
            client.close()

    def _call(self, method: str, *args: Any) -> Any:
        return self._with(lambda client: getattr(client, method)(*args))

    def _with(self, work: Callable[[Any], Any]) -> Any:
        import redis

        try:
            return work(self._client.get())
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis at {self.url}: {one_line(exc)}") from exc

    def incr(self) -> int:
        return int(self._call("incr", self.key))

    def _get_set(self, client: Any) -> int:
        value = int(client.get(self.key) or 0) + 1
        self.wait()
        client.set(self.key, value)
        return value

    def incr_read_write(self) -> int:
        return int(self._with(self._get_set))

    def incr_locked(self) -> int:
        def work(client: Any) -> int:
            with self.locked_by_redis(client, f"{self.key}:lock", self.url):
                return self._get_set(client)

        return int(self._with(work))

    def incr_optimistic(self) -> int:
        import redis

        def attempt(client: Any) -> int:
            with client.pipeline() as pipe:
                try:
                    pipe.watch(self.key)
                    value = int(pipe.get(self.key) or 0) + 1
                    pipe.multi()
                    pipe.set(self.key, value)
                    pipe.execute()
                except redis.WatchError:
                    raise Conflict from None
            return value

        return int(self._with(lambda client: self.retry(f"Redis at {self.url}",
                                                        lambda: attempt(client))))

    def value(self) -> int:
        return int(self._call("get", self.key) or 0)

    def reset(self) -> None:
        self._call("set", self.key, 0)


# -- PostgreSQL -------------------------------------------------------------------------
def postgres_table(namespace: str) -> str:
    """The table that holds the counter of run ``namespace`` (a valid identifier)."""
    safe = re.sub(r"[^a-z0-9_]", "_", namespace.lower())
    return f"racelab_counter_{safe}"[:63]


def _postgres_address(dsn: str) -> tuple[str, int] | None:
    """``(host, port)`` of a TCP DSN; None for Unix sockets or several hosts."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Exception:  # an odd DSN: psycopg will report it when connecting
        return None
    host = str(params.get("host") or "")
    port = str(params.get("port") or "5432")
    if not host or host.startswith("/") or "," in host or "," in port:
        return None
    return host, int(port)


def _tcp_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def _postgres_pool(dsn: str, table: str) -> Any:
    from psycopg_pool import ConnectionPool

    if psycopg_waits_cooperatively() is False:
        # psycopg was imported before gevent patched select: switch to the
        # pure-Python poll() wait, which the patched select module makes cooperative.
        from psycopg import waiting

        waiting.wait = waiting.wait_poll  # type: ignore[assignment]
    pool = ConnectionPool(
        dsn,
        min_size=1,
        max_size=POOL_SIZE,
        open=False,
        timeout=IO_TIMEOUT,
        kwargs={"autocommit": True, "connect_timeout": int(CONNECT_TIMEOUT)},
        name="racelab",
    )
    pool.open(wait=True, timeout=IO_TIMEOUT)
    with pool.connection() as conn:
        _create_table(conn, table)
    return pool


def _create_table(conn: Any, table: str) -> None:
    from psycopg import errors, sql

    ident = sql.Identifier(table)
    create = sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (id integer PRIMARY KEY, value bigint NOT NULL)"
    ).format(ident)
    insert = sql.SQL("INSERT INTO {} (id, value) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
    # Another process may create it at the same moment.
    with contextlib.suppress(errors.UniqueViolation, errors.DuplicateTable):
        conn.execute(create)
    conn.execute(insert.format(ident))


class PostgresStore(Store):
    """A PostgreSQL row incremented with ``UPDATE ... RETURNING`` (a row lock per update)."""

    name = "postgres"
    shared = True
    updates = ("atomic", "read-write", "locked", "optimistic")

    def __init__(self, config: ServerConfig) -> None:
        from psycopg import sql

        self.dsn = config.postgres_dsn
        self.table = postgres_table(config.namespace)
        ident = sql.Identifier(self.table)
        self._incr = sql.SQL("UPDATE {} SET value = value + 1 WHERE id = 1 RETURNING value").format(
            ident
        )
        self._value = sql.SQL("SELECT value FROM {} WHERE id = 1").format(ident)
        self._value_locked = sql.SQL("SELECT value FROM {} WHERE id = 1 FOR UPDATE").format(ident)
        self._write = sql.SQL("UPDATE {} SET value = %s WHERE id = 1").format(ident)
        self._reset = sql.SQL("UPDATE {} SET value = 0 WHERE id = 1").format(ident)
        self._pool = PerProcess(self._open_pool)
        self._address = _postgres_address(self.dsn)
        #: monotonic time of the last connection failure (0: none recently)
        self._failed_at = 0.0

    def _open_pool(self) -> Any:
        try:
            return _postgres_pool(self.dsn, self.table)
        except Exception as exc:  # one line; retried next request
            raise StoreUnavailable(f"PostgreSQL at {self.dsn}: {one_line(exc)}") from exc

    @classmethod
    def prepare(cls, config: ServerConfig) -> None:
        import psycopg

        try:
            with psycopg.connect(
                config.postgres_dsn, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT)
            ) as conn:
                _create_table(conn, postgres_table(config.namespace))
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"PostgreSQL at {config.postgres_dsn} is not usable ({one_line(exc)}); "
                f"{POSTGRES_HINT}"
            ) from None

    @classmethod
    def cleanup(cls, config: ServerConfig) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            config.postgres_dsn, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT)
        ) as conn:
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(
                    sql.Identifier(postgres_table(config.namespace))
                )
            )

    def _fail_fast(self) -> None:
        # After a connection failure the pool reconnects in the background and
        # a request would wait its whole timeout for a connection; while the
        # server refuses connections, answer at once instead.
        if not self._failed_at or time.monotonic() - self._failed_at > FAIL_FAST_S:
            return
        if self._address is not None and not _tcp_answers(*self._address):
            self._failed_at = time.monotonic()
            raise StoreUnavailable(f"PostgreSQL at {self.dsn} refuses connections")

    def _getconn(self, pool: Any) -> Any:
        # Wait for a pooled connection in short slices, probing the server
        # between them, so that requests already waiting when it goes away
        # fail now rather than at the end of the pool timeout.
        import psycopg_pool

        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            try:
                return pool.getconn(timeout=min(0.5, max(deadline - time.monotonic(), 0.01)))
            except psycopg_pool.PoolTimeout:
                if time.monotonic() >= deadline:
                    raise
                self._failed_at = self._failed_at or time.monotonic()
                self._fail_fast()
                self._failed_at = 0.0

    def _fetch(self, query: Any) -> int | None:
        import psycopg
        import psycopg_pool

        self._fail_fast()
        pool: Any = self._pool.get()
        try:
            conn = self._getconn(pool)
            try:
                row = conn.execute(query).fetchone()
            finally:
                pool.putconn(conn)  # a broken connection is discarded, not reused
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            self._failed_at = time.monotonic()
            raise StoreUnavailable(f"PostgreSQL at {self.dsn}: {one_line(exc)}") from exc
        except psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL at {self.dsn}: {one_line(exc)}") from exc
        return None if row is None else int(row[0])

    def _transaction(self, work: Callable[[Any], int], isolation: str = "") -> int:
        """``work(conn)`` inside one transaction (at ``isolation``, else the server's default).

        Raises:
            Conflict: the transaction could not be serialized (an optimistic attempt lost).
            StoreUnavailable: any other failure of the store.
        """
        import psycopg
        import psycopg_pool
        from psycopg import errors

        self._fail_fast()
        pool: Any = self._pool.get()
        try:
            conn = self._getconn(pool)
            try:
                with conn.transaction():
                    if isolation:
                        conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
                    return work(conn)
            finally:
                pool.putconn(conn)
        except (errors.SerializationFailure, errors.DeadlockDetected) as exc:
            raise Conflict(one_line(exc)) from exc
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            self._failed_at = time.monotonic()
            raise StoreUnavailable(f"PostgreSQL at {self.dsn}: {one_line(exc)}") from exc
        except psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL at {self.dsn}: {one_line(exc)}") from exc

    def _read_then_write(self, conn: Any, read: Any) -> int:
        row = conn.execute(read).fetchone()
        if row is None:
            raise StoreUnavailable(f"the counter row of table {self.table} is missing")
        value = int(row[0]) + 1
        self.wait()
        conn.execute(self._write, (value,))
        return value

    def incr(self) -> int:
        value = self._fetch(self._incr)
        if value is None:
            raise StoreUnavailable(f"the counter row of table {self.table} is missing")
        return value

    def incr_read_write(self) -> int:
        return self._transaction(lambda conn: self._read_then_write(conn, self._value))

    def incr_locked(self) -> int:
        return self._transaction(lambda conn: self._read_then_write(conn, self._value_locked))

    def incr_optimistic(self) -> int:
        return self.retry(f"PostgreSQL at {self.dsn}", lambda: self._transaction(
            lambda conn: self._read_then_write(conn, self._value), PG_ISOLATION))

    def value(self) -> int:
        return self._fetch(self._value) or 0

    def reset(self) -> None:
        self._fetch(self._reset)

    def describe(self) -> dict[str, object]:
        """How this process talks to PostgreSQL (for diagnostics)."""
        return {"table": self.table, "cooperative_wait": psycopg_waits_cooperatively()}


# -- memcached --------------------------------------------------------------------------
class MemcachedStore(Store):
    """A memcached key incremented with ``incr`` (atomic in the server)."""

    name = "memcached"
    shared = True
    updates = ("atomic", "read-write", "optimistic")

    def __init__(self, config: ServerConfig) -> None:
        self.address = config.memcached
        self.key = f"{config.namespace}:counter"
        self._client = PerProcess(lambda: memcached_client(self.address))

    @classmethod
    def prepare(cls, config: ServerConfig) -> None:
        memcached_ping(config.memcached)

    @classmethod
    def cleanup(cls, config: ServerConfig) -> None:
        client = memcached_client(config.memcached, pool_size=1)
        try:
            client.delete(f"{config.namespace}:counter")
        finally:
            client.close()

    def _call(self, method: str, *args: Any) -> Any:
        from pymemcache.exceptions import MemcacheError  # type: ignore[import-untyped]

        try:
            return getattr(self._client.get(), method)(*args)
        except (MemcacheError, OSError) as exc:
            raise StoreUnavailable(f"memcached at {self.address}: {one_line(exc)}") from exc

    def incr(self) -> int:
        value = self._call("incr", self.key, 1)
        if value is None:
            # The key does not exist yet: add() creates it only if still absent,
            # so concurrent first increments cannot reset each other.
            self._call("add", self.key, b"0")
            value = self._call("incr", self.key, 1)
        if value is None:
            raise StoreUnavailable(f"memcached at {self.address} lost the key {self.key}")
        return int(value)

    def value(self) -> int:
        raw = self._call("get", self.key)
        return int(raw) if raw is not None else 0

    def reset(self) -> None:
        self._call("set", self.key, b"0")

    def incr_read_write(self) -> int:
        raw = self._call("get", self.key)
        value = (int(raw) if raw is not None else 0) + 1
        self.wait()
        self._call("set", self.key, str(value).encode())
        return value

    def incr_optimistic(self) -> int:
        def attempt() -> int:
            raw, token = self._call("gets", self.key)
            if raw is None:  # not there yet: add() creates it only if still absent
                self._call("add", self.key, b"0")
                raise Conflict
            value = int(raw) + 1
            if not self._call("cas", self.key, str(value).encode(), token):
                raise Conflict
            return value

        return self.retry(f"memcached at {self.address}", attempt)


# -- Flask-Session ----------------------------------------------------------------------
_SESSION_KEY = "racelab_counter"
SESSION_COOKIE = "racelab_session"


def _session_dir(config: ServerConfig) -> Path:
    # The supervisor gives each run its own directory (run_dir/sessions). An app built
    # without one (Flask's test client) gets a private directory removed at exit,
    # never a shared name in the system temp directory.
    base = Path(config.session_dir) if config.session_dir else _private_session_base()
    return base / config.namespace


@functools.cache
def _private_session_base() -> Path:
    path = Path(tempfile.mkdtemp(prefix="racelab-sessions-"))
    atexit.register(shutil.rmtree, path, True)
    return path


class SessionStore(Store):
    """A counter per client in a server-side Flask-Session session.

    The session is read when a request starts and written when it ends, so:
    clients (cookies) never share a number, and concurrent requests of one
    client lose updates (the last one to finish overwrites the others).
    Backends: a cachelib ``FileSystemCache`` in ``config.session_dir`` (the
    default), or Redis when ``config.session_backend == "redis"``.
    """

    name = "session"
    # One value per client, the same whichever process or host serves it.
    shared = True

    def __init__(self, config: ServerConfig) -> None:
        if config.session_backend not in ("filesystem", "redis"):
            raise StoreUnavailable(
                f"unknown session backend {config.session_backend!r}; use filesystem or redis"
            )
        self.config = config

    @classmethod
    def prepare(cls, config: ServerConfig) -> None:
        if config.session_backend == "redis":
            redis_ping(config.redis_url)
            return
        try:
            _session_dir(config).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the session directory {_session_dir(config)}: {exc.strerror}"
            ) from None

    @classmethod
    def cleanup(cls, config: ServerConfig) -> None:
        if config.session_backend == "redis":
            client = redis_client(config.redis_url)
            try:
                keys = list(client.scan_iter(match=f"{config.namespace}:session:*", count=1000))
                if keys:
                    client.delete(*keys)
            finally:
                client.close()
            return
        shutil.rmtree(_session_dir(config), ignore_errors=True)

    def init_app(self, app: Flask) -> None:
        from flask_session import Session  # type: ignore[attr-defined,import-untyped]

        config = self.config
        app.config.update(
            SESSION_COOKIE_NAME=SESSION_COOKIE,
            SESSION_KEY_PREFIX=f"{config.namespace}:session:",
            SESSION_PERMANENT=False,
        )
        if config.session_backend == "redis":
            import redis

            app.config.update(
                SESSION_TYPE="redis",
                SESSION_REDIS=redis.Redis.from_url(
                    config.redis_url,
                    socket_connect_timeout=CONNECT_TIMEOUT,
                    socket_timeout=IO_TIMEOUT,
                ),
            )
        else:
            from cachelib.file import FileSystemCache

            app.config.update(
                SESSION_TYPE="cachelib",
                # threshold=0: never prune, or old clients' sessions would vanish mid-run.
                SESSION_CACHELIB=FileSystemCache(str(_session_dir(config)), threshold=0),
            )
        Session(app)

    def incr(self) -> int:
        from flask import session

        # Read at request start (open_session), written at request end (save_session).
        value = int(session.get(_SESSION_KEY, 0)) + 1
        session[_SESSION_KEY] = value
        return value

    def value(self) -> int:
        from flask import session

        return int(session.get(_SESSION_KEY, 0))

    def reset(self) -> None:
        from flask import session

        session.pop(_SESSION_KEY, None)
