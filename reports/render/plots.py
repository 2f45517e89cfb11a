"""Plots of a run, drawn from results.json and the history files (matplotlib, Agg).

- ``matrix``: modes x stores (x windows), one panel per scenario (the run's
  ``grid``); colour = anomaly rate, the verdict written in each cell, unknown
  cells hatched grey with "?".
- ``requests`` (per experiment): the value each request got against the time it
  completed; values handed out twice and values never handed out are marked; one
  line per process where every process keeps its own copy of the state.
- ``witness`` (per experiment with an anomaly): the overlapping requests behind
  one anomaly as bars on a time line, one row per client, the shared value marked.
- ``cost`` (per scenario, mode and variant with several stores): throughput and
  p99 latency per store, never two scenarios in one plot.
- ``updates`` (per scenario, store and mode with several updates): throughput, p99
  latency and the retries per request of each update: the price of each fix.
- ``bursts`` (per experiment that used bursts): how tightly each burst arrived.

PNG by default, SVG on request. Scatter plots keep at most ``MAX_POINTS`` points.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import sys
import textwrap
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from demo_server.basics.files import fresh_dir, write_bytes, write_text
from demo_server.served.config import PER_PROCESS_STORES
from reports.analysis.bounds import runs_raced
from reports.analysis.failure_modes import mode_names, modes_of, verdict_label
from reports.analysis.plot_plan import PLOTS_DIR, plot_name
from reports.analysis.results import experiment_path, faults_of
from reports.history.table import FAIL, OK, HistoryTable, MalformedHistory, read_history

__all__ = [
    "COLOURS",
    "MAX_POINTS",
    "draw_all",
    "draw_bursts",
    "draw_cost",
    "draw_matrix",
    "draw_requests",
    "draw_updates",
    "draw_witness",
]

MAX_POINTS = 20_000
#: experiments with plots to draw from which a process pool draws them (measured on 2
#: cores: the quick preset's four in 0.50 s with a pool, 0.74 s without)
PARALLEL_FROM = 2
MAX_MARKS = 2_000
DPI = 90
COLOURS = {"safe": "#2e7d32", "race": "#c62828", "unknown": "#9e9e9e",
           "per-request": "#7b1fa2"}
_PER_REQUEST_FACE = "#e1bee7"
_PID_COLOURS = ("#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#558b2f", "#ad1457",
                "#4e342e", "#37474f")


def _save(fig: Figure, path: Path, tight: bool = True) -> Path:
    """Write the figure; ``tight`` crops it to what it draws, at the cost of drawing it
    twice (a figure whose layout is fixed by hand can skip that)."""
    fresh_dir(path.parent)
    image = io.BytesIO()
    fig.savefig(image, dpi=DPI, format=path.suffix.lstrip(".") or "png",
                bbox_inches="tight" if tight else None, pad_inches=0.08,
                metadata={"Software": None} if path.suffix == ".png" else None)
    return write_bytes(path, image.getvalue())  # replaces a link there, never follows it


# -- matrix -------------------------------------------------------------------------------


def _race_colour(rate: float | None) -> tuple[float, float, float, float]:
    from matplotlib import colormaps

    level = 0.35 + 0.65 * min(1.0, max(0.0, rate or 0.0)) ** 0.5
    rgba = colormaps["Reds"](level)
    return (float(rgba[0]), float(rgba[1]), float(rgba[2]), float(rgba[3]))


def _draw_cell(ax: Axes, j: int, y: int, entry: Mapping[str, Any] | None) -> None:
    """One cell of a heatmap: its colour and words."""
    if entry is None:
        ax.add_patch(Rectangle((j, y), 1, 1, facecolor="white", edgecolor="#bbbbbb"))
        ax.text(j + 0.5, y + 0.5, "not run", ha="center", va="center", fontsize=9,
                color="#888888")
        return
    word = verdict_label(entry)
    runs = _runs(entry)
    if word == "unknown":
        ax.add_patch(Rectangle((j, y), 1, 1, facecolor="#d9d9d9", edgecolor="#666666",
                               hatch="///", linewidth=0.8))
        ax.text(j + 0.5, y + 0.5, "?\nunknown" + runs, ha="center", va="center",
                fontsize=12, fontweight="bold", color="#333333",
                bbox={"facecolor": "#d9d9d9", "edgecolor": "none", "pad": 1})
    elif word == "per-request":
        ax.add_patch(Rectangle((j, y), 1, 1, facecolor=_PER_REQUEST_FACE, edgecolor="white"))
        also = [n for n in mode_names(modes_of(entry)) if n != "per request"]
        ax.text(j + 0.5, y + 0.5, "per\nrequest" + "".join(f"\n{n}" for n in also)
                + runs, ha="center", va="center", fontsize=12 if not also else 10,
                fontweight="bold", color=COLOURS["per-request"])
    elif word == "race":
        rate = entry.get("anomaly_rate")
        dark = (rate or 0) > 0.05
        ax.add_patch(Rectangle((j, y), 1, 1, facecolor=_race_colour(rate), edgecolor="white"))
        ax.text(j + 0.5, y + 0.64, f"race {_percent(rate)}", ha="center", va="center",
                fontsize=12, fontweight="bold", color="white" if dark else "black")
        names = "\n".join(mode_names(modes_of(entry))) or "?"
        ax.text(j + 0.5, y + 0.3, names + runs, ha="center", va="center",
                fontsize=10, linespacing=1.0, color="white" if dark else "black")
    else:
        ax.add_patch(Rectangle((j, y), 1, 1, facecolor="#e3f2e5", edgecolor="white"))
        ax.text(j + 0.5, y + 0.5, "safe\n0%" + runs, ha="center", va="center",
                fontsize=12, color=COLOURS["safe"])


def draw_matrix(results: Mapping[str, Any], path: Path) -> Path | None:
    """Heatmap of modes (rows) against stores (columns), one panel per scenario (the run's
    ``grid``); ``None`` with no experiment."""
    entries = [e for e in results.get("experiments") or () if isinstance(e, Mapping)]
    grids = [g for g in results.get("grid") or () if g.get("modes") and g.get("stores")]
    if not entries or not grids:
        return None
    by_id = {str(e.get("id")): e for e in entries}
    several = len(grids) > 1
    # Wide enough for the legend and title even for a one-column matrix, and for a
    # failure mode's name in each cell; each panel as tall as its modes.
    width = max(7.2, 2.4 + 1.35 * max(len(g["stores"]) for g in grids))
    # Inches, top to bottom: the title, each panel (its scenario's title, its cells, the
    # store names under them), the legend.
    title_space, legend_space, names_space = 0.5, 0.8, 1.2
    heading = 0.45 if several else 0.1
    panels = [heading + 0.85 * len(g["modes"]) + names_space for g in grids]
    height = title_space + sum(panels) + legend_space
    fig = Figure(figsize=(width, height))
    top = height - title_space
    for grid, panel in zip(grids, panels, strict=True):
        rows, cols = list(grid["modes"]), list(grid["stores"])
        box_height = 0.85 * len(rows)
        bottom = top - heading - box_height
        ax = fig.add_axes((1.9 / width, bottom / height, 1.35 * len(cols) / width,
                           box_height / height))
        for i, line in enumerate(grid["cells"]):
            for j, cell in enumerate(line):
                _draw_cell(ax, j, len(rows) - 1 - i, by_id.get(str(cell)) if cell else None)
        ax.set_xlim(0, len(cols))
        ax.set_ylim(0, len(rows))
        ax.set_xticks([j + 0.5 for j in range(len(cols))], cols, rotation=30, ha="right",
                      fontsize=12)
        ax.set_yticks([len(rows) - 0.5 - i for i in range(len(rows))], rows, fontsize=12)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if several:
            ax.set_title(str(grid.get("title") or grid.get("scenario")), fontsize=12,
                         loc="left")
        top -= panel
    fig.suptitle("Anomalous responses per experiment, and which mistake they show",
                 fontsize=12, x=0.02, ha="left", y=1 - 0.1 / height, va="top")
    fig.legend(
        handles=[
            Patch(facecolor="#e3f2e5", label="safe: no anomaly seen"),
            Patch(facecolor=_race_colour(0.3), label="race: % of ok responses anomalous"),
            Patch(facecolor=_PER_REQUEST_FACE, label="per request: nothing survives a request"),
            Patch(facecolor="#d9d9d9", hatch="///", edgecolor="#666666",
                  label="unknown: could not tell"),
        ],
        loc="lower center", ncol=2, fontsize=10, frameon=False,
    )
    return _save(fig, path)


def _runs(entry: Mapping[str, Any]) -> str:
    runs = runs_raced(entry)
    return "\n" + runs if runs else ""


def _percent(rate: float | None) -> str:
    if rate is None:
        return "?"
    percent = rate * 100
    if 0 < percent < 0.1:
        return "<0.1%"
    return f"{percent:.1f}%" if percent < 10 else f"{percent:.0f}%"


# -- requests -----------------------------------------------------------------------------


def _downsample(index: np.ndarray, limit: int) -> np.ndarray:
    if len(index) <= limit:
        return index
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(index, size=limit, replace=False))


def _per_process(entry: Mapping[str, Any], hist: HistoryTable) -> bool:
    final = entry.get("final") or {}
    per_process = final.get("per_process")
    if per_process is None:
        per_process = (entry.get("config") or {}).get("store") in PER_PROCESS_STORES
    pids = np.unique(hist.server_pid[(hist.outcome == OK) & hist.server_pid_known])
    return bool(per_process) and len(pids) > 1


def _gaps(values: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values in 1..max never returned, and the time the next higher value came back."""
    if len(values) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    top = int(values.max())
    if top <= 0 or top > 50_000_000:
        return np.empty(0, dtype=np.int64), np.empty(0)
    seen = np.zeros(top + 1, dtype=bool)
    seen[values[values > 0]] = True
    missing = np.flatnonzero(~seen[1:]) + 1
    if len(missing) == 0:
        return missing, np.empty(0)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    pos = np.searchsorted(sorted_values, missing, side="right")
    pos = np.minimum(pos, len(sorted_values) - 1)
    return missing, times[order][pos]


def draw_requests(entry: Mapping[str, Any], hist: HistoryTable, path: Path) -> Path | None:
    """Value each ok request got vs its completion time; ``None`` when none succeeded."""
    ok = np.flatnonzero((hist.outcome == OK) & hist.value_known & hist.complete_known)
    if len(ok) == 0:
        return None
    t0 = int(hist.invoke_ns.min())
    times = (hist.complete_ns[ok] - t0) / 1e9
    values = hist.value[ok]
    pids = np.where(hist.server_pid_known[ok], hist.server_pid[ok], -1)
    fig = Figure(figsize=(7.2, 3.4))
    ax = fig.add_axes((0.1, 0.15, 0.6, 0.74))
    shown = _downsample(np.arange(len(ok)), MAX_POINTS)
    per_process = _per_process(entry, hist)
    if per_process:
        for k, pid in enumerate(np.unique(pids)[:8]):
            mine = shown[pids[shown] == pid]
            order = mine[np.argsort(times[mine], kind="stable")]
            colour = _PID_COLOURS[k % len(_PID_COLOURS)]
            ax.plot(times[order], values[order], color=colour, linewidth=0.8, alpha=0.6,
                    marker=".", markersize=2.5, markeredgewidth=0, zorder=2,
                    label=f"process {pid}")
    else:
        ax.plot(times[shown], values[shown], linestyle="none", marker=".", markersize=2.5,
                markeredgewidth=0, color="#1565c0", zorder=2, label="a request")
    # Values handed out more than once, over all processes.
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    dup = np.flatnonzero(counts[inverse] > 1)
    if len(dup):
        marks = _downsample(dup, MAX_MARKS)
        ax.plot(times[marks], values[marks], linestyle="none", marker="o", markersize=4.5,
                fillstyle="none", markeredgewidth=0.7, color="#c62828", zorder=1,
                label=f"repeated value ({len(dup):,})")
    # Values never handed out: per process where each process counts for itself.
    gap_values: list[np.ndarray] = []
    gap_times: list[np.ndarray] = []
    groups = np.unique(pids) if per_process else [None]
    for pid in groups:
        mask = np.ones(len(values), dtype=bool) if pid is None else pids == pid
        missing, when = _gaps(values[mask], times[mask])
        gap_values.append(missing)
        gap_times.append(when)
    missing_all = np.concatenate(gap_values) if gap_values else np.empty(0)
    if len(missing_all):
        when_all = np.concatenate(gap_times)
        marks = _downsample(np.arange(len(missing_all)), MAX_MARKS)
        ax.plot(when_all[marks], missing_all[marks], linestyle="none", marker="_",
                markersize=6.5, markeredgewidth=1.4, color="#ff8f00", zorder=3,
                label=f"value nobody got ({len(missing_all):,})")
    # Faults (injected or seen) on the same clock: the history's monotonic_ns.
    faults = [e for e in faults_of(entry.get("events") or ()) if isinstance(e.get("t_ns"), int)]
    for k, event in enumerate(faults[:12]):
        ax.axvline((event["t_ns"] - t0) / 1e9, color="#6a1b9a", linewidth=1.0, linestyle="--",
                   zorder=4, label=str(event.get("kind")) if k < 6 else None)
    ax.set_xlabel("time the request completed (s since the first request)", fontsize=8)
    ax.set_ylabel("value it got", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.25)
    title = "Value each request got"
    if per_process:
        title += " (one line per process: each has its own copy)"
    ax.set_title(title, fontsize=9)
    if len(ok) > len(shown):
        ax.text(0.0, 1.0, f"{len(shown):,} of {len(ok):,} requests shown", fontsize=7,
                transform=ax.transAxes, va="bottom", color="#555555")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False,
              markerscale=1.5)
    return _save(fig, path)


# -- witness ------------------------------------------------------------------------------


def _pick_witness(
    verdict: Mapping[str, Any], hist: HistoryTable
) -> tuple[Mapping[str, Any], np.ndarray] | None:
    position = {int(op): i for i, op in enumerate(hist.op_id)}
    best: tuple[Mapping[str, Any], np.ndarray] | None = None
    for witness in verdict.get("witnesses") or ():
        rows = np.array([position[int(op)] for op in witness.get("op_ids") or ()
                         if int(op) in position], dtype=np.int64)
        rows = rows[hist.complete_known[rows]] if len(rows) else rows
        if len(rows) >= 2:
            return witness, rows
        if len(rows) == 1 and best is None:
            best = (witness, rows)
    return best


def _shared_value(witness: Mapping[str, Any], hist: HistoryTable, rows: np.ndarray) -> int | None:
    details = witness.get("details") or {}
    for key in ("value", "shared_value", "duplicate"):
        if isinstance(details.get(key), int):
            return int(details[key])
    values = hist.value[rows][(hist.outcome[rows] == OK) & hist.value_known[rows]]
    if len(values) == 0:
        return None
    uniq, counts = np.unique(values, return_counts=True)
    return int(uniq[np.argmax(counts)]) if counts.max() > 1 else None


def draw_witness(entry: Mapping[str, Any], hist: HistoryTable, path: Path) -> Path | None:
    """Time line of the requests behind one anomaly; ``None`` without a usable witness."""
    picked = _pick_witness(entry.get("verdict") or {}, hist)
    if picked is None:
        return None
    witness, rows = picked
    lo = int(hist.invoke_ns[rows].min())
    hi = int(hist.complete_ns[rows].max())
    # Context: other requests in flight at the same time, a few.
    overlap = np.flatnonzero(hist.complete_known & (hist.invoke_ns <= hi)
                             & (hist.complete_ns >= lo))
    others = [i for i in overlap if i not in set(rows.tolist())][: max(0, 10 - len(rows))]
    chosen = list(rows) + others
    chosen.sort(key=lambda i: (int(hist.invoke_ns[i]), int(hist.op_id[i])))
    witness_rows = set(rows.tolist())
    shared = _shared_value(witness, hist, rows)
    t0 = min(int(hist.invoke_ns[i]) for i in chosen)
    span_ms = max(1e-3, (max(int(hist.complete_ns[i]) for i in chosen) - t0) / 1e6)
    height = 1.9 + 0.38 * len(chosen)
    fig = Figure(figsize=(7.2, height))
    ax = fig.add_axes((0.3, 1.05 / height, 0.6, 1 - 1.75 / height))
    labels = []
    for y, i in enumerate(reversed(chosen)):
        start = (int(hist.invoke_ns[i]) - t0) / 1e6
        end = (int(hist.complete_ns[i]) - t0) / 1e6
        in_witness = i in witness_rows
        colour = "#c62828" if in_witness else "#b0bec5"
        ax.barh(y, end - start, left=start, height=0.55, color=colour,
                alpha=0.35 if in_witness else 0.5, edgecolor=colour)
        if (hist.arrival_known[i] and hist.departure_known[i]
                and hist.departure_ns[i] >= hist.arrival_ns[i]):
            s_start = (int(hist.arrival_ns[i]) - t0) / 1e6
            s_end = (int(hist.departure_ns[i]) - t0) / 1e6
            ax.barh(y, max(s_end - s_start, span_ms / 300), left=s_start, height=0.3,
                    color="#8e0000" if in_witness else "#607d8b")
        value = int(hist.value[i]) if hist.outcome[i] == OK and hist.value_known[i] else None
        if value is not None:
            text = f"got {value}"
        else:
            text = "failed" if hist.outcome[i] == FAIL else "no answer"
        bold = shared is not None and value == shared
        ax.text(end + span_ms * 0.01, y, text, va="center", fontsize=8,
                fontweight="bold" if bold else "normal",
                color="#c62828" if bold else "#333333")
        where = f"pid {hist.server_pid[i]}" if hist.server_pid_known[i] else "no answer"
        if hist.server_tid_known[i]:
            where += f", thread …{int(hist.server_tid[i]) % 100000:05d}"
        labels.append(f"{hist.client_names[hist.client[i]]}  ({where})")
    ax.set_yticks(range(len(chosen)), labels, fontsize=7)
    ax.set_xlim(-span_ms * 0.02, span_ms * 1.15)
    ax.set_xlabel("time (ms since the first of these requests was sent)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(True, axis="x", alpha=0.25)
    headline = str(witness.get("kind") or "anomaly")
    if shared is not None:
        same = sum(1 for i in rows if hist.value_known[i] and hist.value[i] == shared)
        headline = f"{headline}: {same} requests got {shared}"
    ax.set_title(headline, fontsize=9, loc="left")
    sentence = textwrap.fill(str(witness.get("sentence") or ""), 110)
    fig.text(0.02, 0.02, sentence, fontsize=7, va="bottom", color="#333333")
    fig.legend(
        handles=[
            Patch(facecolor="#c62828", alpha=0.35, edgecolor="#c62828",
                  label="client waiting (sent → answer)"),
            Patch(facecolor="#8e0000", label="server working on it"),
            Patch(facecolor="#b0bec5", label="other requests at that time"),
        ],
        loc="upper right", fontsize=7, frameon=False, ncol=3,
    )
    return _save(fig, path)


# -- cost of safety -----------------------------------------------------------------------


def draw_cost(entries: Sequence[Mapping[str, Any]], plot: Mapping[str, Any], path: Path
              ) -> Path | None:
    """Throughput and p99 of the stores one cost plot compares; ``None`` with fewer than two.

    Args:
        entries: the run's experiments.
        plot: one of the plot plan's ``cost`` plots: its title and its bars (``id``,
            ``name``), all of one scenario, mode and variant.
        path: where to write it.
    """
    by_id = {str(e.get("id")): e for e in entries}
    bars = [(str(b["name"]), by_id[str(b["id"])]) for b in plot.get("bars") or ()
            if str(b.get("id")) in by_id and by_id[str(b["id"])].get("throughput_rps")
            is not None]
    if len(bars) < 2:
        return None
    names = [name for name, _ in bars]
    mine = [entry for _, entry in bars]
    words = [verdict_label(e) for e in mine]
    colours = [COLOURS[w] for w in words]
    hatches = ["///" if w == "unknown" else "" for w in words]
    fig = Figure(figsize=(7.2, 2.9))
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.25, top=0.8, wspace=0.3)
    series = (
        ("throughput (req/s)", [float(e["throughput_rps"]) for e in mine]),
        ("p99 latency (ms)", [float((e.get("latency_ms") or {}).get("p99") or 0) for e in mine]),
    )
    ax: Axes
    for ax, (title, numbers) in zip(axes, series, strict=True):
        drawn = ax.bar(range(len(mine)), numbers, color=colours, edgecolor="#333333",
                       linewidth=0.4)
        for bar, hatch in zip(drawn, hatches, strict=True):
            bar.set_hatch(hatch)
        ax.set_xticks(range(len(mine)), names, rotation=30, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="y", alpha=0.25)
    # The title on the left, the legend on the right: one line, neither over the other.
    fig.suptitle(str(plot.get("title") or "Cost of safety"), fontsize=9, x=0.02, ha="left")
    shown = ("safe", "race", "unknown") + (("per-request",) if "per-request" in words else ())
    fig.legend(handles=[Patch(facecolor=COLOURS[w], label=w) for w in shown],
               loc="upper right", fontsize=7, ncol=len(shown), frameon=False)
    return _save(fig, path, tight=False)  # its layout is fixed above


def draw_updates(entries: Sequence[Mapping[str, Any]], key: str, path: Path) -> Path | None:
    """Throughput, p99 and retries per ok request of each update of one scenario, store and
    mode (``key``: ``scenario:store:mode``); ``None`` with fewer than two updates."""
    scenario, store, mode = [*key.split(":"), "", "", ""][:3]
    mine = [e for e in entries if e.get("throughput_rps") is not None
            and ((e.get("config") or {}).get("scenario") or "counter") == scenario
            and (e.get("config") or {}).get("store") == store
            and (e.get("config") or {}).get("mode") == mode]
    mine.sort(key=lambda e: (_update_order((e.get("config") or {}).get("update")),
                             str((e.get("config") or {}).get("window"))))
    if len({(e.get("config") or {}).get("update") or "atomic" for e in mine}) < 2:
        return None
    windows = {(e.get("config") or {}).get("window") for e in mine}
    names = []
    for e in mine:
        config = e.get("config") or {}
        name = str(config.get("update") or "atomic")
        if len(windows) > 1:
            name += f"/{config.get('window')}"
        names.append(name)
    words = [verdict_label(e) for e in mine]
    colours = [COLOURS[w] for w in words]
    fig = Figure(figsize=(7.2, 2.9))
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.27, top=0.8, wspace=0.4)
    series = (
        ("throughput (req/s)", [float(e["throughput_rps"]) for e in mine]),
        ("p99 latency (ms)", [float((e.get("latency_ms") or {}).get("p99") or 0) for e in mine]),
        ("retries per request", [float((e.get("update_cost") or {}).get("retries_per_ok") or 0)
                                 for e in mine]),
    )
    ax: Axes
    for ax, (title, numbers) in zip(axes, series, strict=True):
        bars = ax.bar(range(len(mine)), numbers, color=colours, edgecolor="#333333",
                      linewidth=0.4)
        for bar, word in zip(bars, words, strict=True):
            bar.set_hatch("///" if word == "unknown" else "")
        ax.set_xticks(range(len(mine)), names, rotation=30, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="y", alpha=0.25)
    fig.suptitle(f"The price of each update: {scenario} on {store} under {mode}", fontsize=9,
                 x=0.02, ha="left")
    shown = tuple(w for w in ("safe", "race", "unknown") if w in words)
    fig.legend(handles=[Patch(facecolor=COLOURS[w], label=w) for w in shown],
               loc="upper right", fontsize=7, ncol=len(shown), frameon=False)
    return _save(fig, path, tight=False)


def _update_order(update: Any) -> int:
    order = ("atomic", "read-write", "locked", "optimistic")
    return order.index(update) if update in order else len(order)


# -- bursts -------------------------------------------------------------------------------


def draw_bursts(entry: Mapping[str, Any], path: Path) -> Path | None:
    """Spread of each burst's sends (client) and arrivals (server), in µs."""
    spreads = [s for s in entry.get("burst_spreads") or () if isinstance(s, Mapping)]
    if not spreads:
        return None
    rounds = [int(s.get("round", i)) for i, s in enumerate(spreads)]
    fig = Figure(figsize=(7.2, 2.6))
    ax = fig.add_axes((0.1, 0.2, 0.86, 0.68))
    for key, label, colour in (("client_ns", "client: first to last send", "#1565c0"),
                               ("server_ns", "server: first to last arrival", "#ef6c00")):
        values = [s.get(key) for s in spreads]
        points = [(r, v / 1e3) for r, v in zip(rounds, values, strict=True) if v is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, color=colour, label=label)
    ax.set_xlabel("burst round", fontsize=8)
    ax.set_ylabel("spread (µs)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.25)
    ax.set_title("How tightly each burst's requests were sent and arrived", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return _save(fig, path)


# -- everything ---------------------------------------------------------------------------


#: Bumped whenever a plot's drawing changes, so that saved plots are redrawn.
PLOTS_VERSION = 5


def _plots_key(entry: Mapping[str, Any], history: Path | None, fmt: str, kinds: list[str]) -> str:
    """What the plots of an experiment are drawn from, as one digest."""
    import hashlib
    import json

    stat = history.stat() if history is not None and history.is_file() else None
    inputs = {"entry": {k: v for k, v in entry.items() if k != "plots"}, "fmt": fmt,
              "kinds": kinds, "version": PLOTS_VERSION,
              "history": None if stat is None else [stat.st_size, stat.st_mtime_ns]}
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _saved_plots(key_file: Path, key: str, results_dir: Path) -> dict[str, str] | None:
    """The plots drawn last time from the same inputs, if they are all still there."""
    import json

    try:
        saved = json.loads(key_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    plots = saved.get("plots") if isinstance(saved, dict) else None
    if saved.get("key") != key or not isinstance(plots, dict):
        return None
    if not all((results_dir / str(rel)).is_file() and not (results_dir / str(rel)).is_symlink()
               for rel in plots.values()):
        return None
    return {str(k): str(v) for k, v in plots.items()}


def _draw_experiment(
    entry: Mapping[str, Any], results_dir: Path, fmt: str
) -> dict[str, str]:
    """Draw the plots the analysis planned for one experiment (``entry["plots"]``).

    Returns:
        The files drawn, by kind, relative to ``results_dir``. Plots drawn before
        from the same entry, history and format are kept as they are.
    """
    import json

    planned = {str(k): str(v) for k, v in (entry.get("plots") or {}).items()}
    if not planned:
        return {}
    kinds = list(planned)
    history = experiment_path(results_dir, (entry.get("files") or {}).get("history"))
    key = _plots_key(entry, history, fmt, kinds)
    key_file = results_dir / PLOTS_DIR / f".{plot_name(str(entry.get('id')))}.{fmt}.key"
    saved = _saved_plots(key_file, key, results_dir)
    if saved is not None:
        return saved

    def target(kind: str) -> Path:
        return results_dir / f"{planned[kind]}.{fmt}"

    drawn: dict[str, Path | None] = {}
    hist: HistoryTable | None = None
    if ("requests" in kinds or "witness" in kinds) and history is not None \
            and history.is_file():
        try:
            hist = read_history(history)
        except MalformedHistory:
            hist = None
    if hist is not None and len(hist):
        if "requests" in kinds:
            drawn["requests"] = draw_requests(entry, hist, target("requests"))
        if "witness" in kinds:
            drawn["witness"] = draw_witness(entry, hist, target("witness"))
    if "bursts" in kinds:
        drawn["bursts"] = draw_bursts(entry, target("bursts"))
    plots = {k: v.relative_to(results_dir).as_posix() for k, v in drawn.items() if v is not None}
    with contextlib.suppress(OSError):  # only a cache
        write_text(key_file, json.dumps({"key": key, "plots": plots}))
    return plots


def _start_pool(count: int) -> ProcessPoolExecutor | None:
    """A pool of forked processes to draw ``count`` experiments, or None to draw them here.

    Forking is used only on Linux and only while this process runs a single thread:
    a forked child then holds no lock another thread owned, and, unlike spawn or
    forkserver, it never re-imports the caller's main module.
    """
    cpus = os.cpu_count() or 1
    if (count < PARALLEL_FROM or cpus < 2 or not sys.platform.startswith("linux")
            or threading.active_count() > 1):
        return None
    try:
        context = multiprocessing.get_context("fork")
        return ProcessPoolExecutor(max_workers=min(cpus, 4), mp_context=context)
    except (OSError, ValueError):  # no process pool here (sandbox, no /dev/shm)
        return None


def draw_all(results: Mapping[str, Any], results_dir: Path, fmt: str = "png",
             matrix: bool = True) -> dict[str, Any]:
    """Draw every plot the analysis planned (``plot_plan``) into ``results_dir/plots``.

    Args:
        results: a results document; it is only read.
        results_dir: the directory holding results.json.
        fmt: ``png`` or ``svg``.
        matrix: draw the heatmap as an image too (the Markdown report shows it; the
            HTML report draws its own, in the page).

    Returns:
        What was drawn: ``{"run": {"matrix": rel | None, "cost": {stem: rel}},
        "experiments": {id: {kind: rel}}}``, paths relative to ``results_dir``.
    """
    if fmt not in ("png", "svg"):
        raise ValueError(f"plots are png or svg, not {fmt!r}")
    results_dir = Path(results_dir)
    fresh_dir(results_dir / PLOTS_DIR)  # a link there is replaced by a folder of its own
    entries = results.get("experiments") or []
    drawing = [i for i, e in enumerate(entries) if e.get("plots")]
    pool = _start_pool(len(drawing))
    drawn: dict[str, Any] = {"experiments": {}}
    try:
        futures = {}
        if pool is not None:
            futures = {i: pool.submit(_draw_experiment, entries[i], results_dir, fmt)
                       for i in drawing}
        drawn["run"] = _draw_run_plots(results, results_dir, fmt, matrix)
        for index in drawing:
            plots = None
            future = futures.get(index)
            if future is not None:
                try:
                    plots = future.result()
                except (OSError, BrokenProcessPool):
                    futures.clear()  # the pool broke: draw the rest here
            if plots is None:
                plots = _draw_experiment(entries[index], results_dir, fmt)
            drawn["experiments"][str(entries[index].get("id"))] = plots
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return drawn


def _draw_run_plots(results: Mapping[str, Any], results_dir: Path, fmt: str,
                    matrix: bool = True) -> dict[str, Any]:
    """The matrix (when asked), the cost-of-safety and the update plots the plan names."""
    planned = results.get("plots") or {}
    entries = results.get("experiments") or []
    run_plots: dict[str, Any] = {"matrix": None, "cost": {}, "updates": {}}
    if planned.get("matrix") and matrix:
        drawn_matrix = draw_matrix(results, results_dir / f"{planned['matrix']}.{fmt}")
        run_plots["matrix"] = (None if drawn_matrix is None
                               else drawn_matrix.relative_to(results_dir).as_posix())
    for plot in planned.get("cost") or ():
        drawn = draw_cost(entries, plot, results_dir / f"{plot['stem']}.{fmt}")
        if drawn is not None:
            run_plots["cost"][str(plot["stem"])] = drawn.relative_to(results_dir).as_posix()
    for key, stem in (planned.get("updates") or {}).items():
        drawn = draw_updates(entries, key, results_dir / f"{stem}.{fmt}")
        if drawn is not None:
            run_plots["updates"][key] = drawn.relative_to(results_dir).as_posix()
    return run_plots
