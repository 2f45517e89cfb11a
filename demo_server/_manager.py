"""The counter manager process of the ``manager`` store.

Run as ``python -m demo_server._manager AUTHKEY_HEX``: it binds 127.0.0.1 on a
free port, prints ``PORT <n>`` on its first line and serves until stopped.
"""

from __future__ import annotations

import sys
import threading
from multiprocessing.managers import BaseManager

__all__ = ["Counter", "CounterManager"]


class Counter:
    """A lock-protected counter; the manager serves each connection in a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def incr(self) -> int:
        with self._lock:
            self._value += 1
            return self._value

    def value(self) -> int:
        with self._lock:
            return self._value

    def reset(self) -> None:
        with self._lock:
            self._value = 0


class CounterManager(BaseManager):
    """A manager exposing one shared ``counter()``."""


_counter = Counter()


def _get_counter() -> Counter:
    return _counter


CounterManager.register("counter", callable=_get_counter)


def main(argv: list[str]) -> None:
    authkey = bytes.fromhex(argv[0])
    manager = CounterManager(address=("127.0.0.1", 0), authkey=authkey)
    server = manager.get_server()  # type: ignore[no-untyped-call]
    print(f"PORT {server.address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
