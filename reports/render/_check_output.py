"""How a verdict and one experiment print in a terminal (and readably when piped).

The words are the report's: ``safe``, ``race``, ``unknown`` (``Verdict.valid``
keeps Jepsen's ``yes`` / ``no`` / ``unknown`` in JSON; docs/checkers.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reports.analysis.failure_modes import (
    FAILURE_MODES,
    SEPARATE_COPIES,
    SHARED_LOST_UPDATE,
    SHARING_UNKNOWN,
    mode_names,
    modes_of,
    verdict_label,
)
from reports.history.verdict import VERDICT_WORDS, Verdict

__all__ = ["print_experiment", "print_verdict"]

_WORD_STYLE = {"safe": "bold green", "race": "bold red", "unknown": "bold yellow",
               "per-request": "bold magenta"}
#: The failure modes across processes, whose evidence is printed.
_ACROSS = {SEPARATE_COPIES, SHARED_LOST_UPDATE, SHARING_UNKNOWN}
_SAYS = {"yes": "no anomaly found", "no": "anomalies found", "unknown": "undecidable"}


def print_verdict(verdict: Verdict, console: Console | None = None, *,
                  modes: Sequence[str] = (), sharing: Mapping[str, Any] | None = None) -> None:
    """Print the verdict line, its failure modes (with the evidence on how the processes
    held the state), the non-zero counts and one sentence per witness."""
    console = console or Console(highlight=False, soft_wrap=True)
    word = VERDICT_WORDS[verdict.valid]
    console.print(
        f"[{_WORD_STYLE[word]}]{word}[/]: {_SAYS[verdict.valid]} ({escape(verdict.checker)})"
    )
    if verdict.reason:
        console.print(escape(verdict.reason))
    for mode in modes:
        name, meaning = FAILURE_MODES.get(mode, (mode, ""))
        console.print(f"failure mode: [bold]{escape(name)}[/]" + (
            f": {escape(meaning)}" if meaning else ""))
    if sharing and sharing.get("why") and _ACROSS & set(modes):
        console.print(f"evidence: {escape(str(sharing['why']))}")
    shown = {k: v for k, v in verdict.counts.items() if v or "[" not in k}
    if shown:
        table = Table("count", "value", box=None, pad_edge=False, show_header=False)
        for key, value in shown.items():
            table.add_row(escape(key.replace("_", " ")), f"{value:,}")
        console.print(table)
    if verdict.witnesses:
        console.print("witnesses:")
        for witness in verdict.witnesses:
            console.print(f"  - [bold]{escape(witness.kind)}[/]: {escape(witness.sentence)}")


def print_experiment(console: Console, entry: Mapping[str, Any], summary: Mapping[str, Any],
                     run_dir: Path) -> None:
    """Print one experiment's analysis (its results.json entry) the way ``racelab swarm`` does.

    Every number comes from ``entry``, the stored analysis, so the terminal, the
    JSON and the report agree.
    """
    ops = entry.get("ops") or {}
    counts = (entry.get("verdict") or {}).get("counts") or {}
    table = Table(title=escape(str(entry.get("label") or run_dir.name)), show_header=False)
    locust = (summary.get("swarm") or {}).get("locust_requests")
    table.add_row("requests", f"{ops.get('total', 0):,}"
                  + (f" (locust: {locust:,})" if locust is not None else ""))
    rate = entry.get("throughput_rps")
    table.add_row("throughput", "-" if rate is None else f"{rate:,.0f} req/s")
    interpreter = entry.get("interpreter") or {}
    if interpreter.get("label"):
        table.add_row("interpreter", escape(f"{interpreter.get('implementation') or 'Python'} "
                                            f"{interpreter.get('python')} "
                                            f"({interpreter['label']})"))
    table.add_row("outcomes", f"ok {ops.get('ok', 0):,}, fail {ops.get('fail', 0):,}, "
                  f"unknown (info) {ops.get('info', 0):,}")
    latency = entry.get("latency_ms")
    if latency:
        table.add_row("latency p50/p95/p99",
                      " / ".join(f"{latency[k]:.1f} ms" for k in ("p50", "p95", "p99")))
    for key, label in (("distinct_values", "distinct values"),
                       ("duplicate_extra_returns", "repeated answers"),
                       ("skipped_values", "skipped values"), ("lost_updates", "lost updates")):
        if key in counts:
            table.add_row(label, f"{counts[key]:,}")
    cost = entry.get("update_cost")
    if cost:
        per = cost.get("retries_per_ok")
        table.add_row(f"{cost.get('update')} update", f"{cost.get('retries', 0):,} retries"
                      + (f" ({per:g} per ok request)" if per else "")
                      + f", {cost.get('aborts', 0):,} gave up")
    spreads = sorted(b["client_ns"] for b in entry.get("burst_spreads") or ()
                     if b.get("requests", 0) > 1 and b.get("client_ns") is not None)
    if spreads:
        table.add_row("burst spread (client, median)", f"{spreads[len(spreads) // 2] / 1e6:.2f} ms")
    console.print(table)
    if interpreter.get("note"):
        console.print(f"[bold yellow]{escape(interpreter['note'])}[/]", soft_wrap=True)
    server = entry.get("server") or {}
    if server.get("died"):
        console.print(f"[bold red]THE SERVER DIED during the swarm (exit codes "
                      f"{server.get('exit_codes')}); see its logs in {escape(str(run_dir))}[/]")
    word = verdict_label(entry)
    verdict = entry.get("verdict") or {}
    names = ", ".join(mode_names(modes_of(entry)))
    console.print(f"verdict: [{_WORD_STYLE[word]}]{word}[/]{f' ({names})' if names else ''} "
                  f"({escape(str(verdict.get('reason')))})", soft_wrap=True)
    sharing = entry.get("sharing") or {}
    if sharing.get("why") and _ACROSS & set(modes_of(entry)):
        console.print(f"evidence: {escape(str(sharing['why']))}", soft_wrap=True)
    for witness in (verdict.get("witnesses") or [])[:3]:
        console.print(f"  - {escape(witness['sentence'])}", soft_wrap=True)
    console.print(f"run directory: {escape(str(run_dir))}  (racelab report {run_dir} --open)",
                  soft_wrap=True)
