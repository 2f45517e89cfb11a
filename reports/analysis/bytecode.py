"""The interleaving, step by step: the racy method's bytecode and one schedule of two threads.

For an experiment whose numbers repeated within one server process, this
module shows what a teacher draws on the board:

- the bytecode of the method that raced (``SomeObj.query``, the original
  ``self.param += 1; return self.param``, or ``WindowedObj.query`` with the
  window between read and write), as *the server's interpreter* compiles it:
  the class's source from ``demo_server/stores.py`` is compiled and
  disassembled by ``dis`` in a subprocess of the executable that served the
  requests, not by the interpreter rendering the report;
- one order of the two requests' steps (which thread read, which was switched
  out, which wrote) that gives both of them the same number. It is a
  reconstruction consistent with the witness, not a recording: the history shows
  what each request got, never the order of instructions;
- for the window, one sentence on what lets the switch happen there;
- what the report's stepper needs to let a student be the scheduler: each
  instruction's effect on a thread's value and on ``self.param``, the
  reconstructed schedule as one thread per instruction (its replay), and the
  sentences it prints (``stepper``).

``interleaving(entry, table)`` computes all of it once, for results.json.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reports.history.table import HistoryTable

__all__ = ["DIS_SCRIPT", "disassemble", "interleaving", "racy_method", "schedule", "stepper",
           "switch_sentence"]

_TIMEOUT_S = 20

# Runs under the server's interpreter (3.6 or later): stdlib only, no f-strings needed.
DIS_SCRIPT = r'''
import dis, io, json, platform, sys
request = json.loads(sys.stdin.read())
module = compile(request["source"], request["filename"], "exec")
def find(code, names):
    for const in code.co_consts:
        if hasattr(const, "co_code") and const.co_name == names[0]:
            return const if len(names) == 1 else find(const, names[1:])
    return None
code = find(module, request["qualname"].split("."))
text = io.StringIO()
dis.dis(code, file=text)
rows = []
for ins in dis.get_instructions(code):
    line = getattr(ins, "line_number", None)
    if line is None and not isinstance(ins.starts_line, bool):
        line = ins.starts_line
    rows.append({"offset": ins.offset, "opname": ins.opname, "argrepr": ins.argrepr,
                 "line": line})
print(json.dumps({"version": platform.python_version(),
                  "implementation": platform.python_implementation(),
                  "executable": sys.executable, "dis": text.getvalue(),
                  "instructions": rows}))
'''


def racy_method(window: str | None) -> tuple[str, str, str]:
    """(qualified name, source, file name) of the method that races for a window.

    The source is the classes' own text from ``scenarios/counter/stores.py``, padded
    with blank lines so that line numbers match the file.
    """
    from scenarios.counter import stores  # imports Flask: only when a race is explained

    classes = [stores.SomeObj] if (window or "none") == "none" else [stores.SomeObj,
                                                                       stores.WindowedObj]
    qualname = f"{classes[-1].__name__}.query"
    filename = inspect.getsourcefile(stores) or "stores.py"
    pieces: list[str] = []
    line = 1
    for cls in classes:
        lines, start = inspect.getsourcelines(cls)
        pieces.append("\n" * (start - line) + "".join(lines))
        line = start + len(lines)
    return qualname, "".join(pieces), os.path.basename(filename)


@functools.lru_cache(maxsize=32)
def _run_dis(executable: str, qualname: str, source: str, filename: str) -> str:
    completed = subprocess.run(
        [executable, "-I", "-c", DIS_SCRIPT],
        input=json.dumps({"source": source, "qualname": qualname, "filename": filename}),
        capture_output=True, text=True, timeout=_TIMEOUT_S, check=False,
    )
    if completed.returncode != 0:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise OSError(f"{executable} could not disassemble it: {tail}")
    return completed.stdout


def disassemble(executable: str, window: str | None) -> dict[str, Any]:
    """The racy method's bytecode as ``executable`` compiles it.

    Args:
        executable: the Python that served the requests.
        window: the experiment's window (``none`` is the original code).

    Returns:
        ``{"method", "executable", "version", "implementation", "dis",
        "instructions": [{offset, opname, argrepr, line}], "error"}``; ``error``
        says why there is no listing (the interpreter is gone, too old, ...).
    """
    qualname, source, filename = racy_method(window)
    out: dict[str, Any] = {"method": qualname, "executable": executable, "version": "",
                           "implementation": "", "dis": "", "instructions": [], "error": ""}
    try:
        data = json.loads(_run_dis(executable, qualname, source, filename))
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        out["error"] = str(exc) or type(exc).__name__
        return out
    out.update({k: data.get(k, out[k]) for k in ("version", "implementation", "dis",
                                                 "instructions")})
    return out


def _python_at_least(version: str | None, major: int, minor: int) -> bool | None:
    match = re.match(r"(\d+)\.(\d+)", version or "")
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2))) >= (major, minor)


def switch_sentence(config: Mapping[str, Any]) -> str:
    """What lets a thread (or greenlet) be switched out between the read and the write."""
    window = config.get("window") or "none"
    gevent = config.get("mode") == "gevent"
    if config.get("gil") is False:
        return ("This build runs without the GIL: both threads execute these instructions at "
                "the same time on different cores, so no switch is needed at all.")
    if window == "none":
        if gevent:
            return ("Nothing here yields to the gevent hub: greenlets switch only at I/O or a "
                    "sleep, so this gap can open only between processes, not greenlets.")
        if _python_at_least(config.get("python"), 3, 10):
            return ("Only the instructions of += itself lie between the read and the write. "
                    "CPython 3.10 and later hand the GIL to another thread only at calls and "
                    "backward jumps, so a switch here is rare; when the running thread's 5 ms "
                    "switch interval has expired it is still asked to let go at the next check.")
        return ("Only the instructions of += itself lie between the read and the write, but "
                "CPython before 3.10 may hand the GIL to another thread between any two "
                "instructions once the 5 ms switch interval expires.")
    return {
        "call": "The call to self.window() (a function that does nothing): a call is a point "
                "where the interpreter checks whether another thread asked for the GIL.",
        "work": f"self.window() spins for {config.get('work_us') or '?'} µs calling "
                "time.perf_counter_ns(): every call and every backward jump of that loop is "
                "a point where the thread is switched out once its 5 ms interval expires.",
        "yield": ("self.window() calls time.sleep(0): under gevent the patched sleep switches "
                  "to another greenlet; otherwise the sleep releases the GIL and a waiting "
                  "thread runs."),
        "io": "self.window() sleeps 1 ms with the GIL released, as real I/O would: every "
              "other request in the process runs meanwhile.",
    }.get(str(window), "The window between the read and the write lets another request in.")


def _phases(instructions: Sequence[Mapping[str, Any]]) -> dict[str, int] | None:
    """Indices of the read, the window call (if any), the write and the return."""
    def is_param(ins: Mapping[str, Any]) -> bool:
        return re.search(r"\bparam\b", str(ins.get("argrepr") or "")) is not None

    read = next((i for i, ins in enumerate(instructions)
                 if str(ins.get("opname")).startswith("LOAD_ATTR") and is_param(ins)), None)
    write = next((i for i, ins in enumerate(instructions)
                  if str(ins.get("opname")).startswith("STORE_ATTR") and is_param(ins)), None)
    if read is None or write is None or write <= read:
        return None
    call = next((i for i in range(read + 1, write)
                 if str(instructions[i].get("opname")).startswith("CALL")), None)
    return {"read": read, "call": -1 if call is None else call, "write": write,
            "end": len(instructions) - 1}


def _span(instructions: Sequence[Mapping[str, Any]], lo: int, hi: int) -> list[int]:
    return [int(instructions[i].get("offset") or 0) for i in range(lo, hi + 1)]


def schedule(
    instructions: Sequence[Mapping[str, Any]], value: int, first: str, second: str,
    config: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """One order of two requests' steps that gives both of them ``value``.

    Args:
        instructions: the racy method's instructions (``disassemble``).
        value: the number both requests got.
        first: name of the request (thread) that read first.
        second: name of the other one.
        config: the experiment's configuration (window, mode).

    Returns:
        Steps ``{"who", "does", "offsets", "param"}`` in order: ``offsets`` are
        the instructions of the step, ``param`` the value of ``self.param`` after it.
    """
    phases = _phases(instructions)
    if phases is None:
        return []
    read, call, end = phases["read"], phases["call"], phases["end"]
    before = value - 1
    switch_at = call if call >= 0 else read
    where = ("inside self.window()" if call >= 0 else "right after its read")
    unit = "greenlet" if config.get("mode") == "gevent" else "thread"
    return [
        {"who": first, "does": f"reads self.param: {before}",
         "offsets": _span(instructions, 0, read), "param": before},
        {"who": first, "does": f"is switched out {where}, before it writes",
         "offsets": _span(instructions, read + 1, switch_at), "param": before},
        {"who": second, "does": f"reads self.param: {before} as well (the {unit} that read "
                                "first has not written yet)",
         "offsets": _span(instructions, 0, read), "param": before},
        {"who": second, "does": f"adds 1, writes {value}, returns {value}",
         "offsets": _span(instructions, read + 1, end), "param": value},
        {"who": first, "does": f"resumes, adds 1 to the {before} it read, writes {value} over "
                               f"the {value} already there (one increment is lost), returns "
                               f"{value}",
         "offsets": _span(instructions, switch_at + 1, end), "param": value},
    ]


_ADDS = ("BINARY_OP", "BINARY_ADD", "INPLACE_ADD")


def _effects(instructions: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """What each instruction does to a thread's value or the shared attribute.

    ``read`` (the thread takes ``self.param``'s value), ``call`` (a call between read
    and write: a point where a switch may happen), ``add`` (its value plus one),
    ``write`` (``self.param`` takes the thread's value), ``reread`` (it reads
    ``self.param`` again to return it), ``return``, or ``""`` (nothing a student
    needs to follow: loading ``self``, a constant, the stack's shuffles).
    """
    phases = _phases(instructions)
    if phases is None:
        return None
    read, call, write = phases["read"], phases["call"], phases["write"]
    effects = [""] * len(instructions)
    effects[read] = "read"
    effects[write] = "write"
    if call >= 0:
        effects[call] = "call"
    add = next((i for i in range(read + 1, write)
                if str(instructions[i].get("opname")) in _ADDS
                and str(instructions[i].get("argrepr") or "+").startswith("+")), None)
    if add is None:
        return None
    effects[add] = "add"
    reread = next((i for i in range(write + 1, len(instructions))
                   if str(instructions[i].get("opname")).startswith("LOAD_ATTR")
                   and re.search(r"\bparam\b", str(instructions[i].get("argrepr") or ""))),
                  None)
    if reread is not None:
        effects[reread] = "reread"
    ret = next((i for i in range(len(instructions) - 1, write, -1)
                if str(instructions[i].get("opname")).startswith("RETURN")), None)
    if ret is not None:
        effects[ret] = "return"
    return effects


def stepper(
    instructions: Sequence[Mapping[str, Any]], steps: Sequence[Mapping[str, Any]],
    value: int, threads: Sequence[str], source: str, ops: Sequence[int], unit: str,
) -> dict[str, Any] | None:
    """What the report's stepper needs to let a student schedule the two requests.

    The student picks which thread runs its next instruction; the page applies each
    instruction's effect (``_effects``) to the thread's value and to ``self.param``,
    and prints the sentences stored here, filled with the values of the moment.

    Args:
        instructions: the racy method's instructions, as the server's interpreter
            compiled them.
        steps: the schedule reconstructed from the witness (``schedule``).
        value: the number both requests of the witness got.
        threads: the two requests' names, the one that read first first.
        source: the method's source, its lines numbered as in its file.
        ops: the witness's operation ids.
        unit: ``thread`` or ``greenlet``.

    Returns:
        ``{"threads", "start", "value", "program": [{"offset", "text", "line",
        "source", "effect"}], "replay": [thread index per instruction], "local",
        "words": {...}}``; ``None`` when the method's read, add and write cannot be
        told apart in its bytecode.
    """
    effects = _effects(instructions)
    if effects is None or len(threads) != 2:
        return None
    lines = source.splitlines()
    program = []
    shown: set[int] = set()
    for ins, effect in zip(instructions, effects, strict=True):
        line = ins.get("line")
        text_line = ""
        if isinstance(line, int) and line not in shown and 0 < line <= len(lines):
            shown.add(line)
            text_line = lines[line - 1].strip()
        program.append({"offset": int(ins.get("offset") or 0),
                        "text": f"{ins.get('opname')} {ins.get('argrepr') or ''}".strip(),
                        "line": line if isinstance(line, int) else None,
                        "source": text_line, "effect": effect})
    index = {p["offset"]: i for i, p in enumerate(program)}
    replay: list[int] = []
    for step in steps:
        who = threads.index(step["who"]) if step.get("who") in threads else None
        if who is None:
            return None
        replay += [who] * sum(1 for off in step.get("offsets") or () if int(off) in index)
    if replay.count(0) != len(program) or replay.count(1) != len(program):
        replay = []  # not a whole run of both: no replay rather than a wrong one
    # The windowed method keeps what it read in a local variable; += keeps it on the stack.
    local = ("local value" if any(str(i.get("opname")).startswith("STORE_FAST")
                                  and i.get("argrepr") == "value" for i in instructions)
             else "value on its stack")
    witness = " and ".join(str(o) for o in ops)
    return {
        "threads": list(threads),
        "unit": unit,
        "start": value - 1,
        "value": value,
        "attribute": "self.param",
        "local": local,
        "program": program,
        "replay": replay,
        "witness_ops": list(ops),
        "words": {
            "start": (f"self.param holds {value - 1}, as it did just before requests "
                      f"{witness}. Pick which {unit} runs its next instruction."),
            "read": "{who} reads self.param: {value}",
            "call": (f"{{who}} calls self.window(): a point where the interpreter may "
                     f"switch to the other {unit}"),
            "add": "{who} adds 1: it now holds {value}",
            "write": "{who} writes {value} to self.param",
            "lost": ("Lost update: {who} writes {value} over the {old} already in "
                     "self.param, so the other request's increment is gone."),
            "reread": "{who} reads self.param again, to return it: {value}",
            "return": "{who} returns {value}",
            "other": "{who} runs {instruction}",
            "same": (f"Both requests got {{value}}, as requests {witness} did in the run: "
                     "the measured witness."),
            "same_no_lost": ("Both requests got {value}, yet no update was lost: each read "
                             "self.param again to return it, after both had written."),
            "done": ("Both requests are done: self.param is {value}, each got its own "
                     "number, and no update was lost. Try another order."),
            "finished": "{who} has returned; run the other one.",
        },
    }


def _name(op: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    unit = "greenlet" if config.get("mode") == "gevent" else "thread"
    tid = op.get("tid")
    suffix = f" …{int(tid) % 100000:05d}" if tid is not None and unit == "thread" else ""
    return f"request {op.get('op_id')} ({unit}{suffix})"


def _arrivals(table: HistoryTable | None, op_ids: Sequence[int]) -> dict[int, int]:
    if table is None:
        return {}
    import numpy as np

    wanted = np.isin(table.op_id, np.asarray(list(op_ids), dtype=np.int64))
    rows = np.flatnonzero(wanted & table.arrival_known)
    return {int(table.op_id[i]): int(table.arrival_ns[i]) for i in rows}


def _server_executable(config: Mapping[str, Any]) -> tuple[str | None, str]:
    """The executable that served the experiment, or why there is none."""
    executable = config.get("executable")
    if executable:
        return str(executable), ""
    recorded = config.get("python")
    if recorded and recorded == platform.python_version():
        # Not recorded (older results): this interpreter is the same version.
        return sys.executable, ""
    return None, ("the server's executable was not recorded, and this interpreter "
                  f"({platform.python_version()}) is not the one that served it "
                  f"({recorded or 'unknown'})")


def interleaving(
    entry: Mapping[str, Any], table: HistoryTable | None = None
) -> dict[str, Any] | None:
    """The bytecode and a reconstructed schedule for a within-process duplicate.

    Args:
        entry: a results.json experiment entry with its ``failure_modes``.
        table: its history, for the server arrival times of the witness's requests.

    Returns:
        ``None`` unless the entry shows interleaving with a same-process
        duplicate of the global or lock store; else ``{"witness_ops",
        "value", "bytecode": disassemble(...), "schedule": [...], "switch",
        "reconstruction": True}``.
    """
    config = entry.get("config") or {}
    if "interleaving" not in (entry.get("failure_modes") or ()):
        return None
    if config.get("store") not in ("global", "lock") or (config.get("scenario")
                                                        or "counter") != "counter":
        return None  # the racy method shown is the counter's SomeObj.query
    witness = next(
        (w for w in (entry.get("verdict") or {}).get("witnesses") or ()
         if w.get("kind") == "duplicate" and (w.get("details") or {}).get("scope") == "same-process"
         and len((w.get("details") or {}).get("ops") or ()) >= 2),
        None)
    if witness is None:
        return None
    details = witness["details"]
    ops = list(details["ops"])[:2]
    arrival = _arrivals(table, [int(op["op_id"]) for op in ops])
    ops.sort(key=lambda op: (arrival.get(int(op["op_id"]), int(op.get("invoke_ns") or 0)),
                             int(op["op_id"])))
    executable, problem = _server_executable(config)
    if executable is None:
        code: dict[str, Any] = {"method": racy_method(config.get("window"))[0],
                                "executable": "", "version": config.get("python") or "",
                                "implementation": config.get("implementation") or "",
                                "dis": "", "instructions": [], "error": problem}
    else:
        code = disassemble(executable, config.get("window"))
    value = int(details.get("value") or ops[0].get("value") or 0)
    names = [_name(ops[0], config), _name(ops[1], config)]
    steps = schedule(code["instructions"], value, names[0], names[1],
                     config) if code["instructions"] else []
    witness_ops = [int(op["op_id"]) for op in ops]
    unit = "greenlet" if config.get("mode") == "gevent" else "thread"
    return {
        "witness_ops": witness_ops,
        "value": value,
        "pid": details.get("pid"),
        "bytecode": code,
        "schedule": steps,
        "switch": switch_sentence(config),
        "reconstruction": True,
        "stepper": stepper(code["instructions"], steps, value, names,
                           racy_method(config.get("window"))[1], witness_ops, unit)
        if steps else None,
    }
