"""The terminal table of a run: one row per experiment, or a mode x store grid.

Colour only decorates: every verdict is also a word (``race``, ``safe``,
``unknown``), so the table reads the same piped, under ``NO_COLOR`` or printed.
An unknown verdict is always written ``unknown``, never left blank.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reports.analysis.bounds import bound_short, runs_raced
from reports.analysis.failure_modes import mode_names, modes_of, verdict_label
from reports.analysis.results import cell_key, mode_store_keys

__all__ = ["STYLES", "build_table", "format_rate", "print_table", "table_text"]

STYLES = {"race": "bold red", "safe": "green", "unknown": "yellow", "per-request": "magenta"}


def format_rate(rate: float | None) -> str:
    """An anomaly rate as a short percentage (``12.5%``, ``<0.1%``, ``0%``); ``-`` if unknown."""
    if rate is None:
        return "-"
    if rate == 0:
        return "0%"
    percent = rate * 100
    if percent < 0.1:
        return "<0.1%"
    return f"{percent:.1f}%" if percent < 10 else f"{percent:.0f}%"


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _verdict_text(entry: Mapping[str, Any]) -> Text:
    word = verdict_label(entry)
    return Text(word, style=STYLES[word])


def _modes(entry: Mapping[str, Any]) -> str:
    """The failure modes an anomalous cell shows, as printed names (``-`` for none)."""
    return ", ".join(mode_names(modes_of(entry))) or "-"


def _bound(entry: Mapping[str, Any]) -> str:
    """A safe cell's bound on its anomaly rate (``<0.75% at 95%``); empty for others."""
    return bound_short(entry.get("safe_bound"))


def _caption(entries: Sequence[Mapping[str, Any]]) -> str | None:
    """What a safe cell's bound means, under a table that shows one."""
    if not any(_bound(e) for e in entries):
        return None
    return ("safe <x% at 95%: no anomaly in its ok requests, so its anomaly rate is below x% "
            "at 95% confidence (exact binomial)")


def _cell_text(entry: Mapping[str, Any]) -> Text:
    word = verdict_label(entry)
    text = Text(word, style=STYLES[word])
    if word == "safe" and _bound(entry):
        text.append("\n" + _bound(entry), style="dim")
    if word in ("race", "per-request"):
        text.append(f" {entry.get('anomalies')} ({format_rate(entry.get('anomaly_rate'))})")
        if word == "race" or _modes(entry) != "per request":
            text.append("\n" + _modes(entry), style="dim")
    elif word == "unknown" and entry.get("status") == "failed":
        text.append(" (failed)")
    if runs_raced(entry):
        text.append("\n" + runs_raced(entry), style="dim")
    return text


def _anomalies(entry: Mapping[str, Any]) -> str:
    anomalies = entry.get("anomalies")
    if anomalies is None:
        return "unknown"
    return f"{anomalies:,} ({format_rate(entry.get('anomaly_rate'))})"


def _rows_table(
    entries: Sequence[Mapping[str, Any]], title: str | None, width: int
) -> Table:
    # An experiment is named by its mode, store (with its update, when not atomic: the
    # grid's column name, redis:read-write) and window (plus a burst when used);
    # the verdict comes right after them so that a narrow terminal never hides it.
    # Below 90 columns the timing columns are left out (and the ok ops, when a
    # column says how often repeated cells raced).
    narrow = width < 90
    # Narrow: one space less between columns, so that "failure mode" keeps its words.
    table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False,
                  collapse_padding=narrow, caption=_caption(entries), caption_justify="left")
    table.add_column("mode", no_wrap=True)
    table.add_column("store", no_wrap=True)
    table.add_column("window", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("anomalies", justify="right", no_wrap=True)
    repeated = any(e.get("repeats") for e in entries)
    with_ops = not (narrow and repeated)  # room for how often each cell raced
    if with_ops:
        table.add_column("ok ops", justify="right", no_wrap=True)
    table.add_column("failure mode", min_width=12)  # a safe row: its bound
    if repeated:
        table.add_column("raced", justify="right", no_wrap=True)
    if not narrow:
        table.add_column("req/s", justify="right", no_wrap=True)
        table.add_column("p99 ms", justify="right", no_wrap=True)
    for entry in entries:
        config = entry.get("config") or {}
        latency = entry.get("latency_ms") or {}
        mode = cell_key(entry, False)[0] if config.get("mode") else None  # and its interpreter
        window = str(config.get("window") or "?")
        if config.get("burst"):
            window += f" burst {config['burst']}"
        cells: list[Text | str] = [
            Text(str(mode) if mode else str(entry.get("label") or entry.get("id"))),
            Text(str(config.get("store") or "?") + (
                f":{config['update']}" if config.get("update") not in (None, "", "atomic")
                else "")),
            Text(window),
            _verdict_text(entry),
            _anomalies(entry),
            *([_number((entry.get("ops") or {}).get("ok"))] if with_ops else []),
            _bound(entry) or _modes(entry),
        ]
        if repeated:
            cells.append(runs_raced(entry).split(" ")[0] or "-")
        if not narrow:
            cells += [_number(entry.get("throughput_rps")), _number(latency.get("p99"), 1)]
        table.add_row(*cells)
    return table


def _grid_table(entries: Sequence[Mapping[str, Any]], title: str | None) -> Table:
    rows, cols, _ = mode_store_keys(entries)
    multi_window = any("/" in c for c in cols)
    cells = {cell_key(e, multi_window): e for e in entries}
    table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False,
                  caption=_caption(entries), caption_justify="left")
    table.add_column("mode \\ store")
    for col in cols:
        table.add_column(col, overflow="fold")
    for row in rows:
        values: list[Text | str] = [Text(row, style="bold")]
        for col in cols:
            entry = cells.get((row, col))
            values.append(Text("-", style="dim") if entry is None else _cell_text(entry))
        table.add_row(*values)
    return table


def build_table(
    results: Mapping[str, Any], layout: str = "auto", title: str | None = None,
    width: int = 100,
) -> Table:
    """A rich table of a results document.

    Args:
        results: a results.json document.
        layout: ``rows`` (one row per experiment), ``grid`` (modes x stores) or
            ``auto`` (a grid when the experiments form one that fits the width).
        title: optional caption above the table.
        width: the width it will be printed at (narrow tables leave out timings).

    Returns:
        The table; ``-`` in a grid marks a combination that was not run.
    """
    entries = list(results.get("experiments") or ())
    if layout == "auto":
        complete = all((e.get("config") or {}).get("mode") and (e.get("config") or {}).get("store")
                       for e in entries)
        grid = bool(entries) and complete and mode_store_keys(entries)[2]
        # A grid cell needs about 17 columns to stay readable ("race 148 (49%)",
        # "separate copies").
        fits = grid and 16 + 17 * len(mode_store_keys(entries)[1]) <= width
        layout = "grid" if fits else "rows"
    if layout == "grid":
        return _grid_table(entries, title)
    return _rows_table(entries, title, width)


def print_table(
    results: Mapping[str, Any],
    console: Console | None = None,
    layout: str = "auto",
    width: int | None = None,
) -> None:
    """Print the table (and a partial-run warning) to a console, stdout by default."""
    console = console or Console(width=width)
    run = results.get("run") or {}
    if run.get("partial"):
        reason = run.get("partial_reason") or "not every experiment ran"
        console.print(Text(f"PARTIAL RUN: {reason}", style="bold yellow"))
    console.print(build_table(results, layout=layout, width=console.width))


def table_text(results: Mapping[str, Any], width: int = 100, layout: str = "auto") -> str:
    """The table as plain text at a fixed width, without colour (for snapshots and logs)."""
    out = io.StringIO()
    console = Console(file=out, width=width, no_color=True, color_system=None,
                      force_terminal=False, legacy_windows=False)
    print_table(results, console=console, layout=layout)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"
