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
        clients: int, per_client: int, window: str = "none",
        stock: int = 100) -> tuple[Any, list[dict[str, Any]]]:
    """Serve, drive, read the final state, stop; the verdict and the rows."""
    if store == "memcached" and addresses.memcached == Addresses.memcached:
        pytest.skip("memcached binary not installed; no private memcached could start")
    config = ServerConfig(scenario=scenario, store=store, window=window, stock=stock,
                          namespace=f"t_{uuid.uuid4().hex[:12]}",
                          redis_url=addresses.redis_url, postgres_dsn=addresses.postgres_dsn,
                          memcached=addresses.memcached)
    run_dir = tmp_path / f"{scenario}-{store}-{mode}"
    with Supervisor(config, LaunchSpec(mode=mode, workers=2, threads=4), run_dir) as sup:
        rows = drive_http(sup.urls, get_scenario(scenario).operations, clients=clients,
                          per_client=per_client)
        final = {"available": True, "per_process": sup.config.per_process,
                 "states": sup.read_state()}
    return check_history(HistoryTable.from_rows(rows), final, scenario=scenario), rows


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


@pytest.mark.stress
@pytest.mark.parametrize("mode", ["gunicorn-sync", "gunicorn-gthread", "gevent"])
@pytest.mark.parametrize(("scenario", "store"), [
    ("ids", "postgres"), ("ids", "redis"), ("tickets", "postgres"), ("tickets", "redis"),
    ("tickets", "sqlite"), ("bank", "postgres"), ("bank", "redis"), ("bank", "sqlite"),
    ("session", "redis"), ("session", "postgres")])
def test_safe_stores_under_load(tmp_path: Path, addresses: Addresses, scenario: str,
                                store: str, mode: str) -> None:
    """100,000 operations (RACELAB_STRESS_OPS) per scenario, store and mode: 0 anomalies."""
    clients = 32
    started = time.monotonic()
    # Half the buys find a seat: every sale is contended, and sold-out answers are checked too.
    verdict, rows = run(tmp_path, addresses, scenario, store, mode, clients,
                        _STRESS_OPS // clients, stock=max(1, _STRESS_OPS // 2))
    ok = sum(row["outcome"] == "ok" for row in rows)
    print(f"\nSTRESS {scenario} {store} {mode}: {len(rows):,} operations ({ok:,} ok) in "
          f"{time.monotonic() - started:.1f} s, {verdict.valid}: {verdict.reason}")
    assert verdict.valid == "yes", verdict
