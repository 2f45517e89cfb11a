"""results.json: what a run measured, in one versioned file every report renders from.

A run directory holds either one experiment (``history.csv``, ``final.json``,
``summary.json``) or a matrix of them under ``cells/<id>/``. ``collect_experiment``
checks one experiment's history and measures it; ``build_results`` gathers the
experiments with the run's metadata; ``write_results`` / ``load_results`` save
and read the file. Paths inside results.json are relative to its directory.

Schema ``racelab.results/3`` (see docs/reports.md for every field)::

    {"schema": "racelab.results/3",
     "run": {"created", "racelab_version", "command", "preset", "label",
             "partial", "partial_reason", "machine": {"cores", "platform"},
             "python", "implementation", "gil"},
     "experiments": [{"id", "label", "names", "dir", "files", "status", "error",
                      "config", "ops", "throughput_rps", "latency_ms",
                      "verdict", "anomalies", "anomaly_rate", "final",
                      "burst_spreads", "server", "interpreter", "command", "plots",
                      "failure_modes", "sharing", "update_cost", "safe_bound",
                      "interleaving", "repeats"}, ...],
     "scenarios": [{"name", "title", "ids"}, ...],
     "grid": [{"scenario", "title", "modes", "stores", "cells"}, ...],
     "claims": [...],
     "plots": {"matrix": ..., "cost": [{"stem", "title", "scenario", "mode", "variant",
                                        "bars"}, ...]}}
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demo_server.basics.errors import RacelabError
from demo_server.basics.files import write_text
from demo_server.served.config import PER_PROCESS_STORES
from reports.analysis.annotate import annotate, repeat_dirs
from reports.analysis.bounds import safe_bound
from reports.analysis.checking import check_history
from reports.analysis.claims import check_claims
from reports.analysis.failure_modes import failure_modes
from reports.analysis.names import name_run
from reports.analysis.plot_plan import plan_plots
from reports.history.table import (
    FAIL,
    INFO,
    OK,
    HistoryTable,
    MalformedHistory,
    find_history,
    read_history,
)
from reports.history.verdict import Verdict, anomaly_count

__all__ = [
    "OLD_SCHEMAS",
    "RESULTS_FILE",
    "SCHEMA",
    "ResultsError",
    "RunContext",
    "analyse_experiment",
    "build_results",
    "burst_spreads",
    "collect_experiment",
    "collect_run",
    "describe_fault",
    "discover_experiments",
    "experiment_path",
    "faults_of",
    "history_context",
    "history_metrics",
    "interpreter_facts",
    "load_results",
    "reanalyse_run",
    "reset_problem",
    "run_context",
    "run_faults",
    "update_cost",
    "write_results",
]

SCHEMA = "racelab.results/3"
#: Older layouts this racelab still reads (in memory, upgraded by ``load_results``);
#: ``racelab report --reanalyse`` writes them anew.
OLD_SCHEMAS = ("racelab.results/1", "racelab.results/2")
RESULTS_FILE = "results.json"

# Configuration keys of an experiment, in the order reports show them.
CONFIG_KEYS = (
    "scenario",
    "store",
    "update",
    "window",
    "work_us",
    "mode",
    "workers",
    "threads",
    "instances",
    "users",
    "requests",
    "duration",
    "burst",
    "spawn_rate",
    "processes",
    "tabs",
    "stock",
    "app",
    "url",
    "request",
    "value",
    "check",
    "final",
)


class ResultsError(RacelabError):
    """results.json is missing, unreadable or of another schema; or a run directory is empty."""


# -- reading one experiment ---------------------------------------------------------------


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except (OSError, ValueError) as exc:
        return None, f"{path.name} is unreadable: {exc}"
    if not isinstance(data, dict):
        return None, f"{path.name} is not a JSON object"
    return data, ""


def history_metrics(table: HistoryTable) -> dict[str, Any]:
    """Operation counts, throughput and latency percentiles of a history's ok ops.

    Args:
        table: a history read by ``reports.history.table.read_history``.

    Returns:
        ``{"ops": {total, ok, fail, info}, "throughput_rps", "latency_ms":
        {p50, p95, p99}, "span_s"}``; numbers are ``None`` when no op succeeded.
        Throughput is ok ops divided by the time from the first send to the last
        ok answer.
    """
    outcome = table.outcome
    ops = {"total": len(table), "ok": int(np.count_nonzero(outcome == OK)),
           "fail": int(np.count_nonzero(outcome == FAIL)),
           "info": int(np.count_nonzero(outcome == INFO))}
    result: dict[str, Any] = {"ops": ops, "throughput_rps": None, "latency_ms": None,
                              "span_s": None}
    ok = (outcome == OK) & table.complete_known
    if ok.any():
        start = table.invoke_ns[ok]
        end = table.complete_ns[ok]
        latency = (end - start) / 1e6
        p50, p95, p99 = np.percentile(latency, [50, 95, 99])
        span = (int(end.max()) - int(table.invoke_ns.min())) / 1e9
        result["latency_ms"] = {"p50": round(float(p50), 3), "p95": round(float(p95), 3),
                                "p99": round(float(p99), 3)}
        result["span_s"] = round(span, 6)
        result["throughput_rps"] = round(int(ok.sum()) / span, 1) if span > 0 else None
    return result


def burst_spreads(bursts: Iterable[Mapping[str, Any]],
                  table: HistoryTable) -> list[dict[str, int | None]]:
    """Each burst round's spread: at the client (as Locust measured it) and at the server.

    Args:
        bursts: ``{"round", "requests", "client_ns"}`` per round, from summary.json.
        table: the history; the server spread is the range of its rows' arrival
            times in that round.

    Returns:
        ``{"round", "requests", "client_ns", "server_ns"}`` per round (``server_ns``
        None where no row of the round has a server arrival time).
    """
    rows = table.burst_known & table.arrival_known
    rounds, arrivals = table.burst[rows], table.arrival_ns[rows]
    spread: dict[int, int] = {}
    if rounds.size:
        order = np.argsort(rounds, kind="stable")
        rounds, arrivals = rounds[order], arrivals[order]
        starts = np.flatnonzero(np.diff(rounds, prepend=rounds[0] - 1))
        high = np.maximum.reduceat(arrivals, starts)
        low = np.minimum.reduceat(arrivals, starts)
        spread = dict(zip(rounds[starts].tolist(), (high - low).tolist(), strict=True))
    return [{"round": int(b["round"]), "requests": int(b["requests"]),
             "client_ns": b.get("client_ns"), "server_ns": spread.get(int(b["round"]))}
            for b in bursts]


def _read_events(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The faults and server events of a run (``events.json``), or why they are unreadable.

    No file means nothing was recorded, which is not a problem; an unreadable
    one is (a fault may have gone unseen).
    """
    if not path.exists():
        return [], ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [], f"{path.name} is unreadable: {exc}"
    origin = None
    if isinstance(data, dict):
        origin = data.get("origin_ns")
        data = data.get("events")
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        return [], f"{path.name} is not a list of events"
    if isinstance(origin, int):  # seconds since the server's watch began, for people
        data = [{**e, "t_s": round((e["t_ns"] - origin) / 1e9, 3)}
                if isinstance(e.get("t_ns"), int) else e for e in data]
    return data, ""


def faults_of(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The events that are faults: all but those whose kind starts with ``info``."""
    return [e for e in events if not str(e.get("kind", "")).startswith("info")]


def describe_fault(event: Mapping[str, Any]) -> str:
    """``kind at 1.2 s (detail)``: one fault as people read it (report, verdict)."""
    at = event.get("t_s")
    when = f" at {float(at):.2f} s" if isinstance(at, (int, float)) else ""
    detail = f" ({event['detail']})" if event.get("detail") else ""
    return f"{event.get('kind', 'fault')}{when}{detail}"


def _fault_problem(events: Sequence[Mapping[str, Any]]) -> str | None:
    """One sentence naming every fault a run met; ``None`` if it met none.

    Injected faults (``fault:...``) and observed ones (a worker died or was
    replaced, an instance or a store stopped answering) alike: a run that met
    any is at best unknown, unless its witnesses prove a race.
    """
    faults = faults_of(events)
    if not faults:
        return None
    names = [describe_fault(event) for event in faults[:5]]
    more = f" and {len(faults) - 5} more" if len(faults) > 5 else ""
    return f"the run met {len(faults)} fault(s): {'; '.join(names)}{more}"


def reset_problem(events: Sequence[Mapping[str, Any]]) -> str | None:
    """One sentence naming each restart that emptied the store; ``None`` if none did.

    A store that comes back empty hands out numbers it handed out before: repeats
    across such a restart are the fault's doing, not a race. A restart that does
    not say it kept the store's data (``"state": "kept"``) counts as emptying it.
    """
    resets = [e for e in events if e.get("kind") == "fault:restart-store"
              and e.get("state") != "kept"]
    if not resets:
        return None
    return (f"the store restarted empty ({'; '.join(describe_fault(e) for e in resets[:3])}): "
            "numbers it handed out before came again, so repeats are no evidence of a race")


def _server_problem(summary: Mapping[str, Any]) -> str | None:
    server = summary.get("server") or {}
    died = server.get("died")
    codes = [c for c in server.get("exit_codes") or () if c not in (None, 0)]
    if died:
        return f"the server died during the run (exit codes {codes or 'unknown'})"
    if codes:
        return f"server processes exited with codes {codes}"
    if summary.get("status") == "failed":
        return str(summary.get("error") or "the experiment failed")
    return None


def _checking(config: Mapping[str, Any], final: Any) -> tuple[str, bool, Any]:
    """How an experiment's history is checked: (scenario, per process, final state)."""
    if config.get("app") or config.get("url"):  # your own app: the invariant you named
        if isinstance(final, dict) and final.get("requested") is False:
            final = None  # no final read was asked for: nothing to compare, not a problem
        return str(config.get("check") or "counter"), False, final
    # Per-client state is judged per client: every client must count 1, 2, 3, ...
    scenario = ("session" if config.get("store") == "session"
                else str(config.get("scenario") or "counter"))
    return scenario, config.get("store") in PER_PROCESS_STORES, final


def _problems(summary: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
              final: Any, final_problem: str) -> str | None:
    """Everything that makes a run's verdict at best unknown, in one sentence (or None)."""
    parts = [_server_problem(summary), _fault_problem(events),
             final_problem if final is None else None]
    return "; ".join(p for p in parts if p) or None


def _run_checker(
    table: HistoryTable,
    final: dict[str, Any] | None,
    config: Mapping[str, Any],
    server_problem: str | None,
    reset: str | None = None,
) -> Verdict:
    scenario, per_process, final = _checking(config, final)
    return check_history(table, final=final, scenario=scenario, server_problem=server_problem,
                         per_process=per_process, reset=reset)


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a run directory says about reading its history, as its analysis reads it.

    Attributes:
        directory: the experiment directory.
        scenario: the checkers its history calls for (``session`` for the session store).
        per_process: each server process kept its own state.
        final: its ``final.json`` as the analysis uses it (None when absent or not asked for).
        final_problem: why ``final`` is None when the analysis needed it ("" otherwise).
        problem: why its verdict is at best unknown (a failed or interrupted run, a
            fault, a dead load generator), or None; ``final_problem`` aside.
        reset: the restarts that emptied its store, or None.
        files: the files of the run that were read.
    """

    directory: Path
    scenario: str
    per_process: bool
    final: Any
    final_problem: str
    problem: str | None
    reset: str | None
    files: tuple[str, ...]


def run_context(exp_dir: Path | str) -> RunContext | None:
    """How the analysis reads the history of the experiment in ``exp_dir``; None when the
    directory holds neither ``summary.json`` nor ``events.json`` (a history alone).

    ``racelab check`` uses it, so that a history checked where its run left it gets
    the verdict the run's own analysis gave: same scenario, same faults, same final.
    """
    exp_dir = Path(exp_dir)
    names = [n for n in ("summary.json", "events.json", "final.json") if (exp_dir / n).is_file()]
    if "summary.json" not in names and "events.json" not in names:
        return None
    summary, summary_problem = _read_json(exp_dir / "summary.json")
    final, final_problem = _read_json(exp_dir / "final.json")
    events, events_problem = _read_events(exp_dir / "events.json")
    experiment = (summary or {}).get("experiment") or {}
    config = {key: experiment.get(key) for key in CONFIG_KEYS}
    scenario, per_process, final = _checking(config, final)
    problem = "; ".join(p for p in (summary_problem, events_problem,
                                    _problems(summary or {}, events, final, "")) if p)
    return RunContext(exp_dir, scenario, bool(per_process), final,
                      final_problem if final is None else "", problem or None,
                      reset_problem(events), tuple(names))


def history_context(history: Path | str, final_file: Path | str | None = None
                    ) -> RunContext | None:
    """The run a history belongs to: its own directory's, else that of ``final_file``."""
    for directory in (Path(history).parent, Path(final_file).parent if final_file else None):
        context = run_context(directory) if directory is not None else None
        if context is not None:
            return context
    return None


def run_faults(exp_dir: Path | str) -> list[Mapping[str, Any]]:
    """The faults an experiment met (its ``events.json``, ``info:`` events left out)."""
    return faults_of(_read_events(Path(exp_dir) / "events.json")[0])


def interpreter_facts(server: Mapping[str, Any], requested: Any = "") -> dict[str, Any]:
    """What served an experiment, as the terminal, the report and the claims print it.

    Args:
        server: summary.json's ``server``: what the server process said of itself
            after the app was imported (and again after the load).
        requested: what ``--python`` asked for (``""``: racelab's own).

    Returns:
        ``{"requested", "python", "implementation", "build", "gil", "gil_enabled_by",
        "python_gil", "executable", "interpreter", "environment", "short", "label",
        "note"}``: ``short`` is ``3.13t`` or ``3.11``, ``label`` ``3.13t, GIL off``;
        ``note`` says why a free-threaded build ran with the GIL on (the module Python
        named, or ``PYTHON_GIL=1``), and is empty otherwise.
    """
    version = str(server.get("python") or "")
    gil = server.get("gil")
    build = str(server.get("build") or ("free-threaded" if gil is False else ""))
    numbers = re.findall(r"\d+", version)[:2]
    short = ".".join(numbers) + ("t" if build == "free-threaded" else "") if numbers else ""
    enabled_by = [str(m) for m in server.get("gil_enabled_by") or ()]
    forced = str(server.get("python_gil") or "")
    note = ""
    if build == "free-threaded" and gil:
        if enabled_by:
            names = ", ".join(f"'{m}'" for m in enabled_by)
            note = (f"the GIL came back on: Python enabled it to load module {names}, which "
                    "does not declare that it runs without the GIL")
        elif forced == "1":
            note = "the GIL was on: PYTHON_GIL=1 in the environment forces it on"
        else:
            note = "the GIL came back on; Python did not name the module that turned it on"
    state = {True: "on", False: "off"}.get(gil) if isinstance(gil, bool) else None
    label = short + (f", GIL {state}" if state else "") if short else ""
    return {
        "requested": str(requested or ""),
        "python": version,
        "implementation": str(server.get("implementation") or ""),
        "build": build,
        "gil": gil,
        "gil_enabled_by": enabled_by,
        "python_gil": forced,
        "executable": str(server.get("executable") or ""),
        "interpreter": str(server.get("interpreter") or ""),
        "environment": str(server.get("environment") or ""),
        "short": short,
        "label": label,
        "note": note,
    }


def update_cost(config: Mapping[str, Any], final: Any, ok: int) -> dict[str, Any] | None:
    """What a non-atomic update cost: the retries and aborts every worker counted.

    Args:
        config: the experiment's configuration (its ``update``).
        final: ``final.json``: each worker's ``retries`` and ``aborts`` (one entry per pid).
        ok: the operations that succeeded.

    Returns:
        ``{"update", "retries", "aborts", "workers", "retries_per_ok"}``, or None for an
        atomic update, or when no worker reported its counts.
    """
    update = config.get("update")
    if not update or update == "atomic" or not isinstance(final, Mapping):
        return None
    by_pid: dict[Any, tuple[int, int]] = {}
    for state in final.get("states") or ():
        if isinstance(state, Mapping) and isinstance(state.get("retries"), int):
            by_pid.setdefault(state.get("pid"), (int(state["retries"]),
                                                 int(state.get("aborts") or 0)))
    if not by_pid:
        return None
    retries = sum(r for r, _ in by_pid.values())
    return {"update": update, "retries": retries,
            "aborts": sum(a for _, a in by_pid.values()), "workers": len(by_pid),
            "retries_per_ok": round(retries / ok, 4) if ok else None}


def _reproduce_command(config: Mapping[str, Any]) -> str:
    parts = ["racelab", "swarm"]
    for key in ("scenario", "store", "window", "update", "mode", "workers", "threads",
                "instances", "users", "requests", "duration"):
        value = config.get(key)
        if value not in (None, "", False):
            parts.append(f"--{key.replace('_', '-')} {value}")
    if config.get("burst"):
        parts.append(f"--burst {config['burst']}")
    return " ".join(parts)


def collect_experiment(exp_dir: Path | str) -> dict[str, Any]:
    """Check and measure one experiment directory.

    The checker runs on ``history.csv`` with ``final.json``; a missing or
    unreadable history or summary gives an ``unknown`` verdict with the reason,
    never ``yes``.

    Args:
        exp_dir: a directory with ``history.csv``, ``final.json`` and ``summary.json``.

    Returns:
        One experiment entry of results.json (paths still absolute; ``build_results``
        makes them relative to the run directory).
    """
    exp_dir = Path(exp_dir)
    summary, summary_problem = _read_json(exp_dir / "summary.json")
    final, final_problem = _read_json(exp_dir / "final.json")
    summary = summary or {}
    experiment = summary.get("experiment") or {}
    server = summary.get("server") or {}
    swarm = summary.get("swarm") or {}
    machine = summary.get("machine") or {}
    config: dict[str, Any] = {key: experiment.get(key) for key in CONFIG_KEYS}
    config["scenario"] = config["scenario"] or "counter"
    config.update(
        python=server.get("python"),
        implementation=server.get("implementation"),
        gil=server.get("gil"),
        executable=server.get("executable") or None,
        cores=machine.get("cores"),
    )
    history = find_history(exp_dir)  # history.parquet when the swarm wrote one
    status = str(summary.get("status") or ("missing" if summary_problem else "ok"))
    error = str(summary.get("error") or "")
    entry: dict[str, Any] = {
        "id": exp_dir.name,
        "label": str(summary.get("label") or exp_dir.name),
        "dir": str(exp_dir),
        "files": {
            "history": str(history),
            "final": str(exp_dir / "final.json"),
            "summary": str(exp_dir / "summary.json"),
            "logs": [str(p) for p in sorted(exp_dir.glob("server*.log"))],
        },
        "status": status,
        "error": error,
        "config": config,
        "ops": {"total": 0, "ok": 0, "fail": 0, "info": 0},
        "throughput_rps": None,
        "latency_ms": None,
        "span_s": None,
        "elapsed_s": summary.get("elapsed_s"),
        "final": final,
        "burst_spreads": list(swarm.get("burst_spreads") or ()),  # written before 0.2
        "server": {k: server.get(k) for k in ("pids", "died", "exit_codes")},
        "interpreter": interpreter_facts(server, experiment.get("python")),
        "command": str(summary.get("command")
                       or (_reproduce_command(config) if config.get("mode") else "")),
        "plots": {},
    }
    events, events_problem = _read_events(exp_dir / "events.json")
    entry["events"] = events
    problems = [p for p in (summary_problem, events_problem) if p]
    table: HistoryTable | None = None
    if not history.exists():
        problems.append(f"{history.name} is missing")
    else:
        try:
            table = read_history(history)
        except MalformedHistory as exc:
            problems.append(f"{history.name} is unreadable: {exc}")
        else:
            entry.update(history_metrics(table))
            if "bursts" in swarm:
                entry["burst_spreads"] = burst_spreads(swarm["bursts"], table)
            if len(table):  # fault times in seconds since the first request, as the plots
                t0 = int(table.invoke_ns.min())
                entry["events"] = [{**e, "t_s": round((e["t_ns"] - t0) / 1e9, 3)}
                                   if isinstance(e.get("t_ns"), int) else e
                                   for e in entry["events"]]
    if problems or table is None:
        verdict = Verdict("history", "unknown", reason="; ".join(problems))
    else:
        server_problem = _problems(summary, entry["events"], final, final_problem)
        try:
            verdict = _run_checker(table, final, config, server_problem,
                                   reset_problem(entry["events"]))
        except RacelabError as exc:
            verdict = Verdict("history", "unknown", reason=str(exc))
        except Exception as exc:  # a checker that crashes gives unknown, never a crash
            verdict = Verdict("history", "unknown",
                              reason=f"the checker failed: {type(exc).__name__}: {exc}")
    entry["verdict"] = verdict.to_dict()
    entry["anomalies"] = anomaly_count(entry["verdict"])
    ok = entry["ops"]["ok"]
    entry["anomaly_rate"] = (
        None if entry["anomalies"] is None or not ok
        else round(min(1.0, entry["anomalies"] / ok), 6)
    )
    entry["update_cost"] = update_cost(config, final, ok)
    repeats = [{**collect_experiment(d), "dir": d.name} for d in repeat_dirs(exp_dir)]
    entry.update(annotate(entry, table, repeats))  # failure modes, bounds, bytecode, repeats
    return entry


def analyse_experiment(exp_dir: Path | str, meta: Mapping[str, Any] | None = None
                       ) -> dict[str, Any]:
    """The one analysis of one experiment: check it, measure it, write its results.json.

    Args:
        exp_dir: a directory written by ``scenarios.run.experiment.run_experiment``.
        meta: what the caller knows of the run (see ``build_results``).

    Returns:
        The experiment's entry as ``collect_experiment`` gives it (absolute paths,
        ready for a matrix's ``build_results``); ``exp_dir/results.json`` holds the
        same entry with paths relative to ``exp_dir``. ``swarm``, ``matrix`` and
        ``demo`` print from it.
    """
    exp_dir = Path(exp_dir)
    entry = collect_experiment(exp_dir)
    meta = {"label": entry["label"], "command": entry["command"], **(meta or {})}
    write_results(build_results(exp_dir, [entry], meta), exp_dir)
    return entry


# -- a whole run ---------------------------------------------------------------------------


def discover_experiments(run_dir: Path | str) -> list[Path]:
    """The experiment directories of a run: ``cells/*`` of a matrix, or the run itself.

    Raises:
        ResultsError: the directory holds no experiment.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"{run_dir} is not a directory")
    cells = run_dir / "cells"
    if cells.is_dir():
        found = sorted(p for p in cells.iterdir() if p.is_dir())
        if found:
            return found
    if (run_dir / "summary.json").exists() or find_history(run_dir).exists():
        return [run_dir]
    raise ResultsError(
        f"{run_dir} holds no experiment (no cells/, summary.json or history.csv)"
    )


def _relative(path: str, root: Path) -> str:
    try:
        return os.path.relpath(path, root)
    except ValueError:  # another drive
        return path


def _relativise(entry: dict[str, Any], root: Path) -> dict[str, Any]:
    entry = dict(entry)
    entry["dir"] = _relative(entry["dir"], root)
    files = dict(entry.get("files") or {})
    for key, value in files.items():
        if isinstance(value, str):
            files[key] = _relative(value, root)
        elif isinstance(value, list):
            files[key] = [_relative(v, root) for v in value]
    entry["files"] = files
    return entry


def _unique_ids(entries: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", str(entry.get("id") or "experiment")) or "x"
        count = seen.get(base, 0)
        seen[base] = count + 1
        entry["id"] = base if count == 0 else f"{base}-{count + 1}"


def _racelab_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("racelab")
    except PackageNotFoundError:
        return "unknown"


def build_results(
    run_dir: Path | str,
    experiments: Iterable[Mapping[str, Any]],
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Gather experiment entries and the run's metadata into one results document.

    Args:
        run_dir: where results.json will live; experiment paths become relative to it.
        experiments: entries from ``collect_experiment``.
        meta: what the caller knows of the run: ``command``, ``preset``, ``label``,
            ``partial`` (bool) and ``partial_reason``.

    Returns:
        The results.json document (schema ``SCHEMA``), with the answer's claims
        checked and the plots the report shows planned: everything a view prints.
    """
    run_dir = Path(run_dir).resolve()
    meta = dict(meta or {})
    entries = [_relativise(dict(e), run_dir) for e in experiments]
    _unique_ids(entries)
    first: dict[str, Any] = next(
        (e["config"] for e in entries if e["config"].get("python")), {})
    partial = bool(meta.get("partial", False))
    run = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "racelab_version": _racelab_version(),
        "command": meta.get("command") or "",
        "preset": meta.get("preset"),
        "label": meta.get("label") or "",
        "partial": partial,
        "partial_reason": str(meta.get("partial_reason") or "") if partial else "",
        "machine": {
            "cores": first.get("cores") or os.cpu_count(),
            "platform": meta.get("platform") or platform.platform(),
        },
        "python": first.get("python") or platform.python_version(),
        "implementation": first.get("implementation") or platform.python_implementation(),
        "gil": first.get("gil"),
    }
    for key, value in meta.items():  # anything else the caller knows (budget, skipped stores)
        run.setdefault(key, value)
    results = {"schema": SCHEMA, "run": run, "experiments": entries}
    return _conclude(results)


def _conclude(results: dict[str, Any]) -> dict[str, Any]:
    """Add what is computed from the experiments together: their names within the run,
    the claims, the plot plan.

    An entry that was not collected here (an older results.json, a test's) gets its
    failure modes and bound from its verdict first.
    """
    for entry in results["experiments"]:
        if isinstance(entry, dict):
            entry.setdefault("failure_modes", failure_modes(entry))
            entry.setdefault("safe_bound", safe_bound(entry))
    name_run(results)
    results["claims"] = [c.to_dict() for c in check_claims(results["experiments"])]
    return plan_plots(results)


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """An older results document with the fields this racelab's views read, in memory."""
    return _conclude(data)


def write_results(results: Mapping[str, Any], run_dir: Path | str) -> Path:
    """Write results.json into ``run_dir`` (atomically) and return its path."""
    path = Path(run_dir) / RESULTS_FILE
    return write_text(path, json.dumps(results, indent=2, sort_keys=False) + "\n")


def load_results(path: Path | str) -> dict[str, Any]:
    """Read and validate results.json (a file, or a run directory holding one).

    Raises:
        ResultsError: the file is missing, not JSON, or of another schema.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path} is not readable JSON: {exc}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA and schema not in OLD_SCHEMAS:
        raise ResultsError(
            f"{path} has schema {schema!r}; this racelab reads {SCHEMA!r}"
        )
    if not isinstance(data.get("experiments"), list) or not isinstance(data.get("run"), dict):
        raise ResultsError(f"{path} lacks its 'run' or 'experiments' section")
    return data if schema == SCHEMA else _upgrade(data)


def reanalyse_run(run_dir: Path | str, meta: Mapping[str, Any] | None = None) -> Path:
    """Check and measure every experiment of a run again and write its results.json.

    The run's metadata (command, preset, label, budget...) and what was measured
    beside the cells (the interpreter table) are kept from the old results.json,
    when it is a readable file of the run's own.

    Returns:
        The path of results.json, the analysis's one output.
    """
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    old = None
    if path.exists() and not path.is_symlink():  # a link is replaced, never read from
        try:
            old = load_results(path)
        except ResultsError:
            old = None  # unreadable: written anew all the same
    kept = {} if old is None else {
        k: v for k, v in old["run"].items() if k not in ("created", "racelab_version")}
    results = collect_run(run_dir, {**kept, **(meta or {})})
    if old is not None and "interpreters" in old:
        results["interpreters"] = old["interpreters"]
    return write_results(results, run_dir)


def collect_run(run_dir: Path | str, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Collect every experiment of a run directory into a results document.

    A cell without ``summary.json`` marks the run as partial (it was interrupted).
    """
    run_dir = Path(run_dir)
    dirs = discover_experiments(run_dir)
    entries = [collect_experiment(d) for d in dirs]
    meta = dict(meta or {})
    unfinished = [d.name for d in dirs if not (d / "summary.json").exists()]
    if unfinished and not meta.get("partial"):
        meta["partial"] = True
        meta["partial_reason"] = (
            f"{len(unfinished)} of {len(dirs)} experiments have no summary.json "
            "(the run stopped before they finished)"
        )
    return build_results(run_dir, entries, meta)


def experiment_path(results_dir: Path, relative: str | None) -> Path | None:
    """Resolve a path stored in results.json against the directory holding it."""
    if not relative:
        return None
    path = Path(relative)
    return path if path.is_absolute() else results_dir / path
