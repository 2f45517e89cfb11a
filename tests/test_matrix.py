"""The matrix loop: failures become unknown cells, Ctrl-C keeps finished cells, plan saved."""

from __future__ import annotations

import json
from pathlib import Path

from demo_server import ServerNotReady
from demo_server.served.config import Connections
from scenarios.run.matrix import reachable_optional_stores, run_matrix, scale_cells
from scenarios.run.presets import Cell


def _cells(n: int) -> list[Cell]:
    return [Cell(store="global", window="none", mode="threaded", users=2, requests=100 + i)
            for i in range(n)]


def test_a_failing_cell_is_unknown_and_the_rest_still_run(tmp_path) -> None:
    """A cell whose server never starts is recorded unknown with the reason; others run."""

    def run_cell(cell: Cell, cell_dir: Path) -> dict:
        if cell.requests == 101:
            raise ServerNotReady("server exited with code 1 before answering")
        return {"valid": "no", "anomalies": 3}

    result = run_matrix(_cells(3), tmp_path, run_cell)
    assert [o.status for o in result.outcomes] == ["done", "failed", "done"]
    assert result.outcomes[1].valid == "unknown"
    assert "exited with code 1" in result.outcomes[1].error
    assert not result.partial
    saved = json.loads((tmp_path / "matrix.json").read_text())
    assert [c["valid"] for c in saved["cells"]] == ["no", "unknown", "no"]


def test_ctrl_c_keeps_finished_cells_and_marks_partial(tmp_path) -> None:
    """KeyboardInterrupt in cell 2: cell 1 kept, cells 2-3 not run, the run is partial."""

    def run_cell(cell: Cell, cell_dir: Path) -> dict:
        if cell.requests == 101:
            cell_dir.mkdir(parents=True)
            raise KeyboardInterrupt
        return {"valid": "yes", "anomalies": 0}

    result = run_matrix(_cells(3), tmp_path, run_cell)
    assert result.interrupted and result.partial
    assert [o.status for o in result.outcomes] == ["done", "not run", "not run"]
    assert "interrupted while this cell was running" in result.outcomes[1].error
    assert json.loads((tmp_path / "matrix.json").read_text())["partial"] is True


def test_unreachable_optional_store_is_skipped_with_the_reason() -> None:
    """An optional memcached cell on a port nothing listens on is skipped, with a reason."""
    cells = [Cell(store="memcached", window="none", mode="threaded", users=2, requests=10,
                  optional=True),
             Cell(store="global", window="none", mode="threaded", users=2, requests=10)]
    kept, skipped = reachable_optional_stores(cells, Connections(memcached="127.0.0.1:1"))
    assert [c.store for c in kept] == ["global"]
    assert skipped[0][0] == "memcached" and "127.0.0.1:1" in skipped[0][1]


def test_budget_scales_requests_with_a_floor() -> None:
    """Scaling halves the requests but never drops below the floor."""
    assert [c.requests for c in scale_cells(_cells(2), 0.5, minimum=60)] == [60, 60]
    assert [c.requests for c in scale_cells(_cells(1), 2.0)] == [200]
