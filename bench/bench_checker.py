"""Benchmark: the numpy counter checker against a plain-Python one, on a million operations.

Generates a correct counter history of N operations (64 clients, two server
processes sharing one counter, 1% failed and 0.01% unknown outcomes), injects
anomalies (duplicates, skipped numbers, real-time order violations, a final
value below the ok count), writes it as history.csv, then in this one process:

- times ``read_history`` on the CSV;
- times the numpy checker (``check_counter``) and the plain-Python checker
  (``reference_checker``: dicts, sets, one sort per process) on the same
  history, best of ``--repeat`` runs each;
- measures each checker's peak memory with ``tracemalloc`` (peak traced bytes
  above the start, numpy buffers included) in a separate run, since tracing
  slows Python code down; the process's peak RSS (``ru_maxrss``) is printed too.

Then, in the same run, it times what a user waits for: ``racelab check
history.csv`` end to end (a fresh process: interpreter start, imports, reading,
checking, printing), beside a bare ``csv.reader`` pass over the same file in
this process (a loop that only splits the rows, nothing else), alternating the
two ``--repeat`` times and keeping the best of each; it prints their ratio and
the check's peak RSS (``wait4``'s ``ru_maxrss`` of that process, launched from a small one).

Targets for a million operations: the checker under 1 s and 500 MB; the end to
end check at most 1.0x the bare pass. Ten million: the end to end check under
15 s and 2 GB.

    .venv/bin/python bench/bench_checker.py              # 1,000,000 operations
    .venv/bin/python bench/bench_checker.py --ten-million
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.history import COLUMNS
from reports.history.columns import OUTCOMES
from reports.history.table import OK, read_history
from scenarios.counter import check_counter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the oracles
from reference_checker import ops_of, reference_counts
from simulate import Simulated, simulate_counter

COMPARED = ("duplicate_values", "duplicate_extra_returns", "skipped_values",
            "skipped_unexplained", "real_time_violations", "lost_updates")


def make_history(n: int, seed: int = 1) -> tuple[Simulated, dict[str, int]]:
    """A correct history with anomalies injected; returns it and what was injected."""
    sim = simulate_counter(n, clients=64, pids=2, fail_rate=0.01, info_rate=0.0001, seed=seed)
    arrays = sim.arrays
    rng = np.random.default_rng(seed)
    ok = np.flatnonzero(arrays["outcome"] == OK)
    top = ok[np.argmax(arrays["value"][ok])]
    ok = ok[ok != top]
    picked = rng.choice(ok, size=300, replace=False)
    duplicated, removed, moved = picked[:100], picked[100:200], picked[200:250]
    copies = {k: v[duplicated] for k, v in arrays.items()}
    copies["op_id"] = n + np.arange(duplicated.size)
    end = int(arrays["complete_ns"].max())
    arrays["invoke_ns"][moved] = end + 1_000 + 2_000 * np.arange(moved.size)
    arrays["complete_ns"][moved] = end + 2_000 + 2_000 * np.arange(moved.size)
    keep = np.setdiff1d(np.arange(n), removed)
    arrays = {k: np.concatenate([v[keep], copies[k]]) for k, v in arrays.items()}
    final = sim.final
    for state in final["states"]:
        state["value"] -= 1_000
    injected = {"duplicates": duplicated.size, "removed": removed.size, "moved": moved.size,
                "final_lowered_by": 1_000}
    return Simulated(arrays, final), injected


def write_csv(sim: Simulated, path: Path, chunk: int = 200_000) -> None:
    """Write the history in the loadtests.history format, chunk by chunk."""
    a = sim.arrays
    n = a["op_id"].shape[0]

    def masked(values: np.ndarray, known: np.ndarray) -> list[str]:
        return [str(v) if k else "" for v, k in zip(values.tolist(), known.tolist(), strict=True)]

    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(COLUMNS) + "\n")
        for lo in range(0, n, chunk):
            s = slice(lo, lo + chunk)
            cols = [
                map(str, a["op_id"][s].tolist()),
                (f"w0-u{c}" for c in a["client"][s].tolist()),
                ("incr" for _ in range(min(chunk, n - lo))),
                (OUTCOMES[o] for o in a["outcome"][s].tolist()),
                masked(a["value"][s], a["value_known"][s]),
                map(str, a["invoke_ns"][s].tolist()),
                map(str, a["complete_ns"][s].tolist()),
                masked(a["server_pid"][s], a["server_pid_known"][s]),
                masked(a["server_tid"][s], a["server_tid_known"][s]),
                masked(a["arrival_ns"][s], a["value_known"][s]),
                masked(a["departure_ns"][s], a["value_known"][s]),
                ("http://127.0.0.1:8000" for _ in range(min(chunk, n - lo))),
                ("" for _ in range(min(chunk, n - lo))),
                ("" if o == OK else "timed out" for o in a["outcome"][s].tolist()),
                ("200" if o == OK else "" for o in a["outcome"][s].tolist()),
            ]
            out.write("".join(",".join(fields) + "\n" for fields in zip(*cols, strict=True)))


def best_time(func: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_bytes(func: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        func()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bare_csv_pass(path: Path) -> float:
    """Seconds for a csv.reader loop over the file that does nothing with the rows."""
    gc.collect()
    start = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as handle:
        for _ in csv.reader(handle):
            pass
    return time.perf_counter() - start


# Launched from a fresh, small interpreter: a child forked straight from this
# process would start with this process's resident pages counted in its peak RSS
# (Linux counts a forked copy's pages, and ``ru_maxrss`` keeps that mark through exec).
_LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps([time.perf_counter() - start, usage.ru_maxrss / 1024,
                  os.waitstatus_to_exitcode(status)]))
"""


def end_to_end_check(path: Path, final: Path) -> tuple[float, float, int]:
    """``racelab check`` in a fresh process: seconds, peak RSS in MB, exit code."""
    racelab = Path(sys.executable).with_name("racelab")
    command = [str(racelab)] if racelab.exists() else [sys.executable, "-m", "cli"]
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, *command, "check", str(path),
                          "--final-file", str(final)], capture_output=True, text=True,
                         check=True).stdout
    elapsed, peak, code = json.loads(out)
    return float(elapsed), float(peak), int(code)


def bench_end_to_end(path: Path, final: dict[str, Any], repeat: int) -> dict[str, float]:
    """Best of ``repeat`` alternating runs of the bare pass and the end to end check."""
    final_path = path.with_suffix(".final.json")
    final_path.write_text(json.dumps(final), encoding="utf-8")
    bare, check, rss, code = float("inf"), float("inf"), 0.0, -1
    for _ in range(repeat):
        bare = min(bare, bare_csv_pass(path))
        elapsed, peak, code = end_to_end_check(path, final_path)
        check, rss = min(check, elapsed), max(rss, peak)
    print(f"bare csv.reader pass:        {bare:.2f} s")
    print(f"racelab check, end to end:   {check:.2f} s, peak RSS {rss:.0f} MB, exit {code}")
    print(f"ratio check / bare pass:     {check / bare:.2f}x")
    return {"bare_s": bare, "check_s": check, "check_rss_mb": rss}


def bench(n: int, repeat: int, python: bool, workdir: Path) -> dict[str, Any]:
    print(f"\n== {n:,} operations ==")
    start = time.perf_counter()
    sim, injected = make_history(n)
    print(f"generated in {time.perf_counter() - start:.1f} s; injected: {injected}")
    path = workdir / f"history-{n}.csv"
    start = time.perf_counter()
    write_csv(sim, path)
    print(f"wrote {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - start:.1f} s")

    del sim.arrays
    gc.collect()
    end_to_end = bench_end_to_end(path, sim.final, repeat)
    read_s, table = best_time(lambda: read_history(path), 1)
    read_peak = peak_bytes(lambda: read_history(path)) if n <= 1_000_000 else None
    print(f"read_history: {read_s:.2f} s"
          + (f", peak {read_peak / 1e6:.0f} MB traced" if read_peak is not None else ""))

    numpy_s, verdict = best_time(lambda: check_counter(table, sim.final), repeat)
    numpy_peak = peak_bytes(lambda: check_counter(table, sim.final))
    print(f"numpy checker:  {numpy_s:.3f} s, peak {numpy_peak / 1e6:.0f} MB traced "
          f"-> {verdict.valid}: {verdict.reason}")
    result: dict[str, Any] = {"n": n, "read_s": read_s, "numpy_s": numpy_s,
                              "numpy_peak": numpy_peak, **end_to_end}
    table_mb = sum(getattr(table, f).nbytes for f in table.__dataclass_fields__
                   if isinstance(getattr(table, f), np.ndarray)) / 1e6
    print(f"  (its input, the HistoryTable: {table_mb:.0f} MB of arrays, not counted)")
    if python:
        gc.collect()
        tracemalloc.start()
        ops = ops_of(table)
        ops_mb = tracemalloc.get_traced_memory()[0] / 1e6
        tracemalloc.stop()
        python_s, counts = best_time(lambda: reference_counts(ops, sim.final), 1)
        python_peak = peak_bytes(lambda: reference_counts(ops, sim.final))
        del ops
        print(f"python checker: {python_s:.3f} s, peak {python_peak / 1e6:.0f} MB traced")
        print(f"  (its input, a list of tuples: {ops_mb:.0f} MB, not counted)")
        print(f"ratio python/numpy: time {python_s / numpy_s:.1f}x, "
              f"memory {python_peak / max(numpy_peak, 1):.1f}x")
        same = {k: counts[k] for k in COMPARED} == {k: verdict.counts[k] for k in COMPARED}
        print(f"same counts: {same} {({k: verdict.counts[k] for k in COMPARED})}")
        result.update(python_s=python_s, python_peak=python_peak)
    print(f"process peak RSS so far: {max_rss_mb():.0f} MB")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ten-million", action="store_true",
                        help="Also run 10,000,000 operations (about 1.3 GB of CSV).")
    parser.add_argument("--repeat", type=int, default=3,
                        help="Timed runs of the numpy checker and of the end to end check.")
    parser.add_argument("--no-python", action="store_true",
                        help="Skip the plain-Python checker at ten million.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="racelab-bench-") as tmp:
        results = [bench(1_000_000, args.repeat, True, Path(tmp))]
        if args.ten_million:
            results.append(bench(10_000_000, min(args.repeat, 2), not args.no_python, Path(tmp)))
    if len(results) == 2:
        small, big = results
        print("\n== growth from 1M to 10M ==")
        for key in ("read_s", "numpy_s", "numpy_peak", "python_s", "python_peak", "check_s",
                    "check_rss_mb"):
            if key in small and key in big:
                print(f"{key}: x{big[key] / small[key]:.1f}")


if __name__ == "__main__":
    main()
