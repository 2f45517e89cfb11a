"""The terminal table of a run: one line per experiment, or a mode x store grid per scenario.

A grid is printed only to a terminal wider than 80 columns that it fits; a pipe, a
log or a narrower terminal gets one line per experiment.

Colour only decorates: every verdict is also a word (``race``, ``safe``,
``unknown``), so the table reads the same piped, under ``NO_COLOR`` or printed.
An unknown verdict is always written ``unknown``, never left blank.

A run of several scenarios is printed one scenario after another, each under
its title; a one-scenario run has no title line. Every name printed is the one
the analysis stored (``entry["names"]``, ``results["scenarios"]``,
``results["grid"]``).

In rows, the experiments of a run whose cells ran under several interpreters are
grouped by interpreter too, the interpreter named in the group's title. An
experiment is one line: the table takes the richest of its layouts that fits
the width (timings, then the ok ops, are left out; then the verdict and its
count share a column, the store and its window another; then the count gives way
to the rate alone), so that a log at 80 columns crops no word and never wraps a
row into a second line. Where no one-line layout fits, each experiment's failure
mode (or a safe cell's bound) moves to a line of its own under its row, indented;
only a cell too long even then wraps, at a space.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from reports.analysis.bounds import bound_short, runs_raced
from reports.analysis.failure_modes import mode_names, modes_of, verdict_label

__all__ = ["STYLES", "build_table", "format_rate", "print_table", "table_text"]

STYLES = {"race": "bold red", "safe": "green", "unknown": "yellow", "per-request": "magenta"}
#: Spaces between two columns of a row: a padding of one and the box's separator.
GAP = 2
#: The widest a grid cell may need to stay readable ("race 148 (49%)", "separate copies").
GRID_CELL = 17
GRID_ROWS = 16
#: A log's width: at it (or piped) the table is one line per experiment.
LOG_WIDTH = 80


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


def _modes(entry: Mapping[str, Any]) -> str:
    """The failure modes an anomalous cell shows, as printed names (``-`` for none)."""
    return ", ".join(mode_names(modes_of(entry))) or "-"


def _bound(entry: Mapping[str, Any]) -> str:
    """A safe cell's bound on its anomaly rate (``<0.75% at 95%``); empty for others."""
    return bound_short(entry.get("safe_bound"))


def _caption(entries: Sequence[Mapping[str, Any]]) -> Text | None:
    """What a safe cell's bound means, under a table that shows one."""
    if not any(_bound(e) for e in entries):
        return None
    return Text("safe <x% at 95%: no anomaly in its ok requests, so its anomaly rate is below "
                "x% at 95% confidence (exact binomial)")


def _names(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    return entry.get("names") or {}


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


# -- one line per experiment --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Which columns a rows table shows, from the richest (0) to the most compact."""

    timings: bool = True
    ok_ops: bool = True
    verdict_with_count: bool = False  # "race 274 (68%)" in one column
    store_with_window: bool = False  # "global/yield" in one column
    rate_only: bool = False  # "race 68%"
    gap: int = GAP
    stacked: bool = False  # the failure mode on a line of its own, under its row


_LAYOUTS = (
    _Layout(gap=GAP + 1),
    _Layout(),
    _Layout(timings=False),
    _Layout(timings=False, ok_ops=False),
    _Layout(timings=False, ok_ops=False, verdict_with_count=True),
    _Layout(timings=False, ok_ops=False, verdict_with_count=True, store_with_window=True),
    _Layout(timings=False, ok_ops=False, verdict_with_count=True, store_with_window=True,
            rate_only=True),
    _Layout(timings=False, ok_ops=False, verdict_with_count=True, store_with_window=True,
            rate_only=True, gap=1),
    _Layout(timings=False, ok_ops=False, verdict_with_count=True, store_with_window=True,
            rate_only=True, gap=1, stacked=True),
)
#: How far a stacked failure mode is indented under its row.
STACK_INDENT = 2


@dataclasses.dataclass
class _Column:
    header: str
    right: bool = False
    last: bool = False  # the one column that may wrap, at a space


def _verdict_cell(entry: Mapping[str, Any], layout: _Layout) -> Text:
    word = verdict_label(entry)
    text = Text(word, style=STYLES[word])
    if not layout.verdict_with_count:
        return text
    if word in ("race", "per-request"):
        rate = format_rate(entry.get("anomaly_rate"))
        text.append(f" {rate}" if layout.rate_only
                    else f" {entry.get('anomalies'):,} ({rate})")
    elif word == "unknown" and entry.get("status") == "failed":
        text.append(" (failed)")
    return text


def _row_cells(entry: Mapping[str, Any], layout: _Layout, variants: bool, repeated: bool
               ) -> list[tuple[str, Text]]:
    """(column header, cell) of one experiment, in the order they are printed."""
    names = _names(entry)
    config = entry.get("config") or {}
    latency = entry.get("latency_ms") or {}
    mode = str(names.get("mode") or config.get("mode") or entry.get("label") or entry.get("id"))
    store = str(names.get("store") or config.get("store") or "?")
    window = str(names.get("window") or config.get("window") or "")
    variant = _row_variant(names)
    cells: list[tuple[str, Text]] = [("mode", Text(mode))]
    if layout.store_with_window:
        whole = store + (f"/{window}" if window else "") + (f" · {variant}" if variant else "")
        cells.append(("store/window", Text(whole)))
    else:
        cells += [("store", Text(store)), ("window", Text(window or "-"))]
        if variants:
            cells.append(("variant", Text(variant or "-")))
    cells.append(("verdict", _verdict_cell(entry, layout)))
    if not layout.verdict_with_count:
        cells.append(("anomalies", Text(_anomalies(entry))))
    if layout.ok_ops:
        cells.append(("ok ops", Text(_number((entry.get("ops") or {}).get("ok")))))
    if not layout.stacked:
        cells.append(("failure mode", Text(_bound(entry) or _modes(entry))))  # safe: its bound
    if repeated:
        cells.append(("raced", Text(runs_raced(entry).split(" ")[0] or "-")))
    if layout.timings:
        cells += [("req/s", Text(_number(entry.get("throughput_rps")))),
                  ("p99 ms", Text(_number(latency.get("p99"), 1)))]
    return cells


def _row_variant(names: Mapping[str, Any]) -> str:
    """The variant a row shows: its interpreter is in its group's title instead."""
    variant = str(names.get("variant") or "")
    interpreter = str(names.get("interpreter") or "")
    if interpreter and variant.endswith(interpreter):
        variant = variant[: -len(interpreter)].removesuffix(" · ").strip()
    return variant


_RIGHT = {"anomalies", "ok ops", "raced", "req/s", "p99 ms"}


def _group_rows(entries: Sequence[Mapping[str, Any]], layout: _Layout, repeated: bool
                ) -> tuple[list[str], list[list[Text]]]:
    variants = any(_row_variant(_names(e)) for e in entries)
    rows = [_row_cells(e, layout, variants, repeated) for e in entries]
    headers = [h for h, _ in rows[0]] if rows else []
    return headers, [[cell for _, cell in row] for row in rows]


def _widths(headers: list[str], rows: list[list[Text]]) -> list[int]:
    return [max([len(h)] + [r[i].cell_len for r in rows]) for i, h in enumerate(headers)]


def _fits(groups: Sequence[Sequence[Mapping[str, Any]]], layout: _Layout, repeated: bool,
          width: int) -> bool:
    for entries in groups:
        headers, rows = _group_rows(entries, layout, repeated)
        widths = _widths(headers, rows)
        if sum(widths) + layout.gap * (len(widths) - 1) > width:
            return False
        if layout.stacked and any(len(word) + STACK_INDENT > width
                                  for e in entries for word in _stacked_text(e).split()):
            return False
    return True


def _stacked_text(entry: Mapping[str, Any]) -> str:
    return _bound(entry) or _modes(entry)


def _rows_table(entries: Sequence[Mapping[str, Any]], layout: _Layout, repeated: bool,
                width: int) -> Table | Group:
    headers, rows = _group_rows(entries, layout, repeated)
    widths = _widths(headers, rows)
    if layout.stacked:
        return _stacked_table(entries, headers, rows, widths)
    last = headers.index("failure mode")
    spare = width - (sum(widths) + layout.gap * (len(widths) - 1))
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, pad_edge=False,
                  padding=(0, 1) if layout.gap > 1 else (0, 0),
                  collapse_padding=layout.gap <= GAP)
    for i, header in enumerate(headers):
        if i == last and spare < 0:
            # Too long for any layout: the failure modes wrap at a space, never inside a word.
            longest = max([len(w) for r in rows for w in r[i].plain.split()] + [len(header)])
            table.add_column(header, min_width=max(longest, widths[i] + spare),
                             overflow="fold")
        else:
            table.add_column(header, width=widths[i], no_wrap=True,
                             justify="right" if header in _RIGHT else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _stacked_table(entries: Sequence[Mapping[str, Any]], headers: list[str],
                   rows: list[list[Text]], widths: list[int]) -> Group:
    """Each experiment's row, then its failure mode (or bound) on a line of its own,
    indented: no row is wider than the width, and no cell starts mid-line."""

    def line(cells: Sequence[Text], style: str = "") -> Text:
        out = Text(style=style)
        for i, (cell, size) in enumerate(zip(cells, widths, strict=True)):
            pad = " " * (size - cell.cell_len)
            out.append_text(Text(pad) + cell if headers[i] in _RIGHT else cell + Text(pad))
            if i < len(cells) - 1:
                out.append(" ")
        out.rstrip()
        return out

    lines = [line([Text(h) for h in headers], style="bold"),
             Text("─" * (sum(widths) + len(widths) - 1))]
    for entry, row in zip(entries, rows, strict=True):
        lines.append(line(row))
        lines.append(Text(" " * STACK_INDENT + _stacked_text(entry), style="dim"))
    return Group(*lines)


def _groups(results: Mapping[str, Any]) -> list[tuple[str, str, list[Mapping[str, Any]]]]:
    """The run's scenarios, in order, each with its experiments, split by interpreter
    where the run names interpreters: (the scenario's title when the run holds several,
    the interpreter when the run names them, the experiments); a one-scenario run under
    one interpreter is one group with neither."""
    entries = [e for e in results.get("experiments") or () if isinstance(e, Mapping)]
    by_id = {str(e.get("id")): e for e in entries}
    scenarios = list(results.get("scenarios") or ())
    if len(scenarios) <= 1:
        parts = [("", entries)]
    else:
        parts = [(str(s.get("title") or s.get("name")),
                  [by_id[i] for i in s.get("ids") or () if i in by_id]) for s in scenarios]
    groups: list[tuple[str, str, list[Mapping[str, Any]]]] = []
    for title, group in parts:
        by_interpreter: dict[str, list[Mapping[str, Any]]] = {}
        for entry in group:
            by_interpreter.setdefault(str(_names(entry).get("interpreter") or ""),
                                      []).append(entry)
        for interpreter, members in by_interpreter.items():
            groups.append((title, interpreter, members))
    return groups


def _rows(results: Mapping[str, Any], title: str | None, width: int) -> list[RenderableType]:
    groups = _groups(results)
    entries = [e for _, _, group in groups for e in group]
    repeated = any(e.get("repeats") for e in entries)
    lists = [group for _, _, group in groups if group]
    layout = next((lay for lay in _LAYOUTS if _fits(lists, lay, repeated, width)), _LAYOUTS[-1])
    parts: list[RenderableType] = []
    if title:
        parts.append(Text(title, style="bold"))
    for heading, interpreter, group in groups:
        if not group:
            continue
        if heading:
            parts.append(Text(heading, style="bold underline"))
        if interpreter:
            parts.append(Text(f"served by {interpreter}", style="bold"))
        parts.append(_rows_table(group, layout, repeated, width))
        parts.append(Text(""))
    caption = _caption(entries)
    if caption is not None:
        parts.append(caption)
    elif parts and isinstance(parts[-1], Text) and not parts[-1].plain:
        parts.pop()
    return parts


# -- a grid per scenario ------------------------------------------------------------------


def _grid_table(grid: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    table.add_column("mode \\ store")
    for col in grid.get("stores") or ():
        table.add_column(str(col), overflow="fold")
    for mode, row in zip(grid.get("modes") or (), grid.get("cells") or (), strict=True):
        values: list[Text | str] = [Text(str(mode), style="bold")]
        for cell in row:
            entry = by_id.get(str(cell)) if cell is not None else None
            values.append(Text("-", style="dim") if entry is None else _cell_text(entry))
        table.add_row(*values)
    return table


def _grid(results: Mapping[str, Any], title: str | None) -> list[RenderableType]:
    entries = [e for e in results.get("experiments") or () if isinstance(e, Mapping)]
    by_id = {str(e.get("id")): e for e in entries}
    grids = list(results.get("grid") or ())
    parts: list[RenderableType] = []
    if title:
        parts.append(Text(title, style="bold"))
    for grid in grids:
        if len(grids) > 1:
            parts.append(Text(str(grid.get("title") or grid.get("scenario")),
                              style="bold underline"))
        parts.append(_grid_table(grid, by_id))
    caption = _caption(entries)
    if caption is not None:
        parts.append(caption)
    return parts


def _grid_fits(results: Mapping[str, Any], width: int) -> bool:
    entries = list(results.get("experiments") or ())
    grids = list(results.get("grid") or ())
    complete = all((e.get("config") or {}).get("mode") and (e.get("config") or {}).get("store")
                   for e in entries)
    if len(entries) < 2 or not complete or not grids:
        return False
    if len(grids) == 1 and len(grids[0].get("modes") or ()) * len(grids[0].get("stores") or ()
                                                                   ) < 2:
        return False
    # A grid cell needs about 17 columns to stay readable ("race 148 (49%)",
    # "separate copies").
    return all(GRID_ROWS + GRID_CELL * len(g.get("stores") or ()) <= width for g in grids)


def build_table(
    results: Mapping[str, Any], layout: str = "auto", title: str | None = None,
    width: int = 100, terminal: bool = False,
) -> RenderableType:
    """The table of a results document, ready to print.

    Args:
        results: a results.json document.
        layout: ``rows`` (one line per experiment), ``grid`` (modes x stores, one grid
            per scenario) or ``auto``: grids on a terminal wider than 80 columns where
            every one fits, else rows (a pipe or a log reads one line per experiment
            best: a grid's cell takes two lines).
        title: optional caption above the table.
        width: the width it will be printed at (the rows take the richest layout that
            fits it).
        terminal: whether it is printed to a terminal (rather than a pipe or a file).

    Returns:
        The table(s), each scenario under its title when there are several; ``-`` in
        a grid marks a combination that was not run.
    """
    if layout == "auto":
        grid = terminal and width > LOG_WIDTH and _grid_fits(results, width)
        layout = "grid" if grid else "rows"
    parts = _grid(results, title) if layout == "grid" else _rows(results, title, width)
    return Group(*parts)


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
    console.print(build_table(results, layout=layout, width=console.width,
                              terminal=console.is_terminal))


def table_text(results: Mapping[str, Any], width: int = 100, layout: str = "auto",
               terminal: bool = False) -> str:
    """The table as plain text at a fixed width, without colour (for snapshots and logs);
    ``terminal`` lays it out as for a terminal of that width."""
    out = io.StringIO()
    console = Console(file=out, width=width, no_color=True, color_system=None,
                      force_terminal=terminal, legacy_windows=False)
    print_table(results, console=console, layout=layout)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"
