"""SIGINT, SIGTERM and SIGHUP all mean "stop cleanly", in every racelab command.

``install()`` makes the first of these signals raise ``Interrupted`` (a
``KeyboardInterrupt``, so every ``except KeyboardInterrupt`` that stops servers
and keeps what was recorded handles all three alike). A later signal raises
nothing: cleanup that is already running must not be cut short, so it only
sets ``hurry()``, which grace periods read to shorten their wait. The CLI exits
with ``Interrupted.exit_code``: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP
(128 + the signal's number, as shells report it).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

__all__ = ["SIGNALS", "Interrupted", "first_signal", "hurry", "install", "reset"]

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


def _handler(signum: int, frame: FrameType | None) -> None:
    with _lock:
        _state["count"] += 1
        first = _state["count"] == 1
        if first:
            _state["first"] = signum
    if first:
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
