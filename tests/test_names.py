"""reports.analysis.names: every experiment named once, by the analysis, for every view."""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_reports import synthetic_entry, synthetic_results

from reports.analysis.names import cell_label
from reports.render.table import table_text

GTHREAD = "gunicorn-gthread"


def labels(results: dict[str, Any]) -> list[str]:
    return [e["label"] for e in results["experiments"]]


def test_a_one_scenario_run_reads_as_before() -> None:
    """A counter-only run names no scenario: labels, the table (no title line) and one grid."""
    results = synthetic_results([
        synthetic_entry("a", "threaded", "global", "no", anomalies=9),
        synthetic_entry("b", "threaded", "sqlite", "yes"),
        synthetic_entry("c", "gunicorn-sync", "global", "no", anomalies=9, window="yield"),
    ])
    assert labels(results) == ["a", "b", "c"]  # labels someone chose are kept
    for entry in results["experiments"]:
        assert entry["names"]["scenario"] == "counter" and entry["names"]["variant"] == ""
    assert [s["name"] for s in results["scenarios"]] == ["counter"]
    [grid] = results["grid"]
    assert grid["modes"] == ["threaded", "gunicorn-sync"]
    assert grid["stores"] == ["global/none", "global/yield", "sqlite/none"]
    assert grid["cells"] == [["a", None, "b"], [None, "c", None]]
    text = table_text(results, width=100, layout="rows")
    assert text.splitlines()[0].split()[:3] == ["mode", "store", "window"]
    assert "counter" not in text


def test_labels_racelab_wrote_are_named_anew_within_the_run() -> None:
    """A label racelab derived (``global · threaded · none``, as every earlier version wrote
    it) becomes the run's own name for the cell: the scenario first once the run holds two."""
    one = synthetic_entry("a", GTHREAD, "global", "no", anomalies=9,
                          label=f"global · {GTHREAD} · none")
    two = synthetic_entry("b", GTHREAD, "global", "no", anomalies=9, scenario="ids",
                          label=f"global · {GTHREAD} · none")
    assert labels(synthetic_results([one])) == [f"global · {GTHREAD} · none"]
    assert labels(synthetic_results([one, two])) == [
        f"counter · global · {GTHREAD} · none", f"ids · global · {GTHREAD} · none"]


def test_two_scenarios_and_their_variants_are_named_everywhere() -> None:
    """Counter and ids cells under one mode, the session with one tab and four: every
    label, table row and grid names the scenario and the variant, and no two read alike."""
    results = synthetic_results([
        synthetic_entry("c-global", GTHREAD, "global", "no", anomalies=40, label=""),
        synthetic_entry("c-session", GTHREAD, "session", "yes", label=""),
        synthetic_entry("i-global", GTHREAD, "global", "no", anomalies=40, scenario="ids",
                        label=""),
        synthetic_entry("s-one", GTHREAD, "session", "yes", scenario="session", label=""),
        synthetic_entry("s-four", GTHREAD, "session", "no", anomalies=92, scenario="session",
                        tabs=4, label=""),
    ])
    assert labels(results) == [
        f"counter · global · {GTHREAD} · none", f"counter · session · {GTHREAD} · none",
        f"ids · global · {GTHREAD} · none", f"session · session · {GTHREAD} · none",
        f"session · session · {GTHREAD} · none · 4 tabs"]
    assert results["experiments"][-1]["names"]["variant"] == "4 tabs"
    assert [s["name"] for s in results["scenarios"]] == ["counter", "ids", "session"]
    assert [g["scenario"] for g in results["grid"]] == ["counter", "ids", "session"]
    assert results["grid"][2]["stores"] == ["session", "session · 4 tabs"]
    for width in (80, 100, 140):
        text = table_text(results, width=width, layout="rows")
        lines = text.splitlines()
        for scenario in results["scenarios"]:
            assert scenario["title"] in lines
        rows = [line for line in lines if line.startswith(GTHREAD)]
        assert len(rows) == len(set(rows)) == 5
        assert sum("4 tabs" in row for row in rows) == 1
        assert max(len(line) for line in lines) <= width
    grid = table_text(results, width=140, layout="grid")
    assert all(s["title"] in grid for s in results["scenarios"])


def test_interpreters_are_named_where_cells_ran_under_several() -> None:
    """A run under 3.11 and a free-threaded 3.13 names each cell's interpreter; a run under
    one interpreter names none."""
    gil = synthetic_entry("a", "threaded", "global", "yes")
    free = synthetic_entry("b", "threaded", "global", "no", anomalies=30, python="3.13.1",
                           gil=False)
    results = synthetic_results([gil, free])
    assert [e["names"]["variant"] for e in results["experiments"]] == ["3.11.2",
                                                                       "3.13.1 no GIL"]
    assert results["grid"][0]["stores"] == ["global · 3.11.2", "global · 3.13.1 no GIL"]
    assert synthetic_results([free])["experiments"][0]["names"]["variant"] == ""


def test_two_cells_alike_are_told_apart() -> None:
    """The same configuration twice: the second label and grid column carry ``(2)``."""
    results = synthetic_results([synthetic_entry("a", "threaded", "global", "yes", label=""),
                                 synthetic_entry("b", "threaded", "global", "yes", label="")])
    assert labels(results) == ["global · threaded · none", "global · threaded · none (2)"]
    assert results["grid"][0]["stores"] == ["global", "global (2)"]


def test_cell_label_is_what_the_spec_records() -> None:
    """ExperimentSpec.label (the progress line, summary.json) is ``cell_label``."""
    from scenarios.run.spec import ExperimentSpec

    spec = ExperimentSpec(scenario="session", store="session", mode=GTHREAD, tabs=4)
    assert spec.label == cell_label({"scenario": "session", "store": "session",
                                     "mode": GTHREAD, "window": "none", "tabs": 4})
    assert spec.label == f"session · session · {GTHREAD} · none · 4 tabs"
    assert ExperimentSpec(store="lock", mode="threaded").label == "lock · threaded · none"


TWO_SCENARIOS = f"""
name = "two-scenarios"
description = "The counter and the ids under one mode; the session with one tab and four."
budget_s = 5
interpreters = false

[swarm]
users = 8
requests = 160

[server]
workers = 2
threads = 4

[[cells]]
stores = ["global", "sqlite"]
windows = ["none"]
modes = ["{GTHREAD}"]

[[cells]]
scenario = "ids"
stores = ["global", "sqlite"]
windows = ["none"]
modes = ["{GTHREAD}"]

[[cells]]
scenario = "session"
stores = ["session"]
windows = ["none"]
modes = ["{GTHREAD}"]

[[cells]]
scenario = "session"
stores = ["session"]
windows = ["none"]
modes = ["{GTHREAD}"]
tabs = 4
"""


def test_a_two_scenario_demo_names_each_cell_in_every_view(tmp_path: Path) -> None:
    """A real demo of two scenarios (and the session's tabs): results.json, the terminal
    table (through a pipe at 80 columns) and report.html name each cell's scenario and
    variant, no two rows of the report read the same, each scenario has its own heatmap,
    and no cost-of-safety plot holds two scenarios."""
    preset = tmp_path / "two.toml"
    preset.write_text(TWO_SCENARIOS)
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "cli", "demo", "--preset", str(preset),
                           "--out", str(run_dir)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "80"}, check=False)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((run_dir / "results.json").read_text())
    entries = results["experiments"]
    assert [e["names"]["scenario"] for e in entries] == ["counter"] * 2 + ["ids"] * 2 + [
        "session"] * 2
    assert len({e["label"] for e in entries}) == len(entries) == 6
    assert all(e["label"].startswith(e["names"]["scenario"] + " · ") for e in entries)
    assert [e["names"]["variant"] for e in entries][-2:] == ["", "4 tabs"]
    # The terminal: each scenario under its title, one line per cell, the variant on its line.
    lines = [line.rstrip() for line in proc.stdout.splitlines()]
    titles = [lines.index(s["title"]) for s in results["scenarios"]]
    assert titles == sorted(titles)
    for start, end, count in zip(titles, [*titles[1:], len(lines)], (2, 2, 2), strict=True):
        rows = [line for line in lines[start:end] if line.startswith(GTHREAD)]
        assert len(rows) == len(set(rows)) == count
    assert "4 tabs" in [line for line in lines if line.startswith(GTHREAD)][-1]
    assert max(len(line) for line in lines) <= 80
    # The report: every row of its table reads differently, and names its scenario.
    html = (run_dir / "report.html").read_text()
    table = html.split('class="summary-table"')[1].split("</table>")[0].split("</thead>")[1]
    texts = [re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", row))).strip()
             for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)]
    assert len(texts) == len(set(texts)) == 6
    assert all(any(e["label"] in t for t in texts) for e in entries)
    for scenario in results["scenarios"]:
        assert html_lib.unescape(html).count(scenario["title"]) >= 2  # its rows, its heatmap
    assert html.count('class="heatmap"') == 3 and "session · 4 tabs" in html
    # The cost of safety: the counter's stores and the ids' apart, the session's none.
    scenario_of = {e["id"]: e["names"]["scenario"] for e in entries}
    plots = results["plots"]["cost"]
    assert [p["scenario"] for p in plots] == ["counter", "ids"]
    for plot in plots:
        assert {scenario_of[b["id"]] for b in plot["bars"]} == {plot["scenario"]}
        assert (run_dir / f"{plot['stem']}.png").is_file()


@pytest.mark.parametrize("width", [80, 100])
def test_a_table_too_wide_for_any_layout_wraps_at_a_space(width: int) -> None:
    """A label no layout fits (a long app path) wraps its last column at a space: no word is
    cut, and every line stays within the width."""
    entry = synthetic_entry("a", GTHREAD, "global", "no", anomalies=9)
    entry["config"]["app"] = "some/deeply/nested/path/to/an/application/module_file.py:app"
    entry["verdict"]["counts"]["duplicate_extra_cross_process"] = 3
    entry["failure_modes"] = ["interleaving", "separate-copies", "per-request"]
    text = table_text(synthetic_results([entry]), width=width, layout="rows")
    words = " ".join(text.split())
    assert "interleaving" in words and "separate copies" in words
    assert max(len(line) for line in text.splitlines()) <= width


def test_a_classroom_shaped_table_at_80_columns_keeps_every_row_and_mode_whole() -> None:
    """Two interpreters, a read-then-write store and three failure modes in one scenario:
    too wide for a one-line row at 80 columns, so each failure mode gets a line of its own
    under its row; no line is wider than 80, every row and every failure mode is whole on
    one line, and each interpreter is named once, above its rows."""
    entries = [
        synthetic_entry("a", GTHREAD, "global", "no", anomalies=40, label=""),
        synthetic_entry("b", "gunicorn-sync", "postgres", "no", anomalies=9, label=""),
        synthetic_entry("c", "threaded", "global", "no", anomalies=3, label="",
                        python="3.13.1", gil=False),
        synthetic_entry("d", "threaded", "lock", "yes", label="", python="3.13.1", gil=False),
    ]
    entries[0]["failure_modes"] = ["interleaving", "separate-copies", "per-request"]
    entries[1]["config"]["update"] = "read-write"
    results = synthetic_results(entries)
    text = table_text(results, width=80, layout="rows")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines.count("served by 3.11.2") == lines.count("served by 3.13.1 no GIL") == 1
    for entry in results["experiments"]:
        names = entry["names"]
        row = [line for line in lines if line.startswith(names["mode"] + " ")
               and f"{names['store']}/{names['window']}" in line]
        assert len(row) == 1, (names, text)
        below = lines[lines.index(row[0]) + 1]
        assert below.startswith("  ") and below.strip(), text
    assert "  interleaving, separate copies, per request" in lines
