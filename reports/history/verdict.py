"""Verdicts: what a checker concludes from a history, with the evidence.

``valid`` is ``"yes"``, ``"no"`` or ``"unknown"`` (Jepsen's words, kept in
JSON); composing verdicts lets "no" beat "unknown" beat "yes" (Jepsen's rule).
Unknown always carries a reason. Wherever a person reads a verdict (terminal,
HTML, ``racelab check``'s first line) it is one of ``VERDICT_WORDS``: ``safe``,
``race`` or ``unknown``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Literal

__all__ = [
    "ANOMALY_COUNTS",
    "VERDICT_WORDS",
    "Valid",
    "Verdict",
    "Witness",
    "anomaly_count",
    "compose",
    "verdict_word",
]

Valid = Literal["yes", "no", "unknown"]
#: The word a person reads for each ``valid``.
VERDICT_WORDS = {"yes": "safe", "no": "race", "unknown": "unknown"}
_RANK = {"yes": 0, "unknown": 1, "no": 2}


@dataclasses.dataclass(frozen=True)
class Witness:
    """Concrete operations that prove one anomaly.

    Args:
        kind: the anomaly (``duplicate``, ``skipped``, ``lost-update``,
            ``real-time-order``, ...).
        sentence: one plain sentence a student can read.
        op_ids: the history rows involved.
        details: values, pids, threads, times (JSON-serialisable).
    """

    kind: str
    sentence: str
    op_ids: tuple[int, ...] = ()
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sentence": self.sentence,
            "op_ids": list(self.op_ids),
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Witness:
        return cls(
            kind=data["kind"],
            sentence=data["sentence"],
            op_ids=tuple(data.get("op_ids", ())),
            details=dict(data.get("details", {})),
        )


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A checker's conclusion.

    Args:
        checker: the checker's name (``counter``, ``unique-ids``, ...; composed
            verdicts join the names with ``+``).
        valid: ``yes``, ``no`` or ``unknown``.
        counts: named numbers the checker measured.
        witnesses: evidence, a few per kind of anomaly.
        reason: why the verdict is unknown (or a short summary otherwise).
    """

    checker: str
    valid: Valid
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    witnesses: tuple[Witness, ...] = ()
    reason: str = ""

    def __post_init__(self) -> None:
        if self.valid not in _RANK:
            raise ValueError(f"valid must be yes, no or unknown, got {self.valid!r}")
        if self.valid == "unknown" and not self.reason:
            raise ValueError("an unknown verdict needs a reason")

    def to_dict(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "valid": self.valid,
            "counts": dict(self.counts),
            "witnesses": [w.to_dict() for w in self.witnesses],
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            checker=data["checker"],
            valid=data["valid"],
            counts=dict(data.get("counts", {})),
            witnesses=tuple(Witness.from_dict(w) for w in data.get("witnesses", ())),
            reason=data.get("reason", ""),
        )


def compose(verdicts: Iterable[Verdict], checker: str | None = None) -> Verdict:
    """Merge verdicts: no beats unknown beats yes; counts and witnesses are pooled.

    Args:
        verdicts: at least one verdict.
        checker: name of the result; defaults to the names joined with ``+``.

    Returns:
        One verdict.
    """
    items = list(verdicts)
    if not items:
        return Verdict(checker or "none", "unknown", reason="no checker ran")
    valid: Valid = max((v.valid for v in items), key=_RANK.__getitem__)
    counts: dict[str, int] = {}
    for v in items:
        for key, value in v.counts.items():
            counts[key] = counts.get(key, 0) + value if key in counts else value
    reasons = [f"{v.checker}: {v.reason}" for v in items if v.reason and v.valid == valid]
    return Verdict(
        checker=checker or "+".join(v.checker for v in items),
        valid=valid,
        counts=counts,
        witnesses=tuple(w for v in items for w in v.witnesses),
        reason="; ".join(reasons),
    )


# Views of "how many operations went wrong" a checker may count. They overlap (a
# lost update usually shows as a repeated number too), so the largest is used.
ANOMALY_COUNTS: tuple[tuple[str, ...], ...] = (
    ("duplicate_extra_returns",),
    ("real_time_violations",),
    ("lost_updates",),
    ("skipped_unexplained",),
    ("final_excess",),
)


def verdict_word(entry: Mapping[str, Any]) -> str:
    """The one word reports use for an experiment: ``safe``, ``race`` or ``unknown``.

    ``safe`` means no anomaly was seen in this run; it is only ever given for a
    verdict whose ``valid`` is exactly ``yes``.
    """
    valid = (entry.get("verdict") or {}).get("valid")
    return VERDICT_WORDS.get(str(valid), "unknown")


def anomaly_count(verdict: Mapping[str, Any]) -> int | None:
    """How many operations a verdict found anomalous; ``None`` when it is unknown.

    An ``anomalies`` count is taken as is. Otherwise it is the largest of the
    views in ``ANOMALY_COUNTS`` (responses that repeated a number; responses out
    of real-time order; lost updates; numbers skipped without explanation; final
    excess), never more than the ok responses. A verdict of ``no`` counts at
    least its witnesses, so a race never shows zero anomalies.
    """
    if verdict.get("valid") == "unknown":
        return None
    counts = verdict.get("counts") or {}
    if "anomalies" in counts:
        return int(counts["anomalies"])
    total = max(sum(int(counts.get(key) or 0) for key in view) for view in ANOMALY_COUNTS)
    if counts.get("ok"):
        # One response can be both a repeat and out of order: never more than were answered.
        total = min(total, int(counts["ok"]))
    if verdict.get("valid") == "no":
        total = max(total, len(verdict.get("witnesses") or ()), 1)
    return total
