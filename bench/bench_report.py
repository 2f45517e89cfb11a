"""Time the rendering of a 50-experiment report (plots, HTML) from saved files.

Builds 50 plausible experiment directories (2,000 operations each; races,
clean runs, per-process counters, some bursts) in a temporary directory, then
times ``render_run`` twice: with results.json missing (checks every history)
and with it present (plots and HTML only). Target: under 10 s on 2 cores.

    .venv/bin/python bench/bench_report.py [--experiments 50] [--ops 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_reports import make_experiment  # noqa: E402

from reports.render.html import render_run  # noqa: E402

MODES = ("threaded", "gunicorn-sync", "gunicorn-gthread", "gevent", "single", "processes",
         "cluster")
STORES = ("global", "lock", "sqlite", "redis", "postgres", "manager", "memcached", "g")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args()
    kinds = ("race", "safe", "per-process")
    with tempfile.TemporaryDirectory(prefix="racelab-bench-") as tmp:
        run = Path(tmp) / "run"
        for i in range(args.experiments):
            kind = kinds[i % 3]
            make_experiment(run / "cells" / f"cell-{i:02d}", kind=kind, ops=args.ops,
                            mode=MODES[i % len(MODES)], store=STORES[(i // len(MODES)) % 8],
                            pids=(4101, 4102) if kind == "per-process" else (4101,),
                            bursts=4 if i % 5 == 0 else 0)
        start = time.perf_counter()
        written = render_run(run, formats=("html",))
        first = time.perf_counter() - start
        start = time.perf_counter()
        render_run(run, formats=("html",))
        again = time.perf_counter() - start
        size = written["html"].stat().st_size / 1e6
    print(f"{args.experiments} experiments x {args.ops} ops: "
          f"render with checks {first:.2f} s, re-render {again:.2f} s, report {size:.1f} MB "
          f"(target under 10 s and 10 MB)")


if __name__ == "__main__":
    main()
