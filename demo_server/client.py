"""A small stdlib HTTP client for the orchestrator: probes, final state, resets.

The orchestrator never imports Locust or gevent; this is all it needs to talk
to a server outside a swarm.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

__all__ = ["get_json", "hammer", "post_json", "probe_many"]


def _request(method: str, url: str, timeout: float) -> dict[str, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request(method, path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"{method} {url} answered HTTP {resp.status}: {body[:200]!r}")
        data: dict[str, Any] = json.loads(body)
        return data
    finally:
        conn.close()


def get_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET ``url`` on a fresh connection and decode its JSON body."""
    return _request("GET", url, timeout)


def post_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """POST to ``url`` on a fresh connection and decode its JSON body."""
    return _request("POST", url, timeout)


def probe_many(url: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """GET ``url`` ``count`` times at once on separate connections.

    Concurrent connections are what spreads requests over a pool of workers;
    failed probes are left out of the result.
    """

    def one(_: int) -> dict[str, Any] | None:
        try:
            return get_json(url, timeout)
        except (OSError, ValueError):
            return None

    with ThreadPoolExecutor(max_workers=count) as pool:
        return [r for r in pool.map(one, range(count)) if r is not None]


def hammer(
    urls: list[str], requests: int, concurrency: int = 16, path: str = "/incr",
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Send ``requests`` increments over ``concurrency`` keep-alive connections at once.

    A small load driver for tests and probes (the swarms use Locust). Connection
    ``i`` talks to ``urls[i % len(urls)]``. A request that fails is returned as
    ``{"error": reason}``.

    Returns:
        One dict per request: the decoded JSON body, or the error.
    """
    import threading

    per_conn = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    start = threading.Barrier(concurrency)

    def worker(index: int) -> list[dict[str, Any]]:
        parts = urlsplit(urls[index % len(urls)])
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                          timeout=timeout)
        out: list[dict[str, Any]] = []
        with contextlib.suppress(threading.BrokenBarrierError):
            start.wait(timeout)
        for _ in range(per_conn[index]):
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    out.append({"error": f"HTTP {resp.status}"})
                    continue
                out.append(json.loads(body))
            except (OSError, ValueError, http.client.HTTPException) as exc:
                out.append({"error": f"{type(exc).__name__}: {exc}"})
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                                  timeout=timeout)
        conn.close()
        return out

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return [r for chunk in pool.map(worker, range(concurrency)) for r in chunk]
