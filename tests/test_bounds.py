"""reports.analysis.bounds: the bound a clean run earns and how often a repeated cell raced."""

from __future__ import annotations

import pytest

from reports.analysis.bounds import (
    bound_sentence,
    repeat_sentence,
    repeats_summary,
    safe_bound,
    wilson,
    zero_upper_bound,
)


def test_zero_in_400_is_below_three_quarters_of_a_percent() -> None:
    """The exact one-sided bound for 0 in 400 is 0.746%, next to the rule of three's 0.75%."""
    assert zero_upper_bound(400) == pytest.approx(0.007461, abs=1e-6)
    assert zero_upper_bound(400) < 3 / 400
    assert zero_upper_bound(1) == pytest.approx(0.95)
    # The defining property: at the bound, seeing 0 of n has probability 5%.
    assert (1 - zero_upper_bound(300)) ** 300 == pytest.approx(0.05)


def test_safe_bound_only_for_safe_verdicts() -> None:
    """A safe entry gets its bound and a sentence; race and unknown entries get none."""
    entry = {"verdict": {"valid": "yes"}, "ops": {"ok": 400}}
    bound = safe_bound(entry)
    assert bound is not None and bound["ok"] == 400 and bound["confidence"] == 0.95
    assert bound_sentence(bound).startswith(
        "0 anomalies in 400 ok requests: below 0.75% at 95% confidence (exact binomial")
    assert "rule of three gives 0.75%" in bound_sentence(bound)
    assert safe_bound({"verdict": {"valid": "no"}, "ops": {"ok": 400}}) is None
    assert safe_bound({"verdict": {"valid": "yes"}, "ops": {"ok": 0}}) is None


def test_wilson_interval() -> None:
    """Wilson 95% intervals of known values; k=0 starts at 0 and k=n ends at 1."""
    low, high = wilson(3, 5)
    assert low == pytest.approx(0.2307, abs=1e-3) and high == pytest.approx(0.8824, abs=1e-3)
    assert wilson(0, 5)[0] == 0 and wilson(5, 5)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson(6, 5)


def test_repeats_summary_counts_k_of_n() -> None:
    """Five runs, three raced, one unknown: 3 of 4 judged, with an interval over those."""
    summary = repeats_summary(["no", "yes", "no", "unknown", "no"])
    assert summary is not None
    assert (summary["runs"], summary["raced"], summary["safe"], summary["unknown"]) == (5, 3, 1, 1)
    assert summary["wilson"] == [round(x, 4) for x in wilson(3, 4)]
    assert repeat_sentence(summary).startswith("raced in 3 of 4 runs (Wilson 95% interval")
    assert "1 more could not be judged" in repeat_sentence(summary)
    assert repeats_summary(["no"]) is None and repeat_sentence(None) == ""
