"""SIGINT, SIGTERM and SIGHUP all mean "stop cleanly", in every racelab command.

``install()`` makes the first of these signals raise ``Interrupted`` (a
``KeyboardInterrupt``, so every ``except KeyboardInterrupt`` that stops servers
and keeps what was recorded handles all three alike). A later signal raises
nothing: cleanup that is already running must not be cut short, so it only
sets ``hurry()``, which grace periods read to shorten their wait. The CLI exits
with ``Interrupted.exit_code``: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP
(128 + the signal's number, as shells report it: ``exits.signal_exit``).

``deferred()`` is the same account for code that must finish a stop of its own
before it gives up (the swarm runner: Locust saves what it recorded first):
inside it the signals are counted alike but raise nothing; the caller polls
``pending()`` and reads ``received``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = [
    "SIGNALS",
    "Deferred",
    "Interrupted",
    "deferred",
    "first_signal",
    "hurry",
    "install",
    "reset",
]

SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None))
                if s is not None)

_state = {"first": 0, "count": 0}
_lock = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal.

    Attributes:
        signum: the signal's number.
        exit_code: the exit code that reports it (128 + signum).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def _count(signum: int) -> bool:
    """Note one signal; True if it is the first."""
    with _lock:
        _state["count"] += 1
        first = _state["count"] == 1
        if first:
            _state["first"] = signum
    return first


def _handler(signum: int, frame: FrameType | None) -> None:
    if _count(signum):
        raise Interrupted(signum)


def install() -> None:
    """Handle SIGINT, SIGTERM and SIGHUP as above (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    reset()
    for signum in SIGNALS:
        signal.signal(signum, _handler)


def reset() -> None:
    """Forget the signals seen so far (tests, and a new command in one process)."""
    with _lock:
        _state["first"] = 0
        _state["count"] = 0


def hurry() -> bool:
    """True once a second signal came: shorten grace periods, still write what was recorded."""
    return _state["count"] > 1


def first_signal() -> int:
    """The number of the first signal received, 0 if none."""
    return _state["first"]


class Deferred:
    """The signals that came inside ``deferred()``, oldest first, and how many were acted on.

    Attributes:
        received: the signals' names (``SIGINT``...), plus any ``note``d.
        handled: how many of ``received`` the caller has acted on.
    """

    def __init__(self) -> None:
        self.received: list[str] = []
        self.handled = 0

    def _catch(self, signum: int, frame: FrameType | None) -> None:
        _count(signum)
        self.received.append(signal.Signals(signum).name)

    def note(self, name: str) -> None:
        """Count a stop that arrived another way (a KeyboardInterrupt raised by a callback)."""
        self.received.append(name)

    def pending(self) -> bool:
        """True while a received signal has not been acted on."""
        return self.handled < len(self.received)


@contextlib.contextmanager
def deferred() -> Iterator[Deferred]:
    """Within: INT, TERM and HUP are counted (``first_signal``, ``hurry``) but raise nothing.

    Main thread only; elsewhere the handlers stay as they are. The handlers
    found on entry are put back on exit.
    """
    stops = Deferred()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                previous[signum] = signal.signal(signum, stops._catch)
    try:
        yield stops
    finally:
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler)
