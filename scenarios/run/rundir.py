"""What a run directory holds beside its history: ``final.json`` and ``summary.json``.

``run_experiment`` and ``run_probe`` write them the same way; the analysis
(``reports.analysis.results``) reads them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo_server.basics.files import write_text

if TYPE_CHECKING:
    from loadtests.runner import SwarmResult

__all__ = ["SCHEMA", "lost_sentence", "write_summary"]

#: The version of ``summary.json``'s layout.
SCHEMA = 1


def lost_sentence(lost: Sequence[Mapping[str, Any]]) -> str:
    """One sentence naming the load generators that died (``SwarmResult.lost``)."""
    if not lost:
        return ""
    more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
    return (f"the load generator died: {lost[0].get('detail') or 'a Locust process'}{more}; "
            "the history lacks its last operations")


def write_summary(run_dir: Path, summary: dict[str, Any], result: SwarmResult | None,
                   final: dict[str, Any]) -> None:
    """Write what happened (``final.json``, ``summary.json``); the analysis reads them.

    A swarm whose load generator died is never ``ok``: the error names it.
    """
    lost = list(result.lost) if result is not None else []
    if lost:
        summary["status"] = "failed"
        summary["error"] = "; ".join(p for p in (lost_sentence(lost), summary["error"]) if p)
    cut_short = summary["error"] if summary["status"] != "ok" else ""
    if cut_short:  # so that a check of these files alone knows the history may lack rows
        final = {**final, "cut_short": cut_short}
    write_text(run_dir / "final.json", json.dumps(final, indent=2))
    summary["swarm"] = {
        "locust_requests": result.locust_requests if result else 0,
        "locust_failures": result.locust_failures if result else 0,
        "rows": result.rows if result else None,
        "timed_out": bool(result and result.timed_out),
        "bursts": list(result.bursts) if result else [],
        "lost": lost,
    }
    summary["finished_wall"] = time.time()
    summary["elapsed_s"] = round(summary["finished_wall"] - summary["started_wall"], 3)
    write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
