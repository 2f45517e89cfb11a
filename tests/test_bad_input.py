"""Bad input stops at the boundary: one line on stderr, exit 2, never a traceback.

CI gates read exit 1 as "race" and exit 0 as "safe", so a typo, an empty
variable or a file racelab cannot read must end with neither. Every command's
invalid options run here, under ``--assert-safe`` where the command has it, and
only exit 2 with exactly one line on stderr passes. Then the errors racelab did
not expect: one line too, and the traceback only on request.
"""

from __future__ import annotations

import gzip
import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from simulate import simulate_counter

from cli import main
from demo_server.basics import defaults, exits
from loadtests.history import HistoryWriter

APPS = Path(__file__).resolve().parent / "apps"
GOOD_APP = f"{APPS / 'counter_app.py'}:app"
EXITS_APP = f"{APPS / 'exits_on_import.py'}:app"

#: Preset files that are wrong in one way each; ``CELLS`` is one valid cells group.
CELLS = '[[cells]]\nstores = ["global"]\nmodes = ["threaded"]\nwindows = ["none"]\n'
PRESETS = {
    "swarm-not-a-table": "swarm = 3\n" + CELLS,
    "server-not-a-table": 'server = "x"\n' + CELLS,
    "cells-of-numbers": "cells = [3]\n",
    "no-cells": 'name = "x"\n',
    "budget-nan": "budget_s = nan\n" + CELLS,
    "budget-inf": "budget_s = inf\n" + CELLS,
    "budget-true": "budget_s = true\n" + CELLS,
    "name-a-number": "name = 3\n" + CELLS,
    "name-blank": 'name = " "\n' + CELLS,
    "app-empty": CELLS + 'app = ""\n',
    "app-blank": CELLS + 'app = " "\n',
    "optional-text": CELLS + 'optional = "yes"\n',
    "requests-text": '[swarm]\nrequests = "x"\n' + CELLS,
    "requests-zero": "[swarm]\nrequests = 0\n" + CELLS,
    "duration-nan": "[swarm]\nduration = nan\n" + CELLS,
    "unknown-key": CELLS + "bogus = 3\n",
    "mode-unknown": CELLS.replace('"threaded"', '"bogus"'),
    "not-toml": "this is = = not toml\n",
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A history, its final state, and files that are wrong as a history or a preset."""
    root = tmp_path_factory.mktemp("bad-input")
    sim = simulate_counter(100, clients=4, pids=2, seed=3)
    history = root / "history.csv"
    with HistoryWriter(history) as writer:
        writer.add_many(sim.table().to_rows())
    final = root / "final.json"
    final.write_text(json.dumps(sim.final), encoding="utf-8")
    big = root / "big.csv"
    big.write_text("op_id,client,op,outcome,value,invoke_ns,complete_ns\n"
                   "0,c1,incr,ok,1,1,2\n1,c" + "x" * 200_000 + ",incr,ok,2,3,4\n",
                   encoding="utf-8")
    packed = root / "history.csv.gz"
    packed.write_bytes(gzip.compress(history.read_bytes()))
    (root / "empty.csv").write_text("", encoding="utf-8")
    paths = {"history": str(history), "final": str(final), "big": str(big),
             "gz": str(packed), "empty": str(root / "empty.csv"), "root": str(root),
             "file": str(final)}
    for name, text in PRESETS.items():
        path = root / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        paths[name] = str(path)
    return paths


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """A plain HTTP server on loopback: what a probe's URL checks pass."""
    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # stderr is what the tests read

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass

    server = QuietServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


A = "--assert-safe"
#: (command line, a word the one line must hold). ``<name>`` is one of the ``files``,
#: ``<url>`` the live HTTP server; commands that write a run get a fresh ``--out``.
BAD = [
    # swarm: every kind of option, under --assert-safe
    (["swarm", "--requests", "0", A], "request budget or a duration"),
    (["swarm", "--requests", "-1", A], "--requests"),
    (["swarm", "--requests", "abc", A], "--requests"),
    (["swarm", "--mode", "bogus", A], "--mode"),
    (["swarm", "--workers", "0", A], "--workers"),
    (["swarm", "--duration", "nan", A], "finite"),
    (["swarm", "--history-format", "xml", A], "--history-format"),
    (["swarm", "--no-such-option", A], "--no-such-option"),
    (["swarm", "--fault", "nuke@1s", A], "unknown fault"),
    (["swarm", "--fault", "kill-worker@abc", A], "cannot read the time"),
    (["swarm", "--fault", "", A], "empty"),
    (["swarm", "--fault", "kill-worker@1s+1s", A], "no duration"),
    (["swarm", "--store", "sqlite", "--fault", "stop-store@1s+1s", A], "no process of its own"),
    (["swarm", "--store", "redis", "--fault", "stop-store@1s+1s", A], "not started by racelab"),
    (["swarm", "--app", "", A], "--app"),
    (["swarm", "--app", "  ", A], "--app"),
    (["swarm", "--app", "nofile.py:app", A], "no file"),
    (["swarm", "--app", EXITS_APP, "--requests", "20", A], "sys.exit(3)"),
    (["swarm", "--app", GOOD_APP, "--request", "GET", A], "METHOD /path"),
    (["swarm", "--app", GOOD_APP, "--request", " ", A], "--request"),
    (["swarm", "--app", GOOD_APP, "--header", "nocolon", A], "Name: value"),
    (["swarm", "--app", GOOD_APP, "--value", "bogus", A], "bogus"),
    (["swarm", "--app", GOOD_APP, "--final", "bogus", A], "GET /path"),
    (["swarm", "--app", GOOD_APP, "--body", " ", A], "--body"),
    (["swarm", "--body", "{}", A], "give --app"),
    (["swarm", "--out", " ", A], "--out"),
    (["swarm", "--out", "<file>", A], "--out"),
    (["--redis-url", "redis://127.0.0.1:1/0", "swarm", "--store", "redis", A], "not reachable"),
    (["--redis-url", " ", "swarm", A], "--redis-url"),
    (["--postgres-dsn", "", "swarm", "--store", "postgres", A], "--postgres-dsn"),
    (["--session-backend", "bogus", "swarm", A], "--session-backend"),
    (["bogus-command"], "bogus-command"),
    # probe
    (["probe", "not a url", A], "not an http"),
    (["probe", "", A], "URL"),
    (["probe", "http://[::1", A], "Invalid IPv6 URL"),
    (["probe", "http://[::1]:99999", A], "out of range"),
    (["probe", "http://example.com/", A], "--allow-remote"),
    (["probe", "<url>", "--requests", "0", A], "request budget or a duration"),
    (["probe", "<url>", "--value", "bogus", A], "bogus"),
    (["probe", "<url>", "--request", "GET", A], "METHOD /path"),
    (["probe", "<url>", "--final", "bogus", A], "GET /path"),
    (["probe", "<url>", "--users", "0", A], "--users"),
    # check
    (["check", "<history>", "--scenario", "bogus"], "counter, tickets"),
    (["check", "<history>", "--final", "-1"], "--final"),
    (["check", "<history>", "--final", "3", "--final-file", "<final>"], "not both"),
    (["check", "<history>", "--format", "bogus"], "--format"),
    (["check", "<big>"], "longer than"),
    (["check", "<gz>"], "gzip"),
    (["check", "<empty>"], "empty"),
    (["check", "<root>"], "directory"),
    (["check", ""], "HISTORY"),
    # export
    (["export", "<history>", "--scenario", "bogus"], "--scenario"),
    (["export", "<history>", "--out", "<file>/x.json"], "Not a directory"),
    (["export", "<history>", "--out", ""], "--out"),
    (["export", "<history>", "--out", " "], "--out"),
    (["export", "<big>"], "longer than"),
    (["export", "/nonexistent/history.csv"], "does not exist"),
    # report
    (["report", "/nonexistent/run"], "does not exist"),
    (["report", "<root>", "--width", "0"], "--width"),
    # demo: options and every kind of broken preset
    (["demo", "--preset", "bogus", A], "no preset"),
    (["demo", "--preset", "", A], "--preset"),
    (["demo", "--preset", "quick", "--budget", "nan", A], "finite"),
    (["demo", "--preset", "quick", "--budget", "inf", A], "finite"),
    (["demo", "--preset", "quick", "--budget", "1", A], "--budget"),
    (["demo", "--preset", "quick", "--repeat", "0", A], "--repeat"),
    (["demo", "--preset", "quick", "--out", "<root>", A], "not empty"),
    *[(["demo", "--preset", f"<{name}>", A], "") for name in PRESETS],
    # matrix
    (["matrix", "--modes", "bogus", A], "unknown mode"),
    (["matrix", "--stores", "", A], "--stores"),
    (["matrix", "--fault", "nuke", A], "unknown fault"),
    (["matrix", "--stores", "sqlite", "--fault", "stop-store@1s+1s", A], "no process of its own"),
    (["matrix", "--budget", "nan", A], "finite"),
    (["matrix", "--app", "", A], "--app"),
    (["matrix", "--app", EXITS_APP, "--modes", "threaded", "--stores", "global", A],
     "sys.exit(3)"),
    # interpreters
    (["interpreters", "--python", "/nonexistent"], "no such file"),
    (["interpreters", "--python", ""], "--python"),
    (["interpreters", "--python", "/bin/false", "--increments", "100"], "could not run"),
    (["interpreters", "--threads", "0"], "--threads"),
    # serve
    (["serve", "--host", ""], "--host"),
    (["serve", "--host", "999.1.1.1"], "999.1.1.1"),
    (["serve", "--port", "-1"], "--port"),
    (["serve", "--store", "bogus"], "--store"),
    (["serve", "--run-dir", " "], "--run-dir"),
]


def _fill(args: list[str], files: dict[str, str], url: str, out: Path) -> list[str]:
    values = {**files, "url": url}
    filled = [re.sub(r"<([\w-]+)>", lambda m: values[m[1]], a) for a in args]
    needs_out = filled[0] in ("swarm", "probe", "demo", "matrix") or (
        len(filled) > 2 and filled[2] == "swarm")
    if needs_out and "--out" not in filled:
        filled += ["--out", str(out)]
    return filled


@pytest.mark.parametrize(("args", "word"), BAD, ids=[" ".join(a)[:70] for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(files: dict[str, str], http_url: str,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          args: list[str], word: str) -> None:
    """Each invalid option of each command (under --assert-safe where it has it) exits 2
    with exactly one line on stderr, which says what is wrong; no traceback, no exit 0 or 1."""
    monkeypatch.chdir(tmp_path)  # serve's default run directory, runs/, lands here
    argv = _fill(args, files, http_url, tmp_path / "run")
    result = CliRunner().invoke(main, argv)
    lines = result.stderr.splitlines()
    assert result.exit_code == exits.BAD_INPUT, (argv, result.exit_code, result.output)
    assert len(lines) == 1, (argv, lines)
    assert lines[0].startswith("Error: "), lines
    assert word in lines[0], (word, lines[0])
    assert "Traceback" not in result.output


def test_an_app_named_by_an_unset_variable_is_refused(tmp_path: Path) -> None:
    """--app "$UNSET" is not "no --app": racelab's own app is never judged in its place."""
    result = CliRunner().invoke(main, ["swarm", "--app", "", "--assert-safe",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == exits.BAD_INPUT
    assert not (tmp_path / "run" / "history.csv").exists()


# -- item 8: the four tracebacks, and any error racelab did not expect ----------------------
TRACEBACKS = [
    ["export", "<history>", "--out", "<file>/x.json"],
    ["demo", "--preset", "quick", "--budget", "nan"],
    ["demo", "--preset", "quick", "--budget", "inf"],
    ["probe", "http://[::1"],
]


@pytest.mark.parametrize("args", TRACEBACKS, ids=[" ".join(a) for a in TRACEBACKS])
def test_the_inputs_that_raised_tracebacks_are_one_line(files: dict[str, str],
                                                        tmp_path: Path, args: list[str]) -> None:
    """export into a path under a file, demo --budget nan and inf, probe 'http://[::1':
    each is one line and exit 2, where each once ended in a Python traceback."""
    argv = _fill(args, files, "", tmp_path / "run")
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == exits.BAD_INPUT, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, (ValueError, OverflowError, OSError))


def test_an_unexpected_error_is_one_line_unless_asked(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """A bug inside a command is exit 2 (never 1, "race") with one line naming it; with
    $RACELAB_TRACEBACK set the exception propagates, traceback and all."""
    import scenarios.run.presets as presets

    def broken(name: str) -> Any:
        raise TypeError("a bug")

    monkeypatch.setattr(presets, "load_preset", broken)
    monkeypatch.delenv(defaults.TRACEBACK_ENV, raising=False)
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "run")])
    assert result.exit_code == exits.FAILED
    assert result.stderr.splitlines() == [
        f"Error: racelab failed: TypeError: a bug (set {defaults.TRACEBACK_ENV}=1 to see where)"]
    monkeypatch.setenv(defaults.TRACEBACK_ENV, "1")
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "run2")])
    assert isinstance(result.exception, TypeError)
