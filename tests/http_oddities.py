"""A small HTTP/1.1 server written with sockets, for swarm tests: the answers real servers give.

Run as ``python tests/http_oddities.py PORT [CERT KEY]`` (with a certificate
and key it speaks TLS). Paths:

- ``/count``: the next number as text, keep-alive, stamped with racelab's
  ``X-Racelab-*`` headers (as the ``--app`` middleware stamps);
- ``/json``: ``{"value": n, "pid": ..., ...}`` with Content-Length (as the demo app);
- ``/close``: the next number as text, then ``Connection: close``;
- ``/chunked``: ``{"value": n}`` in chunks, with a chunk extension and a trailer;
- ``/stream``: the next number as text, no length: the body ends with the connection;
- ``/continue``: ``100 Continue`` first, then the number;
- ``/redirect``: ``302`` to ``/login``;  ``/missing``: ``404``;  ``/boom``: ``500``;
- ``/big``: a 5,000-byte body;  ``/nobody``: ``204``;
- ``/session``: a per-cookie counter; a request without the cookie gets a new one.
"""

from __future__ import annotations

import itertools
import os
import socket
import socketserver
import ssl
import sys
import threading
import time

_lock = threading.Lock()
_numbers = itertools.count(1)
_sessions: dict[str, int] = {}
_ids = itertools.count(1)


def _next() -> int:
    with _lock:
        return next(_numbers)


def _stamp(arrival: int) -> bytes:
    return (f"X-Racelab-Pid: {os.getpid()}\r\nX-Racelab-Tid: {threading.get_ident()}\r\n"
            f"X-Racelab-Arrival-Ns: {arrival}\r\n"
            f"X-Racelab-Departure-Ns: {time.monotonic_ns()}\r\n").encode()


def _plain(status: str, body: bytes, extra: bytes = b"") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n".encode() + extra
            + b"\r\n" + body)


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
            headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
            length = int(headers.get("content-length", "0"))
            while len(data) < length:
                data += sock.recv(65536)
            data = data[length:]
            answer, keep = self.answer(path, headers)
            sock.sendall(answer)
            if not keep:
                sock.shutdown(socket.SHUT_WR)
                return

    def answer(self, path: str, headers: dict[str, str]) -> tuple[bytes, bool]:
        arrival = time.monotonic_ns()
        if path == "/count":
            return _plain("200 OK", str(_next()).encode(), _stamp(arrival)), True
        if path == "/json":
            body = (f'{{"value": {_next()}, "pid": {os.getpid()}, "tid": 7, '
                    f'"arrival_ns": {arrival}, "departure_ns": {time.monotonic_ns()}}}')
            return _plain("200 OK", body.encode(), b"Content-Type: application/json\r\n"), True
        if path == "/close":
            return _plain("200 OK", str(_next()).encode(), b"Connection: close\r\n"), False
        if path == "/chunked":
            body = f'{{"value": {_next()}}}'.encode()
            first, second = body[:5], body[5:]
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + f"{len(first):x};part=1\r\n".encode() + first + b"\r\n"
                    + f"{len(second):x}\r\n".encode() + second + b"\r\n"
                    + b"0\r\nX-Checksum: none\r\n\r\n"), True
        if path == "/stream":
            return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + str(
                _next()).encode() + b"\n", False
        if path == "/continue":
            return b"HTTP/1.1 100 Continue\r\n\r\n" + _plain("200 OK", str(_next()).encode()), True
        if path == "/redirect":
            return _plain("302 Found", b"", b"Location: /login\r\n"), True
        if path == "/missing":
            return _plain("404 Not Found", b"no such page"), True
        if path == "/boom":
            return _plain("500 Internal Server Error", b"boom"), True
        if path == "/big":
            return _plain("200 OK", b"7" * 5000), True
        if path == "/nobody":
            _next()
            return b"HTTP/1.1 204 No Content\r\n\r\n", True
        if path == "/session":
            cookie = headers.get("cookie", "")
            sid = cookie.partition("sid=")[2].split(";")[0]
            extra = b""
            with _lock:
                if sid not in _sessions:
                    sid = str(next(_ids))
                    extra = f"Set-Cookie: sid={sid}; Path=/\r\n".encode()
                _sessions[sid] = _sessions.get(sid, 0) + 1
                value = _sessions[sid]
            return _plain("200 OK", str(value).encode(), extra), True
        return _plain("404 Not Found", b"?"), True


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    port = int(sys.argv[1])
    server = Server(("127.0.0.1", port), Handler)
    if len(sys.argv) > 3:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
