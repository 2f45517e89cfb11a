"""The matrix's progress lines: a safe cell says what its verdict rests on."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from reports.analysis.bounds import safe_bound
from scenarios.run.matrix import CellOutcome
from scenarios.run.presets import Cell
from scenarios.run.progress import MatrixConsoleProgress


def _line(outcome: CellOutcome) -> str:
    out = io.StringIO()
    progress = MatrixConsoleProgress(Console(file=out, width=200, force_terminal=False))
    progress.cell_finished(1, 2, outcome, 0)
    return out.getvalue()


def test_a_safe_cell_prints_its_bound_and_a_race_its_count() -> None:
    """safe (0 in 400 ok: <0.75% at 95% confidence); race (N anomalies: failure mode)."""
    cell = Cell(store="sqlite", window="none", mode="gunicorn-sync")
    bound = safe_bound({"verdict": {"valid": "yes"}, "ops": {"ok": 400}})
    safe = CellOutcome(cell, Path("x"), "done", valid="yes", safe_bound=bound)
    assert "safe (0 in 400 ok: <0.75% at 95% confidence)" in _line(safe)
    race = CellOutcome(cell, Path("x"), "done", valid="no", anomalies=7,
                       failure_modes=["separate-copies"])
    assert "race (7 anomalies: separate copies)" in _line(race)
