"""Run a Locust swarm in its own process group and bring back one history.

The orchestrator never imports Locust or gevent: this module starts
``python -m locust -f loadtests/locustfile.py --headless ...`` (alone, with
``--processes N``, or as a master that workers on other machines join), passes
the swarm's parameters in ``RACELAB_SWARM_*`` environment variables, enforces a
hard timeout, and merges the per-process ``history-<n>.csv`` files into
``history.csv``.

Files in the run directory:

- ``history.csv``: every operation, ordered by invoke time, op_id renumbered.
- ``bursts.csv``: burst swarms only; per round and process, requests and the
  first and last moment a request was fully sent (client monotonic ns).
- ``locust/``: Locust's log and JSON stats of the run; while it runs, the
  workers' scratch files (``locust/scratch/``), never the system temp directory.

Signals: while ``run_swarm`` runs (in the main thread) SIGINT, SIGTERM and
SIGHUP all mean "stop cleanly". The Locust master (or the one local process)
is told to stop handing out requests (``INTERRUPT_SIGNAL``, SIGUSR1); in-flight
requests get ``SwarmSpec.grace`` seconds to finish, what is still open then is
recorded as ``info`` with the error ``interrupted``, every worker's rows are
merged into ``history.csv``, and every Locust process started is stopped. A
second signal ends the in-flight requests at once and shortens the wait for
the files; it never skips merging what was recorded. Then ``run_swarm`` raises
``SwarmInterrupted`` (a ``KeyboardInterrupt`` carrying the complete
``SwarmResult`` and the exit code 128 + signal number: 130, 143, 129), or with
``raise_on_signal=False`` returns that result with ``interrupted`` set.

A load generator that dies (a Locust worker, or the one Locust process, killed
or crashed) is noticed within a fraction of a second on this host: the master
stops the others as on an interrupt, and the rows every process had written to
its history file, the dead one's included, are merged. ``SwarmResult.lost``
names each; the swarm is then incomplete, never "ok". Each process hands its
rows to its file every quarter second, so what a killed process loses is its
last fraction of a second and its requests in flight.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import heapq
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from demo_server.basics import defaults, exits, interrupts
from demo_server.basics.errors import RacelabError
from demo_server.basics.files import new_dir, open_new, write_text
from demo_server.basics.procs import (
    SOURCE_ROOT,
    ProcessGroup,
    Zygote,
    free_port,
    spawn_to_files,
    stop_groups,
)
from loadtests._config import to_env
from loadtests.framing import MAX_BODY
from loadtests.history import COLUMNS
from scenarios.operation import Operation

__all__ = [
    "EXIT_CODES",
    "LOCUSTFILE",
    "MAX_REQUESTS",
    "STOP_SIGNALS",
    "SwarmError",
    "SwarmInterrupted",
    "SwarmResult",
    "SwarmSpec",
    "locust_zygote",
    "merge_bursts",
    "merge_histories",
    "run_swarm",
    "worker_command",
]

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
_STOP_TIMEOUT = 10  # seconds Locust waits for in-flight requests at the end
_INTERRUPT_SIGNAL = signal.SIGUSR1  # loadtests._process.INTERRUPT_SIGNAL (not imported: gevent)
_WRITE_ALLOWANCE = 20.0  # after an interrupt's grace: seconds to stop and ship the files
_SECOND_ALLOWANCE = 8.0  # after a second signal: at most this long before processes are killed

#: the signals ``run_swarm`` turns into a clean stop, and the exit code each calls for
STOP_SIGNALS = interrupts.SIGNALS
EXIT_CODES = {sig.name: exits.signal_exit(sig) for sig in STOP_SIGNALS}  # 130, 143, 129

MAX_REQUESTS = defaults.MAX_REQUESTS  #: largest request budget of one swarm
MAX_USERS = 100_000
MAX_PROCESSES = 64
MAX_SECONDS = 7 * 24 * 3600.0  #: longest duration (and hard timeout) of one swarm

#: progress callback: (operations recorded so far, seconds elapsed)
Progress = Callable[[int, float], None]


class SwarmError(RacelabError):
    """The load generator could not run, or did not finish in time."""


@dataclasses.dataclass(frozen=True)
class SwarmSpec:
    """One swarm.

    Args:
        urls: base URLs of the instances (``http://`` or ``https://``); users
            spread requests over all of them.
        users: concurrent Locust users (in a burst swarm: the burst size).
        requests: total requests over all users and processes (0: no bound;
            at most ``MAX_REQUESTS``).
        duration: seconds of load (0: no bound); at least one bound is required.
        burst: release users together, round after round, instead of back to back.
        spawn_rate: users started per second (0: all at once).
        processes: Locust processes on this machine (``--processes``); 1 runs one.
        local_workers: run a master plus this many separate worker processes
            (``--master`` / ``--worker`` on loopback) instead of ``--processes``.
        expect_workers: workers from other machines the master waits for.
        master_bind: ``host:port`` the master listens on (``""``: 127.0.0.1 and a free port).
        record: False counts requests without recording them (benchmarks).
        timeout: connect and read timeout of one request, seconds.
        reconnect: requests per connection before a user opens a new one (0: keep).
        burst_interval_ms: spacing of burst rounds when several processes burst together.
        hard_timeout: seconds after which every process is killed (0: derived).
        operations: what users send, picked by weight (``scenarios.operation``);
            the default is the counter's ``GET /incr`` read as ``json:value``.
        tabs: consecutive users that form one client (one cookie jar, one
            ``client`` id): one person with several browser tabs.
        grace: seconds in-flight requests get to finish after a signal.
        insecure: do not check ``https`` certificates (a self-signed server).
        max_body: largest answer body accepted, bytes; a larger one is ``info``
            "answer larger than N bytes".
    """

    urls: tuple[str, ...]
    users: int = defaults.USERS
    requests: int = 0
    duration: float = 0.0
    burst: bool = False
    spawn_rate: float = 0.0
    processes: int = 1
    local_workers: int = 0
    expect_workers: int = 0
    master_bind: str = ""
    record: bool = True
    timeout: float = defaults.REQUEST_TIMEOUT_S
    reconnect: int = defaults.RECONNECT
    burst_interval_ms: float = 20.0
    hard_timeout: float = 0.0
    operations: tuple[Operation, ...] = (Operation(),)
    tabs: int = 1
    grace: float = defaults.GRACE_S
    insecure: bool = False
    max_body: int = MAX_BODY

    def __post_init__(self) -> None:
        if not self.urls:
            raise SwarmError("a swarm needs at least one URL")
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SwarmError(f"URL {url!r}: expected http://HOST[:PORT] or https://...")
        _count("users", self.users, 1, MAX_USERS)
        _count("requests", self.requests, 0, MAX_REQUESTS)
        _count("processes", self.processes, 1, MAX_PROCESSES)
        _count("local_workers", self.local_workers, 0, MAX_PROCESSES)
        _count("expect_workers", self.expect_workers, 0, 10_000)
        _count("reconnect", self.reconnect, 0, 1 << 31)
        _count("tabs", self.tabs, 1, MAX_USERS)
        _count("max_body", self.max_body, 1, 1 << 30)
        _seconds("duration", self.duration, 0.0, MAX_SECONDS)
        _seconds("hard_timeout", self.hard_timeout, 0.0, MAX_SECONDS)
        _seconds("spawn_rate", self.spawn_rate, 0.0, 1e6)
        _seconds("grace", self.grace, 0.0, 600.0)
        if not (isinstance(self.timeout, int | float) and math.isfinite(self.timeout)
                and 0 < self.timeout <= 3600):
            raise SwarmError(f"timeout must be more than 0 and at most 3600 s, got {self.timeout}")
        if not (isinstance(self.burst_interval_ms, int | float)
                and math.isfinite(self.burst_interval_ms) and self.burst_interval_ms > 0):
            raise SwarmError(f"burst_interval_ms must be a positive number, "
                             f"got {self.burst_interval_ms}")
        if not self.requests and not self.duration:
            raise SwarmError("a swarm needs a bound: a number of requests or a duration")
        if not self.operations or not all(isinstance(op, Operation) for op in self.operations):
            raise SwarmError("a swarm needs at least one operation (scenarios.operation)")

    @property
    def distributed(self) -> bool:
        return self.local_workers > 0 or self.expect_workers > 0

    def deadline(self) -> float:
        """Seconds after which the swarm is killed."""
        if self.hard_timeout:
            return self.hard_timeout
        # Generous: a slow server still finishes, a hung one does not hang racelab.
        by_requests = self.requests / 50 + 30 if self.requests else math.inf
        by_time = self.duration + _STOP_TIMEOUT + 30 if self.duration else math.inf
        return min(by_requests, by_time) + (15 if self.distributed else 0)


def _count(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SwarmError(f"{name} must be a whole number from {low:,} to {high:,}, got {value!r}")


def _seconds(name: str, value: object, low: float, high: float) -> None:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not low <= value <= high):
        raise SwarmError(f"{name} must be a finite number from {low:g} to {high:g}, "
                         f"got {value!r}")


@dataclasses.dataclass
class SwarmResult:
    """What a finished swarm left behind.

    Args:
        history: path of the merged history.
        rows: operations in it.
        locust_requests: requests Locust itself counted.
        locust_failures: failures Locust itself counted.
        elapsed_s: wall time of the swarm process.
        exit_code: Locust's exit code (None when it was killed).
        timed_out: True when the hard timeout killed it.
        bursts: per round, client-side spread: ``{"round", "requests", "client_ns"}``.
        log: Locust's log file.
        interrupted: the first stop signal received (``"SIGINT"``, ``"SIGTERM"``,
            ``"SIGHUP"``), or None; the history is complete either way.
        signals: every stop signal received, in order.
        phases: seconds from the start to each step: ``load`` (Locust's first
            progress report), ``exited`` (the master ended), ``stopped`` (every
            process gone), ``merged`` (the history written).
        lost: the load generators that died during the swarm, each
            ``{"t_ns", "detail"}`` (``t_ns`` on the history's monotonic clock);
            the history then lacks their last rows and their requests in flight.
    """

    history: Path
    rows: int
    locust_requests: int
    locust_failures: int
    elapsed_s: float
    exit_code: int | None
    timed_out: bool
    bursts: list[dict[str, int]]
    log: Path
    interrupted: str | None = None
    signals: tuple[str, ...] = ()
    phases: dict[str, float] = dataclasses.field(default_factory=dict)
    lost: tuple[dict[str, Any], ...] = ()

    @property
    def signal_exit_code(self) -> int | None:
        """The exit code a command interrupted by that signal should use (130, 143, 129)."""
        return None if self.interrupted is None else EXIT_CODES[self.interrupted]


class SwarmInterrupted(KeyboardInterrupt):
    """A stop signal ended the swarm; everything it recorded is merged.

    A ``KeyboardInterrupt``, so that code stopping on Ctrl-C stops on SIGTERM
    and SIGHUP the same way.

    Args:
        result: the swarm's result (``interrupted`` names the signal).
    """

    def __init__(self, result: SwarmResult) -> None:
        super().__init__(result.interrupted)
        self.result = result
        self.signal = result.interrupted or "SIGINT"
        self.signum = int(signal.Signals[self.signal])
        self.exit_code = EXIT_CODES[self.signal]


def _env(spec: SwarmSpec, history_dir: Path, progress_file: Path) -> dict[str, str]:
    env = {
        **os.environ,
        **to_env({f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}),
        "RACELAB_SWARM_HISTORY_DIR": str(history_dir),
        "RACELAB_SWARM_SCRATCH_DIR": str(history_dir.parent / "scratch"),
        "RACELAB_SWARM_PROGRESS_FILE": str(progress_file),
        "PYTHONUNBUFFERED": "1",
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH", "")) if p)
    return env


def worker_command(master_host: str, master_port: int, locustfile: Path = LOCUSTFILE) -> list[str]:
    """The argv of one Locust worker that joins a racelab master.

    Args:
        master_host: where the master listens.
        master_port: its port (``--master-bind-port``).
        locustfile: racelab's locustfile as seen on the worker's machine.
    """
    return [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--worker",
        "--master-host", master_host, "--master-port", str(master_port),
        "--exit-code-on-error", "0",
    ]


def _master_command(spec: SwarmSpec, user_class: str, bind_host: str, bind_port: int) -> list[str]:
    spawn_rate = spec.spawn_rate or max(100.0, float(spec.users))
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", spec.urls[0], "--users", str(spec.users), "--spawn-rate", str(spawn_rate),
        "--stop-timeout", str(_STOP_TIMEOUT), "--json", "--only-summary",
        "--exit-code-on-error", "0", "--loglevel", "WARNING",
    ]
    if spec.distributed:
        argv += ["--master", "--master-bind-host", bind_host, "--master-bind-port",
                 str(bind_port), "--expect-workers", str(spec.local_workers + spec.expect_workers)]
    elif spec.processes > 1:
        # The forked workers talk to the master over loopback; it listens nowhere else.
        argv += ["--processes", str(spec.processes), "--master-bind-host", bind_host,
                 "--master-bind-port", str(bind_port), "--master-host", "127.0.0.1",
                 "--master-port", str(bind_port)]
    return [*argv, user_class]


def _read_progress(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["rows"])
    except (OSError, ValueError, KeyError):
        return None


def parse_locust_json(text: str) -> tuple[int, int]:
    """Locust's request and failure counts from ``--json`` output.

    With ``--processes`` every worker prints an empty ``[]`` before the
    master prints the real list; the last non-empty list counts.
    """
    decoder = json.JSONDecoder()
    found: list[Any] = []
    index = 0
    while index < len(text):
        start = text.find("[", index)
        if start < 0:
            break
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            index = start + 1
            continue
        if isinstance(value, list):
            found.append(value)
        index = end
    entries: list[Any] = next((v for v in reversed(found) if v), [])
    requests = sum(int(e.get("num_requests", 0)) for e in entries if isinstance(e, dict))
    failures = sum(int(e.get("num_failures", 0)) for e in entries if isinstance(e, dict))
    return requests, failures


#: what a Locust zygote imports: Locust (with gevent's patches) and racelab's swarm modules,
#: never the locustfile itself (its listeners belong to each Locust process)
ZYGOTE_MODULES = ("locust", "locust.main", "loadtests._users", "loadtests._process",
                  "loadtests._master", "loadtests._config")


def locust_zygote() -> Zygote:
    """A zygote (``basics.procs.Zygote``) that starts ``python -m locust`` without its imports.

    A matrix runs every cell's swarm from one: each Locust process (and each
    local worker) is still a process of its own, forked with Locust imported.
    """
    return Zygote(ZYGOTE_MODULES)


def _start(argv: list[str], name: str, stdout: Path, stderr: Path | None,
           env: dict[str, str], cwd: Path, zygote: Zygote | None) -> ProcessGroup:
    """Start one Locust process: forked from ``zygote`` if given, else a new interpreter."""
    launch = zygote.spawn if zygote is not None else spawn_to_files
    return launch(argv, name, stdout, stderr, env=env, cwd=cwd)


def run_swarm(
    spec: SwarmSpec,
    run_dir: Path,
    burst_user: bool | None = None,
    progress: Progress | None = None,
    raise_on_signal: bool = True,
    zygote: Zygote | None = None,
) -> SwarmResult:
    """Run one swarm to its end and merge what it recorded.

    Args:
        spec: the swarm.
        run_dir: where ``history.csv`` (and ``bursts.csv``) go.
        burst_user: overrides ``spec.burst`` (mainly for tests).
        progress: called about four times a second with (operations so far,
            seconds); a ``KeyboardInterrupt`` it raises stops the swarm as SIGINT does.
        raise_on_signal: on a stop signal, raise ``SwarmInterrupted`` (default)
            instead of returning the result with ``interrupted`` set.

    Returns:
        The merged history and Locust's own counts.

    Raises:
        SwarmError: if Locust cannot start; a timeout still merges what was recorded.
        SwarmInterrupted: a stop signal ended the swarm (see the module docstring);
            its ``result`` is complete.
    """
    run_dir = Path(run_dir).resolve()  # Locust runs with this as its working directory
    locust_dir = new_dir(run_dir / "locust")  # this swarm's files alone, never through a link
    parts_dir, scratch_dir = new_dir(locust_dir / "parts"), locust_dir / "scratch"
    progress_file = locust_dir / "progress.json"
    burst = spec.burst if burst_user is None else burst_user
    user_class = "BurstUser" if burst else "IncrUser"
    bind_host, _, bind_port = spec.master_bind.rpartition(":")
    bind_host = bind_host or "127.0.0.1"
    several = spec.distributed or spec.processes > 1
    port = int(bind_port) if bind_port else (free_port(bind_host) if several else 0)
    env = _env(spec, parts_dir, progress_file)
    log_path = locust_dir / "locust.log"
    stdout_path = locust_dir / "stats.json"
    procs: list[ProcessGroup] = []
    start = time.monotonic()
    phases: dict[str, float] = {}
    timed_out = False
    with interrupts.deferred() as stops:
        try:
            master = _start(_master_command(spec, user_class, bind_host, port), "locust",
                            stdout_path, log_path, env, run_dir, zygote)
            procs.append(master)
            connect_host = "127.0.0.1" if bind_host in ("0.0.0.0", "*", "") else bind_host
            for index in range(spec.local_workers):
                procs.append(_start(worker_command(connect_host, port), "locust",
                                    locust_dir / f"worker-{index}.log", None, env, run_dir,
                                    zygote))
            timed_out = _wait(master.popen, spec, start, progress, progress_file, stops,
                              phases)
            phases["exited"] = time.monotonic() - start
            lost = _lost(master.popen, progress_file, timed_out)
        finally:
            # Always: on success (stragglers), timeout, error or signal.
            # Each Locust process's whole tree: SIGTERM first (Locust then saves
            # what it recorded), SIGKILL after the grace period.
            stop_groups(procs, grace=5.0, raise_leftovers=False)
        elapsed = phases["stopped"] = time.monotonic() - start
        parts = _parts(parts_dir, scratch_dir)
        if not parts and not (timed_out or stops.received or lost):
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise SwarmError(f"Locust recorded nothing (exit code {master.popen.returncode}); "
                             f"last lines of {log_path}:\n{tail}")
        history = run_dir / "history.csv"
        rows = merge_histories(sorted(p for p in parts if p.name.startswith("history-")),
                               history)
        bursts = merge_bursts(sorted(p for p in parts if p.name.startswith("bursts-")),
                              run_dir / "bursts.csv")
        shutil.rmtree(parts_dir, ignore_errors=True)
        shutil.rmtree(scratch_dir, ignore_errors=True)
        phases["merged"] = time.monotonic() - start
    requests, failures = parse_locust_json(stdout_path.read_text(errors="replace"))
    if progress is not None and not stops.received:
        progress(rows, elapsed)
    result = SwarmResult(
        history=history, rows=rows, locust_requests=requests, locust_failures=failures,
        elapsed_s=elapsed, exit_code=master.popen.returncode if not timed_out else None,
        timed_out=timed_out, bursts=bursts, log=log_path,
        interrupted=stops.received[0] if stops.received else None,
        signals=tuple(stops.received),
        phases={k: round(v, 3) for k, v in phases.items()},
        lost=tuple(lost),
    )
    if result.interrupted is not None and raise_on_signal:
        raise SwarmInterrupted(result)
    return result


def _wait(master: subprocess.Popen[bytes], spec: SwarmSpec, start: float,
          progress: Progress | None, progress_file: Path, stops: interrupts.Deferred,
          phases: dict[str, float]) -> bool:
    """Wait for the master to end, passing stop signals on; True if it timed out."""
    deadline = start + spec.deadline()
    reported = 0.0
    while master.poll() is None:
        now = time.monotonic()
        if "load" not in phases and progress_file.exists():
            phases["load"] = now - start
        if now > deadline:
            return True
        if stops.pending():
            first = stops.handled == 0
            stops.handled = len(stops.received)
            if progress_file.exists():  # Locust has set up its handler: stop it cleanly
                with contextlib.suppress(ProcessLookupError):
                    os.kill(master.pid, _INTERRUPT_SIGNAL)
                limit = now + (spec.grace + _WRITE_ALLOWANCE if first else _SECOND_ALLOWANCE)
                deadline = min(deadline, limit)
            else:  # not started yet: nothing recorded, nothing to wait for
                return False
        if progress is not None and not stops.received and now - reported >= 0.05:
            reported = now
            done = _read_progress(progress_file)
            if done is not None:
                try:
                    progress(done, now - start)
                except KeyboardInterrupt:
                    stops.note("SIGINT")
                    continue
        time.sleep(0.02)  # the end of a swarm is noticed within 20 ms
    return False


def _lost(master: subprocess.Popen[bytes], progress_file: Path,
          timed_out: bool) -> list[dict[str, Any]]:
    """The load generators that died: those the master named, and the master itself when a
    signal it was not sent ended it (the runner only ever sends it ``_INTERRUPT_SIGNAL``)."""
    lost: list[dict[str, Any]] = []
    try:
        named = json.loads(progress_file.read_text(encoding="utf-8")).get("lost")
    except (OSError, ValueError, AttributeError):
        named = None
    if isinstance(named, list):
        lost += [e for e in named if isinstance(e, dict) and isinstance(e.get("detail"), str)]
    code = master.returncode
    if code is not None and code < 0 and not timed_out:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        lost.append({"t_ns": time.monotonic_ns(),
                     "detail": f"the Locust process {master.pid} was killed by {name} "
                               "during the swarm"})
    return lost


def _parts(parts_dir: Path, scratch_dir: Path) -> list[Path]:
    """The per-process files to merge: the master's, else what a worker left in scratch.

    A worker that was killed before it shipped its files (or while it did) left
    them in its scratch directory; the larger copy of each name is the more
    complete one.
    """
    found: dict[str, Path] = {p.name: p for p in parts_dir.glob("*.csv")}
    for part in scratch_dir.glob("racelab-worker-*/*.csv"):
        have = found.get(part.name)
        if have is None or part.stat().st_size > have.stat().st_size:
            found[part.name] = part
    return list(found.values())


def _whole_lines(handle: Iterator[str]) -> Iterator[str]:
    """The lines of a file that end in a newline: a process killed while it wrote leaves a
    last line without one, which is dropped rather than read as a row."""
    for line in handle:
        if line.endswith("\n"):
            yield line


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(_whole_lines(handle))
        header = next(reader, None)
        if header is None:
            return
        if tuple(header) != COLUMNS:
            raise SwarmError(f"{path} does not have the history columns")
        invoke = COLUMNS.index("invoke_ns")
        for row in reader:
            if len(row) == len(COLUMNS):  # a torn last line of a killed process is dropped
                yield int(row[invoke]), row


def merge_histories(parts: list[Path], out: Path) -> int:
    """Merge per-process histories into one, ordered by invoke time, op_id renumbered.

    Args:
        parts: ``history-<n>.csv`` files (each ordered by invoke time per user).
        out: the merged history.

    Returns:
        The number of operations written.
    """
    loaded = [sorted(_rows(p), key=lambda item: item[0]) for p in parts]
    count = 0
    with open_new(out, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for _, row in heapq.merge(*loaded, key=lambda item: item[0]):
            row[0] = str(count)
            writer.writerow(row)
            count += 1
    return count


def merge_bursts(parts: list[Path], out: Path) -> list[dict[str, int]]:
    """Merge per-process burst files; return per round the client-side spread.

    The spread is the time from the first to the last request of a round fully
    sent, over every process (monotonic ns: comparable on one machine).
    """
    rounds: dict[int, list[int]] = {}
    lines: list[str] = []
    for part in parts:
        with part.open(encoding="utf-8") as handle:
            header = handle.readline()
            for line in handle:
                fields = line.strip().split(",")
                if len(fields) != 5:
                    continue
                lines.append(line.strip())
                burst, _, count, first, last = (int(f) for f in fields)
                entry = rounds.setdefault(burst, [0, first, last])
                entry[0] += count
                entry[1] = min(entry[1], first)
                entry[2] = max(entry[2], last)
    if not parts:
        return []
    write_text(out, header + "".join(f"{line}\n" for line in lines))
    return [
        {"round": burst, "requests": entry[0], "client_ns": entry[2] - entry[1]}
        for burst, entry in sorted(rounds.items())
    ]
