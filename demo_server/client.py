"""A small stdlib HTTP client for the orchestrator: probes, final state, resets.

The orchestrator never imports Locust or gevent; this is all it needs to talk
to a server outside a swarm.
"""

from __future__ import annotations

import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

__all__ = ["get_json", "post_json", "probe_many"]


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
