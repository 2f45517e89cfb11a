"""Render a run's report: one self-contained HTML file, Markdown, or results.json.

The HTML embeds its images as ``data:`` URIs and its CSS inline; it runs no
script and requests nothing. Every text that comes from a run (labels, errors,
witness sentences) is escaped by Jinja2's autoescape. The answer at the top is
built from the measured verdicts; the explanations under each experiment are
conditioned on its configuration and never decide its verdict.

``render_run(run_dir)`` is the one entry point: it reads results.json (the
analysis writes it, when missing, before), draws the plots the analysis planned
and writes the requested formats. It computes nothing a person reads.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html as html_lib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from demo_server.basics.files import write_text
from demo_server.served.config import PER_PROCESS_STORES
from reports.analysis.bounds import (
    CONFIDENCE,
    bound_rate,
    bound_sentence,
    repeat_sentence,
    runs_raced,
)
from reports.analysis.failure_modes import (
    FAILURE_MODES,
    PER_REQUEST,
    SEPARATE_COPIES,
    SHARED_LOST_UPDATE,
    SHARING_UNKNOWN,
    mode_names,
    modes_of,
    verdict_label,
    witness_mode,
)
from reports.analysis.results import (
    RESULTS_FILE,
    ResultsError,
    describe_fault,
    experiment_path,
    faults_of,
    load_results,
    reanalyse_run,
)
from reports.history.verdict import verdict_word
from reports.render.table import format_rate
from scenarios.registry import SCENARIO_NAMES, get_scenario

__all__ = [
    "FORMATS",
    "answer",
    "explain",
    "headline",
    "render_html",
    "render_markdown",
    "render_run",
]

FORMATS = ("html", "md", "json")
_MIME = {".png": "image/png", ".svg": "image/svg+xml"}


# -- words built from the data ------------------------------------------------------------


def _count(n: int, word: str) -> str:
    if n == 1:
        return f"1 {word}"
    plural = word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")
    return f"{n:,} {plural}"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _ok(entry: Mapping[str, Any]) -> int:
    return int((entry.get("ops") or {}).get("ok") or 0)


def _where(entry: Mapping[str, Any], with_store: bool = False) -> str:
    config = entry.get("config") or {}
    text = str(config.get("mode") or "?")
    if with_store:
        text = f"{_store_update(config)} store under {text}"
    window = config.get("window")
    if window and window != "none":
        text += f" (window {window})"
    return text


# Why a store that is not the naive global still races, for the answer paragraph.
_WHY_STORE_RACES = {
    "lock": "a threading.Lock orders the threads of one process only; "
            "these modes run several processes or hosts",
    "g": "flask.g lives for one request, so every request starts again from zero",
    "session": "requests of one client overlapped and the last session saved won",
}
#: Why a shared store updated in two steps races, for the answer paragraph.
_WHY_READ_WRITE = ("read, then written back: every process shares the store, yet two requests "
                   "read the same value; moving the state out of the process is necessary, not "
                   "sufficient, the update must be one step in the store")


def answer(results: Mapping[str, Any]) -> str:
    """One paragraph answering "is a global safe here?" from the measured verdicts."""
    entries = list(results.get("experiments") or ())
    if not entries:
        return "This run holds no experiment, so it answers nothing."
    focus = [e for e in entries if (e.get("config") or {}).get("store") == "global"]
    subject = "the global store" if focus else "the stores tested"
    if not focus:
        focus = entries
    # Wrong answers, whether they raced or lived for one request only.
    races = [e for e in focus if verdict_word(e) == "race"]
    safes = [e for e in focus if verdict_word(e) == "safe"]
    unknowns = [e for e in focus if verdict_word(e) == "unknown"]
    with_store = subject != "the global store"
    parts: list[str] = []
    if races:
        listed = [
            f"{_where(e, with_store)}: {e.get('anomalies'):,} of {_ok(e):,} ok responses "
            f"anomalous ({format_rate(e.get('anomaly_rate'))})"
            for e in sorted(races, key=lambda e: -(e.get("anomaly_rate") or 0))[:5]
        ]
        more = f", and {len(races) - 5} more" if len(races) > 5 else ""
        parts.append(
            f"No. In {len(races)} of {_count(len(focus), 'experiment')} with {subject}, "
            f"clients got wrong answers: {'; '.join(listed)}{more}."
        )
        if any((e.get("config") or {}).get("update") == "read-write" for e in races):
            parts.append(f"The read-then-write updates raced: {_WHY_READ_WRITE}.")
    if safes:
        ops = sum((e.get("ops") or {}).get("ok", 0) for e in safes)
        modes = _join(sorted({_where(e, with_store) for e in safes}))
        lead = "" if races else "Not shown unsafe in this run: "
        parts.append(
            f"{lead}No anomaly was seen under {modes} ({_count(ops, 'ok response')}); "
            "a clean run means this load did not catch a race, not that none can happen."
        )
    if unknowns:
        reasons = sorted({str((e.get("verdict") or {}).get("reason") or "no reason given")
                          for e in unknowns})
        parts.append(
            f"{_count(len(unknowns), 'experiment')} with {subject} could not be judged "
            f"(unknown): {'; '.join(reasons[:3])}."
        )
    others = [e for e in entries if e not in focus]
    if others:
        by_store: dict[str, list[str]] = {}
        for entry in others:
            by_store.setdefault(_store_update(entry.get("config") or {}), []).append(
                verdict_label(entry))
        clean = sorted(s for s, words in by_store.items() if set(words) == {"safe"})
        raced = sorted(s for s, words in by_store.items() if "race" in words)
        per_request = sorted(s for s, words in by_store.items()
                             if PER_REQUEST in words and "race" not in words)
        if clean:
            parts.append(f"For comparison, {_join(clean)} showed no anomaly in any mode tested.")
        if per_request:
            parts.append(f"{_join(per_request)} raced with nothing: every request started "
                         "again from the same value (per request), as flask.g lives for one "
                         "request.")
        if raced:
            detail = []
            for store in raced:
                racing = sorted({str((e.get("config") or {}).get("mode")) for e in others
                                 if _store_update(e.get("config") or {}) == store
                                 and verdict_label(e) == "race"})
                naive = [r for r in raced if r.endswith("(read-write)")]
                # The read-then-write's reason once, after the last store that shows it.
                why = (_WHY_READ_WRITE if naive and store == naive[-1] else
                       None if store in naive else _WHY_STORE_RACES.get(store))
                detail.append(f"{store} under {_join(racing)}" + (f" ({why})" if why else ""))
            parts.append(f"Anomalies also appeared with {'; '.join(detail)}.")
    return " ".join(parts)


def headline(results: Mapping[str, Any]) -> str:
    """The answer in one sentence, for the report's first screen."""
    entries = list(results.get("experiments") or ())
    focus = [e for e in entries if (e.get("config") or {}).get("store") == "global"]
    subject = "the global" if focus else "the stores tested"
    focus = focus or entries
    if not focus:
        return "This run holds no experiment."
    races = [e for e in focus if verdict_word(e) == "race"]  # racing or per request
    safes = [e for e in focus if verdict_word(e) == "safe"]
    if races:
        modes = _join(sorted({str((e.get("config") or {}).get("mode")) for e in races}))
        names = _join(sorted({n for e in races for n in mode_names(modes_of(e))}))
        return (f"No: {subject} gave wrong answers in {len(races)} of "
                f"{_count(len(focus), 'experiment')}, under {modes}. The mistakes: {names}.")
    if safes:
        return (f"Not shown unsafe: {subject} showed no anomaly in "
                f"{_count(len(safes), 'experiment')}; a measurement, not a proof.")
    return f"Undecided: no experiment with {subject} could be judged."


def _python_at_least(version: str | None, major: int, minor: int) -> bool | None:
    match = re.match(r"(\d+)\.(\d+)", version or "")
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2))) >= (major, minor)


def explain(entry: Mapping[str, Any]) -> list[str]:
    """Why an experiment could come out as it did, from its configuration.

    These sentences explain mechanisms that apply to the configuration; the
    verdict itself comes from the measured history (``_measured``).
    """
    config = entry.get("config") or {}
    mode = config.get("mode")
    store = config.get("store")
    window = config.get("window")
    python = config.get("python")
    implementation = config.get("implementation") or "Python"
    gil = config.get("gil")
    workers = config.get("workers") or 1
    threads = config.get("threads") or 1
    instances = config.get("instances") or 1
    out: list[str] = []
    note = (entry.get("interpreter") or {}).get("note")
    if python:
        if note:  # a free-threaded build whose GIL came back on
            out.append(f"The server ran on {implementation} {python}, a free-threaded build, "
                       f"but {note}: one thread ran Python code at a time.")
        elif gil is False:
            out.append(
                f"The server ran on {implementation} {python} without the GIL (a free-threaded "
                "build): threads run Python code truly in parallel, so any read-modify-write "
                "of shared state can interleave."
            )
        elif gil:
            out.append(
                f"The server ran on {implementation} {python} with the GIL: one thread runs "
                "Python code at a time, and the interpreter decides where it may switch."
            )
        else:
            out.append(f"The server ran on {implementation} {python}.")
    else:
        out.append("The server's interpreter was not recorded.")
    multi_process = (
        mode == "processes"
        or (mode in ("gunicorn-sync", "gunicorn-gthread", "gevent") and workers > 1)
        or mode == "cluster"
    )
    threads_share = mode in ("threaded", "gunicorn-gthread", "cluster")
    mode_text = {
        "single": "Mode single serves one request at a time, so requests never overlap "
                  "inside the app.",
        "threaded": "Mode threaded serves every request on its own thread of one process; "
                    "the threads share the module's state.",
        "processes": "Mode processes forks a new process for each request: the child starts "
                     "from a copy of the parent's state, and its change dies with it.",
        "gunicorn-sync": f"gunicorn sync runs {_count(workers, 'worker process')}, each "
                         "serving one request at a time.",
        "gunicorn-gthread": f"gunicorn gthread runs {_count(workers, 'worker process')} with "
                            f"{_count(threads, 'thread')} each: threads share their "
                            "process's state, processes do not.",
        "gevent": f"gunicorn gevent runs {_count(workers, 'worker process')}, each serving "
                  "requests as greenlets that give way only where the code yields "
                  "(I/O, sleep), never in the middle of plain Python code.",
        "cluster": f"Mode cluster runs {_count(instances, 'independent instance')} "
                   "(standing in for separate hosts), and the load is spread over them.",
    }.get(str(mode))
    if mode_text:
        out.append(mode_text)
    target = config.get("app") or config.get("url")
    if target:
        requests = ", ".join(config.get("request") or ()) or "GET /"
        out.append(
            f"The app under test is {'the endpoint at ' if config.get('url') else ''}{target}, "
            f"sent {requests} and checked as {config.get('check') or 'counter'}. racelab "
            + ("knows how it was served and which process and thread answered each request "
               "(its middleware stamps every answer)" if not config.get("url") else
               "knows the values it answered, and which process and thread answered where "
               "the app sends racelab's X-Racelab headers; it does not know how it is served")
            + ". It does not know what the code runs between its read and its write: its "
            "window is the code's own.")
        return out + _sharing_sentence(entry)
    if store in PER_PROCESS_STORES and multi_process and store != "g":
        out.append(
            f"The {store} store lives inside each process, so every process holds its own "
            "copy: numbers repeat across processes and the per-process counts diverge. "
            "No lock inside one process can prevent that."
        )
    update = str(config.get("update") or "atomic")
    out.extend(_store_sentences(str(config.get("scenario") or "counter"), str(store), update))
    if store in ("global", "lock"):
        out.extend(_explain_window(config, mode, window, python, gil, threads_share))
    elif update in ("read-write", "locked") and window and window != "none":
        out.append(f"Window {window} runs between the read and the write"
                   + (": while it runs, other requests read the same value."
                      if update == "read-write" else
                      ", inside the lock: other requests wait for it."))
    return out + _sharing_sentence(entry)


_ACROSS = {SEPARATE_COPIES, SHARED_LOST_UPDATE, SHARING_UNKNOWN}


def _sharing_sentence(entry: Mapping[str, Any]) -> list[str]:
    """The evidence for one shared state or a copy per process, where a race crossed them."""
    sharing = entry.get("sharing") or {}
    if not sharing.get("why") or not set(modes_of(entry)) & _ACROSS:
        return []
    return [f"How the processes held the state: {sharing['why']}."]


def _store_sentences(scenario: str, store: str, update: str = "atomic") -> list[str]:
    """The scenario's own sentence for its store and update (``Scenario.store_sentences``)."""
    if scenario not in SCENARIO_NAMES:
        return []
    return get_scenario(scenario).explain_store(store, update)


def _explain_window(
    config: Mapping[str, Any], mode: Any, window: Any, python: Any, gil: Any, threads_share: bool
) -> list[str]:
    out: list[str] = []
    modern = _python_at_least(python, 3, 10)
    if mode == "gevent":
        if window in ("yield", "io"):
            out.append(f"Window {window} sleeps between the read and the write, which is a "
                       "point where a greenlet yields: other requests run inside the window.")
        else:
            out.append(f"With window {window or 'none'} nothing between the read and the write "
                       "yields, so greenlets of one process cannot interleave there.")
        return out
    if window == "none":
        if threads_share and gil and modern:
            out.append("Window none is the original code. CPython 3.10 and later switch "
                       "threads only at calls and backward jumps, so the read and the write "
                       "of += 1 are seldom separated in practice.")
        elif threads_share and gil and modern is False:
            out.append("Window none is the original code. CPython before 3.10 may switch "
                       "threads between any two bytecodes, so even += 1 can lose updates.")
        else:
            out.append("Window none is the original code, with nothing between the read and "
                       "the write.")
    elif window == "call":
        out.append("Window call puts a function call between the read and the write: a point "
                   "where the interpreter may switch threads.")
    elif window == "work":
        out.append(f"Window work spends {config.get('work_us') or '?'} µs of CPU between the "
                   "read and the write; the longer it lasts, the likelier a thread switch "
                   "inside it.")
    elif window == "yield":
        out.append("Window yield calls time.sleep(0) between the read and the write: the "
                   "thread gives up the GIL there and another may run.")
    elif window == "io":
        out.append("Window io waits 1 ms between the read and the write, as real I/O would: "
                   "other requests run meanwhile.")
    return out


def cost_sentence(cost: Mapping[str, Any] | None) -> str:
    """What a non-atomic update paid: `` The optimistic update retried 812 times ...``."""
    if not cost:
        return ""
    retries, aborts = int(cost.get("retries") or 0), int(cost.get("aborts") or 0)
    update = cost.get("update")
    per = cost.get("retries_per_ok")
    if update == "optimistic" or retries:
        text = (f" The {update} update retried {_count(retries, 'time')}"
                + (f" ({per:g} per ok request)" if per else "")
                + (f" and gave up {_count(aborts, 'time')}" if aborts else ", and never gave up")
                + ": the price of the fix.")
        return text
    if aborts:
        return f" The {update} update gave up {_count(aborts, 'time')} waiting for its lock."
    return ""


def _measured(entry: Mapping[str, Any]) -> str:
    word = verdict_label(entry)
    ok = (entry.get("ops") or {}).get("ok", 0)
    verdict = entry.get("verdict") or {}
    repeats = repeat_sentence(entry.get("repeats"))
    again = (f" Run {entry['repeats']['runs']} times, it {repeats}." if repeats else "") + (
        cost_sentence(entry.get("update_cost")))
    if word == PER_REQUEST:
        return (f"Measured: all {ok:,} ok responses got the same value: nothing survived from "
                "one request to the next (per request). Nothing raced; the state never lived "
                f"longer than a request.{again}")
    if word == "race":
        names = _join(mode_names(modes_of(entry)))
        return (f"Measured: {entry.get('anomalies'):,} of {ok:,} ok responses were anomalous "
                f"({format_rate(entry.get('anomaly_rate'))}), showing {names}; the witnesses "
                f"below show them.{again}")
    if word == "safe":
        bound = bound_sentence(entry.get("safe_bound"))
        return (f"Measured: {bound or f'no anomaly in {ok:,} ok responses'}. A bound, not a "
                f"proof: rarer anomalies can still happen.{again}")
    return f"Unknown: {verdict.get('reason') or 'no reason given'}.{again}"


# -- data for the templates ---------------------------------------------------------------


def _data_uri(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


_PLOT_TITLES = {
    "requests": "Value each request got",
    "witness": "The requests behind one anomaly",
    "bursts": "Burst spreads",
}


def _settings(config: Mapping[str, Any], interpreter: Mapping[str, Any] | None = None
              ) -> list[tuple[str, Any]]:
    """The configuration that mattered for this experiment, in reading order.

    The interpreter is its label (``3.13t, GIL off``) when the analysis made one.
    """
    mode = config.get("mode")
    applies = {
        "workers": mode in ("gunicorn-sync", "gunicorn-gthread", "gevent", "processes"),
        "threads": mode in ("gunicorn-gthread", "cluster"),
        "instances": mode == "cluster",
        "work_us": config.get("window") == "work",
        "update": config.get("update") not in (None, "", "atomic"),
        "duration": bool(config.get("duration")),
        "burst": bool(config.get("burst")),
        "tabs": (config.get("tabs") or 1) > 1,
    }
    shown = []
    for key in ("scenario", "store", "update", "window", "work_us", "mode", "workers",
                "threads", "instances", "users", "tabs", "requests", "duration", "burst",
                "python", "gil", "cores"):
        value = config.get(key)
        if value is None or value == "" or not applies.get(key, True):
            continue
        if key == "gil":
            value = "enabled" if value else "disabled"
        label = (interpreter or {}).get("label")
        if key in ("python", "gil") and label:
            if key == "python":
                shown.append(("interpreter", label))
            continue
        shown.append((key, value))
    return shown


def _interpreters(found: Any) -> dict[str, Any] | None:
    """Rows and a measured summary sentence for the no-server thread race, if it ran."""
    if not found:
        return None
    rows: list[dict[str, Any]] = []
    clean_none: list[str] = []
    racy_none: list[str] = []
    threads = 0
    for r in found:
        name = f"{r.get('implementation') or ''} {r.get('version') or r.get('python')}".strip()
        row: dict[str, Any] = {"name": name, "error": r.get("error") or "",
                               "gil": {True: "on", False: "off"}.get(r.get("gil"), "")}
        cells = []
        for window in ("none", "call", "yield"):
            got = (r.get("windows") or {}).get(window)
            if not got or not got.get("expected"):
                cells.append({"text": "-", "cls": ""})
                continue
            threads = threads or int(r.get("threads") or 0)
            lost = got["expected"] - got["final"]
            cells.append({"text": f"{lost / got['expected']:.0%} ({lost:,} of {got['expected']:,})",
                          "cls": "v-no" if lost else "v-yes"})
            if window == "none":
                (racy_none if lost else clean_none).append(r.get("version") or name)
        row["cells"] = cells
        rows.append(row)
    parts = []
    if racy_none:
        parts.append(f"The literal code lost updates on {_join(racy_none)}")
    if clean_none:
        parts.append(f"lost none on {_join(clean_none)}")
    sentence = "; ".join(parts)
    if sentence:
        sentence = sentence[0].upper() + sentence[1:] + (
            ". Whether threads interleave inside += depends on where the "
            "interpreter may switch threads; a wider window (a call, a sleep, I/O) "
            "lets them in on any version.")
    return {"rows": rows, "sentence": sentence, "threads": threads or "several"}


def _interleaving_view(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The bytecode listing and the reconstructed steps, ready for the templates."""
    if not data:
        return None
    code = data.get("bytecode") or {}
    by_offset = {int(i.get("offset") or 0): i for i in code.get("instructions") or ()}
    steps = []
    for number, step in enumerate(data.get("schedule") or (), 1):
        names = []
        for offset in step.get("offsets") or ():
            ins = by_offset.get(int(offset))
            if ins and ins.get("opname") not in ("RESUME", "CACHE"):
                arg = str(ins.get("argrepr") or "")
                names.append(f"{ins.get('opname')} {arg}".strip())
        steps.append({"number": number, "who": step.get("who"), "does": step.get("does"),
                      "instructions": names})
    python = " ".join(str(x) for x in (code.get("implementation"), code.get("version")) if x)
    return {"method": code.get("method"), "python": python or "the server's Python",
            "executable": code.get("executable") or "", "dis": code.get("dis") or "",
            "error": code.get("error") or "", "steps": steps, "switch": data.get("switch"),
            "value": data.get("value"), "ops": data.get("witness_ops") or []}


def _stepper_view(data: Mapping[str, Any] | None, number: int) -> dict[str, Any] | None:
    """The stepper of one experiment: its stored model as one JSON text, and its rows."""
    model = (data or {}).get("stepper")
    if not model or not model.get("program") or len(model.get("threads") or ()) != 2:
        return None
    return {"json": json.dumps(model, ensure_ascii=False), "threads": model["threads"],
            "program": model["program"], "local": model.get("local") or "value",
            "unit": model.get("unit") or "thread", "replay": bool(model.get("replay")),
            "attribute": model.get("attribute") or "self.param", "id": f"stepper-{number}",
            "witness": f"#exp-{number}-witnesses", "ops": model.get("witness_ops") or [],
            "value": model.get("value")}


#: The heatmap's race colours, from a light to a dark red (matplotlib's Reds, 0.35 to 1.0).
_REDS = ((0.35, (252, 146, 114)), (0.6, (239, 59, 44)), (0.8, (203, 24, 29)),
         (1.0, (103, 0, 13)))


def _red(rate: float | None) -> str:
    level = 0.35 + 0.65 * min(1.0, max(0.0, rate or 0.0)) ** 0.5
    low = _REDS[0]
    for high in _REDS:
        if level <= high[0]:
            span = (level - low[0]) / (high[0] - low[0]) if high[0] > low[0] else 0.0
            rgb = [round(a + (b - a) * span) for a, b in zip(low[1], high[1], strict=True)]
            return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"
        low = high
    return "rgb(103, 0, 13)"


def _heat_cell(entry: Mapping[str, Any], number: int) -> dict[str, Any]:
    """One heatmap cell: its words, one per line, and its colours."""
    word = verdict_label(entry)
    names = mode_names(modes_of(entry))
    rate = entry.get("anomaly_rate")
    if word == "race":
        lines = [f"race {format_rate(rate)}", *names]
        dark = (rate or 0) > 0.05
        colour, ink = _red(rate), "#ffffff" if dark else "#1d1d1d"
    elif word == PER_REQUEST:
        lines = ["per request", *[n for n in names if n != "per request"]]
        colour, ink = "#e1bee7", "#4a0072"
    elif word == "safe":
        lines = ["safe", bound_rate(entry.get("safe_bound")) or "0%"]
        colour, ink = "#e3f2e5", "#1b5e20"
    else:
        lines = ["? unknown"]
        colour, ink = "#d9d9d9", "#1d1d1d"
    runs = runs_raced(entry)
    return {"word": word, "lines": lines + ([runs] if runs else []), "colour": colour,
            "ink": ink, "href": f"#exp-{number}", "label": entry.get("label") or ""}


def _heatmaps(results: Mapping[str, Any], anchors: Mapping[str, int]) -> list[dict[str, Any]]:
    """The run's grid as the report's heatmaps: one per scenario, a row per store and a
    column per mode (modes are few, stores many: the page is wider than it is tall)."""
    by_id = {str(e.get("id")): e for e in results.get("experiments") or ()}
    out = []
    for grid in results.get("grid") or ():
        modes = list(grid.get("modes") or ())
        cells = list(grid.get("cells") or ())
        rows = []
        for j, store in enumerate(grid.get("stores") or ()):
            line = []
            for i in range(len(modes)):
                cell = cells[i][j] if i < len(cells) and j < len(cells[i]) else None
                entry = by_id.get(str(cell)) if cell is not None else None
                line.append(None if entry is None or str(cell) not in anchors
                            else _heat_cell(entry, anchors[str(cell)]))
            rows.append({"store": store, "cells": line})
        out.append({"title": grid.get("title") or grid.get("scenario"), "modes": modes,
                    "rows": rows})
    return out


def _claims_view(
    results: Mapping[str, Any], anchors: Mapping[str, int]
) -> list[dict[str, Any]]:
    stored = results.get("claims") or []
    claims = []
    for claim in stored:
        item = dict(claim)
        cells = [*claim.get("supporting", ()), *claim.get("against", ())]
        item["links"] = [{"href": f"#exp-{anchors[i]}", "number": anchors[i],
                          "holds": i in claim.get("supporting", ())}
                         for i in cells if i in anchors]
        claims.append(item)
    return claims


def _context(results: Mapping[str, Any], results_dir: Path, drawn: Mapping[str, Any],
             embed: bool) -> dict[str, Any]:
    def image(rel: str | None) -> str | None:
        if not rel:
            return None
        return _data_uri(experiment_path(results_dir, rel)) if embed else rel

    entries = list(results.get("experiments") or ())
    anchors = {str(e.get("id")): n for n, e in enumerate(entries, 1)}
    experiments = []
    for entry in entries:
        mine = (drawn.get("experiments") or {}).get(str(entry.get("id"))) or {}
        plots = [
            {"title": _PLOT_TITLES.get(kind, kind), "src": image(mine.get(kind)), "kind": kind}
            for kind in (entry.get("plots") or {})
        ]
        verdict = entry.get("verdict") or {}
        witnesses = []
        for w in (verdict.get("witnesses") or ())[:8]:
            mode = witness_mode(entry, w)
            witnesses.append({"mode": FAILURE_MODES[mode][0] if mode in FAILURE_MODES else "",
                              "sentence": w.get("sentence") or w.get("kind")})
        modes = modes_of(entry)
        experiments.append({
            "entry": entry,
            "number": anchors[str(entry.get("id"))],
            "word": verdict_label(entry),
            "rate": format_rate(entry.get("anomaly_rate")),
            "plots": [p for p in plots if p["src"]],
            "witnesses": witnesses,
            "modes": [{"name": FAILURE_MODES.get(m, (m, ""))[0],
                       "meaning": FAILURE_MODES.get(m, ("", ""))[1]} for m in modes],
            "explanations": explain(entry) + [
                f"Fault: {describe_fault(e)}." for e in faults_of(entry.get("events") or ())],
            "measured": _measured(entry),
            "counts": verdict.get("counts") or {},
            "settings": _settings(entry.get("config") or {}, entry.get("interpreter")),
            "repeats": repeat_sentence(entry.get("repeats")),
            "interleaving": _interleaving_view(entry.get("interleaving")),
            "stepper": _stepper_view(entry.get("interleaving"), anchors[str(entry.get("id"))]),
            "names": entry.get("names") or {},
        })
    run_plots = drawn.get("run") or {}
    cost = [{"title": plot.get("title"), "mode": plot.get("mode"),
             "src": image((run_plots.get("cost") or {}).get(plot.get("stem")))}
            for plot in ((results.get("plots") or {}).get("cost") or ())]
    by_id = {str(item["entry"].get("id")): item for item in experiments}
    scenarios = list(results.get("scenarios") or ())
    groups = ([{"title": s.get("title") or s.get("name"),
                "rows": [by_id[i] for i in s.get("ids") or () if i in by_id]}
               for s in scenarios] if len(scenarios) > 1 else [{"title": "", "rows": experiments}])
    heatmaps = _heatmaps(results, anchors)
    updates = [{"title": _update_title(key),
                "src": image((run_plots.get("updates") or {}).get(key))}
               for key in ((results.get("plots") or {}).get("updates") or {})]
    return {
        "interpreters": _interpreters(results.get("interpreters")),
        "run": results.get("run") or {},
        "schema": results.get("schema"),
        "answer": answer(results),
        "headline": headline(results),
        "claims": _claims_view(results, anchors),
        "matrix": image(run_plots.get("matrix")),
        "heatmaps": heatmaps if len(experiments) > 1 else [],
        # Beside the claims while narrow enough; below them, across the page, when not.
        "heatmap_wide": len(heatmaps) > 1 or any(len(h["modes"]) > 3 for h in heatmaps),
        "cost": [c for c in cost if c["src"]],
        "updates": [u for u in updates if u["src"]],
        "experiments": experiments,
        "summary_groups": groups,
        "variants": any(item["names"].get("variant") for item in experiments),
        "steppers": any(item["stepper"] for item in experiments),
        "confidence": f"{CONFIDENCE:.0%}",
        "title": (results.get("run") or {}).get("label") or "racelab report",
    }


def _store_update(config: Mapping[str, Any]) -> str:
    """``redis (read-write)`` for an update other than atomic, else the store."""
    update = config.get("update")
    store = str(config.get("store") or "?")
    return f"{store} ({update})" if update and update != "atomic" else store


def _update_title(key: str) -> str:
    scenario, store, mode = [*key.split(":"), "", "", ""][:3]
    return f"{scenario} on {store} under {mode}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports.render", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["wbr"] = _break_after_hyphens
    return env


def _break_after_hyphens(text: object) -> markupsafe.Markup:
    """Escaped text that may break after a hyphen (``gunicorn-`` / ``gthread``), never
    inside a word."""
    return markupsafe.Markup("-<wbr>").join(markupsafe.escape(str(text)).split("-"))


@functools.lru_cache(maxsize=1)
def _stepper_script() -> tuple[str, str]:
    """The stepper's script and its CSP hash: the one script the report may run."""
    text = (Path(__file__).parent / "templates" / "stepper.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return text, f"sha256-{digest}"


def render_html(results: Mapping[str, Any], results_dir: Path, out: Path,
                drawn: Mapping[str, Any] | None = None) -> Path:
    """Write the self-contained HTML report (images embedded) and return its path.

    ``drawn`` is what ``plots.draw_all`` drew; without it the report has no images.
    """
    context = _context(results, results_dir, drawn or {}, embed=True)
    script, digest = _stepper_script() if context["steppers"] else ("", "")
    text = _environment().get_template("report.html.j2").render(
        **context, script=markupsafe.Markup(script), script_hash=digest)
    write_text(out, text)  # a link at ``out`` is replaced, never written through
    return out


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def _md(text: object) -> str:
    """Escape text for Markdown: HTML entities for <, >, &, backslashes for markup."""
    escaped = html_lib.escape(str(text), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", escaped).replace("\n", " ")


def _markdown_interleaving(il: Mapping[str, Any] | None) -> list[str]:
    if not il:
        return []
    fence = "`" * 3
    lines = ["### The interleaving, step by step", "",
             f"`{_md(il['method'])}` as {_md(il['python'])} (the interpreter that served these "
             "requests) compiles it:", ""]
    if il["dis"]:
        lines += [fence, str(il["dis"]).replace(fence, "'" * 3).rstrip(), fence, ""]
    else:
        lines += [f"No listing: {_md(il['error'])}", ""]
    if il["steps"]:
        lines += ["A reconstruction, not a recording: one order of the two requests' steps "
                  f"that gives both of them {il['value']}.", ""]
        lines += [f"{st['number']}. **{_md(st['who'])}** {_md(st['does'])}" for st in il["steps"]]
        lines.append("")
    lines += [f"What lets the switch happen there: {_md(il['switch'])}", ""]
    return lines


def render_markdown(results: Mapping[str, Any], results_dir: Path, out: Path,
                    drawn: Mapping[str, Any] | None = None) -> Path:
    """Write a Markdown report whose images are the files in ``plots/``; return its path."""
    ctx = _context(results, results_dir, drawn or {}, embed=False)
    run = ctx["run"]
    lines = [f"# {_md(ctx['title'])}", ""]
    if run.get("partial"):
        reason = run.get("partial_reason") or "not every experiment ran"
        lines += [f"> **Partial run:** {_md(reason)}", ""]
    lines += ["## Is a global safe here?", "", f"**{_md(ctx['headline'])}**", "",
              _md(ctx["answer"]), ""]
    lines += ["## The answer's claims, checked by this run", ""]
    for claim in ctx["claims"]:
        cells = ", ".join(f"[{link['number']}]({link['href']})" for link in claim["links"])
        lines.append(f"- **{claim['verdict']}**: {_md(claim['text'])} {_md(claim['why'])}"
                     + (f" (cells {cells})" if cells else ""))
    lines.append("")
    if ctx["matrix"]:
        lines += [f"![anomaly rate per mode and store]({ctx['matrix']})", ""]
    variant_head, variant_rule = ("variant | ", "--- | ") if ctx["variants"] else ("", "")
    for group in ctx["summary_groups"]:
        if group["title"]:
            lines += [f"### {_md(group['title'])}", ""]
        lines += [f"| experiment | mode | store | window | {variant_head}ok ops | req/s | p99 ms "
                  "| anomalies | verdict | failure mode |",
                  f"| --- | --- | --- | --- | {variant_rule}---: | ---: | ---: | ---: | --- "
                  "| --- |"]
        for item in group["rows"]:
            e = item["entry"]
            n = item["names"]
            lat = e.get("latency_ms") or {}
            anomalies = ("unknown" if e.get("anomalies") is None
                         else f"{e['anomalies']} ({item['rate']})")
            variant = f"{_md(n.get('variant') or '-')} | " if ctx["variants"] else ""
            lines.append(
                f"| {_md(e.get('label'))} | {_md(n.get('mode'))} | {_md(n.get('store'))} | "
                f"{_md(n.get('window'))} | {variant}{(e.get('ops') or {}).get('ok', 0)} | "
                f"{_md(e.get('throughput_rps') if e.get('throughput_rps') is not None else '-')}"
                f" | {_md(lat.get('p99', '-'))} | {anomalies} | **{item['word']}** | "
                f"{_md(', '.join(m['name'] for m in item['modes']))} |")
        lines.append("")
    for cost in ctx["cost"]:
        lines += [f"![{_md(cost['title'])}]({cost['src']})", ""]
    for update in ctx["updates"]:
        lines += [f"![the price of each update: {_md(update['title'])}]({update['src']})", ""]
    for number, item in enumerate(ctx["experiments"], 1):
        e = item["entry"]
        lines += [f'<a id="exp-{number}"></a>', "",
                  f"## {_md(e.get('label'))}: {item['word']}", ""]
        if e.get("status") == "failed":
            lines += [f"**The experiment failed:** {_md(e.get('error') or 'no error recorded')}",
                      ""]
        lines += [_md(item["measured"]), ""]
        for plot in item["plots"]:
            lines += [f"![{_md(plot['title'])}]({plot['src']})", ""]
        for mode in item["modes"]:
            lines += [f"- **{_md(mode['name'])}**: {_md(mode['meaning'])}"]
        if item["modes"]:
            lines.append("")
        if item["witnesses"]:
            lines += ["Witnesses:", ""] + [
                f"- {'**' + _md(w['mode']) + '** ' if w['mode'] else ''}{_md(w['sentence'])}"
                for w in item["witnesses"]] + [""]
        lines += _markdown_interleaving(item["interleaving"])
        lines += ["Why:", ""] + [f"- {_md(x)}" for x in item["explanations"]] + [""]
        lines += ["Reproduce:", "", "```", str(e.get("command") or "").replace("```", "'''"),
                  "```", ""]
    lines += [f"racelab {_md(run.get('racelab_version'))}, {_md(run.get('created'))}, "
              f"schema {_md(ctx['schema'])}", ""]
    write_text(out, "\n".join(lines))
    return out


# -- the entry point ----------------------------------------------------------------------


def render_run(
    run_dir: Path | str,
    formats: Iterable[str] = ("html",),
    svg: bool = False,
    meta: Mapping[str, Any] | None = None,
    reanalyse: bool = False,
) -> dict[str, Path]:
    """Render a run directory's report from its results.json; run nothing, change nothing.

    results.json is only read. When it is missing, or with ``reanalyse``, the
    analysis (``reanalyse_run``) writes it first, once; the renderer never does.

    Args:
        run_dir: a matrix run (``cells/<id>/``) or one experiment directory.
        formats: any of ``html``, ``md``, ``json``.
        svg: draw SVG instead of PNG.
        meta: run metadata for a results.json computed here (see ``build_results``).
        reanalyse: check and measure every experiment again.

    Returns:
        ``{"results": path, "html": path, "md": path}`` for what was written or read.

    Raises:
        ResultsError: no experiment, or an unreadable results.json.
    """
    from reports.render.plots import draw_all  # matplotlib: only for a report with plots

    run_dir = Path(run_dir)
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ResultsError(
            f"unknown report format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    path = run_dir / RESULTS_FILE
    if reanalyse or not path.exists():
        reanalyse_run(run_dir, meta)
    results = load_results(path)
    written = {"results": path}
    if "html" not in formats and "md" not in formats:
        return written  # plots only for a report that shows them
    drawn = draw_all(results, run_dir, fmt="svg" if svg else "png", matrix="md" in formats)
    if "html" in formats:
        written["html"] = render_html(results, run_dir, run_dir / "report.html", drawn)
    if "md" in formats:
        written["md"] = render_markdown(results, run_dir, run_dir / "report.md", drawn)
    return written
