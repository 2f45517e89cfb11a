"""A pre-warmed process that forks ``python -m MODULE ...`` children on request.

``python -m demo_server.basics._zygote MODULE...`` imports the named modules once
(``locust`` takes about a second of CPU to import: gevent's monkey-patching,
its HTTP clients), then serves requests from its stdin, one JSON object a line,
answering each with one line on its stdout:

- ``{"spawn": {"module", "args", "env", "cwd", "stdout", "stderr"}}`` ->
  ``{"pid": N}``: fork a child that starts a session of its own, takes ``env``
  as its whole environment, ``cwd`` as its working directory, stdin from
  ``/dev/null``, stdout and stderr into the named files (``[path, "w" | "a"]``;
  stderr may be ``"stdout"``) and runs ``MODULE`` as ``python -m MODULE args``
  would (``runpy``, ``sys.argv`` and ``sys.path[0]`` as ``-m`` sets them); its
  exit code is that of ``SystemExit``, 1 after an uncaught exception;
- ``{"poll": [pid, ...]}`` -> ``{"codes": {pid: code or null}}``: which of its
  children have ended, with ``subprocess.Popen``'s ``returncode`` (``-N``:
  killed by signal N).

The first line it writes is ``{"ready": pid}`` once every module is imported,
or ``{"error": text}`` if one cannot be. It ends when its stdin closes; the
children it forked are their launcher's to stop (``demo_server.basics.procs``).

A child is the module's process as a fresh interpreter would run it, minus the
imports: nothing else runs in the zygote before a fork (no thread, no greenlet),
so the child starts from the state those imports leave. With gevent imported,
the fork is gevent's own (``fork_gevent``, as Locust's ``--processes`` forks),
which gives the child a fresh event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import sys
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["main"]


def _fork_and_wait() -> tuple[Callable[[], int], Callable[[int, int], tuple[int, int]]]:
    if "gevent" in sys.modules:
        from gevent.monkey import get_original
        from gevent.os import fork_gevent

        return fork_gevent, get_original("os", "waitpid")
    return os.fork, os.waitpid


def _redirect(fd: int, target: Any) -> None:
    path, mode = target
    flags = (os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)  # never through a link
             | (os.O_APPEND if mode == "a" else os.O_TRUNC))
    opened = os.open(path, flags, 0o644)
    os.dup2(opened, fd)
    os.close(opened)


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become the module's process; never return."""
    code: Any = 0
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        _redirect(1, request["stdout"])
        if request["stderr"] == "stdout":
            os.dup2(1, 2)
        else:
            _redirect(2, request["stderr"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["-m", *request["args"]]
        sys.path[0] = os.getcwd()  # what ``python -m`` puts first
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        with contextlib.suppress(Exception):
            print(code, file=sys.stderr)
        code = 1
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()  # what the interpreter runs at exit (Locust stops its workers)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code & 0xFF)


def main(modules: list[str]) -> None:
    out = sys.stdout
    try:
        for module in modules:
            importlib.import_module(module)
    except BaseException as exc:
        out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return
    fork, waitpid = _fork_and_wait()
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    ended: dict[int, int] = {}
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        while True:  # reap whatever has ended, so no zombie waits for a poll
            try:
                pid, status = waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            ended[pid] = os.waitstatus_to_exitcode(status)
        if "spawn" in request:
            out.flush()
            sys.stderr.flush()
            try:
                pid = fork()
            except OSError as exc:
                out.write(json.dumps({"error": f"fork failed: {exc}"}) + "\n")
                out.flush()
                continue
            if pid == 0:
                _child(request["spawn"])
            reply: dict[str, Any] = {"pid": pid}
        elif "poll" in request:
            reply = {"codes": {str(p): ended.get(int(p)) for p in request["poll"]}}
        else:
            reply = {"error": "unknown request"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
