"""reports.analysis.failure_modes: which mistake each anomalous history shows, and its word."""

from __future__ import annotations

import json
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


def _foreign(exp_dir: Path) -> Path:
    """Make an experiment written by make_experiment look like a user's app (--app)."""
    summary_path = exp_dir / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["experiment"].update(app="shop.py:app", store="", window="", check="counter")
    summary_path.write_text(json.dumps(summary))
    final_path = exp_dir / "final.json"
    final = json.loads(final_path.read_text())
    final["per_process"] = None  # racelab does not know how a foreign app keeps its state
    final_path.write_text(json.dumps(final))
    return exp_dir


@pytest.mark.parametrize(("kind", "modes", "state"), [
    ("race", ["shared-lost-update"], "shared"),  # one counter, its numbers spread over pids
    ("per-process", ["separate-copies"], "separate"),  # each pid counts 1, 2, 3, ...
])
def test_a_foreign_apps_failure_mode_is_told_from_its_values(
        tmp_path: Path, kind: str, modes: list[str], state: str) -> None:
    """With no store to go by, the values per process tell one shared state updated in two
    steps from a copy per process; the stored evidence gives the same names later."""
    exp = _foreign(make_experiment(tmp_path / "exp", kind=kind, mode="gunicorn-sync",
                                   pids=(41, 42)))
    entry = collect_experiment(exp)
    assert entry["failure_modes"] == modes
    assert entry["sharing"]["state"] == state and entry["sharing"]["source"] == "history"
    recomputed = {k: v for k, v in entry.items() if k != "failure_modes"}
    assert failure_modes(recomputed) == modes


def test_when_the_evidence_cannot_tell_the_report_says_so(tmp_path: Path) -> None:
    """Four values per process and one final read: neither shared nor separate is claimed for
    a foreign app; the failure mode says it cannot tell, and the report prints why."""
    exp = _foreign(make_experiment(tmp_path / "run" / "cells" / "app", kind="race",
                                   mode="gunicorn-sync", pids=(41, 42), ops=8))
    entry = collect_experiment(exp)
    assert entry["verdict"]["valid"] == "no"
    assert entry["failure_modes"] == ["sharing-unknown"]
    assert entry["sharing"]["state"] is None
    assert "neither the history nor the final state" in entry["sharing"]["why"]
    assert all(witness_mode(entry, w) == "sharing-unknown"
               for w in entry["verdict"]["witnesses"]
               if (w.get("details") or {}).get("scope") == "cross-process")
    html = render_run(tmp_path / "run", formats=("html",))["html"].read_text(encoding="utf-8")
    assert "shared or separate: cannot tell" in html
    assert "How the processes held the state: neither the history" in html


def test_racelab_shared_store_falls_back_on_what_it_knows(tmp_path: Path) -> None:
    """racelab's own redis store with too little history: the store's nature stands in (one
    shared state), said to come from the store, not from evidence."""
    entry = collect_experiment(make_experiment(tmp_path / "exp", kind="race", store="redis",
                                               mode="gunicorn-sync", pids=(41, 42), ops=8))
    assert entry["failure_modes"] == ["shared-lost-update"]
    assert entry["sharing"] == {"state": "shared", "source": "store",
                                "why": "the redis store keeps one state every process reads "
                                       "and writes"}
