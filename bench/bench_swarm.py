"""Requests/s of racelab's recording swarm, beside wrk and beside the same swarm unrecorded.

Usage: python bench/bench_swarm.py [--duration 8] [--users 32] [--processes 1 2] [--pairs 6]

Starts one gunicorn-gthread server (2 workers x 8 threads, global store), then
measures on the same server:

1. One after the other, interleaved, ``--repeat`` times: wrk -t1 -c<users>
   against /incr (the ceiling of this machine and server), the Locust swarm
   without recording (RACELAB_SWARM_RECORD=0: it still counts every request in
   Locust's statistics) and the swarm recording every operation. Each keeps its
   connections alive, as wrk does. Target: the recording swarm reaches 80 % of
   wrk (``vs wrk``).
2. Side by side, ``--pairs`` times: a recording swarm and an unrecorded swarm
   at the same time, half the users each, each user reconnecting every 20 calls
   so that both spread alike over the server's workers. Recording's cost is
   ``1 - recorded / unrecorded`` requests/s. Target: at most 3 %.

Why the second measure: on a 2-core machine the load generator and the server
share the cores, and two runs of the same swarm one after the other differ by
up to 5-8 % (how the server's workers happened to take the connections, what
else the kernel scheduled), more than the effect measured. Two swarms running
at the same time see the same conditions; their ratio moves by about 2 %.
The sequential ``rec cost`` column is printed too, for reference.

Swarm throughput is Locust's request count over the time between its first and
last request; every user starts at once (wrk opens its connections at once too).
The swarm's CPU time per request is printed as well, start-up and the writing of
the history included: recording holds each operation in memory while the load
runs and writes the history when it stops, so that is where its cost shows.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo_server.config import ServerConfig
from demo_server.modes import LaunchSpec
from demo_server.supervisor import Supervisor
from loadtests.runner import SwarmSpec, run_swarm

RATIO_TARGET = 0.80  # swarm / wrk
RECORD_COST_TARGET = 0.03  # 1 - recording / not recording
PAIR_RECONNECT = 20  # calls per connection in the side-by-side runs


def wrk_rps(url: str, connections: int, duration: float) -> float:
    wrk = shutil.which("wrk") or "/usr/bin/wrk"
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{int(duration)}s", f"{url}/incr"],
        capture_output=True, text=True, check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def swarm_rps(url: str, users: int, duration: float, processes: int, record: bool,
              run_dir: Path, reconnect: int = 0) -> tuple[float, float]:
    """Requests/s of one swarm, and its processes' CPU µs per request (start-up included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run_swarm(SwarmSpec(urls=(url,), users=users, duration=duration, processes=processes,
                        record=record, spawn_rate=max(1000.0, users * 10.0),
                        reconnect=reconnect), run_dir)
    text = (run_dir / "locust" / "stats.json").read_text()
    entries = [e for e in json.loads(text[text.rfind("[\n"):]) if e.get("num_requests")]
    requests = sum(e["num_requests"] for e in entries)
    start = min(e["start_time"] for e in entries)
    last = max(e["last_request_timestamp"] for e in entries)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return requests / max(last - start, 1e-9), 1e6 * cpu / max(requests, 1)


def side_by_side(url: str, users: int, duration: float, run_dir: Path) -> tuple[float, float]:
    """Requests/s of a recording and an unrecorded swarm run at the same time."""
    found: dict[bool, float] = {}

    def one(record: bool) -> None:
        found[record] = swarm_rps(url, max(1, users // 2), duration, 1, record,
                                  run_dir / ("rec" if record else "plain"), PAIR_RECONNECT)[0]

    threads = [threading.Thread(target=one, args=(record,)) for record in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found[True], found[False]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--users", type=int, nargs="+", default=[32])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn-gthread workers.")
    parser.add_argument("--threads", type=int, default=8, help="Threads per worker.")
    parser.add_argument("--reconnect", type=int, default=0,
                        help="Swarm users open a new connection after this many calls (0: never).")
    parser.add_argument("--repeat", type=int, default=3,
                        help="Interleaved repetitions; medians are printed.")
    parser.add_argument("--pairs", type=int, default=6,
                        help="Side-by-side runs of a recording and an unrecorded swarm.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="racelab-bench-"))
    launch = LaunchSpec(mode="gunicorn-gthread", workers=args.workers, threads=args.threads)
    with Supervisor(ServerConfig(store="global"), launch, work / "server") as sup:
        # A short warm-up, so that every worker has answered and caches are warm.
        wrk_rps(sup.url, 8, 2)
        print(f"server: gunicorn-gthread {args.workers} workers x {args.threads} threads; "
              f"{args.duration:g} s per run; "
              f"medians of {args.repeat} interleaved runs")
        print(f"{'load':<34} {'req/s':>9} {'vs wrk':>8} {'rec cost':>9}  targets "
              f"(vs wrk >= {RATIO_TARGET:.0%}, rec cost <= {RECORD_COST_TARGET:.0%})")
        for users in args.users:
            runs: dict[tuple[int, bool], list[float]] = {}
            cpus: dict[tuple[int, bool], list[float]] = {}
            walls: list[float] = []
            for attempt in range(args.repeat):  # interleaved: drifts hit every variant alike
                walls.append(wrk_rps(sup.url, users, args.duration))
                for processes in args.processes:
                    for record in (attempt % 2 == 0, attempt % 2 != 0):
                        rps, cpu = swarm_rps(sup.url, users, args.duration, processes, record,
                                             work / f"run-{users}-{processes}-{record}-{attempt}",
                                             args.reconnect)
                        runs.setdefault((processes, record), []).append(rps)
                        cpus.setdefault((processes, record), []).append(cpu)
            ceiling = statistics.median(walls)
            print(f"{f'wrk -t1 -c{users}':<34} {ceiling:>9.0f} {'100%':>8}")
            print(f"{'':<4}runs: {', '.join(f'{w:.0f}' for w in sorted(walls))}")
            for processes in args.processes:
                recorded = statistics.median(runs[(processes, True)])
                plain = statistics.median(runs[(processes, False)])
                label = f"locust {users} users, {processes} proc"
                print(f"{label + ', no record':<34} {plain:>9.0f} {plain / ceiling:>8.0%} "
                      f"{'':>9}  {_verdict(plain / ceiling >= RATIO_TARGET, 'vs wrk')}")
                cost = 1 - recorded / plain
                print(f"{label + ', recording':<34} {recorded:>9.0f} "
                      f"{recorded / ceiling:>8.0%} {cost:>9.1%}  "
                      f"{_verdict(recorded / ceiling >= RATIO_TARGET, 'vs wrk')} "
                      "(rec cost: see side by side)")
                spread = ", ".join(f"{r:.0f}" for r in sorted(runs[(processes, False)]))
                spread_rec = ", ".join(f"{r:.0f}" for r in sorted(runs[(processes, True)]))
                print(f"{'':<4}runs: no record {spread}; recording {spread_rec}")
                plain_cpu = statistics.median(cpus[(processes, False)])
                rec_cpu = statistics.median(cpus[(processes, True)])
                print(f"{'':<4}swarm CPU per request (start-up and writing included): no record "
                      f"{plain_cpu:.0f} µs, recording {rec_cpu:.0f} µs")
            if args.pairs:
                costs = []
                for pair in range(args.pairs):
                    recorded, plain = side_by_side(sup.url, users, args.duration,
                                                   work / f"pair-{users}-{pair}")
                    costs.append(1 - recorded / plain)
                cost = statistics.median(costs)
                label = f"side by side, {users // 2}+{users // 2} users"
                print(f"{label:<34} {'':>9} {'':>8} {cost:>9.1%}  "
                      f"{_verdict(cost <= RECORD_COST_TARGET, 'rec cost')}")
                print(f"{'':<4}recording cost of each pair: "
                      f"{', '.join(f'{c:.1%}' for c in sorted(costs))}")
    shutil.rmtree(work, ignore_errors=True)


def _verdict(met: bool, what: str) -> str:
    return f"{what} {'met' if met else 'NOT met'}"


if __name__ == "__main__":
    main()
