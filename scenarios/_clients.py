"""Connections to the shared stores, for every scenario's server side.

Each client library (redis, psycopg, pymemcache) is imported inside the function
that needs it: a server process loads only the library of the store it serves.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from collections.abc import Callable
from typing import Any

from demo_server.basics.errors import StoreUnavailable

__all__ = [
    "CONNECT_TIMEOUT",
    "FAIL_FAST_S",
    "IO_TIMEOUT",
    "MEMCACHED_HINT",
    "POOL_SIZE",
    "POSTGRES_HINT",
    "REDIS_HINT",
    "PerProcess",
    "memcached_address",
    "memcached_client",
    "memcached_ping",
    "one_line",
    "psycopg_waits_cooperatively",
    "redis_client",
    "redis_ping",
    "sqlite_connect",
]

#: Connections one worker process may hold to a store (a gevent worker runs many greenlets).
POOL_SIZE = 32
CONNECT_TIMEOUT = 3.0
IO_TIMEOUT = 10.0
#: Seconds after a connection failure during which a refused TCP probe fails a request at once.
FAIL_FAST_S = 2.0

REDIS_HINT = "set --redis-url or RACELAB_REDIS_URL, or pass --start-services"
POSTGRES_HINT = "set --postgres-dsn or RACELAB_POSTGRES_DSN, or pass --start-services"
MEMCACHED_HINT = "set --memcached or RACELAB_MEMCACHED, or pass --start-services"


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def redis_client(url: str) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=IO_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=IO_TIMEOUT,
        # No retry: an INCR that reached the server and is sent again counts twice.
        retry=Retry(NoBackoff(), 0),
    )
    return redis.Redis(connection_pool=pool)


def redis_ping(url: str) -> None:
    try:
        client = redis_client(url)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure means "not usable"
        raise StoreUnavailable(
            f"Redis at {url} is not reachable ({one_line(exc)}); {REDIS_HINT}"
        ) from None


def psycopg_waits_cooperatively() -> bool | None:
    """Whether psycopg waits for libpq in a way gevent can switch greenlets around.

    Returns:
        ``None`` when gevent has not patched this process (nothing to cooperate
        with), otherwise True unless psycopg picked its blocking C wait function.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("select"):
        return None
    from psycopg import waiting

    return waiting.wait is not getattr(waiting, "wait_c", None)


def memcached_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise StoreUnavailable(
            f"memcached address {address!r} is not host:port; {MEMCACHED_HINT}"
        ) from None


def memcached_client(address: str, pool_size: int = POOL_SIZE) -> Any:
    from pymemcache.client.base import PooledClient  # type: ignore[import-untyped]

    return PooledClient(
        memcached_address(address),
        connect_timeout=CONNECT_TIMEOUT,
        timeout=IO_TIMEOUT,
        no_delay=True,
        max_pool_size=pool_size,
        default_noreply=False,
    )


def sqlite_connect(path: str) -> sqlite3.Connection:
    """An autocommit connection that waits up to 30 s for locks, on a file in WAL mode."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    # Switching to WAL needs the file to itself; a file already in WAL needs nothing.
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    return conn


def memcached_ping(address: str) -> None:
    """Raise StoreUnavailable unless memcached at ``address`` answers."""
    client = memcached_client(address, pool_size=1)
    try:
        client.version()
    except Exception as exc:  # any failure means "not usable"
        raise StoreUnavailable(
            f"memcached at {address} is not reachable ({one_line(exc)}); {MEMCACHED_HINT}"
        ) from None
    finally:
        client.close()


class PerProcess:
    """A value built lazily once per process (connections must not cross a fork)."""

    def __init__(self, build: Callable[[], object]) -> None:
        self._build = build
        self._pid = -1
        self._value: object = None
        self._lock = threading.Lock()

    def get(self) -> object:
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    self._value = self._build()
                    self._pid = pid
        return self._value

    def reset(self) -> None:
        """Build a fresh value on the next ``get`` (its connection was lost)."""
        with self._lock:
            self._pid = -1
