"""Helpers for the scenario tests: an app per store, threads of clients, simulated histories.

- ``scenario_app``: a fixture factory building a scenario's app on one store
  (a fresh namespace and SQLite file per app), prepared and cleaned up like a run;
- ``drive``: threads of clients (``tabs`` threads sharing one client's cookie)
  sending a scenario's operations through Flask's test client, recorded as
  history rows the way the swarm records them (outcome from the status, value
  by the operation's value spec, the server's pid and thread);
- ``Lanes``: linearizable histories for the property-based tests: operations
  scheduled on lanes (one client's tab each), applied to a model in the order of
  a linearization point chosen inside each operation's interval.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from demo_server import ServerConfig, create_app
from demo_server.control.services import PrivateServices
from scenarios.operation import Operation, read_value
from scenarios.registry import get_scenario

REDIS_URL = os.environ.get("RACELAB_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get("RACELAB_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")
SAFE_STORES = ("lock", "sqlite", "postgres", "redis", "memcached")


@dataclasses.dataclass
class Addresses:
    redis_url: str = REDIS_URL
    postgres_dsn: str = POSTGRES_DSN
    memcached: str = "127.0.0.1:11211"


@pytest.fixture(scope="module")
def addresses() -> Iterator[Addresses]:
    """The shared Redis and PostgreSQL, and a private memcached (when the binary exists)."""
    services = PrivateServices(Addresses(), names=["memcached"], force=True)
    started = services.start()
    try:
        yield started
    finally:
        services.stop()


@pytest.fixture
def scenario_app(tmp_path: Path, addresses: Addresses) -> Iterator[Callable[..., Any]]:
    """Factory: ``scenario_app(scenario, store, window="none", **config) -> (app, config)``."""
    made: list[ServerConfig] = []

    def build(scenario: str, store: str, window: str = "none", **fields: Any) -> Any:
        if store == "memcached" and addresses.memcached == Addresses.memcached:
            pytest.skip("memcached binary not installed; no private memcached could start")
        config = ServerConfig(
            scenario=scenario, store=store, window=window,
            sqlite_path=str(tmp_path / f"{uuid.uuid4().hex}.db"),
            session_dir=str(tmp_path / "sessions"), namespace=f"t_{uuid.uuid4().hex[:12]}",
            redis_url=addresses.redis_url, postgres_dsn=addresses.postgres_dsn,
            memcached=addresses.memcached, **fields)
        get_scenario(scenario).prepare(config)
        made.append(config)
        return create_app(config), config

    yield build
    for config in made:
        get_scenario(config.scenario).cleanup(config)


def state(app: Any) -> dict[str, Any]:
    """The final state as the experiment writes it to ``final.json``."""
    body = app.test_client().get("/state").get_json()
    return {"available": True, "per_process": body["per_process"], "states": [body]}


def drive(app: Any, operations: tuple[Operation, ...], *, clients: int, tabs: int = 1,
          per_tab: int = 20, first: str | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Send weighted operations from ``clients`` x ``tabs`` threads; the history's rows.

    Args:
        app: the Flask app.
        operations: what to send (chosen by weight).
        clients: clients, each with its own cookies.
        tabs: threads per client, sharing that client's cookies.
        per_tab: operations per thread.
        first: a path each client requests once before its tabs start (its cookie).
        seed: for the choice of operations.
    """
    rows: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients * tabs)
    weights = [op.weight for op in operations]

    def tab(name: str, cookies: list[tuple[str, str]], rng: random.Random) -> None:
        client = app.test_client()
        for key, value in cookies:
            client.set_cookie(key, value)
        mine = []
        start.wait(timeout=30)
        for _ in range(per_tab):
            op = rng.choices(operations, weights)[0]
            invoke = time.monotonic_ns()
            response = client.open(op.path, method=op.method, data=op.body or None,
                                   content_type="application/json" if op.body else None)
            row = {"client": name, "op": op.name, "invoke_ns": invoke,
                   "complete_ns": time.monotonic_ns(), "outcome": op.outcome(response.status_code),
                   "status": response.status_code}
            body = response.get_json(silent=True) or {}
            row.update(server_pid=body.get("pid"), server_tid=body.get("tid"),
                       server_arrival_ns=body.get("arrival_ns"),
                       server_departure_ns=body.get("departure_ns"))
            if row["outcome"] == "ok":
                row["value"] = read_value(op.value, response.data)[0]
            else:
                row["error"] = f"HTTP {response.status_code}: {body.get('error', '')}"
            mine.append(row)
        with lock:
            rows.extend(mine)

    threads = []
    for c in range(clients):
        base = app.test_client()
        if first is not None:
            base.get(first)
        cookies = [(k.key, k.value) for k in base._cookies.values()]
        for t in range(tabs):
            rng = random.Random(seed * 1000 + c * 10 + t)
            threads.append(threading.Thread(target=tab, args=(f"c{c}", cookies, rng)))
    return _numbered(threads, rows)


def _numbered(threads: list[threading.Thread], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the client threads; their rows in invoke order, numbered from 0."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows.sort(key=lambda r: r["invoke_ns"])
    for op_id, row in enumerate(rows):
        row["op_id"] = op_id
    return rows


# --- simulated, linearizable histories -----------------------------------------------


@dataclasses.dataclass
class SimOp:
    """One simulated operation; ``apply`` fills ``outcome``, ``value`` and ``status``."""

    op_id: int
    client: str
    op: str
    invoke_ns: int
    complete_ns: int
    point: int
    server_pid: int = 1
    server_tid: int = 1
    outcome: str = "ok"
    value: int | None = None
    status: int | None = 200
    error: str = ""
    args: dict[str, Any] = dataclasses.field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("point", "args")}


class Lanes:
    """Operations on lanes (a lane is one tab of one client), linearized by a model.

    Args:
        rng: the random source.
        clients: clients; each has ``tabs`` lanes running back to back.
        tabs: concurrent lanes per client.
        per_lane: operations per lane.
        pick: ``pick(rng) -> (op name, args)`` for each new operation.
        pids: server processes (an operation's pid is chosen at random).
    """

    def __init__(self, rng: random.Random, clients: int, tabs: int, per_lane: int,
                 pick: Callable[[random.Random], tuple[str, dict[str, Any]]],
                 pids: int = 1) -> None:
        self.ops: list[SimOp] = []
        for c in range(clients):
            for t in range(tabs):
                clock = rng.randrange(0, 50)
                for _ in range(per_lane):
                    clock += rng.randrange(1, 30)
                    invoke, complete = clock, clock + rng.randrange(1, 60)
                    name, args = pick(rng)
                    self.ops.append(SimOp(0, f"c{c}", name, invoke, complete,
                                          rng.randrange(invoke, complete + 1),
                                          server_pid=100 + rng.randrange(pids),
                                          server_tid=t + 1, args=args))
                    clock = complete
        self.ops.sort(key=lambda o: (o.invoke_ns, o.complete_ns))
        for op_id, op in enumerate(self.ops):
            op.op_id = op_id

    def linearize(self, apply: Callable[[SimOp], None]) -> None:
        for op in sorted(self.ops, key=lambda o: (o.point, o.op_id)):
            apply(op)

    def add(self, like: SimOp, **changes: Any) -> SimOp:
        """A new operation overlapping ``like`` (same interval unless changed)."""
        op = dataclasses.replace(like, op_id=len(self.ops), args=dict(like.args), **changes)
        self.ops.append(op)
        return op

    def rows(self) -> list[dict[str, Any]]:
        return [op.row() for op in self.ops]


def drive_http(urls: list[str], operations: tuple[Operation, ...], *, clients: int,
               per_client: int, seed: int = 0) -> list[dict[str, Any]]:
    """Like ``drive``, over HTTP against live servers: one keep-alive connection and one
    cookie jar per client thread, opening a new connection every 10 requests."""
    import http.client
    from http.cookies import SimpleCookie
    from urllib.parse import urlsplit

    rows: list[dict[str, Any]] = []
    lock = threading.Lock()
    weights = [op.weight for op in operations]

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        url = urlsplit(urls[index % len(urls)])
        jar: dict[str, str] = {}
        conn = None
        mine = []
        for n in range(per_client):
            if conn is None or n % 10 == 0:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            op = rng.choices(operations, weights)[0]
            headers = {"Content-Type": "application/json"} if op.body else {}
            if jar:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
            invoke = time.monotonic_ns()
            conn.request(op.method, op.path, body=op.body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            row: dict[str, Any] = {"client": f"c{index}", "op": op.name, "invoke_ns": invoke,
                                   "complete_ns": time.monotonic_ns(),
                                   "outcome": op.outcome(response.status),
                                   "status": response.status}
            for header in response.headers.get_all("Set-Cookie") or ():
                jar.update({k: m.value for k, m in SimpleCookie(header).items()})
            import json

            body = json.loads(data) if data.startswith(b"{") else {}
            row.update(server_pid=body.get("pid"), server_tid=body.get("tid"))
            if row["outcome"] == "ok":
                row["value"] = read_value(op.value, data)[0]
            else:
                row["error"] = f"HTTP {response.status}"
            mine.append(row)
        if conn is not None:
            conn.close()
        with lock:
            rows.extend(mine)

    return _numbered([threading.Thread(target=client, args=(i,)) for i in range(clients)],
                     rows)
