"""One experiment end to end: server up, swarm, final state, server down.

``run_experiment`` writes into one run directory what happened:
``history.csv`` (every operation), ``final.json`` (what the server holds
afterwards), the server's logs, and ``summary.json`` (the spec, the command
that reproduces it, the server's facts, Locust's own counts). It measures and
checks nothing: ``reports.analysis.results.analyse_experiment`` reads those files once
and writes the run's one analysis, ``results.json``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo_server.basics import interrupts
from demo_server.basics.client import get_json
from demo_server.basics.errors import RacelabError
from demo_server.basics.files import write_text
from demo_server.basics.procs import Zygote
from demo_server.control.faults import FaultScheduler, check_store_faults
from demo_server.control.supervisor import ServerZygotes, Supervisor
from demo_server.served.stamp import HEALTH_PATH
from loadtests.runner import SwarmInterrupted, SwarmResult, run_swarm
from reports.history.table import MalformedHistory, write_parquet
from scenarios.run.probe import read_final
from scenarios.run.rundir import SCHEMA, write_summary
from scenarios.run.spec import ExperimentSpec

__all__ = ["ExperimentSpec", "run_experiment"]


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
    progress: Callable[[int, float], None] | None = None,
    zygote: Zygote | None = None,
    server_zygotes: ServerZygotes | None = None,
    before_swarm: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run one experiment and write its files into ``run_dir``.

    The server is stopped in every case (success, error, Ctrl-C). A server that
    died during the swarm is recorded in ``server.died`` and the status is
    ``failed``. Ctrl-C still writes the summary of what was recorded, then
    re-raises.

    Args:
        spec: the experiment (its stores: ``spec.connected(connections)``).
        run_dir: its directory (created).
        progress: called with (operations so far, seconds) while the swarm runs.
        zygote: starts the Locust processes (``loadtests.runner.locust_zygote``);
            a matrix keeps one for all its cells.
        server_zygotes: start the servers (``demo_server.control.supervisor.ServerZygotes``).
        before_swarm: called once the server answers, before the load starts (a matrix
            waits there for its zygotes' imports, so that none runs during the load).

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        RacelabError: when the server cannot start or the configuration is wrong.
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    config = spec.server_config()
    served_by = spec.server_python()  # found, and prepared, before anything starts
    launch = spec.launch_spec(python=served_by)
    # A store fault racelab could not carry out is bad input: refused before any server starts.
    check_store_faults(spec.faults, "" if spec.app else spec.store, spec.session_backend, config)
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
    sup = Supervisor(config, launch, run_dir, zygotes=server_zygotes)
    result: SwarmResult | None = None
    final: dict[str, Any] = {"available": False, "reason": "the experiment did not get that far",
                             "per_process": config.per_process, "states": []}
    identity: dict[str, Any] = {}
    died = False
    interrupted: BaseException | None = None
    clock = _Phases()
    quick_stop = False
    try:
        sup.start()
        clock.mark("server_started")
        identity = _identity(sup, spec)
        swarm = spec.swarm_spec(sup.urls)
        # Faults run on the load's timeline, from the swarm's first reported
        # operations (within ~0.25 s of its first request); each is an event in the
        # supervisor's list, which sup.stop() writes to events.json.
        faults = FaultScheduler(sup, spec.faults) if spec.faults else None

        def on_progress(done: int, seconds: float) -> None:
            if faults is not None and done > 0:
                faults.start()
            if progress is not None:
                progress(done, seconds)

        if before_swarm is not None:
            before_swarm()
        try:
            result = run_swarm(swarm, run_dir, progress=on_progress, zygote=zygote)
        except SwarmInterrupted as exc:  # every row it recorded is merged
            interrupted, result = exc, exc.result
        except KeyboardInterrupt as exc:
            interrupted = exc
        finally:
            if faults is not None:
                faults.stop()
            clock.mark("swarm_done")
        for gone in result.lost if result is not None else ():  # a fault like any other
            sup.record("load-generator-died", str(gone["detail"]),
                       t_ns=gone.get("t_ns") or time.monotonic_ns())
        died = not sup.alive()
        if not died:  # the GIL as the load left it: an import on the way may turn it on
            identity = _identity(sup, spec) or identity
        if spec.app:
            final = read_final(spec, sup.urls, expected=lambda i: set(sup.workers(i))) if (
                not died) else {"available": False, "per_process": None, "states": [],
                                "reason": "the server died during the swarm"}
        else:
            final = _final_state(sup, spec, died)
        clock.mark("final_read")
        quick_stop = True  # nothing is left to ask the server
        if result is not None and result.timed_out:
            summary["error"] = "the swarm did not finish before its hard timeout"
        elif interrupted is not None:
            summary["error"] = _interrupted()
        else:
            summary["status"] = "ok"
    except KeyboardInterrupt as exc:
        interrupted = exc
        summary["error"] = _interrupted()
    except RacelabError as exc:
        summary["error"] = str(exc)
        raise
    except Exception as exc:
        summary["error"] = f"{type(exc).__name__}: {exc}"
        write_text(run_dir / "error.txt", traceback.format_exc())
        raise
    finally:
        exit_codes = sup.exit_codes()
        died = died or any(code is not None for code in exit_codes)
        log_names = [p.name for p in sup.log_paths]
        pids = sorted({pid for pids in sup.worker_pids.values() for pid in pids})
        try:
            sup.stop(quick=quick_stop)
        finally:
            clock.mark("server_stopped")
            summary["timing"] = {**clock.phases,
                                 "swarm": dict(result.phases) if result is not None else {}}
            if died:
                summary["status"] = "failed"
                summary["error"] = summary["error"] or (
                    f"the server died during the swarm (exit codes {exit_codes})")
            summary["server"] = {
                "python": identity.get("python", ""),
                "implementation": identity.get("implementation", ""),
                "gil": identity.get("gil"),
                "executable": identity.get("executable", ""),
                # What --python asked for, what it found, and what the server process said.
                "requested": spec.python,
                "interpreter": served_by.interpreter.path if served_by else "",
                "environment": served_by.environment if served_by else "",
                "build": identity.get("build", ""),
                "gil_enabled_by": identity.get("gil_enabled_by") or [],
                "python_gil": identity.get("python_gil", ""),
                "pids": pids,
                "died": died,
                "exit_codes": exit_codes,
                "logs": log_names,
            }
            summary["events"] = sup.events()
            write_summary(run_dir, summary, result, final)
            if spec.history_format == "parquet":
                _to_parquet(run_dir)
    if interrupted is not None:
        raise interrupted
    return summary


def _identity(sup: Supervisor, spec: ExperimentSpec) -> dict[str, Any]:
    """What the server says of itself, its interpreter and GIL included; {} if it does not."""
    try:
        return get_json(f"{sup.url}{HEALTH_PATH if spec.app else '/healthz'}", timeout=5)
    except (OSError, ValueError):
        return {}


class _Phases:
    """Seconds from the experiment's start to each of its steps (``summary["timing"]``)."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.phases[name] = round(time.monotonic() - self.start, 3)


def _to_parquet(run_dir: Path) -> None:
    """Keep the history as history.parquet only (the analysis reads either)."""
    csv_path = run_dir / "history.csv"
    if not csv_path.exists():
        return
    try:
        write_parquet(csv_path)
    except MalformedHistory:
        return  # the analysis will say what is wrong with the CSV, kept as it is
    csv_path.unlink()


def _interrupted() -> str:
    import signal

    signum = interrupts.first_signal()
    return f"interrupted by {signal.Signals(signum).name}" if signum else "interrupted"
