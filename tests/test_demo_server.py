"""The app factory, the stores and the windows, in process (no server)."""

from __future__ import annotations

import threading

import pytest

from demo_server import ConfigError, ServerConfig, create_app
from demo_server.served.windows import make_window
from scenarios.counter.stores import SomeObj, global_obj, make_store
from scenarios.run.spec import ExperimentSpec


def test_some_obj_is_the_original_code() -> None:
    """SomeObj.query increments and returns, exactly like the question's object."""
    obj = SomeObj()
    assert [obj.query() for _ in range(3)] == [1, 2, 3]


def test_index_returns_the_number_as_text(app_client) -> None:
    """GET / answers the bare number as text, like the original app."""
    global_obj.param = 0
    assert app_client.get("/").get_data(as_text=True) == "1"
    assert app_client.get("/").get_data(as_text=True) == "2"


def test_incr_reports_the_server_itself(app_client) -> None:
    """/incr returns the value plus pid, thread, times, store, mode, interpreter and GIL."""
    body = app_client.post("/incr").get_json()
    for key in ("value", "pid", "tid", "arrival_ns", "departure_ns", "arrival_wall",
                "departure_wall", "store", "mode", "python", "gil"):
        assert key in body
    assert body["departure_ns"] >= body["arrival_ns"]
    assert body["store"] == "global"


def test_state_reset_and_healthz(app_client) -> None:
    """/state reads without changing, /reset zeroes, /healthz names the pid."""
    app_client.post("/reset")
    app_client.get("/incr")
    app_client.get("/incr")
    state = app_client.get("/state").get_json()
    assert (state["value"], state["served"], state["per_process"]) == (2, 2, True)
    assert app_client.get("/state").get_json()["value"] == 2
    assert app_client.post("/reset").get_json()["value"] == 0
    assert app_client.get("/state").get_json()["served"] == 0
    assert app_client.get("/healthz").get_json()["ok"] is True


def test_g_store_shares_nothing() -> None:
    """flask.g lives for one request: every request gets 1."""
    client = create_app(ServerConfig(store="g")).test_client()
    assert {client.get("/incr").get_json()["value"] for _ in range(5)} == {1}


def test_sqlite_store_counts_in_a_file(tmp_path) -> None:
    """The sqlite store keeps the number in its database file across app instances."""
    config = ServerConfig(store="sqlite", sqlite_path=str(tmp_path / "c.db"))
    assert [create_app(config).test_client().get("/incr").get_json()["value"]
            for _ in range(3)] == [1, 2, 3]


@pytest.mark.parametrize("window", ["call", "work", "yield", "io"])
def test_windows_really_run(window: str) -> None:
    """Each window is a real callable; work and io take measurable time."""
    fn = make_window(window, work_us=200)
    fn()


def test_yield_window_loses_updates_across_threads() -> None:
    """Read / sleep(0) / write in threads loses increments: the race is real, not simulated."""
    store = make_store(ServerConfig(store="global", window="yield"))
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        for _ in range(200):
            store.incr()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.value() < 1600


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"store": "nope"}, "unknown store"),
        ({"window": "nope"}, "unknown window"),
        ({"mode": "nope"}, "unknown mode"),
        ({"work_us": 0}, "work_us must be positive"),
    ],
)
def test_bad_config_is_one_clear_error(kwargs: dict, message: str) -> None:
    """Unknown names and out-of-range numbers raise ConfigError naming the problem."""
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**kwargs)


def test_a_window_on_an_atomic_store_is_refused_at_the_boundary() -> None:
    """The spec (the one boundary) and the app both refuse a window the store cannot have."""
    with pytest.raises(ConfigError, match="applies only to the stores"):
        ExperimentSpec(store="sqlite", window="yield")
    with pytest.raises(ConfigError, match="applies only to the stores"):
        create_app(ServerConfig(store="sqlite", window="yield"))


def test_config_round_trips_through_the_environment() -> None:
    """Workers rebuild the exact config from RACELAB_* variables."""
    config = ServerConfig(store="lock", window="work", work_us=7, mode="gevent", instance=3)
    assert ServerConfig.from_env(config.to_env()) == config
