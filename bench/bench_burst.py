"""Spread of burst rounds: how close together K requests leave the client and reach the server.

Usage: python bench/bench_burst.py [--size 50] [--rounds 40] [--processes 1] [--mode ...]

Client spread: first to last request of a round fully sent (sendall returned),
over every Locust process. Server spread: first to last arrival (the app's
monotonic clock on arrival in the view). Target: client median under 2 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reports.analysis.results import analyse_experiment
from scenarios.run.experiment import ExperimentSpec, run_experiment


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50, help="Requests per burst (users).")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--mode", nargs="+", default=["gunicorn-gthread", "gevent"])
    args = parser.parse_args()
    print(f"bursts of {args.size} requests, {args.rounds} rounds, "
          f"{args.processes} Locust process(es)")
    print(f"{'server':<18} {'client p50':>11} {'client p95':>11} {'server p50':>11} "
          f"{'server p95':>11}")
    for mode in args.mode:
        spec = ExperimentSpec(store="lock", mode=mode, workers=2, threads=32, burst=args.size,
                              requests=args.size * args.rounds, processes=args.processes)
        run_dir = Path(tempfile.mkdtemp(prefix="racelab-burst-"))
        run_experiment(spec, run_dir)
        spreads = analyse_experiment(run_dir)["burst_spreads"]
        full = [b for b in spreads if b["requests"] == args.size]
        client = [b["client_ns"] / 1e6 for b in full]
        server = [b["server_ns"] / 1e6 for b in full if b["server_ns"] is not None]
        if not client:
            print(f"{mode:<18} no complete round")
            continue
        print(f"{mode:<18} {statistics.median(client):>8.2f} ms {pct(client, 0.95):>8.2f} ms "
              f"{statistics.median(server):>8.2f} ms {pct(server, 0.95):>8.2f} ms")
    print("Server spread is the arrival spread inside the app: a GIL-bound server with a few "
          "threads or workers serialises arrivals, so it is wider than what the client sent.")


if __name__ == "__main__":
    main()
