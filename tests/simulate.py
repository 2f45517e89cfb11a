"""Synthetic counter histories: concurrent clients around an atomic increment.

Each client sends one request at a time (think time, then the request); every
request that takes effect does so at one instant strictly inside its
invoke..complete interval, and the counter hands out numbers in the order of
those instants. The result is a correct (linearizable) history, which the
tests and the benchmark then damage on purpose.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from reports.history.table import FAIL, INFO, OK, HistoryTable

__all__ = ["Simulated", "simulate_counter", "table_from_arrays"]


@dataclasses.dataclass
class Simulated:
    """A simulated history as arrays (one entry per op) and the store's final state."""

    arrays: dict[str, np.ndarray]
    final: dict[str, Any]

    def table(self) -> HistoryTable:
        return table_from_arrays(self.arrays)


def simulate_counter(
    n_ops: int,
    *,
    clients: int = 8,
    pids: int = 1,
    per_process: bool = False,
    fail_rate: float = 0.0,
    info_rate: float = 0.0,
    seed: int = 0,
) -> Simulated:
    """Simulate ``n_ops`` increments by ``clients`` concurrent clients.

    Args:
        n_ops: operations in the history.
        clients: concurrent clients (each strictly sequential).
        pids: server processes answering (pids 1001, 1002, ...).
        per_process: each process has its own counter (else one shared counter).
        fail_rate: share of requests that fail without effect.
        info_rate: share of requests with unknown outcome (half of them take effect).
        seed: random seed.

    Returns:
        The history's arrays and ``final.json``-style final state.
    """
    rng = np.random.default_rng(seed)
    clients = max(1, min(clients, n_ops)) if n_ops else 1
    per_client = -(-n_ops // clients) if n_ops else 0
    think = rng.integers(0, 20_000, size=(clients, per_client))
    latency = rng.integers(2, 60_000, size=(clients, per_client))
    start = rng.integers(0, 50_000, size=(clients, 1))
    invoke = start + np.cumsum(think + latency, axis=1) - latency
    complete = invoke + latency
    instant = invoke + 1 + (rng.random((clients, per_client)) * (latency - 1)).astype(np.int64)
    client = np.repeat(np.arange(clients), per_client)
    invoke, complete, instant = invoke.ravel(), complete.ravel(), instant.ravel()
    order = np.argsort(invoke, kind="stable")[:n_ops]  # the first n_ops sent, in send order
    client, invoke, complete = client[order], invoke[order], complete[order]
    instant = instant[order]

    n = invoke.shape[0]
    roll = rng.random(n)
    outcome = np.full(n, OK, dtype=np.int8)
    outcome[roll < fail_rate + info_rate] = INFO
    outcome[roll < fail_rate] = FAIL
    applied = (outcome == OK) | ((outcome == INFO) & (rng.random(n) < 0.5))
    pid = 1001 + rng.integers(0, max(1, pids), size=n)
    tid = 7 + rng.integers(0, 4, size=n)
    group = pid if per_process else np.zeros(n, dtype=np.int64)
    value = np.zeros(n, dtype=np.int64)
    idx = np.flatnonzero(applied)
    by_instant = idx[np.lexsort((rng.random(idx.shape[0]), instant[idx], group[idx]))]
    g = group[by_instant]
    first = np.ones(g.shape[0], dtype=bool)
    first[1:] = g[1:] != g[:-1]
    position = np.arange(g.shape[0])
    group_start = np.maximum.accumulate(np.where(first, position, 0))
    value[by_instant] = position - group_start + 1
    ok = outcome == OK
    arrays = {
        "op_id": np.arange(n, dtype=np.int64),
        "client": client.astype(np.int32),
        "outcome": outcome,
        "value": np.where(ok, value, 0),
        "value_known": ok,
        "invoke_ns": invoke.astype(np.int64),
        "complete_ns": complete.astype(np.int64),
        "server_pid": np.where(ok, pid, 0),
        "server_pid_known": ok,
        "server_tid": np.where(ok, tid, 0),
        "server_tid_known": ok,
        "arrival_ns": np.where(ok, instant - 1, 0),
        "departure_ns": np.where(ok, instant, 0),
    }
    served = {int(p): int((applied & (pid == p)).sum()) for p in np.unique(pid).tolist()}
    if per_process:
        states = [{"pid": p, "value": s, "served": s, "url": "http://127.0.0.1:1"}
                  for p, s in served.items()]
    else:
        states = [{"pid": p, "value": int(applied.sum()), "served": s, "url": "http://127.0.0.1:1"}
                  for p, s in served.items()]
    final = {"available": True, "reason": "", "per_process": per_process, "states": states}
    return Simulated(arrays, final)


def table_from_arrays(arrays: dict[str, np.ndarray]) -> HistoryTable:
    """A ``HistoryTable`` from the arrays ``simulate_counter`` makes (no text parsing)."""
    n = arrays["op_id"].shape[0]
    zeros = np.zeros(n, dtype=np.int64)
    no = np.zeros(n, dtype=bool)
    clients = int(arrays["client"].max()) + 1 if n else 0
    return HistoryTable(
        op_id=arrays["op_id"],
        client=arrays["client"],
        client_names=tuple(f"w0-u{i}" for i in range(clients)),
        op=np.zeros(n, dtype=np.int32),
        op_names=("incr",),
        outcome=arrays["outcome"],
        value=arrays["value"],
        value_known=arrays["value_known"],
        invoke_ns=arrays["invoke_ns"],
        complete_ns=arrays["complete_ns"],
        complete_known=np.ones(n, dtype=bool),
        server_pid=arrays["server_pid"],
        server_pid_known=arrays["server_pid_known"],
        server_tid=arrays["server_tid"],
        server_tid_known=arrays["server_tid_known"],
        arrival_ns=arrays.get("arrival_ns", zeros),
        arrival_known=arrays.get("value_known", no),
        departure_ns=arrays.get("departure_ns", zeros),
        departure_known=arrays.get("value_known", no),
        url=np.zeros(n, dtype=np.int32),
        url_names=("http://127.0.0.1:1",),
        burst=zeros,
        burst_known=no,
        error=np.full(n, "", dtype=object),
        source="simulated",
    )
