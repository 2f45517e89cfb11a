"""How a shared store is updated: the naive read-then-write races, its fixes hold.

Real Redis and PostgreSQL (127.0.0.1:6379 and 127.0.0.1:5432/test, each test
skips naming the one that is missing); racelab's own app served by real
gunicorn and swarmed by Locust, as ``racelab swarm --update ...`` does. The
foreign apps of the same shapes are in ``test_own_app.py``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from cli_tools import racelab

from demo_server.basics.errors import ConfigError, StoreUnavailable
from demo_server.basics.procs import reachable
from demo_server.served.config import UPDATES
from reports.analysis.claims import check_claims
from reports.analysis.plot_plan import update_groups
from scenarios._updates import Conflict, UpdateStats, retrying
from scenarios.registry import check_cell, get_scenario
from scenarios.run.presets import load_preset
from scenarios.run.spec import ExperimentSpec


def _reachable(port: int) -> bool:
    return reachable("127.0.0.1", port)


def _need(store: str) -> None:
    port = {"redis": 6379, "postgres": 5432}.get(store)
    if port is not None and not _reachable(port):
        pytest.skip(f"no {store} on 127.0.0.1:{port}")


def swarm(tmp_path: Path, store: str, update: str, mode: str, *extra: str,
          scenario: str = "counter", requests: int = 1500) -> tuple[int, str, dict[str, Any]]:
    """``racelab swarm`` of racelab's own app; (exit code, output, its results.json entry)."""
    _need(store)
    run = tmp_path / f"{scenario}-{store}-{update}-{mode}"
    proc = racelab("swarm", "--scenario", scenario, "--store", store, "--update", update,
                   "--mode", mode, "--users", "16", "--requests", str(requests), *extra,
                   "--out", str(run), "--assert-safe", cwd=tmp_path)
    out, err = proc.communicate(timeout=240)
    text = (out + err).decode()
    assert "Traceback" not in text, text
    entry = json.loads((run / "results.json").read_text())["experiments"][0]
    return proc.returncode, text, entry


# --- the axis, at the boundary -----------------------------------------------------------


def test_each_store_serves_the_updates_its_scenario_offers() -> None:
    """The counter's store classes, and the tickets and bank stores, offer what the scenario
    says; atomic comes first; every name is an update."""
    from scenarios import bank, tickets
    from scenarios.counter.stores import store_class

    counter = get_scenario("counter")
    for store in counter.stores:
        assert store_class(store).updates == counter.updates_of(store), store
    for module in (tickets, bank):
        scenario = module.SCENARIO
        for store, cls in module._STORES.items():
            assert getattr(cls, "updates", ("atomic",)) == scenario.updates_of(store), store
    for scenario in ("counter", "tickets", "bank", "ids", "session"):
        for store in get_scenario(scenario).stores:
            offered = get_scenario(scenario).updates_of(store)
            assert offered[0] == "atomic" and set(offered) <= set(UPDATES)


@pytest.mark.parametrize(("cell", "needle"), [
    ({"store": "global", "update": "read-write"}, "has one way to change its state"),
    ({"store": "memcached", "update": "locked"}, "no 'locked' update; choose one of: atomic, "
                                                 "read-write, optimistic"),
    ({"store": "redis", "window": "yield"}, "applies only to the stores global, lock and to "
                                            "the read-write and locked updates"),
    ({"store": "redis", "update": "optimistic", "window": "io"}, "retries on conflict"),
    ({"scenario": "bank", "store": "sqlite", "update": "optimistic"}, "no 'optimistic' update"),
    ({"app": "app.py:app", "update": "locked"}, "your app's code decides"),
])
def test_a_cell_the_update_cannot_make_is_refused_in_one_line(cell: dict[str, str],
                                                               needle: str) -> None:
    """An update a store lacks, a window where nothing runs between read and write, or an
    update for a foreign app: one ConfigError naming what is allowed."""
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        ExperimentSpec(**cell)


def test_the_window_applies_to_read_write_and_locked() -> None:
    """A window widens the naive update and the locked one, on every shared store."""
    for store in ("redis", "postgres", "sqlite"):
        for update in ("read-write", "locked"):
            check_cell("counter", store, "io", update)
    check_cell("tickets", "memcached", "yield", "read-write")
    spec = ExperimentSpec(store="redis", update="read-write", window="io", mode="gunicorn-sync")
    assert "--update read-write" in spec.command()
    assert spec.server_config().update == "read-write"
    assert spec.label == "redis (read-write) · gunicorn-sync · io"


def test_bad_update_on_the_command_line_is_one_line_exit_2(tmp_path: Path) -> None:
    """racelab swarm --update lock: click's one line, exit 2; a store without it too."""
    for args, needle in ((["--update", "lock"], "Invalid value for '--update'"),
                         (["--store", "g", "--update", "optimistic"], "one way")):
        proc = racelab("swarm", *args, "--requests", "10", "--out", str(tmp_path / "r"),
                       cwd=tmp_path)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (out + err).decode()
        assert needle in err.decode() and "Traceback" not in err.decode()


# --- the bounded retry -------------------------------------------------------------------


def test_an_optimistic_update_gives_up_after_its_bound_and_says_so() -> None:
    """A conflict every time: the loop stops at its bound, counts the retries and one abort,
    and fails the request with StoreUnavailable (an HTTP 503): it never spins forever."""
    stats = UpdateStats()
    calls = []

    def always() -> int:
        calls.append(1)
        raise Conflict

    with pytest.raises(StoreUnavailable, match="gave up after 7 conflicting attempts"):
        retrying(stats, "Redis at redis://x", always, attempts=7)
    assert len(calls) == 7
    assert stats.state() == {"retries": 6, "aborts": 1}
    with pytest.raises(StoreUnavailable, match="gave up after 1 conflicting attempt"):
        retrying(stats, "x", always, within_s=0.0)  # out of time at once
    assert stats.state() == {"retries": 6, "aborts": 2}


def test_a_store_failure_inside_an_optimistic_update_is_not_retried() -> None:
    """A dead store is no conflict: the first failure ends the request, no retry counted."""
    stats = UpdateStats()
    calls = []

    def dead() -> int:
        calls.append(1)
        raise StoreUnavailable("Redis at redis://x: Connection refused")

    with pytest.raises(StoreUnavailable, match="Connection refused"):
        retrying(stats, "x", dead)
    assert len(calls) == 1 and stats.state() == {"retries": 0, "aborts": 0}


def test_update_stats_count_from_many_threads() -> None:
    """Retries counted by 8 threads at once add up exactly."""
    stats = UpdateStats()

    def hammer() -> None:
        for _ in range(5000):
            stats.retry()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.state()["retries"] == 40_000


# --- the counter on real stores ----------------------------------------------------------


@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_counter_read_write_races_under_gunicorn_sync(tmp_path: Path, store: str) -> None:
    """GET then SET (SELECT then UPDATE) from two sync workers: numbers repeat and the final
    value misses updates; the failure mode is the shared store's, from the evidence."""
    code, text, entry = swarm(tmp_path, store, "read-write", "gunicorn-sync")
    assert code == 1, text
    counts = entry["verdict"]["counts"]
    assert counts["duplicate_extra_returns"] > 0
    assert counts["lost_updates"] > 0  # the final value is below the ok increments
    assert entry["failure_modes"] == ["shared-lost-update"], entry["failure_modes"]
    assert entry["sharing"]["state"] == "shared"
    assert entry["sharing"]["source"] in ("history", "final")  # evidence, not the store's name
    finals = {s["value"] for s in entry["final"]["states"]}
    assert len(entry["final"]["states"]) == 2 and len(finals) == 1  # one shared value
    assert "lost update in the shared store" in text
    assert "separate copies" not in text


@pytest.mark.parametrize("update", ["atomic", "locked", "optimistic"])
@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_counter_fixes_are_safe_with_their_retries_counted(tmp_path: Path, store: str,
                                                          update: str) -> None:
    """Atomic, locked and optimistic under gunicorn-gthread (2 workers x 4 threads): safe with
    its bound; the optimistic one reports the retries every worker counted."""
    code, text, entry = swarm(tmp_path, store, update, "gunicorn-gthread")
    assert code == 0, text
    assert entry["verdict"]["valid"] == "yes"
    assert entry["safe_bound"]["ok"] == entry["ops"]["ok"] == 1500
    cost = entry["update_cost"]
    if update == "atomic":
        assert cost is None
        return
    assert cost["update"] == update and cost["workers"] == 2
    assert cost["aborts"] == 0
    if update == "optimistic":
        assert cost["retries"] > 0  # 8 threads on one key: conflicts are the price
        assert cost["retries_per_ok"] == round(cost["retries"] / 1500, 4)
        assert f"{cost['retries']:,} retries" in text


def test_global_store_under_gunicorn_sync_is_still_separate_copies(tmp_path: Path) -> None:
    """The module global under two sync workers: separate copies, told from the history."""
    code, text, entry = swarm(tmp_path, "global", "atomic", "gunicorn-sync", requests=800)
    assert code == 1, text
    assert entry["failure_modes"] == ["separate-copies"]
    assert entry["sharing"]["state"] == "separate"
    assert entry["sharing"]["source"] in ("history", "final")


# --- tickets and bank --------------------------------------------------------------------


def test_tickets_read_write_oversells_on_postgres_and_for_update_does_not(
        tmp_path: Path) -> None:
    """SELECT then UPDATE at READ COMMITTED under gunicorn-gthread sells seats twice; the same
    code with SELECT ... FOR UPDATE sells each seat once."""
    code, text, entry = swarm(tmp_path, "postgres", "read-write", "gunicorn-gthread",
                              scenario="tickets", requests=600)
    assert code == 1, text
    counts = entry["verdict"]["counts"]
    assert counts["seats_sold_twice"] > 0 or counts["unrecorded_sales"] > 0
    assert entry["failure_modes"] == ["shared-lost-update"]
    code, text, entry = swarm(tmp_path, "postgres", "locked", "gunicorn-gthread",
                              scenario="tickets", requests=600)
    assert code == 0, text
    assert entry["verdict"]["counts"]["sales"] == 100  # the whole stock, each seat once
    assert entry["verdict"]["counts"]["sold_out"] == 500


@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_bank_read_write_creates_or_destroys_money(tmp_path: Path, store: str) -> None:
    """Two GETs and two SETs (or SELECT then UPDATE) per transfer: the total drifts."""
    code, text, entry = swarm(tmp_path, store, "read-write", "gunicorn-gthread",
                              scenario="bank", requests=1500)
    assert code == 1, text
    counts = entry["verdict"]["counts"]
    assert counts["money_created"] + counts["money_lost"] > 0 or counts["wrong_total_reads"]
    assert "separate-copies" not in entry["failure_modes"]
    assert entry["failure_modes"] == ["shared-lost-update"]


# --- the claim, the presets and the cost view --------------------------------------------


def _entry(id_: str, store: str, update: str, valid: str) -> dict[str, Any]:
    modes = ["shared-lost-update"] if valid == "no" else []
    return {"id": id_, "config": {"scenario": "counter", "store": store, "update": update,
                                  "mode": "gunicorn-sync", "window": "none"},
            "verdict": {"valid": valid}, "failure_modes": modes}


def test_the_database_claim_depends_on_the_update_and_says_why() -> None:
    """A read-write cell that raced beside safe atomic, locked or optimistic ones: depends,
    citing both, with the one sentence on why; all safe: true."""
    entries = [_entry("a", "redis", "atomic", "yes"), _entry("b", "redis", "read-write", "no"),
               _entry("c", "postgres", "locked", "yes"),
               _entry("d", "postgres", "optimistic", "yes")]
    claim = next(c for c in check_claims(entries) if c.key == "external")
    assert claim.verdict == "depends"
    assert claim.supporting == ("a", "c", "d") and claim.against == ("b",)
    assert "redis (read-write) under gunicorn-sync" in claim.why
    assert "necessary, not sufficient: the update must be one step in the store" in claim.why
    claim = next(c for c in check_claims([entries[0], entries[2]]) if c.key == "external")
    assert claim.verdict == "true"
    claim = next(c for c in check_claims([entries[1]]) if c.key == "external")
    assert claim.verdict == "false" and "necessary, not sufficient" in claim.why


def test_classroom_runs_the_naive_update_beside_the_atomic_one() -> None:
    """classroom: read-write beside atomic for Redis and PostgreSQL (counter and tickets), and
    PostgreSQL's locked and optimistic fixes for the counter, all optional."""
    cells = load_preset("classroom").cells
    found = {(c.scenario, c.store, c.update) for c in cells}
    for scenario in ("counter", "tickets"):
        for store in ("redis", "postgres"):
            assert {(scenario, store, "atomic"), (scenario, store, "read-write")} <= found
    assert {("counter", "postgres", "locked"), ("counter", "postgres", "optimistic")} <= found
    assert all(c.optional for c in cells if c.update != "atomic")
    # The cost view compares the updates of one store, scenario and mode.
    entries = [{"throughput_rps": 1.0, "config": {"scenario": c.scenario, "store": c.store,
                                                   "update": c.update, "mode": c.mode}}
               for c in cells]
    assert "counter:postgres:gunicorn-sync" in update_groups(entries)


def test_a_preset_group_lists_updates_for_the_stores_that_offer_them(tmp_path: Path) -> None:
    """updates = [...] in a group: a store with one way runs once; memcached skips 'locked';
    windows reach only the read-write and locked cells."""
    path = tmp_path / "p.toml"
    path.write_text('[[cells]]\nstores = ["global", "memcached"]\nupdates = ["read-write", '
                    '"locked", "optimistic"]\nwindows = ["none", "io"]\nmodes = ["threaded"]\n')
    ids = {c.id for c in load_preset(str(path)).cells}
    assert ids == {"global-none-threaded", "global-io-threaded",
                   "memcached-read-write-none-threaded", "memcached-read-write-io-threaded",
                   "memcached-optimistic-none-threaded"}
    path.write_text('[[cells]]\nstores = ["redis"]\nupdates = ["sideways"]\nwindows = ["none"]\n'
                    'modes = ["threaded"]\n')
    with pytest.raises(ConfigError, match="unknown update 'sideways'"):
        load_preset(str(path))


@pytest.mark.skipif(not (_reachable(6379) and _reachable(5432)),
                    reason="needs Redis on 6379 and PostgreSQL on 5432")
def test_a_matrix_of_updates_links_the_database_claim_and_draws_the_price(tmp_path: Path) -> None:
    """racelab matrix over Redis and PostgreSQL, atomic and read-write: the database claim reads
    'depends' with its cells linked in the report, which says why; the price of each update
    is drawn per store."""
    run = tmp_path / "m"
    proc = racelab("matrix", "--modes", "gunicorn-sync", "--stores", "redis,postgres",
                   "--updates", "atomic,read-write,optimistic", "--requests", "1000",
                   "--out", str(run), cwd=tmp_path)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, (out + err).decode()
    results = json.loads((run / "results.json").read_text())
    claim = next(c for c in results["claims"] if c["key"] == "external")
    assert claim["verdict"] == "depends", claim
    assert {"redis-read-write-none-gunicorn-sync", "postgres-read-write-none-gunicorn-sync"
            } == {cell.split("-", 1)[1] for cell in claim["against"]}  # ids: 02-redis-...
    assert len(claim["supporting"]) == 4
    assert set(results["plots"]["updates"]) == {"counter:redis:gunicorn-sync",
                                                "counter:postgres:gunicorn-sync"}
    html = next(run.glob("*.html")).read_text(encoding="utf-8")
    claims = html.split('id="claims"')[1].split("</section>")[0]
    assert "necessary, not sufficient" in claims
    answer = html.split('class="answer">')[1].split("</p>")[0]
    assert "redis (read-write) store under gunicorn-sync" in answer
    assert "necessary, not sufficient" in answer
    assert claims.count('href="#exp-') >= 6  # every cell it names is linked
    assert "The price of each update" in html
    assert os.path.getsize(run / "plots" / "updates-counter-redis-gunicorn-sync.png") > 0
