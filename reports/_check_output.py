"""How ``racelab check`` prints a verdict in a terminal (and readably when piped)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reports.verdict import Verdict

__all__ = ["print_verdict"]

_STYLE = {"yes": "bold green", "no": "bold red", "unknown": "bold yellow"}
_SAYS = {"yes": "valid", "no": "anomalies found", "unknown": "undecidable"}


def print_verdict(verdict: Verdict, console: Console | None = None) -> None:
    """Print the verdict line, the non-zero counts and one sentence per witness."""
    console = console or Console(highlight=False, soft_wrap=True)
    style = _STYLE[verdict.valid]
    console.print(
        f"[{style}]{verdict.valid}[/]: {_SAYS[verdict.valid]} ({escape(verdict.checker)})"
    )
    if verdict.reason:
        console.print(escape(verdict.reason))
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
