"""What a report explains about one experiment, computed once, beside its check.

``annotate(entry, table, repeats)`` returns the fields results.json gains per
experiment; ``reports.analysis.results.collect_experiment`` stores them:

- ``sharing``: whether the processes shared one state or each had a copy, and the
  evidence (``reports.analysis.sharing``);
- ``failure_modes``: which mistakes an anomalous cell shows (``reports.analysis.failure_modes``);
- ``safe_bound``: the upper bound on the anomaly rate a safe cell earns (``bounds``);
- ``interleaving``: the racy method's bytecode under the server's interpreter and
  one reconstructed schedule, for a within-process duplicate (``reports.analysis.bytecode``);
- ``repeats``: how often the cell raced when it was run several times
  (``cells/<id>/repeats/<n>/``, written by ``racelab matrix --repeat N``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reports.analysis.bounds import repeats_summary, safe_bound
from reports.analysis.bytecode import interleaving
from reports.analysis.failure_modes import failure_modes
from reports.analysis.sharing import sharing

if TYPE_CHECKING:
    from reports.history.table import HistoryTable

__all__ = ["REPEATS_DIR", "annotate", "repeat_dirs"]

REPEATS_DIR = "repeats"


def repeat_dirs(exp_dir: Path) -> list[Path]:
    """The further runs of a cell: ``<exp_dir>/repeats/<n>/``, in order."""
    root = Path(exp_dir) / REPEATS_DIR
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name))


def _repeats(
    entry: Mapping[str, Any], others: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    if not others:
        return None
    runs = [entry, *others]
    summary = repeats_summary([str((e.get("verdict") or {}).get("valid")) for e in runs])
    if summary is not None:
        summary["anomalies"] = [e.get("anomalies") for e in runs]
        summary["dirs"] = [f"{REPEATS_DIR}/{e['dir']}" for e in others]
    return summary


def annotate(
    entry: Mapping[str, Any], table: HistoryTable | None = None,
    repeats: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The explanatory fields of one checked experiment.

    Args:
        entry: the experiment entry with its verdict, config, ops and final state.
        table: its history, when it could be read.
        repeats: the entries of the cell's further runs (``repeat_dirs``), each
            with its directory's name under ``dir``.

    Returns:
        ``{"sharing", "failure_modes", "safe_bound", "interleaving", "repeats"}``.
    """
    found = sharing(entry, table)
    out: dict[str, Any] = {"sharing": found,
                           "failure_modes": failure_modes({**entry, "sharing": found}, table),
                           "safe_bound": safe_bound(entry)}
    out["interleaving"] = interleaving({**entry, **out}, table)
    out["repeats"] = _repeats(entry, repeats)
    return out
