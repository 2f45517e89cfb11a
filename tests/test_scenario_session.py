"""The session scenario: its server side on real stores, and its checker, property-based."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenario_tools import Lanes, SimOp, addresses, drive, scenario_app, state

from demo_server.basics.errors import ConfigError
from reports.analysis.checking import check_history
from reports.history.table import HistoryTable
from scenarios.run.spec import ExperimentSpec
from scenarios.session import CLIENT_COOKIE, OPERATIONS, check_session

__all__ = ["addresses", "scenario_app"]  # fixtures

FAST = settings(max_examples=80, deadline=None)


def judged(app: Any, rows: list[dict[str, Any]]) -> Any:
    return check_history(HistoryTable.from_rows(rows), state(app), scenario="session")


# --- the server side -------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["filesystem", "redis"])
def test_sessions_isolate_clients(scenario_app: Any, backend: str) -> None:
    """Flask-Session, one tab per client: every client counts by itself; the total agrees."""
    app, _ = scenario_app("session", "session", session_backend=backend)
    rows = drive(app, OPERATIONS, clients=6, per_tab=30, first="/")
    verdict = judged(app, rows)
    assert verdict.valid == "yes", verdict
    assert verdict.counts["clients"] == 6
    deltas = {"inc": 1, "dec": -1}
    assert state(app)["states"][0]["total"] == sum(deltas[r["op"]] for r in rows)


@pytest.mark.parametrize("window", ["none", "io"])
@pytest.mark.parametrize("backend", ["filesystem", "redis"])
def test_tabs_sharing_a_session_lose_updates(scenario_app: Any, backend: str,
                                             window: str) -> None:
    """Flask-Session, four tabs per client: the last save wins, updates are lost.

    The window between load and save is the whole request, so the question's own
    code (window none) loses updates too.
    """
    app, _ = scenario_app("session", "session", window, session_backend=backend)
    rows = drive(app, OPERATIONS, clients=3, tabs=4, per_tab=15, first="/")
    verdict = judged(app, rows)
    assert verdict.valid == "no", verdict
    assert verdict.counts["lost_updates"] > 0 and verdict.counts["isolation_breaches"] == 0
    assert verdict.counts["final_total_off"] > 0
    assert any("the later save overwrote the other" in w.sentence for w in verdict.witnesses)


def test_a_global_dict_loses_a_clients_updates(scenario_app: Any) -> None:
    """global + yield: one dict of counts, four tabs per client: updates are lost."""
    app, _ = scenario_app("session", "global", "yield")
    rows = drive(app, OPERATIONS, clients=3, tabs=4, per_tab=20, first="/")
    assert judged(app, rows).counts["lost_updates"] > 0


@pytest.mark.parametrize("store", ["lock", "sqlite", "postgres", "redis"])
def test_atomic_stores_keep_every_tabs_update(scenario_app: Any, store: str) -> None:
    """One atomic step per update: four tabs per client lose nothing."""
    app, _ = scenario_app("session", store)
    rows = drive(app, OPERATIONS, clients=3, tabs=4, per_tab=20, first="/")
    verdict = judged(app, rows)
    assert verdict.valid == "yes", verdict
    final = state(app)["states"][0]
    deltas = {"inc": 1, "dec": -1}
    assert final["total"] == sum(deltas[r["op"]] for r in rows)


def test_the_client_cookie_and_reset(scenario_app: Any) -> None:
    """Non-session stores key the count by a racelab_client cookie; / resets it to 0."""
    app, _ = scenario_app("session", "sqlite")
    client = app.test_client()
    assert client.get("/inc").get_json()["count"] == 1
    assert client.get_cookie(CLIENT_COOKIE) is not None
    assert [client.get(p).get_json()["count"] for p in ("/inc", "/dec", "/dec", "/dec")] == [
        2, 1, 0, -1]
    assert client.get("/").get_json()["count"] == 0
    assert app.test_client().get("/inc").get_json()["count"] == 1  # another client


def test_memcached_cannot_count_below_zero() -> None:
    """memcached's decr stops at 0: the session scenario refuses it in one line."""
    with pytest.raises(ConfigError, match="the session scenario has no 'memcached' store"):
        ExperimentSpec(scenario="session", store="memcached")


# --- the checker -----------------------------------------------------------------------


def counters(seed: int, clients: int, tabs: int, per_lane: int, info_rate: float) -> tuple[
        Lanes, dict[str, Any]]:
    """A correct per-client counter's history (atomic updates), and its final state."""
    rng = random.Random(seed)

    def pick(r: random.Random) -> tuple[str, dict[str, Any]]:
        return r.choice(["inc", "inc", "dec"]), {"info": r.random() < info_rate}

    lanes = Lanes(rng, clients, tabs, per_lane, pick)
    count: dict[str, int] = {}

    def apply(op: SimOp) -> None:
        if op.args["info"]:
            op.outcome, op.status, op.error = "info", None, "timeout"
            if rng.random() < 0.5:
                count[op.client] = count.get(op.client, 0) + (1 if op.op == "inc" else -1)
            return
        count[op.client] = op.value = count.get(op.client, 0) + (1 if op.op == "inc" else -1)

    lanes.linearize(apply)
    final = {"available": True, "per_process": False,
             "states": [{"pid": 100, "value": sum(count.values()), "total": sum(count.values()),
                         "clients": len(count)}]}
    return lanes, final


def histories(info: bool = True) -> st.SearchStrategy[tuple[Lanes, dict[str, Any]]]:
    return st.builds(counters, st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 4),
                     st.integers(1, 25), st.sampled_from([0.0, 0.1] if info else [0.0]))


@FAST
@given(histories())
def test_correct_counters_are_valid(history: tuple[Lanes, dict[str, Any]]) -> None:
    """However a client's tabs interleave, atomic per-client counters are valid."""
    lanes, final = history
    verdict = check_session(HistoryTable.from_rows(lanes.rows()), final)
    counts = verdict.counts
    assert (counts["lost_updates"], counts["isolation_breaches"], counts["final_total_off"]) == (
        0, 0, 0), verdict
    assert verdict.valid == ("yes" if counts["ok"] else "unknown")


def injectable(lanes: Lanes) -> list[SimOp]:
    """Increments no walk can absorb a twin of: each the only move up across its edge,
    none back down, below the client's final count."""
    by_client: dict[str, list[SimOp]] = {}
    for op in lanes.ops:
        if op.outcome == "ok":
            by_client.setdefault(op.client, []).append(op)
    out = []
    for ops in by_client.values():
        final = sum(1 if o.op == "inc" else -1 for o in ops)
        for op in ops:
            edge = op.value - 1 if op.op == "inc" else op.value
            crossing = [o for o in ops if (o.value - 1 if o.op == "inc" else o.value) == edge]
            if op.op == "inc" and 1 <= op.value <= final and len(crossing) == 1:
                out.append(op)
    return out


@FAST
@given(histories(info=False), st.integers(1, 4), st.data())
def test_injected_lost_updates_are_found_exactly(history: tuple[Lanes, dict[str, Any]], k: int,
                                                 data: st.DataObject) -> None:
    """k increments whose twin loaded the same count: k lost updates, the pairs named."""
    lanes, final = history
    candidates = injectable(lanes)
    chosen = data.draw(st.permutations(candidates))[:k]
    pairs = set()
    for op in chosen:
        twin = lanes.add(op, complete_ns=op.complete_ns + 1)
        pairs.add(frozenset({op.op_id, twin.op_id}))
    verdict = check_session(HistoryTable.from_rows(lanes.rows()), final)
    assert verdict.counts["lost_updates"] == len(chosen)
    assert verdict.counts["final_total_off"] == len(chosen)
    assert verdict.counts["isolation_breaches"] == 0
    assert verdict.valid == ("no" if chosen else "yes")
    for w in (w for w in verdict.witnesses if w.kind == "lost-update"):
        assert frozenset(w.op_ids) in pairs and "both added one" in w.sentence


@FAST
@given(histories(), st.integers(1, 3), st.data())
def test_injected_foreign_answers_are_isolation_breaches(
        history: tuple[Lanes, dict[str, Any]], k: int, data: st.DataObject) -> None:
    """k answers further from 0 than the client's own updates reach: k isolation breaches."""
    lanes = history[0]
    ok = [op for op in lanes.ops if op.outcome == "ok"]
    chosen = data.draw(st.permutations(ok))[:k]
    for op in chosen:
        lanes.add(op, value=10_000 + op.op_id, client=op.client, outcome="info", status=None)
        op.value = 10_000 + op.op_id  # the real answer replaced by another client's count
    verdict = check_session(HistoryTable.from_rows(lanes.rows()), None)
    assert verdict.counts["isolation_breaches"] == len(chosen)
    assert verdict.valid == ("no" if chosen else verdict.valid)
    named = {w.op_ids[0] for w in verdict.witnesses if w.kind == "isolation-breach"}
    assert named <= {op.op_id for op in chosen}


def test_the_counter_scenarios_incr_histories_are_read_too() -> None:
    """incr histories (the counter scenario's session store): one repeat is one lost update."""
    rows = [{"op_id": i, "client": "a", "op": "incr", "outcome": "ok", "value": v,
             "invoke_ns": 10 * i, "complete_ns": 10 * i + 15} for i, v in enumerate([1, 2, 2, 3])]
    verdict = check_session(HistoryTable.from_rows(rows))
    assert verdict.valid == "no" and verdict.counts["lost_updates"] == 1
    assert verdict.witnesses[0].sentence == (
        "client a: requests 1 and 2 both added one and both answered 2: both loaded 1 and the "
        "later save overwrote the other; no order of this client's own requests explains it")
