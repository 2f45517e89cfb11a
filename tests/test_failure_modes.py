"""reports.analysis.failure_modes: which mistake each anomalous history shows, and its word."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_reports import make_experiment

from reports.analysis.failure_modes import failure_modes, modes_of, verdict_label, witness_mode
from reports.analysis.results import collect_experiment
from reports.render.html import render_run
from reports.render.table import table_text


@pytest.mark.parametrize(
    ("options", "modes", "label"),
    [
        ({"kind": "race"}, ["interleaving"], "race"),
        ({"kind": "per-process", "mode": "gunicorn-sync", "pids": (41, 42)},
         ["separate-copies"], "race"),
        ({"kind": "all-ones", "store": "g"}, ["per-request"], "per-request"),
        ({"kind": "all-ones", "store": "g", "mode": "gunicorn-sync", "pids": (41, 42)},
         ["per-request"], "per-request"),
        # A fork per request: every value 1, each from a process of its own.
        ({"kind": "all-ones", "mode": "processes", "pids": tuple(range(100, 400))},
         ["separate-copies", "per-request"], "per-request"),
        ({"kind": "race", "pid_known": False}, ["process-unknown"], "race"),
        ({"kind": "safe"}, [], "safe"),
    ],
)
def test_failure_modes_from_histories(tmp_path: Path, options: dict, modes: list[str],
                                      label: str) -> None:
    """Each history names the mistake it shows, stored in results.json once."""
    entry = collect_experiment(make_experiment(tmp_path / "exp", **options))
    assert entry["failure_modes"] == modes
    assert verdict_label(entry) == label
    # Without the history, the stored verdict counts give the same names.
    recomputed = {k: v for k, v in entry.items() if k != "failure_modes"}
    assert failure_modes(recomputed) == modes
    assert modes_of(recomputed) == modes


def test_no_pids_names_neither_threads_nor_processes(tmp_path: Path) -> None:
    """A history without server pids never says interleaving or separate copies."""
    entry = collect_experiment(make_experiment(tmp_path / "exp", kind="race", pid_known=False))
    assert not {"interleaving", "separate-copies"} & set(entry["failure_modes"])
    assert all(witness_mode(entry, w) == "process-unknown"
               for w in entry["verdict"]["witnesses"])


def test_session_lost_update_is_named() -> None:
    """The session checker's repeated numbers within one client are a lost session update."""
    entry = {"config": {"store": "session"},
             "verdict": {"checker": "session", "valid": "no",
                         "counts": {"lost_updates": 2, "isolation_breaches": 0,
                                    "stale_reads": 0, "anomalies": 2},
                         "witnesses": [{"kind": "lost-update", "details": {}}]}}
    assert failure_modes(entry) == ["lost-session-update"]
    assert witness_mode(entry, entry["verdict"]["witnesses"][0]) == "lost-session-update"
    entry["verdict"]["counts"]["isolation_breaches"] = 1
    assert failure_modes(entry) == ["lost-session-update", "isolation-breach"]


def test_g_never_reads_race_anywhere(tmp_path: Path) -> None:
    """A flask.g cell is 'per-request' in the table, the heatmap's report and the HTML."""
    run = tmp_path / "run"
    make_experiment(run / "cells" / "threaded-g", store="g", kind="all-ones")
    make_experiment(run / "cells" / "threaded-global", kind="race")
    written = render_run(run, formats=("html", "md"))
    html = written["html"].read_text(encoding="utf-8")
    section = html.split('id="exp-1"')[1].split("</section>")[0]
    assert 'v-per-request">per-request<' in section and "v-race" not in section
    assert "Nothing raced" in section
    md = written["md"].read_text(encoding="utf-8")
    assert "threaded-g: per-request" in md
    from reports.analysis.results import load_results

    text = table_text(load_results(run), layout="rows")
    g_row = next(line for line in text.splitlines() if " g " in line)
    assert "per-request" in g_row and "race" not in g_row


def test_each_anomalous_cell_names_its_failure_mode_in_the_report(tmp_path: Path) -> None:
    """Witnesses and the summary table carry the failure mode's name."""
    run = tmp_path / "run"
    make_experiment(run / "cells" / "sync-global", mode="gunicorn-sync", kind="per-process",
                    pids=(41, 42))
    make_experiment(run / "cells" / "threaded-global", kind="race")
    html = render_run(run, formats=("html",))["html"].read_text(encoding="utf-8")
    assert html.count('class="fmode">separate copies<') >= 2  # table, meaning, witnesses
    assert html.count('class="fmode">interleaving<') >= 2
