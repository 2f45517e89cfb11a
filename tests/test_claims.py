"""Tests of reports.analysis.claims: each claim's rule, from faked cell verdicts (never numbers)."""

from __future__ import annotations

from typing import Any

import pytest

from reports.analysis.claims import CLAIMS, check_claims

VALID = {"safe": "yes", "race": "no", "unknown": "unknown"}


def cell(cell_id: str, store: str, mode: str, word: str, *modes: str, window: str = "none",
         workers: int = 2, pids: tuple[int, ...] = (11, 12)) -> dict[str, Any]:
    """A results.json entry reduced to what claims read: a verdict word and failure modes."""
    verdict: dict[str, Any] = {"valid": VALID[word], "counts": {}, "witnesses": []}
    if word == "unknown":
        verdict["reason"] = "the server died"
    return {"id": cell_id, "config": {"store": store, "mode": mode, "window": window,
                                      "workers": workers},
            "verdict": verdict, "failure_modes": list(modes), "server": {"pids": list(pids)}}


def claim(entries: list[dict[str, Any]], key: str) -> Any:
    return next(c for c in check_claims(entries) if c.key == key)


def test_every_claim_is_not_tested_without_cells() -> None:
    """An empty run tests nothing: nine claims, each 'not tested' with a reason."""
    claims = check_claims([])
    assert [c.key for c in claims] == [r.key for r in CLAIMS]
    assert len(claims) == 9
    assert all(c.verdict == "not tested" and c.why and not c.cells for c in claims)


def test_threads_claim_depends_on_the_window() -> None:
    """Interleaving with window yield but none with window none: depends, with both cells."""
    entries = [cell("a", "global", "threaded", "race", "interleaving", window="yield"),
               cell("b", "global", "threaded", "safe")]
    c = claim(entries, "threads")
    assert c.verdict == "depends"
    assert c.supporting == ("a",) and c.against == ("b",)
    assert "window yield" in c.why
    assert claim(entries[:1], "threads").verdict == "true"
    assert claim(entries[1:], "threads").verdict == "false"


def test_threads_claim_ignores_separate_copies_and_other_stores() -> None:
    """A gthread race of separate copies alone does not show threads interleaving."""
    entries = [cell("a", "global", "gunicorn-gthread", "race", "separate-copies"),
               cell("b", "sqlite", "threaded", "safe")]
    c = claim(entries, "threads")
    assert c.verdict == "false" and c.cells == ("a",)


def test_processes_claim_reads_separate_copies() -> None:
    """Separate copies in every multi-process global or lock cell: true; single mode not named."""
    entries = [cell("a", "global", "gunicorn-sync", "race", "separate-copies"),
               cell("b", "lock", "cluster", "race", "separate-copies"),
               cell("c", "global", "single", "safe", workers=1)]
    c = claim(entries, "processes")
    assert c.verdict == "true" and c.supporting == ("a", "b")
    entries.append(cell("d", "global", "gevent", "safe"))
    assert claim(entries, "processes").verdict == "depends"


def test_production_claim_counts_answering_processes() -> None:
    """gunicorn cells answered by several pids bear it out; one pid and no copies do not."""
    several = cell("a", "sqlite", "gunicorn-sync", "safe", pids=(1, 2))
    one = cell("b", "sqlite", "gunicorn-gthread", "safe", workers=1, pids=(1,))
    assert claim([several], "production").verdict == "true"
    assert claim([one], "production").verdict == "false"
    assert claim([several, one], "production").verdict == "depends"


def test_gevent_claim() -> None:
    """The global under gevent: a yield-window race and a clean none-window cell: depends."""
    entries = [cell("a", "global", "gevent", "race", "interleaving", window="yield"),
               cell("b", "global", "gevent", "safe", workers=1)]
    assert claim(entries, "gevent").verdict == "depends"
    assert claim(entries[:1], "gevent").verdict == "true"
    assert claim(entries[1:], "gevent").verdict == "false"


def test_external_stores_claim() -> None:
    """All external stores safe: true; one racing: depends; all racing: false."""
    safe = [cell("a", "sqlite", "gunicorn-sync", "safe"), cell("b", "redis", "cluster", "safe")]
    assert claim(safe, "external").verdict == "true"
    racing = cell("c", "postgres", "gevent", "race", "interleaving")
    assert claim([*safe, racing], "external").verdict == "depends"
    assert claim([racing], "external").verdict == "false"


def test_manager_claim_is_about_processes_of_one_host() -> None:
    """Manager cells with several processes count; cluster and single-process cells do not."""
    entries = [cell("a", "manager", "gunicorn-sync", "safe"),
               cell("b", "manager", "cluster", "race", "interleaving"),
               cell("c", "manager", "threaded", "race", "interleaving", workers=1)]
    c = claim(entries, "manager")
    assert c.verdict == "true" and c.cells == ("a",)
    assert claim(entries[1:], "manager").verdict == "not tested"


@pytest.mark.parametrize(
    ("word", "modes", "verdict"),
    [("safe", (), "true"),
     ("race", ("lost-session-update",), "depends"),
     ("race", ("isolation-breach",), "false")],
)
def test_sessions_claim(word: str, modes: tuple[str, ...], verdict: str) -> None:
    """Apart when safe; a lost session update keeps clients apart (depends); a breach: false."""
    assert claim([cell("a", "session", "gunicorn-gthread", word, *modes)],
                 "sessions").verdict == verdict


def test_g_claim_reads_per_request() -> None:
    """flask.g cells that start every request afresh bear it out; a surviving value does not."""
    per_request = cell("a", "g", "threaded", "race", "per-request")
    kept = cell("b", "g", "gunicorn-sync", "safe")
    assert claim([per_request], "g").verdict == "true"
    assert claim([kept], "g").verdict == "false"
    assert claim([per_request, kept], "g").verdict == "depends"


def test_dev_server_claim_needs_two_requests_at_once() -> None:
    """One threaded cell with interleaving shows threads: true; none seen: not tested."""
    racing = cell("a", "global", "threaded", "race", "interleaving", window="yield")
    clean = cell("b", "global", "threaded", "safe")
    assert claim([racing, clean], "dev-threaded").verdict == "true"
    c = claim([clean], "dev-threaded")
    assert c.verdict == "not tested" and "cannot tell" in c.why


def test_unknown_cells_are_not_judged() -> None:
    """A claim whose only cells are unknown is not tested, and names them as unjudged."""
    c = claim([cell("a", "redis", "gunicorn-sync", "unknown")], "external")
    assert c.verdict == "not tested" and c.unjudged == ("a",)
    assert "could not be judged" in c.why


def test_claims_serialise() -> None:
    """to_dict keeps the verdict, the sentence and the cells for results.json."""
    data = claim([cell("a", "g", "threaded", "race", "per-request")], "g").to_dict()
    assert data == {"key": "g", "text": "flask.g holds data for one request only.",
                    "verdict": "true", "why": data["why"], "supporting": ["a"], "against": [],
                    "unjudged": []}


def _on(entry: dict[str, Any], label: str, gil: bool, build: str = "free-threaded") -> dict:
    """The entry as served by another interpreter (what results.json's ``interpreter`` says)."""
    return {**entry, "interpreter": {"requested": label.split(",")[0], "build": build,
                                     "gil": gil, "label": label}}


def test_threads_claim_says_no_free_threaded_build_was_tested() -> None:
    """Without a free-threaded cell the threads claim says it was not tested on one and how
    to get one, whatever the other cells showed."""
    for entries in ([cell("a", "global", "threaded", "safe")], []):
        why = claim(entries, "threads").why
        assert "Not tested on a free-threaded build" in why
        assert "./run free-threaded" in why and "uv python install 3.14t" in why


def test_threads_claim_cites_the_free_threaded_cells() -> None:
    """Free-threaded cells (GIL off) join the claim's cells and are named apart: the ones
    that raced, and the ones that showed nothing (no proof of safety without the GIL)."""
    entries = [cell("a", "global", "threaded", "safe"),
               _on(cell("b", "global", "gunicorn-gthread", "race", "interleaving"),
                   "3.13t, GIL off", gil=False),
               _on(cell("c", "global", "threaded", "safe"), "3.13t, GIL off", gil=False)]
    c = claim(entries, "threads")
    assert c.verdict == "depends"
    assert c.supporting == ("b",) and c.against == ("a", "c")
    assert "On the free-threaded build (3.13t, GIL off): global under gunicorn-gthread " \
           "repeated or lost numbers; global under threaded showed none" in c.why
    assert "Not tested" not in c.why


def test_a_free_threaded_build_whose_gil_came_back_is_not_cited_as_one() -> None:
    """A free-threaded build that ran with the GIL on (an extension turned it on) does not
    count as tested without the GIL."""
    entries = [_on(cell("a", "global", "threaded", "safe"), "3.13t, GIL on", gil=True)]
    assert "Not tested on a free-threaded build" in claim(entries, "threads").why
