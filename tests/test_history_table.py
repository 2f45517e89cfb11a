"""Reading history CSVs into numpy columns, and refusing malformed ones with line and column."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests.history import COLUMNS, HistoryWriter, to_csv_text
from reports.history.table import FAIL, INFO, OK, HistoryTable, MalformedHistory, read_history

ROWS = [
    {"op_id": 0, "client": "w0-u1", "op": "incr", "outcome": "ok", "value": 1,
     "invoke_ns": 100, "complete_ns": 900, "server_pid": 411, "server_tid": 7,
     "server_arrival_ns": 300, "server_departure_ns": 600, "url": "http://127.0.0.1:5000",
     "burst": 0, "error": "", "status": 200},
    {"op_id": 1, "client": "w0-u2", "op": "incr", "outcome": "info", "value": "",
     "invoke_ns": 150, "complete_ns": 5000, "server_pid": "", "server_tid": "",
     "server_arrival_ns": "", "server_departure_ns": "", "url": "http://127.0.0.1:5000",
     "burst": 0, "error": "timed out, after 5 s", "status": ""},
    {"op_id": 2, "client": "w0-u1", "op": "read", "outcome": "fail", "value": "",
     "invoke_ns": 1000, "complete_ns": "", "server_pid": "", "server_tid": "",
     "server_arrival_ns": "", "server_departure_ns": "", "url": "http://127.0.0.1:5001",
     "burst": "", "error": "connection refused", "status": ""},
]


def write(path: Path, rows: list[dict]) -> Path:
    with HistoryWriter(path) as writer:
        writer.add_many(rows)
    return path


def test_columns_and_masks(tmp_path: Path) -> None:
    """Every column lands in its typed array; empty cells are False in the *_known masks."""
    table = read_history(write(tmp_path / "history.csv", ROWS))
    assert len(table) == 3
    assert table.op_id.dtype == np.int64 and table.op_id.tolist() == [0, 1, 2]
    assert [table.client_names[c] for c in table.client] == ["w0-u1", "w0-u2", "w0-u1"]
    assert [table.op_names[c] for c in table.op] == ["incr", "incr", "read"]
    assert table.outcome.tolist() == [OK, INFO, FAIL]
    assert table.value.tolist()[0] == 1 and table.value_known.tolist() == [True, False, False]
    assert table.complete_known.tolist() == [True, True, False]
    assert table.server_pid.tolist()[0] == 411 and table.server_pid_known.tolist() == [
        True, False, False]
    assert table.arrival_ns[0] == 300 and table.departure_ns[0] == 600
    assert [table.url_names[u] for u in table.url] == [
        "http://127.0.0.1:5000", "http://127.0.0.1:5000", "http://127.0.0.1:5001"]
    assert table.burst_known.tolist() == [True, True, False]
    assert table.error.tolist()[1] == "timed out, after 5 s"
    assert table.op_is("read").tolist() == [False, False, True]
    assert not table.op_is("transfer").any()


def test_rows_round_trip(tmp_path: Path) -> None:
    """read_history and from_rows agree, and to_rows gives the rows back."""
    table = read_history(write(tmp_path / "history.csv", ROWS))
    assert table.to_rows() == HistoryTable.from_rows(ROWS).to_rows() == ROWS


def test_header_only_is_an_empty_table(tmp_path: Path) -> None:
    """A header without rows is a valid, empty history."""
    path = tmp_path / "history.csv"
    path.write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
    table = read_history(path)
    assert len(table) == 0 and table.value.dtype == np.int64


def test_optional_columns_may_be_absent_and_order_is_free(tmp_path: Path) -> None:
    """Only the seven required columns must exist, in any order; extra columns are ignored."""
    path = tmp_path / "history.csv"
    path.write_text("value,outcome,op,client,op_id,complete_ns,invoke_ns,note\n"
                    "5,ok,incr,c1,3,20,10,hello\n", encoding="utf-8")
    table = read_history(path)
    assert table.value.tolist() == [5] and table.op_id.tolist() == [3]
    assert not table.server_pid_known.any() and table.error.tolist() == [""]


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """A UTF-8 file saved with a BOM (as some editors do) reads like one without."""
    path = tmp_path / "history.csv"
    path.write_bytes(b"\xef\xbb\xbf" + to_csv_text(ROWS).encode())
    assert read_history(path).to_rows() == ROWS


BAD = [
    ("missing column", "op_id,client,op,outcome,invoke_ns,complete_ns\n0,c,incr,ok,1,2\n",
     "line 1", "value", "missing column"),
    ("non-numeric value", None, "line 3", "value", "not an integer: 'abc'"),
    ("empty file", "", "line 1", None, "empty file"),
    ("truncated last line", None, "line 4", "server_tid", "expected 15 fields, got 8"),
    ("unknown outcome", None, "line 2", "outcome", "unknown outcome 'okay'"),
    ("repeated op_id", None, "line 3", "op_id", "op_id 0 repeats the one on line 2"),
    ("empty invoke", None, "line 2", "invoke_ns", "an integer is required"),
    ("ok without completion", None, "line 2", "complete_ns", "needs its completion time"),
]


def bad_text(name: str) -> str:
    rows = [dict(r) for r in ROWS]
    if name == "non-numeric value":
        rows[1]["value"] = "abc"
    elif name == "unknown outcome":
        rows[0]["outcome"] = "okay"
    elif name == "repeated op_id":
        rows[1]["op_id"] = 0
    elif name == "empty invoke":
        rows[0]["invoke_ns"] = ""
    elif name == "ok without completion":
        rows[0]["complete_ns"] = ""
    text = to_csv_text(rows)
    if name == "truncated last line":
        text = text.rstrip("\n")
        text = text[: text.rindex("\n") + 1] + ",".join(text.rsplit("\n", 1)[1].split(",")[:8])
    return text


@pytest.mark.parametrize(("name", "text", "where", "column", "needle"), BAD,
                         ids=[b[0] for b in BAD])
def test_malformed_names_line_and_column(
    tmp_path: Path, name: str, text: str | None, where: str, column: str | None, needle: str
) -> None:
    """Each kind of malformed file raises MalformedHistory naming the line and the column."""
    path = tmp_path / "history.csv"
    path.write_text(bad_text(name) if text is None else text, encoding="utf-8")
    with pytest.raises(MalformedHistory) as caught:
        read_history(path)
    message = str(caught.value)
    assert message.startswith(where), message
    assert needle in message
    assert caught.value.column == column
    if column:
        assert f"column {column!r}" in message


def test_wrong_encoding_names_line_and_column(tmp_path: Path) -> None:
    """A Latin-1 byte in the error column of line 3 is reported there, not as a crash."""
    path = tmp_path / "history.csv"
    data = to_csv_text(ROWS).encode().replace(b"timed out", b"d\xe9lai d\xe9pass\xe9")
    path.write_bytes(data)
    with pytest.raises(MalformedHistory, match=r"^line 3, column 'error': not UTF-8"):
        read_history(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A path that does not exist raises MalformedHistory, not OSError."""
    with pytest.raises(MalformedHistory, match="cannot open"):
        read_history(tmp_path / "nope.csv")


def test_from_rows_names_the_row() -> None:
    """from_rows errors say 'row N' (counted from 1) instead of a line."""
    rows = [dict(r) for r in ROWS]
    rows[2]["burst"] = "x"
    with pytest.raises(MalformedHistory, match=r"^row 3, column 'burst': not an integer"):
        HistoryTable.from_rows(rows)


def test_line_numbers_count_multiline_fields(tmp_path: Path) -> None:
    """An error text spanning lines shifts later line numbers, and the reported line follows."""
    rows = [dict(r) for r in ROWS]
    rows[0]["error"] = "first\nsecond\nthird"
    rows[2]["value"] = "1.5"
    path = write(tmp_path / "history.csv", rows)
    with pytest.raises(MalformedHistory, match=r"^line 6, column 'value'"):
        read_history(path)


def test_many_rows_cross_chunk_boundaries(tmp_path: Path) -> None:
    """Rows beyond the first chunk keep their codes and values; errors there get the right line."""
    n = 70_000
    rows = [{"op_id": i, "client": f"c{i % 3}", "op": "incr", "outcome": "ok", "value": i + 1,
             "invoke_ns": i, "complete_ns": i + 1} for i in range(n)]
    rows[-1]["client"] = "late"
    table = read_history(write(tmp_path / "history.csv", rows))
    assert table.value.tolist() == list(range(1, n + 1))
    assert table.client_names[table.client[-1]] == "late"
    assert table.client_names[table.client[n - 2]] == f"c{(n - 2) % 3}"
    rows[-2]["value"] = "x"
    with pytest.raises(MalformedHistory, match=rf"^line {n}, column 'value'"):
        read_history(write(tmp_path / "bad.csv", rows))


maybe = st.one_of(st.just(""), st.integers(-(2**62), 2**62))
row_strategy = st.fixed_dictionaries({
    "client": st.text(min_size=0, max_size=8),
    "op": st.sampled_from(["incr", "read"]),
    "outcome": st.sampled_from(["fail", "info"]),
    "value": maybe,
    "invoke_ns": st.integers(0, 2**62),
    "complete_ns": maybe,
    "server_pid": maybe,
    "server_tid": maybe,
    "server_arrival_ns": maybe,
    "server_departure_ns": maybe,
    "url": st.text(max_size=10),
    "burst": maybe,
    "error": st.text(max_size=20),
    "status": maybe,
})


@settings(max_examples=60, deadline=None)
@given(st.lists(row_strategy, max_size=20))
def test_any_written_history_reads_back(tmp_path_factory, rows: list[dict]) -> None:
    """Whatever HistoryWriter writes (quotes, commas, newlines, unicode) reads back unchanged."""
    rows = [{"op_id": i, **row} for i, row in enumerate(rows)]
    for row in rows:  # a completion never precedes its invocation (the reader refuses it)
        if row["complete_ns"] != "":  # a completion after its invocation, within int64
            row["complete_ns"] = row["invoke_ns"] + abs(row["complete_ns"]) % (2**62)
    for row in rows:  # csv cannot tell "" from a missing field: normalise texts like it does
        row["error"] = row["error"].replace("\r", "")
        row["client"] = row["client"].replace("\r", "")
        row["url"] = row["url"].replace("\r", "")
    path = write(tmp_path_factory.mktemp("h") / "history.csv", rows)
    assert read_history(path).to_rows() == rows
    assert HistoryTable.from_rows(rows).to_rows() == rows


# --- the columnar reader, Parquet, status ---------------------------------------------------


def test_clean_file_takes_the_columnar_path(tmp_path: Path, monkeypatch) -> None:
    """A well-formed history never falls back to the row-by-row reader."""
    import reports.history.table as ht

    def refuse(path: Path) -> None:
        raise AssertionError("the row-by-row reader ran on a clean file")

    monkeypatch.setattr(ht, "_read_csv_rows", refuse)
    rows = [dict(r) for r in ROWS]
    rows[1]["error"] = 'a "quoted", multi\nline error'
    assert read_history(write(tmp_path / "history.csv", rows)).to_rows() == rows


def test_columnar_and_row_readers_agree(tmp_path: Path) -> None:
    """Both readers give the same arrays and names, field for field."""
    import reports.history.table as ht

    rows = [{**r, "op_id": i} for i, r in enumerate(ROWS * 40)]
    path = write(tmp_path / "history.csv", rows)
    from reports.history._arrow import read_csv_columnar

    fast, slow = read_csv_columnar(path), ht._read_csv_rows(path)
    for name in HistoryTable.__dataclass_fields__:
        a, b = getattr(fast, name), getattr(slow, name)
        if isinstance(a, np.ndarray):
            assert a.tolist() == b.tolist(), name
        else:
            assert a == b, name


def test_status_column_is_an_optional_integer(tmp_path: Path) -> None:
    """A trailing status column (HTTP status) is read when present, empty when not."""
    path = tmp_path / "history.csv"
    path.write_text("op_id,client,op,outcome,value,invoke_ns,complete_ns,status\n"
                    "0,c,incr,ok,1,10,20,200\n1,c,incr,fail,,30,,503\n2,c,incr,info,,40,,\n",
                    encoding="utf-8")
    table = read_history(path)
    assert table.status.tolist() == [200, 503, 0]
    assert table.status_known.tolist() == [True, True, False]
    assert table.to_rows()[1]["status"] == 503
    path.write_text(path.read_text().replace(",503", ",5x3"), encoding="utf-8")
    with pytest.raises(MalformedHistory, match=r"^line 3, column 'status': not an integer"):
        read_history(path)
    old = tmp_path / "old.csv"  # written before the status column existed
    lines = [next(csv.reader([line]))[:-1] for line in to_csv_text(ROWS).splitlines()]
    with old.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out, lineterminator="\n").writerows(lines)
    assert not read_history(old).status_known.any()


def test_parquet_round_trip(tmp_path: Path) -> None:
    """write_parquet's file reads back to the same rows, whatever its name."""
    from reports.history.table import find_history, write_parquet

    csv_path = write(tmp_path / "history.csv", ROWS)
    parquet = write_parquet(csv_path)
    assert parquet == tmp_path / "history.parquet"
    assert parquet.read_bytes()[:4] == b"PAR1"
    assert read_history(parquet).to_rows() == ROWS
    renamed = parquet.rename(tmp_path / "any-name.csv")
    assert read_history(renamed).to_rows() == ROWS
    assert find_history(tmp_path) == tmp_path / "history.csv"
    write_parquet(csv_path)
    assert find_history(tmp_path) == tmp_path / "history.parquet"


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    """A Parquet history with a repeated op_id names the row; a missing column is named."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reports.history.table import to_arrow

    table = to_arrow(read_history(write(tmp_path / "history.csv", ROWS)))
    ids = pa.array([0, 1, 0], type=pa.int64())
    pq.write_table(table.set_column(0, "op_id", ids), tmp_path / "bad.parquet")
    with pytest.raises(MalformedHistory, match=r"^row 3, column 'op_id': op_id 0 repeats the "
                                               r"one on row 1"):
        read_history(tmp_path / "bad.parquet")
    pq.write_table(table.drop_columns(["value"]), tmp_path / "short.parquet")
    with pytest.raises(MalformedHistory, match=r"^column 'value': missing column 'value'"):
        read_history(tmp_path / "short.parquet")


def test_report_reads_a_parquet_run_directory(tmp_path: Path) -> None:
    """A run directory holding history.parquet (no CSV) is collected like its CSV twin."""
    import json as json_module

    from simulate import simulate_counter

    from reports.analysis.results import collect_experiment
    from reports.history.table import write_parquet

    sim = simulate_counter(300, clients=4, pids=2, info_rate=0.02, seed=5)
    entries = []
    for name in ("csv", "parquet"):
        run = tmp_path / name
        run.mkdir()
        write(run / "history.csv", sim.table().to_rows())
        (run / "final.json").write_text(json_module.dumps(sim.final), encoding="utf-8")
        if name == "parquet":
            write_parquet(run / "history.csv")
            (run / "history.csv").unlink()
        entries.append(collect_experiment(run))
    assert entries[1]["files"]["history"].endswith("history.parquet")
    assert entries[0]["ops"] == entries[1]["ops"] and entries[0]["ops"]["total"] == 300
    assert entries[0]["verdict"]["counts"] == entries[1]["verdict"]["counts"]
