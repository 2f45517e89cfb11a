"""Whether the processes that answered shared one state or each had a copy, from the evidence.

Two mistakes repeat numbers across processes, and they need different fixes:

- **separate copies**: each process keeps its own state (a module global under
  several workers). Each process's values then run through a sequence of their
  own, with no gaps beyond what its requests of unknown outcome may have taken,
  and each worker's final value counts only its own increments, so the workers
  end apart;
- **one shared state, updated in two steps** (a Redis ``GET`` then ``SET``, a
  ``SELECT`` then ``UPDATE``): a process's values skip over the numbers the other
  processes were given, and every worker reads the same final value, more than
  any one of them was asked for.

``sharing(entry, table)`` weighs that evidence (the history's values per server
process for the scenarios whose values are a sequence: counter, ids, tickets;
each worker's final value) and says ``shared``, ``separate`` or, when neither
tells, nothing. For racelab's own app the store's nature is known and stands in
where the evidence is silent; for a foreign app (``--app``, ``probe``,
``check``) nothing stands in: the report then says that it cannot tell.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from demo_server.served.config import PER_PROCESS_STORES
from reports.history.table import INFO, OK

if TYPE_CHECKING:
    from reports.history.table import HistoryTable

__all__ = ["GIVEN", "SEPARATE", "SEQUENCE_CHECKERS", "SHARED", "sharing", "sharing_state"]

SHARED = "shared"
SEPARATE = "separate"
#: The source of a sharing the user stated (``racelab check --per-process``): it stands.
GIVEN = "given"
#: The checkers whose ops' values are a sequence (a counter's numbers, order ids, seats).
SEQUENCE_CHECKERS = {"counter": ("incr",), "ids": ("order",), "tickets": ("buy",)}
#: Values a process must have returned before its sequence says anything.
_MIN_VALUES = 5
#: Gaps (beyond what unknown outcomes explain) per value returned that mean "shared".
_SHARED_GAPS = 0.05
#: Gaps per value at most for "separate".
_SEPARATE_GAPS = 0.01


def _checker(entry: Mapping[str, Any]) -> str:
    config = entry.get("config") or {}
    if config.get("app") or config.get("url"):
        return str(config.get("check") or "counter")
    return str(config.get("scenario") or "counter")


def _own_app(entry: Mapping[str, Any]) -> bool:
    config = entry.get("config") or {}
    return bool(config.get("store")) and not (config.get("app") or config.get("url"))


def _from_history(table: HistoryTable, ops: tuple[str, ...]) -> dict[str, Any] | None:
    """What the values per process say, or None when too few processes or values."""
    rows = np.zeros(len(table), dtype=bool)
    for op in ops:
        rows |= table.op_is(op)
    ok = rows & (table.outcome == OK) & table.value_known & table.server_pid_known
    info = int((rows & (table.outcome == INFO)).sum())
    pids, values = table.server_pid[ok], table.value[ok]
    found = np.unique(pids)
    counted = 0
    gaps = 0
    values_seen = 0
    for pid in found.tolist():
        mine = np.unique(values[pids == pid])
        if mine.shape[0] < _MIN_VALUES:
            continue
        counted += 1
        values_seen += int(mine.shape[0])
        gaps += int(mine[-1] - mine[0] + 1 - mine.shape[0])
    if counted < 2:
        return None
    unexplained = max(0, gaps - info)
    facts = {"processes": counted, "values": values_seen, "gaps": gaps,
             "unknown_outcomes": info}
    if unexplained >= 10 and unexplained > _SHARED_GAPS * values_seen:
        return {**facts, "state": SHARED, "why": (
            f"each process's values skip over numbers other processes were given ({gaps:,} "
            f"numbers missing within the {counted} processes' own ranges, beside "
            f"{values_seen:,} values they returned"
            + (f"; {info:,} requests of unknown outcome explain at most that many" if info
               else "") + ")")}
    # Requests of unknown outcome explain a few gaps of a copy per process, never most of them.
    if gaps <= _SEPARATE_GAPS * values_seen + min(info, _SHARED_GAPS * values_seen):
        return {**facts, "state": SEPARATE, "why": (
            "each process's values run through a sequence of their own ("
            + (f"only {gaps:,} numbers missing" if gaps else "no number missing")
            + f" within the {counted} processes' own ranges, beside {values_seen:,} values "
            "they returned)")}
    return {**facts, "state": None}


def _ok_by_pid(table: HistoryTable | None, entry: Mapping[str, Any],
               ops: tuple[str, ...]) -> dict[int, int] | None:
    if table is None:
        return None
    rows = np.zeros(len(table), dtype=bool)
    for op in ops:
        rows |= table.op_is(op)
    done = rows & np.isin(table.outcome, (OK, INFO)) & table.server_pid_known
    found, counts = np.unique(table.server_pid[done], return_counts=True)
    return dict(zip(found.tolist(), counts.tolist(), strict=True))


def _from_final(entry: Mapping[str, Any], table: HistoryTable | None,
                checker: str) -> dict[str, Any] | None:
    """What each worker's final value says, or None when fewer than two workers answered."""
    final = entry.get("final")
    if not isinstance(final, Mapping) or not final.get("available", True):
        return None
    states = [s for s in final.get("states") or () if isinstance(s, Mapping)
              and isinstance(s.get("pid"), int) and isinstance(s.get("value"), int)
              and not isinstance(s.get("value"), bool)]
    by_pid = {int(s["pid"]): int(s["value"]) for s in states}
    if len(by_pid) < 2:
        return None
    values = sorted(set(by_pid.values()))
    if len(values) > 1:
        shown = ", ".join(f"{v:,}" for v in values[:4]) + (" ..." if len(values) > 4 else "")
        return {"state": SEPARATE, "why": f"the {len(by_pid)} workers ended with different "
                                          f"values ({shown})"}
    value = values[0]
    asked = _ok_by_pid(table, entry, SEQUENCE_CHECKERS.get(checker, ()))
    if checker == "counter" and asked and value > max(asked.get(p, 0) for p in by_pid):
        most = max(asked.get(p, 0) for p in by_pid)
        return {"state": SHARED, "why": (
            f"every one of the {len(by_pid)} workers read the same final value, {value:,}, "
            f"more than any one of them was asked for (at most {most:,})")}
    return {"state": None, "why": f"the {len(by_pid)} workers read the same final value, "
                                  f"{value:,}"}


def sharing(entry: Mapping[str, Any], table: HistoryTable | None = None) -> dict[str, Any]:
    """Whether the processes shared one state, and why: ``{"state", "why", "source"}``.

    Args:
        entry: a results.json experiment entry (its config and final state).
        table: its history, when at hand.

    Returns:
        ``state`` is ``shared``, ``separate`` or None (cannot tell); ``source`` is
        ``history``, ``final``, ``store`` (racelab's own store, known), ``given``
        (the user said so) or ``""``. With no history, an entry's stored ``sharing`` is
        returned as it is; a given one always is.
    """
    stored = entry.get("sharing")
    if isinstance(stored, Mapping) and (table is None or stored.get("source") == GIVEN):
        return dict(stored)
    checker = _checker(entry)
    history = None
    if table is not None and checker in SEQUENCE_CHECKERS:
        history = _from_history(table, SEQUENCE_CHECKERS[checker])
    final = _from_final(entry, table, checker)
    said = [(name, found) for name, found in (("history", history), ("final", final))
            if found is not None and found.get("state")]
    states = {found["state"] for _, found in said}
    if len(states) == 1:
        name, found = said[0]
        why = "; ".join(f["why"] for _, f in said)
        return {"state": found["state"], "why": why, "source": name}
    if len(states) > 1:
        return {"state": None, "source": "", "why": (
            "the history and the final state disagree: " + "; ".join(
                f"{name}: {found['why']}" for name, found in said))}
    if _own_app(entry):
        store = str((entry.get("config") or {}).get("store"))
        own = SEPARATE if store in PER_PROCESS_STORES else SHARED
        return {"state": own, "source": "store", "why": (
            f"the {store} store keeps " + ("a copy in each process" if own == SEPARATE
                                           else "one state every process reads and writes"))}
    quiet = [f["why"] for f in (history, final) if f is not None and f.get("why")]
    return {"state": None, "source": "", "why": (
        "neither the history nor the final state tells one shared state from a copy per "
        "process" + (f" ({'; '.join(quiet)})" if quiet else ""))}


def sharing_state(entry: Mapping[str, Any], table: HistoryTable | None = None) -> str | None:
    """``shared``, ``separate`` or None: ``sharing(entry, table)["state"]``."""
    state = sharing(entry, table).get("state")
    return str(state) if state else None
