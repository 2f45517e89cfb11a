"""One swarm connection: a socket to one instance, its pre-built requests, its framer.

Runs inside a Locust process only (gevent's sockets). Each user keeps one
connection per instance URL, sends a pre-built request with one ``send`` and
feeds what comes back to a ``loadtests.framing.ResponseFramer``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import gevent
from gevent.socket import wait as _wait_for

from loadtests.framing import BadResponse, Headers, ResponseFramer, TooLarge, Truncated
from scenarios.operation import Operation

__all__ = ["Client", "Connection", "describe"]

IDLE_NS = 1_000_000_000  # reconnect before using a connection idle this long
_RECV_BYTES = 65536


class Client:
    """One client: a cookie jar shared by its connections (every tab of one person)."""

    __slots__ = ("connections", "id", "jar")

    def __init__(self, client_id: str) -> None:
        self.id = client_id
        self.jar: dict[bytes, bytes] = {}
        self.connections: list[Connection] = []

    def keep_cookies(self, headers: Headers) -> None:
        """Store every ``Set-Cookie`` of a response; rebuild the requests if one changed."""
        changed = False
        for name, value in headers:
            if name.lower() != b"set-cookie":
                continue
            pair = value.split(b";", 1)[0].strip()
            key, eq, val = pair.partition(b"=")
            if eq and self.jar.get(key) != val:
                self.jar[key] = val
                changed = True
        if changed:
            for conn in self.connections:
                conn.build()


class Connection:
    """One keep-alive connection to one instance, with every operation's request pre-built."""

    __slots__ = ("client", "context", "deadline_ns", "expired", "framer", "host", "lines",
                 "methods", "operations", "port", "readable", "requests", "sent", "sock",
                 "stop_reason", "templates", "tls", "url", "used_ns")

    def __init__(self, url: str, operations: Sequence[Operation], client: Client,
                 max_body: int, insecure: bool = False) -> None:
        parts = urlsplit(url)
        self.url = url
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        self.context: ssl.SSLContext | None = None
        if self.tls:
            self.context = ssl.create_default_context()
            if insecure:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        base = (parts.path or "").rstrip("/")
        host = self.host if parts.port is None else f"{self.host}:{self.port}"
        if ":" in self.host:  # an IPv6 literal
            host = f"[{self.host}]" + ("" if parts.port is None else f":{self.port}")
        self.operations = tuple(operations)
        self.methods = tuple(op.method for op in self.operations)
        #: per operation: the request head (without its final CRLF) and body
        self.templates: list[tuple[bytes, bytes]] = []
        for op in self.operations:
            head, _, body = Operation(
                name=op.name, method=op.method, path=base + op.path, headers=op.headers,
                body=op.body).request_bytes(host).partition(b"\r\n\r\n")
            self.templates.append((head + b"\r\nUser-Agent: racelab", body))
        self.client = client
        client.connections.append(self)
        self.requests: list[bytes] = []
        self.build()
        #: per operation: a successful row with %-placeholders (see ``Recorder``)
        self.lines: list[str] = []
        self.framer = ResponseFramer(max_body)
        self.sock: Any = None
        self.readable: Any = None  # the event loop's read watcher of ``sock``
        self.used_ns = 0
        self.sent = 0
        self.deadline_ns = 0  # while a request is in flight: when the watchdog ends it
        self.expired = False  # the watchdog (or an interrupt) ended the request in flight
        self.stop_reason = "timeout"

    def build(self) -> None:
        """Pre-build every operation's request, with the client's cookies."""
        jar = self.client.jar
        cookie = (b"\r\nCookie: " + b"; ".join(k + b"=" + v for k, v in jar.items())
                  if jar else b"")
        self.requests = [head + cookie + b"\r\n\r\n" + body for head, body in self.templates]

    def connect(self, timeout: float) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.context is not None:
            try:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        sock.settimeout(None)  # requests are timed by the watchdog
        self.sock = sock
        # TLS may hold decrypted bytes the descriptor no longer shows: wait in recv there.
        self.readable = None if self.tls else gevent.get_hub().loop.io(sock.fileno(), 1)
        self.framer.clear()
        self.expired = False
        self.sent = 0
        self.used_ns = time.monotonic_ns()

    def refresh(self, timeout: float) -> None:
        """Reconnect a connection idle long enough for the server to have closed it.

        Servers close idle keep-alive connections (gunicorn after 2 s); a request
        sent into one that is closing gets no answer and would count as unknown.
        """
        if self.sock is not None and time.monotonic_ns() - self.used_ns < IDLE_NS:
            return
        self.close()
        with contextlib.suppress(OSError):
            self.connect(timeout)

    def close(self) -> None:
        if self.readable is not None:
            self.readable.close()
            self.readable = None
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def end(self, reason: str) -> None:
        """End the request in flight from outside (watchdog, interrupt): its receive fails."""
        if self.sock is not None and not self.expired:
            self.expired = True
            self.stop_reason = reason
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def send(self, index: int) -> None:
        """Send operation ``index``'s request (one ``send`` unless the buffer is full)."""
        sock = self.sock
        request = self.requests[index]
        self.framer.expect(self.methods[index])
        sent = sock.send(request)
        if sent < len(request):
            sock.sendall(request[sent:])

    def receive(self) -> Any:
        """Read one response (a ``framing.Response``); closes the connection if it ends.

        Raises:
            framing.FramingError: no usable response.
            OSError: from the socket (timeouts included).
        """
        sock = self.sock
        framer = self.framer
        if self.readable is not None:
            # Wait for the answer in the event loop before reading. A read tried
            # first nearly always finds nothing yet: a wasted system call. And on
            # loopback the server can answer inside this user's send, call after
            # call; a user that found its answer every time would never pass
            # through the loop, and would keep its process to itself for seconds
            # while the other users' answers waited (and their keep-alive
            # connections timed out under them).
            _wait_for(self.readable)
        response = None
        while response is None:
            chunk = sock.recv(_RECV_BYTES)
            response = framer.feed(chunk) if chunk else framer.feed_eof()
        if response.sets_cookie:
            self.client.keep_cookies(response.headers)
        if response.keep_alive:
            self.used_ns = time.monotonic_ns()
        else:
            self.close()
        return response


def describe(exc: BaseException, conn: Connection | None = None) -> str:
    """Why an operation got no usable answer, in a few words (the history's ``error``)."""
    if conn is not None and conn.expired:
        return conn.stop_reason
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, Truncated):
        return str(exc)
    if isinstance(exc, TooLarge):
        return str(exc)
    if isinstance(exc, BadResponse):
        return f"bad HTTP response ({exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if not isinstance(exc, Exception):
        return "stopped before the response"
    return f"{type(exc).__name__}: {exc}"
