"""The new scenarios served for real: every mode's processes, HTTP clients, the final state.

The swarm is not needed: threads with their own connections and cookies stand
in for its users (``scenario_tools.drive_http``), and the supervisor reads the
final state as an experiment does. The 100,000-operation runs of the safe
stores are marked ``stress``.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from scenario_tools import Addresses, addresses, drive_http

from demo_server import ServerConfig
from demo_server.control.modes import LaunchSpec
from demo_server.control.supervisor import Supervisor
from reports.analysis.checking import check_history
from reports.history.table import HistoryTable
from scenarios.registry import get_scenario

__all__ = ["addresses"]  # fixtures


def run(tmp_path: Path, addresses: Addresses, scenario: str, store: str, mode: str,
        clients: int, per_client: int, window: str = "none", stock: int = 100,
        update: str = "atomic") -> tuple[Any, list[dict[str, Any]]]:
    """Serve, drive, read the final state, stop; the verdict and the rows."""
    verdict, rows, _ = run_final(tmp_path, addresses, scenario, store, mode, clients,
                                 per_client, window, stock, update)
    return verdict, rows


def run_final(tmp_path: Path, addresses: Addresses, scenario: str, store: str, mode: str,
              clients: int, per_client: int, window: str = "none", stock: int = 100,
              update: str = "atomic") -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """``run``, with the final state too (each worker's retries and aborts)."""
    if store == "memcached" and addresses.memcached == Addresses.memcached:
        pytest.skip("memcached binary not installed; no private memcached could start")
    config = ServerConfig(scenario=scenario, store=store, window=window, stock=stock,
                          update=update, namespace=f"t_{uuid.uuid4().hex[:12]}",
                          sqlite_path=str(tmp_path / f"{uuid.uuid4().hex}.db"),
                          redis_url=addresses.redis_url, postgres_dsn=addresses.postgres_dsn,
                          memcached=addresses.memcached)
    run_dir = tmp_path / f"{scenario}-{store}-{update}-{mode}"
    with Supervisor(config, LaunchSpec(mode=mode, workers=2, threads=4), run_dir) as sup:
        rows = drive_http(sup.urls, get_scenario(scenario).operations, clients=clients,
                          per_client=per_client)
        final = {"available": True, "per_process": sup.config.per_process,
                 "states": sup.read_state()}
    return check_history(HistoryTable.from_rows(rows), final, scenario=scenario), rows, final


def test_ids_repeat_across_gunicorn_sync_workers(tmp_path: Path, addresses: Addresses) -> None:
    """global under gunicorn-sync: each worker numbers its own orders, so ids repeat."""
    verdict, _ = run(tmp_path, addresses, "ids", "global", "gunicorn-sync", 8, 40)
    assert verdict.valid == "no"
    assert verdict.counts["duplicate_extra_cross_process"] > 0
    assert verdict.counts["lost_inserts"] == 0  # separate copies overwrite nothing


@pytest.mark.parametrize(("scenario", "store"), [
    ("tickets", "postgres"), ("tickets", "redis"), ("bank", "sqlite"), ("ids", "redis"),
    ("session", "postgres")])
def test_safe_stores_hold_across_gthread_workers(tmp_path: Path, addresses: Addresses,
                                                 scenario: str, store: str) -> None:
    """Two gthread workers, eight clients: the shared stores keep every invariant."""
    verdict, rows = run(tmp_path, addresses, scenario, store, "gunicorn-gthread", 8, 40)
    assert verdict.valid == "yes", verdict
    assert len({r["server_pid"] for r in rows if r["server_pid"]}) == 2


_STRESS_OPS = int(os.environ.get("RACELAB_STRESS_OPS", "100000"))
#: Every safe form of every shared store: the atomic update, and the locked and optimistic
#: fixes of the naive read-then-write, where the store offers them.
_SAFE_FORMS = [
    (scenario, store, update)
    for scenario in ("counter", "tickets", "bank")
    for store in ("sqlite", "postgres", "redis", "memcached")
    if store in get_scenario(scenario).stores
    for update in get_scenario(scenario).updates_of(store) if update != "read-write"
] + [("ids", "postgres", "atomic"), ("ids", "redis", "atomic"), ("session", "redis", "atomic"),
     ("session", "postgres", "atomic")]


@pytest.mark.stress
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("mode", ["gunicorn-sync", "gunicorn-gthread", "gevent"])
@pytest.mark.parametrize(("scenario", "store", "update"), _SAFE_FORMS)
def test_safe_stores_under_load(tmp_path: Path, addresses: Addresses, scenario: str,
                                store: str, update: str, mode: str) -> None:
    """100,000 operations (RACELAB_STRESS_OPS) per scenario, store, safe update and mode:
    0 anomalies; the retries and aborts of the optimistic and locked updates are printed."""
    clients = 32
    started = time.monotonic()
    # Half the buys find a seat: every sale is contended, and sold-out answers are checked too.
    verdict, rows, final = run_final(tmp_path, addresses, scenario, store, mode, clients,
                                     _STRESS_OPS // clients, stock=max(1, _STRESS_OPS // 2),
                                     update=update)
    ok = sum(row["outcome"] == "ok" for row in rows)
    by_pid = {s.get("pid"): s for s in final["states"]}
    retries = sum(int(s.get("retries") or 0) for s in by_pid.values())
    aborts = sum(int(s.get("aborts") or 0) for s in by_pid.values())
    anomalies = verdict.counts.get("anomalies", verdict.counts.get("duplicate_extra_returns", 0))
    print(f"\nSTRESS {scenario} {store} {update} {mode}: {len(rows):,} operations ({ok:,} ok), "
          f"{anomalies} anomalies, {retries:,} retries, {aborts:,} aborts, in "
          f"{time.monotonic() - started:.1f} s, {verdict.valid}: {verdict.reason}")
    assert verdict.valid == "yes", verdict
