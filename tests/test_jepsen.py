"""Jepsen histories: export structure, Jepsen's own checker cases, round trips, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from simulate import simulate_counter

from cli import main
from loadtests.history import HistoryWriter
from reports.analysis.checking import check_history
from reports.analysis.jepsen import (
    check_jepsen,
    export_ops,
    jepsen_counter,
    jepsen_unique_ids,
    pair_ops,
    read_jepsen,
    write_jepsen,
)
from reports.history._edn import EdnError, read_forms
from reports.history.table import HistoryTable, MalformedHistory, read_history

# --- Jepsen's test helpers, as in jepsen/test/jepsen/checker_test.clj ------------------


def op(kind: str, process: int, f: str, value: Any) -> dict[str, Any]:
    return {"type": kind, "process": process, "f": f, "value": value}


def history(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Jepsen's ``history`` helper: indexes from 0, times 1 ms apart from 0."""
    return [{**o, "index": i, "time": i * 1_000_000} for i, o in enumerate(ops)]


def invoke(p: int, f: str, v: Any = None) -> dict[str, Any]:
    return op("invoke", p, f, v)


def ok(p: int, f: str, v: Any) -> dict[str, Any]:
    return op("ok", p, f, v)


def fail(p: int, f: str, v: Any) -> dict[str, Any]:
    return op("fail", p, f, v)


def info(p: int, f: str, v: Any) -> dict[str, Any]:
    return op("info", p, f, v)


def pairs(ops: list[dict[str, Any]]) -> list:
    return pair_ops(history(ops))[0]


DUPS = [invoke(0, "generate"), ok(0, "generate", 0),
        invoke(1, "generate"), ok(1, "generate", 1),
        invoke(2, "generate"), ok(2, "generate", 0),
        invoke(3, "generate"), ok(3, "generate", 0),
        invoke(4, "generate"), info(4, "generate", None)]


def test_unique_ids_empty_as_jepsen() -> None:
    """Jepsen's unique-ids 'empty' case: its result map, key for key."""
    assert jepsen_unique_ids(pairs([])) == {
        "valid?": True, "attempted-count": 0, "acknowledged-count": 0,
        "duplicated-count": 0, "duplicated": {}, "range": [None, None]}


def test_unique_ids_dups_as_jepsen() -> None:
    """Jepsen's 'dups' case: 5 attempted, 4 acknowledged, id 0 three times, range [0 1]."""
    assert jepsen_unique_ids(pairs(DUPS)) == {
        "valid?": False, "attempted-count": 5, "acknowledged-count": 4,
        "duplicated-count": 1, "duplicated": {0: 3}, "range": [0, 1]}


def test_unique_ids_verdict_agrees_and_names_the_id() -> None:
    """racelab's verdict on 'dups' is no, with Jepsen's counts and a witness naming id 0."""
    verdict = check_jepsen(history(DUPS))
    assert verdict.valid == "no"
    assert verdict.counts["attempted"] == 5 and verdict.counts["acknowledged"] == 4
    assert verdict.counts["duplicated_count"] == 1 and verdict.counts["duplicated[id=0]"] == 3
    assert (verdict.counts["id_lowest"], verdict.counts["id_highest"]) == (0, 1)
    assert "got order number 0" in verdict.witnesses[0].sentence


def test_empty_history_is_unknown_not_valid() -> None:
    """Where Jepsen calls an empty history valid, racelab says it cannot judge (counts agree)."""
    verdict = check_jepsen([])
    assert verdict.valid == "unknown"


COUNTER_CASES = [
    ("empty", [], {"valid?": True, "reads": [], "errors": []}),
    ("initial read", [invoke(0, "read"), ok(0, "read", 0)],
     {"valid?": True, "reads": [[0, 0, 0]], "errors": []}),
    ("ignore failed ops", [invoke(0, "add", 1), fail(0, "add", 1),
                           invoke(0, "read"), ok(0, "read", 0)],
     {"valid?": True, "reads": [[0, 0, 0]], "errors": []}),
    ("incomplete history", [invoke(0, "add", 1), invoke(1, "read"), ok(1, "read", 0),
                            invoke(1, "read"), ok(1, "read", 1)],
     {"valid?": True, "reads": [[0, 0, 1], [0, 1, 1]], "errors": []}),
    ("initial invalid read", [invoke(0, "read"), ok(0, "read", 1)],
     {"valid?": False, "reads": [[0, 1, 0]], "errors": [[0, 1, 0]]}),
    ("interleaved concurrent reads and writes",
     [invoke(0, "read"), invoke(1, "add", 1), invoke(2, "read"), invoke(3, "add", 2),
      invoke(4, "read"), invoke(5, "add", 4), invoke(6, "read"), invoke(7, "add", 8),
      invoke(8, "read"), ok(0, "read", 6), ok(1, "add", 1), ok(2, "read", 0),
      ok(3, "add", 2), ok(4, "read", 3), ok(5, "add", 4), ok(6, "read", 100),
      ok(7, "add", 8), ok(8, "read", 15)],
     {"valid?": False, "reads": [[0, 6, 15], [0, 0, 15], [0, 3, 15], [0, 100, 15],
                                 [0, 15, 15]], "errors": [[0, 100, 15]]}),
    ("rolling reads and writes",
     [invoke(0, "read"), invoke(1, "add", 1), ok(0, "read", 0), invoke(0, "read"),
      ok(1, "add", 1), invoke(1, "add", 2), ok(0, "read", 3), invoke(0, "read"),
      ok(1, "add", 2), ok(0, "read", 5)],
     {"valid?": False, "reads": [[0, 0, 1], [0, 3, 3], [1, 5, 3]], "errors": [[1, 5, 3]]}),
]


@pytest.mark.parametrize(("name", "ops", "expected"), COUNTER_CASES,
                         ids=[c[0] for c in COUNTER_CASES])
def test_counter_as_jepsen(name: str, ops: list, expected: dict) -> None:
    """Each counter case of Jepsen's checker_test.clj gives Jepsen's published result."""
    assert jepsen_counter(pairs(ops)) == expected


@pytest.mark.parametrize(("name", "ops", "expected"), COUNTER_CASES[1:],
                         ids=[c[0] for c in COUNTER_CASES[1:]])
def test_counter_verdict_follows_jepsen(name: str, ops: list, expected: dict) -> None:
    """racelab's verdict is no exactly where Jepsen's is invalid, with one witness per error."""
    verdict = check_jepsen(history(ops))
    assert verdict.valid == ("yes" if expected["valid?"] else "no")
    assert verdict.counts["read_errors"] == len(expected["errors"])
    assert len(verdict.witnesses) == len(expected["errors"])


def test_counter_witness_sentence() -> None:
    """The witness names the read, its process and both bounds."""
    verdict = check_jepsen(history(COUNTER_CASES[-1][1]))
    assert verdict.witnesses[0].sentence == (
        "the read invoked at index 7 by process 0 returned 5, outside [1, 3]: "
        "1 acknowledged before it began, 3 attempted before it ended")


# --- export structure and round trips ----------------------------------------------------


def racy_table() -> tuple[HistoryTable, dict]:
    """Two processes with their own counters: numbers repeat, some outcomes unknown."""
    sim = simulate_counter(400, clients=7, pids=2, per_process=True, info_rate=0.05,
                           fail_rate=0.05, seed=11)
    return sim.table(), sim.final


def exported(table: HistoryTable, **kwargs: Any) -> list[dict[str, Any]]:
    out = io.StringIO()
    write_jepsen(table, out, **kwargs)
    return json.loads(out.getvalue())


def test_export_structure() -> None:
    """Dense indexes, times from 0 in order, one invocation then one completion per row,
    a process never has two ops in flight, and a process whose op ended in info never
    appears again."""
    table, _ = racy_table()
    ops = exported(table)
    assert [o["index"] for o in ops] == list(range(2 * len(table)))
    times = [o["time"] for o in ops]
    assert times[0] == 0 and times == sorted(times)
    by_id: dict[int, list[dict]] = {}
    for o in ops:
        by_id.setdefault(o["op-id"], []).append(o)
    assert sorted(by_id) == sorted(table.op_id.tolist())
    for pair in by_id.values():
        assert pair[0]["type"] == "invoke" and len(pair) == 2
        assert pair[1]["type"] in ("ok", "fail", "info")
        assert pair[0]["process"] == pair[1]["process"] and pair[0]["f"] == pair[1]["f"]
    in_flight: dict[int, int] = {}
    retired: set[int] = set()
    for o in ops:
        p = o["process"]
        assert p not in retired
        if o["type"] == "invoke":
            assert p not in in_flight
            in_flight[p] = o["op-id"]
        else:
            assert in_flight.pop(p) == o["op-id"]
            if o["type"] == "info":
                retired.add(p)
    assert not in_flight
    threads = len(table.client_names)
    assert {o["process"] % threads for o in ops} <= set(range(threads))
    assert any(o["type"] == "info" for o in ops)


def test_export_maps_incr_to_add() -> None:
    """incr is :add of 1; the returned number is :new-value on the ok completion."""
    table, _ = racy_table()
    ops = exported(table)
    assert {o["f"] for o in ops} == {"add"}
    assert all(o["value"] == 1 for o in ops)
    oks = [o for o in ops if o["type"] == "ok"]
    assert all(isinstance(o["new-value"], int) for o in oks)


def test_client_overlapping_itself_gets_a_new_process() -> None:
    """A client whose next op starts before its last one ended moves to a new process."""
    rows = [{"op_id": 0, "client": "a", "op": "incr", "outcome": "ok", "value": 1,
             "invoke_ns": 100, "complete_ns": 500},
            {"op_id": 1, "client": "a", "op": "incr", "outcome": "ok", "value": 2,
             "invoke_ns": 200, "complete_ns": 600}]
    ops = exported(HistoryTable.from_rows(rows))
    assert [(o["type"], o["process"]) for o in ops] == [
        ("invoke", 0), ("invoke", 1), ("ok", 0), ("ok", 1)]


@pytest.mark.parametrize("edn", [False, True], ids=["json", "edn"])
@pytest.mark.parametrize("final_kind", ["final.json", "none"])
def test_round_trip_same_verdict_and_counts(
    tmp_path: Path, edn: bool, final_kind: str, cli_runner
) -> None:
    """Checking the exported history gives the CSV's verdict and counts, to the key."""
    table, final = racy_table()
    csv_path = tmp_path / "history.csv"
    with HistoryWriter(csv_path) as writer:
        writer.add_many(table.to_rows())
    out = tmp_path / ("h.edn" if edn else "h.json")
    args = ["export", str(csv_path), "--out", str(out)] + (["--edn"] if edn else [])
    assert cli_runner.invoke(main, args).exit_code == 0
    extra = []
    if final_kind == "final.json":
        (tmp_path / "final.json").write_text(json.dumps(final), encoding="utf-8")
        extra = ["--final-file", str(tmp_path / "final.json")]
    results = [cli_runner.invoke(main, ["check", str(p), "--json", *extra])
               for p in (csv_path, out)]
    first, second = (json.loads(r.stdout) for r in results)
    assert results[0].exit_code == results[1].exit_code == 1
    assert first["valid"] == second["valid"] == "no"
    assert first["counts"] == second["counts"]
    assert [w["sentence"] for w in first["witnesses"]] == [
        w["sentence"] for w in second["witnesses"]]


def test_round_trip_of_ids_scenario(tmp_path: Path, cli_runner) -> None:
    """An ids history exports as :generate and checks the same through Jepsen's path."""
    rows = [{"op_id": i, "client": f"c{i % 3}", "op": "next", "outcome": "ok",
             "value": v, "invoke_ns": 10 * i, "complete_ns": 10 * i + 5}
            for i, v in enumerate([1, 2, 3, 3, 4])]
    csv_path = tmp_path / "history.csv"
    with HistoryWriter(csv_path) as writer:
        writer.add_many(rows)
    out = tmp_path / "h.json"
    result = cli_runner.invoke(main, ["export", str(csv_path), "--scenario", "ids",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {o["f"] for o in json.loads(out.read_text())} == {"generate"}
    first = json.loads(cli_runner.invoke(
        main, ["check", str(csv_path), "--scenario", "ids", "--json"]).stdout)
    result = cli_runner.invoke(main, ["check", str(out), "--json"])
    second = json.loads(result.stdout)
    assert result.exit_code == 1
    assert first["valid"] == second["valid"] == "no"
    assert {k: second["counts"][k] for k in first["counts"]} == first["counts"]
    assert second["counts"]["duplicated[id=3]"] == 2


def test_export_of_a_run_directory_to_stdout(tmp_path: Path, cli_runner) -> None:
    """RUN_DIR finds its history; without --out the history goes to standard output."""
    table, _ = racy_table()
    with HistoryWriter(tmp_path / "history.csv") as writer:
        writer.add_many(table.to_rows())
    result = cli_runner.invoke(main, ["export", str(tmp_path), "--edn"])
    assert result.exit_code == 0
    first = next(read_forms(result.stdout.splitlines()[0]))
    assert first["index"] == 0 and first["type"] == "invoke" and first["f"] == "add"


def test_jepsen_dups_file_exits_1_and_names_the_id(tmp_path: Path, cli_runner) -> None:
    """A Jepsen unique-ids history with a repeated id: exit 1, the id in the witness."""
    path = tmp_path / "history.edn"
    path.write_text("".join(
        "{" + ", ".join(f":{k} {':' + v if k in ('type', 'f') else 'nil' if v is None else v}"
                        for k, v in o.items()) + "}\n" for o in history(DUPS)),
        encoding="utf-8")
    result = cli_runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 1, result.output
    assert "1 id handed out more than once" in result.output
    assert "got order number 0" in result.output


# --- reading Jepsen files -------------------------------------------------------------


def test_reads_edn_as_jepsen_writes_it(tmp_path: Path) -> None:
    """Tagged ops, comments, discards, sets, strings with escapes and commas all read."""
    path = tmp_path / "history.edn"
    path.write_text(
        '; a comment\n'
        '#jepsen.history.Op{:index 0, :time 0, :type :invoke, :process 0, :f :read, '
        ':value nil, :note "a \\"quoted\\", line\\n"}\n'
        '{:index 1 :time 5 :type :ok :process 0 :f :read :value 3 #_ :dropped :tags #{1 2}}\n'
        '{:index 2 :time 6 :type :info :process :nemesis :f :kill :value [:n1 "n2"]}\n',
        encoding="utf-8")
    ops = read_jepsen(path)
    assert ops[0]["note"] == 'a "quoted", line\n' and ops[1]["value"] == 3
    assert ops[1]["tags"] == [1, 2] and ops[2]["process"] == "nemesis"
    assert check_jepsen(ops).valid == "no"  # a read of 3 with nothing added


def test_reads_json_array_and_json_lines(tmp_path: Path) -> None:
    """elle-cli's JSON array and one JSON object per line are both read."""
    ops = history([invoke(0, "add", 1), ok(0, "add", 1), invoke(0, "read"), ok(0, "read", 1)])
    array, lines = tmp_path / "a.json", tmp_path / "b.json"
    array.write_text(json.dumps(ops), encoding="utf-8")
    lines.write_text("\n".join(json.dumps(o) for o in ops), encoding="utf-8")
    assert read_jepsen(array) == read_jepsen(lines) == ops
    assert check_jepsen(read_jepsen(array)).valid == "yes"


BAD_JEPSEN = [
    ("invoke in flight", [invoke(0, "add", 1), invoke(0, "add", 1)],
     "index 1, column 'process': process 0 invokes while its operation from index 0 "
     "is still in flight"),
    ("completion without invocation", [ok(3, "read", 1)],
     "index 0, column 'process': an ok completion for process 3, which has no operation "
     "in flight"),
    ("f changes", [invoke(0, "add", 1), ok(0, "read", 1)],
     "index 1, column 'f': completes f 'read', but its invocation was 'add'"),
    ("unknown type", [op("begin", 0, "add", 1)],
     "index 0, column 'type': unknown type 'begin'; expected one of: invoke, ok, fail, info"),
    ("unknown f", [invoke(0, "cas", [1, 2]), ok(0, "cas", [1, 2])],
     "index 0, column 'f': no checker reads f 'cas' (known: add and read for the counter, "
     "generate for unique ids)"),
    ("value beyond 64 bits", [invoke(0, "read"), ok(0, "read", 10**30)],
     "index 1, column 'value': integer out of the 64-bit range: " + str(10**30)),
    ("negative add", [invoke(0, "add", -1), ok(0, "add", -1)],
     "index 0, column 'value': adds -1: Jepsen's counter only grows"),
]


@pytest.mark.parametrize(("name", "ops", "message"), BAD_JEPSEN, ids=[b[0] for b in BAD_JEPSEN])
def test_malformed_jepsen_history(
    tmp_path: Path, cli_runner, name: str, ops: list, message: str
) -> None:
    """Each malformed Jepsen history: one line naming the op and the key, exit 2."""
    path = tmp_path / "history.json"
    path.write_text(json.dumps(history(ops)), encoding="utf-8")
    result = cli_runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"Error: {path}: {message}\n"


def test_deeply_nested_json_and_edn(tmp_path: Path) -> None:
    """A million brackets are refused in one line, not a RecursionError."""
    deep_json, deep_edn = tmp_path / "a.json", tmp_path / "a.edn"
    deep_json.write_text("[" * 1_000_000 + "]" * 1_000_000, encoding="utf-8")
    deep_edn.write_text("[{:a " * 100_000, encoding="utf-8")
    with pytest.raises(MalformedHistory, match="nested too deeply"):
        read_jepsen(deep_json, "json")
    with pytest.raises(MalformedHistory, match=r"^line 1: not EDN: nested deeper than 64"):
        read_jepsen(deep_edn, "edn")


def test_edn_errors_name_the_line() -> None:
    """Unbalanced and unterminated forms name their line."""
    with pytest.raises(EdnError) as caught:
        list(read_forms('{:a 1}\n{:b "x}\n'))
    assert caught.value.line == 2
    with pytest.raises(EdnError, match="odd number"):
        list(read_forms("{:a}"))


def test_export_of_an_empty_history_is_valid_json() -> None:
    """No rows: an empty JSON array, and no ops."""
    table = HistoryTable.from_rows([])
    assert exported(table) == [] and list(export_ops(table)) == []


def test_check_history_matches_for_generated_table(tmp_path: Path) -> None:
    """check_jepsen on the export of an in-memory table equals check_history on it."""
    table, final = racy_table()
    ops = exported(table)
    assert check_jepsen(ops, final).counts == check_history(table, final).counts
    assert read_history is not None


def doc_examples() -> list[str]:
    """The code blocks of docs/checkers.md's 'Formats in and out' section."""
    text = (Path(__file__).parent.parent / "docs" / "checkers.md").read_text(encoding="utf-8")
    section = text.split("## Formats in and out", 1)[1].split("\n## ", 1)[0]
    return [block.split("\n", 1)[1] for block in section.split("```")[1::2]]


@pytest.mark.parametrize(("block", "suffix", "needle"), [
    (0, ".csv", "1 number returned more than once"),
    (2, ".json", "1 number returned more than once"),
    (3, ".edn", "1 id handed out more than once"),
])
def test_documented_examples_check_as_the_doc_says(
    tmp_path: Path, cli_runner, block: int, suffix: str, needle: str
) -> None:
    """The CSV, JSON and EDN examples of the docs are real inputs with the stated verdict."""
    examples = doc_examples()
    lines = [line for line in examples[block].strip().splitlines() if line not in "[]"]
    assert len(lines) == 10  # ten rows, or ten ops
    path = tmp_path / f"example{suffix}"
    path.write_text(examples[block], encoding="utf-8")
    result = cli_runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 1, result.output
    assert needle in result.output


def test_export_takes_the_scenario_from_the_run(tmp_path: Path, cli_runner) -> None:
    """A run directory whose summary.json names the ids scenario exports :generate ops."""
    rows = [{"op_id": i, "client": "c", "op": "order", "outcome": "ok", "value": i + 1,
             "invoke_ns": 10 * i, "complete_ns": 10 * i + 5} for i in range(3)]
    with HistoryWriter(tmp_path / "history.csv") as writer:
        writer.add_many(rows)
    (tmp_path / "summary.json").write_text(json.dumps({"experiment": {"scenario": "ids"}}),
                                           encoding="utf-8")
    result = cli_runner.invoke(main, ["export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {o["f"] for o in json.loads(result.stdout)} == {"generate"}
