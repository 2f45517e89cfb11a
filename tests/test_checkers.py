"""Checkers: correct histories pass; injected anomalies are found exactly, with witnesses."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference_checker import ops_of, reference_counts
from simulate import Simulated, simulate_counter

from demo_server.basics.errors import ConfigError
from reports.analysis.checking import check_history, checkers_for
from reports.history import checkers
from reports.history.checkers import (
    CHECKERS,
    SCENARIO_CHECKERS,
    check_unique_ids,
    register,
)
from reports.history.table import INFO, OK, HistoryTable
from reports.history.verdict import Verdict
from scenarios.counter import check_counter

FAST = settings(max_examples=60, deadline=None)

ANOMALY_COUNTS = ("duplicate_values", "skipped_unexplained", "lost_updates", "lost_served",
                  "final_excess", "real_time_violations")


@st.composite
def simulations(draw, per_process: bool | None = False, info: bool = True) -> Simulated:
    pp = draw(st.booleans()) if per_process is None else per_process
    return simulate_counter(
        draw(st.integers(5, 400)),
        clients=draw(st.integers(1, 12)),
        pids=1 if pp else draw(st.integers(1, 3)),
        per_process=pp,
        fail_rate=draw(st.sampled_from([0.0, 0.05, 0.2])),
        info_rate=draw(st.sampled_from([0.0, 0.05, 0.2])) if info else 0.0,
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def anomalies(verdict: Verdict) -> dict[str, int]:
    return {k: verdict.counts.get(k, 0) for k in ANOMALY_COUNTS}


def take(arrays: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in arrays.items()}


def append_ops(arrays: dict[str, np.ndarray], rows: dict[str, np.ndarray]) -> dict:
    return {k: np.concatenate([arrays[k], rows[k]]) for k in arrays}


# --- correct histories ----------------------------------------------------------------


@FAST
@given(simulations(per_process=False))
def test_correct_shared_counter_is_valid(sim: Simulated) -> None:
    """A history of an atomic shared counter, however the clients interleave, is valid."""
    verdict = check_counter(sim.table(), sim.final)
    counts = verdict.counts
    undecidable = counts["info"] * 2 > counts["ops"] or counts["ok"] == 0
    assert verdict.valid == ("unknown" if undecidable else "yes"), verdict
    assert anomalies(verdict) == dict.fromkeys(ANOMALY_COUNTS, 0)
    assert verdict.counts["skipped_values"] == verdict.counts["skipped_explained_by_info"]


@FAST
@given(simulations(per_process=None))
def test_counts_match_the_plain_python_checker(sim: Simulated) -> None:
    """The numpy checker's counts equal the straightforward dict-and-set checker's."""
    table = sim.table()
    verdict = check_counter(table, sim.final)
    expected = reference_counts(ops_of(table), sim.final)
    assert {k: verdict.counts[k] for k in expected} == expected


@FAST
@given(st.integers(2, 4), st.integers(20, 300), st.integers(0, 2**32 - 1))
def test_per_process_counters_repeat_across_processes_only(pids: int, n: int, seed: int) -> None:
    """Per-process counters: cross-process repeats, but nothing wrong within each process."""
    sim = simulate_counter(n, clients=8, pids=pids, per_process=True, seed=seed)
    table = sim.table()
    verdict = check_counter(table, sim.final)
    counts = verdict.counts
    assert counts["duplicate_extra_same_process"] == 0
    assert counts["skipped_unexplained"] == counts["real_time_violations"] == 0
    assert counts["lost_updates"] == counts["lost_served"] == counts["final_excess"] == 0
    values = table.value[table.outcome == OK]
    pids_of = table.server_pid[table.outcome == OK]
    expected = sum(len(set(pids_of[values == v].tolist())) - 1 for v in set(values.tolist()))
    assert counts["duplicate_extra_cross_process"] == expected
    assert verdict.valid == ("no" if expected else "yes")
    for witness in verdict.witnesses:
        assert witness.details["scope"] == "cross-process"
        assert "each process keeps its own copy of the counter" in witness.sentence


# --- injected anomalies ----------------------------------------------------------------


@FAST
@given(simulations(info=False), st.data())
def test_injected_duplicates_are_counted_exactly(sim: Simulated, data: st.DataObject) -> None:
    """k extra ops that copy the value (and interval) of k ok ops: k duplicate values, k extra
    returns split by process as injected, k lost updates, and witnesses at the copies."""
    arrays = sim.arrays
    ok = np.flatnonzero(arrays["outcome"] == OK)
    assume(ok.size >= 2)
    k = data.draw(st.integers(1, min(5, ok.size)))
    originals = np.array(data.draw(st.lists(st.sampled_from(ok.tolist()), min_size=k, max_size=k,
                                            unique=True)))
    cross = np.array(data.draw(st.lists(st.booleans(), min_size=k, max_size=k)))
    copies = take(arrays, originals)
    copies["op_id"] = 10_000 + np.arange(k)
    copies["server_pid"] = np.where(cross, 9999, copies["server_pid"])
    injected = Simulated(append_ops(arrays, copies), sim.final)
    verdict = check_counter(injected.table(), injected.final)

    assert verdict.valid == "no"
    counts = verdict.counts
    assert counts["duplicate_values"] == k and counts["duplicate_extra_returns"] == k
    assert counts["duplicate_extra_cross_process"] == int(cross.sum())
    assert counts["duplicate_extra_same_process"] == k - int(cross.sum())
    assert counts["lost_updates"] == k
    assert counts["skipped_unexplained"] == counts["real_time_violations"] == 0
    if cross.any():
        assert counts["duplicate_extra_cross_process[pid=9999]"] == int(cross.sum())
    pairs = {(int(o), 10_000 + i) for i, o in enumerate(arrays["op_id"][originals].tolist())}
    dup = [w for w in verdict.witnesses if w.kind == "duplicate"]
    assert dup and len(dup) <= 2 * checkers.WITNESSES_PER_KIND
    for witness in dup:
        assert tuple(sorted(witness.op_ids)) in pairs
        assert witness.details["scope"] == ("cross-process" if 9999 in (
            witness.details.get("pids") or []) else "same-process")


@FAST
@given(simulations(info=False), st.data())
def test_injected_skips_are_counted_exactly(sim: Simulated, data: st.DataObject) -> None:
    """Removing k ok ops (not the top value) leaves exactly k skipped numbers, and the
    witnesses name those numbers."""
    arrays = sim.arrays
    ok = np.flatnonzero(arrays["outcome"] == OK)
    assume(ok.size >= 3)
    top = ok[np.argmax(arrays["value"][ok])]
    candidates = [i for i in ok.tolist() if i != top]
    k = data.draw(st.integers(1, min(5, len(candidates))))
    gone = data.draw(st.lists(st.sampled_from(candidates), min_size=k, max_size=k, unique=True))
    keep = np.setdiff1d(np.arange(arrays["op_id"].shape[0]), gone)
    table = Simulated(take(arrays, keep), sim.final).table()
    verdict = check_counter(table)

    assert verdict.valid == "no"
    counts = verdict.counts
    assert counts["skipped_values"] == counts["skipped_unexplained"] == k
    assert counts["duplicate_values"] == counts["real_time_violations"] == 0
    missing = set(arrays["value"][gone].tolist())
    for witness in verdict.witnesses:
        assert witness.kind == "skipped"
        assert set(witness.details["missing"]) <= missing
        assert f"nobody got {witness.details['missing_from']}" in witness.sentence


@FAST
@given(simulations(info=False), st.data())
def test_unknown_outcomes_explain_skips(sim: Simulated, data: st.DataObject) -> None:
    """Turning k ok ops into info ops (outcome unknown) skips k numbers, all explained: valid."""
    arrays = copy.deepcopy(sim.arrays)
    ok = np.flatnonzero(arrays["outcome"] == OK)
    assume(ok.size >= 6)
    top = ok[np.argmax(arrays["value"][ok])]
    candidates = [i for i in ok.tolist() if i != top]
    k = data.draw(st.integers(1, min(3, len(candidates))))
    hidden = np.array(data.draw(st.lists(st.sampled_from(candidates), min_size=k, max_size=k,
                                         unique=True)))
    arrays["outcome"][hidden] = INFO
    arrays["value_known"][hidden] = False
    arrays["server_pid_known"][hidden] = False
    verdict = check_counter(Simulated(arrays, sim.final).table(), sim.final)
    assert verdict.counts["skipped_values"] == verdict.counts["skipped_explained_by_info"] == k
    assert verdict.valid == ("unknown" if verdict.counts["info"] * 2 > verdict.counts["ops"]
                             else "yes")


@FAST
@given(simulations(info=False), st.integers(1, 50))
def test_injected_lost_updates_are_counted_exactly(sim: Simulated, k: int) -> None:
    """A final value k below the true one: k lost updates by Jepsen's bound and k by served."""
    final = copy.deepcopy(sim.final)
    true_value = final["states"][0]["value"]
    assume(true_value >= k)
    for state in final["states"]:
        state["value"] = true_value - k
    verdict = check_counter(sim.table(), final)
    assert verdict.valid == "no"
    assert verdict.counts["lost_updates"] == k
    assert verdict.counts["lost_served"] == k
    assert verdict.counts["final_excess"] == 0
    assert [w.kind for w in verdict.witnesses] == ["lost-update", "lost-update"]
    assert f"at least {k} update" in verdict.witnesses[0].sentence
    # The same history with a plain integer final value.
    plain = check_counter(sim.table(), true_value - k)
    assert plain.counts["lost_updates"] == k and plain.counts["lost_served"] == 0


@FAST
@given(st.integers(2, 3), st.integers(30, 300), st.integers(0, 2**32 - 1), st.integers(1, 9))
def test_per_process_lost_updates_point_at_the_process(
    pids: int, n: int, seed: int, k: int
) -> None:
    """Per-process stores: a process whose counter ends k below what it answered loses k."""
    sim = simulate_counter(n, clients=6, pids=pids, per_process=True, seed=seed)
    final = copy.deepcopy(sim.final)
    victim = final["states"][0]
    assume(victim["value"] >= k)
    victim["value"] -= k
    verdict = check_counter(sim.table(), final)
    assert verdict.counts["lost_updates"] == verdict.counts["lost_served"] == k
    assert verdict.counts[f"lost_updates[pid={victim['pid']}]"] == k
    lost = [w for w in verdict.witnesses if w.kind == "lost-update"]
    assert lost[0].details["pid"] == victim["pid"]
    assert f"process {victim['pid']} answered" in lost[0].sentence


@FAST
@given(simulations(info=False), st.data())
def test_final_above_the_history_is_an_anomaly(sim: Simulated, data: st.DataObject) -> None:
    """A final value above ok + info increments: increments from outside the history."""
    k = data.draw(st.integers(1, 20))
    value = sim.final["states"][0]["value"] + k
    verdict = check_counter(sim.table(), value)
    assert verdict.valid == "no" and verdict.counts["final_excess"] == k


@FAST
@given(simulations(info=False), st.data())
def test_injected_real_time_violations_are_counted_exactly(
    sim: Simulated, data: st.DataObject
) -> None:
    """Moving k ok ops (not the top value) after the end of the history makes exactly k ops
    that were sent after a higher number had come back; witnesses name them."""
    arrays = copy.deepcopy(sim.arrays)
    ok = np.flatnonzero(arrays["outcome"] == OK)
    assume(ok.size >= 3)
    top = ok[np.argmax(arrays["value"][ok])]
    candidates = [i for i in ok.tolist() if i != top]
    k = data.draw(st.integers(1, min(5, len(candidates))))
    moved = np.array(data.draw(st.lists(st.sampled_from(candidates), min_size=k, max_size=k,
                                        unique=True)))
    end = int(arrays["complete_ns"].max())
    arrays["invoke_ns"][moved] = end + 1_000 + 2_000 * np.arange(k)
    arrays["complete_ns"][moved] = end + 2_000 + 2_000 * np.arange(k)
    verdict = check_counter(Simulated(arrays, sim.final).table(), sim.final)

    assert verdict.valid == "no"
    assert verdict.counts["real_time_violations"] == k
    assert verdict.counts["duplicate_values"] == verdict.counts["skipped_unexplained"] == 0
    later = set(arrays["op_id"][moved].tolist())
    rt = [w for w in verdict.witnesses if w.kind == "real-time-order"]
    assert 1 <= len(rt) <= checkers.WITNESSES_PER_KIND
    for witness in rt:
        assert witness.op_ids[1] in later
        assert witness.details["earlier"]["value"] >= witness.details["later"]["value"]
        assert witness.details["earlier"]["complete_ns"] < witness.details["later"]["invoke_ns"]


outcomes = st.sampled_from(["ok", "ok", "ok", "info", "fail"])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(outcomes, st.integers(-1, 8), st.integers(0, 30), st.integers(0, 10),
                       st.sampled_from(["", 1, 2])), max_size=25),
    st.one_of(st.none(), st.integers(0, 30), st.just("per-process")),
    st.booleans(),
)
def test_arbitrary_histories_match_the_plain_checker(rows, final, per_process) -> None:
    """On arbitrary (even absurd) histories the numpy counts equal the plain checker's."""
    table = HistoryTable.from_rows([
        {"op_id": i, "client": "c", "op": "incr", "outcome": outcome,
         "value": value if outcome == "ok" else "", "invoke_ns": invoke,
         "complete_ns": invoke + length, "server_pid": pid if outcome == "ok" else pid or ""}
        for i, (outcome, value, invoke, length, pid) in enumerate(rows)
    ])
    if final == "per-process":
        final = {"available": True, "per_process": True,
                 "states": [{"pid": 1, "value": 3, "served": 4}, {"pid": 2, "value": 1}]}
    verdict = check_counter(table, final, per_process=per_process)
    assert verdict.valid in ("yes", "no", "unknown")
    if not rows:
        assert verdict.valid == "unknown"
        return
    expected = reference_counts(ops_of(table), final, per_process=per_process)
    if isinstance(final, int) and per_process:
        expected = {k: v for k, v in expected.items() if k not in (
            "lost_updates", "lost_served", "final_excess")}
    assert {k: verdict.counts[k] for k in expected} == expected


# --- sentences ----------------------------------------------------------------------------


def test_duplicate_sentence_reads_plainly() -> None:
    """Two overlapping requests in one process that both got 57 while nobody got 56."""
    rows = [
        {"op_id": 1830, "op": "incr", "outcome": "ok", "value": 55, "invoke_ns": 0,
         "complete_ns": 100_000, "server_pid": 411, "server_tid": 7},
        {"op_id": 1832, "op": "incr", "outcome": "ok", "value": 57, "invoke_ns": 1_000_000,
         "complete_ns": 2_000_000, "server_pid": 411, "server_tid": 7},
        {"op_id": 1833, "op": "incr", "outcome": "ok", "value": 57, "invoke_ns": 1_600_000,
         "complete_ns": 2_100_000, "server_pid": 411, "server_tid": 9},
    ]
    verdict = check_counter(HistoryTable.from_rows(rows), per_process=True)
    duplicate = next(w for w in verdict.witnesses if w.kind == "duplicate")
    assert duplicate.sentence == ("requests 1832 and 1833 overlapped for 0.4 ms in process 411 "
                                  "(threads 7 and 9); both got 57; nobody got 56")
    assert duplicate.op_ids == (1832, 1833)
    assert [op["tid"] for op in duplicate.details["ops"]] == [7, 9]


def test_history_without_pids_claims_no_process() -> None:
    """Without server pids, repeats are 'in an unrecorded process': never within or across."""
    rows = [
        {"op_id": i, "op": "incr", "outcome": "ok", "value": v, "invoke_ns": 10 * i,
         "complete_ns": 10 * i + 5}
        for i, v in enumerate([1, 2, 2, 3, 3, 3, 4])
    ]
    verdict = check_counter(HistoryTable.from_rows(rows), final=7)
    counts = verdict.counts
    assert counts["duplicate_extra_returns"] == 3
    assert counts["duplicate_extra_unknown_process"] == 3
    assert counts["duplicate_extra_same_process"] == counts["duplicate_extra_cross_process"] == 0
    assert not any(k.startswith("duplicate_extra_same_process[") for k in counts)
    text = " ".join([verdict.reason, *(w.sentence for w in verdict.witnesses)])
    assert "within a process" not in text and "across processes" not in text
    assert "different processes" not in text and "in process" not in text
    assert "the history records no server process" in verdict.reason
    scopes = {w.details.get("scope") for w in verdict.witnesses if w.kind == "duplicate"}
    assert scopes == {"unknown-process"}


def test_cross_process_sentence_names_both_pids() -> None:
    """Two processes that each hand out 5: the sentence names them and the cause."""
    rows = [
        {"op_id": 12, "op": "incr", "outcome": "ok", "value": 5, "invoke_ns": 0,
         "complete_ns": 10, "server_pid": 101},
        {"op_id": 13, "op": "incr", "outcome": "ok", "value": 5, "invoke_ns": 20,
         "complete_ns": 30, "server_pid": 102},
    ]
    verdict = check_counter(HistoryTable.from_rows(rows), per_process=True)
    assert any(w.sentence == "requests 12 and 13 both got 5 from different processes "
               "(pids 101 and 102): each process keeps its own copy of the counter"
               for w in verdict.witnesses)
    assert verdict.counts["duplicate_extra_cross_process[pid=102]"] == 1


# --- undecidable histories -----------------------------------------------------------------


def small(outcomes: list[str]) -> HistoryTable:
    return HistoryTable.from_rows([
        {"op_id": i, "op": "incr", "outcome": o, "value": i + 1 if o == "ok" else "",
         "invoke_ns": 10 * i, "complete_ns": 10 * i + 5, "server_pid": 1}
        for i, o in enumerate(outcomes)
    ])


@pytest.mark.parametrize(("table", "final", "needle"), [
    (HistoryTable.from_rows([]), None, "no incr operations"),
    (small(["fail", "fail"]), None, "no increment succeeded"),
    (small(["ok", "info", "info"]), None, "2 of 3 increments (67%) have an unknown outcome"),
    (small(["ok", "ok"]), {"available": False, "reason": "server gone"}, "server gone"),
    (small(["ok", "ok"]), {"available": True, "states": "nope"}, "unreadable"),
    (small(["ok", "ok"]), "12", "unreadable"),
])
def test_undecidable_histories_are_unknown_with_a_reason(table, final, needle) -> None:
    """Empty, mostly unknown, or with an unreadable final state: unknown, with the reason."""
    verdict = check_counter(table, final)
    assert verdict.valid == "unknown"
    assert needle in verdict.reason


def test_anomaly_beats_undecidable() -> None:
    """A duplicate is proof even when most outcomes are unknown."""
    rows = [{"op_id": i, "op": "incr", "outcome": "info", "invoke_ns": i, "complete_ns": i + 1}
            for i in range(10)]
    rows += [{"op_id": 20 + i, "op": "incr", "outcome": "ok", "value": 3, "invoke_ns": 0,
              "complete_ns": 5, "server_pid": 1} for i in range(2)]
    assert check_counter(HistoryTable.from_rows(rows)).valid == "no"


def test_server_problem_caps_the_verdict() -> None:
    """A server that died during the swarm makes a clean history unknown, a bad one still no."""
    clean = small(["ok", "ok", "ok"])
    verdict = check_history(clean, 3, server_problem="server process exited with code -9")
    assert verdict.valid == "unknown" and "exited with code -9" in verdict.reason
    assert check_history(clean, 2, server_problem="exited").valid == "no"
    assert check_history(clean, 3).valid == "yes"


def test_a_crashing_checker_yields_unknown() -> None:
    """An exception inside a checker becomes unknown with the error, never a crash."""

    def broken(table: HistoryTable, context: checkers.CheckContext) -> Verdict:
        raise ZeroDivisionError("division by zero")

    register("broken", broken, scenarios=["broken-scenario"])
    try:
        verdict = check_history(small(["ok"]), scenario="broken-scenario")
        assert verdict.valid == "unknown"
        assert "ZeroDivisionError: division by zero" in verdict.reason
    finally:
        CHECKERS.pop("broken")
        SCENARIO_CHECKERS.pop("broken-scenario")


def test_registry_names_checkers_per_scenario() -> None:
    """Scenarios name their checkers; register adds more; unknown scenarios are a clear error."""
    assert checkers_for("counter") == ["counter"]
    assert checkers_for("ids") == ["ids"]
    with pytest.raises(ConfigError, match="no checker for scenario 'nope'"):
        checkers_for("nope")

    def always(table: HistoryTable, context: checkers.CheckContext) -> Verdict:
        return Verdict("always", "yes", {"seen": len(table)})

    register("always", always, scenarios=["counter"])
    try:
        assert checkers_for("counter") == ["counter", "always"]
        verdict = check_history(small(["ok", "ok"]), 2)
        assert verdict.checker == "counter+always" and verdict.counts["seen"] == 2
    finally:
        CHECKERS.pop("always")
        SCENARIO_CHECKERS["counter"].remove("always")


def test_unique_ids_finds_repeats() -> None:
    """unique-ids: every ok value distinct is yes; a repeat is no with the two ops."""
    rows = [{"op_id": i, "op": "issue", "outcome": "ok", "value": v, "invoke_ns": i,
             "complete_ns": i + 1, "server_pid": 1} for i, v in enumerate([4, 9, 2])]
    assert check_unique_ids(HistoryTable.from_rows(rows)).valid == "yes"
    rows.append({**rows[1], "op_id": 7})
    verdict = check_history(HistoryTable.from_rows(rows), scenario="ids")
    assert verdict.valid == "no" and verdict.counts["duplicate_values"] == 1
    assert verdict.witnesses[0].op_ids == (1, 7)


def test_a_cut_short_run_makes_skips_and_excess_unknown_not_anomalies() -> None:
    """Server died / swarm cut off: unrecorded requests explain skips and a high final value.

    The same history without the problem is judged "no" (a skipped number and a
    final value above the history); with it, the verdict is unknown and says why.
    """
    rows = [
        {"op_id": i, "client": "c", "op": "incr", "outcome": "ok", "value": v,
         "invoke_ns": 10 * i, "complete_ns": 10 * i + 5, "server_pid": 1}
        for i, v in enumerate([1, 2, 4, 5])
    ]
    table = HistoryTable.from_rows(rows)
    final = {"available": True, "per_process": False, "states": [{"pid": 1, "value": 7}]}
    assert check_history(table, final=final).valid == "no"
    verdict = check_history(table, final=final, server_problem="the swarm timed out")
    assert verdict.valid == "unknown"
    assert "cut short" in verdict.reason and "the swarm timed out" in verdict.reason
    assert verdict.counts["skipped_unexplained_unrecorded"] == 1


def test_a_cut_short_run_still_reports_duplicates() -> None:
    """Duplicates stay evidence even when the run was cut short."""
    rows = [
        {"op_id": i, "client": "c", "op": "incr", "outcome": "ok", "value": v,
         "invoke_ns": 10 * i, "complete_ns": 10 * i + 5, "server_pid": 1 + i % 2}
        for i, v in enumerate([1, 1, 2, 2])
    ]
    verdict = check_history(HistoryTable.from_rows(rows), server_problem="the server died")
    assert verdict.valid == "no"
