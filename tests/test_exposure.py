"""Nothing exposed: listeners stay on loopback unless asked, and no secret is in argv.

``racelab serve --host 0.0.0.0`` binds every interface only with
``--allow-remote``, and then says what that means. The ``manager`` store's
authkey lets whoever holds it send pickles the manager unpickles (code run as
racelab's user): it is in no process's argv (``ps`` shows those to every user)
nor in its environment, and the file the workers read it from is the user's alone.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
from pathlib import Path

import psutil
import pytest
from cli_tools import descendants, racelab

from demo_server import ServerConfig
from demo_server.basics import exits
from demo_server.basics.client import hammer
from demo_server.basics.errors import BadHost
from demo_server.control.modes import LaunchSpec
from demo_server.control.supervisor import Supervisor


def _finish(proc: subprocess.Popen[bytes], timeout: float = 20) -> tuple[int, str]:
    """Its exit code and stderr; a command still running after ``timeout`` is stopped
    (with everything it started) and fails the test."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=30)
        pytest.fail("the command was still running: it served instead of refusing")
    return proc.returncode, err.decode()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_serve_on_every_interface_needs_allow_remote(tmp_path: Path, host: str) -> None:
    """serve --host 0.0.0.0 (or ::) without --allow-remote: refused with one line naming
    the opt-in, exit 2, and nothing listens; gunicorn too binds loopback unless told."""
    code, err = _finish(racelab("serve", "--host", host, "--run-dir", str(tmp_path / "run"),
                                cwd=tmp_path))
    assert code == exits.BAD_INPUT
    assert len(err.splitlines()) == 1, err
    assert "--allow-remote" in err and "not loopback" in err


def test_the_supervisor_refuses_a_remote_host_without_the_opt_in(tmp_path: Path) -> None:
    """The rule holds below the command line: a LaunchSpec on 0.0.0.0 starts nothing."""
    sup = Supervisor(ServerConfig(), LaunchSpec(mode="threaded", host="0.0.0.0"), tmp_path)
    with pytest.raises(BadHost, match="--allow-remote"):
        sup.start()
    assert not descendants(os.getpid())


def test_serve_with_allow_remote_binds_every_interface_and_says_so(tmp_path: Path) -> None:
    """serve --host 0.0.0.0 --allow-remote listens on 0.0.0.0 and warns, on stderr, that
    other machines reach a server that answers anyone; Ctrl-C still stops it (130)."""
    proc = racelab("serve", "--host", "0.0.0.0", "--allow-remote",
                   "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    url = proc.stdout.readline().decode().strip()
    try:
        assert url.startswith("http://0.0.0.0:"), url
        listening = {c.laddr.ip for p in [psutil.Process(proc.pid), *descendants(proc.pid)]
                     for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        assert "0.0.0.0" in listening
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        code, err = _finish(proc)
    assert code == exits.signal_exit(signal.SIGINT)
    assert "warning: listening on 0.0.0.0: other machines can reach this server" in err


def _exposed(key: str, processes: list[psutil.Process]) -> list[str]:
    found = []
    for proc in processes:
        try:
            if any(key in arg for arg in proc.cmdline()):
                found.append(f"argv of {proc.pid}: {proc.cmdline()}")
            if any(key in value for value in proc.environ().values()):
                found.append(f"environment of {proc.pid}")
        except psutil.NoSuchProcess:
            continue
    return found


def test_the_manager_authkey_is_in_no_argv_and_no_environment(tmp_path: Path) -> None:
    """The manager store's authkey: not in the argv or the environment of the manager or
    of any worker; the workers read it from manager.key, mode 0600, removed at the stop;
    the counter still works through it."""
    sup = Supervisor(ServerConfig(store="manager"), LaunchSpec(mode="gunicorn-sync", workers=2),
                     tmp_path)
    key_file = tmp_path / "manager.key"
    with sup:
        mode = stat.S_IMODE(key_file.stat().st_mode)
        assert mode == 0o600, oct(mode)
        key = key_file.read_text(encoding="ascii").strip()
        assert re.fullmatch(r"[0-9a-f]{32}", key)
        values = sorted(a["value"] for a in hammer(sup.urls, 20, concurrency=4))
        assert values == list(range(1, 21))  # every worker reached the manager with the key
        processes = descendants(os.getpid())
        assert any("demo_server.served._manager" in " ".join(p.cmdline()) for p in processes)
        assert len(processes) >= 4  # the manager, the arbiter and its two workers
        assert _exposed(key, processes) == []
        assert not any(re.search(r"\b[0-9a-f]{32}\b", " ".join(p.cmdline())) for p in processes)
    assert not key_file.exists()
