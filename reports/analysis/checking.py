"""Run a scenario's checkers over a history and compose their verdicts.

``check_history`` runs the checkers a scenario names (``checkers_for``) and
composes their verdicts (no beats unknown beats yes). A checker that raises
yields unknown with the error as reason, never a crash. More than
``MAX_UNKNOWN_SHARE`` (5%) of operations with an unknown outcome make the
verdict at best unknown, for every scenario and store. A scenario registers its
checkers (``reports.history.checkers.register``) the first time it is checked.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from demo_server.basics.errors import ConfigError
from reports.history.checkers import (
    CHECKER_COLUMNS,
    CHECKERS,
    SCENARIO_CHECKERS,
    CheckContext,
    guarded,
)
from reports.history.table import INFO, HistoryTable
from reports.history.verdict import Verdict, compose
from scenarios.registry import SCENARIO_NAMES, get_scenario

__all__ = ["MAX_UNKNOWN_SHARE", "check_history", "checkers_for", "columns_for"]

MAX_UNKNOWN_SHARE = 0.05
_LOADED: set[str] = set()



def _load_scenario(scenario: str) -> None:
    """Let a registered scenario register its checkers, once."""
    if scenario in _LOADED:
        return
    _LOADED.add(scenario)
    if scenario in SCENARIO_NAMES:
        found = get_scenario(scenario)
        if found.register is not None:
            found.register()
        names = SCENARIO_CHECKERS.setdefault(scenario, [])
        for name in found.checkers:
            if name not in names:
                names.append(name)



def checkers_for(scenario: str) -> list[str]:
    """The names of the checkers a scenario runs.

    Raises:
        ConfigError: for a scenario no checker is registered for.
    """
    _load_scenario(scenario)
    try:
        return list(SCENARIO_CHECKERS[scenario])
    except KeyError:
        known = ", ".join(dict.fromkeys([*SCENARIO_NAMES, *sorted(SCENARIO_CHECKERS)]))
        raise ConfigError(f"no checker for scenario {scenario!r}; choose one of: {known}"
                          ) from None


def columns_for(scenario: str) -> tuple[str, ...] | None:
    """The history columns a scenario's checkers read; None when one reads them all.

    Raises:
        ConfigError: for a scenario no checker is registered for.
    """
    names = checkers_for(scenario)
    if any(name not in CHECKER_COLUMNS for name in names):
        return None
    # ``error``: the verdict names why most operations of unknown outcome have one.
    return tuple(dict.fromkeys([*(c for name in names for c in CHECKER_COLUMNS[name]),
                                "error"]))


def check_history(
    table: HistoryTable,
    final: Any = None,
    scenario: str = "counter",
    server_problem: str | None = None,
    *,
    per_process: bool = False,
    reset: str | None = None,
) -> Verdict:
    """Run the scenario's checkers and compose their verdicts (no > unknown > yes).

    Args:
        table: the history.
        final: the final state (``None``, an integer, or a ``final.json`` mapping).
        scenario: which checkers to run (``checkers_for``).
        server_problem: what went wrong with the server during the swarm (e.g. it
            died); the verdict is then at best unknown, with this as reason.
        per_process: each server process keeps its own state, unless ``final`` says.
        reset: what emptied the store during the run (a restart of a store that keeps
            nothing); repeated values are then no evidence, and a verdict that would
            be a race is unknown with this as reason, its witnesses kept.

    Returns:
        The composed verdict, named after the checkers joined with ``+``.
    """
    names = checkers_for(scenario)
    cut_short = final.get("cut_short") if isinstance(final, Mapping) else None
    if cut_short and not server_problem:
        # The files of a run that ended early: whatever they show, never "safe".
        server_problem = f"the run was cut short ({cut_short})"
    context = CheckContext(final=final, per_process=per_process,
                           complete=server_problem is None)
    verdicts = []
    for name in names:
        fn = CHECKERS.get(name)
        if fn is None:
            verdicts.append(Verdict(name, "unknown", reason=f"no checker named {name!r}"))
            continue
        verdicts.append(guarded(name)(fn)(table, context))
    if server_problem:
        verdicts.append(Verdict("server", "unknown", reason=server_problem))
    unknown = int(np.count_nonzero(table.outcome == INFO))
    if len(table) and unknown > MAX_UNKNOWN_SHARE * len(table):
        verdicts.append(Verdict("outcomes", "unknown", reason=(
            f"{unknown:,} of {len(table):,} operations ({100 * unknown / len(table):.1f}%) "
            f"have an unknown outcome, more than the {100 * MAX_UNKNOWN_SHARE:.0f}% a safe "
            f"verdict allows: what they did cannot be checked{_most_common_error(table)}")))
    verdict = compose(verdicts, checker="+".join(names))
    if reset and verdict.valid == "no":
        return dataclasses.replace(verdict, valid="unknown", reason=f"server: {reset}")
    return verdict


def _most_common_error(table: HistoryTable) -> str:
    """Why most operations of unknown outcome have one (``not an integer: 'hello'``), or ""."""
    errors = Counter(str(e) for e in table.error[table.outcome == INFO].tolist() if e)
    if not errors:
        return ""
    text, count = errors.most_common(1)[0]
    return f"; the most common reason ({count:,} of them): {text}"

