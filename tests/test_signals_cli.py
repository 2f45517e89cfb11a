"""The CLI as a CI gate and under signals: exit codes, nothing left running, records kept."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest
from cli_tools import descendants, racelab

from demo_server.basics.procs import live


@pytest.mark.parametrize(("store", "code"), [("global", 1), ("sqlite", 0)])
def test_assert_safe_exit_codes(tmp_path: Path, store: str, code: int) -> None:
    """--assert-safe: gunicorn-sync global repeats numbers (1); sqlite hands out each once (0)."""
    proc = racelab("swarm", "--mode", "gunicorn-sync", "--store", store, "--users", "8",
                    "--requests", "600", "--out", str(tmp_path / "run"), "--assert-safe",
                    cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (out + err).decode()
    word = {0: "safe", 1: "race"}[code]
    assert f"verdict: {word}" in out.decode()




@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                              (signal.SIGINT, 130)])
def test_signal_stops_everything_and_keeps_the_history(tmp_path: Path, signum: int,
                                                       code: int) -> None:
    """A signal mid-swarm: documented exit code, no process of the run left, history kept."""
    run = tmp_path / "run"
    proc = racelab("swarm", "--mode", "gunicorn-sync", "--store", "sqlite", "--users", "8",
                    "--requests", "200000", "--out", str(run), cwd=tmp_path)
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until load is flowing
        for child in descendants(proc.pid):
            seen[child.pid] = child
        if (run / "locust").is_dir() and any("locust" in " ".join(_cmd(p)) for p in seen.values()):
            time.sleep(2.0)
            break
        time.sleep(0.1)
    for child in descendants(proc.pid):
        seen[child.pid] = child
    assert any("gunicorn" in " ".join(_cmd(p)) for p in seen.values())
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == code, (out + err).decode()
    assert "Traceback" not in err.decode()
    time.sleep(0.2)
    alive = live(seen.values())
    assert not alive, [(_cmd(p), p.pid) for p in alive]
    history = run / "history.csv"
    assert history.exists()
    rows = history.read_text().splitlines()[1:]
    assert len(rows) > 100
    results = json.loads((run / "results.json").read_text())
    assert results["run"]["partial"]
    verdict = results["experiments"][0]["verdict"]["valid"]
    assert verdict != "no", "an interrupted safe run must never read as a race"
    # Checked later from its files alone, it still is not a race.
    check = racelab("check", str(history), "--final-file", str(run / "final.json"),
                     cwd=tmp_path)
    out, err = check.communicate(timeout=60)
    assert check.returncode == 2, (out + err).decode()
    assert out.decode().startswith("unknown: ")


def _cmd(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []




@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                              (signal.SIGINT, 130)])
def test_serve_reports_the_signal_that_stopped_it(tmp_path: Path, signum: int,
                                                  code: int) -> None:
    """``racelab serve`` stopped by a signal exits 128 + N, not 0, and leaves no server."""
    proc = racelab("serve", "--mode", "gunicorn-sync", "--run-dir", str(tmp_path / "run"),
                    cwd=tmp_path)
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for child in descendants(proc.pid):
            seen[child.pid] = child
        if len(seen) >= 2 and (tmp_path / "run").is_dir():
            break
        time.sleep(0.1)
    time.sleep(1.0)  # the server answers: serve is in its wait loop
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, (out + err).decode()
    assert "Traceback" not in err.decode()
    time.sleep(0.2)
    assert not live(seen.values())
