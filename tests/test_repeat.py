"""--repeat: a cell run N times, the further runs in repeats/<n>/, k of N in the report."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from test_reports import make_experiment

from demo_server import ServerNotReady
from reports.analysis.results import collect_experiment, load_results
from reports.render.html import render_run
from reports.render.table import table_text
from scenarios.run.matrix import run_cell_repeated, run_matrix
from scenarios.run.presets import Cell, load_preset


def test_a_cell_runs_n_times_its_own_run_last(tmp_path: Path) -> None:
    """repeat=3: runs into repeats/02, repeats/03, then the cell's own directory."""
    seen: list[Path] = []

    def run_cell(cell: Cell, cell_dir: Path) -> dict:
        seen.append(cell_dir)
        return {"valid": "no", "anomalies": 1}

    cell = Cell(store="global", window="none", mode="threaded", users=2, requests=100,
                repeat=3)
    found = run_cell_repeated(run_cell, cell, tmp_path / "c")
    assert seen == [tmp_path / "c" / "repeats" / "02", tmp_path / "c" / "repeats" / "03",
                    tmp_path / "c"]
    assert found == {"valid": "no", "anomalies": 1}


def test_a_failed_repeat_does_not_stop_the_cell(tmp_path: Path) -> None:
    """A further run whose server never starts is skipped; the matrix still runs the cell."""
    calls: list[str] = []

    def run_cell(cell: Cell, cell_dir: Path) -> dict:
        calls.append(cell_dir.name)
        if cell_dir.name == "02":
            raise ServerNotReady("no answer")
        return {"valid": "yes", "anomalies": 0}

    cell = Cell(store="global", window="none", mode="threaded", users=2, requests=100,
                repeat=3)
    result = run_matrix([cell], tmp_path, run_cell)
    assert calls == ["02", "03", "01-global-none-threaded"]
    assert result.outcomes[0].status == "done" and result.outcomes[0].valid == "yes"


def test_presets_and_the_command_line_set_repeat(tmp_path: Path) -> None:
    """repeat in [swarm] is every group's default; a group may set its own."""
    path = tmp_path / "p.toml"
    path.write_text('[swarm]\nrepeat = 3\n'
                    '[[cells]]\nstores = ["global"]\nwindows = ["none"]\nmodes = ["threaded"]\n'
                    '[[cells]]\nstores = ["sqlite"]\nwindows = ["none"]\nmodes = ["threaded"]\n'
                    'repeat = 5\n')
    cells = load_preset(str(path)).cells
    assert [c.repeat for c in cells] == [3, 5]
    assert all(c.repeat == 1 for c in load_preset("quick").cells)
    assert dataclasses.replace(cells[0], repeat=2).id == cells[0].id


def test_k_of_n_in_results_table_and_report(tmp_path: Path) -> None:
    """Five runs of which three raced: results.json, the table and the HTML say 3 of 5."""
    run = tmp_path / "run"
    cell = run / "cells" / "01-global-yield-threaded"
    make_experiment(cell, window="yield", kind="race")
    for n, kind in ((2, "safe"), (3, "race"), (4, "race"), (5, "safe")):
        make_experiment(cell / "repeats" / f"{n:02d}", window="yield", kind=kind)
    make_experiment(run / "cells" / "02-sqlite-none-threaded", store="sqlite", kind="safe")
    entry = collect_experiment(cell)
    assert entry["repeats"]["runs"] == 5 and entry["repeats"]["raced"] == 3
    assert entry["repeats"]["valid"] == ["no", "yes", "no", "no", "yes"]
    assert entry["repeats"]["dirs"] == [f"repeats/0{n}" for n in (2, 3, 4, 5)]
    html = render_run(run, formats=("html",))["html"].read_text(encoding="utf-8")
    assert "raced in 3 of 5 runs (Wilson 95% interval" in html
    assert "3/5 runs raced" in html
    results = load_results(run)
    row = next(line for line in table_text(results, layout="rows", width=140).splitlines()
               if "yield" in line)
    assert re.search(r" interleaving +3/5 ", row), row  # the raced column, after the mode
    assert "3/5 runs raced" in table_text(results, layout="grid", width=140)
    assert [e["id"] for e in results["experiments"]] == ["01-global-yield-threaded",
                                                         "02-sqlite-none-threaded"]
