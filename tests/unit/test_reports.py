"""Report types 2-4: the typed reader (ingest.parse.reports) and the simulator's fake reports."""

from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from ingest.errors import ReportRejected
from ingest.mail.attachments import parse_email
from ingest.parse.reports import read_report, read_report_rows, row_keys
from ingest.report_types import DATASETS
from ingest.simulator.data import rows_to_json
from ingest.simulator.reports import (
    REPORT_COLUMNS,
    build_typed_report_email,
    generate_report_rows,
    report_to_csv,
    report_type_filename,
)
from tests.support.archive import typed_truth

BOT = "3f2b8c1e-0000-4000-8000-000000000001"
DAY = date(2024, 1, 1)
WINDOW = (date(2024, 1, 1), date(2024, 1, 10))

#: The kinds the reader must find in the simulator's reports (a window of several days).
SIMULATED_KINDS: dict[int, dict[str, str]] = {
    2: {
        "date": "date",
        "conversations": "int",
        "messages": "int",
        "users": "int",
        "new_users": "int",
        "returning_users": "int",
        "handovers": "int",
        "fallbacks": "int",
        "avg_messages_per_conversation": "float",
        "avg_conversation_duration_s": "float",
        "goal_completion_rate": "float",
    },
    3: {
        "date": "date",
        "channel": "text",
        "conversations": "int",
        "messages": "int",
        "users": "int",
        "goal_completions": "int",
        "goal_completion_rate": "float",
        "avg_response_time_ms": "int",
        "bounce_rate": "float",
        "handover_rate": "float",
        "avg_rating": "float",
    },
    4: {
        "date": "date",
        "bot_module_id": "int",
        "module_code": "text",
        "bot_module_name": "text",
        "module_type": "text",
        "group": "text",
        "times_triggered": "int",
        "unique_users": "int",
        "fallbacks": "int",
        "exits": "int",
        "is_active": "bool",
        "is_global": "bool",
        "last_edited": "timestamp",
    },
}


def _csv(header: list[str], *rows: list[str], bom: bool = False) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8")


# -- typing --------------------------------------------------------------------------------
def test_each_kind_is_typed_when_every_value_matches() -> None:
    data = _csv(
        ["date", "n", "x", "flag", "seen", "at", "label"],
        ["2024-01-01", "0", "2.5", "true", "2023-12-31", "2024-01-01T10:00:00Z", "a"],
        ["2024-01-02", "-12", "3", "FALSE", "", "2024-01-02T01:30:00.5+02:00", ""],
        [
            "2024-01-02",
            "9223372036854775807",
            "-0.125",
            "False",
            "2024-02-29",
            "2024-01-02T00:00:00-0100",
            'c, "d"',
        ],
    )
    report = read_report(data, 2, window=WINDOW)
    assert report.columns == {
        "date": "date",
        "n": "int",
        "x": "float",
        "flag": "bool",
        "seen": "date",
        "at": "timestamp",
        "label": "text",
    }
    expected = pl.DataFrame(
        {
            "date": [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 2)],
            "n": [0, -12, 9223372036854775807],
            "x": [2.5, 3.0, -0.125],
            "flag": [True, False, False],
            "seen": [date(2023, 12, 31), None, date(2024, 2, 29)],
            "at": [
                datetime(2024, 1, 1, 10, tzinfo=UTC),
                datetime(2024, 1, 1, 23, 30, 0, 500_000, tzinfo=UTC),
                datetime(2024, 1, 2, 1, tzinfo=UTC),
            ],
            "label": ["a", None, 'c, "d"'],
        },
        schema={
            "date": pl.Date,
            "n": pl.Int64,
            "x": pl.Float64,
            "flag": pl.Boolean,
            "seen": pl.Date,
            "at": pl.Datetime("us", "UTC"),
            "label": pl.String,
        },
    )
    assert_frame_equal(report.rows.drop("row_key"), expected)
    assert report.rows.columns[-1] == "row_key" and report.rows_read == 3
    assert report.rejected.height == 0 and report.dataset == "standard"


@pytest.mark.parametrize(
    ("values", "why"),
    [
        (["1", "2", "x"], "one word among integers"),
        (["007", "12"], "leading zeros"),
        (["00", "1"], "a double zero"),
        (["1.5", "1e5"], "an exponent"),
        ([" 1", "2"], "a space"),
        (["9223372036854775808", "1"], "beyond Int64"),
        (["2024-02-30", "2024-01-01"], "no 30 February"),
        (["2024-01-01", "2024-01-01T00:00:00Z"], "dates and timestamps mixed"),
        (["2024-01-01T10:00:00", "2024-01-01T11:00:00"], "timestamps without an offset"),
        (["yes", "no"], "yes/no is not true/false"),
        (["1", "true"], "numbers and booleans mixed"),
        (["١٢", "3"], "non-ASCII digits"),
    ],
)
def test_a_column_with_one_non_matching_value_stays_text(values: list[str], why: str) -> None:
    data = _csv(["date", "v"], *[["2024-01-01", v] for v in values])
    report = read_report(data, 3)
    assert report.columns["v"] == "text", why
    assert report.rows["v"].to_list() == values


def test_empty_cells_are_null_and_an_all_empty_column_is_text() -> None:
    report = read_report(_csv(["date", "n", "blank"], ["2024-01-01", "", ""], ["2024-01-01", "4", ""]), 2)
    assert report.columns["n"] == "int" and report.columns["blank"] == "text"
    assert report.rows["n"].to_list() == [None, 4]
    assert report.rows["blank"].to_list() == [None, None]


# -- reading the file ------------------------------------------------------------------------
def test_bom_crlf_and_quoted_newlines() -> None:
    rows = [["2024-01-01", "line one\nline two", "7"], ["2024-01-02", 'a\r\nb, "c"', "8"]]
    plain = read_report(_csv(["date", "text", "n"], *rows), 4)
    with_bom = read_report(_csv(["date", "text", "n"], *rows, bom=True), 4)
    assert_frame_equal(plain.rows, with_bom.rows)
    assert plain.rows["text"].to_list() == ["line one\nline two", 'a\r\nb, "c"']
    assert plain.columns["n"] == "int" and plain.rows_read == 2


def test_lf_only_and_a_path_read_the_same(tmp_path: Path) -> None:
    crlf = _csv(["date", "n"], ["2024-01-01", "1"])
    path = tmp_path / "r.csv"
    path.write_bytes(crlf.replace(b"\r\n", b"\n"))
    assert_frame_equal(read_report(path, 2).rows, read_report(crlf, 2).rows)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"date,n\r\n2024-01-01,1\r\n2024-01-02,2,3\r\n", "fields"),
        (b"date,n\r\n2024-01-01\r\n", "fields"),
        (b"date,n\r\n2024-01-01,\xff\xfe\r\n", "not UTF-8"),
        (b"date,name\r\n2024-01-01,Gr\xfc\xdfe\r\n", "not UTF-8"),
        (b"", "empty file"),
        (b"\r\n2024-01-01,1\r\n", "empty header"),
        (b",\r\n1,2\r\n", "empty header"),
        (b"date,,n\r\n2024-01-01,1,2\r\n", "column 2 of the header has no name"),
        (b"date,n,n\r\n2024-01-01,1,2\r\n", "duplicate column name"),
        (b"date,n, n \r\n2024-01-01,1,2\r\n", "duplicate column name"),
        (b"date,row_key\r\n2024-01-01,1\r\n", "reserved"),
        (b"n,label\r\n1,a\r\n", "no date column"),
    ],
)
def test_files_that_cannot_be_read_whole_are_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(ReportRejected, match=reason):
        read_report(data, 2)


def test_header_only_file_has_no_rows() -> None:
    report = read_report(b"date,n\r\n", 3)
    assert report.rows_read == 0 and report.rows.height == report.rejected.height == 0
    assert report.rows.schema["date"] == pl.Date and report.columns["n"] == "text"


def test_unknown_report_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="report_id"):
        read_report(b"date\r\n2024-01-01\r\n", 1)
    assert DATASETS == {2: "standard", 3: "advanced", 4: "content_management"}


# -- placing rows on a day -----------------------------------------------------------------------
def test_rows_outside_the_window_or_undated_are_rejected_and_counts_add_up() -> None:
    data = _csv(
        ["date", "n"],
        ["2024-01-01", "1"],
        ["2024-01-03", "2"],
        ["2023-12-31", "3"],
        ["", "4"],
        ["n/a", "5"],
        ["2024-01-02", "6"],
        ["2024-01-02T23:30:00-02:00", "7"],
    )
    report = read_report(data, 2, window=(date(2024, 1, 1), date(2024, 1, 2)))
    assert report.rows_read == 7 == report.rows.height + report.rejected.height
    assert report.rows["n"].to_list() == [1, 6]  # typed on the placed rows: "n/a" is gone
    assert report.columns["date"] == "date"
    assert report.rejected.columns == ["_row", "reason", "date", "n"]
    assert report.rejected.rows() == [
        (2, "date 2024-01-03 is outside the requested window 2024-01-01..2024-01-02", "2024-01-03", "2"),
        (3, "date 2023-12-31 is outside the requested window 2024-01-01..2024-01-02", "2023-12-31", "3"),
        (4, "date is empty: no day for the row", None, "4"),
        (5, "date is not a date or ISO timestamp: n/a", "n/a", "5"),
        (
            7,
            "date 2024-01-03 is outside the requested window 2024-01-01..2024-01-02",
            "2024-01-02T23:30:00-02:00",
            "7",
        ),
    ]


def test_a_day_column_is_used_and_kept() -> None:
    report = read_report(_csv(["channel", "day"], ["web", "2024-01-05"]), 3)
    assert report.rows["day"].to_list() == report.rows["date"].to_list() == [date(2024, 1, 5)]
    assert report.columns == {"channel": "text", "day": "date", "date": "date"}


def test_else_the_first_date_or_timestamp_column_gives_the_utc_day() -> None:
    data = _csv(
        ["label", "edited", "seen"], ["a", "2024-01-01T23:30:00-02:00", "2020-01-01"], ["b", "", "2020-01-01"]
    )
    report = read_report(data, 4)
    assert report.rows["date"].to_list() == [date(2024, 1, 2)]
    assert report.rejected.rows() == [(2, "edited is empty: no day for the row", "b", None, "2020-01-01")]


def test_timestamps_under_date_are_kept_beside_the_partition_day() -> None:
    report = read_report(_csv(["date", "n"], ["2024-01-01T23:00:00-02:00", "1"]), 2)
    assert report.rows["date"].to_list() == [date(2024, 1, 2)]
    assert report.rows["date_source"].to_list() == [datetime(2024, 1, 2, 1, tzinfo=UTC)]
    assert report.columns["date_source"] == "timestamp" and report.columns["date"] == "date"


def test_no_date_column_falls_back_to_the_window_start() -> None:
    report = read_report(_csv(["module", "n"], ["Welcome", "3"]), 4, window=(DAY, DAY + timedelta(2)))
    assert report.rows["date"].to_list() == [DAY]


# -- row keys ----------------------------------------------------------------------------------
def test_row_key_is_sha256_of_the_non_empty_cells_and_stable() -> None:
    data = _csv(["date", "n", "label"], ["2024-01-01", "1", ""], ["2024-01-01", "1", "x"])
    first, again = read_report(data, 2), read_report(data, 2)
    assert first.rows["row_key"].to_list() == again.rows["row_key"].to_list()
    text = json.dumps({"date": "2024-01-01", "n": "1"}, sort_keys=True, separators=(",", ":"))
    assert first.rows["row_key"][0] == hashlib.sha256(text.encode()).hexdigest()
    assert first.rows["row_key"][0] != first.rows["row_key"][1]  # one cell differs


def test_row_key_ignores_column_order_and_is_unambiguous() -> None:
    a = read_report(_csv(["date", "a", "b"], ["2024-01-01", "x,y", "z"]), 3).rows["row_key"]
    b = read_report(_csv(["b", "date", "a"], ["z", "2024-01-01", "x,y"]), 3).rows["row_key"]
    c = read_report(_csv(["date", "a", "b"], ["2024-01-01", "x", "y,z"]), 3).rows["row_key"]
    assert a.to_list() == b.to_list() != c.to_list()
    same = pl.DataFrame({"a": ["1", "1"], "b": [None, None]})
    assert row_keys(same).n_unique() == 1


# -- property: text survives ----------------------------------------------------------------------
_CELL = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_CELL, min_size=3, max_size=3), min_size=1, max_size=6))
def test_text_cells_round_trip_unchanged(cells: list[list[str]]) -> None:
    header = ["date", "t", "c1", "c2"]
    # "t" always has a word in it, so at least one column is certainly text.
    rows = [["2024-01-01", f"x{row[0]}", row[1], row[2]] for row in cells]
    report = read_report(_csv(header, *rows), 4, window=(DAY, DAY))
    assert report.rows_read == len(rows) == report.rows.height
    assert report.columns["t"] == "text"
    for index, name in enumerate(header[1:], start=1):
        if report.columns[name] == "text":
            assert report.rows[name].to_list() == [row[index] or None for row in rows]


# -- the simulator's reports ---------------------------------------------------------------------
@pytest.mark.parametrize("report_id", [2, 3, 4])
def test_simulated_report_reads_back_to_the_generated_values(report_id: int) -> None:
    start, end = date(2024, 2, 25), date(2024, 3, 5)
    generated = generate_report_rows(report_id, BOT, start, end, seed=7)
    report = read_report(report_to_csv(report_id, generated), report_id, window=(start, end))
    assert report.columns == SIMULATED_KINDS[report_id]
    assert report.rejected.height == 0 and report.rows_read == len(generated)
    assert report.rows.drop("row_key").to_dicts() == typed_truth(generated)
    assert report.rows["row_key"].n_unique() == len(generated)


@pytest.mark.parametrize("report_id", [2, 3, 4])
def test_get_rows_read_like_the_emailed_csv(report_id: int) -> None:
    start, end = date(2024, 2, 25), date(2024, 3, 5)
    generated = generate_report_rows(report_id, BOT, start, end)
    from_csv = read_report(report_to_csv(report_id, generated), report_id, window=(start, end))
    from_get = read_report_rows(rows_to_json(generated), report_id, window=(start, end))
    assert_frame_equal(from_get.rows, from_csv.rows)  # row_key included
    assert from_get.columns == from_csv.columns
    with pytest.raises(ReportRejected, match="empty GET answer"):
        read_report_rows([], report_id)


@pytest.mark.parametrize("report_id", [2, 3, 4])
def test_simulated_days_do_not_depend_on_the_window(report_id: int) -> None:
    day = date(2024, 2, 29)
    alone = generate_report_rows(report_id, BOT, day, day)
    in_range = generate_report_rows(report_id, BOT, day - timedelta(3), day + timedelta(2))
    assert alone and alone == [r for r in in_range if r["date"] == "2024-02-29"]
    assert generate_report_rows(report_id, BOT, day, day, seed=1) != alone
    assert generate_report_rows(report_id, "other-bot", day, day) != alone
    assert generate_report_rows(report_id, BOT, day, day - timedelta(1)) == []
    assert all(list(r) == list(REPORT_COLUMNS[report_id]) for r in alone)


def test_simulated_shapes() -> None:
    week = (date(2024, 1, 1), date(2024, 1, 7))
    assert len(generate_report_rows(2, BOT, *week)) == 7
    advanced = generate_report_rows(3, BOT, *week)
    assert {r["channel"] for r in advanced if r["date"] == "2024-01-01"} >= {"web"}
    assert any(r["avg_rating"] is None for r in generate_report_rows(3, BOT, DAY, DAY + timedelta(60)))
    content = generate_report_rows(4, BOT, *week)
    names = {r["bot_module_name"] for r in content}
    assert any("," in n and '"' in n for n in names) and any(not n.isascii() for n in names)
    assert all(r["module_code"].startswith("0") for r in content)
    with pytest.raises(ValueError, match="report_id"):
        generate_report_rows(1, BOT, *week)


def test_simulated_csv_dialect() -> None:
    rows = generate_report_rows(4, BOT, DAY, DAY)
    data = report_to_csv(4, rows)
    assert data.startswith(",".join(REPORT_COLUMNS[4]).encode() + b"\r\n")
    assert data.count(b"\r\n") == len(rows) + 1 and b'"Returns, refunds ""express"""' in data
    assert report_to_csv(4, rows, bom=True) == b"\xef\xbb\xbf" + data


@pytest.mark.parametrize("hints", [True, False])
def test_typed_report_email_names_the_type_and_keeps_the_hints(hints: bool) -> None:
    data = report_to_csv(3, generate_report_rows(3, BOT, DAY, DAY))
    raw = build_typed_report_email(
        3, csv_bytes=data, bot_id=BOT, from_date=DAY, to_date=DAY + timedelta(1), hints=hints
    )
    parsed = parse_email(raw)
    assert [r.data for r in parsed.reports] == [data]
    name = parsed.reports[0].filename
    if hints:
        assert (
            name
            == report_type_filename(3, BOT, DAY, DAY + timedelta(1))
            == f"advanced_report_{BOT}_2024-01-01_2024-01-02.csv"
        )
        assert parsed.subject == f"Certainly advanced report {BOT} 2024-01-01 - 2024-01-02"
    else:
        assert name == "advanced_report.csv" and BOT not in (parsed.subject or "")
    body = email.message_from_bytes(raw, policy=email.policy.default)
    assert "advanced report" in body.get_body(("plain",)).get_content()  # type: ignore[union-attr]
