"""Stop signals to a swarm's orchestrator: nothing lost, nothing left running, the right code."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from loadtests.runner import EXIT_CODES, SwarmError, SwarmSpec

ROOT = Path(__file__).resolve().parent.parent

ORCHESTRATOR = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from demo_server.basics import interrupts
    from loadtests.runner import SwarmInterrupted, SwarmSpec, run_swarm

    interrupts.install()  # as the CLI does: run_swarm must keep its account right

    url, run_dir, processes = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    spec = SwarmSpec(urls=(url,), users=8, duration=30, processes=processes, grace=2.0,
                     reconnect=10)
    try:
        result = run_swarm(spec, run_dir)
    except SwarmInterrupted as exc:
        print(json.dumps({"signals": exc.result.signals, "rows": exc.result.rows,
                          "first": interrupts.first_signal()}))
        sys.exit(exc.exit_code)
    print(json.dumps({"signals": [], "rows": result.rows}))
""")


def _descendants(pid: int) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _alive(pids: set[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def _listening(pids: set[int]) -> set[str]:
    addresses = set()
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    addresses.add(conn.laddr.ip)
        except psutil.NoSuchProcess:
            continue
    return addresses


def _orchestrate(tmp_path: Path, url: str, run_dir: Path,
                 processes: int) -> subprocess.Popen[str]:
    """``run_swarm`` in a Python process of its own (in a new session), swarming ``url``."""
    script = tmp_path / "orchestrate.py"
    script.write_text(ORCHESTRATOR)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), url, str(run_dir), str(processes)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _rows_so_far(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "locust" / "progress.json").read_text())["rows"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize("signals, code", [
    ([signal.SIGINT], 130),
    ([signal.SIGINT, signal.SIGINT], 130),
    ([signal.SIGTERM], 143),
    ([signal.SIGHUP], 129),
], ids=["sigint", "double-sigint", "sigterm", "sighup"])
def test_signal_stops_cleanly_and_keeps_every_served_request(
        tmp_path: Path, live_server, signals: list[signal.Signals], code: int) -> None:
    """processes=2 against two server workers: every served request is a row, nothing is left.

    The orchestrator (``run_swarm`` in its own Python process) gets the signal
    while the load runs; it exits with 128 + the first signal's number, its
    history holds an ``ok`` or ``info`` row for every request the server counted
    (``/state``'s ``served``), no process it started lives on (the whole
    process tree, not only its groups), the workers kept their files inside
    the run directory, and the Locust master listened on loopback only.
    """
    sup = live_server(store="lock", mode="gunicorn-gthread", workers=2)
    run_dir = tmp_path / "run"
    orchestrator = _orchestrate(tmp_path, sup.url, run_dir, processes=2)
    seen: set[int] = set()
    listening: set[str] = set()
    scratch = run_dir / "locust" / "scratch"
    scratch_used = False
    try:
        deadline = time.monotonic() + 30
        while _rows_so_far(run_dir) < 300 and time.monotonic() < deadline:
            seen |= _descendants(orchestrator.pid)
            scratch_used = scratch_used or any(scratch.glob("racelab-worker-*"))
            time.sleep(0.05)
        assert _rows_so_far(run_dir) >= 300, "the swarm never got going"
        seen |= _descendants(orchestrator.pid)
        listening = _listening(seen)
        for sig in signals:
            orchestrator.send_signal(sig)
            seen |= _descendants(orchestrator.pid)
            time.sleep(0.1)
        out, err = orchestrator.communicate(timeout=60)
    finally:
        if orchestrator.poll() is None:
            os.killpg(orchestrator.pid, signal.SIGKILL)
            orchestrator.wait()
    assert orchestrator.returncode == code, err[-2000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["signals"] == [sig.name for sig in signals]
    assert report["first"] == signals[0]
    assert len(seen) >= 3  # the master and its two forked workers at least
    assert scratch_used  # the workers' files were in the run directory, not the temp directory
    assert not _alive(seen)
    assert listening and listening <= {"127.0.0.1"}, listening
    with (run_dir / "history.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == report["rows"]
    outcomes = Counter(r["outcome"] for r in rows)
    served = sum(state["served"] for state in sup.read_state())
    assert served == outcomes["ok"] + outcomes["info"], (served, outcomes)
    assert all(r["error"] == "interrupted" for r in rows if r["outcome"] == "info"), Counter(
        r["error"] for r in rows if r["outcome"] != "ok")
    assert not list((run_dir / "locust").glob("parts")) + list((run_dir / "locust").glob(
        "scratch"))
    assert EXIT_CODES == {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}


@pytest.mark.parametrize("field, value, words", [
    ("duration", float("nan"), "duration must be a finite number"),
    ("duration", float("inf"), "duration must be a finite number"),
    ("duration", -1.0, "duration must be a finite number"),
    ("requests", 10**30, "requests must be a whole number from 0 to 10,000,000"),
    ("requests", 10_000_001, "requests must be a whole number"),
    ("spawn_rate", -1.0, "spawn_rate must be a finite number"),
    ("spawn_rate", float("nan"), "spawn_rate must be a finite number"),
    ("users", 0, "users must be a whole number from 1"),
    ("timeout", 0.0, "timeout must be more than 0"),
    ("grace", float("inf"), "grace must be a finite number"),
    ("tabs", 0, "tabs must be a whole number from 1"),
])
def test_swarm_spec_numbers_are_bounded(field: str, value: object, words: str) -> None:
    """Unbounded or impossible numbers are one sentence, before anything starts."""
    settings: dict[str, object] = {"urls": ("http://127.0.0.1:1",), "requests": 10}
    settings[field] = value
    with pytest.raises(SwarmError, match=words) as caught:
        SwarmSpec(**settings)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_swarm_spec_refuses_odd_urls_and_no_operation() -> None:
    """A URL that is not http(s) and an empty operation list are refused."""
    with pytest.raises(SwarmError, match="expected http"):
        SwarmSpec(urls=("ftp://127.0.0.1",), requests=1)
    with pytest.raises(SwarmError, match="at least one operation"):
        SwarmSpec(urls=("http://127.0.0.1:1",), requests=1, operations=())


def test_sigterm_to_locust_itself_keeps_its_requests_in_flight(tmp_path: Path,
                                                               live_server) -> None:
    """A SIGTERM straight to the Locust process (no interrupt first) loses no served request.

    That is what the runner sends when a stop signal comes before Locust wrote its
    first progress, and at the hard timeout: the requests in flight then become
    ``info`` rows (``interrupted``), so every request the server counted is a row.
    """
    sup = live_server(store="lock", mode="gunicorn-gthread", workers=2)
    run_dir = tmp_path / "run"
    orchestrator = _orchestrate(tmp_path, sup.url, run_dir, processes=1)
    try:
        deadline = time.monotonic() + 30
        while _rows_so_far(run_dir) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _rows_so_far(run_dir) >= 300, "the swarm never got going"
        (locust,) = [p for p in psutil.Process(orchestrator.pid).children(recursive=True)
                     if "locust" in " ".join(p.cmdline())]
        locust.send_signal(signal.SIGTERM)
        out, err = orchestrator.communicate(timeout=60)
    finally:
        if orchestrator.poll() is None:
            os.killpg(orchestrator.pid, signal.SIGKILL)
            orchestrator.wait()
    assert orchestrator.returncode == 0, err[-2000:]
    with (run_dir / "history.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == json.loads(out.strip().splitlines()[-1])["rows"]
    outcomes = Counter(r["outcome"] for r in rows)
    served = sum(state["served"] for state in sup.read_state())
    assert outcomes["ok"] + outcomes["info"] >= served, (served, outcomes)
    assert all(r["error"] == "interrupted" for r in rows if r["outcome"] == "info"), Counter(
        r["error"] for r in rows if r["outcome"] != "ok")
