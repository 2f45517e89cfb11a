"""The final state of an experiment's store, as the counter checker reads it.

``final.json`` (written by the experiment runner) is::

    {"available": true, "reason": "", "per_process": false,
     "states": [{"pid": 411, "value": 500, "served": 500, "url": "http://..."}, ...]}

A plain integer stands for one shared final value (``racelab check --final N``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["FinalState", "ProcessState", "UnreadableFinal", "parse_final", "read_final_file"]

_MAX_FINAL_BYTES = 64 << 20  # a final.json holds one entry per server process


class UnreadableFinal(ValueError):
    """The final state is not in the expected shape; the message says what is wrong."""


@dataclasses.dataclass(frozen=True)
class ProcessState:
    """One process's view of the store after the swarm."""

    pid: int | None
    value: int
    served: int | None = None


@dataclasses.dataclass(frozen=True)
class FinalState:
    """The store after the swarm.

    Attributes:
        available: False when the runner could not read it (``reason`` says why).
        per_process: every process keeps its own copy (``None``: not said).
        states: one entry per process that answered (one for a plain integer).
        cut_short: why the run that left this state ended early (interrupted, the
            server died, the swarm timed out), or ``""``: requests may then have
            changed the state without leaving a row in the history.
    """

    available: bool
    reason: str = ""
    per_process: bool | None = None
    states: tuple[ProcessState, ...] = ()
    cut_short: str = ""


def _int(data: Mapping[str, Any], key: str, where: str, required: bool) -> int | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnreadableFinal(f"{where}: {key!r} must be an integer, got {value!r}")
    return value


def parse_final(final: Any) -> FinalState | None:
    """Turn ``None``, an integer or a ``final.json`` mapping into a ``FinalState``.

    Raises:
        UnreadableFinal: for anything else, or a mapping of the wrong shape.
    """
    if final is None or isinstance(final, FinalState):
        return final
    if isinstance(final, int) and not isinstance(final, bool):
        return FinalState(available=True, per_process=False, states=(ProcessState(None, final),))
    if not isinstance(final, Mapping):
        raise UnreadableFinal(f"expected an integer or a mapping, got {type(final).__name__}")
    available = final.get("available", True)
    reason = str(final.get("reason") or "")
    per_process = final.get("per_process")
    if per_process is not None and not isinstance(per_process, bool):
        raise UnreadableFinal(f"'per_process' must be true or false, got {per_process!r}")
    cut_short = final.get("cut_short") or ""
    if not isinstance(cut_short, str):
        raise UnreadableFinal(f"'cut_short' must be a sentence, got {cut_short!r}")
    if not available:
        return FinalState(False, reason or "the runner could not read it", per_process,
                          cut_short=cut_short)
    raw = final.get("states")
    if not isinstance(raw, list) or not raw:
        raise UnreadableFinal("'states' must be a non-empty list")
    states = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise UnreadableFinal(f"states[{i}] must be a mapping, got {item!r}")
        where = f"states[{i}]"
        value = _int(item, "value", where, required=True)
        assert value is not None
        states.append(ProcessState(
            _int(item, "pid", where, required=False), value,
            _int(item, "served", where, required=False),
        ))
    return FinalState(True, reason, per_process, tuple(states), cut_short)


def read_final_file(path: Path | str) -> Any:
    """Read a ``final.json`` file as JSON (its shape is checked by ``parse_final``).

    Raises:
        UnreadableFinal: not a regular file (a FIFO or device would block), too
            large, not UTF-8, not JSON, or nested too deeply.
    """
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFinal("not a regular file; give final.json")
        if info.st_size > _MAX_FINAL_BYTES:
            raise UnreadableFinal(f"{info.st_size:,} bytes; a final state is far smaller")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UnreadableFinal(exc.strerror or str(exc)) from None
    except UnicodeDecodeError as exc:
        raise UnreadableFinal(f"not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise UnreadableFinal("JSON nested too deeply") from None
    except ValueError as exc:
        raise UnreadableFinal(f"not JSON: {exc}") from None
