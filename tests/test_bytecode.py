"""reports.analysis.bytecode: the racy method disassembled by the server's own interpreter."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_reports import make_experiment

from reports.analysis.bytecode import (
    disassemble,
    interleaving,
    racy_method,
    schedule,
    stepper,
)
from reports.analysis.results import collect_experiment
from reports.render.html import render_run


def pyenv_pythons() -> list[str]:
    """pyenv's CPython 3.6+ interpreters, one per minor version."""
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                              check=False).stdout.strip()
    found: dict[str, str] = {}
    for python in sorted(Path(root or "/nonexistent").glob("versions/3.*/bin/python3")):
        match = re.match(r"3\.(\d+)\.", python.parent.parent.name)
        if match and int(match.group(1)) >= 6:
            found.setdefault(match.group(1), str(python))
    return list(found.values())


def two_pythons() -> tuple[str, str]:
    """The oldest and the newest pyenv interpreters, or skip."""
    found = pyenv_pythons()
    if len(found) < 2:
        pytest.skip("needs two pyenv Pythons (pyenv install 3.8 3.12)")
    found.sort(key=lambda p: int(re.search(r"3\.(\d+)\.", p).group(1)))  # type: ignore[union-attr]
    return found[0], found[-1]


def version_of(python: str) -> str:
    return subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_racy_source_is_the_store_s_own() -> None:
    """The original class and the windowed one come from demo_server/stores.py, lines intact."""
    from scenarios.counter import stores

    qualname, source, filename = racy_method("none")
    assert qualname == "SomeObj.query" and filename == "stores.py"
    assert "self.param += 1" in source
    qualname, source, _ = racy_method("yield")
    assert qualname == "WindowedObj.query" and "self.window()" in source
    line = source.splitlines().index("        self.param += 1") + 1
    assert Path(stores.__file__).read_text().splitlines()[line - 1] == "        self.param += 1"


def test_two_interpreters_compile_it_differently() -> None:
    """dis runs under each interpreter: its version, its own opcodes (INPLACE_ADD vs BINARY_OP)."""
    old, new = two_pythons()
    listings = {python: disassemble(python, "none") for python in (old, new)}
    for python, listing in listings.items():
        assert listing["error"] == "", listing["error"]
        assert listing["version"] == version_of(python)
        assert listing["executable"] == python or Path(listing["executable"]).resolve() == \
            Path(python).resolve()
        assert "STORE_ATTR" in listing["dis"] and "param" in listing["dis"]
    opcodes = {p: {i["opname"] for i in listing["instructions"]}
               for p, listing in listings.items()}
    assert opcodes[old] != opcodes[new]
    assert listings[old]["dis"] != listings[new]["dis"]


def test_a_missing_interpreter_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """An executable that no longer exists gives an error and no listing."""
    listing = disassemble(str(tmp_path / "python9"), "none")
    assert listing["error"] and listing["instructions"] == [] and listing["dis"] == ""


def test_schedule_reads_switches_and_writes() -> None:
    """Five steps: A reads, A is switched out in the window, B reads, B writes, A writes."""
    instructions = disassemble(sys.executable, "yield")["instructions"]
    steps = schedule(instructions, 57, "request 1", "request 2",
                     {"window": "yield", "mode": "threaded"})
    assert [s["who"] for s in steps] == ["request 1", "request 1", "request 2", "request 2",
                                         "request 1"]
    assert "56" in steps[0]["does"] and "switched out inside self.window()" in steps[1]["does"]
    assert "writes 57" in steps[3]["does"] and "lost" in steps[4]["does"]
    offsets = {i["offset"]: i["opname"] for i in instructions}
    assert offsets[steps[0]["offsets"][-1]].startswith("LOAD_ATTR")
    assert any(offsets[o].startswith("CALL") for o in steps[1]["offsets"])


@pytest.mark.parametrize("which", [0, 1])
def test_report_shows_the_serving_interpreter_s_bytecode(tmp_path: Path, which: int) -> None:
    """A within-process duplicate served by another Python is disassembled by that Python."""
    python = two_pythons()[which]
    run = tmp_path / "run"
    exp = make_experiment(run / "cells" / "threaded-global-yield", window="yield", kind="race",
                          executable=python)
    entry = collect_experiment(exp)
    assert entry["failure_modes"] == ["interleaving"]
    data = interleaving(entry)
    assert data is not None and data["reconstruction"] is True
    assert data["bytecode"]["version"] == version_of(python)
    assert len(data["schedule"]) == 5
    html = render_run(run, formats=("html",))["html"].read_text(encoding="utf-8")
    assert "The interleaving, step by step" in html
    assert "A reconstruction, not a recording" in html
    assert f"CPython {version_of(python)}" in html
    assert "time.sleep(0)" in html  # what lets the switch happen in window yield


def test_no_bytecode_without_a_within_process_duplicate(tmp_path: Path) -> None:
    """Separate copies and clean runs get no bytecode section."""
    for kind, pids in (("per-process", (41, 42)), ("safe", (41,))):
        entry = collect_experiment(make_experiment(tmp_path / kind, kind=kind, pids=pids,
                                                   mode="gunicorn-sync"))
        assert entry["interleaving"] is None


def free_threaded_python() -> list[str]:
    """The free-threaded CPython ``./run free-threaded`` builds into the cache, if built."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    found = sorted((cache / "racelab" / "python3.13t" / "bin").glob("python3.1[3-9]"))
    return [str(found[0])] if found else []


def replay(model: dict, order: list[int]) -> tuple[int, list[int | None], bool]:
    """self.param, what each request returned, and whether an update was lost, after running
    the stepper's program in ``order`` (its effects as the report's script applies them)."""
    shared, lost = model["start"], False
    pc, local, read, got, returned = [0, 0], [0, 0], [0, 0], [None, None], [None, None]
    for i in order:
        effect = model["program"][pc[i]]["effect"]
        pc[i] += 1
        if effect == "read":
            local[i] = read[i] = shared
        elif effect == "add":
            local[i] += 1
        elif effect == "write":
            lost, shared = lost or shared != read[i], local[i]
        elif effect == "reread":
            got[i] = shared
        elif effect == "return":
            returned[i] = got[i] if got[i] is not None else local[i]
    return shared, returned, lost


@pytest.mark.parametrize("python", [sys.executable, *pyenv_pythons(), *free_threaded_python()])
@pytest.mark.parametrize("window", ["none", "yield"])
def test_the_stepper_plays_the_witness_on_every_interpreter(python: str, window: str) -> None:
    """Under every interpreter found (3.6 to 3.13, the free-threaded build), the stepper's
    model of the racy method marks one read, add and write, and its replay of the
    reconstructed schedule ends with both requests returning the witness's value and an
    update lost; one request after the other loses none."""
    code = disassemble(python, window)
    assert code["error"] == "", code["error"]
    steps = schedule(code["instructions"], 57, "request 1", "request 2", {"window": window})
    model = stepper(code["instructions"], steps, 57, ["request 1", "request 2"],
                    racy_method(window)[1], [1, 2], "thread")
    assert model is not None
    effects = [ins["effect"] for ins in model["program"]]
    for effect in ("read", "add", "write", "reread", "return"):
        assert effects.count(effect) == 1, (effect, effects)
    assert effects.count("call") == (window != "none")
    assert model["start"] == 56 and len(model["replay"]) == 2 * len(model["program"])
    assert replay(model, model["replay"]) == (57, [57, 57], True)
    one_then_other = [0] * len(model["program"]) + [1] * len(model["program"])
    assert replay(model, one_then_other) == (58, [57, 58], False)
    sources = [ins["source"] for ins in model["program"] if ins["source"]]
    assert ("self.param += 1" in sources) == (window == "none")
