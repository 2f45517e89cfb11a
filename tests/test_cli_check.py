"""`racelab check`: verdict output, JSON, exit codes 0/1/2, and malformed input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main
from loadtests.history import HistoryWriter, to_csv_text
from reports._simulate import simulate_counter


def write_history(path: Path, rows: list[dict]) -> Path:
    with HistoryWriter(path) as writer:
        writer.add_many(rows)
    return path


@pytest.fixture
def clean(tmp_path: Path) -> tuple[Path, Path]:
    """A correct shared-counter history of 200 ops and its final.json."""
    sim = simulate_counter(200, clients=6, pids=2, info_rate=0.05, seed=4)
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
     "line 5, column 'server_pid': expected 14 fields, got 7 (truncated line?)"),
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
