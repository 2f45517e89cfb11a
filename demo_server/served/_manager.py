"""The counter manager process of the ``manager`` store.

Run as ``python -m demo_server.served._manager [PORT]`` with the hex authkey as the
first line of its stdin (never in argv, where ``ps`` shows it to every user of the
machine): it binds 127.0.0.1 on ``PORT`` (default: a free one; a restarted manager
takes its old port), prints ``PORT <n>`` on its first line and serves until stopped.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from multiprocessing import connection
from multiprocessing.managers import BaseManager, listener_client  # type: ignore[attr-defined]

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


def _blocking_client(
    address: tuple[str, int], family: str | None = None, authkey: bytes | None = None
) -> connection.Connection:
    """multiprocessing's Client on a file descriptor that is blocking for sure.

    Nagle's algorithm is switched off, and multiprocessing reads its sockets with
    ``os.read``: under gevent's monkey
    patching every socket is non-blocking underneath and those reads fail with
    EAGAIN. Each call to the manager then blocks its worker for one round trip
    on loopback, as a C database driver would.
    """
    with socket.create_connection(address) as sock:
        # Small request/answer messages: without TCP_NODELAY each waits ~40 ms
        # for the peer's delayed ACK (Nagle's algorithm).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fd = sock.detach()
    os.set_blocking(fd, True)
    conn = connection.Connection(fd)
    if authkey is not None:
        connection.answer_challenge(conn, authkey)  # type: ignore[attr-defined]
        connection.deliver_challenge(conn, authkey)  # type: ignore[attr-defined]
    return conn


# The same wire format as "pickle", with the blocking client above.
listener_client["racelab"] = (connection.Listener, _blocking_client)  # type: ignore[index]


class CounterManager(BaseManager):
    """A manager exposing one shared ``counter()``; clients pass ``serializer="racelab"``."""


_counter = Counter()


def _get_counter() -> Counter:
    return _counter


CounterManager.register("counter", callable=_get_counter)


def main(argv: list[str]) -> None:
    authkey = bytes.fromhex(sys.stdin.readline().strip())
    if len(authkey) < 16:
        raise SystemExit("racelab's counter manager needs its authkey on stdin")
    port = int(argv[0]) if argv else 0
    manager = CounterManager(address=("127.0.0.1", port), authkey=authkey)
    server = manager.get_server()  # type: ignore[no-untyped-call]
    # Accepted sockets inherit TCP_NODELAY from the listening socket on Linux.
    listener = getattr(server, "listener", None)
    listening = getattr(getattr(listener, "_listener", None), "_socket", None)
    if listening is not None:
        listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print(f"PORT {server.address[1]}", flush=True)  # type: ignore[index]
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
