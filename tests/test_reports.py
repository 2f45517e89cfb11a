"""Tests of results.json, the terminal table, the plots, the HTML and Markdown reports,
and ``racelab report``."""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cli import main
from demo_server import ServerConfig
from demo_server.basics.client import get_json
from demo_server.control.modes import LaunchSpec
from demo_server.control.supervisor import Supervisor
from loadtests.history import HistoryWriter
from reports.analysis.results import (
    SCHEMA,
    ResultsError,
    build_results,
    collect_experiment,
    load_results,
    write_results,
)
from reports.history.verdict import Verdict, Witness, anomaly_count
from reports.render.html import answer, explain, render_run
from reports.render.table import table_text

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE_SNAPSHOTS = os.environ.get("RACELAB_SNAPSHOT_UPDATE") == "1"
WIDTH = 100


# -- building experiment directories ------------------------------------------------------


def make_experiment(
    exp_dir: Path,
    *,
    store: str = "global",
    mode: str = "threaded",
    window: str = "none",
    ops: int = 300,
    kind: str = "race",
    pids: tuple[int, ...] = (4101,),
    label: str | None = None,
    bursts: int = 0,
    status: str = "ok",
    error: str = "",
    pid_known: bool = True,
    executable: str = "",
    scenario: str = "counter",
    tabs: int = 1,
) -> Path:
    """Write history.csv, final.json and summary.json of a plausible experiment.

    ``kind``: ``race`` (a shared counter that repeats every 7th number and skips
    some), ``safe`` (1..n once each), ``per-process`` (every pid counts 1..n on its
    own, as each gunicorn worker's module global does), ``all-ones`` (every
    request gets 1, as flask.g or a fork per request give). ``pid_known=False``
    leaves the server pid out of every row; ``executable`` is the server's Python;
    ``scenario`` and ``tabs`` are only recorded (the history stays the counter's).
    """
    exp_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    t0 = 5_000_000_000
    shared = 0
    counters = dict.fromkeys(pids, 0)
    with HistoryWriter(exp_dir / "history.csv") as writer:
        for i in range(ops):
            pid = pids[i % len(pids)]
            invoke = t0 + i * 150_000 + rng.randrange(40_000)
            latency = 250_000 + rng.randrange(700_000)
            if kind == "per-process":
                counters[pid] += 1
                value = counters[pid]
            elif kind == "all-ones":
                value = 1
            elif kind == "race" and i % 7 == 3:
                value = shared  # read before the other request wrote
            else:
                shared += 1
                value = shared
            writer.add({
                "op_id": i, "client": f"w0-u{i % 6}", "op": "incr", "outcome": "ok",
                "value": value, "invoke_ns": invoke, "complete_ns": invoke + latency,
                "server_pid": pid if pid_known else "", "server_tid": 139_900_000 + i % 4,
                "server_arrival_ns": invoke + 80_000,
                "server_departure_ns": invoke + latency - 90_000,
                "url": "http://127.0.0.1:8000", "burst": i // 6 if bursts else "",
            })
    per_process = kind == "per-process"
    final = {
        "available": True, "reason": "", "per_process": per_process,
        "states": [{"pid": p, "value": counters[p] if per_process else shared,
                    "served": ops // len(pids) if per_process else ops,
                    "url": "http://127.0.0.1:8000"} for p in (pids if per_process else pids[:1])],
    }
    (exp_dir / "final.json").write_text(json.dumps(final))
    if kind == "all-ones":
        final = {"available": True, "reason": "", "per_process": True,
                 "states": [{"pid": p, "value": 0, "served": ops // len(pids),
                             "url": "http://127.0.0.1:8000"} for p in pids]}
        (exp_dir / "final.json").write_text(json.dumps(final))
    write_summary(exp_dir, store=store, mode=mode, window=window, ops=ops, pids=pids,
                  label=label, bursts=bursts, status=status, error=error,
                  executable=executable, scenario=scenario, tabs=tabs)
    return exp_dir


def write_summary(exp_dir: Path, *, store: str, mode: str, window: str, ops: int,
                  pids: Iterable[int], label: str | None, bursts: int = 0,
                  status: str = "ok", error: str = "", executable: str = "",
                  scenario: str = "counter", tabs: int = 1) -> None:
    pids = list(pids)
    summary = {
        "schema": 1,
        "experiment": {"scenario": scenario, "store": store, "window": window, "work_us": 50,
                       "mode": mode, "workers": len(pids), "threads": 4, "instances": 2,
                       "users": 6, "requests": ops, "duration": None, "burst": bursts,
                       "spawn_rate": None, "processes": 1, "tabs": tabs},
        "label": label or exp_dir.name,
        "command": f"racelab swarm --store {store} --mode {mode} --window {window}",
        "started_wall": 1_700_000_000.0, "finished_wall": 1_700_000_002.0, "elapsed_s": 2.0,
        "server": {"python": "3.11.2", "implementation": "CPython", "gil": True,
                   "executable": executable,
                   "pids": pids, "died": False, "exit_codes": [0], "logs": ["server.log"]},
        "swarm": {"requests": ops, "ok": ops, "fail": 0, "info": 0, "locust_requests": ops,
                  "locust_failures": 0, "throughput_rps": 1000.0,
                  "latency_ms": {"p50": 0.6, "p95": 0.9, "p99": 0.95},
                  "burst_spreads": [{"round": r, "client_ns": 40_000 + 900 * r,
                                     "server_ns": 180_000 + 2_500 * r} for r in range(bursts)]},
        "machine": {"cores": 2, "platform": "Linux"},
        "status": status, "error": error, "first_counts": {},
    }
    (exp_dir / "summary.json").write_text(json.dumps(summary))


def make_matrix(run_dir: Path) -> Path:
    """A 2 x 3 matrix with a race, a per-process race, safe cells and one unknown cell."""
    cells = run_dir / "cells"
    make_experiment(cells / "threaded-global", kind="race", bursts=5)
    make_experiment(cells / "threaded-lock", store="lock", kind="safe")
    make_experiment(cells / "threaded-redis", store="redis", kind="safe")
    make_experiment(cells / "gunicorn-sync-global", mode="gunicorn-sync", kind="per-process",
                    pids=(4101, 4102))
    make_experiment(cells / "gunicorn-sync-lock", mode="gunicorn-sync", store="lock",
                    kind="per-process", pids=(4101, 4102))
    unknown = cells / "gunicorn-sync-redis"
    unknown.mkdir(parents=True)
    write_summary(unknown, store="redis", mode="gunicorn-sync", window="none", ops=0,
                  pids=(), label=None, status="failed", error="Redis did not answer")
    return run_dir


# -- synthetic results for the table snapshots -----------------------------------------


def synthetic_entry(
    exp_id: str, mode: str, store: str, valid: str, *, window: str = "none",
    anomalies: int = 0, ok: int = 1000, rps: float | None = 2500.0, p99: float = 3.25,
    label: str | None = None, status: str = "ok", scenario: str = "counter", tabs: int = 1,
    python: str = "3.11.2", gil: bool = True,
) -> dict[str, Any]:
    witnesses: tuple[Witness, ...] = ()
    if valid == "no":
        witnesses = (Witness("duplicate", "Requests 3 and 4 overlapped and both got 3.",
                             (3, 4), {"value": 3}),)
    counts = {"duplicate_extra_returns": anomalies} if valid != "unknown" else {}
    if valid == "no":  # repeats across processes where each process has its own copy
        scope = "cross" if mode == "gunicorn-sync" else "same"
        counts[f"duplicate_extra_{scope}_process"] = anomalies
    verdict = Verdict("counter", valid, counts, witnesses,  # type: ignore[arg-type]
                      "Redis did not answer" if valid == "unknown" else "")
    entry: dict[str, Any] = {
        "id": exp_id, "label": exp_id if label is None else label, "dir": f"/tmp/x/{exp_id}",
        "files": {"history": f"/tmp/x/{exp_id}/history.csv"}, "status": status, "error": "",
        "config": {"scenario": scenario, "store": store, "window": window, "mode": mode,
                   "workers": 2, "threads": 4, "tabs": tabs, "python": python, "gil": gil,
                   "cores": 2},
        "ops": {"total": ok, "ok": ok, "fail": 0, "info": 0},
        "throughput_rps": rps, "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": p99},
        "verdict": verdict.to_dict(), "final": None, "burst_spreads": [], "plots": {},
        "command": "racelab swarm", "server": {},
    }
    entry["anomalies"] = anomaly_count(entry["verdict"])
    entry["anomaly_rate"] = None if entry["anomalies"] is None else entry["anomalies"] / ok
    return entry


def synthetic_results(entries: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return build_results("/tmp/x", entries, meta)


def assert_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE_SNAPSHOTS or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE_SNAPSHOTS:
            pytest.fail(f"snapshot {name} was missing and has been written; rerun")
    assert text == path.read_text(encoding="utf-8"), (
        f"table differs from {path}; set RACELAB_SNAPSHOT_UPDATE=1 to accept the new one"
    )


def grid_results() -> dict[str, Any]:
    return synthetic_results([
        synthetic_entry("t-global", "threaded", "global", "no", anomalies=143),
        synthetic_entry("t-lock", "threaded", "lock", "yes"),
        synthetic_entry("s-global", "gunicorn-sync", "global", "no", anomalies=498),
        synthetic_entry("s-lock", "gunicorn-sync", "lock", "no", anomalies=501),
        synthetic_entry("s-redis", "gunicorn-sync", "redis", "unknown", rps=None,
                        status="failed"),
    ])


# -- results.json -------------------------------------------------------------------------


def test_collect_experiment_measures_and_checks_a_race(tmp_path: Path) -> None:
    """A racy history gives valid=no, counted anomalies, witnesses, latency and throughput."""
    exp = make_experiment(tmp_path / "exp", kind="race", ops=350)
    entry = collect_experiment(exp)
    assert entry["verdict"]["valid"] == "no"
    assert entry["verdict"]["witnesses"]
    assert entry["anomalies"] == 50  # every 7th of 350 requests repeated a number
    assert entry["anomaly_rate"] == pytest.approx(50 / 350)
    assert entry["ops"] == {"total": 350, "ok": 350, "fail": 0, "info": 0}
    latency = entry["latency_ms"]
    assert 0.25 <= latency["p50"] <= latency["p95"] <= latency["p99"] <= 0.95
    assert entry["throughput_rps"] > 0
    assert entry["config"]["store"] == "global" and entry["config"]["python"] == "3.11.2"
    assert entry["config"]["gil"] is True and entry["config"]["cores"] == 2
    assert entry["command"].startswith("racelab swarm --store global")


def test_collect_experiment_safe_history_is_yes(tmp_path: Path) -> None:
    """A clean history gives valid=yes and zero anomalies."""
    entry = collect_experiment(make_experiment(tmp_path / "exp", kind="safe", store="lock"))
    assert entry["verdict"]["valid"] == "yes"
    assert entry["anomalies"] == 0 and entry["anomaly_rate"] == 0


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("history.csv", "history.csv is missing"),
        ("summary.json", "summary.json is missing"),
        ("garbage-history", "history.csv is unreadable"),
        ("garbage-summary", "summary.json is unreadable"),
    ],
)
def test_collect_experiment_missing_or_broken_files_are_unknown(
    tmp_path: Path, damage: str, reason: str
) -> None:
    """A missing or unreadable history or summary is an unknown verdict with the reason."""
    exp = make_experiment(tmp_path / "exp", kind="safe")
    if damage.startswith("garbage-"):
        name = "history.csv" if damage.endswith("history") else "summary.json"
        (exp / name).write_text("op_id,client\n1,\x00{{{\n")
    else:
        (exp / damage).unlink()
    entry = collect_experiment(exp)
    assert entry["verdict"]["valid"] == "unknown"
    assert reason in entry["verdict"]["reason"]
    assert entry["anomalies"] is None and entry["anomaly_rate"] is None


def test_failed_server_makes_the_verdict_unknown_not_safe(tmp_path: Path) -> None:
    """A clean history from a server that died is at best unknown."""
    exp = make_experiment(tmp_path / "exp", kind="safe")
    summary = json.loads((exp / "summary.json").read_text())
    summary["server"]["died"] = True
    summary["server"]["exit_codes"] = [-9]
    (exp / "summary.json").write_text(json.dumps(summary))
    entry = collect_experiment(exp)
    assert entry["verdict"]["valid"] == "unknown"
    assert "died" in entry["verdict"]["reason"]


def test_results_round_trip_with_relative_paths(tmp_path: Path) -> None:
    """build/write/load keep the schema, the run metadata and paths relative to the run."""
    run = make_matrix(tmp_path / "run")
    entries = [collect_experiment(d) for d in sorted((run / "cells").iterdir())]
    results = build_results(run, entries, {"command": "racelab demo", "preset": "quick",
                                           "partial": True, "partial_reason": "Ctrl-C"})
    path = write_results(results, run)
    loaded = load_results(run)
    assert loaded == json.loads(path.read_text())
    assert loaded["schema"] == SCHEMA == "racelab.results/3"
    meta = loaded["run"]
    assert meta["partial"] is True and meta["partial_reason"] == "Ctrl-C"
    assert meta["preset"] == "quick" and meta["command"] == "racelab demo"
    assert meta["machine"]["cores"] == 2 and meta["python"] == "3.11.2" and meta["gil"] is True
    first = loaded["experiments"][0]
    assert first["dir"] == "cells/gunicorn-sync-global"
    assert first["files"]["history"] == "cells/gunicorn-sync-global/history.csv"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "is not readable JSON"),
        ('{"schema": "racelab.results/0", "run": {}, "experiments": []}', "has schema"),
        ('{"run": {}, "experiments": []}', "has schema None"),
    ],
)
def test_load_results_rejects_missing_or_foreign_files(
    tmp_path: Path, content: str | None, message: str
) -> None:
    """A missing, broken or other-schema results.json raises one clear line."""
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(ResultsError, match=message) as info:
        load_results(tmp_path)
    assert "\n" not in str(info.value)


# -- the terminal table -------------------------------------------------------------------


def test_table_snapshot_grid() -> None:
    """A mode x store matrix prints as a grid with words for every verdict."""
    assert_snapshot("table_grid.txt", table_text(grid_results(), width=WIDTH, terminal=True))


def test_a_grid_only_on_a_wide_terminal() -> None:
    """A grid that fits is printed to a terminal wider than 80 columns; through a pipe, or
    at 80 columns, every experiment is one line."""
    grid = table_text(grid_results(), width=WIDTH, terminal=True)
    rows = table_text(grid_results(), width=WIDTH, layout="rows")
    assert "mode \\ store" in grid
    assert table_text(grid_results(), width=WIDTH) == rows
    narrow = table_text(grid_results(), width=80, terminal=True)
    assert narrow == table_text(grid_results(), width=80, layout="rows")


def test_table_snapshot_rows() -> None:
    """One row per experiment, fixed width, no colour."""
    text = table_text(grid_results(), width=WIDTH, layout="rows")
    assert "\x1b[" not in text
    assert_snapshot("table_rows.txt", text)


def test_table_snapshot_partial_with_unknown() -> None:
    """A partial run says so above the table; the unknown cell reads 'unknown'."""
    results = synthetic_results(
        [synthetic_entry("only", "threaded", "global", "unknown", rps=None)],
        partial=True, partial_reason="interrupted (Ctrl-C) after 1 of 4 cells")
    text = table_text(results, width=80)
    assert_snapshot("table_partial.txt", text)


def test_an_80_column_table_keeps_every_word() -> None:
    """At 80 columns (a pipe, a log) the longest mode and failure modes are never cropped."""
    results = synthetic_results([
        synthetic_entry("a", "gunicorn-sync", "global", "no", anomalies=147),
        synthetic_entry("b", "threaded", "global", "no", window="yield", anomalies=113),
        synthetic_entry("c", "gunicorn-gthread", "sqlite", "yes"),
    ])
    text = table_text(results, width=80, layout="rows")
    assert "failure mode" in text and "gunicorn-gthread" in text
    assert "interleaving" in text and "separate copies" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_table_never_says_safe_for_unknown() -> None:
    """Unknown is written 'unknown' in both layouts, never blank or 'safe'."""
    results = synthetic_results([synthetic_entry("a", "threaded", "global", "unknown"),
                                 synthetic_entry("b", "threaded", "lock", "unknown")])
    for layout in ("rows", "grid"):
        text = table_text(results, width=WIDTH, layout=layout)
        assert "unknown" in text and "safe" not in text


# -- plots, HTML, Markdown ------------------------------------------------------------


def test_render_run_writes_every_plot_and_report(tmp_path: Path) -> None:
    """A matrix renders: heatmap, cost, per-experiment plots, witness, bursts, HTML, Markdown."""
    run = make_matrix(tmp_path / "run")
    written = render_run(run, formats=("html", "md"))
    assert set(written) == {"results", "html", "md"}
    results = load_results(run)
    assert results["plots"]["matrix"] == "plots/matrix"  # the plan; the renderer adds .png
    assert (run / "plots" / "matrix.png").is_file()
    assert [(c["mode"], c["stem"]) for c in results["plots"]["cost"]] == [
        ("threaded", "plots/cost-threaded"), ("gunicorn-sync", "plots/cost-gunicorn-sync")]
    by_id = {e["id"]: e for e in results["experiments"]}
    assert set(by_id["threaded-global"]["plots"]) == {"requests", "witness", "bursts"}
    assert by_id["threaded-lock"]["plots"] == {}  # safe among several: no plot wanted
    assert by_id["gunicorn-sync-redis"]["plots"] == {}
    for entry in results["experiments"]:
        for stem in entry["plots"].values():
            assert (run / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = written["html"].read_text()
    assert 'src="data:image/png;base64,' in html
    assert "plots/" not in re.sub(r"data:[^\"]+", "", html)  # nothing points at a file
    md = written["md"].read_text()
    assert "![anomaly rate per mode and store](plots/matrix.png)" in md


def test_cost_of_safety_needs_two_stores_not_two_windows(tmp_path: Path) -> None:
    """One store in two windows is not a cost of safety: no plot; two stores get one."""
    from reports.render.plots import draw_cost

    entries = [synthetic_entry("g-none", "threaded", "global", "yes"),
               synthetic_entry("g-yield", "threaded", "global", "no", window="yield",
                               anomalies=5)]
    assert synthetic_results(entries)["plots"]["cost"] == []
    entries.append(synthetic_entry("lock", "threaded", "lock", "yes"))
    results = synthetic_results(entries)
    [plot] = results["plots"]["cost"]
    assert plot["title"] == "Cost of safety under threaded"
    assert [b["name"] for b in plot["bars"]] == ["global/none", "global/yield", "lock/none"]
    drawn = draw_cost(results["experiments"], plot, tmp_path / "two.png")
    assert drawn is not None and drawn.read_bytes()[:4] == b"\x89PNG"


def test_cost_of_safety_never_holds_two_scenarios(tmp_path: Path) -> None:
    """In a run of several scenarios each cost plot compares the stores of one scenario,
    mode and variant: the counter's and the ids' global and sqlite under one mode make a
    plot each; the tickets' one store and the session's one and four tabs make none."""
    from reports.render.plots import draw_cost

    gthread = "gunicorn-gthread"
    results = synthetic_results([
        synthetic_entry("c-global", gthread, "global", "no", anomalies=40),
        synthetic_entry("c-sqlite", gthread, "sqlite", "yes"),
        synthetic_entry("i-global", gthread, "global", "no", anomalies=40, scenario="ids"),
        synthetic_entry("i-sqlite", gthread, "sqlite", "yes", scenario="ids"),
        synthetic_entry("t-global", gthread, "global", "no", anomalies=9, window="yield",
                        scenario="tickets"),
        synthetic_entry("s-one", gthread, "session", "yes", scenario="session"),
        synthetic_entry("s-four", gthread, "session", "no", anomalies=20, scenario="session",
                        tabs=4),
    ])
    scenario_of = {e["id"]: e["names"]["scenario"] for e in results["experiments"]}
    plots = results["plots"]["cost"]
    assert [(p["scenario"], p["mode"], p["stem"]) for p in plots] == [
        ("counter", gthread, f"plots/cost-counter-{gthread}"),
        ("ids", gthread, f"plots/cost-ids-{gthread}")]
    for plot in plots:
        assert {scenario_of[b["id"]] for b in plot["bars"]} == {plot["scenario"]}
        assert plot["title"] == f"Cost of safety: {plot['scenario']} under {gthread}"
        drawn = draw_cost(results["experiments"], plot, tmp_path / f"{plot['scenario']}.png")
        assert drawn is not None


def test_a_plot_nobody_asked_for_is_not_drawn(tmp_path: Path) -> None:
    """JSON alone draws nothing; a re-render keeps plots whose inputs did not change; a
    single safe experiment still gets its requests plot."""
    run = make_matrix(tmp_path / "run")
    render_run(run, formats=("json",))
    assert not (run / "plots").exists() or not list((run / "plots").glob("*.png"))
    render_run(run, formats=("html",))
    drawn = {p: p.stat().st_mtime_ns for p in (run / "plots").glob("*-*.png")
             if not p.name.startswith("cost-")}
    assert drawn
    render_run(run, formats=("html",))
    assert {p: p.stat().st_mtime_ns for p in drawn} == drawn
    # A changed history is drawn again.
    history = run / "cells" / "threaded-global" / "history.csv"
    history.write_text(history.read_text() + "\n")
    (run / "results.json").unlink()
    render_run(run, formats=("html",))
    again = run / "plots" / "threaded-global-requests.png"
    assert again.stat().st_mtime_ns != drawn[again]
    single = make_experiment(tmp_path / "one", kind="safe")
    render_run(single, formats=("html",))
    assert set(load_results(single)["experiments"][0]["plots"]) == {"requests"}


def test_svg_plots_on_request(tmp_path: Path) -> None:
    """--svg draws SVG files and embeds them as image/svg+xml data URIs."""
    run = make_experiment(tmp_path / "exp", kind="race")
    written = render_run(run, formats=("html",), svg=True)
    entry = load_results(run)["experiments"][0]
    svg = run / f"{entry['plots']['requests']}.svg"
    assert svg.read_text().lstrip().startswith("<?xml")
    assert "data:image/svg+xml;base64," in written["html"].read_text()


def test_large_history_is_downsampled(tmp_path: Path) -> None:
    """A 30,000-op history still plots, with the points shown said on the figure."""
    from reports.history.table import read_history
    from reports.render.plots import MAX_POINTS, draw_requests

    exp = make_experiment(tmp_path / "exp", kind="safe", ops=30_000)
    entry = collect_experiment(exp)
    figure = draw_requests(entry, read_history(exp / "history.csv"), tmp_path / "r.png")
    assert figure is not None and figure.stat().st_size > 0
    assert MAX_POINTS == 20_000


def test_unknown_is_shown_as_unknown_everywhere(tmp_path: Path) -> None:
    """An unknown verdict reads 'unknown' in the table, the HTML and the Markdown, never safe."""
    exp = tmp_path / "exp"
    exp.mkdir()
    write_summary(exp, store="global", mode="threaded", window="none", ops=0, pids=(),
                  label="lonely", status="failed", error="the server did not start")
    written = render_run(exp, formats=("html", "md"))
    results = load_results(exp)
    assert results["experiments"][0]["verdict"]["valid"] == "unknown"
    table = table_text(results, width=WIDTH)
    assert "unknown" in table and "safe" not in table
    html = written["html"].read_text()
    assert 'class="verdict v-unknown">unknown<' in html
    assert 'class="verdict v-safe"' not in html
    assert "the server did not start" in html
    md = written["md"].read_text()
    assert "**unknown**" in md and "**safe**" not in md
    assert "could not be judged" in answer(results)


def test_script_label_renders_as_text(tmp_path: Path) -> None:
    """A label or error containing <script> is escaped in HTML and Markdown."""
    evil = '<script>alert("x")</script>'
    exp = make_experiment(tmp_path / "exp", kind="race", label=f"cell {evil}",
                          error=f"boom {evil}")
    written = render_run(exp, formats=("html", "md"))
    html = written["html"].read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    md = written["md"].read_text()
    assert "<script" not in md and "&lt;script&gt;" in md


def test_partial_run_is_marked_at_the_top(tmp_path: Path) -> None:
    """A cell without summary.json makes a recomputed run partial, shown first in HTML and MD."""
    run = make_matrix(tmp_path / "run")
    (run / "cells" / "gevent-global").mkdir()
    written = render_run(run, formats=("html", "md"))
    results = load_results(run)
    assert results["run"]["partial"] is True
    html = written["html"].read_text()
    assert html.index('id="partial"') < html.index('id="answer"')
    assert written["md"].read_text().split("\n")[2].startswith("> **Partial run:**")


def test_answer_comes_from_the_data() -> None:
    """The top paragraph names the racing modes and rates, and the clean ones."""
    text = answer(grid_results())
    assert text.startswith("No. In 2 of 2 experiments with the global store")
    assert "gunicorn-sync: 498 of 1,000 ok responses anomalous (50%)" in text
    assert "lock under gunicorn-sync" in text
    safe_only = synthetic_results([synthetic_entry("a", "threaded", "global", "yes")])
    assert answer(safe_only).startswith("Not shown unsafe in this run")


def test_explanations_depend_on_the_configuration() -> None:
    """Why-sentences follow mode, store, window and interpreter, not the verdict."""
    sync = " ".join(explain(synthetic_entry("a", "gunicorn-sync", "global", "no")))
    assert "own copy" in sync and "with the GIL" in sync
    threaded = synthetic_entry("b", "threaded", "global", "yes")
    assert "calls and backward jumps" in " ".join(explain(threaded))
    threaded["config"]["python"] = "3.9.18"
    assert "before 3.10" in " ".join(explain(threaded))
    gevent = synthetic_entry("c", "gevent", "global", "yes", window="io")
    assert "yield" in " ".join(explain(gevent))
    free = synthetic_entry("d", "threaded", "global", "no")
    free["config"]["gil"] = False
    assert "without the GIL" in " ".join(explain(free))
    assert explain(threaded) == explain({**threaded, "verdict": {"valid": "no"}})


def test_fifty_experiments_stay_under_ten_megabytes(tmp_path: Path) -> None:
    """A report of 50 experiments (all plots embedded) is smaller than 10 MB."""
    run = tmp_path / "run"
    kinds = ("race", "safe", "per-process")
    modes = ("threaded", "gunicorn-sync", "gunicorn-gthread", "gevent", "single",
             "processes", "cluster")
    stores = ("global", "lock", "sqlite", "redis", "postgres", "manager", "memcached", "g")
    for i in range(50):
        kind = kinds[i % 3]
        make_experiment(run / "cells" / f"cell-{i:02d}", kind=kind, ops=1000,
                        mode=modes[i % len(modes)], store=stores[i // len(modes)],
                        pids=(4101, 4102) if kind == "per-process" else (4101,),
                        bursts=4 if i % 5 == 0 else 0)
    written = render_run(run, formats=("html",))
    size = written["html"].stat().st_size
    assert size < 10_000_000, f"report is {size / 1e6:.1f} MB"
    assert len(load_results(run)["experiments"]) == 50


# -- racelab report -----------------------------------------------------------------------


def test_cli_report_renders_saved_files(tmp_path: Path, cli_runner: Any) -> None:
    """`racelab report` recomputes a missing results.json, prints the table and the path."""
    run = make_matrix(tmp_path / "run")
    result = cli_runner.invoke(main, ["report", str(run), "--width", "100"])
    assert result.exit_code == 0, result.output
    assert "gunicorn-sync" in result.output and "unknown" in result.output
    assert f"report: {run / 'report.html'}" in result.output
    assert (run / "results.json").exists() and (run / "report.html").exists()


def test_cli_report_json_and_md(tmp_path: Path, cli_runner: Any) -> None:
    """--format json prints results.json alone; --format md writes report.md."""
    run = make_experiment(tmp_path / "exp", kind="race")
    result = cli_runner.invoke(main, ["report", str(run), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["schema"] == SCHEMA
    result = cli_runner.invoke(main, ["report", str(run), "--format", "md"])
    assert result.exit_code == 0 and (run / "report.md").exists()


def test_cli_report_reuses_results_json(tmp_path: Path, cli_runner: Any) -> None:
    """An existing results.json is rendered as saved, without re-checking the histories."""
    run = make_experiment(tmp_path / "exp", kind="race", label="first label")
    render_run(run)
    saved = load_results(run)
    saved["experiments"][0]["label"] = "edited label"
    write_results(saved, run)
    (run / "history.csv").write_text("broken")  # would make a recomputation unknown
    result = cli_runner.invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text()
    assert "edited label" in html and "v-race" in html


def test_cli_report_errors_are_one_line(tmp_path: Path, cli_runner: Any) -> None:
    """A foreign results.json or an empty directory exits 2 with one line, no traceback."""
    (tmp_path / "results.json").write_text('{"schema": "other/9"}')
    result = cli_runner.invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "other/9" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli_runner.invoke(main, ["report", str(empty)])
    assert result.exit_code == 2 and "holds no experiment" in result.output


# -- a real small run ---------------------------------------------------------------------


def run_real_experiment(exp_dir: Path, requests: int = 300, concurrency: int = 16) -> None:
    """gunicorn sync, 2 workers, global store: concurrent /incr calls into a history."""
    import time

    exp_dir.mkdir(parents=True)
    config = ServerConfig(store="global")
    spec = LaunchSpec(mode="gunicorn-sync", workers=2)
    started = time.time()
    with Supervisor(config, spec, exp_dir) as sup:
        url = sup.url

        def one(op_id: int) -> dict[str, Any]:
            invoke = time.monotonic_ns()
            try:
                body = get_json(f"{url}/incr", timeout=10)
            except OSError as exc:
                return {"op_id": op_id, "client": f"t{op_id % concurrency}", "op": "incr",
                        "outcome": "info", "invoke_ns": invoke,
                        "complete_ns": time.monotonic_ns(), "url": url, "error": str(exc)}
            return {"op_id": op_id, "client": f"t{op_id % concurrency}", "op": "incr",
                    "outcome": "ok", "value": body["value"], "invoke_ns": invoke,
                    "complete_ns": time.monotonic_ns(), "server_pid": body["pid"],
                    "server_tid": body["tid"], "server_arrival_ns": body["arrival_ns"],
                    "server_departure_ns": body["departure_ns"], "url": url}

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            rows = list(pool.map(one, range(requests)))
        with HistoryWriter(exp_dir / "history.csv") as writer:
            writer.add_many(rows)
        states = sup.read_state()
        pids = sorted({int(p) for pids in sup.worker_pids.values() for p in pids})
    final = {"available": True, "reason": "", "per_process": True,
             "states": [{k: s[k] for k in ("pid", "value", "served", "url")} for s in states]}
    (exp_dir / "final.json").write_text(json.dumps(final))
    first = states[0] if states else {}
    ok = [r for r in rows if r["outcome"] == "ok"]
    summary = {
        "schema": 1,
        "experiment": {"scenario": "counter", "store": "global", "window": "none",
                       "work_us": 50, "mode": "gunicorn-sync", "workers": 2, "threads": 4,
                       "instances": 1, "users": concurrency, "requests": requests,
                       "duration": None, "burst": 0, "spawn_rate": None, "processes": 1},
        "label": "gunicorn-sync x2, global store (real run)",
        "command": "racelab swarm --mode gunicorn-sync --workers 2 --store global",
        "started_wall": started, "finished_wall": time.time(),
        "elapsed_s": time.time() - started,
        "server": {"python": first.get("python"), "implementation": first.get("implementation"),
                   "gil": first.get("gil"), "pids": pids, "died": False,
                   "exit_codes": [], "logs": ["server.log"]},
        "swarm": {"requests": requests, "ok": len(ok), "fail": 0,
                  "info": requests - len(ok), "burst_spreads": []},
        "machine": {"cores": os.cpu_count(), "platform": "Linux"},
        "status": "ok", "error": "",
    }
    (exp_dir / "summary.json").write_text(json.dumps(summary))


def test_real_small_run_renders(tmp_path: Path) -> None:
    """A real gunicorn-sync run with two workers reports the repeated numbers as a race."""
    exp = tmp_path / "real"
    run_real_experiment(exp)
    written = render_run(exp, formats=("html", "md"))
    results = load_results(exp)
    entry = results["experiments"][0]
    from reports.history.table import read_history

    served_by = set(read_history(exp / "history.csv").server_pid.tolist())
    assert entry["ops"]["ok"] >= 290
    if len(served_by) == 2:
        # Both workers served requests, so both handed out 1: a repeated number.
        # Separate copies show in the requests plot (one line per process); the
        # witness time line is drawn only where requests interleave.
        assert entry["verdict"]["valid"] == "no"
        assert entry["anomalies"] > 0 and "separate-copies" in entry["failure_modes"]
        assert "witness" not in entry["plots"]
    assert entry["config"]["python"] and entry["config"]["gil"] is not None
    assert "requests" in entry["plots"]
    html = written["html"].read_text()
    assert "gunicorn-sync x2, global store (real run)" in html
    assert "own copy" in html  # the per-process explanation for this configuration


# -- one writer -----------------------------------------------------------------------------


def test_a_read_only_results_json_renders_and_stays_as_it_was(
        tmp_path: Path, cli_runner: Any) -> None:
    """The analysis writes results.json once; the report, the table and `racelab report`
    only read it: with the file read-only they all succeed and its bytes never change."""
    run = make_matrix(tmp_path / "run")
    render_run(run, formats=("json",))  # the analysis writes results.json, once
    path = run / "results.json"
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    path.chmod(0o444)
    try:
        written = render_run(run, formats=("html", "md"))
        assert written["html"].is_file() and written["md"].is_file()
        text = table_text(load_results(run), width=WIDTH)
        assert "threaded" in text
        for fmt in ("html", "md", "json"):
            result = cli_runner.invoke(main, ["report", str(run), "--format", fmt])
            assert result.exit_code == 0, result.output
        assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    finally:
        path.chmod(0o644)


def test_an_older_results_json_is_read_through_its_schema(tmp_path: Path, cli_runner: Any) -> None:
    """A schema-1 results.json (no claims, no plot plan, plots named with their format)
    renders as it is, unchanged; `report --reanalyse` writes it anew in this schema."""
    run = make_matrix(tmp_path / "run")
    render_run(run, formats=("json",))
    path = run / "results.json"
    old = json.loads(path.read_text())
    old["schema"] = "racelab.results/1"
    old.pop("claims")
    old["plots"] = {"matrix": "plots/matrix.png", "cost": {}}
    for entry in old["experiments"]:
        entry.pop("failure_modes")
        entry["plots"] = {}
    path.write_text(json.dumps(old))
    before = path.read_bytes()
    written = render_run(run, formats=("html",))
    html = written["html"].read_text()
    assert "Is a global safe here?" in html and 'src="data:image/png;base64,' in html
    assert path.read_bytes() == before
    result = cli_runner.invoke(main, ["report", str(run), "--reanalyse", "--format", "json"])
    assert result.exit_code == 0, result.output
    again = json.loads(path.read_text())
    assert again["schema"] == SCHEMA and again["claims"]
    assert again["plots"]["matrix"] == "plots/matrix"
