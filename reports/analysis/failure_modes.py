"""Which mistake an anomalous experiment shows: its failure modes, named from the data.

A checker says *that* a history is wrong; this module says *which* mistake it
shows, from the checker's counts and (when at hand) the history itself:

- ``interleaving``: threads or greenlets of one process read the same value
  (numbers repeated within one server process, or updates lost inside one).
- ``separate-copies``: each process or host has its own copy of the state
  (numbers repeated across processes, each process's values a sequence of its own).
- ``shared-lost-update``: every process reads and writes one shared state (Redis,
  a database), but in two steps: two requests read the same value and one write
  is lost (numbers repeated across processes, each process's values skipping over
  the others'; every worker reads the same final value).
- ``sharing-unknown``: numbers repeated across processes, but neither the history
  nor the final state tells one shared state from a copy per process (a foreign
  app whose values are not a sequence, or too few of them).
- ``per-request``: nothing survives the request (``flask.g``): every ok value
  equals the first one, across requests a process served one after another; or,
  with ``separate-copies``, each request had a process of its own (a fork per
  request).
- ``lost-session-update``: requests of one client (tabs sharing a cookie)
  loaded the same session and the last save won.
- ``isolation-breach``: a client got a number from another client's session.
- ``process-unknown``: numbers repeated, but the history has no server pids,
  so within-process and across-process cannot be told apart.

Which of the two cross-process mistakes a cell shows is told from its evidence
(``reports.analysis.sharing``), for racelab's own app and a foreign one alike; a
store racelab serves itself stands in only where the evidence is silent.

A cell can show several. An experiment whose failure modes are ``per-request``
(alone, or with ``separate-copies``: nothing interleaved) is labelled
``per-request`` instead of ``race`` (``verdict_label``); its JSON verdict stays
``valid: no``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from reports.analysis.sharing import SEPARATE, SHARED, sharing
from reports.history.table import OK
from reports.history.verdict import verdict_word

if TYPE_CHECKING:
    from reports.history.table import HistoryTable

__all__ = [
    "FAILURE_MODES",
    "INTERLEAVING",
    "ISOLATION_BREACH",
    "LOST_SESSION_UPDATE",
    "PER_REQUEST",
    "PROCESS_UNKNOWN",
    "SEPARATE_COPIES",
    "SHARED_LOST_UPDATE",
    "SHARING_UNKNOWN",
    "failure_modes",
    "label_of",
    "mode_names",
    "modes_of",
    "verdict_label",
    "witness_mode",
]

INTERLEAVING = "interleaving"
SEPARATE_COPIES = "separate-copies"
SHARED_LOST_UPDATE = "shared-lost-update"
SHARING_UNKNOWN = "sharing-unknown"
PER_REQUEST = "per-request"
LOST_SESSION_UPDATE = "lost-session-update"
ISOLATION_BREACH = "isolation-breach"
PROCESS_UNKNOWN = "process-unknown"

#: Each failure mode's name as reports print it, and what it means.
FAILURE_MODES: dict[str, tuple[str, str]] = {
    INTERLEAVING: ("interleaving", "threads or greenlets of one process read the same value "
                   "before either wrote it back"),
    SEPARATE_COPIES: ("separate copies", "each process or host has its own copy of the state, "
                      "so their numbers repeat each other's"),
    SHARED_LOST_UPDATE: ("lost update in the shared store", "every process reads and writes "
                         "one shared state, but in two steps: two requests read the same value "
                         "and one write is lost (the update must be one step in the store)"),
    SHARING_UNKNOWN: ("shared or separate: cannot tell", "numbers repeated across processes, "
                      "but neither the history nor the final state tells one shared state "
                      "updated in two steps from a copy per process"),
    PER_REQUEST: ("per request", "nothing survives the request: every request starts again "
                  "from the same value"),
    LOST_SESSION_UPDATE: ("lost session update", "requests of one client loaded the same "
                          "session and the last one saved won"),
    ISOLATION_BREACH: ("isolation breach", "a client got a number from another client's "
                       "session"),
    PROCESS_UNKNOWN: ("process unknown", "numbers repeated, but the history does not say which "
                      "server process answered, so threads and processes cannot be told apart"),
}
_ORDER = list(FAILURE_MODES)


def _counts(entry: Mapping[str, Any]) -> dict[str, Any]:
    return dict((entry.get("verdict") or {}).get("counts") or {})


def _counted_per_process(entry: Mapping[str, Any]) -> bool:
    """Whether the checker judged lost updates per process (racelab's per-process stores)."""
    final = entry.get("final") or {}
    return isinstance(final, Mapping) and final.get("per_process") is True


def _history_facts(table: HistoryTable) -> tuple[bool, bool, int]:
    """(every ok op has a server pid, every ok value equals the first, ok values)."""
    ok = (table.outcome == OK) & table.value_known
    values = table.value[ok]
    pids_known = bool(table.server_pid_known[ok].all()) if ok.any() else False
    all_equal = len(values) >= 2 and bool((values == values[0]).all())
    return pids_known, all_equal, int(ok.sum())


def _several_pids(table: HistoryTable) -> bool:
    ok = (table.outcome == OK) & table.server_pid_known
    return len(np.unique(table.server_pid[ok])) > 1


def _several_from_counts(counts: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    if counts.get("duplicate_extra_cross_process"):
        return True
    pids = {k.rsplit("[pid=", 1)[1] for k in counts if "[pid=" in k}
    return len(pids) > 1 or len((entry.get("server") or {}).get("pids") or ()) > 1


def _across(state: str | None) -> str:
    """The failure mode of anomalies across processes, for a sharing state."""
    return {SHARED: SHARED_LOST_UPDATE, SEPARATE: SEPARATE_COPIES}.get(state or "",
                                                                      SHARING_UNKNOWN)


def _facts_from_counts(counts: Mapping[str, Any], entry: Mapping[str, Any]) -> tuple[bool, bool]:
    """(pids known, all values equal) from a verdict's counts, when no history is at hand."""
    pids_known = not any(k.endswith("[pid=unknown]") for k in counts) and not counts.get(
        "ok_without_pid") and not counts.get("duplicate_extra_unknown_process")
    valued = int(counts.get("ids") or counts.get("ok") or (entry.get("ops") or {}).get("ok")
                 or 0)
    extra = int(counts.get("duplicate_extra_returns") or 0)
    all_equal = valued >= 2 and counts.get("duplicate_values") == 1 and extra == valued - 1
    return pids_known, all_equal


def failure_modes(entry: Mapping[str, Any], table: HistoryTable | None = None) -> list[str]:
    """The failure modes an experiment shows; empty unless its verdict is ``no``.

    Args:
        entry: a results.json experiment entry (its verdict, config and final state).
        table: its history, when at hand: tells whether every ok answer carries a
            server pid and whether every value equals the first exactly.

    Returns:
        Failure mode keys (``FAILURE_MODES``) in a fixed order.
    """
    verdict = entry.get("verdict") or {}
    if verdict.get("valid") != "no":
        return []
    counts = _counts(entry)
    found: set[str] = set()
    kinds = {str(w.get("kind")) for w in verdict.get("witnesses") or ()}
    if "session" in str(verdict.get("checker") or "") or "isolation_breaches" in counts:
        if counts.get("lost_updates") or counts.get("stale_reads"):
            found.add(LOST_SESSION_UPDATE)
        if counts.get("isolation_breaches"):
            found.add(ISOLATION_BREACH)
        if found or str(verdict.get("checker")) == "session":
            return [m for m in _ORDER if m in found] or [LOST_SESSION_UPDATE]
    if table is not None:
        pids_known, all_equal, _ = _history_facts(table)
    else:
        pids_known, all_equal = _facts_from_counts(counts, entry)
    same = int(counts.get("duplicate_extra_same_process") or 0)
    cross = int(counts.get("duplicate_extra_cross_process") or 0)
    if all_equal and (same or not pids_known):
        return [PER_REQUEST]
    if all_equal and not same:
        # Every request had a process of its own (a fork per request) and got the same
        # value: each process had its own copy, and nothing outlived its request.
        return [SEPARATE_COPIES, PER_REQUEST]
    several = _several_pids(table) if table is not None else _several_from_counts(counts, entry)
    state = sharing(entry, table).get("state") if several else None
    if counts.get("duplicate_extra_unknown_process"):
        found.add(PROCESS_UNKNOWN)  # repeats among answers that name no process
    if not pids_known:
        found.add(PROCESS_UNKNOWN)
    else:
        if same:
            # Threads of one process read the same value; with one state shared by several
            # processes, another process's write in between does it too.
            found.add(SHARED_LOST_UPDATE if several and state == SHARED else INTERLEAVING)
        if cross:
            found.add(_across(state))
        lost = (counts.get("lost_updates") or counts.get("lost_served")
                or counts.get("real_time_violations") or counts.get("skipped_unexplained"))
        if lost and not found:
            if several and not _counted_per_process(entry):
                # Lost against one value read from several processes: shared and updated in
                # two steps, or a copy each (whose final value counts only its own).
                found.add(_across(state))
            else:
                # Checked per process, or in one process: updates of one copy were lost
                # between its readers.
                found.add(INTERLEAVING)
    if not found and kinds:
        # Another scenario's anomaly (an oversold ticket, money created): one copy of the
        # state read by several requests, or, per process, copies that never met.
        if not pids_known:
            found.add(PROCESS_UNKNOWN)
        else:
            found.add(_across(state) if several else INTERLEAVING)
    return [m for m in _ORDER if m in found]


def modes_of(entry: Mapping[str, Any]) -> list[str]:
    """An entry's stored ``failure_modes``, or computed from its verdict when absent
    (results.json always holds them: the analysis stores them for every entry)."""
    stored = entry.get("failure_modes")
    if isinstance(stored, list):
        return [str(m) for m in stored]
    return failure_modes(entry)


def mode_names(modes: Sequence[str]) -> list[str]:
    """The printed names of failure mode keys (``separate copies``, ...)."""
    return [FAILURE_MODES.get(m, (m, ""))[0] for m in modes]


def label_of(valid: str, modes: Sequence[str]) -> str:
    """The word for a verdict (``yes`` / ``no`` / ``unknown``) and its failure modes."""
    word = verdict_word({"verdict": {"valid": valid}})
    if word == "race" and PER_REQUEST in modes and set(modes) <= {PER_REQUEST, SEPARATE_COPIES}:
        return PER_REQUEST
    return word


def verdict_label(entry: Mapping[str, Any]) -> str:
    """The word reports print: ``safe``, ``race``, ``unknown``, or ``per-request``.

    ``per-request`` replaces ``race`` when nothing raced: the state lived for one
    request only (``flask.g``, or a fork per request), with no interleaving.
    """
    return label_of(str((entry.get("verdict") or {}).get("valid")), modes_of(entry))


def witness_mode(entry: Mapping[str, Any], witness: Mapping[str, Any]) -> str | None:
    """The failure mode one witness of an experiment shows, or ``None``."""
    modes = modes_of(entry)
    if not modes:
        return None
    if modes == [PER_REQUEST] or modes == [PROCESS_UNKNOWN]:
        return modes[0]
    kind = str(witness.get("kind") or "")
    details = witness.get("details") or {}
    if kind == "isolation-breach":
        return ISOLATION_BREACH
    if kind in ("lost-update", "stale-read") and LOST_SESSION_UPDATE in modes:
        return LOST_SESSION_UPDATE
    scope = details.get("scope")
    for across in (SEPARATE_COPIES, SHARED_LOST_UPDATE, SHARING_UNKNOWN):
        if scope == "cross-process" and across in modes:
            return across
    if scope == "unknown-process" or (scope == "same-process" and details.get("pid") is None):
        return PROCESS_UNKNOWN
    if INTERLEAVING in modes:
        return INTERLEAVING
    if SHARED_LOST_UPDATE in modes:
        return SHARED_LOST_UPDATE
    return modes[0]
