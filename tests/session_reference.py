"""A reference checker of the ``session`` store, a test oracle: isolation and lost updates.

A server-side session keeps one counter per client (per cookie). Seen from a
history, each client's ``incr`` results must read 1, 2, ..., n:

* **isolation breach**: a client receives a number its own increments cannot
  explain: more than it ever asked for, or a gap no unknown request of its
  own accounts for (e.g. its very first answer is 7). Another client's
  counter leaked into its session.
* **lost update**: two requests of one client return the same number. The
  session is loaded when a request starts and saved when it ends; two
  concurrent requests both load n and both save n + 1, so one increment is
  lost (the last write wins).
* **stale read**: a request that started after another of the same client had
  finished returns a smaller number (a save went backwards).

Ops with outcome ``fail`` certainly had no effect; ``info`` ops may have
incremented without telling, which is why gaps up to their number are
allowed. The check is linear in the history (numpy), like every checker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from reports.history.verdict import Verdict, Witness

__all__ = ["check_sessions"]

_CHECKER = "session"
_WITNESSES_PER_KIND = 5
_NEEDED = ("client", "outcome", "value")


def _columns(table: Any) -> dict[str, Any]:
    """Column name -> sequence, from a mapping of columns, rows, or a history CSV path."""
    if isinstance(table, str | Path):  # one reader for every history file
        from reports.history.table import read_history

        return _from_history_table(read_history(Path(table)))
    if hasattr(table, "client_names"):  # reports.history.table.HistoryTable
        return _from_history_table(table)
    if isinstance(table, Mapping):
        return {str(k): table[k] for k in table}
    if hasattr(table, "columns") and hasattr(table, "__getitem__"):  # a DataFrame
        return {str(k): list(table[k]) for k in table.columns}
    rows = list(table) if isinstance(table, Iterable) else []
    names = {k for row in rows for k in row}
    return {name: [row.get(name, "") for row in rows] for name in names}


def _from_history_table(table: Any) -> dict[str, Any]:
    names = np.asarray(table.client_names, dtype=object)
    ops = np.asarray(table.op_names, dtype=object)
    outcomes = np.asarray(("ok", "fail", "info"), dtype=object)  # OK, FAIL, INFO codes
    return {
        "op_id": table.op_id,
        "client": names[table.client] if len(names) else np.asarray([], dtype=object),
        "op": ops[table.op] if len(ops) else np.asarray([], dtype=object),
        "outcome": outcomes[table.outcome],
        "value": np.where(table.value_known, table.value, -1),
        "invoke_ns": table.invoke_ns,
        "complete_ns": np.where(table.complete_known, table.complete_ns, np.iinfo(np.int64).max),
    }


def _ints(values: Any, default: int) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return values.astype(np.int64)
    out = np.full(len(values), default, dtype=np.int64)
    for i, raw in enumerate(values):
        if raw is None or raw == "":
            continue
        try:
            number = float(raw)
        except (TypeError, ValueError):
            continue
        if number == number:  # not NaN
            out[i] = int(number)
    return out


def check_sessions(table: Any) -> Verdict:
    """Check that every client saw its own counter, 1..n, with no repeats.

    Args:
        table: the history: a mapping of column name to values (lists, numpy
            arrays, a DataFrame), an iterable of row mappings, or a path to a
            history CSV. Needs ``client``, ``outcome`` and ``value``; uses
            ``op``, ``op_id``, ``invoke_ns`` and ``complete_ns`` when present.

    Returns:
        ``no`` with witnesses on any isolation breach, lost update or stale
        read; ``unknown`` when there is nothing to judge; ``yes`` otherwise.
    """
    try:
        return _check(_columns(table))
    except Exception as exc:  # a checker never crashes a report
        return Verdict(_CHECKER, "unknown", reason=f"checker failed: {exc!r}")


def _check(cols: dict[str, Any]) -> Verdict:
    missing = [name for name in _NEEDED if name not in cols]
    if missing:
        return Verdict(_CHECKER, "unknown", reason=f"history lacks column(s) {', '.join(missing)}")
    n = len(cols["client"])
    clients = np.asarray([str(c) for c in cols["client"]], dtype=object)
    outcome = np.asarray([str(o) for o in cols["outcome"]], dtype=object)
    op = np.asarray([str(o) for o in cols.get("op", ["incr"] * n)], dtype=object)
    value = _ints(cols["value"], -1)
    op_id = _ints(cols["op_id"], 0) if "op_id" in cols else np.arange(n, dtype=np.int64)
    invoke = _ints(cols["invoke_ns"], 0) if "invoke_ns" in cols else np.arange(n, dtype=np.int64)
    complete = (
        _ints(cols["complete_ns"], 0) if "complete_ns" in cols else np.arange(n, dtype=np.int64)
    )

    incr = op == "incr"
    ok = incr & (outcome == "ok") & (value >= 0)
    info = incr & (outcome == "info")
    counts = {
        "clients": 0,
        "ok": int(ok.sum()),
        "info": int(info.sum()),
        "fail": int((incr & (outcome == "fail")).sum()),
        "lost_updates": 0,
        "isolation_breaches": 0,
        "stale_reads": 0,
    }
    if not ok.any():
        return Verdict(_CHECKER, "unknown", counts=counts, reason="no successful increment")

    witnesses: dict[str, list[Witness]] = {
        "isolation-breach": [],
        "lost-update": [],
        "stale-read": [],
    }

    def witness(kind: str, sentence: str, ids: Iterable[int], **details: Any) -> None:
        if len(witnesses[kind]) < _WITNESSES_PER_KIND:
            witnesses[kind].append(Witness(kind, sentence, tuple(int(i) for i in ids), details))

    # Group by client, each group in invoke order.
    order = np.lexsort((invoke, clients.astype(str)))
    sorted_clients = clients[order]
    bounds = np.flatnonzero(sorted_clients[1:] != sorted_clients[:-1]) + 1
    for group in np.split(order, bounds):
        client = str(clients[group[0]])
        unknown = int(info[group].sum())
        attempts = int(ok[group].sum()) + unknown
        rows = group[ok[group]]
        if rows.size == 0:
            continue
        counts["clients"] += 1
        values = value[rows]

        # Lost updates: a value returned more than once.
        uniq, first_index, times = np.unique(values, return_index=True, return_counts=True)
        repeats = int((times - 1).sum())
        counts["lost_updates"] += repeats
        for v in uniq[times > 1][:_WITNESSES_PER_KIND]:
            same = rows[values == v]
            witness(
                "lost-update",
                f"client {client}: {len(same)} requests all returned {int(v)}; they loaded the "
                f"same saved session, so {len(same) - 1} increment(s) were lost",
                op_id[same],
                client=client, value=int(v), requests=len(same),
            )

        # Isolation: numbers this client's own increments cannot explain.
        too_big = values > attempts
        gaps = int(uniq.max()) - len(uniq)  # numbers in 1..max never returned to it
        breaches = max(int(too_big.sum()), gaps - unknown, 0)
        counts["isolation_breaches"] += breaches
        if breaches:
            culprit = rows[too_big][0] if too_big.any() else rows[first_index[0]]
            witness(
                "isolation-breach",
                f"client {client} received {int(value[culprit])} after {attempts} increment(s) "
                f"of its own ({unknown} unknown): the number came from another client's counter",
                [op_id[culprit]],
                client=client, value=int(value[culprit]), attempts=attempts,
                missing=gaps, unknown=unknown,
            )

        # Stale reads: smaller than a value returned by a request that had already finished.
        by_complete = rows[np.argsort(complete[rows], kind="stable")]
        done_at = complete[by_complete]
        running_max = np.maximum.accumulate(value[by_complete])
        finished_before = np.searchsorted(done_at, invoke[rows], side="left")
        has_prior = finished_before > 0
        prior_max = np.where(has_prior, running_max[np.maximum(finished_before - 1, 0)], -1)
        stale = has_prior & (values < prior_max)
        counts["stale_reads"] += int(stale.sum())
        for row, prior in zip(rows[stale][:_WITNESSES_PER_KIND], prior_max[stale], strict=False):
            witness(
                "stale-read",
                f"client {client} got {int(value[row])} after an earlier request of its own, "
                f"already finished, had returned {int(prior)}",
                [op_id[row]],
                client=client, value=int(value[row]), earlier=int(prior),
            )

    anomalies = counts["lost_updates"] + counts["isolation_breaches"] + counts["stale_reads"]
    counts["anomalies"] = anomalies
    found = tuple(w for kind in witnesses.values() for w in kind)
    if anomalies:
        parts = [
            f"{counts[key]} {label}"
            for key, label in (
                ("isolation_breaches", "isolation breach(es)"),
                ("lost_updates", "lost update(s)"),
                ("stale_reads", "stale read(s)"),
            )
            if counts[key]
        ]
        return Verdict(
            _CHECKER, "no", counts=counts, witnesses=found,
            reason=f"{', '.join(parts)} across {counts['clients']} client(s)",
        )
    return Verdict(
        _CHECKER, "yes", counts=counts,
        reason=f"each of {counts['clients']} client(s) saw its own counter, 1..n, no repeats",
    )
