"""Checkers: pure functions from a history to a verdict, in numpy, n log n at worst.

This module holds what every scenario's checkers share, and the registry of
their names:

- ``Ops``: the ok operations that returned a value, as parallel arrays;
- ``duplicates``: one value returned to more than one ``ok`` operation, split
  into same-process (one server pid), cross-process and unknown-process repeats
  (a history without server pids never claims either);
- ``real_time_order``: A completed before B was invoked, yet A got a value at
  least as large as B's;
- ``check_unique_ids``: every ``ok`` value is unique;
- ``register``: where a scenario's own checkers (in its module, the counter's
  in ``scenarios.counter``) are named; ``reports.analysis.checking`` runs them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec

import numpy as np

from reports.history.table import OK, HistoryTable
from reports.history.verdict import Verdict, Witness

__all__ = [
    "CHECKERS",
    "CHECKER_COLUMNS",
    "CHECKER_OPS",
    "SCENARIO_CHECKERS",
    "UNKNOWN_PID",
    "WITNESSES_PER_KIND",
    "CheckContext",
    "Checker",
    "Ops",
    "check_unique_ids",
    "duplicate_finding",
    "duplicates",
    "duration_text",
    "guarded",
    "join_words",
    "plural",
    "process_name",
    "real_time_order",
    "register",
]

WITNESSES_PER_KIND = 3
#: Above this share of operations with an unknown outcome (``info``), no run is safe.
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


def guarded(name: str) -> Callable[[Callable[_P, Verdict]], Callable[_P, Verdict]]:
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


def duration_text(ns: int) -> str:
    ns = abs(int(ns))
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f} s"
    if ns >= 100_000:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1_000:
        return f"{ns / 1e3:.0f} µs"
    return f"{ns} ns"


def join_words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else (plural or word + 's')}"


# --- the operations a counter check looks at ----------------------------------------


@dataclasses.dataclass(frozen=True)
class Ops:
    """The ok operations that returned a value, as parallel arrays."""

    op_id: np.ndarray
    value: np.ndarray
    invoke: np.ndarray
    complete: np.ndarray
    pid: np.ndarray  # UNKNOWN_PID where not recorded
    tid: np.ndarray
    tid_known: np.ndarray

    @classmethod
    def of(cls, table: HistoryTable, mask: np.ndarray) -> Ops:
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

    def take(self, mask: np.ndarray) -> Ops:
        return Ops(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))

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
    def value_rank(self) -> tuple[np.ndarray, np.ndarray]:
        """Dense rank of each value and the distinct values (sorted)."""
        return dense_rank(self.value)

    @functools.cached_property
    def pid_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Dense index of each pid and the distinct pids (sorted)."""
        rank, distinct = dense_rank(self.pid)
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


def dense_rank(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ranks of ``x`` (equal values, equal ranks) and the distinct values in order."""
    perm = np.argsort(x)
    ordered = x[perm]
    new = np.ones(ordered.shape[0], dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    rank = np.empty(ordered.shape[0], dtype=np.int64)
    rank[perm] = np.cumsum(new) - 1
    return rank, ordered[new]


def process_name(pid: int) -> str:
    return "an unrecorded process" if pid == UNKNOWN_PID else f"process {pid}"


def threads_text(ops: Ops, idx: list[int]) -> str:
    tids = [int(ops.tid[i]) for i in idx if ops.tid_known[i]]
    if len(tids) < len(idx):
        return ""
    if len(set(tids)) == 1:
        return f" (all on thread {tids[0]})" if len(tids) > 2 else f" (both on thread {tids[0]})"
    return f" (threads {join_words([str(t) for t in tids])})"


# --- duplicates ----------------------------------------------------------------------


def duplicates(ops: Ops, per_process: bool) -> tuple[dict[str, int], list[Witness]]:
    n = len(ops)
    counts = {"duplicate_values": 0, "duplicate_extra_returns": 0,
              "duplicate_extra_same_process": 0, "duplicate_extra_cross_process": 0,
              "duplicate_extra_unknown_process": 0}
    if n < 2:
        return counts, []
    # Only values returned more than once matter: most histories have none or few,
    # so the sorting below runs on those operations alone.
    rank = ops.value_rank[0]
    within = np.flatnonzero(np.bincount(rank)[rank] > 1)  # indexes into ops
    if not within.shape[0]:
        return counts, []
    full, ops = ops, ops.take(within) if within.shape[0] < n else ops
    n = len(ops)
    value_rank = ops.value_rank[0]
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

    # A value any of whose holders has no recorded pid: neither same- nor
    # cross-process can be claimed for its repeats.
    unknown_group = pid_values[group_pid] == UNKNOWN_PID
    value_unknown = np.bincount(group_value, weights=unknown_group,
                                minlength=value_size.shape[0]) > 0
    in_unknown = value_unknown[group_value]
    same_extra = np.where(in_unknown, 0, same_extra)
    cross = np.where(in_unknown, 0, cross)

    counts["duplicate_values"] = int((value_size > 1).sum())
    counts["duplicate_extra_returns"] = int((value_size - 1).sum())
    counts["duplicate_extra_same_process"] = int(same_extra.sum())
    counts["duplicate_extra_cross_process"] = int(cross.sum())
    counts["duplicate_extra_unknown_process"] = int(
        np.where(value_unknown, value_size - 1, 0).sum())
    if counts["duplicate_extra_same_process"] or counts["duplicate_extra_cross_process"]:
        pids = pid_values
        size = pids.shape[0]
        same_by = np.bincount(group_pid, weights=same_extra, minlength=size).astype(np.int64)
        cross_by = np.bincount(group_pid, weights=cross, minlength=size).astype(np.int64)
        ranked = np.argsort(-(same_by + cross_by), kind="stable")[:_PIDS_IN_COUNTS]
        for k in ranked.tolist():
            label = str(int(pids[k]))
            if same_by[k]:
                counts[f"duplicate_extra_same_process[pid={label}]"] = int(same_by[k])
            if cross_by[k]:
                counts[f"duplicate_extra_cross_process[pid={label}]"] = int(cross_by[k])

    # Witnesses are told from all the operations (who got the value below, too).
    witnesses: list[Witness] = []
    for g in np.flatnonzero(group_size > 1)[:WITNESSES_PER_KIND].tolist():
        idx = within[order[starts[g]: starts[g] + min(int(group_size[g]), 5)]].tolist()
        witnesses.append(_same_process_witness(full, idx, per_process))
    cross_values = np.flatnonzero((groups_per_value > 1) & ~value_unknown)[:WITNESSES_PER_KIND]
    if cross_values.size:
        first_group = np.searchsorted(group_value, cross_values)
        for g in first_group.tolist():
            idx = [int(within[order[starts[g]]]), int(within[order[starts[g + 1]]])]
            witnesses.append(_cross_process_witness(full, idx, per_process))
    return counts, witnesses


def _same_process_witness(ops: Ops, idx: list[int], per_process: bool) -> Witness:
    idx = sorted(idx, key=lambda i: (int(ops.invoke[i]), int(ops.op_id[i])))
    value, pid = int(ops.value[idx[0]]), int(ops.pid[idx[0]])
    ids = [str(int(ops.op_id[i])) for i in idx]
    if any(int(ops.pid[i]) == UNKNOWN_PID for i in idx):
        return _unknown_process_witness(ops, idx, value)
    where = process_name(pid)
    if len(idx) == 2:
        a, b = idx
        overlap = min(int(ops.complete[a]), int(ops.complete[b])) - int(ops.invoke[b])
        if overlap > 0:
            sentence = (f"requests {ids[0]} and {ids[1]} overlapped for {duration_text(overlap)} "
                        f"in {where}{threads_text(ops, idx)}; both got {value}")
        else:
            sentence = (f"request {ids[0]} completed {duration_text(-overlap)} before request "
                        f"{ids[1]} was sent, both in {where}{threads_text(ops, idx)}; "
                        f"both got {value}")
    else:
        sentence = f"requests {join_words(ids)} all got {value} in {where}{threads_text(ops, idx)}"
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


def _unknown_process_witness(ops: Ops, idx: list[int], value: int) -> Witness:
    ids = [str(int(ops.op_id[i])) for i in idx]
    sentence = (f"requests {join_words(ids)} all got {value}" if len(idx) > 2 else
                f"requests {ids[0]} and {ids[1]} both got {value}")
    sentence += ("; the history does not record which server process answered, so whether "
                 "they came from one process or several is unknown")
    return Witness(
        "duplicate",
        sentence,
        tuple(int(ops.op_id[i]) for i in idx),
        {"scope": "unknown-process", "value": value, "pid": None,
         "ops": [ops.detail(i) for i in idx]},
    )


def _cross_process_witness(ops: Ops, idx: list[int], per_process: bool) -> Witness:
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


# --- real-time order -----------------------------------------------------------------


def real_time_order(ops: Ops, per_process: bool) -> tuple[int, list[Witness]]:
    """Operations B for which some A of B's counter completed before B was invoked, with
    A.value >= B.value. One sort by completion, a running maximum, a binary search."""
    n = len(ops)
    if n < 2:
        return 0, []
    by_time = np.argsort(ops.complete)
    # How many completions (of any counter) come strictly before each invoke.
    completed_before = np.searchsorted(ops.complete[by_time], ops.invoke, side="left")
    if per_process:
        # Keys per counter: its index times a span, plus the rank inside it.
        gi = ops.groups(per_process)
        span = np.int64(n + 1)
        complete_rank = np.empty(n, dtype=np.int64)
        complete_rank[by_time] = np.arange(n)
        complete_key = gi * span + complete_rank
        by_complete = np.argsort(complete_key)
        floor = gi * span
        value_key = floor + ops.value_rank[0]
        # The last completion of B's counter before B was invoked.
        before = np.searchsorted(complete_key[by_complete], floor + completed_before,
                                 side="left") - 1
        del complete_rank, complete_key
    else:
        # One counter: a completion's key is its rank, and the ranks sorted are 0..n-1.
        by_complete, floor, value_key = by_time, None, ops.value_rank[0]
        before = completed_before - 1
    del completed_before
    running_max = value_key[by_complete]
    np.maximum.accumulate(running_max, out=running_max)
    after_some = before >= 0
    safe = np.maximum(before, 0, out=before)  # in place: ``before`` is not needed again
    best = running_max[safe]
    violated = best >= value_key
    violated &= after_some
    if floor is not None:
        violated &= best >= floor
    del best, after_some, floor
    count = int(violated.sum())
    witnesses = []
    late = np.flatnonzero(violated)
    late = late[np.lexsort((ops.op_id[late], ops.invoke[late]))][:WITNESSES_PER_KIND]
    for b in late.tolist():
        # The operation holding the running maximum: the last one up to safe[b] with it.
        at = int(safe[b])
        upto = by_complete[: at + 1]
        a = int(upto[np.flatnonzero(value_key[upto] == running_max[at])[-1]])
        gap = int(ops.invoke[b]) - int(ops.complete[a])
        pa, pb = int(ops.pid[a]), int(ops.pid[b])
        if pa == pb == UNKNOWN_PID:
            where = ""
        elif per_process or pa == pb:
            where = f" (both in {process_name(pa)})"
        else:
            where = f" ({process_name(pa)} and {process_name(pb)})"
        va, vb = int(ops.value[a]), int(ops.value[b])
        sentence = (f"request {int(ops.op_id[a])} got {va} and completed "
                    f"{duration_text(gap)} before request {int(ops.op_id[b])} was sent, "
                    f"yet request {int(ops.op_id[b])} got "
                    f"{vb}{' too' if va == vb else ''}{where}")
        witnesses.append(Witness(
            "real-time-order",
            sentence,
            (int(ops.op_id[a]), int(ops.op_id[b])),
            {"earlier": ops.detail(a), "later": ops.detail(b), "gap_ns": gap},
        ))
    return count, witnesses


def duplicate_finding(counts: dict[str, int], noun: str) -> str:
    """One sentence for ``duplicates``' counts: how many values repeated, and where.

    Same- and cross-process repeats are named only for values whose every holder
    has a recorded server pid; the rest are said to come from an unrecorded process.
    """
    parts = []
    for key, where in (("duplicate_extra_same_process", "within a process"),
                       ("duplicate_extra_cross_process", "across processes"),
                       ("duplicate_extra_unknown_process", "in an unrecorded process")):
        if counts.get(key):
            parts.append(f"{counts[key]:,} {where}")
    if counts.get("duplicate_extra_unknown_process") == counts.get("duplicate_extra_returns"):
        parts = ["the history records no server process for them"]
    return (f"{plural(counts['duplicate_values'], noun)} returned more than once "
            f"({counts['duplicate_extra_returns']:,} extra: {', '.join(parts)})")


# --- unique ids ----------------------------------------------------------------------


@guarded("unique-ids")
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
    ops = Ops.of(table, mask)
    counts, witnesses = duplicates(ops, per_process)
    counts = {"ids": len(ops), **counts}
    if not len(ops):
        return Verdict("unique-ids", "unknown", counts,
                       reason="no ok operation returned a value")
    if counts["duplicate_values"]:
        return Verdict("unique-ids", "no", counts, tuple(witnesses),
                       f"{plural(counts['duplicate_values'], 'id')} handed out more than once "
                       f"({counts['duplicate_extra_returns']:,} extra)")
    return Verdict("unique-ids", "yes", counts, reason=f"{len(ops):,} ids, all distinct")


# --- registry ------------------------------------------------------------------------


def _unique_ids(table: HistoryTable, context: CheckContext) -> Verdict:
    return check_unique_ids(table, per_process=context.per_process)


CHECKERS: dict[str, Checker] = {"unique-ids": _unique_ids}
SCENARIO_CHECKERS: dict[str, list[str]] = {}
#: The ops a checker reads; a history with any other op is refused rather than
#: half-checked. A checker not named here reads every op.
CHECKER_OPS: dict[str, tuple[str, ...]] = {"counter": ("incr", "read")}
_OPS_COLUMNS = ("op_id", "op", "outcome", "value", "invoke_ns", "complete_ns", "server_pid",
                "server_tid")
#: The history columns a checker reads (what ``Ops`` holds); ``read_history`` keeps
#: only these for ``racelab check``. A checker not named here reads every column.
CHECKER_COLUMNS: dict[str, tuple[str, ...]] = {"counter": _OPS_COLUMNS,
                                               "unique-ids": _OPS_COLUMNS}
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
