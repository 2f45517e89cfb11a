"""Swarms against real servers: the history records every operation Locust made."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from demo_server.control.supervisor import free_port, group_members
from loadtests.history import COLUMNS
from loadtests.runner import SwarmSpec, parse_locust_json, run_swarm
from reports.analysis.results import analyse_experiment
from scenarios.run.experiment import ExperimentSpec, run_experiment


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        return list(reader)


def assert_matches_locust(summary: dict, rows: list[dict[str, str]]) -> None:
    outcomes = Counter(r["outcome"] for r in rows)
    swarm = summary["swarm"]
    assert swarm["locust_requests"] == len(rows)
    assert swarm["locust_failures"] == outcomes["fail"] + outcomes["info"]
    assert [int(r["op_id"]) for r in rows] == list(range(len(rows)))


def test_global_store_under_gunicorn_sync_repeats_values(tmp_path: Path) -> None:
    """Each sync worker counts on its own: the history shows values returned twice."""
    spec = ExperimentSpec(store="global", mode="gunicorn-sync", users=8, requests=600)
    summary = run_experiment(spec, tmp_path)
    rows = read_rows(tmp_path / "history.csv")
    assert len(rows) == 600
    assert all(r["outcome"] == "ok" for r in rows)
    assert_matches_locust(summary, rows)
    values = Counter(int(r["value"]) for r in rows)
    pids_of = {}
    for r in rows:
        pids_of.setdefault(int(r["value"]), set()).add(r["server_pid"])
    assert any(len(pids) > 1 for pids in pids_of.values()), "no cross-process duplicate"
    counts = analyse_experiment(tmp_path)["verdict"]["counts"]
    assert counts["duplicate_extra_returns"] == sum(n - 1 for n in values.values() if n > 1)
    assert summary["status"] == "ok" and not summary["server"]["died"]
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["available"] and final["per_process"]
    assert sum(s["served"] for s in final["states"]) == 600
    assert summary["command"].startswith("racelab swarm --mode gunicorn-sync --store global")


def test_sqlite_store_on_threaded_hands_out_unique_values(tmp_path: Path) -> None:
    """A transactional store gives every request its own number, 1..N, no gaps."""
    spec = ExperimentSpec(store="sqlite", mode="threaded", users=8, requests=500)
    summary = run_experiment(spec, tmp_path)
    rows = read_rows(tmp_path / "history.csv")
    assert len(rows) == 500
    assert_matches_locust(summary, rows)
    assert sorted(int(r["value"]) for r in rows) == list(range(1, 501))
    counts = analyse_experiment(tmp_path)["verdict"]["counts"]
    assert (counts["distinct_values"], counts["duplicate_extra_returns"],
            counts["skipped_values"]) == (500, 0, 0)


def _server_pgids(run_dir: Path) -> set[int]:
    """Process groups of the servers started for ``run_dir`` (found by their environment)."""
    needle = f"RACELAB_SQLITE_PATH={run_dir}/counter.sqlite3".encode()
    pgids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pgids.add(os.getpgid(int(entry.name)))
        except OSError:
            continue
    return pgids


def test_server_killed_mid_swarm_is_recorded(tmp_path: Path) -> None:
    """SIGKILL to the server's group: the swarm ends by itself, fail/info ops, server.died."""
    killed: list[int] = []

    def kill_when_busy(done: int, _elapsed: float) -> None:
        if done >= 300 and not killed:
            for pgid in _server_pgids(tmp_path):
                os.killpg(pgid, signal.SIGKILL)
                killed.append(pgid)

    spec = ExperimentSpec(store="global", mode="gunicorn-gthread", users=8, requests=20000,
                          duration=60)
    started = time.monotonic()
    summary = run_experiment(spec, tmp_path, progress=kill_when_busy)
    assert killed
    assert time.monotonic() - started < 50  # ended by itself, not by its hard timeout
    rows = read_rows(tmp_path / "history.csv")
    outcomes = Counter(r["outcome"] for r in rows)
    assert outcomes["ok"] >= 300
    assert outcomes["fail"] + outcomes["info"] > 0
    assert all(r["error"] for r in rows if r["outcome"] != "ok")
    assert_matches_locust(summary, rows)
    assert summary["server"]["died"] and summary["status"] == "failed"
    assert "died" in summary["error"]
    assert not json.loads((tmp_path / "final.json").read_text())["available"]
    for pgid in killed:
        assert not group_members(pgid)


GARBAGE_APP = textwrap.dedent("""
    import itertools, sys
    from wsgiref.simple_server import make_server, WSGIRequestHandler

    answers = itertools.cycle([
        ("200 OK", b"not json at all"),
        ("200 OK", b'{"pid": 1}'),
        ("500 INTERNAL SERVER ERROR", b"boom"),
        ("200 OK", b'{"value": "seven"}'),
        ("200 OK", b'{"value": 7, "pid": 1, "tid": 2, "arrival_ns": 3, "departure_ns": 4}'),
    ])

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    def app(environ, start_response):
        status, body = next(answers)
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body)))])
        return [body]

    make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet).serve_forever()
""")


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("garbage server did not start")


@pytest.mark.parametrize("hold", [None, "3"], ids=["written-at-stop", "written-while-running"])
def test_garbage_answers_are_unknown_with_a_reason(tmp_path: Path, monkeypatch,
                                                   hold: str | None) -> None:
    """Non-JSON bodies, missing or non-integer values and 500s are info ops, not crashes.

    Bodies are decoded when held operations are written out: at the end, or while
    the swarm runs once ``--racelab-hold`` of them are held. Either way the
    history and Locust's failure count agree.
    """
    if hold is not None:
        monkeypatch.setenv("RACELAB_SWARM_HOLD", hold)
    script = tmp_path / "garbage.py"
    script.write_text(GARBAGE_APP)
    port = free_port()
    server = subprocess.Popen([sys.executable, str(script), str(port)], start_new_session=True)
    try:
        _wait_port(port)
        result = run_swarm(SwarmSpec(urls=(f"http://127.0.0.1:{port}",), users=1, requests=50),
                           tmp_path)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    rows = read_rows(result.history)
    assert len(rows) == 50 == result.locust_requests
    assert [int(r["op_id"]) for r in rows] == list(range(50))
    assert [int(r["complete_ns"]) for r in rows] == sorted(int(r["complete_ns"]) for r in rows)
    outcomes = Counter(r["outcome"] for r in rows)
    assert outcomes == {"ok": 10, "info": 40}
    assert result.locust_failures == 40
    errors = " | ".join(r["error"] for r in rows)
    assert "not a JSON body" in errors and "HTTP 500" in errors
    assert "value is not an integer" in errors
    assert all(r["value"] == "7" for r in rows if r["outcome"] == "ok")


def test_refused_connections_are_failures(tmp_path: Path) -> None:
    """Nobody listening: every op certainly had no effect (fail), and the swarm still ends."""
    port = free_port()
    result = run_swarm(SwarmSpec(urls=(f"http://127.0.0.1:{port}",), users=2, requests=20),
                       tmp_path)
    rows = read_rows(result.history)
    assert len(rows) == 20
    assert {r["outcome"] for r in rows} == {"fail"}
    assert all("refused" in r["error"] for r in rows)


def test_master_and_workers_bring_histories_home(tmp_path: Path, live_server) -> None:
    """Two worker processes on loopback send their histories to the master's run directory."""
    sup = live_server(store="lock", mode="gunicorn-gthread")
    run_dir = tmp_path / "run"
    result = run_swarm(SwarmSpec(urls=(sup.url,), users=6, requests=900, local_workers=2),
                       run_dir)
    rows = read_rows(run_dir / "history.csv")
    assert len(rows) == 900 == result.locust_requests
    processes = {r["client"].split("-")[0] for r in rows}
    assert len(processes) == 2
    assert all(r["outcome"] == "ok" for r in rows)
    assert not list((run_dir / "locust").glob("parts"))


def test_burst_swarm_records_rounds(tmp_path: Path) -> None:
    """Burst users fire in rounds: every op carries its round; spreads are measured."""
    spec = ExperimentSpec(store="lock", mode="gunicorn-gthread", burst=10, requests=200)
    run_experiment(spec, tmp_path)
    rows = read_rows(tmp_path / "history.csv")
    assert len(rows) == 200
    rounds = Counter(int(r["burst"]) for r in rows)
    assert len(rounds) == 20 and set(rounds.values()) == {10}
    spreads = analyse_experiment(tmp_path)["burst_spreads"]
    assert [s["round"] for s in spreads] == sorted(rounds)
    assert all(s["client_ns"] >= 0 and s["server_ns"] is not None for s in spreads)


def test_burst_rounds_line_up_across_processes(tmp_path: Path, live_server) -> None:
    """With two Locust processes, a round's requests come from both, released by deadline."""
    sup = live_server(store="lock", mode="gunicorn-gthread")
    result = run_swarm(SwarmSpec(urls=(sup.url,), users=6, requests=180, burst=True,
                                 processes=2), tmp_path)
    rows = read_rows(result.history)
    assert len(rows) == 180
    by_round: dict[str, set[str]] = {}
    for r in rows:
        by_round.setdefault(r["burst"], set()).add(r["client"].split("-")[0])
    assert sum(1 for procs in by_round.values() if len(procs) == 2) >= len(by_round) // 2


def test_cluster_users_spread_over_every_instance(tmp_path: Path) -> None:
    """In cluster mode each user round-robins over all instance URLs."""
    spec = ExperimentSpec(store="global", mode="cluster", instances=2, users=4, requests=200)
    run_experiment(spec, tmp_path)
    rows = read_rows(tmp_path / "history.csv")
    assert Counter(r["url"] for r in rows).most_common()[-1][1] >= 90
    assert analyse_experiment(tmp_path)["verdict"]["counts"]["duplicate_extra_returns"] > 0


def test_locust_json_with_worker_placeholders() -> None:
    """With --processes, workers print [] first; the master's list is the one that counts."""
    text = '[]\n[]\n[\n {"name": "/incr", "num_requests": 7, "num_failures": 2}\n]\n'
    assert parse_locust_json(text) == (7, 2)


@pytest.mark.parametrize("args", [["--users", "0"], ["--duration", "-1"], ["--burst", "-1"],
                                  ["--duration", "nan"], ["--requests", "100000000000"],
                                  ["--spawn-rate", "-1"]])
def test_swarm_bad_input_exits_2(cli_runner, args: list[str]) -> None:
    """Bad swarm options are a usage error before anything starts."""
    from cli import main

    result = cli_runner.invoke(main, ["swarm", *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_swarm_command_prints_one_screen(cli_runner, tmp_path: Path) -> None:
    """`racelab swarm` runs an experiment and prints counts and the run directory."""
    from cli import main

    out = tmp_path / "run"
    result = cli_runner.invoke(main, ["swarm", "--mode", "gunicorn-sync", "--users", "4",
                                      "--requests", "300", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "repeated answers" in result.output and str(out) in result.output
    assert (out / "summary.json").exists() and (out / "history.csv").exists()
    # What it printed is the stored analysis, and `check` says the same word.
    entry = json.loads((out / "results.json").read_text())["experiments"][0]
    printed = " ".join(result.output.split())
    assert f"{entry['throughput_rps']:,.0f} req/s" in printed
    latency = entry["latency_ms"]
    assert " / ".join(f"{latency[k]:.1f} ms" for k in ("p50", "p95", "p99")) in printed
    word = {"yes": "safe", "no": "race", "unknown": "unknown"}[entry["verdict"]["valid"]]
    assert f"verdict: {word} " in printed
    checked = cli_runner.invoke(main, ["check", str(out / "history.csv"), "--final-file",
                                       str(out / "final.json")])
    assert checked.stdout.startswith(f"{word}: ")  # stderr names the run files it read


def test_interrupted_swarm_keeps_its_records(tmp_path: Path) -> None:
    """Ctrl-C while Locust runs: every process stops, the summary of what was recorded remains."""
    def interrupt(done: int, _elapsed: float) -> None:
        if done >= 100:
            raise KeyboardInterrupt

    spec = ExperimentSpec(store="lock", mode="threaded", users=4, duration=30, requests=0)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, tmp_path, progress=interrupt)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "interrupted"
    rows = read_rows(tmp_path / "history.csv")
    assert len(rows) >= 100
    assert analyse_experiment(tmp_path)["ops"]["total"] == len(rows)
    assert not _server_pgids(tmp_path)


def test_every_user_takes_part_even_in_a_short_swarm(tmp_path: Path) -> None:
    """Users start together: a budget smaller than a second of load still has every client."""
    spec = ExperimentSpec(store="lock", mode="threaded", users=12, requests=240)
    run_experiment(spec, tmp_path)
    rows = read_rows(tmp_path / "history.csv")
    assert len({r["client"] for r in rows}) == 12


def test_no_user_keeps_its_process_to_itself(tmp_path: Path, live_server) -> None:
    """Users of one Locust process share it, however fast the server answers.

    On loopback a server can answer inside the client's send, call after call;
    a user that never has to wait would then run alone while the answers of the
    other users of its process wait, until their keep-alive connections time out
    and close under them (false ``info`` operations). Users yield when answered
    without waiting, so every user keeps a fair share of the calls.
    """
    sup = live_server(store="global", mode="gunicorn-gthread")
    result = run_swarm(SwarmSpec(urls=(sup.url,), users=32, duration=3, processes=2,
                                 spawn_rate=1000.0), tmp_path)
    rows = read_rows(result.history)
    assert all(r["outcome"] == "ok" for r in rows), Counter(r["error"] for r in rows)
    calls = Counter(r["client"] for r in rows)
    assert len(calls) == 32
    assert min(calls.values()) >= 0.2 * len(rows) / 32, calls.most_common()


def test_reconnecting_users_reach_every_worker(tmp_path: Path) -> None:
    """With reconnects, a keep-alive server's two worker processes both take requests."""
    spec = ExperimentSpec(store="global", mode="gunicorn-gthread", users=8, requests=600,
                          reconnect=10)
    run_experiment(spec, tmp_path)
    rows = read_rows(tmp_path / "history.csv")
    assert len({r["server_pid"] for r in rows}) == 2


def test_session_users_keep_their_cookie(tmp_path: Path) -> None:
    """Each Locust user is one client: it sends its session cookie back and counts 1, 2, 3..."""
    spec = ExperimentSpec(store="session", mode="gunicorn-gthread", users=6, requests=300)
    run_experiment(spec, tmp_path)
    rows = read_rows(tmp_path / "history.csv")
    by_client: dict[str, list[int]] = {}
    for row in sorted(rows, key=lambda r: int(r["invoke_ns"])):
        by_client.setdefault(row["client"], []).append(int(row["value"]))
    assert len(by_client) == 6
    for values in by_client.values():
        assert values == list(range(1, len(values) + 1))


def test_session_store_on_redis_through_the_cli(tmp_path: Path) -> None:
    """--session-backend redis: each client keeps its own counter, and the command reproduces it."""
    from demo_server.control.doctor import reachable

    if not reachable("127.0.0.1", 6379):
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (see docs/stores.md)")
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "--session-backend", "redis", "swarm", "--mode",
         "gunicorn-gthread", "--store", "session", "--users", "4", "--requests", "200",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verdict: safe" in proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["command"].startswith("racelab --session-backend redis swarm")
