"""The window: what runs between reading the shared value and writing it back.

None of these is simulated: each is the real operation, and whether it lets
another thread or greenlet in between is up to the interpreter and the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from demo_server.basics.errors import ConfigError

__all__ = ["make_window"]


def _noop() -> None:
    """A plain function call that does nothing."""


def _work(work_us: int) -> Callable[[], None]:
    deadline_ns = work_us * 1000

    def work() -> None:
        start = time.perf_counter_ns()
        while time.perf_counter_ns() - start < deadline_ns:
            pass

    return work


def _yield() -> None:
    time.sleep(0)


def _io() -> None:
    time.sleep(0.001)


def make_window(window: str, work_us: int = 50) -> Callable[[], None]:
    """Return the callable that runs between read and write for ``window``.

    Args:
        window: ``call``, ``work``, ``yield`` or ``io`` (``none`` has no callable:
            the store then runs the original code literally).
        work_us: CPU time of the ``work`` window, in microseconds.

    Returns:
        A function of no arguments.
    """
    if window == "call":
        return _noop
    if window == "work":
        return _work(work_us)
    if window == "yield":
        return _yield
    if window == "io":
        return _io
    raise ConfigError(f"window {window!r} has no callable")
