"""The thread race without a server, under this and any other interpreter present."""

from __future__ import annotations

import json
import sys

from cli import main
from scenarios.run.interpreters import find_interpreters, run_interpreters


def test_this_interpreter_runs_the_original_code_and_the_yield_window_loses() -> None:
    """The script runs the copied SomeObj; a sleep(0) between read and write loses updates."""
    (result,) = run_interpreters([sys.executable], threads=4, increments=10_000)
    assert result.error == ""
    assert set(result.windows) == {"none", "call", "yield"}
    lost, expected = result.lost("yield")
    assert expected == 4 * 100 and lost > 0
    none_lost, none_expected = result.lost("none")
    assert none_expected == 40_000 and 0 <= none_lost <= none_expected


def test_an_interpreter_that_cannot_run_is_reported_not_raised(tmp_path) -> None:
    """A missing interpreter path becomes an error row, and the others still run."""
    results = run_interpreters([str(tmp_path / "python9"), sys.executable], threads=2,
                               increments=100)
    errors = [r for r in results if r.error]
    assert len(errors) == 1 and "python9" in errors[0].python


def test_racing_two_at_a_time_gives_one_row_per_interpreter_sorted(tmp_path) -> None:
    """``jobs=2`` runs every interpreter once and sorts the rows by version, as one at a
    time does; a broken one is still an error row, not an exception."""
    pythons = [sys.executable, str(tmp_path / "python9"), *find_interpreters()[1:3]]
    serial = run_interpreters(pythons, threads=2, increments=200)
    parallel = run_interpreters(pythons, threads=2, increments=200, jobs=2)
    assert [r.python for r in parallel] == [r.python for r in serial]
    assert sorted(r.python for r in parallel) == sorted(pythons)
    assert [bool(r.error) for r in parallel] == [bool(r.error) for r in serial]


def test_find_interpreters_starts_with_this_one_without_repeats() -> None:
    """This interpreter comes first; pyenv's versions follow where pyenv exists."""
    found = find_interpreters([sys.executable])
    assert found[0] == sys.executable
    assert len(found) == len(set(found))


def test_interpreters_command_json(cli_runner) -> None:
    """racelab interpreters --json prints one measured entry per interpreter."""
    result = cli_runner.invoke(main, ["interpreters", "--increments", "500", "--threads", "2",
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    ran = [d for d in data if not d["error"]]
    assert any(d["python"] == sys.executable for d in ran)
    assert all(d["windows"]["none"]["expected"] == 1000 for d in ran)
