"""What each experiment of a run is called, decided once for every view.

A run can hold several scenarios (the classroom demo runs five), the same store
and mode under two of them, and variants of one cell (a session scenario with
one tab and with four). Every view (the terminal table, the HTML report's table,
heatmap, cost plots and cell sections, the Markdown report) prints the names
computed here and stored in results.json, so that no two rows read the same:

- ``cell_label(config)``: the label of one experiment on its own, as the run
  records it (``ExperimentSpec.label``): ``store · mode · window``, the scenario
  first when it is not the counter, its variant last.
- ``name_run(results)``: each entry's ``names`` (scenario, store, mode, window,
  variant, the interpreter the variant names when the run names interpreters,
  and its unique ``label`` within the run), the run's ``scenarios``
  (the groups the views show, in run order) and its ``grid`` (one mode x store
  grid per scenario, the heatmap's and the terminal grid's layout).

A one-scenario run reads as before: the scenario is named only when the run
holds several, the interpreter only when its cells ran under different ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from demo_server.served.config import MODES, STORES, WINDOWS

__all__ = [
    "DEFAULT_SCENARIO",
    "DEFAULT_UPDATE",
    "cell_label",
    "interpreter_name",
    "name_run",
    "store_name",
    "variant_of",
]

DEFAULT_SCENARIO = "counter"
#: How a shared store changes its state when the run does not say: one step in the store.
DEFAULT_UPDATE = "atomic"
SEP = " · "


def _target(config: Mapping[str, Any]) -> str:
    return str(config.get("app") or config.get("url") or "")


def store_name(config: Mapping[str, Any]) -> str:
    """The store, with its update when that is not the default: ``sqlite (read-write)``."""
    store = str(config.get("store") or "?")
    update = config.get("update")
    if update and update != DEFAULT_UPDATE:
        store += f" ({update})"
    return store


def interpreter_name(config: Mapping[str, Any]) -> str:
    """The server's interpreter in a few words: ``3.11.2``, ``3.13.1 no GIL``, ``PyPy 3.10.14``."""
    version = str(config.get("python") or "")
    if not version:
        return ""
    implementation = str(config.get("implementation") or "")
    name = version if implementation in ("", "CPython") else f"{implementation} {version}"
    return name + (" no GIL" if config.get("gil") is False else "")


def variant_of(config: Mapping[str, Any], with_interpreter: bool = False,
               interpreter: str = "") -> str:
    """What sets a cell apart beyond its scenario, store, mode and window (``4 tabs``).

    Args:
        config: an experiment's configuration.
        with_interpreter: name the server's interpreter too (a run whose cells ran
            under different ones).
        interpreter: its name as the analysis measured it (``3.13t, GIL off``), when known.

    Returns:
        The variant's words joined by `` · ``; empty when the cell has none.
    """
    parts = []
    tabs = config.get("tabs")
    if isinstance(tabs, int) and tabs > 1:
        parts.append(f"{tabs} tabs")
    if config.get("burst"):
        parts.append(f"burst {config['burst']}")
    name = interpreter or interpreter_name(config)
    if with_interpreter and name:
        parts.append(name)
    return SEP.join(parts)


def cell_label(config: Mapping[str, Any], *, with_scenario: bool | None = None,
               with_interpreter: bool = False) -> str:
    """One experiment's label: ``global · threaded · none``, ``session · session ·
    gunicorn-gthread · none · 4 tabs``, ``app.py:app · threaded``.

    Args:
        config: the experiment's configuration (results.json's ``config``, or an
            ``ExperimentSpec`` as a dict).
        with_scenario: name the scenario; by default only when it is not the counter.
        with_interpreter: name the server's interpreter in the variant.
    """
    target = _target(config)
    mode = str(config.get("mode") or "?")
    if target:
        parts = [target, mode]
    else:
        scenario = str(config.get("scenario") or DEFAULT_SCENARIO)
        if with_scenario is None:
            with_scenario = scenario != DEFAULT_SCENARIO
        parts = [scenario] if with_scenario else []
        parts += [store_name(config), mode, str(config.get("window") or "?")]
    variant = variant_of(config, with_interpreter)
    return SEP.join(parts + ([variant] if variant else []))


def _derived_labels(config: Mapping[str, Any]) -> set[str]:
    """Labels racelab itself wrote for this configuration, now and in earlier versions.

    A recorded label among them is replaced by the run's own name for the cell; any
    other (a label someone chose) is kept.
    """
    store, mode, window = (str(config.get(k) or "?") for k in ("store", "mode", "window"))
    scenario = str(config.get("scenario") or DEFAULT_SCENARIO)
    target = _target(config)
    burst = f" · burst {config['burst']}" if config.get("burst") else ""
    tabs = config.get("tabs")
    tabs_text = f" · {tabs} tabs" if isinstance(tabs, int) and tabs > 1 else ""
    prefix = "" if scenario == DEFAULT_SCENARIO else f"{scenario} · "
    labels = {cell_label(config), cell_label(config, with_scenario=True),
              f"{store} · {mode} · {window}",  # ExperimentSpec.label before 0.3
              f"{prefix}{store} · {window} · {mode}{burst}{tabs_text}"}  # a preset's cell
    if target:
        labels |= {f"{target} · {mode}", f"{target} · {mode}{burst}", f"{target} · probe"}
    return labels


def _scenario(config: Mapping[str, Any]) -> str:
    target = _target(config)
    if target:
        return target.rsplit("/", 1)[-1]
    return str(config.get("scenario") or DEFAULT_SCENARIO)


def _scenario_title(name: str, config: Mapping[str, Any]) -> str:
    target = _target(config)
    if target:
        return f"{target}, checked as {config.get('check') or DEFAULT_SCENARIO}"
    from scenarios.registry import SCENARIO_NAMES, get_scenario

    if name not in SCENARIO_NAMES:
        return name
    return f"{name}: {get_scenario(name).title}"


def _order(names: Sequence[str], name: str) -> int:
    return names.index(name) if name in names else len(names)


def _unique(labels: list[str]) -> list[str]:
    """The labels, each repeated one numbered from its second time: ``... (2)``."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        count = seen.get(label, 0) + 1
        seen[label] = count
        out.append(label if count == 1 else f"{label} ({count})")
    return out


def _grid(scenario: Mapping[str, Any], entries: Mapping[str, Mapping[str, Any]]
          ) -> dict[str, Any]:
    """One scenario's mode x store grid: its rows (modes), columns and the cell at each.

    A column is the store (``store/window`` when the scenario ran several windows),
    with the variant after it; two cells that would share a place get columns of
    their own.
    """
    mine = [entries[i] for i in scenario["ids"]]
    windows = {(e.get("config") or {}).get("window") for e in mine} - {None}
    keyed = []
    for entry in mine:
        config = entry.get("config") or {}
        names = entry["names"]
        if _target(config):
            column = names["store"]
        else:
            column = names["store"] + (f"/{names['window']}" if len(windows) > 1 else "")
        if names["variant"]:
            column += SEP + names["variant"]
        keyed.append((names["mode"], column, entry))
    taken: set[tuple[str, str]] = set()
    placed = []
    for mode, column, entry in keyed:
        name, count = column, 1
        while (mode, name) in taken:
            count += 1
            name = f"{column} ({count})"
        taken.add((mode, name))
        placed.append((mode, name, entry))

    def column_order(item: tuple[str, str, Mapping[str, Any]]) -> tuple[int, str, int, str]:
        config = item[2].get("config") or {}
        return (_order(STORES, str(config.get("store"))), str(config.get("update") or ""),
                _order(WINDOWS, str(config.get("window"))), item[1])

    modes = sorted({m for m, _, _ in placed}, key=lambda m: (_order(MODES, m), m))
    columns: list[str] = []
    for item in sorted(placed, key=column_order):
        if item[1] not in columns:
            columns.append(item[1])
    at = {(m, c): str(e.get("id")) for m, c, e in placed}
    return {"scenario": scenario["name"], "title": scenario["title"], "modes": modes,
            "stores": columns,
            "cells": [[at.get((m, c)) for c in columns] for m in modes]}


def name_run(results: dict[str, Any]) -> dict[str, Any]:
    """Name every experiment of a results document, group them, lay out their grids.

    Writes (in place) each entry's ``names`` and ``label``, and the document's
    ``scenarios`` and ``grid``; returns the document.
    """
    entries = [e for e in results.get("experiments") or () if isinstance(e, dict)]
    configs = [e.get("config") or {} for e in entries]
    scenarios = list(dict.fromkeys(_scenario(c) for c in configs))
    several = len(scenarios) > 1
    measured = [str((e.get("interpreter") or {}).get("label") or "") for e in entries]
    interpreters = {m or interpreter_name(c) for m, c in zip(measured, configs, strict=True)}
    interpreters -= {""}
    with_interpreter = len(interpreters) > 1
    labels = []
    for entry, config, interpreter in zip(entries, configs, measured, strict=True):
        recorded = str(entry.get("label") or "")
        derived = not recorded or recorded in _derived_labels(config)
        own = cell_label(config, with_scenario=several and not _target(config),
                         with_interpreter=with_interpreter)
        labels.append(own if derived else recorded)
        entry["names"] = {
            "scenario": _scenario(config),
            "store": store_name(config) if not _target(config) else _scenario(config),
            "mode": str(config.get("mode") or "?"),
            "window": str(config.get("window") or "?") if not _target(config) else "",
            "variant": variant_of(config, with_interpreter, interpreter),
            # the interpreter's part of the variant, when the run names interpreters
            "interpreter": ((interpreter or interpreter_name(config)) if with_interpreter
                            else ""),
        }
    for entry, label in zip(entries, _unique(labels), strict=True):
        entry["label"] = label
        entry["names"]["label"] = label
    groups: list[dict[str, Any]] = []
    for name in scenarios:
        ids = [str(e.get("id")) for e, c in zip(entries, configs, strict=True)
               if _scenario(c) == name]
        first = next(c for c in configs if _scenario(c) == name)
        groups.append({"name": name, "title": _scenario_title(name, first), "ids": ids})
    results["scenarios"] = groups
    by_id = {str(e.get("id")): e for e in entries}
    results["grid"] = [_grid(group, by_id) for group in groups]
    return results
