"""A whole demo: pick the cells, run the matrix, check every cell, render the report.

This is what ``racelab demo`` and ``racelab matrix`` call; the CLI only parses
options and prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from demo_server.basics import interrupts
from demo_server.basics.files import fresh_dir, write_text
from demo_server.basics.procs import Zygote
from demo_server.control.supervisor import ServerZygotes
from demo_server.served.config import Connections
from scenarios.run.matrix import (
    MatrixOutcome,
    MatrixProgress,
    reachable_optional_stores,
    ready_interpreters,
    run_matrix,
    scale_cells,
)
from scenarios.run.presets import Cell

__all__ = ["DemoResult", "Launchers", "run_demo", "start_launchers"]


@dataclasses.dataclass
class DemoResult:
    outcome: MatrixOutcome
    results: dict[str, Any]
    written: dict[str, Path]
    skipped: list[tuple[str, str]]


def _signal_name() -> str:
    import signal

    return signal.Signals(interrupts.first_signal() or signal.SIGINT).name


def _failed_summary(cell: Cell, cell_dir: Path, reason: str) -> None:
    """Leave a summary.json for a cell that failed before its runner wrote one."""
    if (cell_dir / "summary.json").exists():
        return
    fresh_dir(cell_dir)
    summary = {
        "schema": 1,
        "experiment": {
            "scenario": "counter", **{k: v for k, v in dataclasses.asdict(cell).items()
                                       if k != "optional"},
        },
        "label": cell.label,
        "status": "failed",
        "error": reason,
    }
    write_text(cell_dir / "summary.json", json.dumps(summary, indent=2))


@dataclasses.dataclass
class Launchers:
    """A matrix's zygotes: one that imported Locust, one per family of server modes.

    Each cell's Locust process and server is forked from one of them instead of
    importing Locust (or gunicorn, Werkzeug and Flask) again; ``close`` ends them.
    """

    locust: Zygote
    servers: ServerZygotes

    def __enter__(self) -> Launchers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.servers.close()
        self.locust.close()


def start_launchers(cells: Iterable[Cell]) -> Launchers:
    """Start the zygotes ``cells`` need; their imports run while the caller goes on.

    A command starts them before its own imports and checks, so that the first
    cell waits for as little as possible (Locust's import alone takes most of a
    second of CPU).
    """
    from loadtests.runner import locust_zygote

    servers = ServerZygotes()
    launchers = Launchers(locust_zygote(), servers)
    servers.prepare(cell.mode for cell in cells if not cell.app and not cell.python)
    return launchers


def _import_report_modules() -> None:
    """Import what the report draws and renders with; a failure shows where they are used."""
    with contextlib.suppress(Exception):
        import reports.render.html
        import reports.render.plots  # noqa: F401


def make_cell_runner(
    connections: Connections, on_swarm: Callable[[int, float], None] | None = None,
    zygote: Zygote | None = None,
    server_zygotes: ServerZygotes | None = None,
    before_swarm: Callable[[], None] | None = None,
) -> Callable[[Cell, Path], dict[str, Any]]:
    """A cell runner for ``run_matrix``: one experiment, then its check.

    Args:
        connections: where every cell's stores are.
        on_swarm: progress of the current swarm (requests done, elapsed seconds).
        zygote: starts every cell's Locust processes (``loadtests.runner.locust_zygote``).
        server_zygotes: start every cell's servers (``supervisor.ServerZygotes``).
        before_swarm: called in every cell once its server answers, before its load.

    Returns:
        A function running one cell into its directory and returning
        ``{"valid", "anomalies", "reason", "entry"}``.
    """
    from demo_server.basics.errors import RacelabError
    from reports.analysis.results import analyse_experiment
    from scenarios.run.experiment import run_experiment

    def run_cell(cell: Cell, cell_dir: Path) -> dict[str, Any]:
        spec = cell.spec().connected(connections)
        try:
            run_experiment(spec, cell_dir, progress=on_swarm, zygote=zygote,
                           server_zygotes=server_zygotes, before_swarm=before_swarm)
        except RacelabError as exc:
            _failed_summary(cell, cell_dir, str(exc))
            raise
        except KeyboardInterrupt:
            _failed_summary(cell, cell_dir, "interrupted while this cell was running")
            raise
        entry = analyse_experiment(cell_dir)
        verdict = entry["verdict"]
        return {
            "valid": verdict["valid"],
            "anomalies": entry.get("anomalies") or 0,
            "reason": verdict.get("reason", ""),
            "entry": entry,
        }

    return run_cell


def run_demo(
    cells: Sequence[Cell],
    run_dir: Path,
    connections: Connections,
    *,
    preset: str,
    budget_s: float | None,
    nominal_budget_s: float,
    progress: MatrixProgress | None = None,
    formats: Sequence[str] = ("html",),
    on_skip: Callable[[str, str], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    cell_runner: Callable[[Cell, Path], dict[str, Any]] | None = None,
    interpreters: bool = True,
    launchers: Launchers | None = None,
    started: float | None = None,
) -> DemoResult:
    """Run ``cells`` into ``run_dir`` and render the report.

    Args:
        cells: the matrix; optional cells whose store is unreachable are skipped.
        run_dir: the run directory.
        connections: where the shared stores are.
        preset: the preset's name (kept in results.json).
        budget_s: seconds the user allows; swarms are scaled to fit.
        nominal_budget_s: seconds the preset's swarm sizes were chosen for.
        progress: told when each cell starts and ends.
        formats: report formats to write.
        on_skip: told of every skipped store and why, before the run.
        on_plan: told how many cells will run, once the skipped ones are known.
        cell_runner: replaces the real experiment (tests of the loop only).
        interpreters: also race the original code in threads under every Python
            found on the machine (``scenarios.run.interpreters``), for the report.
        launchers: zygotes the caller started early (``start_launchers``); run_demo
            closes them. Default: started here.
        started: when the command began (``time.time()``), for the wall time the
            run reports; default: now.

    Returns:
        The matrix outcome, results.json's content and the written files.
    """
    # The report's modules are imported while the zygotes start (_import_report_modules).
    from reports.analysis.results import load_results, write_results
    from reports.render.html import render_run

    kept, skipped = reachable_optional_stores(cells, connections)
    kept, elsewhere = ready_interpreters(kept, connections)  # may install, once, with progress
    skipped += elsewhere
    for store, reason in skipped:
        if on_skip:
            on_skip(store, reason)
    if on_plan:
        on_plan(len(kept))
    if budget_s is not None:
        kept = scale_cells(kept, budget_s / nominal_budget_s)
    command = shlex.join(["racelab", *sys.argv[1:]]) if sys.argv else "racelab demo"
    meta: dict[str, Any] = {"preset": preset, "command": command, "budget_s": budget_s,
                            "started": time.time() if started is None else started}
    checked: dict[Path, dict[str, Any]] = {}  # each cell's results entry, checked once
    # From the end of the last cell until results.json is written, a signal is counted,
    # not raised: closing the zygotes and gathering the cells must not be cut short.
    # Only the interpreter table, raced after the cells, may still be interrupted; the
    # report then says it is missing.
    writing = contextlib.ExitStack()
    results: dict[str, Any] | None = None
    late = racing = False
    stops: interrupts.Deferred | None = None
    try:
        with contextlib.ExitStack() as after_cells:
            with contextlib.ExitStack() as stack:
                if launchers is not None:
                    stack.enter_context(launchers)  # closed here, whoever runs the cells
                base_runner = cell_runner
                if base_runner is None:
                    # Zygotes for the whole matrix: each cell's Locust process and server are
                    # forked from a process that imported Locust (or gunicorn and Flask) once.
                    running = stack.enter_context(launchers or start_launchers(kept))
                    # While the zygotes import Locust and every server family, this process
                    # imports the report's modules; the first swarm waits for all of them.
                    warm_up = threading.Thread(target=_import_report_modules, daemon=True)
                    warm_up.start()

                    def before_swarm() -> None:
                        running.servers.wait_ready()
                        warm_up.join()

                    base_runner = make_cell_runner(connections, zygote=running.locust,
                                                   server_zygotes=running.servers,
                                                   before_swarm=before_swarm)

                def run_cell(cell: Cell, cell_dir: Path) -> dict[str, Any]:
                    found = base_runner(cell, cell_dir)
                    if "entry" in found:
                        checked[cell_dir] = found["entry"]
                    return found

                outcome = run_matrix(kept, run_dir, run_cell, progress, skipped, meta,
                                     after=after_cells)
            # The zygotes are closed; the signals still only counted.
            results = _gather(run_dir, outcome, checked, meta, skipped, preset)
            late = bool(outcome.after_cells and outcome.after_cells.received)
            cells_done = time.time()
            race_table = interpreters and not outcome.interrupted and not late
            if not race_table:  # the same count goes on until the results are written
                writing = after_cells.pop_all()
                stops = outcome.after_cells
        if race_table:
            racing = True
            from scenarios.run.interpreters import find_interpreters, run_interpreters

            results["interpreters"] = [
                {**r.to_dict(), "threads": 8}
                for r in run_interpreters(find_interpreters(), threads=8, increments=100_000,
                                          jobs=min(2, os.cpu_count() or 1))
            ]
            racing = False
            stops = writing.enter_context(interrupts.deferred())
    except KeyboardInterrupt:  # every cell is done: keep them, say what is missing
        if results is None:  # before the cells' results were gathered: nothing to keep
            raise
        outcome.interrupted = True
        missing = ("while racing the original code under each interpreter; every cell "
                   "finished, the interpreter table is missing") if racing else (
                   "after the last cell; every cell finished")
        results["run"].update(partial=True, partial_reason=(
            f"interrupted ({_signal_name()}) {missing}"))
        stops = writing.enter_context(interrupts.deferred())  # a later signal raises nothing
    if stops is None:  # no count was kept after the cells (a test's runner): keep one now
        stops = writing.enter_context(interrupts.deferred())
    assert results is not None
    load_s = sum(float(e.get("span_s") or 0) for e in results["experiments"])
    with writing:
        results["run"]["timing"] = {"load_s": round(load_s, 3),
                                    "cells": len(results["experiments"]),
                                    "cells_s": round(cells_done - meta["started"], 3),
                                    "wall_s": round(time.time() - meta["started"], 3)}
        # A signal while results.json and the report are written marks them partial too:
        # they are written once more, still deferred (twice at most).
        for _ in range(2):
            if (late or stops.received) and not results["run"].get("partial"):
                outcome.interrupted = True
                results["run"].update(partial=True, partial_reason=(
                    f"interrupted ({_signal_name()}) after the last cell; every cell finished"))
            path = write_results(results, run_dir)
            written = render_run(run_dir, formats)
            if not stops.received or results["run"].get("partial"):
                break
    # A signal counted as the handlers were put back, after the last look, still stops it.
    if stops.received:
        outcome.interrupted = True
    return DemoResult(outcome, load_results(path), written, list(skipped))


def _gather(run_dir: Path, outcome: MatrixOutcome, checked: Mapping[Path, dict[str, Any]],
            meta: Mapping[str, Any], skipped: Sequence[tuple[str, str]],
            preset: str) -> dict[str, Any]:
    """The run's results document: every cell's entry, checked once, and the run's facts."""
    from reports.analysis.results import build_results, collect_experiment

    entries = []
    for cell_outcome in outcome.outcomes:
        if cell_outcome.status == "not run" and not cell_outcome.dir.exists():
            continue
        entry = checked.get(cell_outcome.dir)
        entries.append(entry if entry is not None else collect_experiment(cell_outcome.dir))
    partial_reason = ""
    if outcome.interrupted:
        finished = sum(o.status != "not run" for o in outcome.outcomes)
        partial_reason = (
            f"interrupted ({_signal_name()}) after the last cell; every cell finished"
            if finished == len(outcome.outcomes) else
            f"interrupted ({_signal_name()}) during cell {finished + 1} of "
            f"{len(outcome.outcomes)}; {finished} finished, the interrupted cell keeps what "
            "it recorded")
    return build_results(run_dir, entries, {
        **meta,
        "label": f"racelab {preset}",
        "partial": outcome.partial,
        "partial_reason": partial_reason,
        "skipped": [{"store": s, "reason": r} for s, r in skipped],
    })

