"""The demo app on a free-threaded build against racelab's own interpreter, and the cost of
preparing the free-threaded build's environment.

Prints, in one run:

- requests per second of the demo app (``GET /incr`` on the ``global`` store, window
  ``none``) served ``threaded`` (Werkzeug) and ``gunicorn-gthread`` (racelab's
  default sizes: 2 workers, 4 threads), on racelab's own interpreter and on the
  free-threaded one (``--python``, default: the newest found), measured with ``wrk``
  (a C client, so that the load generator leaves the cores to the server as far as
  two cores allow);
- the time of a first preparation of the free-threaded build's environment (a new
  virtual environment with Flask and gunicorn, pinned by constraints.txt, in a
  scratch cache directory; pip's own download cache is used unless ``--no-pip-cache``)
  against a cached one (the environment found ready: nothing installed).

Usage::

    python bench/bench_interpreter.py                    # 5 s per measurement
    python bench/bench_interpreter.py --seconds 10 --python 3.14t --no-pip-cache
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo_server.basics.errors import RacelabError  # noqa: E402
from demo_server.control.interpreter import FREE_THREADED, resolve  # noqa: E402
from demo_server.control.modes import LaunchSpec  # noqa: E402
from demo_server.control.server_env import (  # noqa: E402
    prepared_env,
    requirements,
    server_python,
)
from demo_server.control.supervisor import Supervisor  # noqa: E402
from demo_server.served.config import ServerConfig  # noqa: E402

__all__ = ["main"]

MODES = ("threaded", "gunicorn-gthread")


def _rps(mode: str, python: str, seconds: float, connections: int, run_dir: Path) -> float:
    """wrk's requests per second against the demo app served in ``mode`` on ``python``."""
    spec = LaunchSpec(mode=mode, python=python)
    with Supervisor(ServerConfig(store="global"), spec, run_dir) as sup:
        done = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", f"{sup.url}/incr"],
            capture_output=True, text=True, timeout=seconds + 60, check=True)
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if found is None:
        raise RuntimeError(f"wrk said: {done.stdout}{done.stderr}")
    return float(found.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=FREE_THREADED,
                        help="the free-threaded interpreter (default: the newest found)")
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk's run per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-pip-cache", action="store_true",
                        help="the first preparation downloads every package afresh")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (./run system-deps installs it)")
    try:
        free = resolve(args.python)
        served = server_python(args.python, "gunicorn-gthread")
    except RacelabError as exc:
        sys.exit(str(exc))
    own = resolve("")
    print(f"racelab's own: {own.label}, GIL {'on' if own.gil else 'off'} ({own.path})")
    print(f"--python {args.python}: {free.label}, served from {served.executable}")
    print(f"\nrequests/s of GET /incr (global store, window none), wrk -t2 -c{args.connections}, "
          f"{args.seconds:g} s each, {os.cpu_count()} cores:")
    print(f"  {'mode':<18} {own.short + ' (GIL)':>14} {free.short + ' (no GIL)':>16}  ratio")
    with tempfile.TemporaryDirectory(prefix="racelab-bench-ft-") as tmp:
        for mode in MODES:
            base = _rps(mode, "", args.seconds, args.connections, Path(tmp) / f"own-{mode}")
            other = _rps(mode, served.executable, args.seconds, args.connections,
                         Path(tmp) / f"ft-{mode}")
            print(f"  {mode:<18} {base:>14,.0f} {other:>16,.0f}  {other / base:.2f}x")
        os.environ["RACELAB_CACHE"] = str(Path(tmp) / "cache")
        if args.no_pip_cache:
            os.environ["PIP_NO_CACHE_DIR"] = "1"
        need = requirements("gunicorn-gthread")
        started = time.perf_counter()
        prepared_env(free, need, progress=lambda line: None)
        first = time.perf_counter() - started
        started = time.perf_counter()
        prepared_env(free, need, progress=lambda line: None)
        cached = time.perf_counter() - started
    pip_cache = "without pip's cache" if args.no_pip_cache else "pip's download cache as it is"
    print(f"\nenvironment for {free.short} (flask, gunicorn; {pip_cache}):")
    print(f"  first preparation  {first:7.2f} s")
    print(f"  cached             {cached:7.2f} s")


if __name__ == "__main__":
    main()
