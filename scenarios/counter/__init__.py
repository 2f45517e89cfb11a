"""The counter scenario: the original question's increment-and-return.

A client calls ``GET /incr``; the server adds one to the counter in the
configured store and answers the new value (``/`` answers it as plain text, as
the question's app does). Everything the counter means lives here:

- the **operation** a swarm user sends (``OPERATIONS``);
- the **server side**: the routes, over the counter stores of
  ``scenarios.counter.stores`` and ``scenarios.counter.external`` (``global`` is the
  question's ``SomeObj`` verbatim);
- the **checker** ``check_counter``: duplicates and real-time order (shared
  with every scenario, ``reports.history.checkers``), skipped numbers (minus those that
  operations of unknown outcome may have taken), and lost updates: the final
  value below the ``ok`` increments (Jepsen's counter bounds ``ok <= final <=
  ok + info``) or below the server-side ``served`` count; a final value above
  ``ok + info`` means increments the history does not account for;
- the **sentences** a report uses for each store.

The checker's numpy code imports numpy and ``reports`` inside its functions:
server workers import this module for the routes and never pay for them.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from scenarios.base import Scenario, Served, ServerSide
from scenarios.operation import Operation, ValueSpec

if TYPE_CHECKING:
    import numpy as np
    from flask import Flask

    from demo_server.served.config import ServerConfig
    from reports.history.checkers import CheckContext, Ops
    from reports.history.final import FinalState
    from reports.history.table import HistoryTable
    from reports.history.verdict import Verdict, Witness

# The checkers below import numpy and reports.history inside their functions: a server
# worker imports this module for its routes and never checks a history.
__all__ = ["OPERATIONS", "SCENARIO", "UPDATES", "check_counter"]

OPERATIONS = (Operation(name="incr", method="GET", path="/incr", value=ValueSpec("json", "value")),)


class _CounterSide:
    """The counter's ``/state`` and ``/reset`` over one store."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def state(self) -> dict[str, Any]:
        return {"value": self.store.value(), **self.store.update_state()}

    def reset(self) -> None:
        self.store.reset()
        self.store.reset_stats()


def serve(app: Flask, config: ServerConfig, served: Served) -> ServerSide:
    """Add ``/`` and ``/incr`` to the app, over the configured counter store."""
    from flask import Response, jsonify

    from scenarios.counter.stores import make_store

    store = make_store(config)
    store.init_app(app)
    app.extensions["racelab_store"] = store
    increment = store.update_form(config, "incr")

    @app.get("/")
    def index() -> str:
        # The original question's endpoint: the number as text.
        value = increment()
        served.add()
        return str(value)

    @app.route("/incr", methods=["GET", "POST"])
    def incr() -> Response:
        arrival_ns = time.monotonic_ns()
        arrival_wall = time.time()
        value = increment()
        served.add()
        body: dict[str, Any] = {
            "value": value,
            "pid": os.getpid(),
            "tid": threading.get_ident(),
            "arrival_ns": arrival_ns,
            "arrival_wall": arrival_wall,
            **app.config["RACELAB_IDENTITY"],
        }
        body["departure_ns"] = time.monotonic_ns()
        body["departure_wall"] = time.time()
        return jsonify(body)

    return _CounterSide(store)


def _prepare(config: ServerConfig) -> None:
    from scenarios.counter.stores import store_class

    store_class(config.store).prepare(config)


def _cleanup(config: ServerConfig) -> None:
    from scenarios.counter.stores import store_class

    store_class(config.store).cleanup(config)


# --- skipped numbers -----------------------------------------------------------------


def _skipped(
    ops: Ops, per_process: bool, explainers: np.ndarray
) -> tuple[dict[str, int], list[Witness]]:
    """Numbers in 1..max of each counter nobody got; ``explainers``: pids of info ops."""
    import numpy as np

    from reports.history.checkers import UNKNOWN_PID, WITNESSES_PER_KIND, plural, process_name
    from reports.history.verdict import Witness

    counts = {"skipped_values": 0, "skipped_explained_by_info": 0, "skipped_unexplained": 0}
    if not len(ops):
        return counts, []
    value_rank, distinct = ops.value_rank
    if per_process:
        group = ops.groups(per_process)
        order = np.argsort(group * np.int64(distinct.shape[0]) + value_rank)
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
        keys = ops.pid_index[1][g[first]]

        def holder(k: int) -> int:
            return int(index[k])
    else:
        # One counter: its distinct values, sorted, are all the sort needed.
        v = distinct[np.searchsorted(distinct, 1):]
        if not v.size:
            return counts, []
        below = np.empty_like(v)
        below[0], below[1:] = 0, v[:-1]
        gap = v - below - 1
        del below
        first = np.zeros(v.shape[0], dtype=bool)
        first[0] = True
        missing = np.array([int(v[-1]) - v.shape[0]], dtype=np.int64)
        keys = np.zeros(1, dtype=np.int64)

        def holder(k: int) -> int:  # the first operation, in history order, that got v[k]
            return int(np.flatnonzero(ops.value == v[k])[0])
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
        note = (f"; {plural(int(explainers.shape[0]), 'request')} with unknown outcome can explain "
                f"at most {explained:,} of the {total:,} missing numbers" if explained else
                "; no request with unknown outcome can explain it")
        for k in np.flatnonzero(gap > 0)[:WITNESSES_PER_KIND].tolist():
            low, high = int(v[k]) - int(gap[k]), int(v[k]) - 1
            after = holder(k)
            span = str(low) if low == high else f"{low} to {high}"
            pid = int(ops.pid[after]) if per_process else None
            where = f" in {process_name(pid)}" if pid is not None else ""
            involved = [after]
            if first[k]:
                sentence = (f"nobody got {span}{where}: the smallest number returned was "
                            f"{high + 1}, to request {int(ops.op_id[after])}")
            else:
                before = holder(k - 1)
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



# --- lost updates --------------------------------------------------------------------


def _lost_updates(
    final: FinalState, ok_pids: np.ndarray, info_pids: np.ndarray
) -> tuple[dict[str, int], list[Witness]]:
    """Compare the final state with the ok and info increments (pids: UNKNOWN_PID if unknown)."""
    from reports.history.checkers import UNKNOWN_PID, WITNESSES_PER_KIND, plural, process_name
    from reports.history.verdict import Witness

    counts = {"lost_updates": 0, "lost_served": 0, "final_excess": 0}
    witnesses: list[Witness] = []
    if final.per_process:
        pool = int((info_pids == UNKNOWN_PID).sum())
        rows = []
        for state in final.states:
            if state.pid is None:
                continue
            rows.append((state, int((ok_pids == state.pid).sum()),
                         int((info_pids == state.pid).sum()) + pool, process_name(state.pid)))
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
                f"{who} {plural(ok, 'increment')} as ok, yet {subject} ends at {state.value:,}: "
                f"at least {plural(lost, 'update was', 'updates were')} lost"), (), details))
        if lost_served and len(witnesses) < WITNESSES_PER_KIND:
            witnesses.append(Witness("lost-update", (
                f"{name if final.per_process else 'the server'} served "
                f"{plural(state.served or 0, 'increment')}, yet {subject} ends at {state.value:,}: "
                f"{plural(lost_served, 'update was', 'updates were')} lost inside the server"),
                (), details))
        if excess and len(witnesses) < WITNESSES_PER_KIND:
            witnesses.append(Witness("final-too-high", (
                f"{subject} ends at {state.value:,}, but only {plural(ok, 'increment')} succeeded "
                f"and {info:,} had an unknown outcome: {plural(excess, 'increment')} came from "
                "outside this history"), (), details))
    return counts, witnesses


# --- the counter checker -------------------------------------------------------------


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
        the history cannot decide (also when the checker itself fails); ``yes``
        otherwise.
    """
    from reports.history.checkers import guarded

    return guarded("counter")(_check_counter)(table, final, per_process=per_process,
                                              complete=complete)


def _check_counter(table: HistoryTable, final: Any, *, per_process: bool,
                   complete: bool) -> Verdict:
    import numpy as np

    from reports.history.checkers import UNKNOWN_PID, Ops, duplicates, plural, real_time_order
    from reports.history.final import UnreadableFinal, parse_final
    from reports.history.table import FAIL, INFO, OK
    from reports.history.verdict import Verdict

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
    if state is not None and state.cut_short:
        complete = False
    if state is not None and not state.available:
        undecided.append(f"the final state is unavailable: {state.reason}")
        state = None
    if state is not None:
        if isinstance(final, int) and per_process:
            undecided.append("a single final value cannot be compared with per-process counters")
            state = None
        elif state.per_process is not None:
            per_process = state.per_process

    def pids(mask: np.ndarray) -> np.ndarray:  # the server pid of these increments
        rows = np.flatnonzero(incr)[mask]
        return np.where(table.server_pid_known[rows], table.server_pid[rows], UNKNOWN_PID)

    has_value = ok_mask & table.value_known[incr]
    ops = Ops.of(table, np.flatnonzero(incr)[has_value])
    # An ok increment without a value took a number nobody saw, like an info one.
    explainers = pids(info_mask | (ok_mask & ~table.value_known[incr]))

    dup_counts, dup_witnesses = duplicates(ops, per_process)
    counts["distinct_values"] = int(ops.value_rank[1].shape[0]) if len(ops) else 0
    counts.update(dup_counts)
    scoped = ops
    if per_process:
        unattributed = int((ops.pid == UNKNOWN_PID).sum())
        if unattributed:
            counts["ok_without_pid"] = unattributed
            undecided.append(f"{plural(unattributed, 'ok operation')} without a server pid cannot "
                             "be checked per process")
            scoped = ops.take(ops.pid != UNKNOWN_PID)
    skip_counts, skip_witnesses = _skipped(scoped, per_process, explainers)
    counts.update(skip_counts)
    rt_count, rt_witnesses = real_time_order(scoped, per_process)
    counts["real_time_violations"] = rt_count
    lost_witnesses: list[Witness] = []
    if state is not None:
        if state.per_process is None:
            state = dataclasses.replace(state, per_process=per_process)
        lost_counts, lost_witnesses = _lost_updates(state, pids(ok_mask), pids(info_mask))
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
        f"{plural(total, 'increment')} ({counts['ok']:,} ok, {counts['info']:,} unknown): "
        "no number repeated, "
        + (f"{plural(explained, 'missing number')}, all explained by unknown outcomes"
           if explained else "none skipped")
        + (", none lost" if state is not None else "") + ", all in real-time order"))


def _findings(counts: dict[str, int]) -> list[str]:
    from reports.history.checkers import duplicate_finding, plural

    out = []
    if counts.get("duplicate_values"):
        out.append(duplicate_finding(counts, "number"))
    if counts.get("skipped_unexplained"):
        out.append(f"{plural(counts['skipped_unexplained'], 'number')} skipped")
    if counts.get("lost_updates"):
        out.append(f"{plural(counts['lost_updates'], 'update')} lost")
    if counts.get("lost_served") and counts.get("lost_served") != counts.get("lost_updates"):
        out.append(f"{plural(counts['lost_served'], 'served increment')} lost inside the server")
    if counts.get("final_excess"):
        out.append(f"the final value exceeds the history by {counts['final_excess']:,}")
    if counts.get("real_time_violations"):
        out.append(f"{plural(counts['real_time_violations'], 'operation')} out of real-time order")
    return out



def _checker(table: HistoryTable, context: CheckContext) -> Verdict:
    return check_counter(table, context.final, per_process=context.per_process,
                         complete=context.complete)


def _register() -> None:
    from reports.history.checkers import register

    register("counter", _checker)


_ALL_UPDATES = ("atomic", "read-write", "locked", "optimistic")
#: The updates of each shared store (its Store class says the same: ``Store.updates``).
UPDATES = {"sqlite": _ALL_UPDATES, "redis": _ALL_UPDATES, "postgres": _ALL_UPDATES,
           "memcached": ("atomic", "read-write", "optimistic")}

#: How each (store, update) changes the counter, for a report.
_UPDATE_SENTENCES = {
    "sqlite:read-write": "The sqlite store reads the counter with SELECT, then writes back the "
                         "value plus one with UPDATE, as Python's sqlite3 module runs them by "
                         "default (the read outside any transaction): two requests can read "
                         "the same value, and one write is lost.",
    "sqlite:locked": "The sqlite store reads and writes the counter inside BEGIN IMMEDIATE: the "
                     "write lock is taken before the read, so no other request reads in "
                     "between.",
    "sqlite:optimistic": "The sqlite store writes the value plus one only WHERE value is still "
                         "what it read, and reads again when no row matched.",
    "redis:read-write": "The redis store reads the counter with GET and writes back the value "
                        "plus one with SET: every process shares the one key, yet two requests "
                        "can read the same value, and one write is lost.",
    "redis:locked": "The redis store takes redis-py's lock (SET NX with a token and an expiry) "
                    "around its GET and SET: one request at a time reads and writes.",
    "redis:optimistic": "The redis store WATCHes the key, reads it, and writes it in MULTI/EXEC: "
                        "if another client wrote it in between, EXEC does nothing and the "
                        "increment is tried again.",
    "postgres:read-write": "The postgres store SELECTs the value, then UPDATEs it to the value "
                           "read plus one, in one transaction at PostgreSQL's default isolation "
                           "(READ COMMITTED): the transaction does not stop two requests from "
                           "reading the same value, and one write is lost.",
    "postgres:locked": "The postgres store reads with SELECT ... FOR UPDATE: the row stays "
                       "locked until the transaction commits, so the next reader waits for the "
                       "new value.",
    "postgres:optimistic": "The postgres store runs its SELECT and UPDATE at REPEATABLE READ: a "
                           "transaction whose row another one changed fails with a "
                           "serialization error and is tried again.",
    "memcached:read-write": "The memcached store reads the counter with get and writes back the "
                            "value plus one with set: two requests can read the same value, and "
                            "one write is lost.",
    "memcached:optimistic": "The memcached store reads with gets and writes with cas, which "
                            "stores only if nobody wrote since the gets; else it tries again.",
}

_SHARED_IN = {
    "manager": "a multiprocessing.Manager process that every worker connects to",
    "sqlite": "an SQLite file, updated with one UPDATE ... RETURNING statement",
    "postgres": "PostgreSQL, updated in one statement",
    "redis": "Redis, updated with its atomic INCR",
    "memcached": "memcached, updated with its atomic incr",
}

SCENARIO = Scenario(
    name="counter",
    title="increment a shared counter and return the new value",
    operations=OPERATIONS,
    stores=("global", "lock", "manager", "sqlite", "g", "redis", "postgres", "memcached",
            "session"),
    windowed_stores=frozenset({"global", "lock"}),
    checkers=("counter",),
    serve=serve,
    prepare=_prepare,
    cleanup=_cleanup,
    updates=UPDATES,
    store_sentences={
        **_UPDATE_SENTENCES,
        "global": "The global store is the naive module object (self.param += 1; return "
                  "self.param) with nothing keeping two requests apart.",
        "lock": "The lock store guards the read-modify-write with a threading.Lock: safe "
                "between the threads of one process, not between processes.",
        "g": "flask.g lives for one request and shares nothing: every request starts "
             "from zero.",
        "session": "The session store keeps a counter per client session, on the server side.",
        **{store: f"The {store} store keeps the counter outside the app, in {where}, shared "
                  "by every process." for store, where in _SHARED_IN.items()},
    },
    register=_register,
)
