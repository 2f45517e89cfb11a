"""The bank scenario: its server side on real stores, and its checker, property-based."""

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
from scenarios.bank import ACCOUNTS, OPERATIONS, SCENARIO, START, TOTAL, check_bank
from scenarios.run.spec import ExperimentSpec

__all__ = ["addresses", "scenario_app"]  # fixtures

FAST = settings(max_examples=60, deadline=None)
ANOMALIES = ("wrong_total_reads", "money_created", "money_lost", "negative_balances")


# --- the server side -------------------------------------------------------------------


def test_racy_transfers_create_or_lose_money(scenario_app: Any) -> None:
    """global + yield: overlapping transfers overwrite balances; reads and the end show it."""
    app, _ = scenario_app("bank", "global", "yield")
    rows = drive(app, OPERATIONS, clients=8, per_tab=40)
    final = state(app)
    verdict = check_history(HistoryTable.from_rows(rows), final, scenario="bank")
    assert verdict.valid == "no", verdict
    assert final["states"][0]["total"] != TOTAL
    drift = verdict.counts["money_created"] + verdict.counts["money_lost"]
    assert drift == abs(final["states"][0]["total"] - TOTAL)
    assert any(w.kind == "total-drift" for w in verdict.witnesses)


@pytest.mark.parametrize("store", ["lock", "sqlite", "postgres", "redis"])
def test_transactions_conserve_money(scenario_app: Any, store: str) -> None:
    """lock, BEGIN IMMEDIATE, SELECT ... FOR UPDATE, WATCH/MULTI: every total read is 1,000."""
    app, _ = scenario_app("bank", store)
    rows = drive(app, OPERATIONS, clients=8, per_tab=40, seed=1)
    totals = {r["value"] for r in rows if r["op"] == "total" and r["outcome"] == "ok"}
    moved = [r for r in rows if r["op"] == "transfer" and r["outcome"] == "ok"]
    final = state(app)
    assert totals == {TOTAL} and len(moved) > 100
    assert final["states"][0]["total"] == TOTAL and min(final["states"][0]["balances"]) >= 0
    verdict = check_history(HistoryTable.from_rows(rows), final, scenario="bank")
    assert verdict.valid == "yes", verdict


def test_refused_transfer_is_a_409_and_reset_restores(scenario_app: Any) -> None:
    """A source that cannot pay answers 409 (no effect); /reset puts 100 in every account."""
    app, _ = scenario_app("bank", "sqlite")
    client = app.test_client()
    statuses = {client.post("/transfer").status_code for _ in range(300)}
    assert statuses == {200, 409}
    client.post("/reset")
    assert client.get("/total").get_json()["balances"] == [START] * ACCOUNTS


def test_memcached_is_not_a_bank_store() -> None:
    """memcached cannot change two keys at once: the combination is refused in one line."""
    with pytest.raises(ConfigError, match="the bank scenario has no 'memcached' store"):
        ExperimentSpec(scenario="bank", store="memcached")
    assert {k for k in SCENARIO.store_sentences if ":" not in k} == set(SCENARIO.stores)
    # Every update a store offers beside its atomic one has its own sentence, and no other.
    assert {k for k in SCENARIO.store_sentences if ":" in k} == {
        f"{store}:{update}" for store in SCENARIO.stores
        for update in SCENARIO.updates_of(store) if update != "atomic"}


# --- the checker -----------------------------------------------------------------------


def bank(seed: int, clients: int, per_lane: int) -> tuple[Lanes, dict[str, Any]]:
    """A correct bank's history (atomic transfers and reads), and its final state."""
    rng = random.Random(seed)

    def pick(r: random.Random) -> tuple[str, dict[str, Any]]:
        if r.random() < 0.2:
            return "total", {}
        src, dst = r.sample(range(ACCOUNTS), 2)
        return "transfer", {"src": src, "dst": dst, "amount": r.randint(1, 150)}

    lanes = Lanes(rng, clients, 1, per_lane, pick)
    balances = [START] * ACCOUNTS

    def apply(op: SimOp) -> None:
        if op.op == "total":
            op.value = sum(balances)
            return
        src, dst, amount = op.args["src"], op.args["dst"], op.args["amount"]
        if balances[src] < amount:
            op.outcome, op.status, op.error = "fail", 409, "HTTP 409: insufficient funds"
            return
        balances[src] -= amount
        balances[dst] += amount
        op.value = amount

    lanes.linearize(apply)
    final = {"available": True, "per_process": False, "states": [
        {"pid": 100, "value": sum(balances), "total": sum(balances), "balances": balances,
         "initial_total": TOTAL}]}
    return lanes, final


histories = st.builds(bank, st.integers(0, 2**32 - 1), st.integers(1, 8), st.integers(1, 30))


@FAST
@given(histories)
def test_correct_bank_is_valid(history: tuple[Lanes, dict[str, Any]]) -> None:
    """However transfers interleave, an atomic bank's history is valid."""
    lanes, final = history
    verdict = check_bank(HistoryTable.from_rows(lanes.rows()), final)
    assert {k: verdict.counts[k] for k in ANOMALIES} == dict.fromkeys(ANOMALIES, 0)
    moved = any(op.outcome == "ok" and op.op == "transfer" for op in lanes.ops)
    assert verdict.valid == ("yes" if moved else "unknown"), verdict


@FAST
@given(histories, st.integers(0, 5), st.integers(-300, 300), st.booleans(), st.data())
def test_injected_anomalies_are_found_exactly(history: tuple[Lanes, dict[str, Any]], k: int,
                                              drift: int, overdraw: bool,
                                              data: st.DataObject) -> None:
    """k wrong total reads, a final total off by ``drift``, an overdrawn account: all counted."""
    lanes, final = history
    injected = set()
    for _ in range(k):
        like = data.draw(st.sampled_from(lanes.ops))
        off = data.draw(st.integers(1, 500)) * data.draw(st.sampled_from([-1, 1]))
        op = lanes.add(like, op="total", outcome="ok", value=TOTAL + off, status=200,
                       error="", client="reader")
        injected.add(op.op_id)
    balances = final["states"][0]["balances"]
    balances[0] += drift
    if overdraw:
        balances[1], balances[2] = -5, balances[2] + balances[1] + 5
    verdict = check_bank(HistoryTable.from_rows(lanes.rows()), final)
    counts = verdict.counts
    assert counts["wrong_total_reads"] == k
    assert (counts["money_created"], counts["money_lost"]) == (max(drift, 0), max(-drift, 0))
    assert counts["negative_balances"] == (1 if overdraw else 0) + (balances[0] < 0)
    named = {i for w in verdict.witnesses if w.kind == "wrong-total" for i in w.op_ids}
    assert named <= injected and len(named) == min(k, 3)
    anomalous = k or drift or overdraw
    assert verdict.valid == "no" if anomalous else verdict.valid != "no"


def test_wrong_read_witness_reads_plainly() -> None:
    """The witness names the request, what it read, and how much was off."""
    rows = [{"op_id": 7, "client": "a", "op": "total", "outcome": "ok", "value": 950,
             "invoke_ns": 1, "complete_ns": 2, "server_pid": 41},
            {"op_id": 8, "client": "a", "op": "transfer", "outcome": "ok", "value": 5,
             "invoke_ns": 3, "complete_ns": 4}]
    verdict = check_bank(HistoryTable.from_rows(rows))
    assert verdict.valid == "no"
    assert verdict.witnesses[0].sentence == (
        "request 7 read a total of 950 from process 41 while transfers ran; the accounts "
        "started with 1,000: 50 missing")


def test_a_locked_redis_transfer_is_never_seen_half_done(scenario_app: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis's locked transfer holds both accounts' locks, which keep transfers out but not
    a reader (MGET takes no lock): right after each command it sends, a reader still finds
    the whole starting total, because both balances are written in one MULTI/EXEC."""
    redis = pytest.importorskip("redis")
    from scenarios import bank

    _, config = scenario_app("bank", "redis", update="locked")
    store = bank._Redis(config)
    move = store.update_form(config, "transfer")
    reader = redis.Redis.from_url(config.redis_url)
    totals: list[int] = []
    sent = redis.Redis.execute_command

    def then_read(self: Any, *args: Any, **options: Any) -> Any:
        result = sent(self, *args, **options)
        if self is not reader and args and args[0] == "SET":
            totals.append(sum(int(v or 0) for v in reader.mget(store.keys)))
        return result

    monkeypatch.setattr(redis.Redis, "execute_command", then_read)
    moved = sum(bool(move(src, 1 - src, 7)) for src in (0, 1) * 10)
    assert moved == 20 and totals, totals  # the locks' SETs were seen
    assert set(totals) == {TOTAL}, totals
    assert sum(store.read()) == TOTAL
    reader.close()
