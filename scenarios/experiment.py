"""One experiment end to end: server up, swarm, final state, server down, summary.

``run_experiment`` writes into one run directory: ``history.csv`` (every
operation), ``final.json`` (what the server holds afterwards), the server's
logs, and ``summary.json`` (what happened, and the command that reproduces it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo_server.config import ServerConfig
from demo_server.errors import RacelabError
from demo_server.modes import LaunchSpec
from demo_server.supervisor import Supervisor
from loadtests.runner import SwarmResult, SwarmSpec, run_swarm

__all__ = ["SCHEMA", "ExperimentSpec", "run_experiment"]

SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """One (scenario, store, window, mode, swarm) cell.

    Args:
        scenario: the shared-state operation (``counter``).
        store: where the state lives.
        window: what runs between read and write.
        work_us: length of the ``work`` window (µs).
        mode: how the app is served.
        workers: server worker processes.
        threads: threads per gthread worker.
        instances: instances in ``cluster`` mode.
        users: concurrent Locust users (a burst swarm uses ``burst`` instead).
        requests: total requests (0: bounded by ``duration`` only).
        duration: seconds of load (0: bounded by ``requests`` only).
        burst: users released together per round (0: a plain swarm).
        spawn_rate: users started per second (0: all at once).
        processes: Locust processes generating the load.
        reconnect: requests a user sends on one connection before opening a new one,
            as real clients do (0: keep it). Without it, keep-alive connections
            can all stick to the first worker process that accepted them.
        redis_url: Redis of the ``redis`` and ``session`` stores.
        postgres_dsn: PostgreSQL of the ``postgres`` store.
        memcached: ``host:port`` of memcached.
        session_backend: where the ``session`` store keeps sessions
            (``filesystem`` or ``redis``).
    """

    scenario: str = "counter"
    store: str = "global"
    window: str = "none"
    work_us: int = 50
    mode: str = "threaded"
    workers: int = 2
    threads: int = 4
    instances: int = 2
    users: int = 16
    requests: int = 2000
    duration: float = 0.0
    burst: int = 0
    spawn_rate: float = 0.0
    processes: int = 1
    reconnect: int = 10
    redis_url: str = ServerConfig.redis_url
    postgres_dsn: str = ServerConfig.postgres_dsn
    memcached: str = ServerConfig.memcached
    session_backend: str = "filesystem"

    @property
    def swarm_users(self) -> int:
        return self.burst if self.burst else self.users

    @property
    def label(self) -> str:
        return f"{self.store} · {self.mode} · {self.window}"

    def command(self) -> str:
        """The ``racelab swarm`` command line that reproduces this experiment."""
        argv = ["racelab"]
        if self.session_backend != "filesystem":
            argv += ["--session-backend", self.session_backend]
        argv += ["swarm", "--mode", self.mode, "--store", self.store, "--window", self.window]
        defaults = ExperimentSpec()
        for name in ("work_us", "workers", "threads", "instances"):
            if getattr(self, name) != getattr(defaults, name):
                argv += [f"--{name.replace('_', '-')}", str(getattr(self, name))]
        argv += ["--users", str(self.users)]
        if self.requests:
            argv += ["--requests", str(self.requests)]
        if self.duration:
            argv += ["--duration", f"{self.duration:g}"]
        if self.burst:
            argv += ["--burst", str(self.burst)]
        if self.spawn_rate:
            argv += ["--spawn-rate", f"{self.spawn_rate:g}"]
        if self.reconnect != defaults.reconnect:
            argv += ["--reconnect", str(self.reconnect)]
        if self.processes != 1:
            argv += ["--processes", str(self.processes)]
        return shlex.join(argv)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    values = sorted(values)

    def pick(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}


def _read_rows(history: Path) -> list[dict[str, str]]:
    import csv

    with history.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _first_counts_simple(rows: list[dict[str, str]]) -> dict[str, int]:
    """Distinct values, values returned more than once, and values never returned."""
    values = Counter(int(r["value"]) for r in rows if r["outcome"] == "ok" and r["value"])
    duplicates = sum(n - 1 for n in values.values() if n > 1)
    gaps = (max(values) - len(values)) if values else 0
    return {"distinct": len(values), "duplicates": duplicates, "gaps": max(gaps, 0)}


def _first_counts(history: Path, rows: list[dict[str, str]], final: dict[str, Any],
                  server_problem: str) -> dict[str, int]:
    """First counts from ``reports.checkers`` when it exists, else a simple count."""
    try:
        from reports.checkers import check_history
        from reports.history_table import read_history
    except ImportError:
        return _first_counts_simple(rows)
    simple = _first_counts_simple(rows)
    try:
        verdict = check_history(read_history(history), final=final,
                                server_problem=server_problem or None,
                                per_process=bool(final.get("per_process")))
        counts = dict(getattr(verdict, "counts", {}) or {})
    except Exception:  # a checker's failure must not lose the experiment
        return simple
    return {
        "distinct": int(counts.get("distinct_values", simple["distinct"])),
        "duplicates": int(counts.get("duplicate_extra_returns", simple["duplicates"])),
        "gaps": int(counts.get("skipped_values", simple["gaps"])),
    }


def _swarm_summary(result: SwarmResult | None, rows: list[dict[str, str]],
                   bursts: list[dict[str, int | None]]) -> dict[str, Any]:
    outcomes = Counter(r["outcome"] for r in rows)
    latencies = [
        (int(r["complete_ns"]) - int(r["invoke_ns"])) / 1e6
        for r in rows if r["outcome"] == "ok" and r["complete_ns"] and r["invoke_ns"]
    ]
    elapsed = 0.0
    if rows:
        start = min(int(r["invoke_ns"]) for r in rows)
        end = max(int(r["complete_ns"]) for r in rows if r["complete_ns"])
        elapsed = (end - start) / 1e9
    return {
        "requests": len(rows),
        "ok": outcomes.get("ok", 0),
        "fail": outcomes.get("fail", 0),
        "info": outcomes.get("info", 0),
        "locust_requests": result.locust_requests if result else 0,
        "locust_failures": result.locust_failures if result else 0,
        "throughput_rps": round(len(rows) / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": _percentiles(latencies),
        "burst_spreads": bursts,
        "timed_out": bool(result and result.timed_out),
    }


def _burst_spreads(
    result: SwarmResult | None, rows: list[dict[str, str]]
) -> list[dict[str, int | None]]:
    arrivals: dict[int, list[int]] = {}
    for r in rows:
        if r["burst"] and r["server_arrival_ns"]:
            arrivals.setdefault(int(r["burst"]), []).append(int(r["server_arrival_ns"]))
    spreads = []
    for entry in (result.bursts if result else []):
        seen = arrivals.get(entry["round"], [])
        spreads.append({
            "round": entry["round"],
            "requests": entry["requests"],
            "client_ns": entry["client_ns"],
            "server_ns": (max(seen) - min(seen)) if seen else None,
        })
    return spreads


def _final_state(sup: Supervisor, spec: ExperimentSpec, died: bool) -> dict[str, Any]:
    config = sup.config
    if died:
        return {"available": False, "reason": "the server died during the swarm",
                "per_process": config.per_process, "states": []}
    if spec.mode == "processes" and config.per_process:
        return {"available": False,
                "reason": "each request runs in a fresh fork; its copy of the state died with it",
                "per_process": True, "states": []}
    try:
        states = sup.read_state()
    except (OSError, ValueError, RacelabError) as exc:
        return {"available": False, "reason": f"the server did not answer /state: {exc}",
                "per_process": config.per_process, "states": []}
    return {"available": bool(states), "reason": "" if states else "no worker answered /state",
            "per_process": config.per_process, "states": states}


def run_experiment(
    spec: ExperimentSpec,
    run_dir: Path,
    redis_url: str | None = None,
    postgres_dsn: str | None = None,
    memcached: str | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Run one experiment and write its files into ``run_dir``.

    The server is stopped in every case (success, error, Ctrl-C). A server that
    died during the swarm is recorded in ``server.died`` and the status is
    ``failed``. Ctrl-C still writes the summary of what was recorded, then
    re-raises.

    Args:
        spec: the experiment.
        run_dir: its directory (created).
        redis_url: overrides ``spec.redis_url``.
        postgres_dsn: overrides ``spec.postgres_dsn``.
        memcached: overrides ``spec.memcached``.
        progress: called with (operations so far, seconds) while the swarm runs.

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        RacelabError: when the server cannot start or the configuration is wrong.
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = dataclasses.replace(spec, redis_url=redis_url or spec.redis_url,
                               postgres_dsn=postgres_dsn or spec.postgres_dsn,
                               memcached=memcached or spec.memcached)
    redis_url, postgres_dsn, memcached = spec.redis_url, spec.postgres_dsn, spec.memcached
    config = ServerConfig(scenario=spec.scenario, store=spec.store, window=spec.window,
                          work_us=spec.work_us, mode=spec.mode, redis_url=redis_url,
                          postgres_dsn=postgres_dsn, memcached=memcached,
                          session_backend=spec.session_backend)
    launch = LaunchSpec(mode=spec.mode, workers=spec.workers, threads=spec.threads,
                        instances=spec.instances)
    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "experiment": dataclasses.asdict(spec),
        "label": spec.label,
        "command": spec.command(),
        "started_wall": time.time(),
        "status": "failed",
        "error": "",
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
    }
    sup = Supervisor(config, launch, run_dir)
    result: SwarmResult | None = None
    final: dict[str, Any] = {"available": False, "reason": "the experiment did not get that far",
                             "per_process": config.per_process, "states": []}
    identity: dict[str, Any] = {}
    died = False
    interrupted: BaseException | None = None
    try:
        sup.start()
        try:
            from demo_server.client import get_json

            identity = get_json(f"{sup.url}/healthz", timeout=5)
        except (OSError, ValueError):
            identity = {}
        swarm = SwarmSpec(urls=tuple(sup.urls), users=spec.swarm_users, requests=spec.requests,
                          duration=spec.duration, burst=bool(spec.burst),
                          spawn_rate=spec.spawn_rate, processes=spec.processes,
                          reconnect=spec.reconnect)
        try:
            result = run_swarm(swarm, run_dir, progress=progress)
        except KeyboardInterrupt as exc:
            interrupted = exc
        died = not sup.alive()
        final = _final_state(sup, spec, died)
        if result is not None and result.timed_out:
            summary["error"] = "the swarm did not finish before its hard timeout"
        elif interrupted is not None:
            summary["error"] = "interrupted"
        else:
            summary["status"] = "ok"
    except KeyboardInterrupt as exc:
        interrupted = exc
        summary["error"] = "interrupted"
    except RacelabError as exc:
        summary["error"] = str(exc)
        raise
    except Exception as exc:
        summary["error"] = f"{type(exc).__name__}: {exc}"
        (run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        raise
    finally:
        exit_codes = sup.exit_codes()
        died = died or any(code is not None for code in exit_codes)
        log_names = [p.name for p in sup.log_paths]
        pids = sorted({pid for pids in sup.worker_pids.values() for pid in pids})
        try:
            sup.stop()
        finally:
            if died:
                summary["status"] = "failed"
                summary["error"] = summary["error"] or (
                    f"the server died during the swarm (exit codes {exit_codes})")
            summary["server"] = {
                "python": identity.get("python", ""),
                "implementation": identity.get("implementation", ""),
                "gil": identity.get("gil"),
                "executable": identity.get("executable", ""),
                "pids": pids,
                "died": died,
                "exit_codes": exit_codes,
                "logs": log_names,
            }
            _write_results(run_dir, summary, result, final)
    if interrupted is not None:
        raise interrupted
    return summary


def _write_results(run_dir: Path, summary: dict[str, Any], result: SwarmResult | None,
                   final: dict[str, Any]) -> None:
    history = run_dir / "history.csv"
    rows = _read_rows(history) if history.exists() else []
    (run_dir / "final.json").write_text(json.dumps(final, indent=2), encoding="utf-8")
    summary["swarm"] = _swarm_summary(result, rows, _burst_spreads(result, rows))
    problem = "the server died during the swarm" if summary["server"]["died"] else ""
    summary["first_counts"] = _first_counts(history, rows, final, problem) if rows else {
        "distinct": 0, "duplicates": 0, "gaps": 0}
    summary["finished_wall"] = time.time()
    summary["elapsed_s"] = round(summary["finished_wall"] - summary["started_wall"], 3)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
