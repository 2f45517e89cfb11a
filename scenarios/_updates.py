"""How a shared store is changed when the change is not one step: what the updates share.

Every shared store of a scenario can change its state in up to four ways (the
``update`` of an experiment, ``demo_server.served.config.UPDATES``):

- ``atomic``: one step in the store (``INCR``, ``UPDATE ... RETURNING``, a Lua
  script); nothing here is needed;
- ``read-write``: what people write first once the state is out of the process:
  read it, run the window, write back what was read plus one. Two requests can
  read the same value, and one write is lost;
- ``locked``: the same read and write under a lock the store holds
  (``SELECT ... FOR UPDATE``, SQLite's ``BEGIN IMMEDIATE``, redis-py's ``Lock``);
- ``optimistic``: the same read and write, applied only if nobody wrote since
  the read (``WATCH``/``MULTI``/``EXEC``, ``REPEATABLE READ``, ``gets``/``cas``,
  ``UPDATE ... WHERE value = :read``), tried again when somebody did.

This module holds what those forms share: ``UpdateForms``, the mixin a store
class offering several updates inherits (``update_form`` picks the method of the
configured one, ``buy`` or ``buy_read_write``...); ``UpdateStats``, each worker's count of
retried conflicts and abandoned updates (``/state`` reports them: the price of
the fix); ``retrying``, the bounded retry loop (``defaults.UPDATE_ATTEMPTS``
tries within ``IO_TIMEOUT`` seconds, then the request fails with
``StoreUnavailable``, an HTTP 503 whose effect is unknown to the client, and one
``abort`` is counted); ``Conflict``, what an attempt raises when its write did not
apply; and ``redis_lock``, the lock redis-py offers (``SET key token NX PX``,
released by a Lua script that deletes only its own token).

A failure of the store itself (refused connection, timeout) is never a conflict:
it ends the loop at once, so a store that dies mid-run cannot make a request spin.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from demo_server.basics import defaults
from demo_server.basics.errors import ConfigError, StoreUnavailable
from demo_server.served.windows import make_window
from scenarios._clients import IO_TIMEOUT

if TYPE_CHECKING:
    from demo_server.served.config import ServerConfig

__all__ = [
    "LOCK_TTL_S",
    "PG_ISOLATION",
    "Conflict",
    "UpdateForms",
    "UpdateStats",
    "redis_lock",
    "retrying",
]

T = TypeVar("T")

#: Seconds a Redis lock lives if its holder dies without releasing it.
LOCK_TTL_S = 10.0
#: The isolation of PostgreSQL's optimistic update: a transaction that writes a row another
#: committed since it began fails with a serialization failure (every transaction here
#: writes each row it reads, so this level is enough: no write skew is possible).
PG_ISOLATION = "REPEATABLE READ"
_BACKOFF_FIRST_S = 0.0001
_BACKOFF_MAX_S = 0.01


class Conflict(Exception):
    """An optimistic attempt whose write did not apply: somebody wrote since its read."""


class UpdateStats:
    """One worker's retried conflicts and abandoned updates (thread- and greenlet-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retries = 0
        self.aborts = 0

    def retry(self) -> None:
        with self._lock:
            self.retries += 1

    def abort(self) -> None:
        with self._lock:
            self.aborts += 1

    def reset(self) -> None:
        with self._lock:
            self.retries = self.aborts = 0

    def state(self) -> dict[str, int]:
        """``{"retries", "aborts"}`` for ``/state``."""
        with self._lock:
            return {"retries": self.retries, "aborts": self.aborts}


class UpdateForms:
    """A store that offers several updates: one method per update, picked once per worker.

    A class lists its ``updates``; for an operation ``op`` (``incr``, ``buy``...)
    the ``atomic`` update is the method ``op`` itself and each other one the method
    ``op_<update>`` (``buy_read_write``, ``buy_locked``, ``buy_optimistic``).
    """

    #: The updates this store offers; ``atomic`` (its one-step method) comes first.
    updates: ClassVar[tuple[str, ...]] = ("atomic",)
    #: This worker's retries and aborts, once a non-atomic update is chosen.
    stats: UpdateStats | None = None
    _window: Callable[[], None] | None = None

    def update_form(self, config: ServerConfig, op: str) -> Callable[..., Any]:
        """The method of ``op`` for ``config.update``; builds the stats and the window.

        Raises:
            ConfigError: the store does not offer that update.
        """
        if config.update == "atomic":
            return getattr(self, op)  # type: ignore[no-any-return]
        if config.update not in self.updates:
            raise ConfigError(f"{type(self).__name__} has no {config.update!r} update")
        self.stats = UpdateStats()
        self._window = (make_window(config.window, config.work_us)
                        if config.window != "none" else None)
        return getattr(self, f"{op}_{config.update.replace('-', '_')}")  # type: ignore[no-any-return]

    def wait(self) -> None:
        """The window between the read and the write (nothing for ``none``)."""
        if self._window is not None:
            self._window()

    def update_state(self) -> dict[str, int]:
        """What ``/state`` adds for a non-atomic update: this worker's retries and aborts."""
        return self.stats.state() if self.stats is not None else {}

    def reset_stats(self) -> None:
        if self.stats is not None:
            self.stats.reset()

    def retry(self, store: str, attempt: Callable[[], T]) -> T:
        """``retrying(self.stats, store, attempt)``: an optimistic update's bounded loop."""
        assert self.stats is not None, "retry() belongs to the optimistic update"
        return retrying(self.stats, store, attempt)

    def locked_by_redis(self, client: Any, name: str, url: str) -> Any:
        """``redis_lock(client, name, self.stats, url)``: the locked update's Redis lock."""
        assert self.stats is not None, "the lock belongs to the locked update"
        return redis_lock(client, name, self.stats, url)


def retrying(stats: UpdateStats, store: str, attempt: Callable[[], T], *,
             attempts: int = defaults.UPDATE_ATTEMPTS, within_s: float = IO_TIMEOUT) -> T:
    """``attempt()`` until it raises no ``Conflict``: at most ``attempts`` times, ``within_s``.

    Between tries it sleeps a random moment that grows with each conflict (up to
    10 ms), so that contenders stop meeting in step.

    Raises:
        StoreUnavailable: the update gave up (one abort counted), or the store failed.
    """
    deadline = time.monotonic() + within_s
    pause = _BACKOFF_FIRST_S
    for tries in range(1, attempts + 1):
        try:
            return attempt()
        except Conflict:
            if tries == attempts or time.monotonic() >= deadline:
                stats.abort()
                raise StoreUnavailable(
                    f"{store}: the optimistic update gave up after {tries} conflicting "
                    "attempts") from None
            stats.retry()
            time.sleep(random.uniform(0, pause))
            pause = min(pause * 2, _BACKOFF_MAX_S)
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def redis_lock(client: Any, name: str, stats: UpdateStats, url: str) -> Iterator[None]:
    """Hold redis-py's lock ``name`` (waiting at most ``IO_TIMEOUT`` for it).

    Raises:
        StoreUnavailable: the lock could not be taken in time (one abort counted) or
            Redis failed; a lock that expired under its holder (its TTL passed) too.
    """
    import redis
    from redis.exceptions import LockError

    lock = client.lock(name, timeout=LOCK_TTL_S, sleep=0.001, blocking_timeout=IO_TIMEOUT)
    try:
        taken = lock.acquire()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"Redis at {url}: {exc}") from exc
    if not taken:
        stats.abort()
        raise StoreUnavailable(f"Redis at {url}: the lock {name} was not free within "
                               f"{IO_TIMEOUT:g} s")
    try:
        yield
    finally:
        try:
            lock.release()
        except LockError as exc:  # it expired: another request may have run inside it
            raise StoreUnavailable(f"Redis at {url}: the lock {name} expired while held: "
                                   f"{exc}") from exc
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis at {url}: {exc}") from exc
