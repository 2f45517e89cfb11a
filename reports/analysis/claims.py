"""The original answer's claims, each checked against this run's cells.

The answer to "is a module-level global safe in Flask?" and its follow-ups make
nine claims. ``check_claims(experiments)`` decides each one from the verdicts
and failure modes of the cells it names (never from a table of expectations):

- **true**: every judged cell the claim names bears it out;
- **false**: none does;
- **depends**: some do and some do not (the sentence says which);
- **not tested**: the run had no cell that could judge it.

Each claim lists the experiments behind its verdict, so a report can link them.
The function reads results.json experiment entries only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from demo_server.control.interpreter import GET_ONE
from reports.analysis.failure_modes import (
    INTERLEAVING,
    ISOLATION_BREACH,
    LOST_SESSION_UPDATE,
    PER_REQUEST,
    SEPARATE_COPIES,
    modes_of,
)
from reports.history.verdict import verdict_word

__all__ = ["CLAIMS", "Claim", "ClaimRule", "check_claims"]

TRUE, FALSE, DEPENDS, NOT_TESTED = "true", "false", "depends", "not tested"
_SHARED_EXTERNAL = ("sqlite", "postgres", "redis", "memcached")
_MULTI_PROCESS_MODES = ("processes", "gunicorn-sync", "gunicorn-gthread", "gevent", "cluster")

Entry = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim and what this run says of it.

    Attributes:
        key: a stable name (``threads``, ``processes``, ...).
        text: the claim, in the report's words.
        verdict: ``true``, ``false``, ``depends`` or ``not tested``.
        why: one sentence, from the cells.
        supporting: ids of the experiments that bear it out.
        against: ids of the experiments that do not.
        unjudged: ids of cells it names that could not be judged (unknown).
    """

    key: str
    text: str
    verdict: str
    why: str
    supporting: tuple[str, ...] = ()
    against: tuple[str, ...] = ()
    unjudged: tuple[str, ...] = ()

    @property
    def cells(self) -> tuple[str, ...]:
        return self.supporting + self.against

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "text": self.text, "verdict": self.verdict, "why": self.why,
                "supporting": list(self.supporting), "against": list(self.against),
                "unjudged": list(self.unjudged)}


@dataclasses.dataclass(frozen=True)
class ClaimRule:
    """How one claim is judged.

    Attributes:
        key, text: as in ``Claim``.
        names: which cells the claim is about.
        holds: whether a judged cell bears the claim out.
        yes: what the supporting cells showed (completes "… under X").
        no: what the other cells showed.
        missing: why nothing could be judged, when no cell is named.
    """

    key: str
    text: str
    names: Callable[[Entry], bool]
    holds: Callable[[Entry], bool]
    yes: str
    no: str
    missing: str


def _config(entry: Entry) -> Mapping[str, Any]:
    return entry.get("config") or {}


def _store(entry: Entry) -> str:
    return str(_config(entry).get("store") or "")


def _mode(entry: Entry) -> str:
    return str(_config(entry).get("mode") or "")


def _several_processes(entry: Entry) -> bool:
    config = _config(entry)
    mode = _mode(entry)
    if mode in ("processes", "cluster"):
        return True
    return mode in _MULTI_PROCESS_MODES and int(config.get("workers") or 1) > 1


def _server_pids(entry: Entry) -> int:
    return len((entry.get("server") or {}).get("pids") or ())


def _shows(mode: str) -> Callable[[Entry], bool]:
    return lambda entry: mode in modes_of(entry)


CLAIMS: tuple[ClaimRule, ...] = (
    ClaimRule(
        "threads", "Threads make the counter skip or repeat numbers.",
        lambda e: _store(e) == "global" and _mode(e) in ("threaded", "gunicorn-gthread", "cluster"),
        _shows(INTERLEAVING),
        "threads of one process repeated or lost numbers", "no thread interleaving was seen",
        "no cell served the global store on threads"),
    ClaimRule(
        "processes", "Each process has its own copy of a module global.",
        lambda e: _store(e) in ("global", "lock") and _several_processes(e),
        _shows(SEPARATE_COPIES),
        "processes handed out each other's numbers", "no repeat across processes was seen",
        "no cell served the global store from several processes"),
    ClaimRule(
        "production", "Production WSGI servers (gunicorn) run several worker processes.",
        lambda e: _mode(e).startswith("gunicorn") or _mode(e) == "gevent",
        lambda e: _server_pids(e) > 1 or SEPARATE_COPIES in modes_of(e),
        "several worker processes answered (gunicorn starts as many as -w asks, 1 by "
        "default)", "a single worker process answered",
        "no cell ran gunicorn"),
    ClaimRule(
        "gevent", "gevent workers still race.",
        lambda e: _store(e) == "global" and _mode(e) == "gevent",
        lambda e: verdict_word(e) == "race" and bool(set(modes_of(e))
                                                      & {INTERLEAVING, SEPARATE_COPIES}),
        "the global still raced under gevent", "the global showed no anomaly under gevent",
        "no cell served the global store with gevent"),
    ClaimRule(
        "external", "A database, Redis or memcached fixes it.",
        lambda e: _store(e) in _SHARED_EXTERNAL,
        lambda e: verdict_word(e) == "safe",
        "no anomaly was seen", "anomalies appeared",
        "no cell used SQLite, PostgreSQL, Redis or memcached"),
    ClaimRule(
        "manager", "multiprocessing.Manager fixes it across the processes of one host.",
        lambda e: _store(e) == "manager" and _several_processes(e) and _mode(e) != "cluster",
        lambda e: verdict_word(e) == "safe",
        "no anomaly was seen across processes", "anomalies appeared",
        "no cell used the manager store with several processes"),
    ClaimRule(
        "sessions", "Server-side sessions keep each client's data apart.",
        lambda e: _store(e) == "session",
        lambda e: verdict_word(e) == "safe",
        "every client saw only its own counter",
        "the session store showed anomalies",
        "no cell used the session store"),
    ClaimRule(
        "g", "flask.g holds data for one request only.",
        lambda e: _store(e) == "g",
        lambda e: PER_REQUEST in modes_of(e),
        "every request started again from the same value", "a value survived from one request "
        "to the next", "no cell used flask.g"),
    ClaimRule(
        "dev-threaded", "The development server is threaded by default since Flask 1.0.",
        lambda e: _mode(e) == "threaded" and _store(e) == "global",
        _shows(INTERLEAVING),
        "Werkzeug's server (threaded=True, app.run()'s default since Flask 1.0) had two "
        "requests inside the app at once", "no two requests were seen inside the app at "
        "once", "no cell ran the development server threaded"),
)


def _where(entry: Entry, interpreter: bool = True) -> str:
    config = _config(entry)
    update = config.get("update")
    text = f"{config.get('store') or '?'}" + (
        f" ({update})" if update and update != "atomic" else "")
    scenario = config.get("scenario")
    if scenario and scenario not in ("counter", config.get("store")):
        text = f"{scenario} on {text}"
    text += f" under {config.get('mode') or '?'}"
    window = config.get("window")
    if window and window != "none":
        text += f" (window {window})"
    served = entry.get("interpreter") or {}
    if interpreter and served.get("requested"):
        text += f" on {served.get('label') or served['requested']}"
    return text


def _free_threaded(entry: Entry) -> bool:
    """The experiment was served by a free-threaded build that kept its GIL off."""
    interpreter = entry.get("interpreter") or {}
    return interpreter.get("build") == "free-threaded" and interpreter.get("gil") is False


def _free_threaded_why(judged: Sequence[Entry], rule: ClaimRule) -> str:
    """What the free-threaded cells of the threads claim showed, or that there were none."""
    free = [e for e in judged if _free_threaded(e)]
    if not free:
        return (" Not tested on a free-threaded build, where threads run Python code truly in "
                "parallel and the original code races with nothing between read and write: "
                f"{GET_ONE}.")
    labels = " and ".join(dict.fromkeys(str((e.get("interpreter") or {}).get("label"))
                                        for e in free))
    raced = [e for e in free if rule.holds(e)]
    calm = [e for e in free if not rule.holds(e)]
    parts = []
    if raced:
        parts.append(f"{_list(raced, 4, interpreter=False)} repeated or lost numbers")
    if calm:
        parts.append(f"{_list(calm, 4, interpreter=False)} showed none (without the GIL the "
                     "window is a few instructions wide: a longer run may show it)")
    return f" On the free-threaded build ({labels}): {'; '.join(parts)}."


def _list(entries: Sequence[Entry], limit: int = 2, interpreter: bool = True) -> str:
    names = list(dict.fromkeys(_where(e, interpreter) for e in entries))
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _session_why(against: Sequence[Entry]) -> str:
    breach = [e for e in against if ISOLATION_BREACH in modes_of(e)]
    lost = [e for e in against if LOST_SESSION_UPDATE in modes_of(e)]
    parts = []
    if breach:
        parts.append(f"a client got another client's number under {_list(breach)}")
    if lost:
        parts.append(f"one client's concurrent tabs lost session updates under {_list(lost)} "
                     "(each client's data stays apart, but its own requests overwrite "
                     "each other)")
    return "; ".join(parts)


#: Why moving the state out of the process did not fix it by itself.
_ONE_STEP = ("moving the state out of the process is necessary, not sufficient: the update "
             "must be one step in the store (INCR, UPDATE ... SET x = x + 1, a Lua script), "
             "or hold a lock across the read and the write, or be retried when another "
             "request wrote in between")


def _update(entry: Entry) -> str:
    return str(_config(entry).get("update") or "atomic")


def _external_why(supporting: Sequence[Entry], against: Sequence[Entry]) -> str:
    """The external claim's sentence when a shared store raced: which update, and why."""
    naive = [e for e in against if _update(e) == "read-write"]
    others = [e for e in against if _update(e) != "read-write"]
    parts = []
    if supporting:
        parts.append(f"With {_list(supporting)}, no anomaly was seen")
    if naive:
        parts.append(f"with {_list(naive)}, the read-then-write raced across processes "
                     "sharing one store")
    if others:
        parts.append(f"with {_list(others)}, anomalies appeared")
    why = "; ".join(parts)
    return _capital(why) + (f": {_ONE_STEP}." if naive else ".")


def _judge(rule: ClaimRule, entries: Sequence[Entry]) -> Claim:
    named = [e for e in entries if rule.names(e)]
    judged = [e for e in named if verdict_word(e) != "unknown"]
    unjudged = tuple(str(e.get("id")) for e in named if verdict_word(e) == "unknown")
    if not judged:
        why = (f"{len(unjudged)} cell(s) it names could not be judged" if unjudged
               else rule.missing) + "."
        why = why[0].upper() + why[1:]
        if rule.key == "threads":
            why += _free_threaded_why(judged, rule)
        return Claim(rule.key, rule.text, NOT_TESTED, why, (), (), unjudged)
    supporting = [e for e in judged if rule.holds(e)]
    against = [e for e in judged if not rule.holds(e)]
    if rule.key == "dev-threaded":
        # One interleaving shows threads; none seen does not show a single thread.
        if not supporting:
            return Claim(rule.key, rule.text, NOT_TESTED,
                         "No threaded cell showed two requests inside the app at once, so this "
                         "run cannot tell how many threads served them.",
                         (), tuple(str(e.get("id")) for e in against), unjudged)
        return Claim(rule.key, rule.text, TRUE,
                     f"With {_list(supporting)}, {rule.yes}.",
                     tuple(str(e.get("id")) for e in supporting),
                     tuple(str(e.get("id")) for e in against), unjudged)
    if supporting and not against:
        verdict = TRUE
        why = f"In every cell it names ({_list(supporting)}), {rule.yes}."
    elif against and not supporting:
        verdict = FALSE
        why = f"In every cell it names ({_list(against)}), {rule.no}."
        if rule.key == "external":
            why = _external_why(supporting, against)
        if rule.key == "sessions":
            verdict = DEPENDS if not any(ISOLATION_BREACH in modes_of(e) for e in against) \
                else FALSE
            why = _capital(_session_why(against)) + "."
    else:
        verdict = DEPENDS
        why = f"With {_list(supporting)}, {rule.yes}; with {_list(against)}, {rule.no}."
        if rule.key == "external":
            why = _external_why(supporting, against)
        if rule.key == "sessions":
            why = f"With {_list(supporting)}, {rule.yes}; " + _session_why(against) + "."
    if rule.key == "threads":
        why += _free_threaded_why(judged, rule)
    return Claim(rule.key, rule.text, verdict, why,
                 tuple(str(e.get("id")) for e in supporting),
                 tuple(str(e.get("id")) for e in against), unjudged)


def check_claims(experiments: Sequence[Entry]) -> list[Claim]:
    """Judge every claim in ``CLAIMS`` from a run's experiment entries.

    Args:
        experiments: results.json ``experiments`` (verdicts, failure modes, config).

    Returns:
        One ``Claim`` per rule, in the order of ``CLAIMS``.
    """
    entries = list(experiments)
    return [_judge(rule, entries) for rule in CLAIMS]
