"""This tree's racelab beside an older commit's: check, report and swarm, through the CLI only.

Usage: .venv/bin/python bench/bench_against.py --against REF [--repeat 5]

Checks REF out (a commit, e.g. the one before a change) in a temporary
``git worktree add --detach`` (removed at the end, also on Ctrl-C) and runs the
same commands in REF's tree and in this one, each in a fresh process started
with that tree as its working directory and ``PYTHONPATH`` (so that tree's code
is imported, with this script's Python): ``python -c 'import sys, cli;
sys.argv[0] = "racelab"; cli.main()' ARGS``, what the ``racelab`` entry point
runs. Only the command line is shared, so the two trees may lay out their
packages differently.

The inputs are made once, by this tree, before anything is timed:

- a counter history of 1,000,000 operations (``bench_checker.make_history``:
  ``simulate_counter`` with 64 clients, two server processes, 1% failed and
  0.01% unknown outcomes, plus injected anomalies), written by
  ``loadtests.history.HistoryWriter`` as history.csv, with its final.json and a
  Parquet copy (``reports.history.table.write_parquet``);
- a run directory from ``racelab demo --preset quick``.

Then, ``--repeat`` times, old and new one after the other (which one goes first
alternates), on the same inputs:

1. ``racelab check history.csv --final-file final.json``, and the same on
   history.parquet;
2. ``racelab report RUN_DIR --reanalyse`` (every experiment checked and
   measured again, results.json, the plots and the HTML report written), each
   time on a fresh copy of what the demo's experiments wrote, without the demo's
   results.json, plots and report (an older racelab refuses a newer results.json
   even with ``--reanalyse``), so neither tree sees the other's output;
3. ``racelab swarm --mode threaded --store lock --requests 20000 --users 16``
   into a fresh run directory: the whole command's wall time, and requests/s
   (Locust's request count over its first to last request, as in bench_swarm.py),
   from runs whose summary.json says ``ok``.

Each command is started by a small launcher process that reports its wall time
and its peak RSS (``wait4``'s ``ru_maxrss``: the largest process of the
command's tree, children that it waited for included); a run that fails (an
exit code other than 0, or 1 for the check's anomalies) is listed under the
table and left out of it. Last,
``bench/bench_swarm.py --against REF --pairs REPEAT`` runs this tree's recording
swarm and REF's at the same time against one server (see that script).

The table gives the medians and their ratio new/old; the column ``better`` says
which way is good. Both trees' source is compiled to bytecode first and the
check runs once in each untimed, so that neither pays for a cold start. On a
shared machine, hold the load lock for the whole run, so that no test suite or
other load runs while it measures:

    flock /tmp/racelab-load.lock .venv/bin/python bench/bench_against.py --against 86d06af
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_checker import make_history  # noqa: E402  (it puts tests/ on sys.path)
from bench_swarm import stats_rate  # noqa: E402

from loadtests.history import HistoryWriter  # noqa: E402
from reports.history.columns import OUTCOMES  # noqa: E402
from reports.history.table import OK, write_parquet  # noqa: E402

OPERATIONS = 1_000_000
SWARM_ARGS = ("--mode", "threaded", "--store", "lock", "--requests", "20000", "--users", "16")
SWARM = "swarm threaded/lock 20k"
REPORT_OUTPUT = ("results.json", "report.html", "plots")  # removed from the report's input

#: what the ``racelab`` console script runs (``racelab = cli:main`` in setup.cfg)
RACELAB = 'import sys, cli; sys.argv[0] = "racelab"; cli.main()'

# A fresh, small process starts each command and waits for it with wait4: a
# child forked straight from this process would count this process's pages in
# its peak RSS. SIGTERM is passed on as SIGINT (racelab's own Ctrl-C path);
# a terminal's Ctrl-C reaches the command itself.
_LAUNCHER = """
import json, os, signal, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGINT))
signal.signal(signal.SIGINT, signal.SIG_IGN)
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps([time.perf_counter() - start, usage.ru_maxrss / 1024,
                  os.waitstatus_to_exitcode(status)]))
"""


@dataclasses.dataclass
class Run:
    """One command's run: wall seconds, peak RSS in MB, exit code, what it printed to stderr."""

    seconds: float
    rss_mb: float
    code: int
    stderr: str


def _env(tree: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("COVERAGE_PROCESS_START", None)
    return env


def _communicate(proc: subprocess.Popen[str], stop: signal.Signals) -> tuple[str, str]:
    """Wait for ``proc``; on Ctrl-C or an error, ask it to stop and wait a while for it."""
    try:
        return proc.communicate()
    except BaseException:
        proc.send_signal(stop)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def racelab(tree: Path, *args: str) -> Run:
    """``racelab ARGS`` with ``tree``'s code, through the launcher."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, sys.executable, "-c", RACELAB, *args],
        cwd=str(tree), env=_env(tree), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    out, err = _communicate(proc, signal.SIGTERM)
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"the launcher failed ({proc.returncode}): {err[-2000:]}")
    seconds, rss, code = json.loads(out.strip().splitlines()[-1])
    return Run(float(seconds), float(rss), int(code), err)


def write_history(path: Path) -> dict[str, Any]:
    """A million-operation counter history written by HistoryWriter; returns its final state."""
    sim, _ = make_history(OPERATIONS)
    a = sim.arrays

    def cell(values: Any, known: Any, index: int) -> Any:
        return values[index] if known[index] else ""

    cols = {k: v.tolist() for k, v in a.items()}
    del sim.arrays, a
    with HistoryWriter(path, flush_every=20_000) as writer:
        for i in range(len(cols["op_id"])):
            ok = cols["outcome"][i] == OK
            writer.add({
                "op_id": cols["op_id"][i], "client": f"w0-u{cols['client'][i]}", "op": "incr",
                "outcome": OUTCOMES[cols["outcome"][i]],
                "value": cell(cols["value"], cols["value_known"], i),
                "invoke_ns": cols["invoke_ns"][i], "complete_ns": cols["complete_ns"][i],
                "server_pid": cell(cols["server_pid"], cols["server_pid_known"], i),
                "server_tid": cell(cols["server_tid"], cols["server_tid_known"], i),
                "server_arrival_ns": cell(cols["arrival_ns"], cols["value_known"], i),
                "server_departure_ns": cell(cols["departure_ns"], cols["value_known"], i),
                "url": "http://127.0.0.1:8000", "error": "" if ok else "timed out",
                "status": 200 if ok else "",
            })
    return sim.final


@dataclasses.dataclass
class Figure:
    """One row of the table: a name, which way is better, and each tree's samples."""

    name: str
    better: str  # "lower" or "higher"
    old: list[float] = dataclasses.field(default_factory=list)
    new: list[float] = dataclasses.field(default_factory=list)


class Bench:
    """The measures, each run in both trees, interleaved."""

    def __init__(self, old: Path, work: Path) -> None:
        self.trees = {"old": old, "new": ROOT}
        self.work = work
        self.figures: dict[str, Figure] = {}
        self.codes: dict[str, dict[str, set[int]]] = {}
        self.failures: list[str] = []

    def add(self, name: str, better: str, side: str, value: float) -> None:
        figure = self.figures.setdefault(name, Figure(name, better))
        getattr(figure, side).append(value)

    def timed(self, label: str, side: str, *args: str, ok: tuple[int, ...] = (0,)) -> Run:
        """Run ``racelab ARGS`` in one tree; its figures count if its exit code is in ``ok``."""
        run = racelab(self.trees[side], *args)
        self.codes.setdefault(label, {"old": set(), "new": set()})[side].add(run.code)
        if run.code in ok:
            self.add(f"{label}: wall s", "lower", side, run.seconds)
            self.add(f"{label}: peak RSS MB", "lower", side, run.rss_mb)
        else:
            tail = "\n    ".join(run.stderr.strip().splitlines()[-8:])
            self.failures.append(f"{label} ({side}) exit {run.code}:\n    {tail}")
        return run

    def check(self, side: str, history: Path, final: Path) -> None:
        self.timed(f"check {history.name}", side, "check", str(history), "--final-file",
                   str(final), ok=(0, 1))  # 1: the anomalies injected were found

    def report(self, side: str, demo: Path, rep: int) -> None:
        copy = self.work / f"report-{side}-{rep}"
        # What the experiments wrote, without the demo's analysis and report: an
        # older racelab refuses a newer results.json even with --reanalyse.
        shutil.copytree(demo, copy, ignore=lambda folder, _: REPORT_OUTPUT
                        if Path(folder) == demo else ())
        try:
            self.timed("report --reanalyse", side, "report", str(copy), "--reanalyse")
        finally:
            shutil.rmtree(copy, ignore_errors=True)

    def swarm(self, side: str, rep: int) -> None:
        out = self.work / f"swarm-{side}-{rep}"
        run = self.timed(SWARM, side, "swarm", *SWARM_ARGS, "--out", str(out))
        try:
            if run.code == 0:
                summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
                if summary["status"] == "ok":
                    self.add(f"{SWARM}: req/s", "higher", side, stats_rate(out)[1])
                else:
                    self.failures.append(f"{SWARM} ({side}): {summary['error']}")
        finally:
            shutil.rmtree(out, ignore_errors=True)


def setup_inputs(work: Path) -> tuple[Path, Path, Path, Path]:
    """history.csv, history.parquet, final.json and a quick demo's run directory."""
    start = time.perf_counter()
    history = work / "history.csv"
    final = write_history(history)
    final_path = work / "final.json"
    final_path.write_text(json.dumps(final), encoding="utf-8")
    parquet = write_parquet(history, work / "history.parquet")
    print(f"history: {OPERATIONS:,} operations, {history.stat().st_size / 1e6:.0f} MB CSV, "
          f"{parquet.stat().st_size / 1e6:.0f} MB Parquet, in {time.perf_counter() - start:.0f} s",
          flush=True)
    demo = work / "demo"
    run = racelab(ROOT, "demo", "--preset", "quick", "--out", str(demo))
    if run.code != 0:
        raise RuntimeError(f"racelab demo --preset quick failed ({run.code}): "
                           f"{run.stderr[-2000:]}")
    print(f"demo --preset quick (this tree): {run.seconds:.0f} s", flush=True)
    return history, parquet, final_path, demo


def bench_swarm_against(ref: str, pairs: int, bench: Bench) -> str:
    """``bench_swarm.py --against REF``; its figures go into the table, its text is returned."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bench_swarm.py"),
                             "--against", ref, "--pairs", str(pairs)],
                            cwd=str(ROOT), env=_env(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = _communicate(proc, signal.SIGINT)
    if proc.returncode != 0:
        bench.failures.append(f"bench_swarm.py --against {ref} exit {proc.returncode}:\n    "
                              + "\n    ".join(err.strip().splitlines()[-8:]))
        return out
    label = "swarm side by side (bench_swarm.py)"
    for side, name in (("old", "ref"), ("new", "this")):
        match = re.search(rf"^{name}\s+\d+ req/s\s+([\d.]+) µs CPU per request\s+runs: (.*)$",
                          out, re.MULTILINE)
        if match is None:
            bench.failures.append(f"bench_swarm.py: no '{name}' line in its output")
            continue
        for rate in match.group(2).split(", "):
            bench.add(f"{label}: req/s", "higher", side, float(rate))
        # it prints each run's requests/s but only the median CPU time per request
        bench.add(f"{label}: CPU µs/request", "lower", side, float(match.group(1)))
    return out


def compile_tree(tree: Path) -> None:
    """Write a tree's bytecode beforehand: a fresh worktree has none."""
    paths = [p for p in sorted(tree.iterdir()) if p.name not in (".git", ".venv", "runs")
             and (p.suffix == ".py" or (p / "__init__.py").exists())]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j0", *map(str, paths)],
                   check=False, capture_output=True)


def print_table(ref: str, bench: Bench, repeat: int) -> None:
    width = max(len(name) for name in bench.figures) + 2
    print(f"\nmedians of {repeat} interleaved runs; old = {ref}, new = this tree")
    print(f"{'measure':<{width}} {'old':>10} {'new':>10} {'new/old':>8}  better")
    for figure in bench.figures.values():
        if not figure.old or not figure.new:
            print(f"{figure.name:<{width}} {'-':>10} {'-':>10} {'-':>8}  {figure.better}")
            continue
        old, new = statistics.median(figure.old), statistics.median(figure.new)
        ratio = f"{new / old:.3f}" if old else "-"
        print(f"{figure.name:<{width}} {old:>10.2f} {new:>10.2f} {ratio:>8}  {figure.better}")
    print("\neach run, in order (old | new):")
    for figure in bench.figures.values():
        print(f"  {figure.name}: {', '.join(f'{v:.2f}' for v in figure.old)} | "
              f"{', '.join(f'{v:.2f}' for v in figure.new)}")
    print("\nexit codes (old / new): " + "; ".join(
        f"{label} {sorted(codes['old'])} / {sorted(codes['new'])}"
        for label, codes in bench.codes.items()))
    for failure in bench.failures:
        print(f"FAILED: {failure}")


def _stop(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", metavar="REF", required=True,
                        help="The commit to compare with (e.g. the one before a change).")
    parser.add_argument("--repeat", type=int, default=5,
                        help="Interleaved runs of each command in each tree; medians printed.")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    work = Path(tempfile.mkdtemp(prefix="racelab-against-"))
    old = work / "ref"
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old),
                        args.against], check=True, capture_output=True)
        commits = {side: subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
                                         capture_output=True, text=True).stdout.strip()
                   for side, tree in (("old", old), ("new", ROOT))}
        print(f"old: {commits['old']}\nnew: {commits['new']} ({ROOT})", flush=True)
        for tree in (old, ROOT):
            compile_tree(tree)
        history, parquet, final, demo = setup_inputs(work)
        bench = Bench(old, work)
        for side in ("old", "new"):  # untimed: the page cache holds both files after this
            racelab(bench.trees[side], "check", str(history), "--final-file", str(final))
            racelab(bench.trees[side], "check", str(parquet), "--final-file", str(final))
        for rep in range(args.repeat):
            sides = ("old", "new") if rep % 2 == 0 else ("new", "old")
            for side in sides:
                bench.check(side, history, final)
            for side in sides:
                bench.check(side, parquet, final)
            for side in sides:
                bench.report(side, demo, rep)
            for side in sides:
                bench.swarm(side, rep)
            print(f"repetition {rep + 1} of {args.repeat} done", flush=True)
        swarm_text = bench_swarm_against(args.against, args.repeat, bench)
        print("\nbench_swarm.py --against:\n" + swarm_text.rstrip())
        print_table(args.against, bench, args.repeat)
    except KeyboardInterrupt:
        print("interrupted; removing the worktree", file=sys.stderr)
        sys.exit(130)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                       check=False, capture_output=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False,
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
