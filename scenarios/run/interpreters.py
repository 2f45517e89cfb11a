"""The same race under every Python interpreter on this machine, without a server.

The original ``SomeObj.query`` (``self.param += 1; return self.param``), the
same with a function call, and the same with ``time.sleep(0)`` between read and
write, run by threads in a tight loop. Each interpreter runs a small
stdlib-only script (the class's source is copied verbatim), so an interpreter
without Flask still answers. Interpreters come from ``--python`` and from
discovery (``demo_server.control.interpreter.discover``: racelab's own, its
cache, ``PATH``, pyenv and uv); none is required. A free-threaded build is
also checked as a server would run it (``server_gil``): does its GIL stay off
once Flask and the server are imported?
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from demo_server.basics.errors import ConfigError
from demo_server.control.interpreter import describe, discover, resolve
from demo_server.control.server_env import server_gil
from scenarios.counter.stores import SomeObj

__all__ = ["InterpreterResult", "check_python", "failed_named", "find_interpreters",
           "race_script", "run_interpreters"]

WINDOWS = ("none", "call", "yield")

_SCRIPT = '''
import json, platform, sys, threading, time

{some_obj}

class Windowed(SomeObj):
    def __init__(self, window):
        SomeObj.__init__(self)
        self.window = window
    def query(self):
        value = self.param
        self.window()
        self.param = value + 1
        return self.param

def noop():
    pass

def sleep0():
    time.sleep(0)

def race(obj, threads, increments):
    barrier = threading.Barrier(threads)
    def run():
        barrier.wait()
        for _ in range(increments):
            obj.query()
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return obj.param

threads, increments = int(sys.argv[1]), int(sys.argv[2])
gil = getattr(sys, "_is_gil_enabled", lambda: True)()
try:
    import sysconfig
    free = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
except Exception:
    free = False
out = {{"version": platform.python_version(), "implementation": platform.python_implementation(),
       "gil": bool(gil), "build": "free-threaded" if free else "default", "threads": threads,
       "windows": {{}}}}
for name, obj, n in (("none", SomeObj(), increments), ("call", Windowed(noop), increments),
                     ("yield", Windowed(sleep0), max(1, increments // 100))):
    start = time.perf_counter()
    final = race(obj, threads, n)
    out["windows"][name] = {{"expected": threads * n, "final": final,
                             "seconds": round(time.perf_counter() - start, 3)}}
print(json.dumps(out))
'''


def race_script() -> str:
    """The stdlib-only script, with the original class's source copied in."""
    return _SCRIPT.format(some_obj=textwrap.dedent(inspect.getsource(SomeObj)))


@dataclasses.dataclass(frozen=True)
class InterpreterResult:
    """What one interpreter did with the race (or why it could not run it)."""

    python: str
    version: str = ""
    implementation: str = ""
    gil: bool | None = None
    windows: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    error: str = ""
    #: ``free-threaded`` or ``default``
    build: str = ""
    #: a free-threaded build's GIL with Flask and the server imported (``server_gil``)
    server: dict[str, Any] | None = None

    def lost(self, window: str) -> tuple[int, int] | None:
        """(lost increments, expected increments) for a window, if it ran."""
        got = self.windows.get(window)
        if not got:
            return None
        return got["expected"] - got["final"], got["expected"]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_python(path: str) -> str:
    """An interpreter the user named (``--python``): an executable file, a name on PATH, or
    a version or build racelab can find (``3.13t``, ``free-threaded``).

    Returns:
        Its path.

    Raises:
        ConfigError: no such file or program, a directory, or a file not executable.
    """
    found = path if os.sep in path else (shutil.which(path) or path)
    if not os.path.exists(found) and os.sep not in path:
        try:  # a version or a build: 3.13t, free-threaded
            return resolve(path, serve=False).path
        except ConfigError:
            pass
    if not os.path.exists(found):
        raise ConfigError(f"--python {path}: no such file or program")
    if not os.path.isfile(found) or not os.access(found, os.X_OK):
        raise ConfigError(f"--python {path}: not an executable file")
    return found


def failed_named(results: Sequence[InterpreterResult], named: Sequence[str]) -> str:
    """One line naming the first interpreter the user named that could not run, or ""."""
    wanted = {os.path.realpath(p) for p in named}
    for result in results:
        if result.error and os.path.realpath(result.python) in wanted:
            return (f"--python {result.python} could not run the race: {result.error} "
                    "(is it a Python 3.6 or newer?)")
    return ""


def find_interpreters(extra: Sequence[str] = ()) -> list[str]:
    """This interpreter, ``extra`` ones, and every interpreter discovery finds.

    ``extra`` may name an interpreter as ``--python`` does (a path, a command, a
    version); a path is kept as given, to be reported if it cannot run.

    Raises:
        ConfigError: a command or version that names nothing.
    """
    found = [sys.executable]
    for text in extra:
        found.append(text if os.sep in text else resolve(text, serve=False).path)
    found += [i.path for i in discover()]
    unique: dict[str, str] = {}
    for path in found:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def _run_one(python: str, script: str, threads: int, increments: int,
             timeout: float) -> InterpreterResult:
    try:
        proc = subprocess.run(
            [python, "-c", script, str(threads), str(increments)],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return InterpreterResult(python, error=f"{type(exc).__name__}: {exc}")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if "SyntaxError" in last:
            last = "needs Python 3.6 or newer"
        return InterpreterResult(python, error=last)
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return InterpreterResult(python, error=f"unreadable output: {proc.stdout[:200]!r}")
    return InterpreterResult(python, data["version"], data["implementation"], data["gil"],
                             data["windows"], build=str(data.get("build") or ""))


def run_interpreters(
    pythons: Sequence[str], threads: int = 8, increments: int = 200_000, timeout: float = 120,
    jobs: int = 1, check_server: bool = False,
) -> list[InterpreterResult]:
    """Run the race under each interpreter, ``jobs`` interpreters at a time.

    Each race runs in one process (its threads share that interpreter's GIL, or
    none), so ``jobs`` up to the number of cores leaves each race a core of its own.

    Args:
        pythons: interpreter paths.
        threads: threads racing on one object.
        increments: increments per thread (the ``yield`` window, whose every
            increment sleeps, runs a hundredth: a sleep takes 50-80 µs from Python
            3.11 on, and nearly every such increment is lost).
        timeout: seconds one interpreter may take.
        jobs: interpreters racing at once (processes).
        check_server: also check each free-threaded build's GIL once Flask and the
            server are imported (``server``; nothing is installed for it).

    Returns:
        One result per interpreter, sorted by version; failures carry their error.
    """
    if threads < 2 or increments < 1:
        raise ConfigError("the race needs at least 2 threads and 1 increment each")
    # Once, here: inspect.getsource parses a module, and CPython 3.11's parser is not safe
    # to run from two threads at once ("AST constructor recursion depth mismatch").
    script = race_script()
    if jobs > 1 and len(pythons) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(lambda p: _run_one(p, script, threads, increments, timeout),
                                    pythons))
    else:
        results = [_run_one(p, script, threads, increments, timeout) for p in pythons]

    if check_server:
        results = [dataclasses.replace(r, server=server_gil(describe(r.python)))
                   if r.build == "free-threaded" else r for r in results]

    def key(r: InterpreterResult) -> tuple[int, ...]:
        parts = [int(x) for x in r.version.split(".")[:3] if x.isdigit()]
        return (0, *parts) if parts else (1,)

    return sorted(results, key=key)
