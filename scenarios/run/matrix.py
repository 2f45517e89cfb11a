"""Run a matrix: every cell in turn (server up, swarm, final state, server down, check).

A cell that fails is recorded as unknown with its reason and the others still
run; Ctrl-C stops the current cell's processes, keeps the finished cells and
marks the run partial. External stores that cannot be reached are skipped with
one line saying how to enable them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from demo_server.basics import interrupts
from demo_server.basics.errors import ConfigError, RacelabError
from demo_server.basics.files import write_text
from demo_server.control.interpreter import resolve
from demo_server.served.config import Connections, ServerConfig
from scenarios.counter.stores import store_class
from scenarios.run.presets import Cell

__all__ = [
    "CellOutcome",
    "MatrixOutcome",
    "MatrixProgress",
    "reachable_optional_stores",
    "ready_interpreters",
    "run_cell_repeated",
    "run_matrix",
    "scale_cells",
]

#: What running one cell returns: its verdict ("yes" / "no" / "unknown") and counts.
CellRunner = Callable[[Cell, Path], dict[str, Any]]


@dataclasses.dataclass
class CellOutcome:
    """What became of one cell."""

    cell: Cell
    dir: Path
    status: str  # "done", "failed" (unknown, with error) or "not run"
    valid: str = "unknown"
    error: str = ""
    anomalies: int = 0
    elapsed_s: float = 0.0
    failure_modes: list[str] = dataclasses.field(default_factory=list)
    #: a safe cell's bound on its anomaly rate (``reports.analysis.bounds.safe_bound``)
    safe_bound: dict[str, Any] | None = None


@dataclasses.dataclass
class MatrixOutcome:
    run_dir: Path
    outcomes: list[CellOutcome]
    skipped: list[tuple[str, str]]  # (store, reason)
    interrupted: bool
    elapsed_s: float
    #: the signals counted, not raised, since the last cell ended (``run_matrix``'s ``after``)
    after_cells: interrupts.Deferred | None = None

    @property
    def partial(self) -> bool:
        return self.interrupted or any(o.status == "not run" for o in self.outcomes)


class MatrixProgress(Protocol):
    def cell_started(self, index: int, total: int, cell: Cell, elapsed: float,
                     remaining: float | None) -> None: ...

    def cell_finished(self, index: int, total: int, outcome: CellOutcome,
                      anomalous_cells: int) -> None: ...


def reachable_optional_stores(
    cells: Sequence[Cell], connections: Connections
) -> tuple[list[Cell], list[tuple[str, str]]]:
    """Drop optional cells whose store cannot be reached; say why for each store.

    Returns:
        The cells to run and ``(store, reason)`` for every store skipped.
    """
    verdicts: dict[str, str | None] = {}
    for store in dict.fromkeys(c.store for c in cells if c.optional):
        try:
            store_class(store).prepare(ServerConfig(
                store=store, redis_url=connections.redis_url,
                postgres_dsn=connections.postgres_dsn, memcached=connections.memcached,
                session_backend=connections.session_backend))
            verdicts[store] = None
        except RacelabError as exc:
            verdicts[store] = str(exc)
    kept = [c for c in cells if not c.optional or verdicts.get(c.store) is None]
    skipped = [(s, r) for s, r in verdicts.items() if r is not None]
    return kept, skipped


def ready_interpreters(
    cells: Sequence[Cell], connections: Connections,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Cell], list[tuple[str, str]]]:
    """Find, and prepare, the interpreter of every cell that names one (``python``).

    Each cell's ``python`` becomes the short name of what it found (``3.13t``, or
    the path when no version names it alone), so that ids, labels and the
    reproduce command say which interpreter served it; racelab's own becomes ``""``.

    A cell whose interpreter cannot serve it is left out, with the reason: an
    optional cell whose interpreter is not on this machine (the classroom's
    free-threaded cells), and any cell whose packages cannot be had there (a
    store's client without a wheel for that build) or whose mode it cannot run
    (gevent on a free-threaded build).

    Raises:
        ConfigError: a cell that is not optional names an interpreter that cannot
            be found or used at all (no such file, not a Python, too old).
    """
    kept: list[Cell] = []
    skipped: dict[tuple[str, str], None] = {}
    for cell in cells:
        if not cell.python:
            kept.append(cell)
            continue
        try:
            found = resolve(cell.python)
        except ConfigError as exc:
            if not cell.optional:
                raise
            skipped[(f"python {cell.python}", str(exc))] = None
            continue
        name = "" if found.is_own else found.short
        if name and _resolves_elsewhere(name, found.path):
            name = found.path
        cell = dataclasses.replace(cell, python=name)
        try:
            cell.spec().connected(connections).server_python(progress)
        except RacelabError as exc:
            what = cell.store if "cannot be installed" in str(exc) else cell.mode
            skipped[(f"{what} on python {name}", str(exc))] = None
            continue
        kept.append(cell)
    unique = {cell.id: cell for cell in reversed(kept)}  # a cell named twice runs once
    return [c for c in kept if unique.get(c.id) is c], list(skipped)


def _resolves_elsewhere(name: str, path: str) -> bool:
    try:
        return resolve(name).path != path
    except ConfigError:
        return True


def scale_cells(cells: Sequence[Cell], factor: float, minimum: int = 60) -> list[Cell]:
    """Scale every cell's request count by ``factor`` (never below ``minimum``)."""
    return [
        dataclasses.replace(c, requests=max(minimum, min(c.requests * 20,
                                                         round(c.requests * factor))))
        for c in cells
    ]


def run_cell_repeated(run_cell: CellRunner, cell: Cell, cell_dir: Path) -> dict[str, Any]:
    """Run a cell ``cell.repeat`` times and return what its own run found.

    The further runs go first, into ``cell_dir/repeats/<n>/`` (a failed one is
    left as its runner recorded it), so that the cell's own run, last, is
    checked with all of them at hand (``reports.analysis.annotate`` counts how often it raced).
    """
    for n in range(2, cell.repeat + 1):
        # A failed run stays unknown in the count, with its reason in its summary.
        with contextlib.suppress(RacelabError):
            run_cell(cell, cell_dir / "repeats" / f"{n:02d}")
    return run_cell(cell, cell_dir)


def run_matrix(
    cells: Sequence[Cell],
    run_dir: Path,
    run_cell: CellRunner,
    progress: MatrixProgress | None = None,
    skipped: Sequence[tuple[str, str]] = (),
    meta: dict[str, Any] | None = None,
    after: contextlib.ExitStack | None = None,
) -> MatrixOutcome:
    """Run every cell into ``run_dir/cells/<nn>-<id>/`` and record the plan in ``matrix.json``.

    Args:
        cells: the cells to run, in order.
        run_dir: the run directory (created).
        run_cell: runs one cell into a directory and returns at least ``valid``
            and ``anomalies``; a ``RacelabError`` marks the cell failed.
        progress: told when each cell starts and ends.
        skipped: stores left out before the run, with the reason.
        meta: anything to keep in ``matrix.json`` (preset, command, budget).
        after: from the moment the last cell ends, INT, TERM and HUP are counted, not
            raised (``interrupts.deferred()``, entered into this stack, which the caller
            closes once the run's results are written): a signal then cannot lose the
            finished cells. ``MatrixOutcome.after_cells`` holds what came.

    Returns:
        What became of every cell; cells not reached after Ctrl-C are "not run".
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    outcomes = [
        CellOutcome(cell, run_dir / "cells" / f"{i:02d}-{cell.id}", "not run",
                    error="not run: the run was interrupted")
        for i, cell in enumerate(cells, 1)
    ]
    interrupted = False
    anomalous = 0
    tail: interrupts.Deferred | None = None
    try:
        for index, outcome in enumerate(outcomes, 1):
            elapsed = time.monotonic() - start
            remaining = elapsed / (index - 1) * (len(outcomes) - index + 1) if index > 1 else None
            if progress:
                progress.cell_started(index, len(outcomes), outcome.cell, elapsed, remaining)
            cell_start = time.monotonic()
            try:
                found = run_cell_repeated(run_cell, outcome.cell, outcome.dir)
                outcome.status = "done"
                outcome.valid = str(found.get("valid", "unknown"))
                outcome.anomalies = int(found.get("anomalies", 0))
                outcome.failure_modes = list((found.get("entry") or {}).get("failure_modes")
                                             or ())
                outcome.safe_bound = (found.get("entry") or {}).get("safe_bound")
                outcome.error = str(found.get("reason", "")) if outcome.valid == "unknown" else ""
            except RacelabError as exc:
                outcome.status, outcome.valid, outcome.error = "failed", "unknown", str(exc)
            outcome.elapsed_s = time.monotonic() - cell_start
            anomalous += outcome.valid == "no"
            if progress:
                progress.cell_finished(index, len(outcomes), outcome, anomalous)
        if after is not None:  # inside the try: a signal before this line is an interrupt
            tail = after.enter_context(interrupts.deferred())
    except KeyboardInterrupt:
        interrupted = True
        for outcome in outcomes:
            if outcome.status == "not run" and outcome.dir.exists():
                outcome.error = "interrupted while this cell was running"
    if after is not None and tail is None:  # interrupted: later signals raise nothing anyway
        tail = after.enter_context(interrupts.deferred())
    outcome_all = MatrixOutcome(run_dir, outcomes, list(skipped), interrupted,
                                time.monotonic() - start, tail)
    write_matrix_json(outcome_all, meta or {})
    return outcome_all


def write_matrix_json(result: MatrixOutcome, meta: dict[str, Any]) -> Path:
    """Save the plan and the outcome of every cell, so a report can be rebuilt later."""
    path = result.run_dir / "matrix.json"
    data = {
        "schema": 1,
        **meta,
        "partial": result.partial,
        "interrupted": result.interrupted,
        "elapsed_s": round(result.elapsed_s, 3),
        "skipped": [{"store": s, "reason": r} for s, r in result.skipped],
        "cells": [
            {
                "id": o.cell.id,
                "label": o.cell.label,
                "dir": str(o.dir.relative_to(result.run_dir)),
                "status": o.status,
                "valid": o.valid,
                "anomalies": o.anomalies,
                "error": o.error,
                "elapsed_s": round(o.elapsed_s, 3),
                "cell": dataclasses.asdict(o.cell),
            }
            for o in result.outcomes
        ],
    }
    write_text(path, json.dumps(data, indent=2))
    return path
