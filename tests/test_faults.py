"""Fault specs, and faults performed against real servers: each one is an event."""

from __future__ import annotations

import json
import time

import pytest

from demo_server import ServerConfig
from demo_server.basics.client import hammer
from demo_server.basics.errors import FaultError
from demo_server.basics.procs import live, tree
from demo_server.control.faults import FaultScheduler, FaultSpec, parse_fault, parse_faults
from demo_server.control.modes import LaunchSpec
from demo_server.control.supervisor import Supervisor


@pytest.mark.parametrize(("text", "spec"), [
    ("kill-worker@2s", FaultSpec("kill-worker", 2.0)),
    ("kill-worker@500ms", FaultSpec("kill-worker", 0.5)),
    ("kill-worker@0.5", FaultSpec("kill-worker", 0.5)),
    ("stop-store@1s+2s", FaultSpec("stop-store", 1.0, 2.0)),
    ("pause-store@1s+250ms", FaultSpec("pause-store", 1.0, 0.25)),
    ("pause-store", FaultSpec("pause-store", 1.0, 1.0)),
    (" kill-worker ", FaultSpec("kill-worker", 1.0)),
])
def test_fault_specs_parse(text: str, spec: FaultSpec) -> None:
    """Every accepted form reads into the same typed spec; str() gives a canonical form back."""
    assert parse_fault(text) == spec
    assert parse_fault(str(spec)) == spec


@pytest.mark.parametrize("text", [
    "", "kill", "kill-worker@", "kill-worker@2x", "kill-worker@2s+1s", "stop-store@1s+0s",
    "pause-store@nan", "stop-store@-1s", "pause-store@1e9s", "kill-worker@99999999s",
])
def test_bad_fault_specs_are_one_sentence(text: str) -> None:
    """Bad text is a FaultError of one line; unknown forms name the accepted ones."""
    with pytest.raises(FaultError) as info:
        parse_fault(text)
    message = str(info.value)
    assert "\n" not in message
    assert "kill-worker@2s, stop-store@1s+2s or pause-store@1s+2s" in message


def test_parse_faults_keeps_order() -> None:
    """Several specs keep the order given."""
    assert [str(f) for f in parse_faults(["pause-store@2s+1s", "kill-worker@1s"])] == [
        "pause-store@2s+1s", "kill-worker@1s"]


def _events(run_dir) -> list[dict]:
    doc = json.loads((run_dir / "events.json").read_text())
    assert doc["schema"] == "racelab.events/1"
    return doc["events"]


def test_kill_worker_on_gunicorn_sync_is_seen_and_recorded(tmp_path) -> None:
    """kill-worker@0.5s: the fault event, then worker-died and worker-replaced; nothing left."""
    sup = Supervisor(ServerConfig(store="global"), LaunchSpec(mode="gunicorn-sync"), tmp_path)
    with sup:
        everything = tree(sup.server_pids[0])
        before = set(sup.workers())
        with FaultScheduler(sup, ["kill-worker@0.5s"]):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                kinds = [e["kind"] for e in sup.events()]
                if "worker-replaced" in kinds:
                    break
                hammer(sup.urls, 20, concurrency=2)
        after = set(sup.workers())
        everything += tree(sup.server_pids[0])
    events = _events(tmp_path)
    kinds = [e["kind"] for e in events]
    assert kinds[:3] == ["fault:kill-worker", "worker-died", "worker-replaced"], events
    killed = events[0]["pid"]
    assert killed in before and killed not in after and len(after) == 2
    assert events[1]["pid"] == killed
    assert all(isinstance(e["t_ns"], int) and e["wall"] > 0 for e in events)
    assert events[0]["t_ns"] <= events[1]["t_ns"] <= events[2]["t_ns"]
    assert sup.events() == events
    assert len(everything) >= 4  # arbiter, two workers, the replacement
    assert live(everything) == []


def test_pause_and_stop_of_the_manager_are_recorded_and_undone(tmp_path) -> None:
    """pause-store and stop-store act on racelab's own manager; stopping early undoes them."""
    sup = Supervisor(ServerConfig(store="manager"), LaunchSpec(mode="threaded"), tmp_path)
    with sup:
        manager = sup.owned_services()[0]
        assert manager.name == "manager"
        scheduler = FaultScheduler(sup, ["pause-store@0s+0.3s", "stop-store@0.5s+30s"]).start()
        deadline = time.monotonic() + 10
        while "fault:stop-store" not in [e["kind"] for e in sup.events()]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        assert not manager.alive()
        assert "error" in hammer(sup.urls, 1, concurrency=1)[0]
        scheduler.stop()  # the load ended before the 30 s were up: the manager comes back
        assert manager.alive()
        kinds = [e["kind"] for e in sup.events()]
        answers = hammer(sup.urls, 20, concurrency=2)
        assert sum("error" in a for a in answers) <= 2  # a worker reconnects after one error
    assert kinds == ["fault:pause-store", "fault:resume-store", "fault:stop-store",
                     "fault:restart-store"], kinds
    assert "service-died" not in kinds


def test_store_faults_refuse_a_store_racelab_did_not_start(tmp_path) -> None:
    """An external Redis, or a store without a process, is never stopped: a FaultError."""
    sup = Supervisor(ServerConfig(store="global"), LaunchSpec(mode="threaded"), tmp_path)
    with sup, pytest.raises(FaultError, match="no process of its own"):
        FaultScheduler(sup, ["stop-store@1s+1s"])
    sup = Supervisor(ServerConfig(store="redis", redis_url="redis://127.0.0.1:1/0"),
                     LaunchSpec(mode="threaded"), tmp_path)
    with pytest.raises(FaultError, match="not started by racelab"):
        FaultScheduler(sup, ["pause-store"])


def test_a_dead_manager_is_a_service_died_event(tmp_path) -> None:
    """A store process that dies on its own during the run is recorded as service-died."""
    sup = Supervisor(ServerConfig(store="manager"), LaunchSpec(mode="threaded"), tmp_path)
    with sup:
        manager = sup.owned_services()[0]
        manager.group.signal(9)
        deadline = time.monotonic() + 5
        while "service-died" not in [e["kind"] for e in sup.events()]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert [e["kind"] for e in _events(tmp_path)] == ["service-died"]


def test_a_server_that_exits_is_recorded(tmp_path) -> None:
    """A Werkzeug server killed mid-run: server-exited, then instance-unreachable."""
    sup = Supervisor(ServerConfig(store="global"), LaunchSpec(mode="threaded"), tmp_path)
    with sup, FaultScheduler(sup, ["kill-worker@0s"]):
        deadline = time.monotonic() + 5
        while "server-exited" not in [e["kind"] for e in sup.events()]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    kinds = [e["kind"] for e in _events(tmp_path)]
    assert kinds[:2] == ["fault:kill-worker", "server-exited"]
    assert "threaded server process" in _events(tmp_path)[0]["detail"]


def test_an_experiment_with_a_fault_writes_its_events(tmp_path) -> None:
    """run_experiment with kill-worker: events.json and the summary hold the fault and effect."""
    from scenarios.run.experiment import run_experiment
    from scenarios.run.spec import ExperimentSpec

    spec = ExperimentSpec(store="sqlite", mode="gunicorn-sync", users=4, requests=0,
                          duration=2.0, faults=("kill-worker@0.5s",))
    assert "--fault kill-worker@0.5s" in spec.command()
    summary = run_experiment(spec, tmp_path)
    kinds = [e["kind"] for e in _events(tmp_path)]
    assert kinds[0] == "fault:kill-worker"
    assert "worker-died" in kinds and "worker-replaced" in kinds
    assert [e["kind"] for e in summary["events"]] == kinds
    from reports.analysis.results import analyse_experiment

    verdict = analyse_experiment(tmp_path)["verdict"]  # a safe store: never safe when faulted
    assert verdict["valid"] != "yes"
    assert "fault:kill-worker" in json.dumps(verdict)


def test_an_experiment_refuses_a_bad_fault_before_starting(tmp_path) -> None:
    """A malformed fault is a FaultError from the spec itself: no server, no run directory."""
    from scenarios.run.spec import ExperimentSpec

    with pytest.raises(FaultError, match="unknown fault 'explode@1s'"):
        ExperimentSpec(faults=("explode@1s",))


def test_stop_and_pause_a_private_redis(tmp_path) -> None:
    """A Redis racelab started (--start-services) is paused, stopped and restarted; no death."""
    import dataclasses
    import shutil

    from demo_server.control.services import PrivateServices

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")

    @dataclasses.dataclass
    class Settings:
        redis_url: str = "redis://127.0.0.1:1/0"
        postgres_dsn: str = ""
        memcached: str = ""

    with PrivateServices(Settings(), ["redis"], force=True) as settings:
        config = ServerConfig(store="redis", redis_url=settings.redis_url)
        with Supervisor(config, LaunchSpec(mode="threaded"), tmp_path) as sup:
            (redis,) = sup.owned_services()
            assert redis.name == "redis"
            with FaultScheduler(sup, ["pause-store@0s+0.2s", "stop-store@0.4s+0.3s"]):
                deadline = time.monotonic() + 10
                while "fault:restart-store" not in [e["kind"] for e in sup.events()]:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            assert redis.alive()
            assert [r for r in hammer(sup.urls, 10, concurrency=2) if "error" in r] == []
            time.sleep(0.3)
    kinds = [e["kind"] for e in _events(tmp_path)]
    assert kinds == ["fault:pause-store", "fault:resume-store", "fault:stop-store",
                     "fault:restart-store"], kinds
