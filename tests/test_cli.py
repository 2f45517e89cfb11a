"""The command line: help, bad input as one line, serve and its clean Ctrl-C, doctor."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from cli import main
from demo_server.basics.client import get_json
from demo_server.control.supervisor import group_members


def test_help_has_examples(cli_runner) -> None:
    """--help of the group and of serve show an Examples block."""
    for args in ([], ["serve"], ["doctor"]):
        result = cli_runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0
        assert "Examples:" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "--mode", "bogus"], "Invalid value for '--mode'"),
        (["serve", "--store", "bogus"], "Invalid value for '--store'"),
        (["serve", "--workers", "0"], "0 is not in the range 1<=x<=64"),
        (["serve", "--threads", "-3"], "-3 is not in the range 1<=x<=256"),
        (["serve", "--port", "70000"], "Invalid value for '--port'"),
        (["serve", "--store", "sqlite", "--window", "yield"], "applies only to the stores"),
    ],
)
def test_bad_input_is_one_clear_line(cli_runner, args: list[str], needle: str) -> None:
    """Usage mistakes exit non-zero with the reason and no traceback."""
    result = cli_runner.invoke(main, args)
    assert result.exit_code != 0
    assert needle in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # click's exit, not an uncaught error


def test_taken_port_is_one_clear_line(cli_runner, tmp_path) -> None:
    """A port already in use is named in one line, exit 2 (bad input; 1 means race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = cli_runner.invoke(main, ["serve", "--port", str(port), "--run-dir",
                                          str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: port {port} on 127.0.0.1 is already in use"


@pytest.mark.parametrize("mode", ["processes", "gunicorn-gthread"])
def test_sigint_to_serve_leaves_no_process(tmp_path, mode: str) -> None:
    """Ctrl-C (SIGINT) to `racelab serve` stops every process it started, and exits 130."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--mode", mode, "--run-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read()
        pid = get_json(url + "/healthz")["pid"]
        pgid = os.getpgid(pid)
        get_json(url + "/incr")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        deadline = time.monotonic() + 5
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(pgid) == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_doctor_json_reports_the_interpreter(cli_runner) -> None:
    """doctor --json lists the interpreter with its GIL status and the stores' reachability."""
    result = cli_runner.invoke(main, ["doctor", "--json"])
    assert result.exit_code == 0
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert "GIL" in checks["python"]["detail"]
    assert {"redis", "postgres", "memcached", "gunicorn", "locust"} <= checks.keys()
