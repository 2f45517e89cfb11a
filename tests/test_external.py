"""External stores (Redis, PostgreSQL, memcached) under real load, and under faults.

Uses the machine's Redis and PostgreSQL (``RACELAB_REDIS_URL``,
``RACELAB_POSTGRES_DSN``, default 127.0.0.1:6379 and 127.0.0.1:5432/test) and a
private memcached started on a free port; each test skips with the reason when
its service is missing. Faults that stop a store always stop a private
instance, never the shared one.
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from demo_server.basics.errors import StoreUnavailable
from demo_server.control.modes import LaunchSpec
from demo_server.control.services import PrivateServices
from demo_server.control.supervisor import Supervisor
from demo_server.served.config import ServerConfig
from loadtests.history import HistoryWriter
from reports.analysis.checking import check_history
from reports.history.table import HistoryTable
from reports.history.verdict import Verdict
from scenarios.counter.stores import store_class

REDIS_URL = os.environ.get("RACELAB_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get("RACELAB_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")
REQUESTS = 700  # fault tests
LOAD_REQUESTS = 2500  # every store under every mode
MODES = ("gunicorn-sync", "gunicorn-gthread", "gevent", "cluster")
SPECS = {
    "gunicorn-sync": {"workers": 2},
    "gunicorn-gthread": {"workers": 2, "threads": 4},
    "gevent": {"workers": 2},
    "cluster": {"instances": 2, "threads": 4},
}


@dataclasses.dataclass
class Addresses:
    redis_url: str = REDIS_URL
    postgres_dsn: str = POSTGRES_DSN
    memcached: str = "127.0.0.1:11211"


# -- a small load driver ----------------------------------------------------------------
def drive(
    urls: list[str],
    total: int,
    concurrency: int = 12,
    halfway: Callable[[], None] | None = None,
    path: str = "/incr",
) -> list[dict[str, Any]]:
    """Send ``total`` increments over keep-alive connections; one history row each.

    ``halfway`` runs (in its own thread) once half of the requests were sent;
    requests sent after that wait until it has finished, so they meet its effect.
    A 200 is ``ok``; a refused connection ``fail`` (nothing was sent); anything
    else (503, reset, timeout) ``info``: the increment may or may not have happened.
    """
    ticket = itertools.count()
    rows: list[dict[str, Any]] = []
    lock = threading.Lock()
    fired = threading.Event()
    done = threading.Event()
    helper: list[threading.Thread] = []

    def run_halfway() -> None:
        try:
            if halfway is not None:
                halfway()
        finally:
            done.set()

    def worker(index: int) -> None:
        url = urls[index % len(urls)]
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        mine: list[dict[str, Any]] = []
        while (op_id := next(ticket)) < total:
            if halfway is not None and op_id >= total // 2:
                with lock:
                    if not fired.is_set():
                        fired.set()
                        thread = threading.Thread(target=run_halfway)
                        thread.start()
                        helper.append(thread)
                done.wait(30)
            row: dict[str, Any] = {"op_id": op_id, "client": f"t{index}", "op": "incr", "url": url}
            row["invoke_ns"] = time.monotonic_ns()
            try:
                conn.request("POST", path, headers={"Content-Length": "0"})
                resp = conn.getresponse()
                body = resp.read()
                row["complete_ns"] = time.monotonic_ns()
                if resp.status == 200:
                    data = json.loads(body)
                    row.update(outcome="ok", value=data["value"], server_pid=data["pid"],
                               server_tid=data["tid"], server_arrival_ns=data["arrival_ns"],
                               server_departure_ns=data["departure_ns"])
                else:
                    row.update(outcome="info", error=f"HTTP {resp.status}")
            except ConnectionRefusedError as exc:
                row.update(outcome="fail", error=repr(exc), complete_ns=time.monotonic_ns())
                conn.close()
                time.sleep(0.01)
            except (OSError, http.client.HTTPException) as exc:
                row.update(outcome="info", error=repr(exc), complete_ns=time.monotonic_ns())
                conn.close()
            mine.append(row)
        conn.close()
        with lock:
            rows.extend(mine)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    for thread in helper:
        thread.join()
    rows.sort(key=lambda r: r["op_id"])
    return rows


def counter_verdict(rows: list[dict[str, Any]], final: int | None) -> Verdict:
    """racelab's counter checker on these rows, with the final value as final.json gives it."""
    state: dict[str, Any] = (
        {"available": False, "reason": "the store did not answer /state", "states": []}
        if final is None else
        {"available": True, "per_process": False, "states": [{"pid": 0, "value": final}]}
    )
    return check_history(HistoryTable.from_rows(rows), final=state)


def final_value(sup: Supervisor) -> int | None:
    states = sup.read_state(timeout=2)
    return int(states[0]["value"]) if states else None


def record(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "history.csv"
    with HistoryWriter(path) as writer:
        writer.add_many(rows)
    return path


# -- services ---------------------------------------------------------------------------
def _require(store: str, addresses: Addresses) -> None:
    config = ServerConfig(store=store, redis_url=addresses.redis_url,
                          postgres_dsn=addresses.postgres_dsn, memcached=addresses.memcached,
                          namespace="racelab_probe")
    try:
        store_class(store).prepare(config)
    except StoreUnavailable as exc:
        pytest.skip(str(exc))
    store_class(store).cleanup(config)


@pytest.fixture(scope="module")
def addresses() -> Iterator[Addresses]:
    """The shared Redis and PostgreSQL, plus a private memcached for this module."""
    services = PrivateServices(Addresses(), names=["memcached"], force=True)
    started = services.start()
    try:
        yield started
    finally:
        services.stop()


def start(store: str, mode: str, addresses: Addresses, run_dir: Path, **spec: Any) -> Supervisor:
    config = ServerConfig(store=store, redis_url=addresses.redis_url,
                          postgres_dsn=addresses.postgres_dsn, memcached=addresses.memcached)
    return Supervisor(config, LaunchSpec(mode=mode, **{**SPECS[mode], **spec}), run_dir).start()


# -- tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("store", ["redis", "postgres", "memcached"])
def test_external_store_is_safe_under_load(
    store: str, mode: str, addresses: Addresses, tmp_path: Path
) -> None:
    """Every value an external store hands out is unique; its final value equals the ok count."""
    if store == "memcached" and addresses.memcached == Addresses.memcached:
        pytest.skip("memcached binary not installed; no private memcached could start")
    _require(store, addresses)
    sup = start(store, mode, addresses, tmp_path / "run")
    try:
        rows = drive(sup.urls, LOAD_REQUESTS)
        final = final_value(sup)
    finally:
        sup.stop()
    record(tmp_path, rows)
    ok = [r for r in rows if r["outcome"] == "ok"]
    assert len(ok) == LOAD_REQUESTS, Counter(r.get("error") for r in rows)
    assert sorted(r["value"] for r in ok) == list(range(1, LOAD_REQUESTS + 1))
    assert final == LOAD_REQUESTS
    assert counter_verdict(rows, final).valid == "yes"
    if mode == "gunicorn-sync":
        # Sync workers close every connection, so both take requests; gthread and
        # gevent keep connections alive, and those may all stick to one worker.
        assert len({r["server_pid"] for r in ok}) == 2


def test_store_cleanup_removes_the_run_state(addresses: Addresses, tmp_path: Path) -> None:
    """After a run, its Redis key, PostgreSQL table and memcached key are gone."""
    import psycopg
    import redis
    from pymemcache.client.base import Client

    from scenarios.counter.external import postgres_table

    for store in ("redis", "postgres", "memcached"):
        _require(store, addresses)
    for store in ("redis", "postgres", "memcached"):
        sup = start(store, "gunicorn-sync", addresses, tmp_path / store, workers=1)
        try:
            drive(sup.urls, 20, concurrency=2)
        finally:
            sup.stop()
        namespace = sup.config.namespace
        if store == "redis":
            assert redis.Redis.from_url(addresses.redis_url).exists(f"{namespace}:counter") == 0
        elif store == "postgres":
            with psycopg.connect(addresses.postgres_dsn) as conn:
                found = conn.execute("SELECT to_regclass(%s)", (postgres_table(namespace),))
                assert found.fetchone() == (None,)
        else:
            host, _, port = addresses.memcached.rpartition(":")
            assert Client((host, int(port))).get(f"{namespace}:counter") is None


def test_unreachable_store_is_one_clear_line(tmp_path: Path) -> None:
    """A store that does not answer stops the start with a one-line StoreUnavailable and a fix."""
    config = ServerConfig(store="redis", redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable) as caught:
        Supervisor(config, LaunchSpec("threaded"), tmp_path).start()
    message = str(caught.value)
    assert "\n" not in message
    assert "redis://127.0.0.1:1/0" in message and "--start-services" in message


@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_worker_killed_mid_load_leaves_no_duplicate(
    store: str, addresses: Addresses, tmp_path: Path
) -> None:
    """SIGKILL to one gunicorn worker mid-load: failed requests are recorded, no value repeats."""
    _require(store, addresses)
    sup = start(store, "gunicorn-sync", addresses, tmp_path / "run")
    victim = min(sup.worker_pids[sup.url])
    assert victim != sup._procs[0].popen.pid  # a worker, never the master

    def kill() -> None:
        os.kill(victim, signal.SIGKILL)

    try:
        rows = drive(sup.urls, REQUESTS, halfway=kill)
        final = final_value(sup)
        assert sup.alive()  # the master survives and forks a new worker
    finally:
        sup.stop()
    record(tmp_path, rows)
    ok = [r for r in rows if r["outcome"] == "ok"]
    values = [r["value"] for r in ok]
    assert len(values) == len(set(values))
    assert victim not in {r["server_pid"] for r in ok[len(ok) * 3 // 4 :]}
    assert final is not None and len(ok) <= final <= len(ok) + (len(rows) - len(ok))
    assert counter_verdict(rows, final).valid in ("yes", "unknown")


@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_store_stopped_mid_load_is_never_safe(store: str, tmp_path: Path) -> None:
    """A private Redis / PostgreSQL stopped mid-load: requests fail with 503, verdict not 'yes'."""
    services = PrivateServices(Addresses(), names=[store], force=True)
    started = services.start()
    if store not in services.services:
        services.stop()
        pytest.skip(services.skipped.get(store, f"no private {store}"))
    try:
        sup = start(store, "gunicorn-gthread", started, tmp_path / "run")
        try:
            rows = drive(sup.urls, REQUESTS, halfway=lambda: services.stop_one(store))
            final = final_value(sup)
        finally:
            sup.stop()
    finally:
        services.stop()
    record(tmp_path, rows)
    errors = Counter(r.get("error") for r in rows if r["outcome"] != "ok")
    assert errors["HTTP 503"] > 0, errors
    assert final is None
    verdict = counter_verdict(rows, final)
    assert verdict.valid in ("unknown", "no"), verdict
    ok = [r["value"] for r in rows if r["outcome"] == "ok"]
    assert len(ok) == len(set(ok))


def test_psycopg_yields_to_gevent() -> None:
    """Imported after gevent patched select, psycopg waits cooperatively: queries overlap.

    Five greenlets each run ``pg_sleep(0.3)`` on their own connection; the
    server's clock shows whether the queries ran at the same time (cooperative)
    or one after another (the C wait function blocking the whole process).
    """
    try:
        import psycopg

        psycopg.connect(POSTGRES_DSN, connect_timeout=2).close()
    except Exception as exc:
        pytest.skip(f"PostgreSQL at {POSTGRES_DSN} is not reachable: {exc}")
    script = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import json, gevent, psycopg\n"
        "from scenarios.counter.external import psycopg_waits_cooperatively\n"
        f"conns = [psycopg.connect({POSTGRES_DSN!r}, autocommit=True) for _ in range(5)]\n"
        "q = 'select extract(epoch from clock_timestamp()), pg_sleep(0.3),"
        " extract(epoch from clock_timestamp())'\n"
        "jobs = [gevent.spawn(lambda c=c: c.execute(q).fetchone()) for c in conns]\n"
        "gevent.joinall(jobs)\n"
        "spans = [(float(j.value[0]), float(j.value[2])) for j in jobs]\n"
        "print(json.dumps([psycopg_waits_cooperatively(), spans]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True, cwd=Path(__file__).resolve().parent.parent)
    cooperative, spans = json.loads(out.stdout)
    assert cooperative is True
    # Every query started before the first one finished: they all ran at once.
    first_end = min(end for _, end in spans)
    assert all(start < first_end for start, _ in spans)
