"""Running racelab commands from tests as a user would: a fresh process in a session of
its own (so a test can signal its whole group), from the checkout's packages."""

from __future__ import annotations

import os
import subprocess
import sys
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
