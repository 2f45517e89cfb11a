"""A straightforward pure-Python counter checker (dicts, sets, one sort per process).

It computes the same counts as ``scenarios.counter.check_counter`` without
numpy and without witnesses. The benchmark compares the two; the tests use it
as an independent oracle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

from reports.history.final import parse_final
from reports.history.table import INFO, OK, HistoryTable

__all__ = ["Op", "ops_of", "reference_counts"]

UNKNOWN_PID = -1


class Op(NamedTuple):
    """One ``incr`` operation; ``value`` is None when empty, ``pid`` -1 when unknown."""

    op_id: int
    outcome: int
    value: int | None
    invoke: int
    complete: int
    pid: int


def ops_of(table: HistoryTable) -> list[Op]:
    """The table's ``incr`` operations as tuples (the reference checker's input)."""
    mask = table.op_is("incr")
    return [
        Op(i, o, v if vk else None, inv, c, p if pk else UNKNOWN_PID)
        for i, o, v, vk, inv, c, p, pk in zip(
            table.op_id[mask].tolist(), table.outcome[mask].tolist(),
            table.value[mask].tolist(), table.value_known[mask].tolist(),
            table.invoke_ns[mask].tolist(), table.complete_ns[mask].tolist(),
            table.server_pid[mask].tolist(), table.server_pid_known[mask].tolist(),
            strict=True,
        )
    ]


def reference_counts(
    ops: Sequence[Op], final: Any = None, per_process: bool = False
) -> dict[str, int]:
    """Count duplicates, skips, real-time violations and lost updates, the plain way."""
    state = parse_final(final)
    if state is not None and state.per_process is not None and not isinstance(final, int):
        per_process = state.per_process
    ok = [op for op in ops if op.outcome == OK]
    info = [op for op in ops if op.outcome == INFO]
    valued = [op for op in ok if op.value is not None]
    explainers = [op.pid for op in info] + [op.pid for op in ok if op.value is None]
    counts: dict[str, int] = {"ops": len(ops), "ok": len(ok), "info": len(info)}

    by_value: dict[int, list[Op]] = defaultdict(list)
    for op in valued:
        by_value[op.value].append(op)  # type: ignore[index]
    counts["duplicate_values"] = sum(1 for same in by_value.values() if len(same) > 1)
    counts["duplicate_extra_returns"] = sum(len(same) - 1 for same in by_value.values())
    same_process = cross_process = unknown_process = 0
    for same in by_value.values():
        if any(op.pid == UNKNOWN_PID for op in same):  # no process can be claimed
            unknown_process += len(same) - 1
            continue
        per_pid: dict[int, int] = defaultdict(int)
        for op in same:
            per_pid[op.pid] += 1
        same_process += sum(c - 1 for c in per_pid.values())
        cross_process += len(per_pid) - 1
    counts["duplicate_extra_same_process"] = same_process
    counts["duplicate_extra_cross_process"] = cross_process
    counts["duplicate_extra_unknown_process"] = unknown_process

    groups: dict[int, list[Op]] = defaultdict(list)
    for op in valued:
        if not per_process:
            groups[0].append(op)
        elif op.pid != UNKNOWN_PID:
            groups[op.pid].append(op)

    missing: dict[int, int] = {}
    for key, members in groups.items():
        seen = {op.value for op in members if op.value is not None and op.value >= 1}
        if seen:
            missing[key] = max(seen) - len(seen)
    total = sum(missing.values())
    if per_process:
        own: dict[int, int] = defaultdict(int)
        for pid in explainers:
            own[pid] += 1
        pool = own.pop(UNKNOWN_PID, 0)
        local = {key: min(m, own.get(key, 0)) for key, m in missing.items()}
        explained = sum(local.values()) + min(total - sum(local.values()), pool)
    else:
        explained = min(total, len(explainers))
    counts["skipped_values"] = total
    counts["skipped_explained_by_info"] = explained
    counts["skipped_unexplained"] = total - explained

    violations = 0
    for members in groups.values():
        by_complete = sorted(members, key=lambda op: op.complete)
        best: int | None = None
        j = 0
        for op in sorted(members, key=lambda op: op.invoke):
            while j < len(by_complete) and by_complete[j].complete < op.invoke:
                value = by_complete[j].value
                best = value if best is None or value > best else best  # type: ignore[operator]
                j += 1
            if best is not None and best >= op.value:  # type: ignore[operator]
                violations += 1
    counts["real_time_violations"] = violations

    if state is not None and state.available:
        lost = lost_served = excess = 0
        if per_process:
            pool_info = sum(1 for op in info if op.pid == UNKNOWN_PID)
            for s in state.states:
                if s.pid is None:
                    continue
                n_ok = sum(1 for op in ok if op.pid == s.pid)
                n_info = sum(1 for op in info if op.pid == s.pid) + pool_info
                lost += max(0, n_ok - s.value)
                lost_served += max(0, (s.served or 0) - s.value) if s.served is not None else 0
                excess += max(0, s.value - n_ok - n_info)
        else:
            value = max(s.value for s in state.states)
            served_by_pid = {s.pid: s.served for s in state.states if s.served is not None}
            lost = max(0, len(ok) - value)
            if served_by_pid:
                lost_served = max(0, sum(served_by_pid.values()) - value)  # type: ignore[arg-type]
            excess = max(0, value - len(ok) - len(info))
        counts.update(lost_updates=lost, lost_served=lost_served, final_excess=excess)
    return counts

