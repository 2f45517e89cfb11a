#!/usr/bin/env python3
"""Black-box robustness tries against a racelab checkout: a before/after table.

Usage::

    python tools/attack.py --tree DIR [--python PY] [--json FILE] [--only CATEGORY,...]

Each try runs ``racelab`` as a user would, ``PY DIR/cli.py ARGS`` in a fresh
temporary directory, and judges what it did by what racelab should do: its exit
code (0 safe, 1 race, 2 unknown or bad input, 128+N stopped by signal N), one
line on stderr and no traceback for bad input, the verdict in ``results.json``
and ``racelab check``, the files it wrote or left alone, the processes it left.
Signals come at set moments (a time after the start, or once a server, a cell or
a number of recorded rows is there). A try still running past its limit (never
more than 60 s) is stopped with its whole process group and fails as a hang.

The tries are grouped in ten categories:

1. a reused ``--out`` (a run directory holds one run)
2. a demo or matrix stopped after its last cell (a partial report)
3. ``racelab serve`` stopped by SIGINT, SIGTERM, SIGHUP (exit 130, 143, 129)
4. a load generator that dies (noticed, named, its rows kept)
5. a store that restarts empty (unknown, never a race)
6. ``racelab check`` reads the run's faults, scenario and state
7. bad input is exit 2 and one line
8. inputs that ended in a traceback
9. stalls and misleading lines
10. listeners on loopback, the manager's authkey, symbolic links in a run directory

Where an option a try needs does not exist in the tree (``--overwrite``,
``--allow-remote``), the try runs what a user of that tree would run without it
and judges the result the same way: the tree then fails by doing what the option
exists to prevent (writing into a used directory, binding every interface
unasked), not by refusing an unknown option.

Isolation: racelab runs on a private virtual environment made from PY whose
``site-packages`` holds one ``.pth`` naming DIR and PY's own ``site-packages``
(not the ``.pth`` files there), so an editable install of another checkout can
never supply a module, also in the processes racelab starts with a
``PYTHONPATH`` of its own; the header of the output shows where the modules
came from. Every server binds loopback; the tries that ask racelab to bind
every interface run inside a network namespace of their own (``unshare -n``),
where nothing but its own loopback exists. Loads are bounded. The script makes
itself a child subreaper, so every process a try starts stays its descendant:
whatever a try leaves running is counted against it, then killed, and the run
ends with a check that nothing is left.

Stdlib and psutil only. PostgreSQL on 127.0.0.1:5432 and Redis on
127.0.0.1:6379 are used where a try needs them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gzip
import hashlib
import http.server
import json
import lzma
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

DEFAULT_PYTHON = "/work/main/.venv/bin/python"
TRY_LIMIT = 60.0  # seconds any one try may take, all its commands together

CATEGORIES = {
    1: "reused --out",
    2: "demo/matrix stopped after the last cell",
    3: "serve exit codes on signals",
    4: "a dead load generator",
    5: "a store that restarts empty",
    6: "check reads the run's faults",
    7: "bad input: exit 2, one line",
    8: "tracebacks",
    9: "stalls and misleading lines",
    10: "security",
}

HEADER = "op_id,client,op,outcome,value,invoke_ns,complete_ns"


# -- processes ------------------------------------------------------------------------------


def become_subreaper() -> bool:
    """Orphaned descendants of this script are re-parented to it (Linux), so none escapes
    the leftover check."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


_ACTIVE: set[int] = set()  # pids of the racelab commands running now (Popen reaps them)


def reap_orphans() -> None:
    """Reap zombie orphans re-parented to this script (never a running command's pid)."""
    for child in psutil.Process().children():
        if child.pid in _ACTIVE:
            continue
        with contextlib.suppress(psutil.Error, ChildProcessError, OSError):
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)


def live_descendants(exclude: set[int] | None = None) -> list[psutil.Process]:
    """This script's live descendants (zombies reaped first), ``exclude`` left out."""
    reap_orphans()
    found = []
    for proc in psutil.Process().children(recursive=True):
        if exclude and proc.pid in exclude:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:120]}"
    except psutil.Error:
        return str(proc.pid)


def kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL each of these processes (ours: descendants of this script) and its group."""
    groups = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            groups.add(os.getpgid(proc.pid))
            proc.kill()
    for group in groups - {os.getpgrp()}:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=3)
    reap_orphans()


@dataclasses.dataclass
class Outcome:
    """What one racelab command did."""

    argv: list[str]
    rc: int | None
    seconds: float
    stdout: str
    stderr: str
    hang: bool = False
    signalled: str = ""
    left: list[str] = dataclasses.field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def err_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def exited(self, *codes: int) -> bool:
        """Exit code among ``codes``; 128+N also matches death by signal N (a shell sees
        both as 128+N)."""
        if self.rc is None:
            return False
        return any(self.rc == c or (c > 128 and self.rc == -(c - 128)) for c in codes)

    def brief(self) -> dict[str, Any]:
        return {"argv": self.argv, "rc": self.rc, "seconds": round(self.seconds, 2),
                "hang": self.hang, "signalled": self.signalled, "left": self.left,
                "stdout_tail": self.stdout[-1500:], "stderr_tail": self.stderr[-1500:]}


class Command:
    """One racelab command running in its own session, its output in files."""

    def __init__(self, ctx: Context, args: list[str], cwd: Path, netns: bool = False) -> None:
        self.ctx = ctx
        cwd.mkdir(parents=True, exist_ok=True)
        self.argv = [str(ctx.python), str(ctx.tree / "cli.py"), *args]
        full = self.argv
        if netns:
            full = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *full]
        self.out_path = cwd / f".out-{time.monotonic_ns()}"
        self.err_path = cwd / f".err-{time.monotonic_ns()}"
        self.t0 = time.monotonic()
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.popen = subprocess.Popen(full, cwd=cwd, env=ctx.env, stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=err, start_new_session=True)
        _ACTIVE.add(self.popen.pid)
        self.signalled = ""
        ctx.log(f"    $ racelab {' '.join(args)}" + ("   [own network namespace]" if netns else ""))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        try:
            return [p for p in psutil.Process(self.pid).children(recursive=True)
                    if p.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:
            return []

    def wait_for(self, condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
        """Poll ``condition`` until it holds (True), the command ends or ``timeout`` passes
        (False); never past the try's deadline."""
        deadline = min(time.monotonic() + timeout, self.ctx.deadline)
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if condition():
                    return True
            if not self.running():
                with contextlib.suppress(Exception):
                    return bool(condition())
                return False
            time.sleep(step)
        return False

    def send(self, signum: int) -> bool:
        """Signal the racelab process itself (as a test harness or supervisor does); False
        when it had already ended."""
        if not self.running():
            return False
        os.kill(self.pid, signum)
        self.signalled = f"{signal.Signals(signum).name} at {self.elapsed():.2f} s"
        return True

    def finish(self, limit: float = 30.0) -> Outcome:
        """Wait for the end (``limit`` s, never past the try's deadline); a command still
        running is a hang: its group and every process it started are killed. Whatever
        it started and left running once it ended is noted and killed."""
        hang = False
        try:
            self.popen.wait(timeout=max(0.1, min(limit, self.ctx.deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            hang = True
            mine = self.descendants()
            with contextlib.suppress(psutil.Error):
                mine.append(psutil.Process(self.pid))
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
            kill_all(mine)
            self.popen.wait()
        _ACTIVE.discard(self.popen.pid)
        seconds = self.elapsed()
        left: list[str] = []
        if not hang:
            deadline = time.monotonic() + 3
            leftovers = live_descendants(_ACTIVE | self.ctx.keep)
            while leftovers and time.monotonic() < deadline:
                time.sleep(0.1)
                leftovers = live_descendants(_ACTIVE | self.ctx.keep)
            left = [describe(p) for p in leftovers]
            if leftovers:
                kill_all(leftovers)
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)  # anything still in its group
        outcome = Outcome(self.argv[2:], None if hang else self.popen.returncode, seconds,
                          self.stdout(), self.stderr(), hang=hang, signalled=self.signalled,
                          left=left)
        self.ctx.outcomes.append(outcome)
        self.ctx.log(f"      -> rc {outcome.rc}{' HANG' if hang else ''} in {seconds:.1f} s"
                     + (f", {self.signalled}" if self.signalled else "")
                     + (f", left {len(left)} processes" if left else ""))
        return outcome


# -- the context: tree, fixtures, helpers ---------------------------------------------------


class Fail(Exception):
    """A try's judgement: what racelab did that it should not."""


@dataclasses.dataclass
class Context:
    tree: Path
    python: Path
    env: dict[str, str]
    root: Path
    features: dict[str, set[str]]
    verbose: bool
    http_port: int = 0
    deadline: float = 0.0
    keep: set[int] = dataclasses.field(default_factory=set)
    outcomes: list[Outcome] = dataclasses.field(default_factory=list)
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    counter: int = 0

    def log(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr, flush=True)

    def fresh(self, name: str) -> Path:
        """A new working directory for one try."""
        self.counter += 1
        path = self.root / "tries" / f"{self.counter:03d}-{name}"
        path.mkdir(parents=True)
        return path

    def start(self, args: list[str], cwd: Path, netns: bool = False) -> Command:
        return Command(self, args, cwd, netns=netns)

    def run(self, args: list[str], cwd: Path, limit: float = 30.0) -> Outcome:
        return self.start(args, cwd).finish(limit)

    def has(self, command: str, option: str) -> bool:
        return option in self.features.get(command, set())

    def opt(self, command: str, option: str) -> list[str]:
        """``[option]`` where the tree's ``command`` offers it, else nothing."""
        return [option] if self.has(command, option) else []

    @property
    def fixtures(self) -> Path:
        return self.root / "fixtures"


def options_of(python: Path, tree: Path, env: dict[str, str], cwd: Path) -> dict[str, set[str]]:
    """Each command's long options, from its --help."""
    found = {}
    for command in ("swarm", "serve", "probe", "matrix", "demo", "check", "export", "report"):
        text = subprocess.run([str(python), str(tree / "cli.py"), command, "--help"], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=60).stdout
        found[command] = set(re.findall(r"(--[a-z][a-z-]*)", text))
    return found


def isolated_python(python: str, tree: Path, root: Path) -> tuple[Path, dict[str, str]]:
    """A virtual environment made from ``python`` whose packages are the tree's and
    ``python``'s site-packages (none of their .pth files, so no editable install of another
    checkout); its interpreter and the environment to run racelab with."""
    venv = root / "venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    sites = subprocess.run(
        [python, "-c", "import site; print('\\n'.join(site.getsitepackages()))"],
        check=True, capture_output=True, text=True).stdout.split()
    own = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True, capture_output=True, text=True).stdout.strip()
    Path(own, "racelab-tree.pth").write_text("\n".join([str(tree), *sites]) + "\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RACELAB_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(tree), PYTHONUNBUFFERED="1", COLUMNS="100",
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}")
    return venv / "bin" / "python", env


def where_modules_come_from(python: Path, tree: Path, env: dict[str, str],
                            cwd: Path) -> dict[str, str]:
    """The files racelab's modules load from: with the tree on PYTHONPATH, and with only
    ``demo_server/`` on it (what an older supervisor gave its counter manager)."""
    code = ("import json, cli, _cli, demo_server, demo_server.served._manager as m, loadtests, "
            "reports, scenarios; print(json.dumps({n: x.__file__ for n, x in [('cli', cli), "
            "('_cli', _cli), ('demo_server', demo_server), ('manager', m), "
            "('loadtests', loadtests), ('reports', reports), ('scenarios', scenarios)]}))")
    found = {}
    for label, path in (("PYTHONPATH=tree", str(tree)),
                        ("PYTHONPATH=tree/demo_server", str(tree / "demo_server"))):
        result = subprocess.run([str(python), "-c", code], cwd=cwd,
                                env={**env, "PYTHONPATH": path}, capture_output=True, text=True)
        files = json.loads(result.stdout) if result.returncode == 0 else {}
        outside = [f for f in files.values() if not str(f).startswith(str(tree))]
        if result.returncode != 0 or outside:
            raise SystemExit(f"racelab's modules do not come from {tree} ({label}): "
                             f"{outside or result.stderr.strip()}")
        found[label] = files["demo_server"]
    return found


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A plain HTTP endpoint on loopback, for probe's URL checks."""

    def do_GET(self) -> None:
        body = b"1"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), QuietHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


APPS = {
    "counter_app.py": "from flask import Flask\n\napp = Flask(__name__)\ncounter = 0\n\n\n"
                      "@app.get('/')\ndef index():\n    global counter\n    counter += 1\n"
                      "    return str(counter)\n",
    "exit3_app.py": "import sys\n\nsys.exit(3)\n",
    "stuck_app.py": "import threading\n\nthreading.Event().wait()\n",
    "answers_hello.py": "from flask import Flask\n\napp = Flask(__name__)\n\n\n"
                        "@app.get('/')\ndef index():\n    return 'hello'\n",
}
CELLS = '[[cells]]\nstores = ["global"]\nmodes = ["threaded"]\nwindows = ["none"]\n'
PRESETS = {
    "budget-nan": "budget_s = nan\n" + CELLS,
    "swarm-not-a-table": "swarm = 3\n" + CELLS,
    "cells-of-numbers": "cells = [3]\n",
    "app-blank": CELLS + 'app = " "\n',
    "two-cells": 'name = "two"\nbudget_s = 4\ninterpreters = false\n\n[swarm]\nusers = 8\n'
                 'requests = 300\n\n[[cells]]\nstores = ["lock", "sqlite"]\n'
                 'windows = ["none"]\nmodes = ["threaded"]\n',
}


def make_fixtures(where: Path) -> None:
    where.mkdir(parents=True)
    rows = [HEADER] + [f"{i},c{i % 4},incr,ok,{i + 1},{100 * i},{100 * i + 50}"
                       for i in range(100)]
    history = "\n".join(rows) + "\n"
    (where / "history.csv").write_text(history)
    (where / "history.csv.gz").write_bytes(gzip.compress(history.encode()))
    (where / "history.csv.xz").write_bytes(lzma.compress(history.encode()))
    (where / "big.csv").write_text(f"{HEADER}\n0,c1,incr,ok,1,1,2\n1,c{'x' * 200_000},incr,ok,"
                                   "2,3,4\n")
    (where / "cut.json").write_text("[")
    (where / "cut-object.json").write_text('{"')
    (where / "nested.json").write_text("[" * 100_000)
    (where / "notes.txt").write_text("not json\n")
    for name, text in APPS.items():
        (where / name).write_text(text)
    for name, text in PRESETS.items():
        (where / f"{name}.toml").write_text(text)


# -- judging helpers ------------------------------------------------------------------------


def expect(condition: bool, why: str) -> None:
    if not condition:
        raise Fail(why)


def first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else "")[:200]


def tail(text: str, n: int = 2) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-n:])[:300]


def one_line_exit_2(out: Outcome, *words: str) -> None:
    """Bad input: exit 2, one line on stderr, no traceback, naming ``words``."""
    expect(not out.hang, f"still running after {out.seconds:.0f} s (hang)")
    expect("Traceback" not in out.output, f"a traceback: {tail(out.stderr)}")
    expect(out.rc == 2, f"exit {out.rc}, not 2: {tail(out.output)}")
    lines = out.err_lines()
    expect(len(lines) == 1, f"{len(lines)} lines on stderr: {tail(out.stderr, 3)}")
    for word in words:
        expect(word.lower() in lines[0].lower(), f"the line does not say {word!r}: {lines[0]}")


def no_leftovers(out: Outcome) -> None:
    expect(not out.left, f"left {len(out.left)} processes running: {out.left[:3]}")


def verdict_of(run: Path) -> str | None:
    """The first experiment's verdict in results.json: safe, race, unknown (None: none)."""
    try:
        valid = json.loads((run / "results.json").read_text())["experiments"][0]["verdict"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return {"yes": "safe", "no": "race"}.get(valid.get("valid"), "unknown")


def results_of(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / "results.json").read_text())
    except (OSError, ValueError):
        return {}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (not following links) with a hash of its bytes."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = f"link->{os.readlink(path)}"
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def history_rows(path: Path) -> int:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return max(0, sum(1 for _ in handle) - 1)
    except OSError:
        return 0


def rows_so_far(run: Path) -> int:
    try:
        return int(json.loads((run / "locust" / "progress.json").read_text())["rows"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def says_race(text: str) -> bool:
    return bool(re.search(r"verdict: race|^race\b", text, re.MULTILINE))


def url_line(cmd: Command) -> str:
    for line in cmd.stdout().splitlines():
        if line.startswith("http"):
            return line.strip()
    return ""


# -- the tries ------------------------------------------------------------------------------

TRIES: list[tuple[int, str, Callable[[Context], str]]] = []


def attempt(category: int, name: str) -> Callable[[Callable[[Context], str]],
                                                   Callable[[Context], str]]:
    def register(func: Callable[[Context], str]) -> Callable[[Context], str]:
        TRIES.append((category, name, func))
        return func
    return register


# 1. A reused --out ------------------------------------------------------------------------


def racing_run(ctx: Context) -> Path:
    """A racing gunicorn-sync run of the global store (made once; tries copy it)."""
    if "race_run" not in ctx.state:
        cwd = ctx.root / "race-setup"
        out = ctx.run(["swarm", "--mode", "gunicorn-sync", "--store", "global",
                       "--requests", "300", "--out", str(cwd / "X")], cwd, limit=50)
        expect(out.rc == 0 and verdict_of(cwd / "X") == "race",
               f"the racing run to reuse did not race: rc {out.rc}, {tail(out.output)}")
        ctx.state["race_run"] = cwd / "X"
    return ctx.state["race_run"]


def reused(ctx: Context, cwd: Path) -> tuple[Path, dict[str, str]]:
    run = cwd / "X"
    shutil.copytree(racing_run(ctx), run, symlinks=True)
    return run, snapshot(run)


def refused(out: Outcome, run: Path, before: dict[str, str], word: str = "") -> str:
    """A used run directory refused: exit 2, no traceback, nothing in it changed (how many
    lines it takes is category 7's business)."""
    expect(not out.hang, f"still running after {out.seconds:.0f} s (hang)")
    expect("Traceback" not in out.output, f"a traceback: {tail(out.stderr)}")
    expect(out.rc == 2, f"exit {out.rc}, not 2: {tail(out.output)}")
    expect(snapshot(run) == before, "the earlier run's files were changed")
    if word:
        expect(word in out.stderr, f"stderr does not say {word!r}: {tail(out.stderr)}")
    return tail(out.stderr, 1)


def not_this_runs_race(ctx: Context, run: Path, before: dict[str, str], out: Outcome,
                       cwd: Path) -> str:
    """After a lock run in a directory that held a race: nothing says race for this run."""
    expect(not out.hang, f"still running after {out.seconds:.0f} s")
    expect(not says_race(out.stdout), f"this lock run reported a race: {first_line(out.stdout)}")
    if snapshot(run) == before:
        expect(out.rc in (2, 130, -2, 143, -15),
               f"exit {out.rc} and the directory untouched: {tail(out.output)}")
        return f"exit {out.rc}, the earlier run left as it was"
    verdict = verdict_of(run)
    expect(verdict != "race", "results.json in the directory says race after a lock run")
    if (run / "history.csv").exists():
        finals = [[], ["--final-file", str(run / "final.json")]]
        for final in finals if (run / "final.json").exists() else finals[:1]:
            check = ctx.run(["check", str(run / "history.csv"), *final], cwd)
            expect(check.rc != 1, f"check {' '.join(final)} of the directory's history says "
                                  f"race: {first_line(check.stdout)}")
    logs = "".join(p.read_text(errors="replace") for p in run.glob("*.log"))
    expect("gunicorn" not in logs, "the directory's server.log holds the earlier gunicorn run")
    return f"exit {out.rc}, verdict {verdict}"


@attempt(1, "lock run into a used --out: refused, directory untouched")
def reuse_refused(ctx: Context) -> str:
    cwd = ctx.fresh("reuse")
    run, before = reused(ctx, cwd)
    out = ctx.run(["swarm", "--mode", "threaded", "--store", "lock", "--requests", "300",
                   "--out", str(run), "--assert-safe"], cwd)
    return refused(out, run, before, "not empty")


@attempt(1, "the reported command: lock run into a used --out, SIGINT at 0.35 s")
def reuse_sigint_035(ctx: Context) -> str:
    cwd = ctx.fresh("reuse-035")
    run, before = reused(ctx, cwd)
    cmd = ctx.start(["swarm", "--mode", "threaded", "--store", "lock", "--out", str(run)], cwd)
    cmd.wait_for(lambda: False, 0.35)
    cmd.send(signal.SIGINT)
    return not_this_runs_race(ctx, run, before, cmd.finish(40), cwd)


@attempt(1, "lock run into a used --out, SIGINT as its server starts")
def reuse_sigint_server(ctx: Context) -> str:
    cwd = ctx.fresh("reuse-server")
    run, before = reused(ctx, cwd)
    cmd = ctx.start(["swarm", "--mode", "threaded", "--store", "lock", "--requests", "20000",
                     "--out", str(run)], cwd)
    cmd.wait_for(lambda: bool(cmd.descendants()), 20, step=0.005)
    cmd.send(signal.SIGINT)
    return not_this_runs_race(ctx, run, before, cmd.finish(40), cwd)


@attempt(1, "lock run into a used --out, SIGTERM once rows are recorded")
def reuse_sigterm_rows(ctx: Context) -> str:
    cwd = ctx.fresh("reuse-rows")
    run, before = reused(ctx, cwd)
    cmd = ctx.start(["swarm", "--mode", "threaded", "--store", "lock", "--requests", "20000",
                     "--out", str(run)], cwd)
    mark = run / "locust" / "progress.json"
    old = mark.stat().st_mtime_ns if mark.exists() else 0
    cmd.wait_for(lambda: mark.exists() and mark.stat().st_mtime_ns != old, 25)
    cmd.send(signal.SIGTERM)
    return not_this_runs_race(ctx, run, before, cmd.finish(40), cwd)


@attempt(1, "--overwrite a used run directory, SIGINT as its server starts")
def overwrite_sigint(ctx: Context) -> str:
    cwd = ctx.fresh("overwrite")
    run, before = reused(ctx, cwd)
    cmd = ctx.start(["swarm", "--mode", "threaded", "--store", "lock", "--requests", "20000",
                     "--out", str(run), *ctx.opt("swarm", "--overwrite")], cwd)
    cmd.wait_for(lambda: bool(cmd.descendants()), 20, step=0.005)
    cmd.send(signal.SIGINT)
    out = cmd.finish(40)
    expect(out.exited(130), f"exit {out.rc}, not 130: {tail(out.output)}")
    expect(snapshot(run) != before, "the directory was not emptied nor written")
    expect(not (run / "cells").exists(), "files of the earlier run are still there")
    return not_this_runs_race(ctx, run, before, out, cwd)


@attempt(1, "--overwrite a folder of other files: refused, kept whole")
def overwrite_foreign(ctx: Context) -> str:
    cwd = ctx.fresh("overwrite-foreign")
    notes = cwd / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("years of work\n")
    out = ctx.run(["swarm", "--mode", "threaded", "--store", "lock", "--requests", "50",
                   "--out", str(notes), *ctx.opt("swarm", "--overwrite")], cwd)
    expect(not out.hang and out.rc == 2, f"exit {out.rc}, not 2: {tail(out.output)}")
    expect(sorted(p.name for p in notes.iterdir()) == ["thesis.tex"],
           f"racelab wrote into the folder: {sorted(p.name for p in notes.iterdir())[:6]}")
    expect((notes / "thesis.tex").read_text() == "years of work\n", "thesis.tex changed")
    return first_line(out.stderr)


@attempt(1, "matrix into a used --out: refused")
def reuse_matrix(ctx: Context) -> str:
    cwd = ctx.fresh("reuse-matrix")
    run, before = reused(ctx, cwd)
    out = ctx.run(["matrix", "--modes", "threaded", "--stores", "lock", "--requests", "50",
                   "--out", str(run), "--assert-safe"], cwd)
    return refused(out, run, before, "not empty")


@attempt(1, "demo into a used --out: refused")
def reuse_demo(ctx: Context) -> str:
    cwd = ctx.fresh("reuse-demo")
    run, before = reused(ctx, cwd)
    out = ctx.run(["demo", "--preset", str(ctx.fixtures / "two-cells.toml"), "--out", str(run),
                   "--assert-safe"], cwd, limit=25)
    return refused(out, run, before, "not empty")


@attempt(1, "serve --run-dir into a used run directory: refused")
def reuse_serve(ctx: Context) -> str:
    cwd = ctx.fresh("reuse-serve")
    run, before = reused(ctx, cwd)
    cmd = ctx.start(["serve", "--mode", "threaded", "--store", "global", "--run-dir", str(run)],
                    cwd)
    served = cmd.wait_for(lambda: bool(url_line(cmd)), 15)
    if served:
        cmd.send(signal.SIGINT)
    out = cmd.finish(20)
    expect(not served, f"it served in the used directory ({url_line(cmd)})")
    return refused(out, run, before, "not empty")


@attempt(1, "probe into a used --out: refused")
def reuse_probe(ctx: Context) -> str:
    cwd = ctx.fresh("reuse-probe")
    run, before = reused(ctx, cwd)
    out = ctx.run(["probe", f"http://127.0.0.1:{ctx.http_port}/", "--requests", "50",
                   "--out", str(run), "--assert-safe"], cwd)
    return refused(out, run, before, "not empty")


@attempt(1, "an empty existing --out is accepted (control)")
def empty_out_ok(ctx: Context) -> str:
    cwd = ctx.fresh("empty-out")
    (cwd / "E").mkdir()
    out = ctx.run(["swarm", "--mode", "threaded", "--store", "lock", "--requests", "100",
                   "--out", str(cwd / "E"), "--assert-safe"], cwd, limit=40)
    expect(out.rc == 0, f"exit {out.rc}: {tail(out.output)}")
    return "safe, exit 0"


# 2. A demo or matrix stopped after its last cell ------------------------------------------


def after_last_cell(ctx: Context, name: str, args: list[str], cells: int, signum: int,
                    delay: float) -> str:
    cwd = ctx.fresh(name)
    run = cwd / "run"
    cmd = ctx.start([*args, "--out", str(run)], cwd)
    done = cmd.wait_for(lambda: len(list(run.glob("cells/*/summary.json"))) >= cells, 50,
                        step=0.005)
    expect(done or not cmd.running(), "the cells never finished")
    if delay:
        cmd.wait_for(lambda: False, delay, step=0.005)
    sent = cmd.send(signum)
    out = cmd.finish(40)
    expect(not out.hang, f"still running {out.seconds:.0f} s after the signal")
    results = results_of(run)
    report = run / "report.html"
    if not sent:  # it had ended on its own: then a whole run, not partial
        expect(out.rc == 0 and results and report.exists(),
               f"ended before the signal with exit {out.rc} and no whole results")
        return "ended before the signal came; results whole"
    code = 128 + signum
    expect(out.exited(code), f"exit {out.rc}, not {code}: {tail(out.output)}")
    expect(bool(results), "no results.json after the signal")
    expect(results.get("run", {}).get("partial") is True,
           f"results.json says partial: {results.get('run', {}).get('partial')}")
    expect(report.exists(), "no report.html")
    expect("partial" in report.read_text(errors="replace").lower(),
           "report.html does not say partial")
    no_leftovers(out)
    return f"exit {out.rc}, results partial, report partial ({out.signalled})"


MATRIX = ["matrix", "--modes", "threaded", "--stores", "lock,sqlite", "--requests", "300"]


@attempt(2, "matrix, SIGINT as its last cell ends")
def matrix_int_0(ctx: Context) -> str:
    return after_last_cell(ctx, "matrix-int", MATRIX, 2, signal.SIGINT, 0.0)


@attempt(2, "matrix, SIGINT 0.05 s after its last cell")
def matrix_int_005(ctx: Context) -> str:
    return after_last_cell(ctx, "matrix-int-005", MATRIX, 2, signal.SIGINT, 0.05)


@attempt(2, "matrix, SIGTERM 0.25 s after its last cell")
def matrix_term_025(ctx: Context) -> str:
    return after_last_cell(ctx, "matrix-term-025", MATRIX, 2, signal.SIGTERM, 0.25)


@attempt(2, "matrix, SIGTERM 0.15 s after its last cell")
def matrix_term_015(ctx: Context) -> str:
    return after_last_cell(ctx, "matrix-term", MATRIX, 2, signal.SIGTERM, 0.15)


@attempt(2, "matrix, SIGINT 0.4 s after its last cell")
def matrix_int_04(ctx: Context) -> str:
    return after_last_cell(ctx, "matrix-int-04", MATRIX, 2, signal.SIGINT, 0.4)


@attempt(2, "matrix, SIGHUP as its last cell ends")
def matrix_hup_0(ctx: Context) -> str:
    return after_last_cell(ctx, "matrix-hup", MATRIX, 2, signal.SIGHUP, 0.0)


@attempt(2, "demo, SIGINT as its last cell ends")
def demo_int_0(ctx: Context) -> str:
    return after_last_cell(ctx, "demo-int", ["demo", "--preset",
                                             str(ctx.fixtures / "two-cells.toml")],
                           2, signal.SIGINT, 0.0)


@attempt(2, "demo, SIGTERM 0.2 s after its last cell")
def demo_term_02(ctx: Context) -> str:
    return after_last_cell(ctx, "demo-term", ["demo", "--preset",
                                              str(ctx.fixtures / "two-cells.toml")],
                           2, signal.SIGTERM, 0.2)


# 3. serve's exit codes --------------------------------------------------------------------


def serve_signalled(ctx: Context, name: str, mode: str, store: str, signum: int,
                    ready: bool = True, group: bool = False) -> str:
    cwd = ctx.fresh(name)
    cmd = ctx.start(["serve", "--mode", mode, "--store", store, "--run-dir",
                     str(cwd / "run")], cwd)
    if ready:
        expect(cmd.wait_for(lambda: bool(url_line(cmd)), 30),
               f"serve printed no URL: {tail(cmd.stderr())}")
        cmd.wait_for(lambda: False, 0.5)
    else:
        cmd.wait_for(lambda: bool(cmd.descendants()), 20, step=0.01)
    if group:  # a terminal's Ctrl-C or hangup: every process of the foreground group
        expect(cmd.running(), f"serve ended by itself: {tail(cmd.stderr())}")
        os.killpg(cmd.pid, signum)
        cmd.signalled = f"{signal.Signals(signum).name} to the group at {cmd.elapsed():.2f} s"
    else:
        expect(cmd.send(signum), f"serve ended by itself: {tail(cmd.stderr())}")
    out = cmd.finish(25)
    code = 128 + signum
    expect(not out.hang, f"still running {out.seconds:.0f} s after {signal.Signals(signum).name}")
    expect(out.exited(code), f"exit {out.rc} after {signal.Signals(signum).name}, not {code}")
    expect("Traceback" not in out.output, f"a traceback: {tail(out.stderr)}")
    no_leftovers(out)
    return f"exit {out.rc}"


#: Each try: its name; then serve_signalled's name, mode, store, signal, ready and group.
_SERVE_TRIES: list[tuple[str, str, str, str, signal.Signals, bool, bool]] = [
    ("serve threaded, SIGINT: 130",
     "serve-int", "threaded", "global", signal.SIGINT, True, False),
    ("serve threaded, SIGTERM: 143",
     "serve-term", "threaded", "global", signal.SIGTERM, True, False),
    ("serve threaded, SIGHUP: 129",
     "serve-hup", "threaded", "global", signal.SIGHUP, True, False),
    ("serve gunicorn-sync, SIGINT: 130",
     "serve-g-int", "gunicorn-sync", "global", signal.SIGINT, True, False),
    ("serve gunicorn-sync, SIGTERM: 143",
     "serve-g-term", "gunicorn-sync", "global", signal.SIGTERM, True, False),
    ("serve gunicorn-sync, SIGHUP: 129",
     "serve-g-hup", "gunicorn-sync", "global", signal.SIGHUP, True, False),
    ("serve gunicorn-sync on the manager store, SIGTERM: 143",
     "serve-m-term", "gunicorn-sync", "manager", signal.SIGTERM, True, False),
    ("serve threaded, SIGTERM while it starts: 143",
     "serve-start-term", "threaded", "global", signal.SIGTERM, False, False),
    ("serve threaded, Ctrl-C (SIGINT to its process group): 130",
     "serve-pg-int", "threaded", "global", signal.SIGINT, True, True),
    ("serve gunicorn-sync, Ctrl-C (SIGINT to its process group): 130",
     "serve-pg-g-int", "gunicorn-sync", "global", signal.SIGINT, True, True),
    ("serve gunicorn-sync, hangup (SIGHUP to its process group): 129",
     "serve-pg-hup", "gunicorn-sync", "global", signal.SIGHUP, True, True),
]
for _name, *_how in _SERVE_TRIES:
    attempt(3, _name)(lambda ctx, how=tuple(_how): serve_signalled(ctx, *how))


# 4. A load generator that dies ------------------------------------------------------------


def locusts(cmd: Command) -> list[psutil.Process]:
    found = []
    for proc in cmd.descendants():
        with contextlib.suppress(psutil.Error):
            if "locust" in " ".join(proc.cmdline()):
                found.append(proc)
    return found


def kill_load_generator(ctx: Context, name: str, mode: str, store: str,
                        processes: int) -> tuple[Path, Outcome, int]:
    cwd = ctx.fresh(name)
    run = cwd / "run"
    cmd = ctx.start(["swarm", "--mode", mode, "--store", store, "--requests", "20000",
                     "--processes", str(processes), "--out", str(run)], cwd)
    expect(cmd.wait_for(lambda: rows_so_far(run) >= 800, 30), "the swarm never got going")
    found = locusts(cmd)
    pids = {p.pid for p in found}
    if processes > 1:
        victims = [p for p in found if p.ppid() in pids]
    else:
        victims = [p for p in found if p.ppid() not in pids]
    expect(bool(victims), f"no Locust process to kill among {[describe(p) for p in found]}")
    before = rows_so_far(run)
    victims[0].kill()
    ctx.log(f"      SIGKILL to {describe(victims[0])} at {cmd.elapsed():.1f} s, {before} rows")
    out = cmd.finish(30)
    ctx.state[name] = run
    return run, out, before


def judge_dead_generator(run: Path, out: Outcome, before: int) -> str:
    expect(not out.hang, f"still running {out.seconds:.0f} s in all, long after the kill "
                         "(the load generator's death went unnoticed)")
    expect("Traceback" not in out.output, f"a traceback: {tail(out.stderr)}")
    expect(out.rc == 2, f"exit {out.rc}, not 2: {tail(out.output)}")
    expect("load generator" in out.output.lower(),
           f"the output does not name the load generator: {tail(out.output)}")
    expect(verdict_of(run) == "unknown", f"verdict {verdict_of(run)}, not unknown")
    rows = history_rows(run / "history.csv")
    expect(rows >= before > 0, f"history.csv holds {rows} rows, {before} were reported")
    no_leftovers(out)
    return f"exit 2 in {out.seconds:.1f} s, unknown, {rows} rows kept (>= {before})"


@attempt(4, "SIGKILL a Locust worker of --processes 2 (threaded, lock)")
def dead_worker(ctx: Context) -> str:
    return judge_dead_generator(*kill_load_generator(ctx, "dead-worker", "threaded", "lock", 2))


@attempt(4, "SIGKILL the one Locust process of --processes 1 (threaded, lock)")
def dead_single(ctx: Context) -> str:
    return judge_dead_generator(*kill_load_generator(ctx, "dead-single", "threaded", "lock", 1))


@attempt(4, "SIGKILL a Locust worker of --processes 2 (gunicorn-sync, sqlite)")
def dead_worker_sqlite(ctx: Context) -> str:
    return judge_dead_generator(*kill_load_generator(ctx, "dead-worker-sqlite", "gunicorn-sync",
                                                     "sqlite", 2))


@attempt(4, "check of the run whose Locust worker died: unknown")
def dead_worker_check(ctx: Context) -> str:
    run = ctx.state.get("dead-worker")
    expect(run is not None and (run / "history.csv").exists(),
           "the run whose worker was killed left no history.csv")
    out = ctx.run(["check", str(run / "history.csv")], ctx.fresh("dead-check"))
    expect(out.rc == 2, f"check exit {out.rc}, not 2: {first_line(out.stdout)}")
    return first_line(out.stdout)


# 5. A store that restarts empty -----------------------------------------------------------


def restarted_store(ctx: Context, name: str, head: list[str], tail_args: list[str]) -> str:
    cwd = ctx.fresh(name)
    run = cwd / "run"
    out = ctx.run([*head, "--mode", "gunicorn-sync", *tail_args, "--fault", "stop-store@1s+1s",
                   "--out", str(run), "--assert-safe"], cwd, limit=50)
    ctx.state[name] = run
    expect(not out.hang, f"still running after {out.seconds:.0f} s")
    expect(not says_race(out.stdout), f"called a race: {first_line(out.stdout)}")
    expect(out.rc == 2, f"exit {out.rc}, not 2: {tail(out.output)}")
    verdict = verdict_of(run)
    expect(verdict == "unknown", f"results.json verdict {verdict}, not unknown")
    entry = results_of(run)["experiments"][0]
    reason = str(entry["verdict"].get("reason", ""))
    expect("restart" in reason.lower(), f"the reason does not name the restart: {reason[:150]}")
    return f"exit 2, unknown: {reason[:100]}"


@attempt(5, "the reported command: manager store, stop-store@1s+1s, 6000 requests")
def manager_restart(ctx: Context) -> str:
    return restarted_store(ctx, "manager-restart", ["swarm", "--store", "manager"],
                           ["--requests", "6000"])


@attempt(5, "manager store, stop-store@1s+1s, 8 users for 4 s")
def manager_restart_duration(ctx: Context) -> str:
    return restarted_store(ctx, "manager-restart-4s", ["swarm", "--store", "manager"],
                           ["--users", "8", "--duration", "4", "--requests", "0"])


@attempt(5, "a private Redis (--start-services), stop-store@1s+1s")
def private_redis_restart(ctx: Context) -> str:
    expect(shutil.which("redis-server") is not None, "redis-server is not installed")
    return restarted_store(ctx, "redis-restart", ["--start-services", "--redis-url",
                                                  "redis://127.0.0.1:1/0", "swarm", "--store",
                                                  "redis"],
                           ["--users", "8", "--duration", "4", "--requests", "0"])


@attempt(5, "a private memcached (--start-services), stop-store@1s+1s")
def private_memcached_restart(ctx: Context) -> str:
    expect(shutil.which("memcached") is not None, "memcached is not installed")
    return restarted_store(ctx, "memcached-restart", ["--start-services", "--memcached",
                                                      "127.0.0.1:1", "swarm", "--store",
                                                      "memcached"],
                           ["--users", "8", "--duration", "4", "--requests", "0"])


@attempt(5, "check of the manager run that restarted empty: not race")
def manager_restart_check(ctx: Context) -> str:
    run = ctx.state.get("manager-restart")
    expect(run is not None and (run / "history.csv").exists(), "no history.csv to check")
    out = ctx.run(["check", str(run / "history.csv")], ctx.fresh("restart-check"))
    expect(out.rc == 2, f"check exit {out.rc}, not 2: {first_line(out.stdout)}")
    return first_line(out.stdout)


@attempt(5, "report --reanalyse of the manager run that restarted empty: unknown")
def manager_restart_reanalyse(ctx: Context) -> str:
    source = ctx.state.get("manager-restart")
    expect(source is not None and source.exists(), "no run to re-analyse")
    cwd = ctx.fresh("restart-reanalyse")
    run = cwd / "run"
    shutil.copytree(source, run, symlinks=True)
    out = ctx.run(["report", str(run), "--reanalyse", "--format", "json"], cwd)
    expect(out.rc == 0, f"report exit {out.rc}: {tail(out.output)}")
    expect(verdict_of(run) == "unknown", f"re-analysed verdict {verdict_of(run)}, not unknown")
    return "unknown"


@attempt(5, "manager store without a fault is safe (control)")
def manager_control(ctx: Context) -> str:
    cwd = ctx.fresh("manager-control")
    out = ctx.run(["swarm", "--mode", "gunicorn-sync", "--store", "manager", "--requests",
                   "1000", "--out", str(cwd / "run"), "--assert-safe"], cwd, limit=45)
    expect(out.rc == 0, f"exit {out.rc}: {tail(out.output)}")
    return "safe, exit 0"


# 6. check reads the run's faults, scenario and state ---------------------------------------


def killed_worker_run(ctx: Context) -> Path:
    if "killed" not in ctx.state:
        cwd = ctx.root / "kill-setup"
        run = cwd / "run"
        out = ctx.run(["swarm", "--mode", "gunicorn-sync", "--store", "sqlite", "--users", "8",
                       "--duration", "3", "--requests", "0", "--fault", "kill-worker@0.5s",
                       "--out", str(run)], cwd, limit=40)
        expect((run / "history.csv").exists(),
               f"the kill-worker run left no history: rc {out.rc}, {tail(out.output)}")
        ctx.state["killed"] = run
    return ctx.state["killed"]


def check_killed(ctx: Context, extra: list[str], name: str) -> str:
    run = killed_worker_run(ctx)
    out = ctx.run(["check", str(run / "history.csv"), *extra], ctx.fresh(name))
    expect(out.rc == 2, f"check exit {out.rc}, not 2: {first_line(out.stdout)}")
    expect("kill-worker" in out.output, f"kill-worker not named: {first_line(out.stdout)}")
    return first_line(out.stdout)


@attempt(6, "check of a kill-worker run with --final-file: unknown naming the kill")
def check_killed_final(ctx: Context) -> str:
    run = killed_worker_run(ctx)
    return check_killed(ctx, ["--final-file", str(run / "final.json")], "check-kill-final")


@attempt(6, "check of a kill-worker run without --final-file")
def check_killed_plain(ctx: Context) -> str:
    return check_killed(ctx, [], "check-kill")


@attempt(6, "check --json of a kill-worker run")
def check_killed_json(ctx: Context) -> str:
    return check_killed(ctx, ["--json"], "check-kill-json")


@attempt(6, "export of a kill-worker run keeps the kill; check of the export is unknown")
def export_killed(ctx: Context) -> str:
    run = killed_worker_run(ctx)
    cwd = ctx.fresh("export-kill")
    out = ctx.run(["export", str(run), "--out", str(cwd / "h.json")], cwd)
    expect(out.rc == 0, f"export exit {out.rc}: {tail(out.output)}")
    ops = json.loads((cwd / "h.json").read_text())
    nemesis = [op.get("f") for op in ops if op.get("process") == "nemesis"]
    expect("kill-worker" in nemesis, f"no kill-worker nemesis op: {nemesis[:5]}")
    check = ctx.run(["check", str(cwd / "h.json")], cwd)
    expect(check.rc == 2, f"check of the export exit {check.rc}: {first_line(check.stdout)}")
    return f"nemesis {sorted(set(nemesis))}, check exit 2"


@attempt(6, "report --reanalyse of a kill-worker run stays unknown")
def reanalyse_killed(ctx: Context) -> str:
    cwd = ctx.fresh("reanalyse-kill")
    run = cwd / "run"
    shutil.copytree(killed_worker_run(ctx), run, symlinks=True)
    out = ctx.run(["report", str(run), "--reanalyse", "--format", "json"], cwd)
    expect(out.rc == 0, f"report exit {out.rc}: {tail(out.output)}")
    expect(verdict_of(run) == "unknown", f"re-analysed verdict {verdict_of(run)}")
    return "unknown"


def session_run(ctx: Context) -> Path:
    if "session" not in ctx.state:
        cwd = ctx.root / "session-setup"
        run = cwd / "run"
        out = ctx.run(["--session-backend", "redis", "swarm", "--mode", "gunicorn-gthread",
                       "--store", "session", "--users", "4", "--requests", "300", "--out",
                       str(run), "--assert-safe"], cwd, limit=45)
        expect(out.rc == 0, f"the session run itself was not safe: rc {out.rc}, "
                            f"{tail(out.output)}")
        ctx.state["session"] = run
    return ctx.state["session"]


@attempt(6, "check of a safe --store session run with --final-file: safe")
def check_session_final(ctx: Context) -> str:
    run = session_run(ctx)
    out = ctx.run(["check", str(run / "history.csv"), "--final-file",
                   str(run / "final.json")], ctx.fresh("check-session"))
    expect(out.rc == 0, f"check exit {out.rc}, not 0: {first_line(out.stdout)}")
    return first_line(out.stdout)


@attempt(6, "check of a safe --store session run: safe")
def check_session_plain(ctx: Context) -> str:
    run = session_run(ctx)
    out = ctx.run(["check", str(run / "history.csv")], ctx.fresh("check-session-plain"))
    expect(out.rc == 0, f"check exit {out.rc}, not 0: {first_line(out.stdout)}")
    return first_line(out.stdout)


def interrupted_run(ctx: Context) -> Path:
    if "interrupted" not in ctx.state:
        cwd = ctx.root / "interrupted-setup"
        run = cwd / "run"
        cmd = ctx.start(["swarm", "--mode", "threaded", "--store", "lock", "--requests",
                         "200000", "--out", str(run)], cwd)
        cmd.wait_for(lambda: rows_so_far(run) > 500, 30)
        cmd.send(signal.SIGINT)
        out = cmd.finish(30)
        expect(out.exited(130), f"the interrupted run exited {out.rc}, not 130")
        expect((run / "history.csv").exists(), "the interrupted run left no history")
        ctx.state["interrupted"] = run
    return ctx.state["interrupted"]


@attempt(6, "check of an interrupted safe run, no --final-file: unknown")
def check_interrupted(ctx: Context) -> str:
    run = interrupted_run(ctx)
    out = ctx.run(["check", str(run / "history.csv")], ctx.fresh("check-int"))
    expect(out.rc == 2, f"check exit {out.rc}, not 2: {first_line(out.stdout)}")
    expect("interrupt" in out.output.lower(), f"not said interrupted: {first_line(out.stdout)}")
    return first_line(out.stdout)


@attempt(6, "check of an interrupted safe run with --final-file: unknown")
def check_interrupted_final(ctx: Context) -> str:
    run = interrupted_run(ctx)
    out = ctx.run(["check", str(run / "history.csv"), "--final-file", str(run / "final.json")],
                  ctx.fresh("check-int-final"))
    expect(out.rc == 2, f"check exit {out.rc}, not 2: {first_line(out.stdout)}")
    return first_line(out.stdout)


# 7. Bad input -----------------------------------------------------------------------------


def bad(ctx: Context, name: str, args: list[str], *words: str, out_dir: bool = True,
        limit: float = 25.0) -> str:
    cwd = ctx.fresh(name)
    run = cwd / "run"
    argv = [a.replace("<fix>", str(ctx.fixtures)) for a in args]
    if out_dir:
        argv += ["--out", str(run)]
    out = ctx.run(argv, cwd, limit=limit)
    one_line_exit_2(out, *words)
    expect(not (run / "history.csv").exists(), "a history was recorded")
    return first_line(out.stderr)


A = "--assert-safe"
BAD_INPUT: list[tuple[int, str, list[str], tuple[str, ...], bool]] = [
    (7, "swarm --requests 0", ["swarm", "--requests", "0", A], (), True),
    (7, "swarm --fault nuke@1s", ["swarm", "--fault", "nuke@1s", A], (), True),
    (7, "swarm --fault kill-worker@abc", ["swarm", "--fault", "kill-worker@abc", A], (), True),
    (7, "stop-store on sqlite", ["swarm", "--store", "sqlite", "--requests", "200", "--fault",
                                 "stop-store@1s+1s", A], (), True),
    (7, "--app with --request GET", ["swarm", "--app", "<fix>/counter_app.py:app", "--request",
                                     "GET", "--requests", "50", A], (), True),
    (7, "an unreachable --redis-url", ["--redis-url", "redis://127.0.0.1:1/0", "swarm",
                                       "--store", "redis", "--requests", "50", A], (), True),
    (7, "demo --preset bogus", ["demo", "--preset", "bogus", A], (), True),
    (7, "matrix --fault nuke", ["matrix", "--fault", "nuke", "--requests", "50", A], (), True),
    (7, "an app calling sys.exit(3) at import", ["swarm", "--app",
                                                 "<fix>/exit3_app.py:app", "--requests",
                                                 "20", A], (), True),
    (7, "preset budget_s = nan", ["demo", "--preset", "<fix>/budget-nan.toml", A], (), True),
    (7, "preset swarm = 3", ["demo", "--preset", "<fix>/swarm-not-a-table.toml", A], (), True),
    (7, "preset app = ' '", ["demo", "--preset", "<fix>/app-blank.toml", A], (), True),
    (7, "export --scenario bogus", ["export", "<fix>/history.csv", "--scenario", "bogus"], (),
     False),
    (7, "interpreters --python /nonexistent", ["interpreters", "--python", "/nonexistent"], (),
     False),
    (7, "check of a 200 KB CSV field", ["check", "<fix>/big.csv"], (), False),
    (7, "swarm --app ''", ["swarm", "--app", "", "--requests", "50", A], (), True),
    (7, "matrix: stop-store on sqlite", ["matrix", "--modes", "threaded", "--stores", "sqlite",
                                         "--requests", "50", "--fault", "stop-store@1s+1s", A],
     (), True),
    (7, "check --final-file naming a directory", ["check", "<fix>/history.csv",
                                                  "--final-file", "<fix>"], (), False),
    (7, "report of a file, not a run directory", ["report", "<fix>/history.csv"], (), False),
    (8, "export --out FILE/x.json", ["export", "<fix>/history.csv", "--out",
                                     "<fix>/notes.txt/x.json"], (), False),
    (8, "demo --budget nan", ["demo", "--preset", "quick", "--budget", "nan"], (), True),
    (8, "demo --budget inf", ["demo", "--preset", "quick", "--budget", "inf"], (), True),
    (8, "probe 'http://[::1'", ["probe", "http://[::1"], (), True),
    (8, "matrix --budget nan", ["matrix", "--modes", "threaded", "--stores", "lock",
                                "--requests", "50", "--budget", "nan"], (), True),
    (8, "probe 'http://[::1]:99999'", ["probe", "http://[::1]:99999"], (), True),
    (8, "export --edn --out FILE/x.edn", ["export", "<fix>/history.csv", "--edn", "--out",
                                          "<fix>/notes.txt/x.edn"], (), False),
    (8, "check --final-file that is not JSON", ["check", "<fix>/history.csv", "--final-file",
                                                "<fix>/notes.txt"], (), False),
    (8, "export of a file that is not a CSV history", ["export", "<fix>/cut.json"], (),
     False),
]


def _bad_try(category: int, name: str, args: list[str], words: tuple[str, ...],
             out_dir: bool) -> None:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    attempt(category, name)(lambda ctx: bad(ctx, slug, args, *words, out_dir=out_dir))


for _entry in BAD_INPUT:
    _bad_try(*_entry)


# 9. Stalls and misleading lines -----------------------------------------------------------


@attempt(9, "serve --host ::1 answers at once (own network namespace)")
def serve_ipv6(ctx: Context) -> str:
    cwd = ctx.fresh("serve-ipv6")
    cmd = ctx.start(["serve", "--mode", "threaded", "--store", "global", "--host", "::1",
                     "--run-dir", str(cwd / "run")], cwd, netns=True)
    ready = cmd.wait_for(lambda: bool(url_line(cmd)), 12)
    url = url_line(cmd)
    seconds = cmd.elapsed()
    cmd.send(signal.SIGINT)
    out = cmd.finish(20)
    expect(ready, f"no URL within 12 s: {tail(out.stderr)}")
    expect(url.startswith("http://[::1]:"), f"the URL is {url!r}")
    expect(out.exited(130), f"exit {out.rc} after SIGINT, not 130")
    return f"{url} after {seconds:.1f} s"


@attempt(9, "an app hanging at import: exit 2, one line naming the import")
def hangs_at_import(ctx: Context) -> str:
    cwd = ctx.fresh("hangs")
    out = ctx.run(["swarm", "--mode", "threaded", "--app",
                   f"{ctx.fixtures}/stuck_app.py:app", "--requests", "20", "--out",
                   str(cwd / "run")], cwd, limit=55)
    one_line_exit_2(out, "import")
    return f"{first_line(out.stderr)} ({out.seconds:.0f} s)"


@attempt(9, "check --scenario bogus lists the scenarios")
def check_bogus_scenario(ctx: Context) -> str:
    out = ctx.run(["check", f"{ctx.fixtures}/history.csv", "--scenario", "bogus"],
                  ctx.fresh("bogus-scenario"))
    one_line_exit_2(out, "counter", "tickets")
    return first_line(out.stderr)


@attempt(9, "check of a gzipped history names gzip")
def check_gzip(ctx: Context) -> str:
    out = ctx.run(["check", f"{ctx.fixtures}/history.csv.gz"], ctx.fresh("gz"))
    one_line_exit_2(out, "gzip", "compressed")
    expect("universal" not in out.stderr, "asks about universal-newline mode")
    return first_line(out.stderr)


@attempt(9, "export of a gzipped history names gzip")
def export_gzip(ctx: Context) -> str:
    out = ctx.run(["export", f"{ctx.fixtures}/history.csv.gz"], ctx.fresh("gz-export"))
    one_line_exit_2(out, "gzip", "compressed")
    return first_line(out.stderr)


@attempt(9, "check of an xz-compressed history names xz")
def check_xz(ctx: Context) -> str:
    out = ctx.run(["check", f"{ctx.fixtures}/history.csv.xz"], ctx.fresh("xz"))
    one_line_exit_2(out, "xz", "compressed")
    return first_line(out.stderr)


def json_history(ctx: Context, name: str) -> str:
    out = ctx.run(["check", f"{ctx.fixtures}/{name}"], ctx.fresh(name))
    one_line_exit_2(out)
    expect("op_id" not in out.stderr, f"read as a CSV: {first_line(out.stderr)}")
    return first_line(out.stderr)


@attempt(9, "check of JSON cut short ('[') is read as JSON")
def check_cut_json(ctx: Context) -> str:
    return json_history(ctx, "cut.json")


@attempt(9, "check of JSON cut short ('{\"') is read as JSON")
def check_cut_object(ctx: Context) -> str:
    return json_history(ctx, "cut-object.json")


@attempt(9, "check of JSON nested 100,000 deep is read as JSON")
def check_nested_json(ctx: Context) -> str:
    return json_history(ctx, "nested.json")


def probe_not_http(ctx: Context, port: int, name: str) -> str:
    with socket.socket() as sock:
        sock.settimeout(1)
        expect(sock.connect_ex(("127.0.0.1", port)) == 0, f"nothing listens on :{port}")
    cwd = ctx.fresh(name)
    out = ctx.run(["probe", f"http://127.0.0.1:{port}/", "--requests", "50", "--out",
                   str(cwd / "run")], cwd)
    one_line_exit_2(out, "not an HTTP server")
    expect(not (cwd / "run" / "history.csv").exists(), "it swarmed the port")
    return first_line(out.stderr)


@attempt(9, "probe of Redis's port (127.0.0.1:6379): not an HTTP server")
def probe_redis(ctx: Context) -> str:
    return probe_not_http(ctx, 6379, "probe-redis")


@attempt(9, "probe of PostgreSQL's port (127.0.0.1:5432): not an HTTP server")
def probe_postgres(ctx: Context) -> str:
    return probe_not_http(ctx, 5432, "probe-postgres")


@attempt(9, "an app answering 'hello': unknown, 'not an integer'")
def answers_hello(ctx: Context) -> str:
    cwd = ctx.fresh("hello")
    out = ctx.run(["swarm", "--app", f"{ctx.fixtures}/answers_hello.py:app", "--requests", "40",
                   "--users", "4", "--out", str(cwd / "run")], cwd, limit=40)
    expect("verdict: unknown" in out.stdout, f"no unknown verdict: {tail(out.stdout)}")
    expect("not an integer" in out.stdout, "the reason does not say 'not an integer'")
    return "unknown, not an integer"


# 10. Security -----------------------------------------------------------------------------


def listening_on(cmd: Command) -> set[str]:
    """The addresses TCP sockets listen on in the command's network namespace (read from
    /proc/PID/net, which shows that namespace, where psutil reads this script's)."""
    found: set[str] = set()
    try:
        if os.readlink(f"/proc/{cmd.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            return found  # not in its own namespace yet: what shows is this machine's
    except OSError:
        return found
    for name, any_address in (("tcp", "00000000"), ("tcp6", "0" * 32)):
        try:
            lines = Path(f"/proc/{cmd.pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # LISTEN
                address = fields[1].split(":")[0]
                if address == any_address:
                    found.add("0.0.0.0" if name == "tcp" else "::")
                else:
                    found.add(f"{name}:{address}")
    return found


def serve_everywhere(ctx: Context, name: str, host: str) -> str:
    cwd = ctx.fresh(name)
    cmd = ctx.start(["serve", "--mode", "threaded", "--store", "global", "--host", host,
                     "--run-dir", str(cwd / "run")], cwd, netns=True)
    seen: set[str] = set()

    def bound() -> bool:
        seen.update(listening_on(cmd))
        return host in seen

    exposed = cmd.wait_for(bound, 15, step=0.01)
    if cmd.running():
        cmd.send(signal.SIGINT)
    out = cmd.finish(20)
    expect(not exposed, f"it listened on {host} without an opt-in")
    one_line_exit_2(out, "--allow-remote")
    return first_line(out.stderr)


@attempt(10, "serve --host 0.0.0.0 without opt-in: refused (own network namespace)")
def serve_all_v4(ctx: Context) -> str:
    return serve_everywhere(ctx, "serve-0000", "0.0.0.0")


@attempt(10, "serve --host :: without opt-in: refused (own network namespace)")
def serve_all_v6(ctx: Context) -> str:
    return serve_everywhere(ctx, "serve-v6-any", "::")


@attempt(10, "serve --host 0.0.0.0 --allow-remote warns (own network namespace)")
def serve_allowed(ctx: Context) -> str:
    cwd = ctx.fresh("serve-allowed")
    cmd = ctx.start(["serve", "--mode", "threaded", "--store", "global", "--host", "0.0.0.0",
                     *ctx.opt("serve", "--allow-remote"), "--run-dir", str(cwd / "run")], cwd,
                    netns=True)
    ready = cmd.wait_for(lambda: bool(url_line(cmd)), 20)
    cmd.send(signal.SIGINT)
    out = cmd.finish(20)
    expect(ready, f"it did not serve: {tail(out.stderr)}")
    expect("other machines" in out.stderr, "no warning that other machines can reach it")
    expect(out.exited(130), f"exit {out.rc} after SIGINT")
    return first_line(out.stderr)


def exposed_keys(cmd: Command, key: str) -> list[str]:
    found = []
    for proc in [psutil.Process(cmd.pid), *cmd.descendants()]:
        with contextlib.suppress(psutil.Error):
            line = " ".join(proc.cmdline())
            if re.search(r"\b[0-9a-f]{32}\b", line) or (key and key in line):
                found.append(f"argv of {proc.pid}: {line[:140]}")
            if key and any(key in value for value in proc.environ().values()):
                found.append(f"environment of {proc.pid}")
    return found


@attempt(10, "serve on the manager store: the authkey in no argv or environment")
def manager_key_serve(ctx: Context) -> str:
    cwd = ctx.fresh("manager-key")
    run = cwd / "run"
    cmd = ctx.start(["serve", "--mode", "gunicorn-sync", "--store", "manager", "--run-dir",
                     str(run)], cwd)
    ready = cmd.wait_for(lambda: bool(url_line(cmd)), 30)
    key_file = run / "manager.key"
    key = key_file.read_text().strip() if key_file.exists() else ""
    mode = stat.S_IMODE(key_file.stat().st_mode) if key_file.exists() else None
    found = exposed_keys(cmd, key)
    managers = [p for p in cmd.descendants() if "_manager" in " ".join(p.cmdline())]
    cmd.send(signal.SIGINT)
    out = cmd.finish(20)
    expect(ready, f"serve did not start: {tail(out.stderr)}")
    expect(bool(managers), "no manager process seen")
    expect(not found, f"the authkey is exposed: {found[0] if found else ''}")
    expect(mode in (None, 0o600), f"manager.key has mode {oct(mode or 0)}")
    expect(not key_file.exists(), "manager.key is still there after the stop")
    return f"no key in argv or environment; key file mode {oct(mode) if mode else '-'}"


@attempt(10, "swarm on the manager store: the authkey in no argv")
def manager_key_swarm(ctx: Context) -> str:
    cwd = ctx.fresh("manager-key-swarm")
    run = cwd / "run"
    cmd = ctx.start(["swarm", "--mode", "gunicorn-sync", "--store", "manager", "--requests",
                     "3000", "--out", str(run)], cwd)
    found: list[str] = []
    managers: list[str] = []

    def look() -> bool:
        key_file = run / "manager.key"
        key = ""
        with contextlib.suppress(OSError):
            key = key_file.read_text().strip()
        found.extend(exposed_keys(cmd, key))
        managers.extend(describe(p) for p in cmd.descendants()
                        if "_manager" in " ".join(p.cmdline()))
        return bool(managers) and rows_so_far(run) > 0

    cmd.wait_for(look, 30, step=0.05)
    out = cmd.finish(40)
    expect(bool(managers), "no manager process seen")
    expect(not found, f"the authkey is exposed: {found[0] if found else ''}")
    expect(out.rc == 0, f"exit {out.rc}: {tail(out.output)}")
    return "no key in any argv"


def plant_links(run: Path, outside: Path, names: list[str]) -> dict[str, str]:
    """Replace each name in ``run`` with a link to a file (a folder for a name without a
    dot) outside it; the targets' contents, to compare afterwards."""
    outside.mkdir(exist_ok=True)
    kept = {}
    for name in names:
        target = outside / f"target-{name}"
        if "." in name:
            target.write_text(f"not racelab's: {name}\n")
            kept[target.name] = target.read_text()
        else:
            target.mkdir()
        link = run / name
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        elif link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory="." not in name)
    return kept


def untouched(outside: Path, kept: dict[str, str]) -> None:
    for name, text in kept.items():
        expect((outside / name).read_text() == text, f"{name} was written through its link")
    for folder in (p for p in outside.iterdir() if p.is_dir()):
        expect(not any(folder.iterdir()), f"{folder.name} was written through its link")


def lock_run(ctx: Context, cwd: Path) -> Path:
    run = cwd / "run"
    out = ctx.run(["swarm", "--mode", "threaded", "--store", "lock", "--requests", "100",
                   "--out", str(run)], cwd, limit=25)
    expect(out.rc == 0, f"the first run failed: {tail(out.output)}")
    return run


@attempt(10, "a run over a run directory full of links writes through none")
def links_swarm(ctx: Context) -> str:
    cwd = ctx.fresh("links-swarm")
    run = lock_run(ctx, cwd)
    kept = plant_links(run, cwd / "outside", ["history.csv", "server.log", "summary.json",
                                              "final.json", "events.json", "results.json",
                                              "locust"])
    out = ctx.run(["swarm", "--mode", "threaded", "--store", "lock", "--requests", "100",
                   "--out", str(run), *ctx.opt("swarm", "--overwrite")], cwd, limit=25)
    untouched(cwd / "outside", kept)
    expect(out.rc == 0, f"exit {out.rc}: {tail(out.output)}")
    return "no link target written"


@attempt(10, "report --reanalyse with report.html and plots/ linked writes through none")
def links_reanalyse(ctx: Context) -> str:
    cwd = ctx.fresh("links-report")
    run = lock_run(ctx, cwd)
    kept = plant_links(run, cwd / "outside", ["report.html", "plots"])
    out = ctx.run(["report", str(run), "--reanalyse"], cwd)
    untouched(cwd / "outside", kept)
    expect(out.rc == 0, f"exit {out.rc}: {tail(out.output)}")
    expect(not (run / "report.html").is_symlink(), "report.html is still a link")
    return "no link target written"


@attempt(10, "report --format md with report.md linked writes through none")
def links_report_md(ctx: Context) -> str:
    cwd = ctx.fresh("links-md")
    run = lock_run(ctx, cwd)
    kept = plant_links(run, cwd / "outside", ["report.md"])
    out = ctx.run(["report", str(run), "--format", "md"], cwd)
    untouched(cwd / "outside", kept)
    expect(out.rc == 0, f"exit {out.rc}: {tail(out.output)}")
    return "no link target written"


@attempt(10, "probe of a non-loopback address without --allow-remote: refused")
def probe_remote(ctx: Context) -> str:
    cwd = ctx.fresh("probe-remote")
    out = ctx.run(["probe", "http://192.0.2.1:80/", "--requests", "5", "--out",
                   str(cwd / "run")], cwd)
    one_line_exit_2(out, "--allow-remote")
    return first_line(out.stderr)


# -- running --------------------------------------------------------------------------------


def run_all(ctx: Context, only: set[int] | None) -> list[dict[str, Any]]:
    results = []
    for category, name, func in sorted(TRIES, key=lambda t: t[0]):
        if only and category not in only:
            continue
        ctx.log(f"[{category}] {name}")
        ctx.outcomes = []
        start = time.monotonic()
        ctx.deadline = start + TRY_LIMIT
        try:
            note = func(ctx)
            passed, reason = True, note
        except Fail as fail:
            passed, reason = False, str(fail)
        except Exception as exc:  # the attack itself went wrong: a failure, said so
            passed, reason = False, f"attack error: {type(exc).__name__}: {exc}"
        leftovers = live_descendants(_ACTIVE | ctx.keep)
        if leftovers:
            kill_all(leftovers)
            reason += f" (killed {len(leftovers)} leftover processes)"
        ctx.log(f"    {'PASS' if passed else 'FAIL'}: {reason}")
        results.append({"category": category, "name": name, "passed": passed,
                        "reason": reason, "seconds": round(time.monotonic() - start, 1),
                        "commands": [o.brief() for o in ctx.outcomes]})
    return results


def table(results: list[dict[str, Any]], label: str) -> str:
    lines = [f"| category ({label}) | tries | failures |", "| --- | ---: | ---: |"]
    for number, title in CATEGORIES.items():
        mine = [r for r in results if r["category"] == number]
        if mine:
            lines.append(f"| {number}. {title} | {len(mine)} | "
                         f"{sum(not r['passed'] for r in mine)} |")
    lines.append(f"| **total** | **{len(results)}** | "
                 f"**{sum(not r['passed'] for r in results)}** |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", required=True, type=Path, help="a racelab checkout")
    parser.add_argument("--python", default=DEFAULT_PYTHON,
                        help="the interpreter whose packages racelab runs with")
    parser.add_argument("--json", type=Path, help="write every try's details here")
    parser.add_argument("--only", help="categories to run, e.g. 1,7")
    parser.add_argument("--label", help="the table's name for the tree (default: its commit)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args()
    tree = args.tree.resolve()
    if not (tree / "cli.py").is_file():
        parser.error(f"{tree} holds no cli.py")
    only = {int(c) for c in args.only.split(",")} if args.only else None
    subreaper = become_subreaper()
    root = Path(tempfile.mkdtemp(prefix="racelab-attack-"))
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    label = args.label or commit
    started = time.monotonic()
    try:
        python, env = isolated_python(args.python, tree, root)
        make_fixtures(root / "fixtures")
        modules = where_modules_come_from(python, tree, env, root)
        features = options_of(python, tree, env, root)
        ctx = Context(tree=tree, python=python, env=env, root=root, features=features,
                      verbose=not args.quiet)
        ctx.log(f"tree {tree} ({commit}); modules from {modules}; subreaper {subreaper}")
        with http_server() as port:
            ctx.http_port = port
            results = run_all(ctx, only)
    finally:
        left = live_descendants()
        if left:
            print(f"killing {len(left)} leftover processes: {[describe(p) for p in left]}",
                  file=sys.stderr)
            kill_all(left)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    still = live_descendants()
    print(table(results, label))
    failed = [r for r in results if not r["passed"]]
    if failed:
        print()
        for r in failed:
            print(f"- [{r['category']}] {r['name']}: {r['reason']}")
    print(f"\n{time.monotonic() - started:.0f} s; processes left running: {len(still)}")
    if args.json:
        args.json.write_text(json.dumps({
            "tree": str(tree), "commit": commit, "label": label, "modules": modules,
            "options": {k: sorted(v) for k, v in features.items()},
            "seconds": round(time.monotonic() - started, 1), "left_running": len(still),
            "tries": results}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
