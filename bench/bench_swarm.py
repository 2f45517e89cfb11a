"""Requests/s of racelab's recording swarm, beside wrk and beside the same swarm unrecorded.

Usage: python bench/bench_swarm.py [--duration 8] [--users 32] [--processes 1 2] [--pairs 6]
       python bench/bench_swarm.py --against REF [--pairs 6]   this code beside REF's swarm
       python bench/bench_swarm.py --framing                    response framing alone

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

``--against REF`` checks out REF (a commit, e.g. the one before a change to the
swarm) in a temporary git worktree and runs, ``--pairs`` times, this tree's
recording swarm and REF's at the same time against one server, half the users
each, each in its own orchestrator process (so that each one's CPU is its own).
It prints both swarms' requests/s and CPU µs per request, and their ratios.

``--framing`` times the framing of one typical demo answer (gunicorn's headers,
the demo's JSON) by ``loadtests.framing.ResponseFramer`` (llhttp through
httptools, with what racelab adds), by bare httptools, and by the C parser that
geventhttpclient brings, in µs per response.
"""

from __future__ import annotations

import argparse
import json
import os
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

from demo_server.control.modes import LaunchSpec
from demo_server.control.supervisor import Supervisor
from demo_server.served.config import ServerConfig
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


#: one recording swarm in its own orchestrator process (run with PYTHONPATH = a racelab tree)
SWARM_SCRIPT = """
import json, resource, sys
from pathlib import Path
from loadtests.runner import SwarmSpec, run_swarm
url, users, duration, run_dir, reconnect = sys.argv[1:6]
users, duration, reconnect, run_dir = int(users), float(duration), int(reconnect), Path(run_dir)
run_swarm(SwarmSpec(urls=(url,), users=users, duration=duration, reconnect=reconnect,
                    spawn_rate=max(1000.0, users * 10.0)), run_dir)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime}))
"""


def stats_rate(run_dir: Path) -> tuple[int, float]:
    """Requests and requests/s (first to last request) from a swarm's Locust stats."""
    text = (run_dir / "locust" / "stats.json").read_text()
    entries = [e for e in json.loads(text[text.rfind("[\n"):]) if e.get("num_requests")]
    requests = sum(e["num_requests"] for e in entries)
    start = min(e["start_time"] for e in entries)
    last = max(e["last_request_timestamp"] for e in entries)
    return requests, requests / max(last - start, 1e-9)


def against(url: str, users: int, duration: float, ref: str, pairs: int, work: Path) -> None:
    """This tree's recording swarm beside REF's, ``pairs`` times (see the module docstring)."""
    root = Path(__file__).resolve().parent.parent
    other = work / "ref"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(other), ref],
                   check=True, capture_output=True)
    try:
        found: dict[str, list[tuple[float, float]]] = {"this": [], "ref": []}

        def one(name: str, tree: Path, run_dir: Path) -> None:
            env = {**os.environ, "PYTHONPATH": str(tree)}
            out = subprocess.run(
                [sys.executable, "-c", SWARM_SCRIPT, url, str(max(1, users // 2)),
                 str(duration), str(run_dir), str(PAIR_RECONNECT)],
                env=env, cwd=str(tree), capture_output=True, text=True, check=True).stdout
            requests, rate = stats_rate(run_dir)
            cpu = json.loads(out.strip().splitlines()[-1])["cpu_s"]
            found[name].append((rate, 1e6 * cpu / max(requests, 1)))

        for pair in range(pairs):
            threads = [threading.Thread(target=one, args=(name, tree, work / f"{name}-{pair}"))
                       for name, tree in (("this", root), ("ref", other))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(other)],
                       check=False, capture_output=True)
    print(f"side by side with {ref}, {users // 2}+{users // 2} users, {duration:g} s, "
          f"{pairs} pairs (medians)")
    for name in ("this", "ref"):
        rates = [r for r, _ in found[name]]
        cpus = [c for _, c in found[name]]
        print(f"{name:<6} {statistics.median(rates):>9.0f} req/s   "
              f"{statistics.median(cpus):>6.1f} µs CPU per request   "
              f"runs: {', '.join(f'{r:.0f}' for r in rates)}")
    rate_ratios = [a[0] / b[0] for a, b in zip(found["this"], found["ref"], strict=True)]
    cpu_ratios = [a[1] / b[1] for a, b in zip(found["this"], found["ref"], strict=True)]
    print(f"this / ref: req/s {statistics.median(rate_ratios):.3f} "
          f"({', '.join(f'{r:.3f}' for r in rate_ratios)}); CPU per request "
          f"{statistics.median(cpu_ratios):.3f} ({', '.join(f'{r:.3f}' for r in cpu_ratios)})")


def framing_figures(count: int = 100_000) -> None:
    """µs per response of three ways to frame the demo's answer (see the module docstring)."""
    import timeit

    import httptools

    from loadtests.framing import ResponseFramer

    body = json.dumps({
        "value": 123456, "pid": 12345, "tid": 140234234234, "arrival_ns": 1234567890123456,
        "arrival_wall": 1764580000.123, "store": "global", "window": "none",
        "mode": "gunicorn-gthread", "scenario": "counter", "instance": 0, "python": "3.11.7",
        "implementation": "CPython", "gil": True, "departure_ns": 1234567890123999,
        "departure_wall": 1764580000.124}).encode()
    answer = (b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Tue, 01 Dec 2026 09:30:00 GMT\r\n"
              b"Connection: keep-alive\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body)) + body
    framer = ResponseFramer()

    def racelab() -> None:
        framer.expect("GET")
        framer.feed(answer)

    class Bare:
        def __init__(self) -> None:
            self.parts: list[bytes] = []
            self.headers: list[tuple[bytes, bytes]] = []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_body(self, data: bytes) -> None:
            self.parts.append(data)

    bare = Bare()
    parser = httptools.HttpResponseParser(bare)

    def llhttp() -> None:
        bare.parts, bare.headers = [], []
        parser.feed_data(answer)

    ways = [("loadtests.framing (llhttp + racelab)", racelab), ("bare httptools", llhttp)]
    try:
        from geventhttpclient._parser import HTTPResponseParser

        class Gevent(HTTPResponseParser):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.parts: list[bytes] = []

            def _on_message_begin(self) -> None: ...
            def _on_status(self, _status: bytes) -> None: ...
            def _on_header_field(self, _name: bytes) -> None: ...
            def _on_header_value(self, _value: bytes) -> None: ...
            def _on_headers_complete(self) -> bool:
                return False

            def _on_body(self, data: bytes) -> None:
                self.parts.append(data)

            def _on_message_complete(self) -> None: ...

        gevent_parser = Gevent()

        def ghc() -> None:
            gevent_parser.parts = []
            gevent_parser.feed(answer)

        ways.append(("geventhttpclient's C parser", ghc))
    except ImportError:
        pass
    print(f"framing one {len(answer)}-byte demo answer, best of 5 x {count:,}")
    for name, way in ways:
        best = min(timeit.repeat(way, number=count, repeat=5))
        print(f"{name:<38} {1e6 * best / count:>6.2f} µs per response")


def swarm_rps(url: str, users: int, duration: float, processes: int, record: bool,
              run_dir: Path, reconnect: int = 0) -> tuple[float, float]:
    """Requests/s of one swarm, and its processes' CPU µs per request (start-up included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run_swarm(SwarmSpec(urls=(url,), users=users, duration=duration, processes=processes,
                        record=record, spawn_rate=max(1000.0, users * 10.0),
                        reconnect=reconnect), run_dir)
    requests, rate = stats_rate(run_dir)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rate, 1e6 * cpu / max(requests, 1)


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
    parser.add_argument("--against", metavar="REF", default="",
                        help="Run this swarm beside REF's (a git commit), side by side.")
    parser.add_argument("--framing", action="store_true", help="Time response framing only.")
    args = parser.parse_args()
    if args.framing:
        framing_figures()
        return
    work = Path(tempfile.mkdtemp(prefix="racelab-bench-"))
    launch = LaunchSpec(mode="gunicorn-gthread", workers=args.workers, threads=args.threads)
    with Supervisor(ServerConfig(store="global"), launch, work / "server") as sup:
        # A short warm-up, so that every worker has answered and caches are warm.
        wrk_rps(sup.url, 8, 2)
        if args.against:
            against(sup.url, args.users[0], args.duration, args.against, args.pairs or 3, work)
            shutil.rmtree(work, ignore_errors=True)
            return
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
