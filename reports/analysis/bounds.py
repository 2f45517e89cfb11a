"""How much a clean run says: an upper bound on the anomaly rate, and how often a cell raced.

"safe" after 400 requests is a measurement, not a proof. With 0 anomalies in
``n`` ok requests, the exact one-sided binomial (Clopper-Pearson) bound at
confidence ``c`` is ``1 - (1 - c) ** (1 / n)``: the largest rate at which seeing
no anomaly at all still had a chance of at least ``1 - c``. At 95% that is
close to the rule of three, ``3 / n`` (0.75% for 400). A cell run ``N`` times
that raced ``k`` times gets a Wilson score interval for how often it races.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "CONFIDENCE",
    "METHOD",
    "bound_rate",
    "bound_sentence",
    "bound_short",
    "repeat_sentence",
    "repeats_summary",
    "runs_raced",
    "safe_bound",
    "wilson",
    "zero_upper_bound",
]

CONFIDENCE = 0.95
METHOD = "exact binomial, one-sided Clopper-Pearson"
_Z = {0.90: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}


def zero_upper_bound(n: int, confidence: float = CONFIDENCE) -> float:
    """The exact upper bound on a rate when 0 of ``n`` trials showed it.

    Args:
        n: trials (ok requests), at least 1.
        confidence: e.g. 0.95.

    Returns:
        ``1 - (1 - confidence) ** (1 / n)`` (the rule of three, ``3 / n``, is its
        approximation at 95%).
    """
    if n < 1:
        raise ValueError("a bound needs at least one trial")
    return 1.0 - (1.0 - confidence) ** (1.0 / n)


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n``.

    Args:
        k: successes (runs that raced), 0 <= k <= n.
        n: trials (runs), at least 1.
        confidence: 0.90, 0.95 or 0.99.

    Returns:
        ``(low, high)``, both within [0, 1].
    """
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    z = _Z[confidence]
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def safe_bound(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The bound a safe experiment earns: ``None`` unless its verdict is ``yes``.

    Returns:
        ``{"anomalies": 0, "ok": n, "upper": rate, "confidence": 0.95,
        "method": METHOD, "rule_of_three": 3 / n}``.
    """
    if (entry.get("verdict") or {}).get("valid") != "yes":
        return None
    n = int((entry.get("ops") or {}).get("ok") or 0)
    if n < 1:
        return None
    return {"anomalies": 0, "ok": n, "upper": round(zero_upper_bound(n), 6),
            "confidence": CONFIDENCE, "method": METHOD, "rule_of_three": round(3 / n, 6)}


def _percent(rate: float) -> str:
    percent = rate * 100
    if percent >= 10:
        return f"{percent:.0f}%"
    if percent >= 1:
        return f"{percent:.1f}%"
    return f"{percent:.2g}%"


def bound_rate(bound: Mapping[str, Any] | None) -> str:
    """``<0.75%``: the bound's rate alone, where its confidence is said once (a heatmap's
    caption); empty without one."""
    if not bound:
        return ""
    return f"<{_percent(float(bound['upper']))}"


def bound_short(bound: Mapping[str, Any] | None) -> str:
    """``<0.75% at 95%``: the bound alone, for a table cell; empty without one."""
    if not bound:
        return ""
    return f"<{_percent(float(bound['upper']))} at {float(bound['confidence']):.0%}"


def bound_sentence(bound: Mapping[str, Any] | None) -> str:
    """``0 anomalies in 400 ok requests: below 0.75% at 95% confidence (exact binomial ...)``."""
    if not bound:
        return ""
    return (f"0 anomalies in {int(bound['ok']):,} ok requests: below "
            f"{_percent(float(bound['upper']))} at {float(bound['confidence']):.0%} confidence "
            f"({bound.get('method') or METHOD}; the rule of three gives "
            f"{_percent(float(bound.get('rule_of_three') or 3 / int(bound['ok'])))})")


def repeats_summary(valids: Sequence[str]) -> dict[str, Any] | None:
    """How often a cell run several times raced; ``None`` for fewer than two runs.

    Args:
        valids: each run's verdict (``yes`` / ``no`` / ``unknown``), the cell's
            own run first.

    Returns:
        ``{"runs", "raced", "safe", "unknown", "valid": [...], "wilson": [low, high],
        "confidence"}``; the interval is over the runs that could be judged.
    """
    valids = [str(v) for v in valids]
    if len(valids) < 2:
        return None
    raced = valids.count("no")
    judged = raced + valids.count("yes")
    interval = wilson(raced, judged) if judged else (0.0, 1.0)
    return {"runs": len(valids), "raced": raced, "safe": valids.count("yes"),
            "unknown": len(valids) - judged, "valid": valids,
            "wilson": [round(interval[0], 4), round(interval[1], 4)], "confidence": CONFIDENCE}


def repeat_sentence(repeats: Mapping[str, Any] | None) -> str:
    """``raced in 3 of 5 runs (Wilson 95% interval 23% to 88%)``; empty without repeats."""
    if not repeats:
        return ""
    low, high = repeats.get("wilson") or (0.0, 1.0)
    judged = int(repeats["raced"]) + int(repeats.get("safe", 0))
    text = (f"raced in {int(repeats['raced'])} of {judged} runs (Wilson "
            f"{float(repeats.get('confidence', CONFIDENCE)):.0%} interval {low:.0%} to "
            f"{high:.0%})")
    if repeats.get("unknown"):
        text += f"; {int(repeats['unknown'])} more could not be judged"
    return text


def runs_raced(entry: Mapping[str, Any]) -> str:
    """``3/5 runs raced`` for a cell run several times; empty otherwise."""
    repeats = entry.get("repeats")
    if not repeats:
        return ""
    judged = int(repeats["raced"]) + int(repeats.get("safe", 0))
    return f"{repeats['raced']}/{judged} runs raced"
