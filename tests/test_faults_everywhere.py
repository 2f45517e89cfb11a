"""Faults are part of a history's meaning wherever it is read: the swarm, check, report
--reanalyse and export give one verdict; a store that restarts empty is never a race;
a demo or matrix stopped after its last cell still leaves its report, marked partial."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from cli_tools import racelab

from demo_server.basics import interrupts
from demo_server.basics.procs import reachable
from demo_server.served.config import Connections
from reports.analysis.checking import check_history
from reports.analysis.results import reset_problem
from reports.history.table import read_history
from scenarios.run.demo import run_demo
from scenarios.run.presets import Cell


def _run(*args: str, cwd: Path, timeout: float = 180) -> tuple[int, str]:
    proc = racelab(*args, cwd=cwd)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, (out + err).decode()


def _entry(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())["experiments"][0]


# -- a store that restarts empty ----------------------------------------------------------


def _restart_events(state: str) -> list[dict]:
    return [{"t_ns": 1, "kind": "fault:stop-store", "detail": "stopping the manager"},
            {"t_ns": 2, "kind": "fault:restart-store", "detail": "the manager runs again",
             "state": state}]


def test_repeats_after_an_empty_restart_are_unknown_not_race(tmp_path: Path) -> None:
    """A history whose numbers start over after the store restarted empty: unknown, naming
    the restart, witnesses kept; the same history without the restart is a race; a
    restart that kept the data leaves the evidence as it is."""
    history = tmp_path / "history.csv"
    rows = ["op_id,client,op,outcome,value,invoke_ns,complete_ns,server_pid,server_tid,"
            "server_arrival_ns,server_departure_ns,url,burst,error,status"]
    for i, value in enumerate([1, 2, 3, 1, 2, 3]):  # 1..3, a restart, 1..3 again
        rows.append(f"{i},c{i % 2},incr,ok,{value},{10 * i},{10 * i + 5},7,1,{10 * i + 1},"
                    f"{10 * i + 2},http://127.0.0.1:1,,,200")
    history.write_text("\n".join(rows) + "\n")
    table = read_history(history)
    assert check_history(table).valid == "no"
    emptied = check_history(table, reset=reset_problem(_restart_events("lost")))
    assert emptied.valid == "unknown"
    assert "restarted empty" in emptied.reason and emptied.witnesses
    assert reset_problem(_restart_events("kept")) is None
    assert reset_problem([_restart_events("lost")[1] | {"state": None}]) is not None


STORE_RESTARTS = [
    pytest.param(("swarm", "--store", "manager"), id="manager"),
    pytest.param(("--start-services", "--redis-url", "redis://127.0.0.1:1/0", "swarm",
                  "--store", "redis"), id="private-redis"),
]


@pytest.mark.parametrize("head", STORE_RESTARTS)
def test_a_store_restarted_empty_is_a_named_fault_never_a_race(tmp_path: Path,
                                                               head: tuple[str, ...]) -> None:
    """stop-store on the manager, or on a private Redis: the counter starts over, and the
    run is unknown naming the empty restart (exit 2 under --assert-safe), never a race."""
    if "redis" in head and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    run = tmp_path / "run"
    code, text = _run(*head, "--mode", "gunicorn-sync", "--users", "8", "--duration", "4",
                      "--fault", "stop-store@1s+1s", "--out", str(run), "--assert-safe",
                      cwd=tmp_path)
    entry = _entry(run)
    assert "fault:restart-store" in {e["kind"] for e in entry["events"]}, entry["events"]
    assert entry["verdict"]["valid"] == "unknown", entry["verdict"]
    assert code == 2, text
    reason = entry["verdict"]["reason"]
    assert "restart" in reason and "race" not in entry.get("failure_modes", []), reason
    # check, report --reanalyse and export agree with the run.
    check_code, check_text = _run("check", str(run / "history.csv"), cwd=tmp_path)
    assert check_code == 2, check_text
    assert _run("report", str(run), "--reanalyse", "--format", "json", cwd=tmp_path)[0] == 0
    assert _entry(run)["verdict"]["valid"] == "unknown"


# -- check reads the run's faults, scenario and state ---------------------------------------


@pytest.fixture(scope="module")
def killed_worker_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A safe store (sqlite) on gunicorn-sync with a worker killed mid-run: unknown."""
    base = tmp_path_factory.mktemp("kill")
    run = base / "run"
    code, text = _run("swarm", "--mode", "gunicorn-sync", "--store", "sqlite", "--users", "8",
                      "--duration", "3", "--fault", "kill-worker@0.5s", "--out", str(run),
                      "--assert-safe", cwd=base)
    assert code == 2, text
    assert _entry(run)["verdict"]["valid"] == "unknown"
    return run


def test_check_of_a_faulted_run_is_unknown_like_the_run(killed_worker_run: Path,
                                                        tmp_path: Path) -> None:
    """check HISTORY --final-file FINAL of a run with a worker killed: exit 2 naming the
    kill (the run said unknown), with and without --final-file, and as --json."""
    run = killed_worker_run
    for extra in (["--final-file", str(run / "final.json")], [], ["--json"]):
        code, text = _run("check", str(run / "history.csv"), *extra, cwd=tmp_path)
        assert code == 2, (extra, text)
        assert "kill-worker" in text, (extra, text)


def test_report_reanalyse_and_export_keep_the_fault(killed_worker_run: Path,
                                                    tmp_path: Path) -> None:
    """report --reanalyse gives the run's verdict again; export carries the kill as a
    :nemesis op, so a check of the Jepsen history is unknown naming it."""
    run = tmp_path / "copy"
    shutil.copytree(killed_worker_run, run)
    assert _run("report", str(run), "--reanalyse", "--format", "json", cwd=tmp_path)[0] == 0
    assert _entry(run)["verdict"]["valid"] == "unknown"
    exported = tmp_path / "history.json"
    code, text = _run("export", str(run), "--out", str(exported), cwd=tmp_path)
    assert code == 0, text
    ops = json.loads(exported.read_text())
    nemesis = [op["f"] for op in ops if op["process"] == "nemesis"]
    assert "kill-worker" in nemesis and "worker-died" in nemesis, nemesis
    assert [op["index"] for op in ops] == list(range(len(ops)))
    code, text = _run("check", str(exported), cwd=tmp_path)
    assert code == 2 and "kill-worker" in text, text


def test_check_of_a_session_run_uses_its_scenario(tmp_path: Path) -> None:
    """A safe --store session run (one counter per client) checks safe, as the run said:
    check takes the session scenario from the run, not the shared counter's."""
    if not reachable("127.0.0.1", 6379):
        pytest.skip("no Redis on 127.0.0.1:6379")
    run = tmp_path / "run"
    code, text = _run("--session-backend", "redis", "swarm", "--mode", "gunicorn-gthread",
                      "--store", "session", "--users", "4", "--requests", "300", "--out",
                      str(run), "--assert-safe", cwd=tmp_path)
    assert code == 0, text
    code, text = _run("check", str(run / "history.csv"), "--final-file",
                      str(run / "final.json"), cwd=tmp_path)
    assert code == 0, text


def test_check_of_an_interrupted_safe_run_is_unknown(tmp_path: Path) -> None:
    """A safe run stopped by SIGINT (exit 130): check of its history without --final-file
    is unknown (exit 2), never safe: the run's files say it was cut short."""
    run = tmp_path / "run"
    proc = racelab("swarm", "--mode", "threaded", "--store", "lock", "--requests", "200000",
                   "--out", str(run), cwd=tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if json.loads((run / "locust" / "progress.json").read_text())["rows"] > 500:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out + err).decode()
    code, text = _run("check", str(run / "history.csv"), cwd=tmp_path)
    assert code == 2, text
    assert "interrupted" in text, text


# -- a demo or matrix stopped after its last cell -------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_matrix_signalled_after_its_last_cell_leaves_a_partial_report(
        tmp_path: Path, delay: float, signum: int) -> None:
    """A signal as (or just after) the last cell ends: exit 128+N, results.json marked
    partial with its reason, and the HTML report rendered from it."""
    run = tmp_path / "run"
    proc = racelab("matrix", "--modes", "threaded", "--stores", "lock,sqlite", "--requests",
                   "300", "--out", str(run), cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(run.glob("cells/*/summary.json"))) >= 2:
            break
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    text = (out + err).decode()
    assert proc.returncode == 128 + signum, text
    results = json.loads((run / "results.json").read_text())
    assert results["run"]["partial"] is True, results["run"]
    assert "interrupted" in results["run"]["partial_reason"], results["run"]
    assert "partial" in (run / "report.html").read_text().lower()


class _SignalOnClose:
    """Launchers whose closing brings SIGTERM, as a signal that comes while a matrix
    closes its zygotes, after its last cell."""

    def __enter__(self) -> _SignalOnClose:
        return self

    def __exit__(self, *exc: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs here, inside the close


def _cell_without_load(cell: Cell, cell_dir: Path) -> dict:
    """A cell that writes what an experiment writes, without a server or a swarm."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    rows = ["op_id,client,op,outcome,value,invoke_ns,complete_ns,server_pid,server_tid,"
            "server_arrival_ns,server_departure_ns,url,burst,error,status"]
    rows += [f"{i},c{i},incr,ok,{i + 1},{10 * i},{10 * i + 5},7,1,,,http://127.0.0.1:1,,,200"
             for i in range(20)]
    (cell_dir / "history.csv").write_text("\n".join(rows) + "\n")
    (cell_dir / "final.json").write_text(json.dumps(
        {"available": True, "reason": "", "per_process": False,
         "states": [{"pid": 7, "value": 20, "served": 20}]}))
    (cell_dir / "summary.json").write_text(json.dumps(
        {"schema": 1, "status": "ok", "error": "", "label": cell.label,
         "experiment": {"scenario": "counter", "store": cell.store, "window": cell.window,
                        "mode": cell.mode}}))
    return {"valid": "yes", "anomalies": 0}


def _run_demo_signalled(tmp_path: Path, launchers: object,  # type: ignore[no-untyped-def]
                        interpreters: bool = False):
    """One cell without load through run_demo, with racelab's signal handling installed."""
    previous = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    interrupts.install()
    try:
        return run_demo([Cell(store="lock", mode="threaded")], tmp_path / "run",
                        Connections(), preset="test", budget_s=None, nominal_budget_s=1,
                        cell_runner=_cell_without_load, interpreters=interpreters,
                        launchers=launchers)  # type: ignore[arg-type]
    except KeyboardInterrupt as exc:  # would end the whole test session
        pytest.fail(f"the signal escaped run_demo: {exc!r}")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        interrupts.reset()


def test_a_signal_while_the_zygotes_close_still_leaves_the_report(tmp_path: Path) -> None:
    """SIGTERM as the matrix closes its zygotes (after the last cell): run_demo returns,
    interrupted, with results.json marked partial ("after the last cell") and the report."""
    result = _run_demo_signalled(tmp_path, _SignalOnClose())
    assert result.outcome.interrupted
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["run"]["partial"] is True
    assert "after the last cell" in results["run"]["partial_reason"], results["run"]
    assert (tmp_path / "run" / "report.html").is_file()


def test_a_signal_while_the_report_is_written_marks_it_partial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM while results.json is rendered into the report (the last step): the run
    is interrupted, and results.json and the report are written again, marked partial."""
    from reports.render import html

    real_render = html.render_run
    calls: list[int] = []

    def render_then_signal(*args: object, **kwargs: object) -> object:
        written = real_render(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs here, after the report was written
        return written

    monkeypatch.setattr(html, "render_run", render_then_signal)
    result = _run_demo_signalled(tmp_path, contextlib.nullcontext())
    assert result.outcome.interrupted
    assert len(calls) == 2
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["run"]["partial"] is True
    assert "after the last cell" in results["run"]["partial_reason"], results["run"]
    assert "partial" in (tmp_path / "run" / "report.html").read_text().lower()


def test_a_signal_as_the_count_after_the_cells_ends_still_leaves_the_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo that races the interpreter table after its cells stops counting signals
    there, so that the table can be interrupted: a SIGTERM that lands just as the handlers
    are put back is an interrupt after the last cell, with results.json and the report."""
    real = interrupts.deferred
    made: list[object] = []

    @contextlib.contextmanager
    def signalled_at_first_exit():  # type: ignore[no-untyped-def]
        with real() as stops:
            made.append(stops)
            first = len(made) == 1
            yield stops
        if first:  # the handlers are back: the signal raises
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)

    monkeypatch.setattr(interrupts, "deferred", signalled_at_first_exit)
    result = _run_demo_signalled(tmp_path, contextlib.nullcontext(), interpreters=True)
    assert result.outcome.interrupted
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["run"]["partial"] is True
    assert "SIGTERM" in results["run"]["partial_reason"], results["run"]
    assert "after the last cell" in results["run"]["partial_reason"], results["run"]
    assert not results.get("interpreters")
    assert (tmp_path / "run" / "report.html").is_file()
