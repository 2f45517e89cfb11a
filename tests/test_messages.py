"""Lines that misled, and waits that stalled, now say what is wrong.

Each test pins one case: an IPv6 host served at once, an app hanging at import
named as such, the scenarios a check knows, a compressed or cut-short history,
a database port given to ``probe``, a port with only TIME_WAIT sockets left,
and an answer that is not an integer.
"""

from __future__ import annotations

import gzip
import socket
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from cli import main
from demo_server import ServerConfig
from demo_server.basics import exits
from demo_server.basics.client import get_json
from demo_server.basics.errors import TargetError
from demo_server.basics.procs import check_port, reachable
from demo_server.control.modes import LaunchSpec
from demo_server.control.supervisor import Supervisor
from scenarios.registry import SCENARIO_NAMES

APPS = Path(__file__).resolve().parent / "apps"
HISTORY = "op_id,client,op,outcome,value,invoke_ns,complete_ns\n0,c1,incr,ok,1,100,200\n"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("mode", ["threaded", "gunicorn-sync"])
def test_a_server_on_ipv6_loopback_answers_at_once(tmp_path: Path, mode: str) -> None:
    """--host ::1: the URL brackets the address (http://[::1]:PORT), gunicorn binds
    [::1]:PORT, and the server is ready as soon as it answers, not after the deadline."""
    sup = Supervisor(ServerConfig(store="global"), LaunchSpec(mode=mode, host="::1"), tmp_path,
                     ready_timeout=10)
    with sup:
        assert sup.url.startswith("http://[::1]:")
        assert get_json(f"{sup.url}/healthz")["mode"] == mode


def test_an_app_that_hangs_at_import_is_named(tmp_path: Path) -> None:
    """A worker still importing the app at the readiness deadline: one line that says the
    import has not returned, not "did not become ready" over a log tail."""
    app = f"{APPS / 'hangs_on_import.py'}:app"
    sup = Supervisor(ServerConfig(), LaunchSpec(mode="threaded", app=app), tmp_path,
                     ready_timeout=3)
    with pytest.raises(TargetError, match="importing it had not returned after 3 s") as info:
        sup.start()
    assert "\n" not in str(info.value)
    from demo_server.control.supervisor import check_app_loads  # what a matrix runs first

    with pytest.raises(TargetError, match="importing it had not returned after 2 s"):
        check_app_loads(app, timeout=2)


def test_an_app_that_exits_at_import_is_named(tmp_path: Path) -> None:
    """sys.exit(3) at import: the worker writes why before it ends, one line."""
    app = f"{APPS / 'exits_on_import.py'}:app"
    sup = Supervisor(ServerConfig(), LaunchSpec(mode="threaded", app=app), tmp_path)
    with pytest.raises(TargetError, match=r"importing it called sys.exit\(3\)") as info:
        sup.start()
    assert "\n" not in str(info.value)


def test_check_with_an_unknown_scenario_lists_the_known_ones(tmp_path: Path) -> None:
    """check --scenario bogus names every scenario, not an empty "known:"."""
    history = tmp_path / "history.csv"
    history.write_text(HISTORY, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", str(history), "--scenario", "bogus"])
    assert result.exit_code == exits.BAD_INPUT
    assert f"choose one of: {', '.join(SCENARIO_NAMES)}" in result.stderr


def test_a_compressed_history_is_named_as_such(tmp_path: Path) -> None:
    """A gzipped history is "gzip-compressed; decompress it first", not a CSV question
    about universal-newline mode or a column of binary bytes."""
    packed = tmp_path / "history.csv.gz"
    packed.write_bytes(gzip.compress(HISTORY.encode()))
    for command in (["check", str(packed)], ["export", str(packed)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == exits.BAD_INPUT
        assert result.stderr.splitlines() == [
            f"Error: {packed}: a gzip-compressed file; decompress it first (gunzip) and check "
            "the history inside"]


@pytest.mark.parametrize(("text", "expected"), [
    ("[", "the file ends too early"),
    ('[{"type": "invoke", "f": "add", "process": 0, "time": 1', "the file ends too early"),
    ('{"', "the file ends too early"),
    ("[" * 100_000, "JSON nested too deeply"),
])
def test_json_cut_short_or_nested_deep_is_read_as_json(tmp_path: Path, text: str,
                                                        expected: str) -> None:
    """A history starting with [ or { is JSON (no CSV header starts so): cut short or
    nested beyond reason, the one line says so, never a missing CSV column."""
    path = tmp_path / "history.json"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == exits.BAD_INPUT
    assert expected in result.stderr
    assert "column 'op_id'" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("port", [6379, 5432], ids=["redis", "postgresql"])
def test_probe_of_a_database_port_says_it_is_not_http(tmp_path: Path, port: int) -> None:
    """probe http://127.0.0.1:6379 (Redis) or :5432 (PostgreSQL): "not an HTTP server",
    exit 2, before any load; never a run that ends "unknown" with exit 0."""
    if not reachable("127.0.0.1", port):
        pytest.skip(f"nothing listens on 127.0.0.1:{port}")
    result = CliRunner().invoke(main, ["probe", f"http://127.0.0.1:{port}/", "--requests", "50",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == exits.BAD_INPUT, result.output
    assert "is not an HTTP server" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "run" / "history.csv").exists()


def _close_from_the_server(url: str, count: int) -> None:
    """Requests the server closes first: its side of each connection is left in TIME_WAIT."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    for _ in range(count):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass  # until the server closes


def _time_wait_on(port: int) -> int:
    return sum(1 for c in psutil.net_connections("tcp")
               if c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT)


def test_a_port_left_with_time_wait_sockets_is_free(tmp_path: Path) -> None:
    """Right after a load, only TIME_WAIT sockets of the last server hold the port: the
    servers bind it with SO_REUSEADDR, so racelab does not call it "already in use"."""
    sup = Supervisor(ServerConfig(store="global"), LaunchSpec(mode="threaded"),
                     tmp_path / "first").start()
    try:
        port = int(sup.url.rsplit(":", 1)[1])
        _close_from_the_server(sup.url, 20)
    finally:
        sup.stop()
    deadline = time.monotonic() + 5
    while reachable("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _time_wait_on(port), "the precondition: TIME_WAIT sockets on the port"
    check_port("127.0.0.1", port)
    again = Supervisor(ServerConfig(store="global"), LaunchSpec(mode="threaded", port=port),
                       tmp_path / "again")
    with again:
        assert again.url.endswith(f":{port}")


def test_an_answer_that_is_not_an_integer_is_named(tmp_path: Path) -> None:
    """An app answering "hello": the verdict is unknown and says why, "not an integer",
    not only "unknown outcome"."""
    result = CliRunner().invoke(main, ["swarm", "--app", f"{APPS / 'answers_hello.py'}:app",
                                       "--requests", "40", "--users", "4",
                                       "--out", str(tmp_path / "run")])
    assert "the most common reason (40 of them): not an integer: hello" in result.stdout, (
        result.output)
    assert "verdict: unknown" in result.stdout
