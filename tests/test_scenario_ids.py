"""The ids scenario: its server side on real stores, and its checker, property-based."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenario_tools import SAFE_STORES, Lanes, SimOp, addresses, drive, scenario_app, state

from reports.analysis.checking import check_history
from reports.history.table import HistoryTable
from scenarios.ids import OPERATIONS, check_ids

__all__ = ["addresses", "scenario_app"]  # fixtures

FAST = settings(max_examples=60, deadline=None)


# --- the server side -------------------------------------------------------------------


def test_tutorial_order_book_repeats_ids_and_loses_orders(scenario_app: Any) -> None:
    """global + yield: two orders read one next id; the second overwrites the first."""
    app, _ = scenario_app("ids", "global", "yield")
    rows = drive(app, OPERATIONS, clients=8, per_tab=25)
    final = state(app)
    verdict = check_history(HistoryTable.from_rows(rows), final, scenario="ids")
    ids = [r["value"] for r in rows if r["outcome"] == "ok"]
    assert verdict.valid == "no", verdict
    assert verdict.counts["duplicate_extra_returns"] == len(ids) - len(set(ids)) > 0
    assert verdict.counts["lost_inserts"] == len(ids) - final["states"][0]["orders"] > 0
    assert "got order number" in verdict.witnesses[0].sentence


@pytest.mark.parametrize("store", SAFE_STORES)
def test_safe_stores_number_every_order_once(scenario_app: Any, store: str) -> None:
    """lock, AUTOINCREMENT, identity, Redis INCR+HSET, memcached incr: ids 1..n, all kept."""
    app, _ = scenario_app("ids", store)
    rows = drive(app, OPERATIONS, clients=8, per_tab=25)
    final = state(app)
    assert sorted(r["value"] for r in rows) == list(range(1, 201))
    assert (final["states"][0]["orders"], final["states"][0]["last_id"]) == (200, 200)
    verdict = check_history(HistoryTable.from_rows(rows), final, scenario="ids")
    assert verdict.valid == "yes", verdict


def test_reset_starts_the_numbers_again(scenario_app: Any) -> None:
    """/reset empties the order book; the next order is number 1."""
    app, _ = scenario_app("ids", "postgres")
    client = app.test_client()
    assert [client.post("/order", json={"item": "x"}).get_json()["id"] for _ in range(3)] == [
        1, 2, 3]
    client.post("/reset")
    assert client.post("/order").get_json()["id"] == 1


# --- the checker -----------------------------------------------------------------------


def order_book(seed: int, clients: int, per_lane: int, info_rate: float) -> tuple[
        Lanes, dict[str, Any]]:
    """A correct order book's history (an atomic next id), and its final state."""
    rng = random.Random(seed)
    lanes = Lanes(rng, clients, 1, per_lane, lambda r: ("order", {"info": r.random() < info_rate}))
    book = {"next": 1, "held": 0}

    def apply(op: SimOp) -> None:
        if op.args["info"]:
            op.outcome, op.status, op.error = "info", None, "timeout"
            if rng.random() < 0.5:
                book["next"] += 1
                book["held"] += 1
            return
        op.value = book["next"]
        book["next"] += 1
        book["held"] += 1

    lanes.linearize(apply)
    final = {"available": True, "per_process": False, "states": [
        {"pid": 100, "value": book["held"], "orders": book["held"], "last_id": book["next"] - 1}]}
    return lanes, final


@FAST
@given(st.builds(order_book, st.integers(0, 2**32 - 1), st.integers(1, 8),
                 st.integers(1, 30), st.sampled_from([0.0, 0.2])))
def test_correct_order_book_is_valid(history: tuple[Lanes, dict[str, Any]]) -> None:
    """However orders interleave, an atomic id generator's history is valid."""
    lanes, final = history
    verdict = check_ids(HistoryTable.from_rows(lanes.rows()), final)
    if any(op.outcome == "ok" for op in lanes.ops):
        assert verdict.valid == "yes", verdict
    assert verdict.counts.get("duplicate_values", 0) == verdict.counts.get("lost_inserts", 0) == 0


@FAST
@given(st.builds(order_book, st.integers(0, 2**32 - 1), st.integers(1, 8),
                 st.integers(1, 30), st.just(0.0)), st.integers(1, 6), st.data())
def test_injected_repeats_are_found_exactly(history: tuple[Lanes, dict[str, Any]], k: int,
                                            data: st.DataObject) -> None:
    """k orders given an id another order got, overwriting it: k repeats, k lost inserts."""
    lanes, final = history
    chosen = data.draw(st.permutations(lanes.ops))[:k]
    pairs = {}
    for op in chosen:
        twin = lanes.add(op, client="twin", complete_ns=op.complete_ns + 1)
        pairs[op.value] = {op.op_id, twin.op_id}
    verdict = check_ids(HistoryTable.from_rows(lanes.rows()), final)
    assert verdict.valid == "no"
    assert verdict.counts["duplicate_values"] == verdict.counts["lost_inserts"] == len(chosen)
    for w in (w for w in verdict.witnesses if w.kind == "duplicate"):
        assert set(w.op_ids) == pairs[w.details["value"]]
        assert f"got order number {w.details['value']}" in w.sentence
    lost = next(w for w in verdict.witnesses if w.kind == "lost-insert")
    assert lost.details["acknowledged"] - lost.details["held"] == len(chosen)


def test_separate_copies_repeat_ids_without_losing_orders() -> None:
    """Two processes with their own order books: ids repeat across them, no order is lost."""
    rows = [{"op_id": i, "client": "c", "op": "order", "outcome": "ok", "value": 1 + i // 2,
             "invoke_ns": 10 * i, "complete_ns": 10 * i + 5, "server_pid": 1 + i % 2}
            for i in range(6)]
    final = {"per_process": True, "states": [
        {"pid": pid, "value": 3, "orders": 3, "last_id": 3} for pid in (1, 2)]}
    verdict = check_ids(HistoryTable.from_rows(rows), final)
    assert verdict.valid == "no"
    assert verdict.counts["duplicate_extra_cross_process"] == 3
    assert verdict.counts["lost_inserts"] == 0
    assert verdict.witnesses[0].sentence == (
        "requests 0 and 1 both got order number 1: in different processes (pids 1 and 2): "
        "each process keeps its own copy")
