"""A user's own app: target strings, loading, the stamping middleware, and serving it in modes."""

from __future__ import annotations

import http.client
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from werkzeug.test import Client

from demo_server import ServerConfig
from demo_server.basics.errors import TargetError
from demo_server.control.modes import LaunchSpec
from demo_server.control.supervisor import Supervisor
from demo_server.served.stamp import HEADERS, StampMiddleware
from demo_server.served.target import Target, load_target, parse_target

APPS = Path(__file__).parent / "apps"
COUNTER = f"{APPS / 'counter_app.py'}:app"
RAISES = f"{APPS / 'raises_on_import.py'}:app"


@pytest.mark.parametrize(("text", "target"), [
    ("app.py:app", Target("app.py", "app", False, True)),
    ("path/to/file.py:app", Target("path/to/file.py", "app", False, True)),
    ("package.module:app", Target("package.module", "app", False, False)),
    ("package.module:create_app()", Target("package.module", "create_app", True, False)),
    ("demo_server:create_app()", Target("demo_server", "create_app", True, False)),
    ("pkg:holder.app", Target("pkg", "holder.app", False, False)),
])
def test_target_forms_parse(text: str, target: Target) -> None:
    """The three accepted forms (and a dotted attribute) parse without importing anything."""
    assert parse_target(text) == target
    assert str(target) == text


@pytest.mark.parametrize("text", ["app", "app.py", ":app", "app.py:", "pkg:create_app(1)",
                                  "pkg:1app", "path/to/file:app", "my-pkg:app"])
def test_bad_target_forms_name_the_accepted_ones(text: str) -> None:
    """A target of no accepted form is one TargetError line naming the forms."""
    with pytest.raises(TargetError, match=re.escape("package.module:create_app()")) as info:
        parse_target(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("tests/apps/missing.py:app", "no file tests/apps/missing.py"),
    ("no_such_racelab_module:app", "no module named 'no_such_racelab_module'"),
    (f"{APPS / 'counter_app.py'}:application", "has no attribute 'application'"),
    (f"{APPS / 'counter_app.py'}:counter", "is a int, not a WSGI app"),
    (RAISES, "importing it raised RuntimeError: the database URL is not configured "
             "(at "),
    ("demo_server:gil_enabled()", "is a bool, not a WSGI app"),
])
def test_load_failures_are_one_typed_line(text: str, expected: str) -> None:
    """Missing file or module, no attribute, not callable, an import that raises: one line."""
    with pytest.raises(TargetError) as info:
        load_target(text)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    if text == RAISES:
        assert "raises_on_import.py:6" in message


def test_load_a_file_and_a_factory() -> None:
    """A file's attribute and a module's factory both load as WSGI callables."""
    assert callable(load_target(COUNTER))
    from flask import Flask

    assert isinstance(load_target("demo_server:create_app()"), Flask)


def _wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Racelab-Pid", "forged")])

    def body():
        yield b"a"
        yield b"b"

    return body()


def test_stamp_adds_the_four_headers_and_keeps_the_body() -> None:
    """Each response names pid, thread and times; a streamed body passes through unchanged."""
    response = Client(StampMiddleware(_wsgi_app)).get("/anything")
    assert response.get_data() == b"ab"
    assert response.headers.getlist(HEADERS["pid"]) == [str(__import__("os").getpid())]
    assert int(response.headers[HEADERS["tid"]]) > 0
    arrival = int(response.headers[HEADERS["arrival_ns"]])
    assert int(response.headers[HEADERS["departure_ns"]]) >= arrival > 0


def test_stamp_names_match_what_the_swarm_reads() -> None:
    """The header names are the ones scenarios.operation reads."""
    from scenarios.operation import SERVER_HEADERS

    assert HEADERS == SERVER_HEADERS


def test_stamp_answers_its_health_path_itself() -> None:
    """/__racelab__/healthz is answered by the middleware for any app, with the pid."""
    response = Client(StampMiddleware(_wsgi_app, {"target": "x.py:app"})).get(
        "/__racelab__/healthz?hold_ms=1")
    body = json.loads(response.get_data())
    assert body["ok"] is True and body["target"] == "x.py:app" and body["pid"] > 0


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _get(url: str, count: int, concurrency: int) -> list[tuple[str, dict[str, str]]]:
    host, port = url.removeprefix("http://").split(":")

    def one(_: int) -> list[tuple[str, dict[str, str]]]:
        out = []
        for _ in range(count // concurrency):
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", "/", headers={"X-Racelab-Hold-Ms": "5"})
            resp = conn.getresponse()
            out.append((resp.read().decode(), dict(resp.getheaders())))
            conn.close()
        return out

    with ThreadPoolExecutor(concurrency) as pool:
        return [r for chunk in pool.map(one, range(concurrency)) for r in chunk]


@pytest.mark.parametrize("mode", ["gunicorn-sync", "threaded"])
def test_counter_app_is_served_and_stamped(tmp_path, mode: str) -> None:
    """A 10-line global counter app: stamped answers, 2 pids under gunicorn-sync -w 2."""
    before = _children()
    sup = Supervisor(ServerConfig(), LaunchSpec(mode=mode, app=COUNTER), tmp_path)
    with sup:
        assert sup.target is not None and sup.target.label == "counter_app.py:app"
        answers = _get(sup.url, 40, 4)
    assert all(body.isdigit() for body, _ in answers)
    pids = {headers[HEADERS["pid"]] for _, headers in answers}
    assert len(pids) == (2 if mode == "gunicorn-sync" else 1)
    for _, headers in answers:
        assert int(headers[HEADERS["departure_ns"]]) >= int(headers[HEADERS["arrival_ns"]])
    assert _children() == before


@pytest.mark.parametrize("mode", ["gunicorn-sync", "threaded", "gevent"])
def test_an_app_that_raises_on_import_is_one_typed_error(tmp_path, mode: str) -> None:
    """The import's error, in one line, as a TargetError; nothing is left running."""
    before = _children()
    sup = Supervisor(ServerConfig(), LaunchSpec(mode=mode, app=RAISES), tmp_path)
    with pytest.raises(TargetError) as info:
        sup.start()
    message = str(info.value)
    assert "RuntimeError: the database URL is not configured" in message
    assert "server.log" in message and "\n" not in message
    assert _children() == before


def test_a_missing_file_fails_before_anything_starts(tmp_path) -> None:
    """A target file that does not exist is refused before any process starts."""
    sup = Supervisor(ServerConfig(), LaunchSpec(mode="gunicorn-sync", app="nope/app.py:app"),
                     tmp_path)
    with pytest.raises(TargetError, match=re.escape("no file nope/app.py")):
        sup.start()
    assert sup.server_pids == []


def test_the_demo_app_as_a_target_behaves_like_the_built_in_path(tmp_path) -> None:
    """demo_server:create_app() as --app: the same /incr and /state, plus the stamp."""
    sup = Supervisor(ServerConfig(store="lock"),
                     LaunchSpec(mode="gunicorn-sync", app="demo_server:create_app()"), tmp_path)
    with sup:
        assert len(sup.worker_pids[sup.url]) == 2
        conn = http.client.HTTPConnection(sup.url.removeprefix("http://").split(":")[0],
                                          int(sup.url.rsplit(":", 1)[1]))
        conn.request("GET", "/incr")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        assert body["store"] == "lock" and body["mode"] == "gunicorn-sync"
        assert resp.getheader(HEADERS["pid"]) == str(body["pid"])
        assert sum(s["served"] for s in sup.read_state()) == 1


@pytest.mark.parametrize("mode", ["single", "processes", "gunicorn-gthread", "gevent", "cluster"])
def test_a_users_app_is_served_in_every_other_mode(tmp_path, mode: str) -> None:
    """Every mode racelab serves its own app in serves a user's: ready, stamped, no leftovers."""
    before = _children()
    sup = Supervisor(ServerConfig(), LaunchSpec(mode=mode, app=COUNTER), tmp_path)
    with sup:
        if mode in ("gunicorn-gthread", "gevent"):
            assert len(sup.worker_pids[sup.url]) == 2
        answers = [a for url in sup.urls for a in _get(url, 8, 2)]
    assert all(body.isdigit() and HEADERS["pid"] in headers for body, headers in answers)
    assert len(sup.urls) == (2 if mode == "cluster" else 1)
    assert _children() == before
