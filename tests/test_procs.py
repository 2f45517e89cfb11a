"""demo_server.basics.procs: free ports, host checks, reachability, stopping process trees."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

import psutil
import pytest

from cli import main
from demo_server.basics.errors import BadHost, PortInUse
from demo_server.basics.procs import (
    Zygote,
    ZygoteChild,
    check_host,
    check_port,
    free_port,
    free_ports,
    group_members,
    live,
    reachable,
    spawn,
    stop_groups,
    tree,
    wait_listening,
)

# A parent that starts a child in a session of its own (out of the group), then waits.
_ESCAPER = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
    " start_new_session=True)\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def test_free_ports_are_distinct_and_bindable() -> None:
    """free_ports gives distinct loopback ports that can be bound right away."""
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        check_port("127.0.0.1", port)


def test_a_taken_port_and_reachability() -> None:
    """A listening port is reachable and refused by check_port; a free one is neither."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert reachable("127.0.0.1", port)
        assert wait_listening("127.0.0.1", port, timeout=1)
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port("127.0.0.1", port)
    assert not reachable("127.0.0.1", port)
    assert not wait_listening("127.0.0.1", port, timeout=0.2)


@pytest.mark.parametrize(("host", "expected"), [
    ("999.1.1.1", "not an IP address or a known host name"),
    ("10.255.255.254", "cannot listen on 10.255.255.254"),
    ("", "is not a host name"),
    ("a b", "is not a host name"),
])
def test_bad_hosts_are_one_typed_line(host: str, expected: str) -> None:
    """A host this machine cannot listen on is a BadHost, one line."""
    with pytest.raises(BadHost, match=expected) as info:
        check_host(host)
    assert "\n" not in str(info.value)
    if host:  # an empty host means every interface to bind()
        with pytest.raises(BadHost):
            free_port(host)


def test_loopback_and_localhost_are_fine() -> None:
    assert check_host("127.0.0.1") == "127.0.0.1"
    assert check_host("localhost") == "localhost"


def test_serve_with_a_bad_host_is_one_line(cli_runner) -> None:
    """racelab serve --host 999.1.1.1: one line on stderr, no traceback, non-zero exit."""
    result = cli_runner.invoke(main, ["serve", "--host", "999.1.1.1"])
    assert result.exit_code != 0
    assert "999.1.1.1" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_stop_kills_a_child_that_left_the_group(tmp_path) -> None:
    """The tree is walked before the first signal: a child in its own session dies too."""
    group = spawn([sys.executable, "-c", _ESCAPER], "escaper", stdout=-1)
    assert group.popen.stdout is not None
    child = int(group.popen.stdout.readline())
    assert child in {p.pid for p in tree(group.pid)}
    assert child not in group_members(group.pgid)
    stop_groups([group], grace=2)
    assert not psutil.pid_exists(child) or live([psutil.Process(child)]) == []
    assert group_members(group.pgid) == []


def test_stop_sigkills_what_ignores_sigterm(tmp_path) -> None:
    """A process that ignores SIGTERM is killed after the grace period and reported."""
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
           "print('ready', flush=True); time.sleep(60)"
    group = spawn([sys.executable, "-c", code], "stubborn", stdout=-1)
    assert group.popen.stdout is not None
    group.popen.stdout.readline()
    started = time.monotonic()
    killed = stop_groups([group], grace=0.5)
    assert killed == [group.pid]
    assert time.monotonic() - started < 5
    assert group.popen.returncode == -signal.SIGKILL


def test_a_werkzeug_fork_serving_a_slow_request_is_stopped(live_server) -> None:
    """processes mode: the fork answering a held request is stopped with its parent."""
    import threading

    from demo_server.basics.client import get_json

    sup = live_server(mode="processes")
    answers: list[object] = []
    holder = threading.Thread(
        target=lambda: answers.append(_try(get_json, sup.url + "/healthz?hold_ms=500")))
    holder.start()
    deadline = time.monotonic() + 5
    while len(tree(sup.server_pids[0])) < 2:  # the fork serving it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    everything = tree(sup.server_pids[0])
    sup.stop()
    holder.join()
    assert live(everything) == []


def _try(func, *args):
    try:
        return func(*args)
    except OSError as exc:
        return exc


def test_a_zygote_child_is_the_module_run_as_python_dash_m(tmp_path) -> None:
    """A zygote's child runs ``python -m MODULE args`` in its own session, with the given
    environment, working directory and output files, and reports its exit code; a command
    the zygote does not handle starts as a plain process; closing the zygote ends it."""
    data = tmp_path / "data.json"
    data.write_text('{"b": 1, "a": [2]}')
    with Zygote(["json.tool"]) as zygote:
        group = zygote.spawn([sys.executable, "-m", "json.tool", "--sort-keys", data.name],
                             "tool", tmp_path / "out.txt", tmp_path / "err.txt",
                             env={**os.environ, "RACELAB_ZYGOTE_TEST": "1"}, cwd=tmp_path)
        assert isinstance(group.popen, ZygoteChild)
        assert group.popen.wait(timeout=10) == 0
        assert json.loads((tmp_path / "out.txt").read_text()) == {"a": [2], "b": 1}
        assert (tmp_path / "out.txt").read_text().index('"a"') < \
            (tmp_path / "out.txt").read_text().index('"b"')
        failed = zygote.spawn([sys.executable, "-m", "json.tool", "missing.json"], "tool",
                              tmp_path / "failed.txt", cwd=tmp_path)
        assert failed.popen.wait(timeout=10) == 2  # argparse: no such file
        assert "missing.json" in (tmp_path / "failed.txt").read_text()
        probe = ("import os, sys; print(os.getpgid(0) == os.getpid(), os.getcwd(), "
                 "os.environ.get('RACELAB_ZYGOTE_TEST'))")
        plain = zygote.spawn([sys.executable, "-c", probe], "plain", tmp_path / "plain.txt",
                             env={**os.environ, "RACELAB_ZYGOTE_TEST": "2"}, cwd=tmp_path)
        assert not isinstance(plain.popen, ZygoteChild)
        assert plain.popen.wait(timeout=10) == 0
        assert (tmp_path / "plain.txt").read_text().split() == ["True", str(tmp_path), "2"]
        sleeper = zygote.spawn([sys.executable, "-m", "json.tool"], "stdin", tmp_path / "s.txt")
        assert sleeper.popen.wait(timeout=10) != 0  # stdin is /dev/null: nothing to parse
        assert os.getpgid(0) != sleeper.pid
        zygote_pid = zygote._group.pid if zygote._group else 0
    assert not psutil.pid_exists(zygote_pid) or psutil.Process(zygote_pid).status() == "zombie"


def test_a_zygote_child_is_stopped_like_any_group(tmp_path) -> None:
    """stop_groups stops a zygote's child (its own session) and records the signal."""
    script = tmp_path / "sleeper.py"
    script.write_text("import time\ntime.sleep(60)\n")
    with Zygote(["runpy"]) as zygote:
        group = zygote.spawn([sys.executable, "-m", "runpy"], "x", tmp_path / "o.txt")
        group.popen.wait(timeout=10)  # runpy without a module name: exits at once
        sleeper = zygote.spawn([sys.executable, "-m", "runpy", "sleeper"], "sleeper",
                               tmp_path / "sleep.txt", cwd=tmp_path)  # -m: cwd first on the path
        assert isinstance(sleeper.popen, ZygoteChild)
        time.sleep(0.2)
        assert sleeper.alive()
        assert os.getpgid(sleeper.pid) == sleeper.pid
        assert stop_groups([sleeper], grace=5.0) == []
        assert sleeper.popen.returncode == -signal.SIGTERM
        forgotten = zygote.spawn([sys.executable, "-m", "runpy", "sleeper"], "sleeper",
                                 tmp_path / "sleep2.txt", cwd=tmp_path)
        time.sleep(0.2)
        assert forgotten.alive()
    # Closing the zygote stops a child nobody stopped (a launch cut short by a signal).
    assert not psutil.pid_exists(forgotten.pid) or \
        psutil.Process(forgotten.pid).status() == "zombie"


def test_a_zygote_waits_for_its_imports_and_a_never_used_one_closes_cleanly(tmp_path) -> None:
    """wait_ready is True once the imports are done (False for a failed zygote); closing a
    zygote nobody asked for anything, maybe still importing, leaves no process."""
    with Zygote(["json.tool"]) as zygote:
        assert zygote.wait_ready()
        assert zygote.wait_ready()  # once ready, stays ready
    broken = Zygote(["no_such_module_anywhere"])
    assert not broken.wait_ready() and "no_such_module_anywhere" in broken.error
    broken.close()
    slow = Zygote(["json.tool"])
    pid = slow._group.popen.pid  # type: ignore[union-attr]
    slow.close()  # still importing, or idle: nothing of it is kept
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


@pytest.mark.parametrize("why", ["interrupted", "zygote-killed"])
def test_closing_a_zygote_that_cannot_answer_still_stops_its_children(tmp_path, why) -> None:
    """A signal that cuts a start short leaves the zygote marked failed, and a zygote may
    die: its children are still stopped when it closes (asked of the system, since the
    zygote cannot say; a dead zygote's children are no longer in its tree)."""
    script = tmp_path / "sleeper.py"
    script.write_text("import time\ntime.sleep(60)\n")
    zygote = Zygote(["runpy"])
    sleeper = zygote.spawn([sys.executable, "-m", "runpy", "sleeper"], "sleeper",
                           tmp_path / "sleep.txt", cwd=tmp_path)
    time.sleep(0.2)
    assert sleeper.alive()
    if why == "interrupted":
        zygote.error = "interrupted while starting a process"  # what _ask records then
    else:
        os.kill(zygote._group.popen.pid, signal.SIGKILL)  # type: ignore[union-attr]
        zygote._group.popen.wait(timeout=10)  # type: ignore[union-attr]
    zygote.close()
    assert not psutil.pid_exists(sleeper.pid) or \
        psutil.Process(sleeper.pid).status() == "zombie"
