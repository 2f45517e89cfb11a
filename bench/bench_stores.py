"""The cost of safety: throughput of every safe store relative to ``global``, checked for anomalies.

Runs each safe store (sqlite, manager, redis, postgres, memcached, lock) in
each serving mode (gunicorn-sync, gunicorn-gthread, gevent), plus ``global`` in
the same mode as the baseline, and prints each store's requests per second
as a fraction of ``global``'s. Every value a safe store returned is recorded
and checked: no value may repeat, and the store's final value must cover all of
them. ``lock`` is thread-safe but not process-safe, so it runs (with its own
``global`` baseline) on one worker process; the other stores run on two.

Load generator: ``wrk`` with a Lua script (written next to the results) whose
threads append every response body (the counter, from ``GET /``) to a file of
their own until they have their share of the requests. wrk is a C client: it
keeps the two cores for the server far better than a Python client would
(a Python client tops out at a few thousand requests per second, below
gunicorn's own rate, and would measure itself). wrk's main thread sleeps for
its whole ``-d`` duration, so this script watches the files for each
thread's end marker, times the run itself and stops wrk then (responses past
a thread's share are not recorded; the final value covers them).

Usage::

    python bench/bench_stores.py --total 20000          # a quick try
    python bench/bench_stores.py                        # 1,000,000 requests
    python bench/bench_stores.py --start-services       # private Redis/PostgreSQL/memcached

Services: Redis, PostgreSQL and memcached at the usual addresses (or
``--redis-url`` / ``--postgres-dsn`` / ``--memcached``); ``--start-services``
starts private ones where none answer; stores still unreachable are skipped
with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo_server.basics.errors import RacelabError  # noqa: E402
from demo_server.control.modes import LaunchSpec  # noqa: E402
from demo_server.control.services import PrivateServices, services_needed  # noqa: E402
from demo_server.control.supervisor import Supervisor  # noqa: E402
from demo_server.served.config import ServerConfig  # noqa: E402
from scenarios.counter.stores import store_class  # noqa: E402

__all__ = ["main"]

SAFE_STORES = ("sqlite", "manager", "redis", "postgres", "memcached", "lock")
MODES = ("gunicorn-sync", "gunicorn-gthread", "gevent")
END = "END"

LUA = r"""
-- Each wrk thread writes its first `quota` response bodies to its own file, then
-- an END line. It keeps sending (unrecorded) until the driver stops wrk:
-- wrk.thread:stop() would leave the thread's open connections holding
-- gunicorn sync workers, which wait on them for a request that never comes.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  quota = tonumber(args[2])
  out = io.open(args[1] .. "/values-" .. id .. ".txt", "w")
  seen = 0
end
function response(status, headers, body)
  if seen >= quota then return end
  if status == 200 then out:write(body, "\n") else out:write("E", status, "\n") end
  seen = seen + 1
  if seen >= quota then
    out:write("END\n")
    out:flush()
  end
end
"""


@dataclasses.dataclass
class Addresses:
    redis_url: str = ServerConfig.redis_url
    postgres_dsn: str = ServerConfig.postgres_dsn
    memcached: str = ServerConfig.memcached
    start_services: bool = False


@dataclasses.dataclass
class Cell:
    store: str
    mode: str
    workers: int
    requests: int
    seconds: float = 0.0
    recorded: int = 0
    errors: int = 0
    duplicates: int = 0
    final: int | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.recorded / self.seconds if self.seconds else 0.0

    @property
    def anomalies(self) -> int:
        short = 0 if self.final is None or self.final >= self.recorded else 1
        return self.duplicates + short


def run_wrk(url: str, requests: int, threads: int, connections: int, out: Path,
            script: Path, limit_s: float) -> float:
    """Send ``requests`` GET / with wrk; return the seconds until every thread finished."""
    quota = max(1, -(-requests // threads))  # round up: at least `requests` in all
    for old in out.glob("values-*.txt"):
        old.unlink()
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(limit_s)}s", "--timeout", "10s",
            "-s", str(script), url + "/", "--", str(out), str(quota)]
    start = time.monotonic()
    wrk = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        while time.monotonic() - start < limit_s + 5:
            files = list(out.glob("values-*.txt"))
            if len(files) == threads and all(_ended(f) for f in files):
                return time.monotonic() - start
            if wrk.poll() is not None:
                break
            time.sleep(0.005)
        return time.monotonic() - start
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(wrk.pid, signal.SIGTERM)
        wrk.wait(timeout=10)


def _ended(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4))
            return handle.read().endswith(b"END\n")
    except OSError:
        return False


def read_values(out: Path) -> tuple[list[int], int]:
    values: list[int] = []
    errors = 0
    for path in out.glob("values-*.txt"):
        for line in path.read_text().splitlines():
            if line == END or not line:
                continue
            if line.startswith("E"):
                errors += 1
            else:
                values.append(int(line))
    return values, errors


def run_cell(cell: Cell, addresses: Addresses, work: Path, script: Path,
             threads: int, connections: int) -> None:
    config = ServerConfig(store=cell.store, redis_url=addresses.redis_url,
                          postgres_dsn=addresses.postgres_dsn, memcached=addresses.memcached)
    spec = LaunchSpec(mode=cell.mode, workers=cell.workers, threads=8)
    run_dir = work / f"{cell.store}-{cell.mode}-{cell.workers}"
    out = run_dir / "values"
    out.mkdir(parents=True, exist_ok=True)
    with Supervisor(config, spec, run_dir) as sup:
        limit = max(60.0, cell.requests / 200)
        cell.seconds = run_wrk(sup.url, cell.requests, threads, connections, out, script, limit)
        values, cell.errors = read_values(out)
        cell.recorded = len(values)
        cell.duplicates = len(values) - len(set(values))
        if store_class(cell.store).shared or cell.workers == 1:
            states = sup.read_state(timeout=5)
            cell.final = max((int(s["value"]) for s in states), default=None)


def plan(total: int, stores: list[str], modes: list[str]) -> list[Cell]:
    """Split ``total`` requests evenly over the safe cells; add a ``global`` baseline per mode."""
    safe = [(s, m) for m in modes for s in stores]
    per_cell = max(1, -(-total // max(1, len(safe))))
    cells: list[Cell] = []
    for mode in modes:
        workers_needed = sorted({1 if s == "lock" else 2 for s in stores})
        for workers in workers_needed:
            cells.append(Cell("global", mode, workers, per_cell))
        for store in stores:
            cells.append(Cell(store, mode, 1 if store == "lock" else 2, per_cell))
    return cells


def report(cells: list[Cell]) -> int:
    baseline = {(c.mode, c.workers): c.rate for c in cells if c.store == "global" and c.rate}
    print(f"{'mode':<18}{'store':<11}{'workers':>7}{'requests':>10}{'req/s':>9}"
          f"{'vs global':>10}{'dups':>7}{'errors':>7}  verdict")
    bad = 0
    total_safe = 0
    for c in cells:
        base = baseline.get((c.mode, c.workers))
        ratio = f"{c.rate / base:.2f}x" if base and c.rate else "-"
        if c.note:
            verdict = f"skipped: {c.note}"
        elif c.store == "global":
            verdict = "baseline" + (f" ({c.duplicates} duplicates)" if c.duplicates else "")
        else:
            total_safe += c.recorded
            verdict = "safe" if c.anomalies == 0 and c.errors == 0 else "ANOMALY"
            bad += verdict != "safe"
        print(f"{c.mode:<18}{c.store:<11}{c.workers:>7}{c.recorded:>10,}{c.rate:>9,.0f}"
              f"{ratio:>10}{c.duplicates:>7}{c.errors:>7}  {verdict}")
    print(f"requests answered by safe stores: {total_safe:,}; cells with an anomaly: {bad}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=1_000_000,
                        help="requests across all safe-store cells (default 1,000,000)")
    parser.add_argument("--stores", default=",".join(SAFE_STORES))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--redis-url", default=os.environ.get("RACELAB_REDIS_URL",
                                                              Addresses.redis_url))
    parser.add_argument("--postgres-dsn", default=os.environ.get("RACELAB_POSTGRES_DSN",
                                                                 Addresses.postgres_dsn))
    parser.add_argument("--memcached", default=os.environ.get("RACELAB_MEMCACHED",
                                                              Addresses.memcached))
    parser.add_argument("--start-services", action="store_true",
                        help="start private Redis/PostgreSQL/memcached where none answer")
    parser.add_argument("--json", type=Path, help="also write the cells as JSON here")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    stores = [s for s in args.stores.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    addresses = Addresses(args.redis_url, args.postgres_dsn, args.memcached, args.start_services)
    services = PrivateServices(addresses, services_needed(stores))
    work = Path(tempfile.mkdtemp(prefix="racelab-bench-"))
    script = work / "record.lua"
    script.write_text(LUA)
    cells = plan(args.total, stores, modes)
    started = time.monotonic()
    try:
        if args.start_services:
            addresses = services.start()
        unavailable: dict[str, str] = {}
        for store in set(stores):
            probe = ServerConfig(store=store, redis_url=addresses.redis_url,
                                 postgres_dsn=addresses.postgres_dsn,
                                 memcached=addresses.memcached, namespace="racelab_bench_probe")
            try:
                store_class(store).prepare(probe)
                store_class(store).cleanup(probe)
            except RacelabError as exc:
                unavailable[store] = str(exc)
        for cell in cells:
            if cell.store in unavailable:
                cell.note = unavailable[cell.store]
                continue
            print(f"... {cell.mode} {cell.store} ({cell.requests:,} requests)", file=sys.stderr)
            try:
                run_cell(cell, addresses, work, script, args.threads, args.connections)
            except RacelabError as exc:
                cell.note = str(exc)
    finally:
        services.stop()
        shutil.rmtree(work, ignore_errors=True)
    status = report(cells)
    print(f"wall time {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(c) for c in cells], indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
