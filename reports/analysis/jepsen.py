"""Jepsen histories in and out: export racelab's, read anyone's, check them as Jepsen does.

A Jepsen history (``jepsen-io/history``) is a sequence of op maps in real-time
order: ``:index`` (dense, from 0), ``:time`` (ns), ``:type`` (``:invoke``, then
one of ``:ok``, ``:fail``, ``:info``), ``:process``, ``:f`` and ``:value``. Each
operation is an invocation and, later, its completion by the same process; a
process never has two operations in flight, and one whose operation ended in
``:info`` (unknown outcome) is retired: its thread goes on as a new process.

**Export** (``write_jepsen``): each racelab row becomes an invocation at its
``invoke_ns`` and a completion at its ``complete_ns``, both in nanoseconds from
the first invocation, sorted by time (at equal times invocations first, so no
order is claimed that the clocks do not show), indexed densely. Each client is a
Jepsen thread: client *t* (in order of first appearance, of *C* clients) starts
as process *t* and becomes process *t + C*, *t + 2C*, ... after an ``info`` row,
or when its next row starts before its last one completed. The ``:f`` mapping:

- ``incr`` (increment and get) is ``:add`` with ``:value 1``, as in Jepsen's
  counter workload; the number the server returned rides on the completion as
  ``:new-value``, since an ``:add`` has no result of its own.
- ``read`` is ``:read``, its completion's ``:value`` the number read.
- every op of the ``ids`` scenario is ``:generate``, its completion's ``:value``
  the id handed out (Jepsen's unique-ids workload).
- any other op keeps its name as ``:f``, its completion's ``:value`` the value.

The run's faults (its ``events.json``: a worker killed, a store stopped or
restarted, a load generator dead) become ``:nemesis`` ops, ``:type :info``,
``:f`` the fault's kind (``:kill-worker``, ``:restart-store``...), ``:value`` what
happened, at their time among the client ops; a store restart says whether the
store came back empty (``:state :lost``) or not (``:kept``).

Completions carry what racelab knows besides: ``:op-id``, ``:server-pid``,
``:server-tid``, ``:server-arrival-ns`` and ``:server-departure-ns`` (on the
same time scale as ``:time``), ``:node`` (the URL), ``:burst``, ``:status``,
``:error``. A row whose completion time is unknown gets ``:time-unknown true``:
a ``fail`` then completes at its invocation, an ``info`` at the end of the history.

**Import** (``read_jepsen``): JSON (an array of op maps with string keys and
values, as elle-cli reads) or EDN (one op map per line, or a vector). Ops of a
process that is not an integer (the nemesis) are skipped. An invocation never
completed is indeterminate, like ``:info``.

**Checks** (``check_jepsen``): a history with nemesis ops met faults, as Jepsen
marks it wherever it is analysed: its verdict is at best unknown, naming them,
and after a ``:restart-store`` that did not keep the store (``:state`` other
than ``:kept``) repeated values are no race. ``:generate`` ops go to the ``ids`` scenario's
checkers, with Jepsen's unique-ids counts beside (attempted, acknowledged,
duplicated, range); ``:add`` and
``:read`` go to the counter checker: racelab's own (duplicates, skips, lost
updates, real-time order) when every acknowledged ``:add`` carries
``:new-value``, Jepsen's bounds on reads otherwise (each ok read lies between
the acknowledged increments when it began and the attempted ones when it ended).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from reports.analysis.checking import check_history
from reports.history._edn import EdnError, dumps_op, read_forms
from reports.history.table import (
    FAIL,
    INFO,
    OK,
    HistoryTable,
    MalformedHistory,
    validate,
)
from reports.history.verdict import Verdict, Witness, compose

__all__ = [
    "JEPSEN_F",
    "NEMESIS",
    "Pair",
    "check_jepsen",
    "export_ops",
    "jepsen_counter",
    "jepsen_unique_ids",
    "nemesis_problems",
    "pair_ops",
    "read_jepsen",
    "table_from_pairs",
    "write_jepsen",
]

#: racelab op -> Jepsen ``:f``; other ops keep their name (the ``ids`` scenario's are ``generate``).
JEPSEN_F = {"incr": "add", "read": "read"}
_TYPES = ("ok", "fail", "info")  # outcome codes OK, FAIL, INFO
_COMPLETIONS = frozenset(_TYPES)
_KEYWORDS = frozenset({"type", "f", "process", "state"})
NEMESIS = "nemesis"  #: the ``:process`` of fault ops
_DUPLICATES_SHOWN = 48  # Jepsen's unique-ids shows at most this many duplicated ids
WITNESSES = 3


# --- export --------------------------------------------------------------------------


def _f_names(table: HistoryTable, scenario: str) -> list[str]:
    if scenario == "ids":
        return ["generate"] * len(table.op_names)
    return [JEPSEN_F.get(name, name) for name in table.op_names]


def _processes(table: HistoryTable, end: int) -> np.ndarray:
    """Jepsen process of each row: a client's thread, renumbered after info or overlap."""
    n = len(table)
    clients = len(table.client_names)
    process = np.empty(n, dtype=np.int64)
    order = np.lexsort((table.op_id, table.invoke_ns, table.client))
    # The completion time a row's process is busy until (unknown fail: its invocation;
    # unknown info: the end of the history).
    busy = np.where(table.complete_known, table.complete_ns,
                    np.where(table.outcome == FAIL, table.invoke_ns, end))
    client, invoke, outcome = table.client.tolist(), table.invoke_ns.tolist(), table.outcome
    info = (outcome == INFO).tolist()
    busy_list = busy.tolist()
    current: dict[int, int] = {}
    until: dict[int, int] = {}
    retired: dict[int, bool] = {}
    for i in order.tolist():
        c = client[i]
        if c not in current:
            current[c] = c
        elif retired[c] or invoke[i] <= until[c]:
            current[c] += clients
        process[i] = current[c]
        until[c], retired[c] = busy_list[i], info[i]
    return process


def _nemesis_ops(faults: Sequence[Mapping[str, Any]], start: int
                 ) -> list[tuple[int, list[tuple[str, Any]]]]:
    """The run's faults as nemesis ops (without ``index``), each with its time."""
    ops = []
    for event in faults:
        t_ns = event.get("t_ns")
        time_ns = max(0, int(t_ns) - start) if isinstance(t_ns, int) else 0
        kind = str(event.get("kind") or "fault").removeprefix("fault:")
        op: list[tuple[str, Any]] = [("time", time_ns), ("type", "info"),
                                     ("process", NEMESIS), ("f", kind),
                                     ("value", str(event.get("detail") or ""))]
        if kind == "restart-store":
            op.append(("state", str(event.get("state") or "lost")))
        ops.append((time_ns, op))
    return sorted(ops, key=lambda item: item[0])


def export_ops(table: HistoryTable, scenario: str = "counter",
               faults: Sequence[Mapping[str, Any]] = ()) -> Iterator[list[tuple[str, Any]]]:
    """The history as Jepsen ops, in index order; each op is a list of (key, value) pairs.

    Args:
        table: a racelab history.
        scenario: ``ids`` maps every op to ``:generate``; others map by op name.
        faults: the run's fault events (``t_ns``, ``kind``, ``detail``), as nemesis ops.

    Yields:
        Two ops per row (invocation, completion) and one per fault, ``index`` dense from 0.
    """
    n = len(table)
    if n == 0:
        for index, (_, fault) in enumerate(_nemesis_ops(faults, 0)):
            yield [("index", index), *fault]
        return
    start = int(table.invoke_ns.min())
    end = int(max(table.invoke_ns.max(), table.complete_ns[table.complete_known].max()
                  if table.complete_known.any() else 0))
    process = _processes(table, end)
    fail_unknown = ~table.complete_known & (table.outcome == FAIL)
    done = np.where(table.complete_known, table.complete_ns,
                    np.where(fail_unknown, table.invoke_ns, end))
    times = np.concatenate([table.invoke_ns, done]) - start
    kinds = np.concatenate([np.zeros(n, np.int8), np.ones(n, np.int8)])
    rows = np.concatenate([np.arange(n), np.arange(n)])
    events = np.lexsort((rows, kinds, times))
    fs = _f_names(table, scenario)
    columns = {
        "op_id": table.op_id.tolist(), "op": table.op.tolist(),
        "client": table.client.tolist(), "outcome": table.outcome.tolist(),
        "value": table.value.tolist(), "value_known": table.value_known.tolist(),
        "known": table.complete_known.tolist(), "process": process.tolist(),
        "pid": table.server_pid.tolist(), "pid_known": table.server_pid_known.tolist(),
        "tid": table.server_tid.tolist(), "tid_known": table.server_tid_known.tolist(),
        "arrival": (table.arrival_ns - start).tolist(), "arrival_known":
            table.arrival_known.tolist(),
        "departure": (table.departure_ns - start).tolist(), "departure_known":
            table.departure_known.tolist(),
        "url": table.url.tolist(), "burst": table.burst.tolist(),
        "burst_known": table.burst_known.tolist(), "error": table.error.tolist(),
    }
    assert table.status is not None and table.status_known is not None
    status, status_known = table.status.tolist(), table.status_known.tolist()
    time_list, kind_list, row_list = times.tolist(), kinds.tolist(), rows.tolist()
    nemesis = _nemesis_ops(faults, start)
    index = -1
    for e in events.tolist():
        while nemesis and nemesis[0][0] <= time_list[e]:
            index += 1
            yield [("index", index), *nemesis.pop(0)[1]]
        index += 1
        i = row_list[e]
        f = fs[columns["op"][i]]
        add = f == "add"
        if kind_list[e] == 0:
            yield [("index", index), ("time", time_list[e]), ("type", "invoke"),
                   ("process", columns["process"][i]), ("f", f),
                   ("value", 1 if add else None), ("op-id", columns["op_id"][i]),
                   ("client", table.client_names[columns["client"][i]])]
            continue
        outcome = columns["outcome"][i]
        value: Any = columns["value"][i] if columns["value_known"][i] else None
        op: list[tuple[str, Any]] = [
            ("index", index), ("time", time_list[e]), ("type", _TYPES[outcome]),
            ("process", columns["process"][i]), ("f", f), ("value", 1 if add else value),
            ("op-id", columns["op_id"][i])]
        if add and value is not None:
            op.append(("new-value", value))
        for key, name in (("server-pid", "pid"), ("server-tid", "tid"),
                          ("server-arrival-ns", "arrival"),
                          ("server-departure-ns", "departure"), ("burst", "burst")):
            known = columns[name + "_known"][i]
            if known:
                op.append((key, columns[name][i]))
        if status_known[i]:
            op.append(("status", status[i]))
        url = table.url_names[columns["url"][i]] if table.url_names else ""
        if url:
            op.append(("node", url))
        if columns["error"][i]:
            op.append(("error", str(columns["error"][i])))
        if not columns["known"][i]:
            op.append(("time-unknown", True))
        yield op
    for _, rest in nemesis:
        index += 1
        yield [("index", index), *rest]


def write_jepsen(table: HistoryTable, out: IO[str], *, edn: bool = False,
                 scenario: str = "counter", faults: Sequence[Mapping[str, Any]] = ()) -> int:
    """Write the history as a Jepsen history: a JSON array, or EDN one op per line.

    Args:
        table: a racelab history.
        out: a text stream.
        edn: EDN (Jepsen's ``history.edn`` layout) instead of JSON.
        scenario: see ``export_ops``.
        faults: the run's fault events, written as nemesis ops (see ``export_ops``).

    Returns:
        The number of ops written (twice the rows, and one per fault).
    """
    count = 0
    if not edn:
        out.write("[")
    for op in export_ops(table, scenario, faults):
        if edn:
            out.write(dumps_op(op, _KEYWORDS) + "\n")
        else:
            out.write(("\n" if count == 0 else ",\n") + json.dumps(dict(op)))
        count += 1
    if not edn:
        out.write("\n]\n" if count else "]\n")
    return count


# --- import --------------------------------------------------------------------------


def read_jepsen(path: Path | str, fmt: str | None = None) -> list[dict[str, Any]]:
    """Read a Jepsen history file as a list of op maps (string keys, keywords as strings).

    Args:
        path: a JSON or EDN file.
        fmt: ``"json"`` or ``"edn"``; ``None`` looks at the content.

    Returns:
        The ops in file order.

    Raises:
        MalformedHistory: not JSON / EDN, nested too deeply, or not a sequence of maps.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedHistory(f"not UTF-8 (byte {exc.start}); save the history as UTF-8") \
            from None
    except OSError as exc:
        raise MalformedHistory(f"cannot open: {exc.strerror or exc}") from None
    if fmt is None:
        fmt = sniff_text(text) or "json"
    forms: list[Any]
    if fmt == "json":
        try:
            data = json.loads(text)
        except RecursionError:
            raise MalformedHistory("JSON nested too deeply to be a history") from None
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError) and "Extra data" in exc.msg:
                forms = _json_lines(text)  # one op per line
            else:
                line = getattr(exc, "lineno", None)
                raise MalformedHistory(_json_problem(exc, text),
                                       f"line {line}" if line else "") from None
        else:
            forms = data if isinstance(data, list) else [data]
    else:
        try:
            forms = list(read_forms(text))
        except EdnError as exc:
            raise MalformedHistory(f"not EDN: {exc}", f"line {exc.line}") from None
        if len(forms) == 1 and isinstance(forms[0], list):
            forms = forms[0]
    for i, op in enumerate(forms):
        if not isinstance(op, dict):
            raise MalformedHistory(f"op {i} is a {type(op).__name__}, not a map")
    return forms


def _json_lines(text: str) -> list[Any]:
    forms = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                forms.append(json.loads(line))
            except RecursionError:
                raise MalformedHistory("JSON nested too deeply to be a history",
                                       f"line {number}") from None
            except ValueError as exc:
                raise MalformedHistory(f"not JSON: {getattr(exc, 'msg', exc)}",
                                       f"line {number}") from None
    return forms


def _json_problem(exc: ValueError, text: str) -> str:
    """What is wrong with a JSON text, saying so when it ends before its last value does."""
    if not isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc}"
    said = f"{exc.msg.removesuffix(' at')} at column {exc.colno}"
    if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
        return f"not JSON: {said}; the file ends too early (cut short?)"
    return f"not JSON: {said}"


def sniff_text(head: str) -> str | None:
    """``"json"`` or ``"edn"`` when the text starts like a Jepsen history, else ``None``.

    A first character ``[``, ``{`` or ``(`` is never a CSV history's (its header
    starts with a column name), so such a text is JSON or EDN even when it is cut
    short or nested beyond reason: its reader then says what is wrong with it.
    """
    stripped = head.lstrip("\ufeff \t\r\n")
    if stripped[:1] in (";", "#"):  # an EDN comment or tagged literal
        return "edn"
    if not stripped or stripped[0] not in "[{(":
        return None
    body = stripped.lstrip("[({ \t\r\n")
    if body.startswith(":") or body.startswith("#") or stripped[0] == "(":
        return "edn"
    return "json"


@dataclasses.dataclass(frozen=True)
class Pair:
    """One operation: its invocation and completion (``None`` if it never completed)."""

    invoke: dict[str, Any]
    completion: dict[str, Any] | None
    invoke_at: int  # position in the history
    completion_at: int | None


def _where(op: dict[str, Any], position: int) -> str:
    index = op.get("index")
    return f"index {index}" if isinstance(index, int) else f"op {position + 1}"


def pair_ops(ops: list[dict[str, Any]]) -> tuple[list[Pair], int]:
    """Match each invocation with its process's next completion, per Jepsen's rules.

    Args:
        ops: a Jepsen history in order.

    Returns:
        The operations in invocation order, and how many non-client ops (the
        nemesis: a process that is not an integer) were skipped.

    Raises:
        MalformedHistory: an op without a known ``type``, a process that invokes
            while its operation is in flight, a completion without an invocation,
            or a completion whose ``f`` differs from its invocation's.
    """
    pairs: list[Pair | None] = []
    in_flight: dict[int, int] = {}  # process -> slot in pairs
    skipped = 0
    for position, op in enumerate(ops):
        process, kind = op.get("process"), op.get("type")
        if not isinstance(process, int) or isinstance(process, bool):
            skipped += 1
            continue
        if kind == "invoke":
            if process in in_flight:
                earlier = pairs[in_flight[process]]
                assert earlier is not None
                raise MalformedHistory(
                    f"process {process} invokes while its operation from "
                    f"{_where(earlier.invoke, earlier.invoke_at)} is still in flight",
                    _where(op, position), "process")
            in_flight[process] = len(pairs)
            pairs.append(Pair(op, None, position, None))
        elif kind in _COMPLETIONS:
            slot = in_flight.pop(process, None)
            if slot is None:
                raise MalformedHistory(
                    f"{'an' if kind in ('ok', 'info') else 'a'} {kind} completion for process "
                    f"{process}, which has no operation "
                    "in flight", _where(op, position), "process")
            started = pairs[slot]
            assert started is not None
            if op.get("f") != started.invoke.get("f"):
                raise MalformedHistory(
                    f"completes f {op.get('f')!r}, but its invocation was "
                    f"{started.invoke.get('f')!r}", _where(op, position), "f")
            pairs[slot] = Pair(started.invoke, op, started.invoke_at, position)
        else:
            raise MalformedHistory(
                f"unknown type {kind!r}; expected one of: invoke, ok, fail, info",
                _where(op, position), "type")
    return [p for p in pairs if p is not None], skipped


def _int(value: Any, what: str, op: dict[str, Any], position: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedHistory(f"not an integer: {value!r}", _where(op, position), what)
    if not -(2**63) <= value < 2**63:
        raise MalformedHistory(f"integer out of the 64-bit range: {value}",
                               _where(op, position), what)
    return value


def table_from_pairs(pairs: list[Pair], source: str = "jepsen") -> HistoryTable:
    """A racelab history from paired Jepsen ops (``:add`` with ``:new-value`` -> ``incr``).

    Raises:
        MalformedHistory: a value, time or id that is not a 64-bit integer, or a
            completion before its invocation.
    """
    n = len(pairs)
    ints = {name: np.zeros(n, dtype=np.int64) for name in (
        "op_id", "value", "invoke", "complete", "pid", "tid", "arrival", "departure",
        "burst", "status")}
    known = {name: np.zeros(n, dtype=bool) for name in (
        "value", "complete", "pid", "tid", "arrival", "departure", "burst", "status")}
    outcome = np.full(n, INFO, dtype=np.int8)
    clients: dict[str, int] = {}
    ops: dict[str, int] = {}
    urls: dict[str, int] = {}
    client = np.zeros(n, dtype=np.int32)
    op_code = np.zeros(n, dtype=np.int32)
    url = np.zeros(n, dtype=np.int32)
    error = np.full(n, "", dtype=object)
    extras = (("pid", "server-pid"), ("tid", "server-tid"), ("arrival", "server-arrival-ns"),
              ("departure", "server-departure-ns"), ("burst", "burst"), ("status", "status"))
    for i, pair in enumerate(pairs):
        inv, done = pair.invoke, pair.completion
        at = pair.invoke_at
        op_id = inv.get("op-id", inv.get("index", at))
        ints["op_id"][i] = _int(op_id, "op-id", inv, at)
        ints["invoke"][i] = _int(inv.get("time", at), "time", inv, at)
        f = str(inv.get("f"))
        name = "incr" if f == "add" else f  # only called when adds carry :new-value
        client[i] = clients.setdefault(str(inv.get("client", f"process {inv['process']}")),
                                       len(clients))
        if done is None:
            op_code[i] = ops.setdefault(name, len(ops))
            url[i] = urls.setdefault("", len(urls))
            continue
        cat = pair.completion_at if pair.completion_at is not None else at
        outcome[i] = _TYPES.index(done["type"])
        op_code[i] = ops.setdefault(name, len(ops))
        result = done.get("new-value") if f == "add" else done.get("value")
        if result is not None and outcome[i] == OK:
            ints["value"][i] = _int(result, "value", done, cat)
            known["value"][i] = True
        if not done.get("time-unknown"):
            ints["complete"][i] = _int(done.get("time", cat), "time", done, cat)
            known["complete"][i] = True
        for column, key in extras:
            if done.get(key) is not None:
                ints[column][i] = _int(done[key], key, done, cat)
                known[column][i] = True
        url[i] = urls.setdefault(str(done.get("node") or ""), len(urls))
        if done.get("error") is not None:
            error[i] = str(done["error"])
    table = HistoryTable(
        op_id=ints["op_id"], client=client, client_names=tuple(clients), op=op_code,
        op_names=tuple(ops), outcome=outcome, value=ints["value"],
        value_known=known["value"], invoke_ns=ints["invoke"], complete_ns=ints["complete"],
        complete_known=known["complete"], server_pid=ints["pid"],
        server_pid_known=known["pid"], server_tid=ints["tid"], server_tid_known=known["tid"],
        arrival_ns=ints["arrival"], arrival_known=known["arrival"],
        departure_ns=ints["departure"], departure_known=known["departure"], url=url,
        url_names=tuple(urls), burst=ints["burst"], burst_known=known["burst"], error=error,
        source=source, status=ints["status"], status_known=known["status"],
    )

    def where(row: int) -> str:
        return _where(pairs[row].invoke, pairs[row].invoke_at)

    validate(table, where)
    return table


# --- Jepsen's checkers ---------------------------------------------------------------


def jepsen_unique_ids(pairs: list[Pair]) -> dict[str, Any]:
    """Jepsen's unique-ids checker (``jepsen.checker/unique-ids``) on ``:generate`` ops.

    Returns:
        Jepsen's result map: ``valid?``, ``attempted-count``,
        ``acknowledged-count``, ``duplicated-count``, ``duplicated`` (id -> times,
        the 48 most repeated) and ``range`` (``[lowest, highest]``, ``[None, None]``
        when none was acknowledged).
    """
    generate = [p for p in pairs if p.invoke.get("f") == "generate"]
    acks = [p.completion["value"] for p in generate
            if p.completion is not None and p.completion.get("type") == "ok"]
    freqs: dict[Any, int] = {}
    for value in acks:
        freqs[value] = freqs.get(value, 0) + 1
    dups = {k: v for k, v in freqs.items() if v > 1}
    shown = sorted(dups.items(), key=lambda kv: kv[1], reverse=True)[:_DUPLICATES_SHOWN]
    return {
        "valid?": not dups,
        "attempted-count": len(generate),
        "acknowledged-count": len(acks),
        "duplicated-count": len(dups),
        "duplicated": dict(sorted(shown)),
        "range": [min(acks), max(acks)] if acks else [None, None],
    }


def jepsen_counter(pairs: list[Pair]) -> dict[str, Any]:
    """Jepsen's counter checker (``jepsen.checker/counter``) on ``:add`` and ``:read`` ops.

    At each ok read, the value must lie between the sum of the adds acknowledged
    before the read was invoked and the sum of the adds invoked (and not failed)
    before it completed. Linear: two cumulative sums over the history's positions.

    Returns:
        Jepsen's result map: ``valid?``, ``reads`` and ``errors``, each a list of
        ``[lower, value, upper]`` in the order the reads completed.
    """
    events = 1 + max([p.completion_at if p.completion_at is not None else p.invoke_at
                      for p in pairs] or [0])
    lower = np.zeros(events, dtype=np.int64)
    upper = np.zeros(events, dtype=np.int64)
    reads: list[tuple[int, int, int]] = []  # (completion position, invoke position, value)
    for p in pairs:
        f, done = p.invoke.get("f"), p.completion
        if f == "add":
            amount = _int(p.invoke.get("value"), "value", p.invoke, p.invoke_at)
            if amount < 0:
                raise MalformedHistory(f"adds {amount}: Jepsen's counter only grows",
                                       _where(p.invoke, p.invoke_at), "value")
            if done is None or done.get("type") != "fail":
                upper[p.invoke_at] += amount
            if done is not None and done.get("type") == "ok":
                assert p.completion_at is not None
                lower[p.completion_at] += amount
        elif f == "read" and done is not None and done.get("type") == "ok":
            assert p.completion_at is not None
            value = _int(done.get("value"), "value", done, p.completion_at)
            reads.append((p.completion_at, p.invoke_at, value))
    low, up = np.cumsum(lower), np.cumsum(upper)
    reads.sort()
    result = [[int(low[i]), v, int(up[c])] for c, i, v in reads]
    errors = [r for r in result if not r[0] <= r[1] <= r[2]]
    return {"valid?": not errors, "reads": result, "errors": errors}


def _counter_verdict(pairs: list[Pair]) -> Verdict:
    found = jepsen_counter(pairs)
    adds = [p for p in pairs if p.invoke.get("f") == "add"]
    types = [p.completion.get("type") if p.completion else "info" for p in adds]
    counts = {"adds": len(adds), "adds_ok": types.count("ok"),
              "adds_fail": types.count("fail"), "adds_info": types.count("info"),
              "reads": len(found["reads"]), "read_errors": len(found["errors"])}
    read_pairs = sorted((p for p in pairs if p.invoke.get("f") == "read" and p.completion
                         and p.completion.get("type") == "ok"),
                        key=lambda p: p.completion_at or 0)
    witnesses: list[Witness] = []
    for pair, (low, value, high) in zip(read_pairs, found["reads"], strict=True):
        if low <= value <= high or len(witnesses) >= WITNESSES:
            continue
        where = _where(pair.invoke, pair.invoke_at)
        witnesses.append(Witness("counter-bounds", (
            f"the read invoked at {where} by process {pair.invoke['process']} returned "
            f"{value}, outside [{low}, {high}]: {low} acknowledged before it began, "
            f"{high} attempted before it ended"), (int(pair.invoke.get("index", 0)),),
            {"lower": low, "value": value, "upper": high}))
    if found["errors"]:
        return Verdict("counter", "no", counts, tuple(witnesses),
                       f"{len(found['errors'])} of {len(found['reads'])} reads outside "
                       "the counter's bounds")
    if not found["reads"]:
        return Verdict("counter", "unknown", counts,
                       reason="no read succeeded: nothing to hold against the bounds")
    return Verdict("counter", "yes", counts, reason=(
        f"{len(found['reads'])} reads, all within the counter's bounds"))


def _unique_ids_verdict(pairs: list[Pair], final: Any, per_process: bool) -> Verdict:
    found = jepsen_unique_ids(pairs)
    table = table_from_pairs([p for p in pairs if p.invoke.get("f") == "generate"])
    # The ids scenario's checkers, as `racelab check --scenario ids` runs them on the CSV.
    verdict = check_history(table, final=final, scenario="ids", per_process=per_process)
    counts = {"attempted": found["attempted-count"],
              "acknowledged": found["acknowledged-count"],
              "duplicated_count": found["duplicated-count"], **verdict.counts}
    counts.update({f"duplicated[id={k}]": v for k, v in found["duplicated"].items()})
    low, high = found["range"]
    if low is not None:
        counts.update(id_lowest=int(low), id_highest=int(high))
    return dataclasses.replace(verdict, counts=counts)


def nemesis_problems(ops: Sequence[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """What a history's nemesis ops (a ``:process`` that is not an integer) say: the faults
    it met, and the restarts that emptied the store; each one sentence, or None."""
    faults = [op for op in ops if not isinstance(op.get("process"), int)
              or isinstance(op.get("process"), bool)]
    faults = [op for op in faults if op.get("type") != "invoke"] or faults
    if not faults:
        return None, None
    names = [f"{op.get('f')}" + (f" ({op.get('value')})" if op.get("value") not in (None, "")
                                 else "") for op in faults[:5]]
    more = f" and {len(faults) - 5} more" if len(faults) > 5 else ""
    problem = f"the history met {len(faults)} fault(s) (nemesis ops): {'; '.join(names)}{more}"
    resets = [op for op in faults if op.get("f") == "restart-store"
              and op.get("state") != "kept"]
    reset = None if not resets else (
        f"the store restarted empty ({len(resets)} nemesis restart-store op(s)): numbers it "
        "handed out before came again, so repeats are no evidence of a race")
    return problem, reset


def check_jepsen(ops: list[dict[str, Any]], final: Any = None, *,
                 per_process: bool = False, server_problem: str | None = None,
                 reset: str | None = None) -> Verdict:
    """Check a Jepsen history with the checkers its ``:f`` values call for.

    Nemesis ops make the verdict at best unknown, naming them (see the module docstring).

    Args:
        ops: the history (``read_jepsen``'s result).
        final: the counter's final state, for racelab's counter (see ``check_history``).
        per_process: each server process keeps its own counter.
        server_problem: what else makes the run at best unknown (its run directory's).
        reset: what else emptied the store during the run.

    Returns:
        The composed verdict (no > unknown > yes).

    Raises:
        MalformedHistory: the ops do not pair up, or an ``:f`` no checker reads.
    """
    pairs, _ = pair_ops(ops)
    met, emptied = nemesis_problems(ops)
    server_problem = "; ".join(p for p in (server_problem, met) if p) or None
    reset = "; ".join(p for p in (reset, emptied) if p) or None
    fs = {p.invoke.get("f") for p in pairs}
    unknown = sorted(str(f) for f in fs - {"add", "read", "generate"})
    if unknown:
        first = next(p for p in pairs if p.invoke.get("f") == unknown[0])
        raise MalformedHistory(
            f"no checker reads f {unknown[0]!r} (known: add and read for the counter, "
            "generate for unique ids)", _where(first.invoke, first.invoke_at), "f")
    verdicts = []
    if "generate" in fs:
        verdicts.append(_unique_ids_verdict(pairs, final, per_process))
    counter = [p for p in pairs if p.invoke.get("f") in ("add", "read")]
    if counter:
        acked = [p.completion for p in counter if p.invoke.get("f") == "add"
                 and p.completion is not None and p.completion.get("type") == "ok"]
        if acked and all("new-value" in done for done in acked):
            table = table_from_pairs(counter)
            verdicts.append(check_history(table, final=final, scenario="counter",
                                          per_process=per_process,
                                          server_problem=server_problem))
        else:
            verdicts.append(_counter_verdict(counter))
    if not verdicts:
        return Verdict("jepsen", "unknown", {"ops": len(ops)},
                       reason="the history has no client operations")
    checker = "+".join(v.checker for v in verdicts)
    if server_problem:
        verdicts.append(Verdict("faults", "unknown", reason=server_problem))
    verdict = verdicts[0] if len(verdicts) == 1 else compose(verdicts, checker=checker)
    if reset and verdict.valid == "no":
        return dataclasses.replace(verdict, valid="unknown", reason=f"faults: {reset}")
    return verdict
