"""Serving on a free-threaded CPython (--python): what the GIL was hiding.

Every test here runs real servers on a free-threaded build (``./run
free-threaded`` puts one in racelab's cache; ``uv python install 3.14t`` or
pyenv's ``3.13t`` elsewhere) and skips, saying so, where none is found. The
environment racelab prepares for it is the real one in racelab's cache, made on
first use.

Windows: ``none`` throughout (the question's code, nothing between read and
write). One gthread worker process with 8 threads and 32 users makes every
repeat two threads of one process: measured here, some 20-30 repeats in 10,000
requests without the GIL, none with it. Werkzeug's threaded server is slower
on 3.13t (about 1,000 requests/s on two cores) and repeats about 1 in 6,000:
its race hunt is a stress test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cli_tools import racelab

from demo_server.basics.errors import ConfigError
from demo_server.control.interpreter import FREE_THREADED, Interpreter, resolve

APPS = Path(__file__).resolve().parent / "apps"
#: Sizes that make a free-threaded race show: one process, many threads, many users.
HUNT = ["--workers", "1", "--threads", "8", "--users", "32"]


@pytest.fixture(scope="module")
def free_threaded() -> Interpreter:
    """The newest free-threaded build on this machine; the module skips without one."""
    try:
        found = resolve(FREE_THREADED)
    except ConfigError as exc:
        pytest.skip(str(exc))
    assert found.free_threaded and found.gil is False
    return found


def _swarm(tmp_path: Path, name: str, *args: str) -> tuple[int, str, dict[str, Any]]:
    run = tmp_path / name
    proc = racelab("swarm", *args, "--out", str(run), cwd=tmp_path)
    out, err = proc.communicate(timeout=600)
    path = run / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    return proc.returncode, (out + err).decode(), results


def _report(run: Path) -> str:
    """The run's report.html, as ``racelab report RUN_DIR`` writes it."""
    from reports.render.html import render_run

    return render_run(run, ["html"])["html"].read_text(encoding="utf-8")


def _entry(results: dict[str, Any]) -> dict[str, Any]:
    (entry,) = results["experiments"]
    return entry


def _same_process_repeats(entry: dict[str, Any]) -> set[int]:
    """The server pids in which two threads got the same number."""
    return {w["details"]["pid"] for w in entry["verdict"]["witnesses"]
            if w["kind"] == "duplicate" and w["details"].get("scope") == "same-process"}


def test_global_store_races_in_one_process_without_the_gil(tmp_path: Path,
                                                           free_threaded: Interpreter) -> None:
    """The question's code under gunicorn-gthread on a free-threaded build repeats numbers
    inside one named process (failure mode interleaving); the same command on racelab's
    own interpreter (CPython with the GIL) is safe, with its bound. The interpreter and its
    GIL, as the server process measured them, are in the terminal, results.json and
    report.html."""
    cell = ["--mode", "gunicorn-gthread", "--store", "global", "--window", "none", *HUNT,
            "--requests", "10000", "--assert-safe"]
    code, text, results = _swarm(tmp_path, "free", *cell, "--python", free_threaded.path)
    entry = _entry(results)
    assert code == 1, text
    assert entry["failure_modes"] == ["interleaving"]
    assert len(entry["server"]["pids"]) == 1
    assert _same_process_repeats(entry) == set(entry["server"]["pids"])
    served = entry["interpreter"]
    assert served["build"] == "free-threaded" and served["gil"] is False
    assert served["label"] == f"{free_threaded.short}, GIL off"
    assert served["python"] == free_threaded.version and served["note"] == ""
    assert f"({free_threaded.short}, GIL off)" in text
    assert f"<dd>{free_threaded.short}, GIL off</dd>" in _report(tmp_path / "free")
    assert f"--python {free_threaded.path}" in entry["command"]

    code, text, results = _swarm(tmp_path, "gil", *cell)
    entry = _entry(results)
    assert code == 0, text
    assert entry["verdict"]["valid"] == "yes" and entry["safe_bound"]
    assert entry["interpreter"]["gil"] is True and entry["interpreter"]["requested"] == ""
    assert entry["interpreter"]["label"].endswith(", GIL on")


@pytest.mark.parametrize("store", ["lock", "sqlite"])
def test_lock_and_sqlite_stay_safe_without_the_gil(tmp_path: Path, free_threaded: Interpreter,
                                                   store: str) -> None:
    """The lock and SQLite keep the counter on a free-threaded build too: safe, with a bound,
    served with the GIL off."""
    code, text, results = _swarm(tmp_path, store, "--mode", "gunicorn-gthread", "--store", store,
                                 *HUNT, "--requests", "3000", "--python", FREE_THREADED,
                                 "--assert-safe")
    entry = _entry(results)
    assert code == 0, text
    assert entry["verdict"]["valid"] == "yes" and entry["safe_bound"]
    assert entry["interpreter"]["gil"] is False
    assert entry["interpreter"]["requested"] == FREE_THREADED


def test_a_tutorial_counter_app_races_without_the_gil(tmp_path: Path,
                                                      free_threaded: Interpreter) -> None:
    """--app with a plain Flask counter (``count += 1`` on a module global): one gthread
    worker on a free-threaded build repeats numbers within its process; the stamping
    middleware reports the interpreter and its GIL."""
    code, text, results = _swarm(tmp_path, "app", "--app", f"{APPS / 'counter_app.py'}:app",
                                 "--mode", "gunicorn-gthread", *HUNT, "--requests", "10000",
                                 "--python", free_threaded.short, "--assert-safe")
    entry = _entry(results)
    assert code == 1, text
    assert "interleaving" in entry["failure_modes"]
    assert _same_process_repeats(entry) == set(entry["server"]["pids"])
    assert entry["interpreter"]["label"] == f"{free_threaded.short}, GIL off"


@pytest.mark.stress
def test_werkzeug_threaded_races_without_the_gil(tmp_path: Path,
                                                 free_threaded: Interpreter) -> None:
    """Werkzeug's threaded server on a free-threaded build: the question's code repeats
    numbers within its one process (rarely: about 1 in 6,000 requests here)."""
    code, text, results = _swarm(tmp_path, "threaded", "--mode", "threaded", "--store",
                                 "global", "--users", "32", "--requests", "60000",
                                 "--python", FREE_THREADED, "--assert-safe")
    entry = _entry(results)
    assert code == 1, text
    assert entry["failure_modes"] == ["interleaving"]
    assert entry["interpreter"]["gil"] is False


def _build_gil_module(python: Interpreter, where: Path) -> None:
    """A C extension that does not declare it runs without the GIL (single-phase init)."""
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler (gcc) to build an extension module")
    paths = json.loads(subprocess.run(
        [python.path, "-c", "import json, sysconfig; print(json.dumps("
         "[sysconfig.get_paths()['include'], sysconfig.get_config_var('EXT_SUFFIX')]))"],
        capture_output=True, text=True, check=True).stdout)
    source = where / "gilmod.c"
    source.write_text(textwrap.dedent("""
        #include <Python.h>
        static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "gilmod", NULL, -1, NULL};
        PyMODINIT_FUNC PyInit_gilmod(void) { return PyModule_Create(&def); }
    """))
    subprocess.run(["gcc", "-shared", "-fPIC", f"-I{paths[0]}", str(source), "-o",
                    str(where / f"gilmod{paths[1]}")], check=True, capture_output=True)


def test_a_module_that_turns_the_gil_back_on_is_named(tmp_path: Path,
                                                      free_threaded: Interpreter) -> None:
    """An app importing an extension module without free-threading support runs with the
    GIL on; the run says so and names the module, as Python named it, in the terminal,
    results.json and the report."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    _build_gil_module(free_threaded, app_dir)
    (app_dir / "app.py").write_text((APPS / "counter_app.py").read_text()
                                    + "\nimport gilmod  # noqa: E402,F401\n")
    code, text, results = _swarm(tmp_path, "gilmod", "--app", f"{app_dir / 'app.py'}:app",
                                 "--mode", "threaded", "--requests", "200",
                                 "--python", FREE_THREADED)
    entry = _entry(results)
    assert code == 0, text
    served = entry["interpreter"]
    assert served["build"] == "free-threaded" and served["gil"] is True
    assert served["gil_enabled_by"] == ["gilmod"]
    assert served["label"] == f"{free_threaded.short}, GIL on"
    assert "enabled it to load module 'gilmod'" in served["note"]
    assert "module 'gilmod'" in " ".join(text.split())
    assert "module &#39;gilmod&#39;" in _report(tmp_path / "gilmod")


def test_gevent_on_a_free_threaded_build_is_refused_up_front(
        tmp_path: Path, free_threaded: Interpreter) -> None:
    """gevent and greenlet do not install on a free-threaded 3.13: one line, exit 2, before
    any server starts (no run directory is made)."""
    code, text, _ = _swarm(tmp_path, "gevent", "--mode", "gevent", "--python", FREE_THREADED,
                           "--requests", "50")
    assert code == 2
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "gevent cannot run on" in lines[0], text
    assert not (tmp_path / "gevent").exists()


def test_a_store_whose_client_cannot_be_installed_is_one_line(
        tmp_path: Path, free_threaded: Interpreter) -> None:
    """Flask-Session needs msgspec, which does not build on a free-threaded 3.13: swarm
    says so in one line naming the package (exit 2); a matrix leaves the cell out as not
    available, with that reason, and runs the rest."""
    from scenarios.run.matrix import ready_interpreters
    from scenarios.run.presets import Cell

    if free_threaded.version_info[:2] != (3, 13):
        pytest.skip("msgspec builds on free-threaded 3.14 and later")
    code, text, _ = _swarm(tmp_path, "session", "--mode", "gunicorn-gthread", "--store",
                           "session", "--python", FREE_THREADED, "--requests", "50")
    assert code == 2
    lines = [line for line in text.splitlines()
             if line.strip() and not line.startswith("racelab: ")]  # progress lines
    assert len(lines) == 1 and "Flask-Session" in lines[0] and "msgspec" in lines[0], text
    cells = [Cell(store=s, mode="gunicorn-gthread", python=FREE_THREADED)
             for s in ("session", "global")]
    from demo_server.served.config import Connections

    kept, skipped = ready_interpreters(cells, Connections())
    assert [c.store for c in kept] == ["global"] and kept[0].python == free_threaded.short
    ((name, reason),) = skipped
    assert name == f"session on python {free_threaded.short}" and "msgspec" in reason


def _free_threaded_groups() -> list[dict[str, Any]]:
    """The classroom preset's free-threaded cell groups, as the TOML file has them."""
    from scenarios.run.presets import PRESETS_DIR, tomllib

    data = tomllib.loads((PRESETS_DIR / "classroom.toml").read_text(encoding="utf-8"))
    return [g for g in data["cells"] if g.get("python")]


def test_classroom_runs_its_free_threaded_cells_and_the_threads_claim_cites_them(
        tmp_path: Path, free_threaded: Interpreter) -> None:
    """With a free-threaded build on the machine, the classroom's free-threaded cells run
    on it (named by its version: ``3.13t``), each records its GIL off, and the threads
    claim names them beside the default interpreter's cells. The cells are the classroom
    preset's own groups, beside one cell on racelab's interpreter."""
    groups = _free_threaded_groups()
    assert groups and all(g["optional"] and g["python"] == FREE_THREADED for g in groups)
    lines = ['name = "ft"', "interpreters = false", "", "[[cells]]", 'stores = ["global"]',
             'windows = ["none"]', 'modes = ["gunicorn-gthread"]', "requests = 400"]
    for group in groups:
        lines += ["", "[[cells]]"] + [f"{k} = {json.dumps(v)}" for k, v in group.items()]
    preset = tmp_path / "ft.toml"
    preset.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    proc = racelab("demo", "--preset", str(preset), "--out", str(run), cwd=tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (out + err).decode()
    results = json.loads((run / "results.json").read_text())
    free = {e["id"].split("-", 1)[1]: e for e in results["experiments"]
            if e["interpreter"]["requested"]}
    short = free_threaded.short
    assert set(free) == {f"{s}-none-{m}-py{short}" for s in ("global", "lock")
                         for m in ("threaded", "gunicorn-gthread")}
    assert all(e["interpreter"]["label"] == f"{short}, GIL off" for e in free.values())
    assert all(e["verdict"]["valid"] == "yes" for k, e in free.items() if k.startswith("lock"))
    (threads,) = [c for c in results["claims"] if c["key"] == "threads"]
    cited = set(threads["supporting"]) | set(threads["against"])
    assert {e["id"] for k, e in free.items() if k.startswith("global")} <= cited
    assert f"On the free-threaded build ({short}, GIL off)" in threads["why"]
    assert f"{short}, GIL off" in out.decode()  # the table names it, in the cell's variant
