"""The shared request budget of one Locust process; workers lease it from the master."""

from __future__ import annotations

from collections.abc import Callable

import gevent.event

__all__ = ["Budget"]

_LEASE_WAIT_S = 30.0  # a worker waits this long for the master's grant before giving up


class Budget:
    """Requests this process may still make.

    Args:
        ask: called (on workers) to ask the master for more; the answer comes
            back through ``grant``.
    """

    def __init__(self, ask: Callable[[], None] | None = None) -> None:
        self.unbounded = True
        self.remaining = 0
        self.exhausted = False
        self.leased = False  # True on workers: ask the master for more
        self._ask = ask
        self._pending: gevent.event.Event | None = None

    def reset(self, total: int, leased: bool) -> None:
        self.unbounded = total <= 0
        self.leased = leased
        self.remaining = 0 if leased else total
        self.exhausted = False

    def take(self) -> bool:
        """One request's permission; False once the shared budget is spent (or stopped)."""
        while True:
            if self.exhausted:
                return False
            if self.unbounded:
                return True
            if self.remaining > 0:
                self.remaining -= 1
                return True
            if not self.leased or self._ask is None:
                self.exhausted = True
                return False
            if self._pending is None:
                self._pending = gevent.event.Event()
                self._ask()
            pending = self._pending
            if not pending.wait(timeout=_LEASE_WAIT_S):
                self.exhausted = True  # the master is gone
                return False

    def grant(self, count: int) -> None:
        if count <= 0:
            self.exhausted = True
        self.remaining += max(count, 0)
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.set()

    def stop(self) -> None:
        """No more requests from now on (an interrupt); waiting users wake up."""
        self.unbounded = False
        self.remaining = 0
        self.grant(0)
