"""A run directory belongs to one run: a reused --out is refused or emptied, never mixed,
and nothing racelab writes there goes through a symbolic link."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from cli_tools import racelab

from cli import main
from demo_server.basics.files import (
    MARKER,
    RunDirError,
    fresh_file,
    new_dir,
    open_new,
    prepare_run_dir,
    write_text,
)

# Every command that makes a run directory, with the option naming it.
COMMANDS = [
    ["swarm", "--mode", "threaded", "--store", "lock", "--requests", "50", "--out"],
    ["probe", "http://127.0.0.1:{port}", "--requests", "50", "--out"],
    ["demo", "--preset", "quick", "--out"],
    ["matrix", "--modes", "threaded", "--stores", "lock", "--out"],
    ["serve", "--run-dir"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_a_directory_that_holds_files_is_refused_in_one_line(cli_runner, tmp_path: Path,
                                                             args: list[str]) -> None:
    """--out (--run-dir) naming a directory with files: exit 2, one line, nothing touched."""
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "history.csv").write_text("the earlier run's history\n")
    with socket.socket() as listening:  # something answers where probe looks
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        result = cli_runner.invoke(main, [a.format(port=port) for a in args] + [str(earlier)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "is not empty" in lines[0] and "--overwrite" in lines[0], lines[0]
    assert sorted(p.name for p in earlier.iterdir()) == ["history.csv"]
    assert (earlier / "history.csv").read_text() == "the earlier run's history\n"


def test_overwrite_refuses_a_directory_racelab_did_not_make(cli_runner, tmp_path: Path) -> None:
    """--overwrite empties a run directory only: a folder of other files is refused, kept whole."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("years of work\n")
    result = cli_runner.invoke(main, ["swarm", "--mode", "threaded", "--store", "lock",
                                      "--requests", "50", "--out", str(notes), "--overwrite"])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "not a racelab run" in result.output
    assert (notes / "thesis.tex").read_text() == "years of work\n"


def test_default_run_directories_never_collide(tmp_path: Path, monkeypatch) -> None:
    """Two runs started in the same second get two directories (runs/NAME-TIMESTAMP, -2)."""
    monkeypatch.chdir(tmp_path)
    first = prepare_run_dir(None, "swarm")
    second = prepare_run_dir(None, "swarm")
    assert first != second and first.parent == second.parent == (tmp_path / "runs").resolve()
    assert (first / MARKER).is_file() and (second / MARKER).is_file()


def test_files_are_made_without_following_links(tmp_path: Path) -> None:
    """open_new, fresh_file, write_text and new_dir replace a link; its target stays as it was."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "precious.txt"
    target.write_text("keep me\n")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("log", "fresh", "whole"):
        (run / name).symlink_to(target)
    (run / "folder").symlink_to(outside, target_is_directory=True)
    with open_new(run / "log") as out:
        out.write("a log\n")
    fresh_file(run / "fresh")
    write_text(run / "whole", "a report\n")
    new_dir(run / "folder")
    assert target.read_text() == "keep me\n"
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]
    for name in ("log", "fresh", "whole", "folder"):
        assert not (run / name).is_symlink(), name
    assert (run / "log").read_text() == "a log\n" and (run / "fresh").read_text() == ""


def test_overwrite_removes_links_and_leaves_their_targets(tmp_path: Path) -> None:
    """Emptying a run directory removes its links; files and folders they point to stay."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    run = prepare_run_dir(tmp_path / "run", "swarm")
    (run / "history.csv").symlink_to(outside / "precious.txt")
    (run / "locust").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RunDirError, match="is not empty"):
        prepare_run_dir(run, "swarm")
    prepare_run_dir(run, "swarm", overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == [MARKER]
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]
    assert (outside / "precious.txt").read_text() == "keep me\n"


def _links(run: Path, outside: Path, names: list[str]) -> dict[str, str]:
    """Plant a link in ``run`` for each name (folders for names without a dot); their
    targets' contents, to compare afterwards."""
    outside.mkdir(exist_ok=True)
    kept = {}
    for name in names:
        target = outside / f"target-{name}"
        if "." in name:
            target.write_text(f"not racelab's: {name}\n")
            kept[target.name] = target.read_text()
        else:
            target.mkdir()
        link = run / name
        if link.is_dir() and not link.is_symlink():
            import shutil

            shutil.rmtree(link)
        elif link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory="." not in name)
    return kept


def _untouched(outside: Path, kept: dict[str, str]) -> None:
    for name, text in kept.items():
        assert (outside / name).read_text() == text, name
    for folder in (p for p in outside.iterdir() if p.is_dir()):
        assert not any(folder.iterdir()), f"{folder.name} was written through"


def test_a_reused_run_directory_writes_through_no_link(tmp_path: Path) -> None:
    """swarm --overwrite over a run directory full of links, then report on it: every file
    and folder racelab writes is its own; no link target is written."""
    run = tmp_path / "run"
    proc = racelab("swarm", "--mode", "threaded", "--store", "lock", "--requests", "100",
                   "--out", str(run), cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out + err).decode()
    outside = tmp_path / "outside"
    kept = _links(run, outside, ["history.csv", "server.log", "summary.json", "final.json",
                                 "events.json", "results.json", "locust"])
    proc = racelab("swarm", "--mode", "threaded", "--store", "lock", "--requests", "100",
                   "--out", str(run), "--overwrite", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out + err).decode()
    _untouched(outside, kept)
    for name in ("history.csv", "server.log", "results.json", "locust"):
        assert not (run / name).is_symlink(), name
    kept |= _links(run, outside, ["report.html", "results.json", "plots"])
    proc = racelab("report", str(run), "--reanalyse", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out + err).decode()
    _untouched(outside, kept)
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert not (run / "plots").is_symlink()


def _verdict_word(run: Path) -> str:
    valid = json.loads((run / "results.json").read_text())["experiments"][0]["verdict"]["valid"]
    return {"yes": "safe", "no": "race"}.get(valid, "unknown")


def test_an_interrupted_run_in_a_reused_directory_is_never_the_earlier_race(
        tmp_path: Path) -> None:
    """A racing run in X, then a lock run in X with --overwrite, stopped at once: exit 130,
    and nothing in X (results, check, server.log) speaks of the earlier run's race."""
    run = tmp_path / "X"
    proc = racelab("swarm", "--mode", "gunicorn-sync", "--store", "global", "--requests",
                   "300", "--out", str(run), cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert _verdict_word(run) == "race", (out + err).decode()
    proc = racelab("swarm", "--mode", "threaded", "--store", "lock", "--requests", "20000",
                   "--out", str(run), "--overwrite", cwd=tmp_path)
    time.sleep(0.35)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    text = (out + err).decode()
    assert proc.returncode == 130, text
    if (run / "results.json").exists():
        assert _verdict_word(run) != "race", text
    if (run / "history.csv").exists():
        final = ["--final-file", str(run / "final.json")] if (run / "final.json").exists() else []
        check = racelab("check", str(run / "history.csv"), *final, cwd=tmp_path)
        check_out, check_err = check.communicate(timeout=60)
        assert check.returncode != 1, (check_out + check_err).decode()
    assert "gunicorn" not in "".join(p.read_text() for p in run.glob("*.log"))
    assert not os.path.exists(run / "cells")
