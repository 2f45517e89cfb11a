"""The interpreters on this machine: the thread race without a server under each, discovery,
the doctor's list, the environment racelab prepares for another one, and --python's bad input."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from cli_tools import refused

from cli import main
from demo_server.basics.errors import ConfigError
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


def test_find_interpreters_lists_what_discovery_finds() -> None:
    """Every interpreter discovery finds (PATH, pyenv, uv, racelab's cache) is raced, once."""
    from demo_server.control.interpreter import discover

    found = find_interpreters()
    assert {os.path.realpath(i.path) for i in discover()} <= {os.path.realpath(p)
                                                             for p in found}


def test_interpreters_lists_a_free_threaded_build_with_its_gil_off(cli_runner) -> None:
    """racelab interpreters shows a free-threaded build as such, its GIL off at start and
    still off once Flask and the server are imported (racelab's environment for it, made
    on the first --python run), and racing on the original code."""
    from demo_server.control.interpreter import FREE_THREADED, resolve
    from demo_server.control.server_env import server_python

    try:
        free = resolve(FREE_THREADED)
    except ConfigError as exc:
        pytest.skip(str(exc))
    server_python(FREE_THREADED, "gunicorn-gthread")  # what the first --python run prepares
    result = cli_runner.invoke(main, ["interpreters", "--python", FREE_THREADED, "--threads",
                                      "4", "--increments", "2000", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = [d for d in json.loads(result.output) if d["python"] == free.path]
    assert row["build"] == "free-threaded" and row["gil"] is False
    assert row["server"]["checked"] and row["server"]["gil"] is False
    assert {"flask", "demo_server.app", "gunicorn.workers.gthread"} <= set(
        row["server"]["imported"])
    defaults = [d for d in json.loads(result.output) if d["python"] != free.path]
    assert all(d["server"] is None for d in defaults if d["build"] == "default")


def test_doctor_lists_a_free_threaded_build_with_its_gil_off(cli_runner) -> None:
    """racelab doctor names every interpreter found; a free-threaded build says its GIL is off
    at start and with Flask and the server imported."""
    from demo_server.control.interpreter import FREE_THREADED, resolve
    from demo_server.control.server_env import server_python

    try:
        free = resolve(FREE_THREADED)
    except ConfigError as exc:
        pytest.skip(str(exc))
    server_python(FREE_THREADED, "gunicorn-gthread")
    result = cli_runner.invoke(main, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in json.loads(result.output)}
    row = checks[f"python {free.version}t ({free.source})"]
    assert row["ok"] and free.path in row["detail"]
    assert "free-threaded build" in row["detail"] and "GIL off at start" in row["detail"]
    assert row["detail"].endswith("with Flask and the server imported: GIL off")
    assert "free-threaded python" not in checks


def test_the_second_preparation_installs_nothing() -> None:
    """The environment racelab keeps for another interpreter is made once: asked again, it
    is found ready and nothing is installed."""
    from demo_server.control.interpreter import FREE_THREADED, resolve
    from demo_server.control.server_env import prepared_env, requirements

    try:
        free = resolve(FREE_THREADED)
    except ConfigError as exc:
        pytest.skip(str(exc))
    need = requirements("gunicorn-gthread", "sqlite")
    first = prepared_env(free, need, progress=lambda line: None)
    said: list[str] = []
    again = prepared_env(free, need, progress=said.append)
    assert again == first and said == []
    assert (again / "bin" / "python").exists()


def _old_python() -> str | None:
    from demo_server.control.interpreter import discover

    return next((i.path for i in discover() if i.version_info[:2] < (3, 10)), None)


def _not_python(tmp_path: Path) -> str:
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho 'hello from a shell script'\n")
    fake.chmod(0o755)
    return str(fake)


@pytest.mark.parametrize(("command", "python", "needle"), [
    (["swarm"], "3.99t", "no free-threaded CPython 3.99 found"),
    (["swarm"], "no-such-python", "no such command on PATH"),
    (["swarm"], "not-python", "is not a Python interpreter"),
    (["swarm"], "old", "too old to serve the app"),
    (["serve"], "3.99", "no CPython 3.99 found"),
    (["matrix", "--modes", "threaded", "--stores", "global"], "not-python",
     "is not a Python interpreter"),
    (["demo", "--preset", "quick"], "3.99t", "no free-threaded CPython 3.99 found"),
])
def test_bad_python_is_one_line_exit_2(tmp_path: Path, command: list[str], python: str,
                                       needle: str) -> None:
    """--python naming nothing, a file that is not a Python, or a Python too old for the
    server: one line, exit 2, nothing left running, in every command that serves."""
    if python == "old":
        python = _old_python() or pytest.skip("no Python older than 3.10 on this machine")
    elif python == "not-python":
        python = _not_python(tmp_path)
    out_flag = ["--run-dir"] if command == ["serve"] else ["--out"]
    refused(*command, "--python", python, *out_flag, str(tmp_path / "run"), cwd=tmp_path,
            needle=needle)
