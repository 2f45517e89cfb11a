"""A WSGI middleware that makes any app say which process and thread answered, and when.

``StampMiddleware(app)`` adds four headers to every response of ``app`` (the
names the swarm reads, ``scenarios.operation.SERVER_HEADERS``)::

    X-Racelab-Pid           the answering process
    X-Racelab-Tid           the answering thread (a greenlet under gevent)
    X-Racelab-Arrival-Ns    time.monotonic_ns() when the request reached the app
    X-Racelab-Departure-Ns  time.monotonic_ns() when the app started its response

Body and status pass through untouched (streamed bodies stay streamed, the
iterable's ``close`` is the app's own). Two additions that no app path can
collide with in practice:

- ``GET /__racelab__/healthz[?hold_ms=N]`` is answered by the middleware itself
  with ``{"ok": true, "pid": ..., "tid": ...}`` and the interpreter the app runs
  on, its GIL measured then (``demo_server.served.gil.state``): readiness for any app.
- a request header ``X-Racelab-Hold-Ms: N`` (at most 500) makes the worker wait
  N ms before the app sees the request, so that concurrent probes reach every
  worker of a pool.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from demo_server.served import gil

__all__ = ["HEADERS", "HEALTH_PATH", "HOLD_HEADER", "RESERVED_PREFIX", "StampMiddleware"]

RESERVED_PREFIX = "/__racelab__/"
HEALTH_PATH = RESERVED_PREFIX + "healthz"
HOLD_HEADER = "X-Racelab-Hold-Ms"
#: The stamped headers, by the field they carry (as ``scenarios.operation.SERVER_HEADERS``).
HEADERS = {
    "pid": "X-Racelab-Pid",
    "tid": "X-Racelab-Tid",
    "arrival_ns": "X-Racelab-Arrival-Ns",
    "departure_ns": "X-Racelab-Departure-Ns",
}
_OURS = frozenset(h.lower() for h in HEADERS.values())
_MAX_HOLD_MS = 500

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _hold_ms(raw: str | None) -> int:
    try:
        return max(0, min(int(raw or 0), _MAX_HOLD_MS))
    except ValueError:
        return 0


class StampMiddleware:
    """Wrap ``app`` so each response names its pid, thread and server times.

    Args:
        app: any WSGI application.
        identity: extra fields for the health answer (mode, target name...).
    """

    def __init__(self, app: WSGIApp, identity: dict[str, Any] | None = None) -> None:
        self.app = app
        self.identity = dict(identity or {})

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        arrival = time.monotonic_ns()
        pid, tid = os.getpid(), threading.get_ident()
        if environ.get("PATH_INFO") == HEALTH_PATH:
            return self._health(environ, start_response, arrival, pid, tid)
        hold = _hold_ms(environ.get("HTTP_X_RACELAB_HOLD_MS"))
        if hold:
            time.sleep(hold / 1000)

        def stamped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [(k, v) for k, v in headers if k.lower() not in _OURS]
            headers += [
                (HEADERS["pid"], str(pid)),
                (HEADERS["tid"], str(tid)),
                (HEADERS["arrival_ns"], str(arrival)),
                (HEADERS["departure_ns"], str(time.monotonic_ns())),
            ]
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        return self.app(environ, stamped)

    def _health(self, environ: dict[str, Any], start_response: StartResponse, arrival: int,
                pid: int, tid: int) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        hold = _hold_ms((query.get("hold_ms") or [None])[0])
        if hold:
            time.sleep(hold / 1000)
        body = json.dumps({"ok": True, "pid": pid, "tid": tid, **self.identity,
                           **gil.state()}).encode()
        start_response("200 OK", [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            (HEADERS["pid"], str(pid)),
            (HEADERS["tid"], str(tid)),
            (HEADERS["arrival_ns"], str(arrival)),
            (HEADERS["departure_ns"], str(time.monotonic_ns())),
        ])
        return [body]
