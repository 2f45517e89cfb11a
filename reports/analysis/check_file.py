"""What ``racelab check`` does with a file: recognise its format, read it, run the checkers.

Formats: ``csv`` (racelab's history), ``parquet`` (``write_parquet``'s), and
Jepsen histories as ``jepsen-json`` or ``jepsen-edn`` (see ``reports.analysis.jepsen``).
The format is recognised from the content (Parquet's magic bytes; a first
character ``[`` or ``{`` followed by a JSON string or an EDN keyword), never
from the file's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reports.analysis.checking import check_history, checkers_for, columns_for
from reports.analysis.failure_modes import failure_modes
from reports.analysis.jepsen import check_jepsen, read_jepsen, sniff_text
from reports.analysis.sharing import GIVEN, SEPARATE, sharing
from reports.history.checkers import CHECKER_OPS
from reports.history.table import HistoryTable, MalformedHistory, read_history, where_of
from reports.history.verdict import Verdict

__all__ = ["FORMATS", "check_file", "check_file_modes", "detect_format", "file_failure_modes",
           "refuse_unknown_ops"]

FORMATS = ("csv", "parquet", "jepsen-json", "jepsen-edn")


def detect_format(path: Path | str) -> str:
    """The format of a history file, from its first bytes.

    Raises:
        MalformedHistory: the file cannot be opened or is not a regular file.
    """
    path = Path(path)
    try:
        if not path.is_file():
            read_history(path)  # raises the reader's own message (FIFO, directory, missing)
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise MalformedHistory(f"cannot open: {exc.strerror or exc}") from None
    if head.startswith(b"PAR1"):
        return "parquet"
    kind = sniff_text(head.decode("utf-8", errors="replace"))
    return f"jepsen-{kind}" if kind else "csv"


def refuse_unknown_ops(table: HistoryTable, scenario: str) -> None:
    """Refuse a history with an op that the scenario's checkers do not read.

    Raises:
        MalformedHistory: naming the first such row and its op.
    """
    names = checkers_for(scenario)
    if any(name not in CHECKER_OPS for name in names):
        return  # some checker reads every op
    accepted = {op for name in names for op in CHECKER_OPS[name]}
    unknown = [code for code, op in enumerate(table.op_names) if op not in accepted]
    if not unknown or not len(table):
        return
    rows = np.flatnonzero(np.isin(table.op, unknown))
    if not rows.size:
        return
    row = int(rows[0])
    op = table.op_names[int(table.op[row])]
    checker = "+".join(names)
    raise MalformedHistory(
        f"the {checker} checker does not know op {op!r} (it reads: "
        f"{', '.join(sorted(accepted))}); {rows.size:,} of {len(table):,} rows have ops it "
        "does not read", where_of(table, row), "op")


def check_file(path: Path | str, fmt: str | None = None, *, final: Any = None,
               scenario: str = "counter", per_process: bool = False,
               server_problem: str | None = None, reset: str | None = None) -> Verdict:
    """Read a history file in any format and check it.

    Args:
        path: the history.
        fmt: one of ``FORMATS``; ``None`` recognises it from the content.
        final: the final state (``None``, an integer, or a ``final.json`` mapping).
        scenario: which checkers run on racelab histories; a Jepsen history's
            ``:f`` values choose its checkers.
        per_process: each server process keeps its own state, unless ``final`` says.
        server_problem: what makes the run at best unknown (its faults, a cut-short
            run; ``reports.analysis.results.run_context``), or None.
        reset: what emptied the store during the run, or None (see ``check_history``).

    Returns:
        The verdict.

    Raises:
        MalformedHistory: the file is malformed, or holds ops no checker reads.
        ConfigError: an unknown scenario.
    """
    return check_file_modes(path, fmt, final=final, scenario=scenario,
                            per_process=per_process, server_problem=server_problem,
                            reset=reset)[0]


def check_file_modes(path: Path | str, fmt: str | None = None, *, final: Any = None,
                     scenario: str = "counter", per_process: bool = False,
                     server_problem: str | None = None, reset: str | None = None,
                     stated: bool = False) -> tuple[Verdict, list[str], dict[str, Any]]:
    """``check_file``, with the failure modes of its verdict and the sharing evidence.

    A history from anywhere says nothing of how its server kept its state: whether
    repeats across processes come from one shared state updated in two steps or a
    copy per process is told from the values and the final state alone
    (``reports.analysis.sharing``), unless the user said so (``stated``: ``--per-process``).

    Returns:
        (the verdict, its failure mode keys, ``{"state", "why", "source"}``).

    Raises:
        MalformedHistory: the file is malformed, or holds ops no checker reads.
        ConfigError: an unknown scenario.
    """
    found = detect_format(path)
    if fmt in ("csv", "parquet") and found in ("csv", "parquet") and fmt != found:
        raise MalformedHistory(f"not a {fmt} file: its content is {found}")
    fmt = fmt or found
    table: HistoryTable | None = None
    if fmt.startswith("jepsen-"):
        ops = read_jepsen(path, fmt.removeprefix("jepsen-"))
        verdict = check_jepsen(ops, final, per_process=per_process,
                               server_problem=server_problem, reset=reset)
    else:
        # Only what the checkers read is kept in memory; every column is still checked.
        table = read_history(path, columns_for(scenario))
        refuse_unknown_ops(table, scenario)
        verdict = check_history(table, final=final, scenario=scenario, per_process=per_process,
                                server_problem=server_problem, reset=reset)
    modes, evidence = file_failure_modes(verdict, table, final=final, scenario=scenario,
                                         per_process=per_process, stated=stated)
    return verdict, modes, evidence


def file_failure_modes(verdict: Verdict, table: HistoryTable | None, *, final: Any = None,
                       scenario: str = "counter", per_process: bool = False,
                       stated: bool = False) -> tuple[list[str], dict[str, Any]]:
    """The failure modes of a checked history file, told from its evidence.

    Args:
        per_process: each process kept its own state (said by the user, ``stated``, or
            by the run the history came from): it stands where the evidence is silent.

    Returns:
        (failure mode keys, the sharing evidence ``{"state", "why", "source"}``).
    """
    entry: dict[str, Any] = {"verdict": verdict.to_dict(), "config": {"scenario": scenario},
                             "final": final if isinstance(final, dict) else None}
    if per_process and isinstance(entry["final"], dict) and \
            entry["final"].get("per_process") is None:
        entry["final"] = {**entry["final"], "per_process": True}
    if stated:
        entry["sharing"] = {"state": SEPARATE, "source": GIVEN,
                            "why": "--per-process says each process keeps its own copy"}
    evidence = sharing(entry, table)
    if per_process and not stated and not evidence.get("state"):
        evidence = {"state": SEPARATE, "source": "store",
                    "why": "its run kept a copy of the state in each process"}
    return failure_modes({**entry, "sharing": evidence}, table), evidence
