"""Faults are findings: a faulted run is never 'safe' unless its witnesses prove a race.

Also the stress hunt of signals: interrupts at random moments across the modes
leave nothing running, lose no row and never turn a safe run into a race.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
from cli_tools import racelab, watch

from demo_server.basics.procs import live


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("store", ["global", "sqlite",
                                   pytest.param("redis", marks=pytest.mark.stress),
                                   pytest.param("postgres", marks=pytest.mark.stress)])
def test_kill_worker_is_never_safe(tmp_path: Path, store: str) -> None:
    """--fault kill-worker: safe stores read unknown naming the kill; global still races.

    Redis and PostgreSQL run with the stress hunts (-m stress): same path, longer suite.
    """
    if store == "redis" and not _reachable(6379):
        pytest.skip("no Redis on 127.0.0.1:6379")
    if store == "postgres" and not _reachable(5432):
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    run = tmp_path / "run"
    proc = racelab("swarm", "--mode", "gunicorn-sync", "--store", store, "--users", "8",
                    "--duration", "3", "--fault", "kill-worker@0.5s", "--out", str(run),
                    "--assert-safe", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    text = (out + err).decode()
    entry = json.loads((run / "results.json").read_text())["experiments"][0]
    kinds = {e["kind"] for e in entry["events"]}
    assert "fault:kill-worker" in kinds, kinds
    if store == "global":
        assert proc.returncode == 1, text  # the witnesses prove the race
        assert entry["verdict"]["valid"] == "no"
    else:
        assert proc.returncode == 2, text
        assert entry["verdict"]["valid"] == "unknown"
        assert "kill-worker" in entry["verdict"]["reason"], entry["verdict"]["reason"]


@pytest.mark.parametrize("cell", [
    ("--session-backend", "redis", "swarm", "--store", "session"),
    # WATCH/MULTI retries running when Redis stops: a dead store is no conflict, nothing spins.
    ("swarm", "--store", "redis", "--update", "optimistic"),
], ids=["session", "optimistic-redis"])
def test_run_whose_redis_stops_is_unknown_naming_redis(tmp_path: Path,
                                                       cell: tuple[str, ...]) -> None:
    """Flask-Session, or the optimistic Redis counter, on a private Redis stopped mid-run:
    unknown, and the reason names Redis."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    run = tmp_path / "run"
    proc = racelab("--redis-url", "redis://127.0.0.1:1/0", "--start-services", *cell,
                    "--mode", "gunicorn-gthread", "--users", "8", "--duration", "3", "--fault",
                    "stop-store@0.5s+10s", "--out", str(run), "--assert-safe", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    text = (out + err).decode()
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    entry = json.loads((run / "results.json").read_text())["experiments"][0]
    assert entry["verdict"]["valid"] == "unknown"
    assert "redis" in entry["verdict"]["reason"].lower(), entry["verdict"]["reason"]






MODES = ("threaded", "gunicorn-sync", "gunicorn-gthread", "gevent", "cluster")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@pytest.mark.stress
@pytest.mark.timeout(3600)
def test_fifty_random_interrupts_leave_nothing_and_no_false_verdict(tmp_path: Path) -> None:
    """50 signals at random moments over the modes: 0 leftovers, 0 rows lost, 0 false races."""
    rng = random.Random(int(os.environ.get("RACELAB_STRESS_SEED", "7")))
    for attempt in range(int(os.environ.get("RACELAB_STRESS_INTERRUPTS", "50"))):
        mode, signum = rng.choice(MODES), rng.choice(SIGNALS)
        run = tmp_path / f"run{attempt}"
        proc = racelab("swarm", "--mode", mode, "--store", "sqlite", "--users", "8",
                        "--duration", "20", "--processes", str(rng.choice((1, 2))),
                        "--out", str(run), cwd=tmp_path)
        seen: dict[int, psutil.Process] = {}
        watch(proc, rng.uniform(0.5, 5.0), seen)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
        label = (attempt, mode, signal.Signals(signum).name)
        assert proc.returncode in (128 + signum, 1, 2), (label, (out + err).decode())
        assert "Traceback" not in err.decode(), label
        time.sleep(0.2)
        assert not live(seen.values()), label
        results = run / "results.json"
        if not results.exists():
            continue  # interrupted before the run directory held anything
        entry = json.loads(results.read_text())["experiments"][0]
        assert entry["verdict"]["valid"] != "no", label  # sqlite is safe: never a race
        final = json.loads((run / "final.json").read_text())
        served = sum(s.get("served") or 0 for s in final.get("states") or [])
        if final.get("available") and served:
            ops = entry["ops"]
            assert ops["ok"] + ops["info"] >= served, (label, ops, served)
