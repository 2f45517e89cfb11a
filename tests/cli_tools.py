"""Running racelab commands from tests as a user would: a fresh process in a session of
its own (so a test can signal its whole group), from the checkout's packages."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from demo_server.basics.procs import tree

RACELAB = [sys.executable, "-c", "import cli; cli.main()"]


def racelab(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``racelab ARGS`` in ``cwd``, its output piped."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([*RACELAB, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def descendants(pid: int) -> list[psutil.Process]:
    """The live processes ``pid`` started, at any depth (``pid`` itself left out)."""
    return [p for p in tree(pid) if p.pid != pid]


def watch(proc: subprocess.Popen[bytes], seconds: float,
          seen: dict[int, psutil.Process]) -> None:
    """Note in ``seen`` every process ``proc`` starts, for ``seconds`` or until it ends."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        seen.update({c.pid: c for c in descendants(proc.pid)})
        time.sleep(0.02)


def refused(*args: str, cwd: Path, needle: str) -> None:
    """``racelab ARGS`` is bad input: one line naming ``needle`` on stderr, exit 2, no
    traceback, and no process it started left running."""
    proc = racelab(*args, cwd=cwd)
    seen: dict[int, psutil.Process] = {}
    watch(proc, 120, seen)
    out, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode == 2, (out + err).decode()
    assert needle in text and "Traceback" not in text
    assert len([line for line in text.splitlines() if line.strip()]) == 1, text
    assert not [p for p in seen.values() if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
