"""Progress of a matrix on the terminal: cell i of n, elapsed and remaining time, anomalies."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from reports.analysis.bounds import bound_short
from reports.analysis.failure_modes import label_of, mode_names
from scenarios.run.matrix import CellOutcome
from scenarios.run.presets import Cell

__all__ = ["MatrixConsoleProgress"]

def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class MatrixConsoleProgress:
    """Prints one line per finished cell to stderr, with a live status line on a terminal.

    Args:
        console: where to print (stderr by default, so stdout stays clean for ``--json``).
        quiet: print nothing.
    """

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.quiet = quiet
        self._status: Any = None

    def cell_started(self, index: int, total: int, cell: Cell, elapsed: float,
                     remaining: float | None) -> None:
        if self.quiet:
            return
        text = (f"cell {index}/{total}: {cell.label}  ·  elapsed {_clock(elapsed)}"
                f"  ·  about {_clock(remaining)} left")
        if self.console.is_terminal:
            if self._status is None:
                self._status = self.console.status(text)
                self._status.start()
            else:
                self._status.update(text)

    def cell_finished(self, index: int, total: int, outcome: CellOutcome,
                      anomalous_cells: int) -> None:
        if self.quiet:
            return
        verdict = label_of(outcome.valid, outcome.failure_modes)
        style = {"safe": "green", "race": "red bold", "unknown": "yellow",
                 "per-request": "magenta bold"}.get(verdict, "")
        names = ", ".join(mode_names(outcome.failure_modes))
        detail = (f" ({outcome.anomalies} anomalies{': ' + names if names else ''})"
                  if outcome.valid == "no" else "")
        if verdict == "safe" and outcome.safe_bound:
            detail = (f" (0 in {int(outcome.safe_bound['ok']):,} ok: "
                      f"{bound_short(outcome.safe_bound)} confidence)")
        if outcome.valid == "unknown" and outcome.error:
            detail = f" ({outcome.error.splitlines()[0][:120]})"
        self.console.print(
            f"[{index:>2}/{total}] {outcome.cell.label:<36} [{style}]{verdict}[/]{detail}"
            f"  {outcome.elapsed_s:.1f}s  ·  {anomalous_cells} anomalous so far",
            markup=True,
            soft_wrap=True,
        )
        if index == total:
            self.close()

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


