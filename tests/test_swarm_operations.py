"""The swarm sends operations as data, to any endpoint, and records what each answer means."""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo_server.control.doctor import reachable
from demo_server.control.supervisor import free_port
from loadtests.runner import SwarmSpec, run_swarm
from scenarios.operation import Operation, ValueSpec

SERVER = Path(__file__).resolve().parent / "http_oddities.py"
TEXT, NONE = ValueSpec("text", ""), ValueSpec("none", "")


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _serve(tmp_path: Path, *tls: str) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, str(SERVER), str(port), *tls],
                              stderr=(tmp_path / "server.log").open("wb"),
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not reachable("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()


@pytest.fixture
def oddities(tmp_path: Path) -> Iterator[str]:
    """The odd server on a free loopback port (http)."""
    yield from _serve(tmp_path)


@pytest.fixture
def tls_oddities(tmp_path: Path) -> Iterator[str]:
    """The same server over TLS, with a self-signed certificate made for the test."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    yield from _serve(tmp_path, str(cert), str(key))


MIXED = (
    Operation(name="count", path="/count", value=TEXT, weight=4),
    Operation(name="json", path="/json"),
    Operation(name="close", path="/close", value=TEXT),
    Operation(name="chunked", path="/chunked"),
    Operation(name="stream", path="/stream", value=TEXT),
    Operation(name="continue", path="/continue", value=TEXT),
    Operation(name="redirect", path="/redirect", value=NONE),
    Operation(name="missing", path="/missing", value=NONE),
    Operation(name="boom", path="/boom", value=NONE),
    Operation(name="big", path="/big", value=TEXT),
    Operation(name="nobody", method="POST", path="/nobody", value=NONE),
)


def test_mixed_operations_each_recorded_as_what_it_means(tmp_path: Path, oddities: str) -> None:
    """Weights, value specs, framings and statuses, per operation, over one swarm.

    Values come from text and JSON bodies however they are framed (length,
    chunked, until close, after a 100 Continue, with Connection: close); server
    facts from the X-Racelab headers, else the JSON body; 4xx is fail, 3xx and
    5xx info (a redirect names its target, never followed); a body over the
    limit is info; a 204 with value ``none`` is ok without a value.
    """
    result = run_swarm(SwarmSpec(urls=(oddities,), users=3, requests=700, operations=MIXED,
                                 max_body=1000), tmp_path)
    rows = read_rows(result.history)
    assert len(rows) == 700 == result.locust_requests
    by_op: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_op.setdefault(row["op"], []).append(row)
    assert set(by_op) == {op.name for op in MIXED}
    counts = Counter(r["op"] for r in rows)
    assert counts["count"] > 2.5 * counts["json"]  # weight 4 against 1
    for name in ("count", "json", "close", "chunked", "stream", "continue"):
        assert {r["outcome"] for r in by_op[name]} == {"ok"}, (name, by_op[name][:2])
        assert all(r["value"].isdigit() for r in by_op[name]), name
    assert all(r["server_pid"] and r["server_arrival_ns"] for r in by_op["count"] + by_op["json"])
    assert all(r["server_pid"] == "" for r in by_op["close"] + by_op["chunked"])
    assert {(r["outcome"], r["error"]) for r in by_op["redirect"]} == {
        ("info", "HTTP 302: redirect to /login not followed")}
    assert {(r["outcome"], r["error"]) for r in by_op["missing"]} == {
        ("fail", "HTTP 404: no such page")}
    assert {(r["outcome"], r["error"]) for r in by_op["boom"]} == {("info", "HTTP 500: boom")}
    assert {(r["outcome"], r["error"]) for r in by_op["big"]} == {
        ("info", "answer larger than 1000 bytes")}
    assert {(r["outcome"], r["value"]) for r in by_op["nobody"]} == {("ok", "")}
    values = [int(r["value"]) for r in rows if r["value"]]
    assert len(values) == len(set(values))  # the server's counter is locked: no repeats
    failures = sum(1 for r in rows if r["outcome"] != "ok")
    assert result.locust_failures == failures


def test_https_needs_a_trusted_certificate_unless_insecure(tmp_path: Path,
                                                           tls_oddities: str) -> None:
    """TLS through the ssl module: a self-signed certificate fails the check, insecure passes."""
    checked = run_swarm(SwarmSpec(urls=(tls_oddities,), users=2, requests=20,
                                  operations=(Operation(name="count", path="/count",
                                                        value=TEXT),)), tmp_path / "checked")
    rows = read_rows(checked.history)
    assert {r["outcome"] for r in rows} == {"fail"}
    assert all("certificate" in r["error"].lower() for r in rows), rows[0]["error"]
    insecure = run_swarm(SwarmSpec(urls=(tls_oddities,), users=2, requests=200, insecure=True,
                                   operations=MIXED[:6]), tmp_path / "insecure")
    rows = read_rows(insecure.history)
    assert len(rows) == 200
    assert {r["outcome"] for r in rows} == {"ok"}, Counter(r["error"] for r in rows)


def test_tabs_share_one_client_and_its_cookie(tmp_path: Path, oddities: str) -> None:
    """tabs=3: three users are one client, one cookie jar, one session counting 1, 2, 3..."""
    session = (Operation(name="session", path="/session", value=TEXT),)
    result = run_swarm(SwarmSpec(urls=(oddities,), users=6, tabs=3, requests=300,
                                 operations=session), tmp_path)
    rows = read_rows(result.history)
    assert len(rows) == 300
    by_client: dict[str, list[int]] = {}
    for row in sorted(rows, key=lambda r: int(r["complete_ns"])):
        by_client.setdefault(row["client"], []).append(int(row["value"]))
    assert len(by_client) == 2
    # The first answers may come before the cookie is set (each tab then starts
    # its own session); once every tab sends the shared cookie, one counter runs.
    for values in by_client.values():
        tail = values[len(values) // 2:]
        assert len(set(tail)) == len(tail), tail
