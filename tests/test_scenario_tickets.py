"""The tickets scenario: its server side on real stores, and its checker, property-based."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenario_tools import SAFE_STORES, Lanes, SimOp, addresses, drive, scenario_app, state

from demo_server import ServerConfig
from demo_server.basics.errors import ConfigError
from reports.analysis.checking import check_history
from reports.history.table import HistoryTable
from scenarios.run.spec import ExperimentSpec
from scenarios.tickets import OPERATIONS, SCENARIO, check_tickets

__all__ = ["addresses", "scenario_app"]  # fixtures

FAST = settings(max_examples=60, deadline=None)
ANOMALIES = ("seats_sold_twice", "oversold", "unrecorded_sales", "false_sold_out")


# --- the server side -------------------------------------------------------------------


def test_racy_box_office_oversells_under_concurrent_buyers(scenario_app: Any) -> None:
    """global + yield: threads buying at once sell seats twice, more than the stock."""
    app, _ = scenario_app("tickets", "global", "yield", stock=40)
    rows = drive(app, OPERATIONS, clients=8, per_tab=15)
    verdict = check_history(HistoryTable.from_rows(rows), state(app), scenario="tickets")
    sold = [r["value"] for r in rows if r["outcome"] == "ok"]
    assert verdict.valid == "no", verdict
    assert len(sold) > 40 and len(set(sold)) < len(sold)
    assert verdict.counts["seats_sold_twice"] > 0 and verdict.counts["oversold"] == len(sold) - 40
    seat_witness = next(w for w in verdict.witnesses if w.kind == "duplicate")
    assert " bought seat " in seat_witness.sentence and " saw stock " in seat_witness.sentence


@pytest.mark.parametrize("store", SAFE_STORES)
def test_safe_stores_sell_each_seat_once(scenario_app: Any, store: str) -> None:
    """lock, SQLite, PostgreSQL, Redis, memcached: exactly the stock is sold, then 409s."""
    app, _ = scenario_app("tickets", store, stock=50)
    rows = drive(app, OPERATIONS, clients=8, per_tab=10)
    sold = sorted(r["value"] for r in rows if r["outcome"] == "ok")
    refused = [r for r in rows if r["outcome"] == "fail"]
    assert sold == list(range(1, 51))
    assert len(refused) == 30 and {r["status"] for r in refused} == {409}
    final = state(app)
    assert final["states"][0]["remaining"] == 0
    verdict = check_history(HistoryTable.from_rows(rows), final, scenario="tickets")
    assert verdict.valid == "yes", verdict
    assert verdict.counts["sold_out"] == 30


def test_reset_and_stock_answer(scenario_app: Any) -> None:
    """/reset puts the whole stock back; /stock answers what is left."""
    app, _ = scenario_app("tickets", "sqlite", stock=3)
    client = app.test_client()
    assert [client.post("/buy").status_code for _ in range(4)] == [200, 200, 200, 409]
    assert client.get("/stock").get_json()["value"] == 0
    client.post("/reset")
    assert client.post("/buy").get_json()["seat"] == 3


def test_combinations_that_make_no_sense_are_refused() -> None:
    """A store the scenario has not, a window on an atomic store, a stock of 0: one line each."""
    with pytest.raises(ConfigError, match="the tickets scenario has no 'g' store"):
        ExperimentSpec(scenario="tickets", store="g")
    with pytest.raises(ConfigError, match="applies only to the stores global, lock"):
        ExperimentSpec(scenario="tickets", store="postgres", window="yield")
    with pytest.raises(ConfigError, match="stock must be positive"):
        ServerConfig(scenario="tickets", stock=0)
    assert "manager" not in SCENARIO.stores
    assert {k for k in SCENARIO.store_sentences if ":" not in k} == set(SCENARIO.stores)
    # Every update a store offers beside its atomic one has its own sentence, and no other.
    assert {k for k in SCENARIO.store_sentences if ":" in k} == {
        f"{store}:{update}" for store in SCENARIO.stores
        for update in SCENARIO.updates_of(store) if update != "atomic"}


# --- the checker -----------------------------------------------------------------------


def box_office(seed: int, stock: int, clients: int, per_lane: int, info_rate: float) -> tuple[
        Lanes, dict[str, Any]]:
    """A correct box office's history, and its final state."""
    rng = random.Random(seed)
    lanes = Lanes(rng, clients, 1, per_lane, lambda r: ("buy", {"info": r.random() < info_rate}))
    left = [stock]

    def apply(op: SimOp) -> None:
        sold = left[0] > 0
        if op.args["info"]:
            op.outcome, op.status, op.error = "info", None, "timeout"
            if sold and rng.random() < 0.5:
                left[0] -= 1
        elif sold:
            op.value = left[0]
            left[0] -= 1
        else:
            op.outcome, op.status, op.error = "fail", 409, "HTTP 409: sold out"

    lanes.linearize(apply)
    final = {"available": True, "per_process": False,
             "states": [{"pid": 100, "value": left[0], "stock": stock, "remaining": left[0]}]}
    return lanes, final


histories = st.builds(box_office, st.integers(0, 2**32 - 1), st.integers(1, 60),
                      st.integers(1, 10), st.integers(1, 20), st.sampled_from([0.0, 0.1]))


@FAST
@given(histories)
def test_correct_box_office_is_valid(history: tuple[Lanes, dict[str, Any]]) -> None:
    """However buyers interleave, an atomic box office's history is valid (or undecidable)."""
    lanes, final = history
    verdict = check_tickets(HistoryTable.from_rows(lanes.rows()), final)
    assert {k: verdict.counts[k] for k in ANOMALIES} == dict.fromkeys(ANOMALIES, 0)
    assert verdict.valid in ("yes", "unknown"), verdict
    if verdict.valid == "unknown":
        assert verdict.counts["info"] * 2 > verdict.counts["ops"]


@FAST
@given(histories, st.integers(1, 5), st.data())
def test_injected_double_sales_are_found_exactly(history: tuple[Lanes, dict[str, Any]],
                                                 k: int, data: st.DataObject) -> None:
    """k seats sold a second time: k double sales, k sales the stock missed, the witnesses.

    (Sales of unknown outcome that did take a seat make up for as many missed ones.)
    """
    lanes, final = history
    sales = [op for op in lanes.ops if op.outcome == "ok"]
    if len(sales) < k:
        return
    chosen = data.draw(st.permutations(sales))[:k]
    pairs = {}
    for op in chosen:
        twin = lanes.add(op, client="intruder", complete_ns=op.complete_ns + 1)
        pairs[op.value] = {op.op_id, twin.op_id}
    verdict = check_tickets(HistoryTable.from_rows(lanes.rows()), final)
    ok = len(sales) + k
    assert verdict.valid == "no"
    assert verdict.counts["seats_sold_twice"] == k
    assert verdict.counts["duplicate_extra_returns"] == k
    stock, left = final["states"][0]["stock"], final["states"][0]["remaining"]
    taken_by_unknown = stock - left - len(sales)
    assert verdict.counts["unrecorded_sales"] == max(0, k - taken_by_unknown)
    assert verdict.counts["oversold"] == max(0, ok - stock)
    assert verdict.counts["false_sold_out"] == 0
    for w in (w for w in verdict.witnesses if w.kind == "duplicate"):
        seat = w.details["value"]
        assert set(w.op_ids) == pairs[seat]
        assert f"bought seat {seat}: both saw stock {seat} before either wrote {seat - 1}" in (
            w.sentence)


@FAST
@given(histories, st.integers(1, 4))
def test_injected_false_sold_outs_are_found_exactly(history: tuple[Lanes, dict[str, Any]],
                                                    k: int) -> None:
    """k buyers told 'sold out' before a later sale: k false sold-outs, named."""
    lanes, final = history
    sales = [op for op in lanes.ops if op.outcome == "ok"]
    if not sales:
        return
    last = max(sales, key=lambda o: o.invoke_ns)
    injected = set()
    for j in range(k):
        done = last.invoke_ns - 1 - j
        op = lanes.add(last, client="told", invoke_ns=done - 5, complete_ns=done,
                       outcome="fail", value=None, status=409, error="HTTP 409: sold out")
        injected.add(op.op_id)
    verdict = check_tickets(HistoryTable.from_rows(lanes.rows()), final)
    assert verdict.valid == "no"
    assert verdict.counts["false_sold_out"] == k
    assert {k: verdict.counts[k] for k in ANOMALIES[:3]} == dict.fromkeys(ANOMALIES[:3], 0)
    named = {w.op_ids[0] for w in verdict.witnesses if w.kind == "false-sold-out"}
    assert named and named <= injected


def test_seats_left_at_the_end_make_a_sold_out_false() -> None:
    """A 'sold out' answer while the final state still holds seats is an anomaly."""
    rows = [{"op_id": 1, "client": "a", "op": "buy", "outcome": "ok", "value": 5,
             "invoke_ns": 1, "complete_ns": 2},
            {"op_id": 2, "client": "b", "op": "buy", "outcome": "fail", "error": "HTTP 409",
             "invoke_ns": 3, "complete_ns": 4}]
    final = {"states": [{"pid": 1, "value": 4, "stock": 5, "remaining": 4}]}
    verdict = check_tickets(HistoryTable.from_rows(rows), final)
    assert verdict.valid == "no" and verdict.counts["false_sold_out"] == 1
    assert verdict.witnesses[0].sentence == (
        "request 2 was told 'sold out', yet seats remained at the end")


def test_per_process_copies_are_judged_per_process() -> None:
    """Two processes each selling their own 2 seats: every seat twice, across processes."""
    rows = [{"op_id": i, "client": "c", "op": "buy", "outcome": "ok", "value": v,
             "invoke_ns": 10 * i, "complete_ns": 10 * i + 5, "server_pid": pid}
            for i, (v, pid) in enumerate([(2, 1), (2, 2), (1, 1), (1, 2)])]
    final = {"per_process": True, "states": [
        {"pid": pid, "value": 0, "stock": 2, "remaining": 0} for pid in (1, 2)]}
    verdict = check_tickets(HistoryTable.from_rows(rows), final)
    assert verdict.counts["seats_sold_twice"] == 2
    assert verdict.counts["duplicate_extra_cross_process"] == 2
    assert verdict.counts["oversold"] == 0  # each copy sold its own stock
    assert verdict.witnesses[0].sentence == (
        "requests 2 and 3 both bought seat 1: in different processes (pids 1 and 2): each "
        "process keeps its own copy")
