"""A load generator that dies is a named fault: noticed within seconds, the swarm stops,
every row already in a history file is kept, and the verdict is unknown naming it."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from cli_tools import descendants, racelab

from demo_server.basics.procs import live


def _rows_so_far(run: Path) -> int:
    try:
        return int(json.loads((run / "locust" / "progress.json").read_text())["rows"])
    except (OSError, ValueError, KeyError):
        return 0


def _locusts(pid: int) -> list[psutil.Process]:
    found = []
    for proc in descendants(pid):
        try:
            if "locust" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def _victims(pid: int, processes: int) -> list[psutil.Process]:
    """The Locust workers of racelab ``pid`` (the master's children), or its one Locust."""
    locusts = _locusts(pid)
    if processes == 1:
        return locusts if len(locusts) == 1 else []
    pids = {q.pid for q in locusts}
    workers = []
    for proc in locusts:
        try:
            if proc.ppid() in pids:
                workers.append(proc)
        except psutil.NoSuchProcess:
            continue
    return workers


def kill_a_load_generator(tmp_path: Path, run: Path, processes: int, *, after_rows: int = 800,
                          args: tuple[str, ...] = (), wait: float = 60.0,
                          ) -> tuple[int, str, int, list[psutil.Process]]:
    """Start a swarm, SIGKILL one Locust worker (or the one Locust process) once
    ``after_rows`` rows are in its files; return (exit code, output, rows reported
    before the kill, the processes of the run still alive after it exited).

    Raises:
        subprocess.TimeoutExpired: racelab did not exit within ``wait`` seconds of the
            kill (its process group is killed first).
    """
    proc = racelab("swarm", "--mode", "threaded", "--store", "lock", "--requests", "20000",
                   "--processes", str(processes), "--out", str(run), *args, cwd=tmp_path)
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 60
        victim = None
        # The rows are read once this run's Locust is seen: a reused directory still holds
        # the previous run's progress until --overwrite empties it.
        while victim is None and time.monotonic() < deadline:
            seen.update({p.pid: p for p in descendants(proc.pid)})
            candidates = _victims(proc.pid, processes)
            if candidates and _rows_so_far(run) >= after_rows:
                victim = candidates[0]
            time.sleep(0.02)
        assert victim is not None, "the swarm never got going"
        seen.update({p.pid: p for p in descendants(proc.pid)})
        before = _rows_so_far(run)
        victim.kill()
        out, err = proc.communicate(timeout=wait)
        time.sleep(0.2)
        return proc.returncode, (out + err).decode(), before, live(seen.values())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _history_rows(run: Path) -> int:
    with (run / "history.csv").open(encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "two-workers"])
def test_a_killed_load_generator_is_named_and_its_rows_kept(tmp_path: Path,
                                                           processes: int) -> None:
    """SIGKILL to a Locust worker (--processes 2) or to the one Locust process: racelab
    stops within the wait (not the 430 s hard timeout), exits 2 naming the load
    generator, the verdict is unknown with that reason, the event is recorded, no
    process is left, and every row the processes had reported written before the kill
    is in history.csv."""
    run = tmp_path / "run"
    code, text, before, left = kill_a_load_generator(tmp_path, run, processes)
    assert code == 2, text
    assert not left, left
    assert "load generator died" in text, text
    assert "Traceback" not in text
    entry = json.loads((run / "results.json").read_text())["experiments"][0]
    assert entry["verdict"]["valid"] == "unknown", entry["verdict"]
    assert "load generator died" in entry["verdict"]["reason"], entry["verdict"]["reason"]
    assert "load-generator-died" in {e["kind"] for e in entry["events"]}
    assert entry["status"] == "failed"
    assert _history_rows(run) >= before > 0, (before, _history_rows(run))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["swarm"]["lost"], summary["swarm"]
    check = racelab("check", str(run / "history.csv"), cwd=tmp_path)
    out, err = check.communicate(timeout=60)
    assert check.returncode == 2, (out + err).decode()  # the run's files say what happened
