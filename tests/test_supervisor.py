"""Every serving mode, launched for real, raced for real, and stopped without leftovers."""

from __future__ import annotations

import collections
import json
import os
import signal
import time

import pytest

from demo_server import ServerConfig, ServerNotReady, StoreUnavailable
from demo_server.basics.client import get_json, hammer
from demo_server.control.modes import LaunchSpec
from demo_server.control.supervisor import Supervisor, group_members
from scenarios.counter.stores import SqliteStore

MODES = ["single", "threaded", "processes", "gunicorn-sync", "gunicorn-gthread", "gevent",
         "cluster"]
EMBEDDED_STORES = ["global", "lock", "manager", "sqlite", "g"]


def _ok(responses: list[dict]) -> list[dict]:
    errors = [r for r in responses if "error" in r]
    assert not errors, errors[:3]
    return responses


@pytest.mark.parametrize("store", EMBEDDED_STORES)
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_and_store_starts_answers_and_stops(tmp_path, mode: str, store: str) -> None:
    """Each (mode, store) answers /incr; after stop no process is alive and no event was seen."""
    sup = Supervisor(ServerConfig(store=store), LaunchSpec(mode=mode), tmp_path)
    with sup:
        groups = [p.popen.pid for p in sup._procs]
        for url in sup.urls:
            assert get_json(url + "/incr")["store"] == store
        if mode in ("gunicorn-sync", "gunicorn-gthread", "gevent"):
            assert len(sup.worker_pids[sup.url]) == 2
            # gunicorn's arbiter opens its control socket beside its workers' start;
            # it goes in the run directory, not $HOME/.gunicorn/gunicorn.ctl.
            deadline = time.monotonic() + 10
            while not (tmp_path / "server.ctl").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert (tmp_path / "server.ctl").exists()
    assert all(group_members(pgid) == [] for pgid in groups)
    assert json.loads((tmp_path / "events.json").read_text())["events"] == []
    assert not list(tmp_path.glob("*.ctl"))  # gunicorn's control socket went with it
    assert all((tmp_path / f"{name}.log").exists()
               for name in (["server"] if mode != "cluster" else ["server-0", "server-1"]))


@pytest.mark.parametrize("mode", ["gunicorn-sync", "processes"])
def test_global_repeats_numbers_across_processes(live_server, mode: str) -> None:
    """Each process has its own copy of the global: numbers repeat, and the pids show why."""
    sup = live_server(store="global", mode=mode)
    responses = _ok(hammer(sup.urls, 200, concurrency=8))
    counts = collections.Counter(r["value"] for r in responses)
    assert max(counts.values()) > 1
    repeated = max(counts, key=counts.__getitem__)
    pids = {r["pid"] for r in responses if r["value"] == repeated}
    assert len(pids) > 1  # the same number came from different processes
    if mode == "processes":
        assert set(counts) == {1}  # every request runs in a fresh fork


@pytest.mark.parametrize("mode", ["threaded", "gunicorn-gthread"])
def test_global_with_yield_window_loses_updates(live_server, mode: str) -> None:
    """read / sleep(0) / write under threads: the final state is below the increments served."""
    sup = live_server(store="global", mode=mode, window="yield")
    responses = _ok(hammer(sup.urls, 800, concurrency=16))
    states = sup.read_state()
    assert sum(s["served"] for s in states) == len(responses)
    assert sum(s["value"] for s in states) < len(responses)


def test_lock_with_yield_window_under_threads_is_safe(live_server) -> None:
    """The same window behind a lock: no update lost, every value unique."""
    sup = live_server(store="lock", mode="threaded", window="yield")
    responses = _ok(hammer(sup.urls, 800, concurrency=16))
    assert sorted(r["value"] for r in responses) == list(range(1, 801))
    assert sup.read_state()[0]["value"] == 800


def test_lock_is_not_process_safe(live_server) -> None:
    """A threading.Lock does not reach across gunicorn's worker processes."""
    sup = live_server(store="lock", mode="gunicorn-sync")
    responses = _ok(hammer(sup.urls, 200, concurrency=8))
    counts = collections.Counter(r["value"] for r in responses)
    assert max(counts.values()) > 1
    assert len({r["pid"] for r in responses}) == 2


@pytest.mark.parametrize("store", ["manager", "sqlite"])
@pytest.mark.parametrize("mode", ["gunicorn-sync", "gunicorn-gthread", "threaded"])
def test_shared_stores_are_safe(live_server, store: str, mode: str) -> None:
    """Manager and SQLite: every value unique, final state equal to the successful increments."""
    sup = live_server(store=store, mode=mode)
    responses = _ok(hammer(sup.urls, 600, concurrency=12))
    assert sorted(r["value"] for r in responses) == list(range(1, 601))
    assert {s["value"] for s in sup.read_state()} == {600}


def test_unopenable_sqlite_file_is_one_clear_error(tmp_path) -> None:
    """A database path that cannot be opened is a StoreUnavailable naming it, before any server."""
    path = tmp_path / "missing" / "c.db"
    sup = Supervisor(ServerConfig(store="sqlite", sqlite_path=str(path)),
                     LaunchSpec(mode="threaded"), tmp_path)
    with pytest.raises(StoreUnavailable, match="cannot open the SQLite database"):
        sup.start()
    assert sup._procs == []


def test_server_that_never_starts_reports_its_log(tmp_path, monkeypatch) -> None:
    """A server that dies at start-up raises ServerNotReady with the tail of its log."""
    # Skip the orchestrator's own check, so that the worker is the one that fails.
    monkeypatch.setattr(SqliteStore, "prepare", classmethod(lambda cls, config: None))
    config = ServerConfig(store="sqlite", sqlite_path=str(tmp_path / "missing" / "c.db"))
    sup = Supervisor(config, LaunchSpec(mode="threaded"), tmp_path, ready_timeout=20)
    with pytest.raises(ServerNotReady) as info:
        sup.start()
    assert "server.log" in str(info.value)
    assert "unable to open database file" in str(info.value)
    assert sup._procs == []


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path) -> None:
    """A group that ignores SIGTERM is killed after the grace period, leaving nothing."""
    sup = Supervisor(ServerConfig(store="global"), LaunchSpec(mode="threaded"), tmp_path,
                     stop_grace=0.5)
    sup.start()
    pgid = sup._procs[0].popen.pid
    worker = sup._procs[0].popen.pid
    os.kill(worker, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    killed = sup.stop()
    assert worker in killed
    assert group_members(pgid) == []


@pytest.mark.parametrize("mode", ["gunicorn-sync", "gevent"])
def test_quick_stop_kills_racelab_s_own_server_at_once(tmp_path, mode: str) -> None:
    """After the final read, stop(quick=True) gives racelab's app SIGKILL: no graceful round."""
    sup = Supervisor(ServerConfig(store="global"), LaunchSpec(mode=mode), tmp_path)
    sup.start()
    arbiter = sup._procs[0].popen
    workers = sup.workers()
    assert len(workers) == 2
    assert sup.stop(quick=True) == []  # nothing survived the first signal
    assert arbiter.returncode == -signal.SIGKILL
    assert group_members(arbiter.pid) == []
    assert "Shutting down" not in (tmp_path / "server.log").read_text()
    assert not (tmp_path / "server.ctl").exists()  # no socket left in the run directory


def test_a_plain_stop_is_still_graceful(tmp_path) -> None:
    """Without quick, gunicorn's arbiter stops its workers and exits 0."""
    sup = Supervisor(ServerConfig(store="global"), LaunchSpec(mode="gunicorn-sync"), tmp_path)
    sup.start()
    arbiter = sup._procs[0].popen
    sup.stop()
    assert arbiter.returncode == 0
    assert "Shutting down" in (tmp_path / "server.log").read_text()

