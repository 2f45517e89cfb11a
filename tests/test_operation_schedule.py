"""How a swarm user picks its operations: by weight, deterministic, cheap."""

from __future__ import annotations

from collections import Counter

from scenarios.operation import Operation, schedule


def test_schedule_follows_weights_and_seed() -> None:
    """Weights 6:3 become 2:1 in every cycle; the same seed gives the same order."""
    ops = (Operation(name="a", weight=6), Operation(name="b", path="/b", weight=3))
    order = schedule(ops, seed=7)
    assert Counter(order) == {0: 2, 1: 1}
    assert schedule(ops, seed=7) == order
    assert {tuple(schedule(ops, seed=s)) for s in range(20)} == {(0, 0, 1), (0, 1, 0), (1, 0, 0)}
    assert schedule((Operation(),), seed=3) == [0]
