"""The stress hunt, again: signals at random moments with --out reused (--overwrite), and
Locust processes killed at random moments. No false verdict, no hang past 10 s after the
signal or the kill, no row lost, no process left.

Off by default (-m stress). RACELAB_STRESS_SEED, RACELAB_STRESS_REUSE (signal attacks,
default 30) and RACELAB_STRESS_KILLS (killed load generators, default 20) tune it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from cli_tools import racelab, watch
from test_load_generator_death import kill_a_load_generator

from demo_server.basics.procs import live

HANG_S = 10.0  # after the signal or the kill, racelab has exited by then
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: safe cells: (mode, store); the earlier run in the same directory races
SAFE = (("threaded", "lock"), ("gunicorn-sync", "sqlite"), ("gunicorn-gthread", "sqlite"),
        ("gevent", "sqlite"), ("threaded", "sqlite"))


def _word(run: Path) -> str | None:
    try:
        entries = json.loads((run / "results.json").read_text())["experiments"]
    except (OSError, ValueError, KeyError):
        return None
    words = {{"yes": "safe", "no": "race"}.get(e["verdict"]["valid"], "unknown") for e in entries}
    return "race" if "race" in words else "unknown" if "unknown" in words else "safe"


def _check_word(run: Path, cwd: Path) -> int | None:
    """check's exit code for the run's history (None when there is none)."""
    histories = sorted(run.glob("history.csv")) + sorted(run.glob("cells/*/history.csv"))
    codes = []
    for history in histories:
        proc = racelab("check", str(history), cwd=cwd)
        proc.communicate(timeout=60)
        codes.append(proc.returncode)
    return max(codes, key=lambda c: c == 1) if codes else None


def _served_and_recorded(run: Path) -> tuple[int, int] | None:
    """(requests the server counted, ok + info rows) of a swarm run, when both are known."""
    try:
        final = json.loads((run / "final.json").read_text())
        ops = json.loads((run / "results.json").read_text())["experiments"][0]["ops"]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    served = sum(s.get("served") or 0 for s in final.get("states") or [])
    if not final.get("available") or not served:
        return None
    return served, ops["ok"] + ops["info"]


def _racing_run(run: Path, cwd: Path) -> None:
    proc = racelab("swarm", "--mode", "gunicorn-sync", "--store", "global", "--requests", "300",
                   "--out", str(run), "--overwrite", cwd=cwd)
    out, err = proc.communicate(timeout=120)
    assert _word(run) == "race", (out + err).decode()


@pytest.mark.stress
@pytest.mark.timeout(7200)
def test_signals_in_a_reused_run_directory_never_give_a_false_verdict(tmp_path: Path) -> None:
    """A racing run in X, then safe swarms and matrices in X (--overwrite) signalled at
    random moments: each exits 128+N (or 2, or 0 if it finished; killed by N when the
    signal came before racelab set its handlers) within 10 s of the
    signal, leaves no process, is never a race (results.json and check alike), and its
    history holds a row for every request the server counted."""
    rng = random.Random(int(os.environ.get("RACELAB_STRESS_SEED", "25")))
    run = tmp_path / "X"
    failures: list[tuple[object, ...]] = []
    for attempt in range(int(os.environ.get("RACELAB_STRESS_REUSE", "30"))):
        if attempt % 3 == 0:
            _racing_run(run, tmp_path)
        mode, store = rng.choice(SAFE)
        signum = rng.choice(SIGNALS)
        if rng.random() < 0.25:
            args = ["matrix", "--modes", mode, "--stores", store, "--requests", "400"]
        else:
            args = ["swarm", "--mode", mode, "--store", store, "--users", "8", "--requests",
                    "6000", "--processes", str(rng.choice((1, 2)))]
        proc = racelab(*args, "--out", str(run), "--overwrite", cwd=tmp_path)
        seen: dict[int, psutil.Process] = {}
        watch(proc, rng.uniform(0.05, 4.0), seen)
        proc.send_signal(signum)
        label = (attempt, args[0], mode, store, signal.Signals(signum).name)
        try:
            out, err = proc.communicate(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            failures.append((*label, "hang"))
            continue
        text = (out + err).decode()
        time.sleep(0.2)
        problems = []
        # -N: the signal came before racelab set its handlers (a shell reports 128 + N too)
        if proc.returncode not in (128 + signum, -signum, 2, 0):
            problems.append(f"exit {proc.returncode}")
        if "Traceback" in text:
            problems.append("traceback")
        if live(seen.values()):
            problems.append("processes left")
        if _word(run) == "race":
            problems.append("results.json says race")
        if _check_word(run, tmp_path) == 1:
            problems.append("check says race")
        counted = _served_and_recorded(run) if args[0] == "swarm" else None
        if counted is not None and counted[1] < counted[0]:
            problems.append(f"rows lost: {counted}")
        if problems:
            failures.append((*label, problems, text[-400:]))
    assert not failures, failures


@pytest.mark.stress
@pytest.mark.timeout(7200)
def test_killed_load_generators_never_hang_lose_rows_or_give_a_verdict(tmp_path: Path) -> None:
    """SIGKILL to a Locust worker or to the one Locust process at random moments, half of
    the runs in a reused directory: each run exits 2 within 10 s of the kill, naming the
    load generator, its verdict is unknown (never safe, never race), every row reported
    written before the kill is in history.csv, and no process is left."""
    rng = random.Random(int(os.environ.get("RACELAB_STRESS_SEED", "25")))
    failures: list[tuple[object, ...]] = []
    reused = tmp_path / "X"
    for attempt in range(int(os.environ.get("RACELAB_STRESS_KILLS", "20"))):
        processes = rng.choice((1, 2))
        reuse = rng.random() < 0.5
        if reuse and attempt % 2 == 0:
            _racing_run(reused, tmp_path)
        run = reused if reuse else tmp_path / f"run{attempt}"
        args = ("--overwrite",) if reuse else ()
        label = (attempt, processes, "reused" if reuse else "fresh")
        try:
            code, text, before, left = kill_a_load_generator(
                tmp_path, run, processes, after_rows=rng.randint(100, 3000), args=args,
                wait=HANG_S)
        except subprocess.TimeoutExpired:
            failures.append((*label, "hang"))
            continue
        problems = [f"processes left: {left}"] if left else []
        if code != 2 or "load generator died" not in text:
            problems.append(f"exit {code}")
        if "Traceback" in text:
            problems.append("traceback")
        if _word(run) != "unknown":
            problems.append(f"verdict {_word(run)}")
        if _check_word(run, tmp_path) != 2:
            problems.append("check is not unknown")
        with (run / "history.csv").open(encoding="utf-8") as handle:
            rows = sum(1 for _ in handle) - 1
        if rows < before:
            problems.append(f"rows lost: {before} reported, {rows} kept")
        if problems:
            failures.append((*label, problems, text[-400:]))
    assert not failures, failures
