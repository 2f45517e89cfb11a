"""A small stdlib HTTP client for the orchestrator: probes, final state, resets.

The orchestrator never imports Locust or gevent; this is all it needs to talk
to a server outside a swarm.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

__all__ = ["get_json", "hammer", "post_json", "probe_until"]


def _request(method: str, url: str, timeout: float) -> dict[str, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request(method, path, headers={"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read()
        except http.client.HTTPException as exc:  # a cut answer is a failed call too
            raise OSError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
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


def probe_until(
    url: str, enough: Callable[[set[int]], bool], concurrency: int, until: float,
    seen: Mapping[int, dict[str, Any]] | None = None, timeout: float = 2.0,
) -> dict[int, dict[str, Any]]:
    """GET ``url`` from ``concurrency`` connections at once, again and again, until
    ``enough`` holds for the worker pids that answered, or ``time.monotonic()`` passes ``until``.

    Each answer must carry the answering worker's ``pid``; the first answer of
    each pid is kept, after those in ``seen``. Concurrent connections are what
    spreads requests over a pool of workers. This returns as soon as the answers
    suffice: a probe still in flight then is not waited for (it ends by itself,
    within one probe's time, and its answer is dropped).

    Returns:
        The first answer of every pid seen (``seen``'s included), by pid.
    """
    answers: dict[int, dict[str, Any]] = dict(seen or {})
    lock = threading.Lock()
    done = threading.Event()
    if answers and enough(set(answers)):
        return answers

    def probe() -> None:
        while not done.is_set() and time.monotonic() < until:
            try:
                body = get_json(url, timeout)
                pid = int(body["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                done.wait(0.01)  # a refused connection costs little; starts are short
                continue
            with lock:
                if done.is_set():
                    return
                answers.setdefault(pid, body)
                if enough(set(answers)):
                    done.set()

    threads = [threading.Thread(target=probe, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    done.wait(max(0.0, until - time.monotonic()))
    with lock:
        done.set()  # the probes still running stop after their current request
        return dict(answers)


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
