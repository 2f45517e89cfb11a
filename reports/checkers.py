"""Checkers: pure functions from a history to a verdict, in numpy, n log n at worst.

``check_counter`` checks increment-and-get histories (op ``incr``) for:

- **duplicates**: one number returned to more than one ``ok`` operation, split
  into same-process (one server pid) and cross-process repeats;
- **skipped numbers**: numbers in 1..max never returned (per process for
  per-process stores), minus those that operations of unknown outcome (``info``)
  may have taken;
- **lost updates**: the final value is below the number of ``ok`` increments
  (Jepsen's counter bounds ``ok <= final <= ok + info``), or below the
  server-side ``served`` count; a final value above ``ok + info`` means
  increments this history does not account for;
- **real-time order**: A completed before B was invoked, yet A got a number at
  least as large as B's.

``check_unique_ids`` checks that every ``ok`` value is unique. ``check_history``
runs the checkers a scenario names (see ``CHECKERS``, ``register`` and
``checkers_for``) and composes their verdicts: no beats unknown beats yes. A
checker that raises yields unknown with the error as reason, never a crash.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec

import numpy as np

from demo_server.errors import ConfigError
from reports._final import FinalState, UnreadableFinal, parse_final
from reports.history_table import FAIL, INFO, OK, HistoryTable
from reports.verdict import Verdict, Witness, compose

__all__ = [
    "CHECKERS",
    "CHECKER_OPS",
    "SCENARIO_CHECKERS",
    "CheckContext",
    "Checker",
    "check_counter",
    "check_history",
    "check_unique_ids",
    "checkers_for",
    "register",
]

WITNESSES_PER_KIND = 3
_PIDS_IN_COUNTS = 16
UNKNOWN_PID = -1


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """What a checker may know besides the history.

    Attributes:
        final: the store's final state: ``None``, an integer (one shared value) or
            a ``final.json`` mapping.
        per_process: every server process keeps its own copy of the state (used
            when ``final`` does not say).
    """

    final: Any = None
    per_process: bool = False
    #: False when the run was cut short (server died, swarm timed out): requests
    #: may have taken numbers without leaving a row.
    complete: bool = True


Checker = Callable[[HistoryTable, CheckContext], Verdict]


_P = ParamSpec("_P")


def _guarded(name: str) -> Callable[[Callable[_P, Verdict]], Callable[_P, Verdict]]:
    """Turn an exception inside a checker into an unknown verdict with the error as reason."""

    def wrap(func: Callable[_P, Verdict]) -> Callable[_P, Verdict]:
        @functools.wraps(func)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> Verdict:
            try:
                return func(*args, **kwargs)
            except Exception as exc:  # a checker never crashes the caller
                return Verdict(name, "unknown",
                               reason=f"the checker failed: {type(exc).__name__}: {exc}")

        return run

    return wrap


# --- formatting ----------------------------------------------------------------------


def _duration(ns: int) -> str:
    ns = abs(int(ns))
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f} s"
    if ns >= 100_000:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1_000:
        return f"{ns / 1e3:.0f} µs"
    return f"{ns} ns"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _s(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else (plural or word + 's')}"


# --- the operations a counter check looks at ----------------------------------------


@dataclasses.dataclass(frozen=True)
class _Ops:
    """The ok operations that returned a value, as parallel arrays."""

    op_id: np.ndarray
    value: np.ndarray
    invoke: np.ndarray
    complete: np.ndarray
    pid: np.ndarray  # UNKNOWN_PID where not recorded
    tid: np.ndarray
    tid_known: np.ndarray

    @classmethod
    def of(cls, table: HistoryTable, mask: np.ndarray) -> _Ops:
        return cls(
            op_id=table.op_id[mask],
            value=table.value[mask],
            invoke=table.invoke_ns[mask],
            complete=table.complete_ns[mask],
            pid=np.where(table.server_pid_known[mask], table.server_pid[mask], UNKNOWN_PID),
            tid=table.server_tid[mask],
            tid_known=table.server_tid_known[mask],
        )

    def __len__(self) -> int:
        return int(self.op_id.shape[0])

    def take(self, mask: np.ndarray) -> _Ops:
        return _Ops(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))

    def detail(self, i: int) -> dict[str, Any]:
        return {
            "op_id": int(self.op_id[i]),
            "value": int(self.value[i]),
            "invoke_ns": int(self.invoke[i]),
            "complete_ns": int(self.complete[i]),
            "pid": None if self.pid[i] == UNKNOWN_PID else int(self.pid[i]),
            "tid": int(self.tid[i]) if self.tid_known[i] else None,
        }

    @functools.cached_property
    def value_rank(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense rank of each value, the permutation sorting by value, the distinct values."""
        return _dense(self.value)

    @functools.cached_property
    def pid_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Dense index of each pid and the distinct pids (sorted)."""
        rank, _, distinct = _dense(self.pid)
        return rank, distinct

    def groups(self, per_process: bool) -> np.ndarray:
        """The counter each op read: its pid's index for per-process stores, else 0."""
        return self.pid_index[0] if per_process else np.zeros(len(self), dtype=np.int64)

    def returned(self, value: int, pid: int | None) -> bool:
        """Whether any operation (of process ``pid``, if given) got ``value``."""
        hit = self.value == value
        if pid is not None:
            hit &= self.pid == pid
        return bool(hit.any())


def _dense(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense ranks of ``x`` (equal values, equal ranks), the sorting permutation, the
    distinct values in order."""
    perm = np.argsort(x)
    ordered = x[perm]
    new = np.ones(ordered.shape[0], dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    rank = np.empty(ordered.shape[0], dtype=np.int64)
    rank[perm] = np.cumsum(new) - 1
    return rank, perm, ordered[new]


def _process(pid: int) -> str:
    return "an unrecorded process" if pid == UNKNOWN_PID else f"process {pid}"


def _threads(ops: _Ops, idx: list[int]) -> str:
    tids = [int(ops.tid[i]) for i in idx if ops.tid_known[i]]
    if len(tids) < len(idx):
        return ""
    if len(set(tids)) == 1:
        return f" (all on thread {tids[0]})" if len(tids) > 2 else f" (both on thread {tids[0]})"
    return f" (threads {_join([str(t) for t in tids])})"


# --- duplicates ----------------------------------------------------------------------


def _duplicates(ops: _Ops, per_process: bool) -> tuple[dict[str, int], list[Witness]]:
    n = len(ops)
    counts = {"duplicate_values": 0, "duplicate_extra_returns": 0,
              "duplicate_extra_same_process": 0, "duplicate_extra_cross_process": 0}
    if n < 2:
        return counts, []
    value_rank, _, _ = ops.value_rank
    pid_index, pid_values = ops.pid_index
    key = value_rank * np.int64(pid_values.shape[0]) + pid_index
    order = np.argsort(key)  # by value, then process
    value_id, group_key = value_rank[order], key[order]
    new_value = np.ones(n, dtype=bool)
    new_value[1:] = value_id[1:] != value_id[:-1]
    new_group = np.ones(n, dtype=bool)  # a group: one value within one process
    new_group[1:] = group_key[1:] != group_key[:-1]
    value_size = np.bincount(value_id)
    starts = np.flatnonzero(new_group)
    group_size = np.diff(np.append(starts, n))
    group_value = value_id[starts]
    group_pid = pid_index[order][starts]
    groups_per_value = np.bincount(group_value, minlength=value_size.shape[0])
    same_extra = group_size - 1
    # Within one value, the process that completed first holds the original;
    # every other process's group is one cross-process repeat.
    first_complete = np.minimum.reduceat(ops.complete[order], starts)
    value_starts = np.flatnonzero(np.diff(group_value, prepend=-1) != 0)
    earliest = np.minimum.reduceat(first_complete, value_starts)
    segment = np.cumsum(np.diff(group_value, prepend=-1) != 0) - 1
    candidates = np.flatnonzero(first_complete == earliest[segment])
    keep = np.ones(candidates.shape[0], dtype=bool)
    keep[1:] = segment[candidates][1:] != segment[candidates][:-1]
    cross = np.ones(starts.shape[0], dtype=np.int64)
    cross[candidates[keep]] = 0

    counts["duplicate_values"] = int((value_size > 1).sum())
    counts["duplicate_extra_returns"] = int((value_size - 1).sum())
    counts["duplicate_extra_same_process"] = int(same_extra.sum())
    counts["duplicate_extra_cross_process"] = int(cross.sum())
    if counts["duplicate_extra_returns"]:
        pids = pid_values
        size = pids.shape[0]
        same_by = np.bincount(group_pid, weights=same_extra, minlength=size).astype(np.int64)
        cross_by = np.bincount(group_pid, weights=cross, minlength=size).astype(np.int64)
        ranked = np.argsort(-(same_by + cross_by), kind="stable")[:_PIDS_IN_COUNTS]
        for k in ranked.tolist():
            label = "unknown" if pids[k] == UNKNOWN_PID else str(int(pids[k]))
            if same_by[k]:
                counts[f"duplicate_extra_same_process[pid={label}]"] = int(same_by[k])
            if cross_by[k]:
                counts[f"duplicate_extra_cross_process[pid={label}]"] = int(cross_by[k])

    witnesses: list[Witness] = []
    for g in np.flatnonzero(group_size > 1)[:WITNESSES_PER_KIND].tolist():
        idx = order[starts[g]: starts[g] + min(int(group_size[g]), 5)].tolist()
        witnesses.append(_same_process_witness(ops, idx, per_process))
    cross_values = np.flatnonzero(groups_per_value > 1)[:WITNESSES_PER_KIND]
    if cross_values.size:
        first_group = np.searchsorted(group_value, cross_values)
        for g in first_group.tolist():
            idx = [int(order[starts[g]]), int(order[starts[g + 1]])]
            witnesses.append(_cross_process_witness(ops, idx, per_process))
    return counts, witnesses


def _same_process_witness(ops: _Ops, idx: list[int], per_process: bool) -> Witness:
    idx = sorted(idx, key=lambda i: (int(ops.invoke[i]), int(ops.op_id[i])))
    value, pid = int(ops.value[idx[0]]), int(ops.pid[idx[0]])
    ids = [str(int(ops.op_id[i])) for i in idx]
    where = _process(pid)
    if len(idx) == 2:
        a, b = idx
        overlap = min(int(ops.complete[a]), int(ops.complete[b])) - int(ops.invoke[b])
        if overlap > 0:
            sentence = (f"requests {ids[0]} and {ids[1]} overlapped for {_duration(overlap)} "
                        f"in {where}{_threads(ops, idx)}; both got {value}")
        else:
            sentence = (f"request {ids[0]} completed {_duration(-overlap)} before request "
                        f"{ids[1]} was sent, both in {where}{_threads(ops, idx)}; "
                        f"both got {value}")
    else:
        sentence = f"requests {_join(ids)} all got {value} in {where}{_threads(ops, idx)}"
    scope = pid if per_process and pid != UNKNOWN_PID else None
    if value > 1 and not ops.returned(value - 1, scope):
        sentence += f"; nobody got {value - 1}"
    return Witness(
        "duplicate",
        sentence,
        tuple(int(ops.op_id[i]) for i in idx),
        {"scope": "same-process", "value": value, "pid": None if pid == UNKNOWN_PID else pid,
         "ops": [ops.detail(i) for i in idx]},
    )


def _cross_process_witness(ops: _Ops, idx: list[int], per_process: bool) -> Witness:
    idx = sorted(idx, key=lambda i: (int(ops.invoke[i]), int(ops.op_id[i])))
    a, b = idx
    value = int(ops.value[a])
    pids = [int(ops.pid[i]) for i in idx]
    why = ("each process keeps its own copy of the counter" if per_process else
           "either each process keeps its own copy of the counter, or their updates of "
           "the shared one interleave")
    sentence = (f"requests {int(ops.op_id[a])} and {int(ops.op_id[b])} both got {value} from "
                f"different processes (pids {pids[0]} and {pids[1]}): {why}")
    return Witness(
        "duplicate",
        sentence,
        (int(ops.op_id[a]), int(ops.op_id[b])),
        {"scope": "cross-process", "value": value, "pids": pids,
         "ops": [ops.detail(i) for i in idx]},
    )


# --- skipped numbers -----------------------------------------------------------------


def _skipped(
    ops: _Ops, per_process: bool, explainers: np.ndarray
) -> tuple[dict[str, int], list[Witness]]:
    """Numbers in 1..max of each counter nobody got; ``explainers``: pids of info ops."""
    counts = {"skipped_values": 0, "skipped_explained_by_info": 0, "skipped_unexplained": 0}
    if not len(ops):
        return counts, []
    value_rank, by_value, distinct = ops.value_rank
    group = ops.groups(per_process)
    if per_process:
        order = np.argsort(group * np.int64(distinct.shape[0]) + value_rank)
    else:
        order = by_value
    order = order[ops.value[order] >= 1]
    if not order.size:
        return counts, []
    g, v, index = group[order], ops.value[order], order
    distinct_pair = np.ones(v.shape[0], dtype=bool)
    distinct_pair[1:] = (g[1:] != g[:-1]) | (v[1:] != v[:-1])
    g, v, index = g[distinct_pair], v[distinct_pair], index[distinct_pair]
    first = np.ones(v.shape[0], dtype=bool)
    first[1:] = g[1:] != g[:-1]
    below = np.where(first, 0, np.concatenate(([0], v[:-1])))
    gap = v - below - 1  # numbers just below v that this group never returned
    group_id = np.cumsum(first) - 1
    missing = np.bincount(group_id, weights=gap).astype(np.int64)
    keys = ops.pid_index[1][g[first]] if per_process else g[first]
    total = int(missing.sum())
    # Each operation of unknown outcome may have taken one number: first in its
    # own process (when the process is known), then anywhere.
    if per_process:
        known = explainers[explainers != UNKNOWN_PID]
        pool = int((explainers == UNKNOWN_PID).sum())
        info_pids, info_counts = np.unique(known, return_counts=True)
        own = np.zeros(keys.shape[0], dtype=np.int64)
        if info_pids.size:
            at = np.minimum(np.searchsorted(info_pids, keys), info_pids.size - 1)
            own = np.where(info_pids[at] == keys, info_counts[at], 0)
        local = np.minimum(missing, own)
        explained = int(local.sum()) + min(int((missing - local).sum()), pool)
    else:
        explained = min(total, int(explainers.shape[0]))
    counts = {"skipped_values": total, "skipped_explained_by_info": explained,
              "skipped_unexplained": total - explained}
    witnesses: list[Witness] = []
    if total > explained:
        note = (f"; {_s(int(explainers.shape[0]), 'request')} with unknown outcome can explain "
                f"at most {explained:,} of the {total:,} missing numbers" if explained else
                "; no request with unknown outcome can explain it")
        for k in np.flatnonzero(gap > 0)[:WITNESSES_PER_KIND].tolist():
            low, high = int(below[k]) + 1, int(v[k]) - 1
            after = int(index[k])
            span = str(low) if low == high else f"{low} to {high}"
            pid = int(ops.pid[after]) if per_process else None
            where = f" in {_process(pid)}" if pid is not None else ""
            involved = [after]
            if first[k]:
                sentence = (f"nobody got {span}{where}: the smallest number returned was "
                            f"{high + 1}, to request {int(ops.op_id[after])}")
            else:
                before = int(index[k - 1])
                involved.insert(0, before)
                sentence = (f"nobody got {span}{where}: request {int(ops.op_id[before])} got "
                            f"{low - 1} and request {int(ops.op_id[after])} got {high + 1}")
            witnesses.append(Witness(
                "skipped",
                sentence + note,
                tuple(int(ops.op_id[i]) for i in involved),
                {"missing": list(range(low, high + 1))[:100], "missing_from": low,
                 "missing_to": high, "pid": pid, "ops": [ops.detail(i) for i in involved]},
            ))
    return counts, witnesses


# --- real-time order -----------------------------------------------------------------


def _real_time(ops: _Ops, per_process: bool) -> tuple[int, list[Witness]]:
    """Operations B for which some A of B's counter completed before B was invoked, with
    A.value >= B.value. One sort by completion, a running maximum, a binary search."""
    n = len(ops)
    if n < 2:
        return 0, []
    gi = ops.groups(per_process)
    by_time = np.argsort(ops.complete)
    complete_rank = np.empty(n, dtype=np.int64)
    complete_rank[by_time] = np.arange(n)
    # How many completions (of any counter) come strictly before each invoke.
    completed_before = np.searchsorted(ops.complete[by_time], ops.invoke, side="left")
    span = np.int64(n + 1)
    complete_key = gi * span + complete_rank
    invoke_key = gi * span + completed_before
    by_complete = np.argsort(complete_key) if per_process else by_time
    sorted_complete = complete_key[by_complete]
    value_key = gi * span + ops.value_rank[0]
    values = value_key[by_complete]
    running_max = np.maximum.accumulate(values)
    holder = np.maximum.accumulate(np.where(values == running_max, np.arange(n), 0))
    before = np.searchsorted(sorted_complete, invoke_key, side="left") - 1
    safe = np.maximum(before, 0)
    best = running_max[safe]
    violated = (before >= 0) & (best >= gi * span) & (best >= value_key)
    count = int(violated.sum())
    witnesses = []
    late = np.flatnonzero(violated)
    late = late[np.lexsort((ops.op_id[late], ops.invoke[late]))][:WITNESSES_PER_KIND]
    for b in late.tolist():
        a = int(by_complete[holder[safe[b]]])
        gap = int(ops.invoke[b]) - int(ops.complete[a])
        pa, pb = int(ops.pid[a]), int(ops.pid[b])
        if pa == pb == UNKNOWN_PID:
            where = ""
        elif per_process or pa == pb:
            where = f" (both in {_process(pa)})"
        else:
            where = f" ({_process(pa)} and {_process(pb)})"
        va, vb = int(ops.value[a]), int(ops.value[b])
        sentence = (f"request {int(ops.op_id[a])} got {va} and completed {_duration(gap)} before "
                    f"request {int(ops.op_id[b])} was sent, yet request {int(ops.op_id[b])} got "
                    f"{vb}{' too' if va == vb else ''}{where}")
        witnesses.append(Witness(
            "real-time-order",
            sentence,
            (int(ops.op_id[a]), int(ops.op_id[b])),
            {"earlier": ops.detail(a), "later": ops.detail(b), "gap_ns": gap},
        ))
    return count, witnesses


# --- lost updates --------------------------------------------------------------------


def _lost_updates(
    final: FinalState, ok_pids: np.ndarray, info_pids: np.ndarray
) -> tuple[dict[str, int], list[Witness]]:
    """Compare the final state with the ok and info increments (pids: UNKNOWN_PID if unknown)."""
    counts = {"lost_updates": 0, "lost_served": 0, "final_excess": 0}
    witnesses: list[Witness] = []
    if final.per_process:
        pool = int((info_pids == UNKNOWN_PID).sum())
        rows = []
        for state in final.states:
            if state.pid is None:
                continue
            rows.append((state, int((ok_pids == state.pid).sum()),
                         int((info_pids == state.pid).sum()) + pool, _process(state.pid)))
    else:
        value = max(s.value for s in final.states)
        # Each process counts what it served; one entry per pid, summed.
        served_by_pid = {s.pid: s.served for s in final.states if s.served is not None}
        served = sum(served_by_pid.values()) if served_by_pid else None
        shared = dataclasses.replace(final.states[0], value=value, served=served)
        rows = [(shared, int(ok_pids.shape[0]), int(info_pids.shape[0]), "the shared counter")]
    for state, ok, info, name in rows:
        lost = max(0, ok - state.value)
        lost_served = max(0, state.served - state.value) if state.served is not None else 0
        excess = max(0, state.value - ok - info)
        counts["lost_updates"] += lost
        counts["lost_served"] += lost_served
        counts["final_excess"] += excess
        label = "" if state.pid is None or not final.per_process else f"[pid={state.pid}]"
        if label and lost:
            counts[f"lost_updates{label}"] = lost
        if label and lost_served:
            counts[f"lost_served{label}"] = lost_served
        details = {"pid": state.pid, "final": state.value, "ok": ok, "info": info,
                   "served": state.served}
        subject = name if name.startswith("the") else f"{name}'s counter"
        if lost and len(witnesses) < WITNESSES_PER_KIND:
            answered = "answered" if final.per_process else "got"
            who = f"{name} {answered}" if final.per_process else "clients got"
            witnesses.append(Witness("lost-update", (
                f"{who} {_s(ok, 'increment')} as ok, yet {subject} ends at {state.value:,}: "
                f"at least {_s(lost, 'update was', 'updates were')} lost"), (), details))
        if lost_served and len(witnesses) < WITNESSES_PER_KIND:
            witnesses.append(Witness("lost-update", (
                f"{name if final.per_process else 'the server'} served "
                f"{_s(state.served or 0, 'increment')}, yet {subject} ends at {state.value:,}: "
                f"{_s(lost_served, 'update was', 'updates were')} lost inside the server"),
                (), details))
        if excess and len(witnesses) < WITNESSES_PER_KIND:
            witnesses.append(Witness("final-too-high", (
                f"{subject} ends at {state.value:,}, but only {_s(ok, 'increment')} succeeded "
                f"and {info:,} had an unknown outcome: {_s(excess, 'increment')} came from "
                "outside this history"), (), details))
    return counts, witnesses


# --- the counter checker -------------------------------------------------------------


@_guarded("counter")
def check_counter(
    table: HistoryTable, final: Any = None, *, per_process: bool = False, complete: bool = True
) -> Verdict:
    """Check an increment-and-get history.

    Args:
        table: the history; only ``incr`` operations are read.
        final: the store's final state: ``None`` (skip the lost-update check), an
            integer (one shared counter) or a ``final.json`` mapping.
        per_process: each server process keeps its own counter; ``final.json``'s
            ``per_process`` overrides it. Skips, real-time order and lost updates
            are then checked per process; duplicates are always counted across
            the whole history, since clients see one counter.
        complete: False when the run was cut short: skipped numbers and a final
            value above the history may then be requests without a row, so they
            make the verdict unknown instead of no. Duplicates, lost updates and
            real-time order stay evidence.

    Returns:
        ``no`` with witnesses if an anomaly is found; ``unknown`` with a reason if
        the history cannot decide; ``yes`` otherwise.
    """
    incr = table.op_is("incr")
    outcome = table.outcome[incr]
    total = int(incr.sum())
    ok_mask, info_mask = outcome == OK, outcome == INFO
    counts = {"ops": total, "ok": int(ok_mask.sum()), "fail": int((outcome == FAIL).sum()),
              "info": int(info_mask.sum())}
    if total == 0:
        return Verdict("counter", "unknown", counts,
                       reason="the history has no incr operations")
    undecided: list[str] = []
    state: FinalState | None = None
    try:
        state = parse_final(final)
    except UnreadableFinal as exc:
        undecided.append(f"the final state is unreadable: {exc}")
    if state is not None and not state.available:
        undecided.append(f"the final state is unavailable: {state.reason}")
        state = None
    if state is not None:
        if isinstance(final, int) and per_process:
            undecided.append("a single final value cannot be compared with per-process counters")
            state = None
        elif state.per_process is not None:
            per_process = state.per_process

    pid_all = np.where(table.server_pid_known[incr], table.server_pid[incr], UNKNOWN_PID)
    has_value = ok_mask & table.value_known[incr]
    ops = _Ops.of(table, np.flatnonzero(incr)[has_value])
    # An ok increment without a value took a number nobody saw, like an info one.
    explainers = pid_all[info_mask | (ok_mask & ~table.value_known[incr])]

    dup_counts, dup_witnesses = _duplicates(ops, per_process)
    counts.update(dup_counts)
    scoped = ops
    if per_process:
        unattributed = int((ops.pid == UNKNOWN_PID).sum())
        if unattributed:
            counts["ok_without_pid"] = unattributed
            undecided.append(f"{_s(unattributed, 'ok operation')} without a server pid cannot "
                             "be checked per process")
            scoped = ops.take(ops.pid != UNKNOWN_PID)
    skip_counts, skip_witnesses = _skipped(scoped, per_process, explainers)
    counts.update(skip_counts)
    rt_count, rt_witnesses = _real_time(scoped, per_process)
    counts["real_time_violations"] = rt_count
    lost_witnesses: list[Witness] = []
    if state is not None:
        if state.per_process is None:
            state = dataclasses.replace(state, per_process=per_process)
        lost_counts, lost_witnesses = _lost_updates(state, pid_all[ok_mask], pid_all[info_mask])
        counts.update(lost_counts)

    if counts["info"] * 2 > total:
        undecided.append(f"{counts['info']:,} of {total:,} increments "
                         f"({100 * counts['info'] / total:.0f}%) have an unknown outcome")
    if counts["ok"] == 0:
        undecided.append("no increment succeeded")
    witnesses = (*dup_witnesses, *skip_witnesses, *lost_witnesses, *rt_witnesses)
    if not complete:
        unrecorded = {k: counts.pop(k, 0) for k in ("skipped_unexplained", "final_excess")}
        counts.update({f"{k}_unrecorded": v for k, v in unrecorded.items() if v})
        if any(unrecorded.values()):
            undecided.append(
                "the run was cut short, so skipped numbers and a final value above the "
                "history may be requests it did not record")
            witnesses = tuple(w for w in witnesses
                              if w.kind not in ("skipped", "final-too-high"))
    findings = _findings(counts)
    if findings:
        return Verdict("counter", "no", counts, witnesses, "; ".join(findings))
    if undecided:
        return Verdict("counter", "unknown", counts, witnesses, "; ".join(undecided))
    explained = counts["skipped_explained_by_info"]
    return Verdict("counter", "yes", counts, witnesses, (
        f"{_s(total, 'increment')} ({counts['ok']:,} ok, {counts['info']:,} unknown): "
        "no number repeated, "
        + (f"{_s(explained, 'missing number')}, all explained by unknown outcomes"
           if explained else "none skipped")
        + (", none lost" if state is not None else "") + ", all in real-time order"))


def _findings(counts: dict[str, int]) -> list[str]:
    out = []
    if counts.get("duplicate_values"):
        out.append(f"{_s(counts['duplicate_values'], 'number')} returned more than once "
                   f"({counts['duplicate_extra_returns']:,} extra: "
                   f"{counts['duplicate_extra_same_process']:,} within a process, "
                   f"{counts['duplicate_extra_cross_process']:,} across processes)")
    if counts.get("skipped_unexplained"):
        out.append(f"{_s(counts['skipped_unexplained'], 'number')} skipped")
    if counts.get("lost_updates"):
        out.append(f"{_s(counts['lost_updates'], 'update')} lost")
    if counts.get("lost_served") and counts.get("lost_served") != counts.get("lost_updates"):
        out.append(f"{_s(counts['lost_served'], 'served increment')} lost inside the server")
    if counts.get("final_excess"):
        out.append(f"the final value exceeds the history by {counts['final_excess']:,}")
    if counts.get("real_time_violations"):
        out.append(f"{_s(counts['real_time_violations'], 'operation')} out of real-time order")
    return out


# --- unique ids ----------------------------------------------------------------------


@_guarded("unique-ids")
def check_unique_ids(table: HistoryTable, *, per_process: bool = False) -> Verdict:
    """Check that every value returned to an ``ok`` operation (of any op) is unique.

    Args:
        table: the history.
        per_process: only changes how cross-process repeats are explained.

    Returns:
        ``no`` with witnesses for repeats, ``unknown`` if no ok operation returned a
        value, ``yes`` otherwise.
    """
    mask = (table.outcome == OK) & table.value_known
    ops = _Ops.of(table, mask)
    counts, witnesses = _duplicates(ops, per_process)
    counts = {"ids": len(ops), **counts}
    if not len(ops):
        return Verdict("unique-ids", "unknown", counts,
                       reason="no ok operation returned a value")
    if counts["duplicate_values"]:
        return Verdict("unique-ids", "no", counts, tuple(witnesses),
                       f"{_s(counts['duplicate_values'], 'id')} handed out more than once "
                       f"({counts['duplicate_extra_returns']:,} extra)")
    return Verdict("unique-ids", "yes", counts, reason=f"{len(ops):,} ids, all distinct")


# --- registry ------------------------------------------------------------------------


def _counter(table: HistoryTable, context: CheckContext) -> Verdict:
    return check_counter(table, context.final, per_process=context.per_process,
                         complete=context.complete)


def _unique_ids(table: HistoryTable, context: CheckContext) -> Verdict:
    return check_unique_ids(table, per_process=context.per_process)


CHECKERS: dict[str, Checker] = {"counter": _counter, "unique-ids": _unique_ids}
#: The ops a checker reads; a history with any other op is refused rather than
#: half-checked. A checker not named here reads every op.
CHECKER_OPS: dict[str, tuple[str, ...]] = {"counter": ("incr", "read")}
SCENARIO_CHECKERS: dict[str, list[str]] = {"counter": ["counter"], "ids": ["unique-ids"]}


def register(name: str, fn: Checker, *, scenarios: Iterable[str] = ()) -> None:
    """Add (or replace) a checker, and optionally name it in scenarios' lists.

    Args:
        name: the checker's name, as scenarios refer to it.
        fn: ``fn(table, context) -> Verdict``.
        scenarios: scenarios that run it from now on (created if new).
    """
    CHECKERS[name] = fn
    for scenario in scenarios:
        names = SCENARIO_CHECKERS.setdefault(scenario, [])
        if name not in names:
            names.append(name)


def checkers_for(scenario: str) -> list[str]:
    """The names of the checkers a scenario runs.

    Raises:
        ConfigError: for a scenario no checker is registered for.
    """
    try:
        return list(SCENARIO_CHECKERS[scenario])
    except KeyError:
        known = ", ".join(sorted(SCENARIO_CHECKERS))
        raise ConfigError(f"no checker for scenario {scenario!r}; known: {known}") from None


def check_history(
    table: HistoryTable,
    final: Any = None,
    scenario: str = "counter",
    server_problem: str | None = None,
    *,
    per_process: bool = False,
) -> Verdict:
    """Run the scenario's checkers and compose their verdicts (no > unknown > yes).

    Args:
        table: the history.
        final: the final state (``None``, an integer, or a ``final.json`` mapping).
        scenario: which checkers to run (``checkers_for``).
        server_problem: what went wrong with the server during the swarm (e.g. it
            died); the verdict is then at best unknown, with this as reason.
        per_process: each server process keeps its own state, unless ``final`` says.

    Returns:
        The composed verdict, named after the checkers joined with ``+``.
    """
    names = checkers_for(scenario)
    context = CheckContext(final=final, per_process=per_process,
                           complete=server_problem is None)
    verdicts = []
    for name in names:
        fn = CHECKERS.get(name)
        if fn is None:
            verdicts.append(Verdict(name, "unknown", reason=f"no checker named {name!r}"))
            continue
        verdicts.append(_guarded(name)(fn)(table, context))
    if server_problem:
        verdicts.append(Verdict("server", "unknown", reason=server_problem))
    return compose(verdicts, checker="+".join(names))


def _session(table: HistoryTable, context: CheckContext) -> Verdict:
    from reports.session_checker import check_sessions

    return check_sessions(table)


register("session", _session, scenarios=("session",))
