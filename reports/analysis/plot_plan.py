"""Which plots a run's report shows, decided once with the rest of the analysis.

``plan_plots(results)`` writes the plan into the results document: run plots
under ``results["plots"]`` (``matrix``, the heatmap of the run's ``grid``, and
``cost``, a list of plots, one per scenario, mode and variant; ``updates`` per
scenario, store and mode measured with two updates or more) and each
experiment's under ``entry["plots"]`` (``requests``, ``witness``, ``bursts``),
each as a path *stem* relative to the run directory (``plots/matrix``). The
renderer draws a stem as ``plots/matrix.png`` (or ``.svg``) and shows what it
drew; it never adds a plot of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from demo_server.served.config import MODES, STORES, WINDOWS
from reports.analysis.failure_modes import (
    INTERLEAVING,
    LOST_SESSION_UPDATE,
    PROCESS_UNKNOWN,
    SHARED_LOST_UPDATE,
    modes_of,
    verdict_label,
)

__all__ = ["PLOTS_DIR", "cost_plots", "plan_plots", "plot_name", "update_groups",
           "wanted_plots"]

PLOTS_DIR = "plots"


def plot_name(text: str) -> str:
    """``text`` as a file name: letters, digits, ``._-``; the rest become ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def wanted_plots(entry: Mapping[str, Any], several: bool) -> list[str]:
    """The per-experiment plots a report shows for this entry.

    A plot nobody asked for is not drawn: in a run of several experiments a safe
    one's values form one rising line (its bound says more), so it gets no
    requests plot. The witness time line shows requests overlapping, which is the
    cause only where requests interleave (threads, greenlets, one client's tabs,
    or an unknown process); separate copies show in the requests plot's one line
    per process, and a per-request cell's witness only repeats that every request
    got the same value. Bursts are drawn only for burst swarms. The requests and
    witness plots are drawn from the history: without one (or with no operation)
    there is nothing to draw.
    """
    word = verdict_label(entry)
    kinds = []
    has_history = bool((entry.get("files") or {}).get("history")) and bool(
        (entry.get("ops") or {}).get("total"))
    if has_history and not (several and word == "safe"):
        kinds.append("requests")
    timing_matters = {INTERLEAVING, PROCESS_UNKNOWN, LOST_SESSION_UPDATE, SHARED_LOST_UPDATE}
    if (has_history and (entry.get("verdict") or {}).get("witnesses") and word != "per-request"
            and timing_matters & set(modes_of(entry))):
        kinds.append("witness")
    if entry.get("burst_spreads"):
        kinds.append("bursts")
    return kinds


def _order(names: Sequence[str], name: str) -> int:
    return names.index(name) if name in names else len(names)


def cost_plots(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cost-of-safety plots: one per scenario, mode and variant with two stores or more.

    Bars compare stores of one workload only: a plot never holds two scenarios, nor a
    cell with one tab beside one with four. Two windows of one store are not a cost of
    safety (nothing safe is compared), so a plot needs two stores. A plot is named by
    its mode (``plots/cost-threaded``), after its scenario when the run holds several
    (``plots/cost-ids-threaded``), its variant last (``plots/cost-threaded-burst-8``).

    Returns:
        ``{"stem", "title", "scenario", "mode", "variant", "bars": [{"id", "name"}]}``
        in the order of the run's scenarios, then of ``MODES``.
    """
    entries = [e for e in results.get("experiments") or () if isinstance(e, dict)]
    several = len(results.get("scenarios") or ()) > 1
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for entry in entries:
        names = entry.get("names") or {}
        if entry.get("throughput_rps") is None or not names:
            continue
        key = (str(names["scenario"]), str(names["mode"]), str(names["variant"]))
        groups.setdefault(key, []).append(entry)
    order = [str(g.get("name")) for g in results.get("scenarios") or ()]
    plots = []
    for (scenario, mode, variant), mine in sorted(
            groups.items(), key=lambda kv: (_order(order, kv[0][0]), _order(MODES, kv[0][1]),
                                            kv[0][1], kv[0][2])):
        if len({e["names"]["store"] for e in mine}) < 2:
            continue
        windows = {e["names"]["window"] for e in mine}
        mine = sorted(mine, key=lambda e: (
            _order(STORES, str((e.get("config") or {}).get("store"))), e["names"]["store"],
            _order(WINDOWS, e["names"]["window"])))
        bars = [{"id": str(e.get("id")),
                 "name": e["names"]["store"] + (f"/{e['names']['window']}"
                                                if len(windows) > 1 else "")} for e in mine]
        stem = "-".join(plot_name(x) for x in (scenario if several else "", mode, variant) if x)
        title = ("Cost of safety" + (f": {scenario}" if several else "") + f" under {mode}"
                 + (f", {variant}" if variant else ""))
        plots.append({"stem": f"{PLOTS_DIR}/cost-{stem}", "title": title, "scenario": scenario,
                      "mode": mode, "variant": variant, "bars": bars})
    return plots


def update_groups(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """``scenario:store:mode`` of each store measured with two updates or more under one mode
    (the price of each fix beside the atomic form, from the same scenario and store)."""
    updates: dict[str, set[Any]] = {}
    for entry in entries:
        config = entry.get("config") or {}
        if entry.get("throughput_rps") is None or config.get("app") or config.get("url"):
            continue
        key = (f"{config.get('scenario') or 'counter'}:{config.get('store')}:"
               f"{config.get('mode')}")
        updates.setdefault(key, set()).add(config.get("update") or "atomic")
    return sorted(key for key, found in updates.items() if len(found) >= 2)


def plan_plots(results: dict[str, Any]) -> dict[str, Any]:
    """Write the plot plan into ``results`` (in place) and return it."""
    entries = results.get("experiments") or []
    several = len(entries) > 1
    results["plots"] = {
        "matrix": f"{PLOTS_DIR}/matrix" if several else None,
        "cost": cost_plots(results) if several else [],
        "updates": ({key: f"{PLOTS_DIR}/updates-{plot_name(key)}"
                     for key in update_groups(entries)} if several else {}),
    }
    for entry in entries:
        name = plot_name(str(entry.get("id")))
        entry["plots"] = {kind: f"{PLOTS_DIR}/{name}-{kind}"
                          for kind in wanted_plots(entry, several)}
    return results
