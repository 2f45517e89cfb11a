"""Every command's exit code comes from one table, ``demo_server.basics.exits``.

The table is pinned as CI gates read it; then the table is swapped for other
numbers and every command is seen to follow it: no command keeps a code of its own.
"""

from __future__ import annotations

import ast
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from simulate import simulate_counter

from cli import main
from demo_server.basics import exits
from loadtests.history import HistoryWriter

ROOT = Path(__file__).resolve().parent.parent


def test_the_table_is_what_ci_gates_read() -> None:
    """0 safe, 1 race, 2 unknown and bad input, 128 + N for signal N; worst verdict wins."""
    assert exits.EXIT == {"safe": 0, "race": 1, "unknown": 2}
    assert exits.BAD_INPUT == exits.FAILED == 2
    assert [exits.signal_exit(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)] == [
        130, 143, 129]
    assert exits.verdicts_exit(["safe", "unknown", "race"]) == 1
    assert exits.verdicts_exit(["safe", "unknown"]) == 2
    assert exits.verdicts_exit(["safe", "safe"]) == 0
    assert exits.verdicts_exit([]) == 2  # nothing shown safe


def _history(path: Path, rows: list[dict[str, Any]]) -> Path:
    with HistoryWriter(path) as writer:
        writer.add_many(rows)
    return path


@pytest.fixture
def histories(tmp_path: Path) -> dict[str, list[str]]:
    """``racelab check`` arguments that give each verdict, and a bad input."""
    sim = simulate_counter(200, clients=6, pids=2, seed=4)
    safe = _history(tmp_path / "safe.csv", sim.table().to_rows())
    final = tmp_path / "final.json"
    final.write_text(json.dumps(sim.final), encoding="utf-8")
    race_rows = [{"op_id": i, "client": f"u{i}", "op": "incr", "outcome": "ok", "value": v,
                  "invoke_ns": 1000 * i, "complete_ns": 1000 * i + 1500, "server_pid": 411,
                  "server_tid": 7 + i} for i, v in enumerate([1, 2, 4, 4])]
    race = _history(tmp_path / "race.csv", race_rows)
    unknown_rows = [{**row, "outcome": "info", "value": ""} for row in race_rows]
    unknown = _history(tmp_path / "unknown.csv", unknown_rows)
    bad = tmp_path / "bad.csv"
    bad.write_text("not,a,history\n1,2,3\n", encoding="utf-8")
    return {"safe": ["check", str(safe), "--final-file", str(final)],
            "race": ["check", str(race), "--final", "4"],
            "unknown": ["check", str(unknown)],
            "bad input": ["check", str(bad)]}


#: Commands and arguments that are bad input, one per command family.
BAD_INPUTS = [
    ["swarm", "--mode", "bogus"],
    ["swarm", "--requests", "-3"],
    ["matrix", "--stores", "bogus"],
    ["demo", "--preset", "bogus"],
    ["report", "/nonexistent/run"],
    ["export", "/nonexistent/history.csv"],
    ["probe", "not a url"],
    ["interpreters", "--threads", "0"],
    ["serve", "--store", "bogus"],
]


@pytest.mark.parametrize("swapped", [False, True], ids=["the table", "a swapped table"])
def test_every_command_exits_by_the_table(cli_runner: Any, histories: dict[str, list[str]],
                                          monkeypatch: pytest.MonkeyPatch, swapped: bool) -> None:
    """check's safe, race, unknown and bad input, and every command's bad input, follow
    the table; with the table swapped for other numbers they follow the new numbers."""
    if swapped:
        monkeypatch.setattr(exits, "EXIT", {"safe": 40, "race": 41, "unknown": 42})
        monkeypatch.setattr(exits, "UNKNOWN", 42)
        monkeypatch.setattr(exits, "BAD_INPUT", 43)
    expected = {**exits.EXIT, "bad input": exits.BAD_INPUT}
    for word, args in histories.items():
        result = cli_runner.invoke(main, args)
        assert result.exit_code == expected[word], (word, result.output)
    for args in BAD_INPUTS:
        result = cli_runner.invoke(main, args)
        assert result.exit_code == exits.BAD_INPUT, (args, result.output)
        assert "Traceback" not in result.output


def test_no_command_writes_an_exit_code_of_its_own() -> None:
    """cli.py and _cli.py never pass a number to ctx.exit, SystemExit or sys.exit."""
    for name in ("cli.py", "_cli.py"):
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("exit", "SystemExit") and node.args:
                assert not isinstance(node.args[0], ast.Constant), (
                    f"{name}:{node.lineno} exits with a literal code")
