"""Your own app: `swarm --app` and `probe` find the race in racy apps, pass the fixed ones.

The apps under tests/apps/ are small, written for these tests: a global counter,
an order book handing out ids from a dict, a check-then-act seat sale, a counter
answering with a streamed (chunked) body, and a fixed version of each (SQLite,
shared by every process).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_tools import racelab, refused

from demo_server.basics.procs import reachable

APPS = Path(__file__).resolve().parent / "apps"

# app file, request options, racy?
CASES = {
    "counter": ("counter_app.py", [], True),
    "counter_fixed": ("counter_fixed.py", [], False),
    "orders": ("order_book.py", ["--request", "POST /order", "--value", "json:id",
                                 "--check", "ids"], True),
    "orders_fixed": ("order_book_fixed.py", ["--request", "POST /order", "--value", "json:id",
                                             "--check", "ids"], False),
    "seats": ("seat_sale.py", ["--request", "POST /buy", "--value", "json:seat",
                               "--check", "ids"], True),
    "seats_fixed": ("seat_sale_fixed.py", ["--request", "POST /buy", "--value", "json:seat",
                                           "--check", "ids"], False),
    "stream": ("streaming_counter.py", [], True),
    "stream_fixed": ("streaming_counter_fixed.py", [], False),
}


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixed apps keep their SQLite files in this test's directory."""
    for name in ("ORDER_BOOK_DB", "SEAT_SALE_DB", "COUNTER_DB", "STREAM_DB"):
        monkeypatch.setenv(name, str(tmp_path / f"{name.lower()}.sqlite3"))
    return tmp_path


def _swarm(tmp_path: Path, case: str, mode: str, *extra: str) -> tuple[int, str, dict]:
    app, options, _ = CASES[case]
    run = tmp_path / f"run-{case}-{mode}"
    proc = racelab("swarm", "--app", f"{APPS / app}:app", "--mode", mode, "--workers", "2",
                    "--users", "8", "--requests", "500", *options, "--out", str(run),
                    "--assert-safe", *extra, cwd=tmp_path)
    out, err = proc.communicate(timeout=180)
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").exists() \
        else {}
    return proc.returncode, (out + err).decode(), results


@pytest.mark.parametrize("case", list(CASES))
def test_swarm_app_under_gunicorn_sync(app_env: Path, case: str) -> None:
    """gunicorn-sync -w 2: racy apps repeat values across processes (two pids named); fixed pass."""
    code, output, results = _swarm(app_env, case, "gunicorn-sync")
    racy = CASES[case][2]
    assert code == (1 if racy else 0), output
    entry = results["experiments"][0]
    assert entry["config"]["app"].endswith(":app")
    if racy:
        counts = entry["verdict"]["counts"]
        assert counts["duplicate_extra_cross_process"] > 0
        cross = [w for w in entry["verdict"]["witnesses"]
                 if (w.get("details") or {}).get("scope") == "cross-process"]
        assert cross and len(set(cross[0]["details"]["pids"])) == 2
        # A module global per worker: each worker's values run through their own sequence.
        assert entry["failure_modes"] == ["separate-copies"], entry["sharing"]
        assert entry["sharing"]["source"] == "history"
    assert "Traceback" not in output


@pytest.mark.parametrize("case", ["orders", "seats", "stream", "orders_fixed"])
def test_swarm_app_under_gthread_interleaves(app_env: Path, case: str) -> None:
    """gthread, one worker: the apps with a window race within one process; a fixed one passes."""
    code, output, results = _swarm(app_env, case, "gunicorn-gthread", "--workers", "1",
                                   "--threads", "8")
    racy = CASES[case][2]
    assert code == (1 if racy else 0), output
    if racy:
        counts = results["experiments"][0]["verdict"]["counts"]
        assert counts["duplicate_extra_same_process"] > 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gunicorn(app_env: Path):
    """Start a user's app under gunicorn -w 2 on loopback, as a user would; stop its group."""
    started: list[subprocess.Popen[bytes]] = []

    def start(app: str) -> str:
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
             "--chdir", str(APPS), "--control-socket", str(app_env / f"g{port}.ctl"),
             f"{Path(app).stem}:app"],
            cwd=app_env, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        started.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                time.sleep(0.5)  # let both workers boot
                return f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.1)
        raise AssertionError("gunicorn did not start")

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("case", ["counter", "counter_fixed", "orders", "orders_fixed",
                                  "seats", "seats_fixed", "stream", "stream_fixed"])
def test_probe_app_running_under_gunicorn(app_env: Path, gunicorn, case: str) -> None:
    """racelab probe against a gunicorn the test started: racy ones race, fixed ones pass."""
    app, options, racy = CASES[case]
    url = gunicorn(app)
    run = app_env / "probe"
    proc = racelab("probe", url, "--users", "8", "--requests", "400", *options,
                    "--out", str(run), "--assert-safe", cwd=app_env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == (1 if racy else 0), (out + err).decode()
    entry = json.loads((run / "results.json").read_text())["experiments"][0]
    assert entry["ops"]["ok"] == 400


def test_demo_app_as_a_target_gives_the_built_in_verdicts(tmp_path: Path) -> None:
    """demo_server:create_app() through --app: the same verdicts as the built-in path."""
    for mode, expected in (("gunicorn-sync", 1), ("threaded", 0)):
        builtin = racelab("swarm", "--mode", mode, "--requests", "400", "--assert-safe",
                           "--out", str(tmp_path / f"b-{mode}"), cwd=tmp_path)
        target = racelab("swarm", "--app", "demo_server:create_app()", "--mode", mode,
                          "--request", "GET /incr", "--value", "json:value", "--requests",
                          "400", "--assert-safe", "--out", str(tmp_path / f"t-{mode}"),
                          cwd=tmp_path)
        for proc in (builtin, target):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == expected, (out + err).decode()


@pytest.mark.parametrize(("args", "needle"), [
    (["swarm", "--app", "no/such/file.py:app"], "no file"),
    (["swarm", "--app", f"{APPS / 'counter_app.py'}:nothing"], "nothing"),
    (["swarm", "--app", f"{APPS / 'raises_on_import.py'}:app"], "the database URL is not"),
    (["probe", "http://127.0.0.1:1"], "nothing answers"),
    (["probe", "http://192.0.2.10:80"], "--allow-remote"),
])
def test_bad_targets_are_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    """Bad targets: one line naming the problem, exit 2, nothing left running."""
    refused(*args, "--requests", "50", "--out", str(tmp_path / "run"), cwd=tmp_path,
            needle=needle)


# --- the state moved to Redis or PostgreSQL, updated in two steps ------------------------


def _store_up(port: int) -> None:
    if not reachable("127.0.0.1", port):
        pytest.skip(f"nothing answers on 127.0.0.1:{port}")


@pytest.fixture
def redis_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Redis key of this test's own for redis_counter.py (COUNTER_KEY), deleted after."""
    import redis

    _store_up(6379)
    key = f"racelab-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("COUNTER_KEY", key)
    yield key
    redis.Redis.from_url("redis://127.0.0.1:6379/0").delete(key)


@pytest.fixture
def seat_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A PostgreSQL box office of this test's own for pg_seat_sale.py (1,000 seats), dropped."""
    import psycopg

    _store_up(5432)
    dsn = os.environ.get("RACELAB_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")
    table = f"racelab_test_seats_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, stock integer NOT NULL)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 1000)")
    monkeypatch.setenv("SEAT_SALE_DSN", dsn)
    monkeypatch.setenv("SEAT_SALE_TABLE", table)
    yield table
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def test_redis_counter_read_then_write_is_a_lost_update_in_the_shared_store(
        app_env: Path, redis_key: str) -> None:
    """A user's counter moved to Redis (GET, add one, SET) under gunicorn-sync: race, numbers
    repeated and updates lost from the final value, named the shared store's lost update
    (never separate copies: every worker reads the same final value). racelab check on the
    same files says the same."""
    run = app_env / "run"
    proc = racelab("swarm", "--app", f"{APPS / 'redis_counter.py'}:app", "--mode",
                   "gunicorn-sync", "--workers", "2", "--users", "16", "--requests", "1500",
                   "--final", "GET /count", "--out", str(run), "--assert-safe", cwd=app_env)
    out, err = proc.communicate(timeout=180)
    text = (out + err).decode()
    assert proc.returncode == 1, text
    entry = json.loads((run / "results.json").read_text())["experiments"][0]
    counts = entry["verdict"]["counts"]
    assert counts["duplicate_extra_cross_process"] > 0 and counts["lost_updates"] > 0
    assert entry["failure_modes"] == ["shared-lost-update"], entry["sharing"]
    assert entry["sharing"]["state"] == "shared"
    finals = [s["value"] for s in entry["final"]["states"]]
    assert len(finals) == 2 and len(set(finals)) == 1
    assert "lost update in the shared store" in text and "separate copies" not in text
    check = racelab("check", str(run / "history.csv"), "--final-file", str(run / "final.json"),
                    cwd=app_env)
    out, err = check.communicate(timeout=60)
    assert check.returncode == 1, (out + err).decode()
    assert "failure mode: lost update in the shared store" in out.decode()
    assert "evidence: each process's values skip over numbers" in out.decode()
    plain = racelab("check", str(run / "history.csv"), "--json", cwd=app_env)
    out, _ = plain.communicate(timeout=60)
    assert json.loads(out)["failure_modes"] == ["shared-lost-update"]  # the history alone


def test_postgres_seat_sale_read_then_write_is_a_lost_update_in_the_shared_store(
        app_env: Path, seat_table: str) -> None:
    """A user's box office in PostgreSQL (SELECT, then UPDATE with the value read) under
    gunicorn-gthread, checked as ids: seats sold twice, named the shared store's lost update,
    not interleaving and separate copies."""
    run = app_env / "run"
    proc = racelab("swarm", "--app", f"{APPS / 'pg_seat_sale.py'}:app", "--mode",
                   "gunicorn-gthread", "--workers", "2", "--threads", "4", "--users", "16",
                   "--requests", "800", "--request", "POST /buy", "--value", "json:seat",
                   "--check", "ids", "--out", str(run), "--assert-safe", cwd=app_env)
    out, err = proc.communicate(timeout=180)
    text = (out + err).decode()
    assert proc.returncode == 1, text
    entry = json.loads((run / "results.json").read_text())["experiments"][0]
    assert entry["verdict"]["counts"]["duplicate_extra_cross_process"] > 0
    assert entry["failure_modes"] == ["shared-lost-update"], entry["sharing"]
    assert "separate copies" not in text


def test_probe_of_a_redis_counter_names_the_shared_store(app_env: Path, redis_key: str) -> None:
    """racelab probe against the Redis counter served by gunicorn -w 2 with racelab's stamps
    (as --app serves it): the history alone tells the shared store's lost update."""
    port = _free_port()
    env = {**os.environ, "RACELAB_TARGET": f"{APPS / 'redis_counter.py'}:app",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--control-socket", str(app_env / "g.ctl"),
         "demo_server.served.target:stamped_app_from_env()"],
        cwd=app_env, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        time.sleep(0.5)  # let both workers boot
        run = app_env / "probe"
        probe = racelab("probe", f"http://127.0.0.1:{port}", "--users", "16", "--requests",
                        "1500", "--final", "GET /count", "--out", str(run), "--assert-safe",
                        cwd=app_env)
        out, err = probe.communicate(timeout=120)
        assert probe.returncode == 1, (out + err).decode()
        entry = json.loads((run / "results.json").read_text())["experiments"][0]
        assert entry["failure_modes"] == ["shared-lost-update"], entry["sharing"]
        assert entry["sharing"]["source"] == "history"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
