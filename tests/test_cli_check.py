"""`racelab check`: verdict output, JSON, exit codes 0/1/2, and malformed input as one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from simulate import simulate_counter

from cli import main
from loadtests.history import HistoryWriter, to_csv_text


def write_history(path: Path, rows: list[dict]) -> Path:
    with HistoryWriter(path) as writer:
        writer.add_many(rows)
    return path


@pytest.fixture
def clean(tmp_path: Path) -> tuple[Path, Path]:
    """A correct shared-counter history of 200 ops and its final.json."""
    sim = simulate_counter(200, clients=6, pids=2, info_rate=0.02, seed=4)
    history = write_history(tmp_path / "history.csv", sim.table().to_rows())
    final = tmp_path / "final.json"
    final.write_text(json.dumps(sim.final), encoding="utf-8")
    return history, final


def rows_with_duplicate() -> list[dict]:
    rows = [{"op_id": i, "client": f"u{i}", "op": "incr", "outcome": "ok", "value": v,
             "invoke_ns": 1000 * i, "complete_ns": 1000 * i + 1500, "server_pid": 411,
             "server_tid": 7 + i} for i, v in enumerate([1, 2, 4, 4])]
    return rows


def test_valid_history_exits_0(cli_runner, clean) -> None:
    """A correct history with its final state: 'yes', the counts, exit code 0."""
    history, final = clean
    result = cli_runner.invoke(main, ["check", str(history), "--final-file", str(final)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("safe: no anomaly found (counter)")
    assert "lost updates" in result.output


def test_anomalies_exit_1_with_witness_sentences(cli_runner, tmp_path: Path) -> None:
    """A repeated number: 'no', the plain witness sentence, exit code 1."""
    history = write_history(tmp_path / "history.csv", rows_with_duplicate())
    result = cli_runner.invoke(main, ["check", str(history), "--final", "4"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("race: anomalies found")
    assert ("duplicate: requests 2 and 3 overlapped for 500 ns in process 411 (threads 9 and 10); "
            "both got 4; nobody got 3") in result.output
    assert "skipped: nobody got 3: request 1 got 2 and request 2 got 4" in result.output
    assert "Traceback" not in result.output


def test_json_output_is_clean(cli_runner, tmp_path: Path) -> None:
    """--json prints only the verdict as JSON, with counts and witnesses."""
    history = write_history(tmp_path / "history.csv", rows_with_duplicate())
    result = cli_runner.invoke(main, ["check", str(history), "--json", "--per-process"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] == "no" and data["counts"]["duplicate_values"] == 1
    assert data["witnesses"][0]["op_ids"] == [2, 3]


def test_undecidable_exits_2(cli_runner, tmp_path: Path) -> None:
    """Mostly unknown outcomes: 'unknown' with the reason, exit code 2."""
    rows = [{"op_id": i, "client": "u", "op": "incr", "outcome": "info", "invoke_ns": i,
             "complete_ns": i + 1} for i in range(3)]
    rows.append({"op_id": 9, "client": "u", "op": "incr", "outcome": "ok", "value": 1,
                 "invoke_ns": 0, "complete_ns": 1})
    history = write_history(tmp_path / "history.csv", rows)
    result = cli_runner.invoke(main, ["check", str(history)])
    assert result.exit_code == 2
    assert result.output.startswith("unknown: undecidable")
    assert "have an unknown outcome" in result.output


def good_text() -> str:
    return to_csv_text(rows_with_duplicate())


MALFORMED = [
    ("missing column", lambda: good_text().replace("outcome,", "result,", 1).encode(),
     "line 1, column 'outcome': missing column"),
    ("non-numeric value", lambda: good_text().replace(",4,", ",four,", 1).encode(),
     "line 4, column 'value': not an integer: 'four'"),
    ("empty file", lambda: b"", "line 1: empty file"),
    ("truncated last line", lambda: good_text().rstrip("\n")[:-12].encode(),
     "line 5, column 'server_tid': expected 15 fields, got 8 (truncated line?)"),
    ("wrong encoding", lambda: good_text().replace("u1", "\u00e91").encode("latin-1"),
     "line 3, column 'client': not UTF-8"),
    ("unknown outcome", lambda: good_text().replace(",ok,", ",okay,", 1).encode(),
     "line 2, column 'outcome': unknown outcome 'okay'"),
]


@pytest.mark.parametrize(("name", "content", "needle"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_history_is_one_line_and_exit_2(
    cli_runner, tmp_path: Path, name: str, content, needle: str
) -> None:
    """Malformed input: exit 2, one line on stderr naming line and column, no traceback."""
    history = tmp_path / "history.csv"
    history.write_bytes(content())
    result = cli_runner.invoke(main, ["check", str(history)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {history}: ")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_unreadable_final_file_exits_2(cli_runner, clean, tmp_path: Path) -> None:
    """A final.json that is not JSON: one line, exit 2."""
    history, _ = clean
    bad = tmp_path / "final.json"
    bad.write_text("{not json", encoding="utf-8")
    result = cli_runner.invoke(main, ["check", str(history), "--final-file", str(bad)])
    assert result.exit_code == 2
    assert "cannot read the final state" in result.stderr
    assert "Traceback" not in result.stderr


def test_final_and_final_file_together_is_a_usage_error(cli_runner, clean) -> None:
    """--final and --final-file exclude each other (usage error, exit 2)."""
    history, final = clean
    result = cli_runner.invoke(main, ["check", str(history), "--final", "3",
                                      "--final-file", str(final)])
    assert result.exit_code == 2
    assert "not both" in result.stderr


def test_unknown_scenario_exits_2(cli_runner, clean) -> None:
    """A scenario without checkers is refused in one line with exit 2."""
    history, _ = clean
    result = cli_runner.invoke(main, ["check", str(history), "--scenario", "nope"])
    assert result.exit_code == 2
    assert "no checker for scenario 'nope'" in result.stderr


def test_help_has_examples(cli_runner) -> None:
    """check --help shows the Examples block and the exit codes."""
    result = cli_runner.invoke(main, ["check", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "Exit code 0" in result.output


# --- every message of docs/checkers.md, word for word -------------------------------------

DOC_COLUMNS = ("op_id", "client", "op", "outcome", "value", "invoke_ns", "complete_ns",
               "server_pid", "server_tid", "server_arrival_ns", "server_departure_ns", "url",
               "burst", "error")


def doc_messages() -> list[str]:
    """The malformed-history messages listed in docs/checkers.md."""
    text = (Path(__file__).parent.parent / "docs" / "checkers.md").read_text(encoding="utf-8")
    block = text.split("names the line and the column:\n\n```\n", 1)[1].split("```", 1)[0]
    return block.strip().splitlines()


def doc_row(i: int, **cells: str) -> str:
    row = {"op_id": str(i), "client": "c", "op": "incr", "outcome": "ok", "value": str(i + 1),
           "invoke_ns": str(10 * i), "complete_ns": str(10 * i + 5), **cells}
    return ",".join(row.get(c, "") for c in DOC_COLUMNS)


def doc_file(rows: list[str], header: tuple[str, ...] = DOC_COLUMNS) -> bytes:
    return ("\n".join([",".join(header), *rows]) + "\n").encode()


def doc_input(message: str) -> bytes:
    """A file that must produce ``message`` (the doc's lines, recognised by their text)."""
    if "missing column 'value'" in message:
        return doc_file([], tuple(c for c in DOC_COLUMNS if c != "value"))
    if "empty file" in message:
        return b""
    if "not an integer: 'abc'" in message:  # line 812: data row 810
        return doc_file([doc_row(i, value="abc" if i == 810 else str(i + 1))
                         for i in range(811)])
    if "expected 14 fields, got 7" in message:  # line 1001: data row 999, 7 fields
        return doc_file([doc_row(i) for i in range(999)]
                        + [",".join(doc_row(999).split(",")[:7])])
    if "not UTF-8" in message:  # line 3; the error cell's second character at 27
        rows = [doc_row(0), doc_row(1, outcome="info", value="", complete_ns="2",
                                    invoke_ns="1", error="x@y")]
        data = doc_file(rows)
        return data.replace(b"x@y", b"x\xe9y")
    if "unknown outcome 'okay'" in message:  # line 9: data row 7
        return doc_file([doc_row(i, outcome="okay" if i == 7 else "ok") for i in range(8)])
    if "op_id 5 repeats the one on line 7" in message:  # rows 5 and 10 both op_id 5
        return doc_file([doc_row(i, op_id="5" if i == 10 else str(i)) for i in range(11)])
    raise AssertionError(f"no input for the documented message {message!r}")


@pytest.mark.parametrize("message", doc_messages())
def test_documented_message_word_for_word(cli_runner, tmp_path: Path, message: str) -> None:
    """Each message docs/checkers.md lists appears exactly ('...' ends a prefix), exit 2."""
    history = tmp_path / "history.csv"
    history.write_bytes(doc_input(message))
    result = cli_runner.invoke(main, ["check", str(history)])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in result.stderr
    got = line.removeprefix(f"Error: {history}: ")
    expected = message.split("...")[0]
    if "..." in message:
        assert got.startswith(expected), got
    else:
        assert got == expected


def test_documented_messages_are_all_covered() -> None:
    """The doc still lists the seven messages this file rebuilds."""
    assert len(doc_messages()) == 7


# --- bad input (one line each, exit 2) --------------------------------------------------


def check_fails(cli_runner, args: list[str]) -> str:
    result = cli_runner.invoke(main, ["check", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or lines[0].startswith("Usage:"), result.stderr
    return lines[-1]


def test_fifty_megabyte_field(cli_runner, tmp_path: Path) -> None:
    """A 50 MB field is refused in one line naming its line, not a csv traceback."""
    history = tmp_path / "history.csv"
    history.write_bytes(doc_file([doc_row(0), doc_row(1, error="x" * 50_000_000)]))
    line = check_fails(cli_runner, [str(history)])
    assert line == (f"Error: {history}: line 3: a field longer than 131,072 characters; "
                    "no history field is that long (a truncated or binary file?)")


def test_deeply_nested_final_json(cli_runner, clean, tmp_path: Path) -> None:
    """final.json nested a million levels deep: one line, exit 2."""
    history, _ = clean
    final = tmp_path / "deep.json"
    final.write_text("[" * 1_000_000 + "]" * 1_000_000, encoding="utf-8")
    line = check_fails(cli_runner, [str(history), "--final-file", str(final)])
    assert line == f"Error: {final}: cannot read the final state: JSON nested too deeply"


@pytest.mark.timeout(20)
def test_fifo_is_refused_without_hanging(cli_runner, tmp_path: Path) -> None:
    """A FIFO as HISTORY (nobody writing) is refused at once."""
    fifo = tmp_path / "history.csv"
    os.mkfifo(fifo)
    line = check_fails(cli_runner, [str(fifo)])
    assert line == f"Error: {fifo}: not a regular file (a FIFO); give a history file"


@pytest.mark.timeout(20)
def test_device_is_refused(cli_runner) -> None:
    """A device (/dev/zero would never end) is refused at once; so is a FIFO as final.json."""
    line = check_fails(cli_runner, ["/dev/zero"])
    assert line == "Error: /dev/zero: not a regular file (a device); give a history file"


@pytest.mark.timeout(20)
def test_fifo_as_final_file_is_refused(cli_runner, clean, tmp_path: Path) -> None:
    """--final-file pointing at a FIFO: refused, no hang."""
    history, _ = clean
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    line = check_fails(cli_runner, [str(history), "--final-file", str(fifo)])
    assert line.endswith("cannot read the final state: not a regular file; give final.json")


def test_value_beyond_64_bits(cli_runner, tmp_path: Path) -> None:
    """10**30 is an integer out of range, not 'not an integer'."""
    history = tmp_path / "history.csv"
    history.write_bytes(doc_file([doc_row(0, value=str(10**30))]))
    line = check_fails(cli_runner, [str(history)])
    assert line == (f"Error: {history}: line 2, column 'value': integer out of the 64-bit "
                    f"range: '{10**30}'")


def test_unknown_op_is_named(cli_runner, tmp_path: Path) -> None:
    """An op the counter checker does not read is named, not dropped and reported as skips."""
    history = tmp_path / "history.csv"
    history.write_bytes(doc_file([doc_row(0), doc_row(1, op="decr"), doc_row(2)]))
    line = check_fails(cli_runner, [str(history)])
    assert line == (f"Error: {history}: line 3, column 'op': the counter checker does not "
                    "know op 'decr' (it reads: incr, read); 1 of 3 rows have ops it does "
                    "not read")


def test_completion_before_invocation(cli_runner, tmp_path: Path) -> None:
    """complete_ns < invoke_ns is a clear error, not a witness comparing a request with itself."""
    history = tmp_path / "history.csv"
    history.write_bytes(doc_file([doc_row(0), doc_row(1, invoke_ns="50", complete_ns="40")]))
    line = check_fails(cli_runner, [str(history)])
    assert line == (f"Error: {history}: line 3, column 'complete_ns': completed at 40, "
                    "before it was invoked at 50 (invoke_ns); the two times are swapped or "
                    "from different clocks")


def test_negative_final_is_rejected(cli_runner, clean) -> None:
    """--final -1 is a usage error, not 1,001 lost updates."""
    history, _ = clean
    line = check_fails(cli_runner, [str(history), "--final", "-1"])
    assert "a counter's final value is never negative, got -1" in line


@pytest.mark.parametrize("where", ["reader", "checker"])
def test_a_crash_exits_2_never_1(cli_runner, clean, monkeypatch, where: str) -> None:
    """A reader or checker that raises: one line, exit 2 (1 means anomalies found)."""
    import reports.analysis.check_file

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(reports.analysis.check_file,
                        "read_history" if where == "reader" else "check_history", boom)
    history, _ = clean
    line = check_fails(cli_runner, [str(history)])
    assert line == f"Error: {history}: racelab failed while checking it: RuntimeError: boom"


def test_forced_format_that_does_not_match(cli_runner, clean) -> None:
    """--format parquet on a CSV says what the content is."""
    history, _ = clean
    line = check_fails(cli_runner, [str(history), "--format", "parquet"])
    assert line == f"Error: {history}: not a parquet file: its content is csv"


def test_parquet_history_checks_like_its_csv(cli_runner, clean) -> None:
    """write_parquet's file gives the CSV's verdict and counts, read by its magic bytes."""
    from reports.history.table import write_parquet

    history, final = clean
    parquet = write_parquet(history, history.with_name("renamed.data"))
    results = [cli_runner.invoke(main, ["check", str(p), "--final-file", str(final), "--json"])
               for p in (history, parquet)]
    assert results[0].exit_code == results[1].exit_code == 0
    assert json.loads(results[0].stdout) == json.loads(results[1].stdout)
