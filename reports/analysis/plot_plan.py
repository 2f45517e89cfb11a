"""Which plots a run's report shows, decided once with the rest of the analysis.

``plan_plots(results)`` writes the plan into the results document: run plots
under ``results["plots"]`` (``matrix``; ``cost`` per mode; ``updates`` per
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

from reports.analysis.failure_modes import (
    INTERLEAVING,
    LOST_SESSION_UPDATE,
    PROCESS_UNKNOWN,
    SHARED_LOST_UPDATE,
    modes_of,
    verdict_label,
)

__all__ = ["PLOTS_DIR", "cost_modes", "plan_plots", "plot_name", "update_groups",
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


def cost_modes(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The modes with a cost-of-safety plot: two stores or more measured under them.

    Two windows of one store are not a cost of safety: nothing safe is compared.
    """
    stores: dict[str, set[Any]] = {}
    for entry in entries:
        if entry.get("throughput_rps") is None:
            continue
        config = entry.get("config") or {}
        stores.setdefault(str(config.get("mode")), set()).add(config.get("store"))
    return sorted(mode for mode, found in stores.items() if len(found) >= 2)


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
        "cost": ({mode: f"{PLOTS_DIR}/cost-{plot_name(mode)}" for mode in cost_modes(entries)}
                 if several else {}),
        "updates": ({key: f"{PLOTS_DIR}/updates-{plot_name(key)}"
                     for key in update_groups(entries)} if several else {}),
    }
    for entry in entries:
        name = plot_name(str(entry.get("id")))
        entry["plots"] = {kind: f"{PLOTS_DIR}/{name}-{kind}"
                          for kind in wanted_plots(entry, several)}
    return results
