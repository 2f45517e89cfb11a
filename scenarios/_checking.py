"""What the scenarios' checkers share beyond ``reports.history.checkers``.

- ``final_states``: the final state's per-process ``/state`` bodies as plain
  mappings (the scenario keys ``parse_final`` does not know, e.g. ``stock``);
- ``statuses``: each operation's HTTP status, from the history's ``status``
  column where it has one, else from an ``HTTP 409``-style error text;
- ``retold_duplicates``: ``reports.history.checkers.duplicates``' counts with the
  witnesses told in the scenario's own words ("both bought seat 12").

Like every checker, these are pure and import numpy only when called.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from reports.history.checkers import Ops
    from reports.history.table import HistoryTable
    from reports.history.verdict import Verdict, Witness

# The checkers below import numpy and reports.history inside their functions: a server
# worker imports this module for its routes and never checks a history.
__all__ = ["Final", "conclude", "final_states", "registrar", "retold_duplicates", "statuses",
           "together"]

_HTTP = re.compile(r"HTTP (\d{3})\b")


class Final:
    """The final state as a scenario checker reads it.

    Attributes:
        states: one ``/state`` body per process that answered (mappings), or None.
        per_process: every process keeps its own copy of the state.
        problem: why the final state cannot be used (None when it can, or was not given).
    """

    def __init__(self, states: list[Mapping[str, Any]] | None, per_process: bool,
                 problem: str | None = None) -> None:
        self.states = states
        self.per_process = per_process
        self.problem = problem

    def ints(self, key: str) -> list[int] | None:
        """``key`` of every state, when every state has it as an integer."""
        if not self.states:
            return None
        values = [s.get(key) for s in self.states]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return [int(v) for v in values]  # type: ignore[arg-type]
        return None


def final_states(final: Any, per_process: bool = False) -> Final:
    """``None``, an integer (one shared ``value``) or a ``final.json`` mapping, as ``Final``."""
    if final is None:
        return Final(None, per_process)
    if isinstance(final, int) and not isinstance(final, bool):
        return Final([{"value": final}], False)
    if not isinstance(final, Mapping):
        return Final(None, per_process, f"the final state is unreadable: {type(final).__name__}")
    pp = final.get("per_process")
    pp = per_process if not isinstance(pp, bool) else pp
    if not final.get("available", True):
        reason = final.get("reason") or "the runner could not read it"
        return Final(None, pp, f"the final state is unavailable: {reason}")
    states = final.get("states")
    if not isinstance(states, list) or not states or not all(
            isinstance(s, Mapping) for s in states):
        return Final(None, pp, "the final state is unreadable: 'states' must be a list of mappings")
    return Final(list(states), pp)


def statuses(table: HistoryTable) -> np.ndarray:
    """Each operation's HTTP status (0 where unknown).

    The history's ``status`` column wins; without it, an error text such as
    ``HTTP 409: sold out`` says it.
    """
    import numpy as np

    status = getattr(table, "status", None)
    known = getattr(table, "status_known", None)
    out = np.zeros(len(table), dtype=np.int64)
    if status is not None and known is not None:
        out = np.where(known, status, 0).astype(np.int64)
    for i in np.flatnonzero(out == 0).tolist():
        text = table.error[i]
        if text:
            match = _HTTP.search(str(text))
            if match:
                out[i] = int(match.group(1))
    return out


def retold_duplicates(
    ops: Ops, per_process: bool,
    tell: Callable[[int, list[int], str, str], str],
) -> tuple[dict[str, int], list[Witness]]:
    """``duplicates``' counts and witnesses, each witness retold by ``tell``.

    Args:
        ops: the ok operations with a value.
        per_process: each process keeps its own copy of the state.
        tell: ``tell(value, op_ids, how, when)`` -> the sentence; ``how`` says where
            and when the requests ran ("they overlapped for 0.4 ms in process 411,
            threads 7 and 9", or "in different processes (pids 101 and 102): each
            process keeps its own copy"); ``when`` is ``overlapped`` (one process, all
            in flight at one moment), ``apart`` (one process, not all at once) or
            ``elsewhere`` (different or unrecorded processes).
    """
    from reports.history.checkers import duplicates, duration_text, join_words
    from reports.history.verdict import Witness

    counts, witnesses = duplicates(ops, per_process)
    out: list[Witness] = []
    for w in witnesses:
        details = w.details
        rows = sorted(details.get("ops", []), key=lambda d: (d["invoke_ns"], d["op_id"]))
        ids = [int(d["op_id"]) for d in rows]
        scope = details.get("scope")
        if scope == "cross-process":
            pids = [d["pid"] for d in rows]
            why = ("each process keeps its own copy" if per_process else
                   "either each process keeps its own copy, or their updates of the shared "
                   "state interleaved")
            how, when = f"in different processes (pids {pids[0]} and {pids[1]}): {why}", "elsewhere"
        elif scope == "same-process":
            tids = [d["tid"] for d in rows]
            threads = (f", threads {join_words([str(t) for t in tids])}"
                       if None not in tids and len(set(tids)) > 1 else "")
            first_done = min(d["complete_ns"] for d in rows)
            last_sent = max(d["invoke_ns"] for d in rows)
            where = f"process {rows[0]['pid']}{threads}"
            when = "overlapped" if first_done > last_sent else "apart"
            how = (f"they overlapped for {duration_text(first_done - last_sent)} in {where}"
                   if when == "overlapped" else f"all in {where}")
        else:
            how, when = "the history does not record which server process answered", "elsewhere"
        out.append(Witness(w.kind, tell(int(details["value"]), ids, how, when), tuple(ids),
                           dict(details)))
    return counts, out


def registrar(name: str, check: Callable[..., Verdict]) -> Callable[[], None]:
    """The ``Scenario.register`` hook that registers ``check(table, final, per_process=...)``."""

    def register() -> None:
        from reports.history.checkers import CheckContext, register

        def run(table: HistoryTable, context: CheckContext) -> Verdict:
            return check(table, context.final, per_process=context.per_process)

        register(name, run)

    return register


def conclude(name: str, counts: dict[str, int], witnesses: list[Witness],
             findings: list[str], undecided: list[str], summary: str) -> Verdict:
    """``no`` when anything was found, else ``unknown`` when undecided, else ``yes``."""
    from reports.history.verdict import Verdict

    if findings:
        return Verdict(name, "no", counts, tuple(witnesses), "; ".join(findings))
    if undecided:
        return Verdict(name, "unknown", counts, tuple(witnesses), "; ".join(undecided))
    return Verdict(name, "yes", counts, (), summary)


def together(ids: list[int]) -> tuple[str, str, str]:
    """("requests 3 and 5 both", "both", "either"), or with "all"/"any" for three or more."""
    if len(ids) == 2:
        return f"requests {ids[0]} and {ids[1]} both", "both", "either"
    return f"requests {', '.join(map(str, ids[:-1]))} and {ids[-1]} all", "all", "any"
