"""What a run directory holds beside its history: ``final.json`` and ``summary.json``.

``run_experiment`` and ``run_probe`` write them the same way; the analysis
(``reports.analysis.results``) reads them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo_server.basics.files import write_text

if TYPE_CHECKING:
    from loadtests.runner import SwarmResult

__all__ = ["SCHEMA", "write_summary"]

#: The version of ``summary.json``'s layout.
SCHEMA = 1


def write_summary(run_dir: Path, summary: dict[str, Any], result: SwarmResult | None,
                   final: dict[str, Any]) -> None:
    """Write what happened (``final.json``, ``summary.json``); the analysis reads them."""
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
    }
    summary["finished_wall"] = time.time()
    summary["elapsed_s"] = round(summary["finished_wall"] - summary["started_wall"], 3)
    write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
