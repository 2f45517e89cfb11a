"""The session store, honestly: isolated per client, but it loses a client's concurrent updates.

Both findings come from observed data (histories checked by
``session_reference``), plus a real browser: two Chromium contexts
count independently.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from session_reference import check_sessions

from demo_server.basics.errors import StoreUnavailable
from demo_server.control.modes import LaunchSpec
from demo_server.control.supervisor import Supervisor
from demo_server.served.config import ServerConfig
from loadtests.history import HistoryWriter
from reports.analysis.checking import check_history
from reports.history.table import read_history
from scenarios.counter.external import SESSION_COOKIE, SessionStore

REDIS_URL = os.environ.get("RACELAB_REDIS_URL", "redis://127.0.0.1:6379/0")


class Client:
    """One browser-like client: a keep-alive connection and its own cookie jar."""

    def __init__(self, url: str, name: str, cookie: str | None = None) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        self.name = name
        self.cookie = cookie
        self.set_cookie_headers: list[str] = []

    def incr(self, op_id: int, burst: int | str = "") -> dict[str, Any]:
        headers = {"Content-Length": "0"}
        if self.cookie:
            headers["Cookie"] = f"{SESSION_COOKIE}={self.cookie}"
        row: dict[str, Any] = {"op_id": op_id, "client": self.name, "op": "incr", "burst": burst}
        row["invoke_ns"] = time.monotonic_ns()
        try:
            self.conn.request("POST", "/incr", headers=headers)
            resp = self.conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            row.update(outcome="info", error=repr(exc), complete_ns=time.monotonic_ns())
            return row
        row["complete_ns"] = time.monotonic_ns()
        header = resp.getheader("Set-Cookie")
        if header:
            self.set_cookie_headers.append(header)
            jar: SimpleCookie = SimpleCookie(header)
            if SESSION_COOKIE in jar and not self.cookie:
                self.cookie = jar[SESSION_COOKIE].value
        if resp.status != 200:
            row.update(outcome="info", error=f"HTTP {resp.status}")
            return row
        data = json.loads(body)
        row.update(outcome="ok", value=data["value"], server_pid=data["pid"],
                   server_tid=data["tid"], server_arrival_ns=data["arrival_ns"],
                   server_departure_ns=data["departure_ns"])
        return row

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def session_server(tmp_path: Path) -> Iterator[Any]:
    """Factory: a session-store server (gthread, 2 workers x 4 threads unless told)."""
    started: list[Supervisor] = []

    def start(backend: str = "filesystem", mode: str = "gunicorn-gthread") -> Supervisor:
        config = ServerConfig(store="session", session_backend=backend, redis_url=REDIS_URL)
        if backend == "redis":
            try:
                SessionStore.prepare(config)
            except StoreUnavailable as exc:
                pytest.skip(str(exc))
        spec = LaunchSpec(mode=mode, workers=2, threads=4)
        sup = Supervisor(config, spec, tmp_path / f"run-{len(started)}")
        started.append(sup)
        return sup.start()

    yield start
    for sup in started:
        sup.stop()


def _save(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "history.csv"
    with HistoryWriter(path) as writer:
        writer.add_many(sorted(rows, key=lambda r: r["op_id"]))
    return path


@pytest.mark.parametrize("backend", ["filesystem", "redis"])
def test_clients_never_see_each_others_counters(
    backend: str, session_server: Any, tmp_path: Path
) -> None:
    """Eight clients with their own cookies, in parallel: each one counts 1..n by itself."""
    sup = session_server(backend)
    clients, per_client = 8, 40

    def run(index: int) -> list[dict[str, Any]]:
        client = Client(sup.url, f"c{index}")
        rows = []
        try:
            for i in range(per_client):
                rows.append(client.incr(index * per_client + i))
                if i % 10 == 9:
                    # A new connection now and then, as a browser opens: 32 connections
                    # in all, so both workers serve some (one worker may accept a burst
                    # of connections alone).
                    client.conn.close()
            return rows
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        rows = [row for batch in pool.map(run, range(clients)) for row in batch]
    history = _save(tmp_path, rows)
    verdict = check_sessions(history)
    assert verdict.valid == "yes", verdict
    assert check_history(read_history(history), scenario="session").valid == "yes"
    assert verdict.counts["clients"] == clients
    for index in range(clients):
        mine = [r["value"] for r in rows if r["client"] == f"c{index}"]
        assert mine == list(range(1, per_client + 1))
    assert len({r["server_pid"] for r in rows}) == 2  # both workers served, through one store


def test_incr_sets_the_session_cookie(session_server: Any) -> None:
    """The JSON /incr answer sets the session cookie; a client sending it back keeps counting."""
    sup = session_server(mode="threaded")
    client = Client(sup.url, "c0")
    try:
        first = client.incr(0)
        assert first["value"] == 1
        assert client.cookie and any(
            h.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in h
            for h in client.set_cookie_headers
        )
        assert [client.incr(i)["value"] for i in (1, 2)] == [2, 3]
        stranger = Client(sup.url, "c1")
        assert stranger.incr(3)["value"] == 1
        stranger.close()
    finally:
        client.close()


def test_bursts_of_one_client_lose_updates(session_server: Any, tmp_path: Path) -> None:
    """Concurrent requests sharing one cookie overwrite each other's session: updates are lost."""
    sup = session_server()
    first = Client(sup.url, "c0")
    seed = first.incr(0)
    cookie = first.cookie
    first.close()
    assert seed["value"] == 1 and cookie
    width, rounds = 8, 15
    barrier = threading.Barrier(width)
    rows: list[dict[str, Any]] = [seed]
    lock = threading.Lock()

    def burst_member(slot: int) -> None:
        client = Client(sup.url, "c0", cookie=cookie)
        mine = []
        try:
            mine.append(client.incr(10_000 + slot))  # open the connection before the bursts
            for burst in range(rounds):
                barrier.wait(timeout=30)
                mine.append(client.incr(1 + burst * width + slot, burst=burst))
        finally:
            client.close()
        with lock:
            rows.extend(mine)

    warmups = width  # one request per member before the bursts
    with ThreadPoolExecutor(max_workers=width) as pool:
        list(pool.map(burst_member, range(width)))
    history = _save(tmp_path, rows)
    verdict = check_sessions(history)
    registered = check_history(read_history(history), scenario="session")
    increments = 1 + warmups + width * rounds
    probe = Client(sup.url, "c0", cookie=cookie)
    try:
        probe.conn.request("GET", "/state", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        final = json.loads(probe.conn.getresponse().read())["value"]
    finally:
        probe.close()
    assert all(r["outcome"] == "ok" for r in rows)
    assert verdict.valid == "no", verdict
    assert verdict.counts["lost_updates"] > 0
    assert verdict.counts["isolation_breaches"] == 0
    assert {w.kind for w in verdict.witnesses} >= {"lost-update"}
    # The session scenario's checker (scenarios.session) agrees.
    assert registered.valid == "no" and registered.counts["lost_updates"] > 0
    assert registered.counts["isolation_breaches"] == 0
    # The server-side truth agrees: the session counts fewer than the increments made.
    assert final < increments


def test_two_browsers_count_independently(browser: Any, session_server: Any) -> None:
    """Two headless Chromium contexts on GET / each see their own count: 1,2,3 and 1,2."""
    sup = session_server(mode="threaded")
    first, second = browser.new_context(), browser.new_context()
    try:
        page_a, page_b = first.new_page(), second.new_page()

        def visit(page: Any) -> str:
            page.goto(sup.url + "/")
            return str(page.inner_text("body")).strip()

        seen_a, seen_b = [visit(page_a)], [visit(page_b)]
        seen_a.append(visit(page_a))
        seen_b.append(visit(page_b))
        seen_a.append(visit(page_a))
    finally:
        first.close()
        second.close()
    assert seen_a == ["1", "2", "3"]
    assert seen_b == ["1", "2"]
