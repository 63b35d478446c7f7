"""Parsing Message Data reports (emailed CSV or GET rows) into canonical, typed rows."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from ingest.errors import ReportRejected
from ingest.parse.parser import ParsedReport, frame_from_json_rows, parse_frame
from ingest.parse.schema import MESSAGE_COLUMNS, SOURCE_COLUMNS
from ingest.simulator import (
    MESSAGE_DATA_COLUMNS,
    generate_messages,
    rows_to_csv,
    rows_to_json,
)
from tests.support.saving import parse_csv

BOT = "3f2b8c1e-0000-4000-8000-000000000001"
SHA = "a" * 64
DAY1, DAY3 = date(2024, 1, 1), date(2024, 1, 3)
# Cell text: anything but NUL (not representable in CSV text) and lone surrogates (not UTF-8).
CELL_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


def _rows(start: date = DAY1, end: date = DAY3, **kwargs: Any) -> list[dict[str, Any]]:
    return generate_messages(BOT, start, end, **kwargs)


def _parse(data: bytes, **kwargs: Any) -> ParsedReport:
    return parse_csv(data, bot_id=BOT, source_sha256=SHA, **kwargs)


def _csv(header: list[str], records: list[list[str]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(records)
    return buffer.getvalue().encode("utf-8")


def _canonical(row: dict[str, Any]) -> dict[str, Any]:
    """What the archive must hold for one simulator row."""
    out: dict[str, Any] = {}
    for column in MESSAGE_COLUMNS:
        value = row.get(column.name)
        if column.kind == "timestamp":
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif column.kind == "json" and value is not None:
            value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        elif column.kind == "text" and value == "":
            value = None  # empty text and null are the same in a CSV
        out[column.name] = value
    return out


def test_simulator_rows_parse_to_exactly_those_rows() -> None:
    rows = _rows()

    report = _parse(rows_to_csv(rows))

    assert report.rows_read == len(rows)
    assert report.duplicates_in_file == 0
    assert report.rejected.height == 0
    assert report.extra_columns == []
    assert report.rows.select(SOURCE_COLUMNS).to_dicts() == [_canonical(r) for r in rows]
    assert report.rows["bot_id"].unique().to_list() == [BOT]
    assert report.rows["source_sha256"].unique().to_list() == [SHA]
    assert report.rows["source_kind"].unique().to_list() == ["csv"]
    assert report.rows["extra"].null_count() == report.rows.height
    assert report.rows["timestamp"].dtype == pl.Datetime("us", "UTC")
    assert report.rows["date"].to_list() == [r["timestamp"].date() for r in report.rows.iter_rows(named=True)]


def test_tricky_text_survives_exactly() -> None:
    rows = _rows(DAY1, date(2024, 1, 8))
    tricky = [
        r["message"] for r in rows if any(c in r["message"] for c in ',"\n') or not r["message"].isascii()
    ]
    assert len(tricky) >= 4  # the generator puts quotes, commas, newlines and emoji in

    report = _parse(rows_to_csv(rows))

    assert report.rows["message"].to_list() == [r["message"] or None for r in rows]


def test_get_rows_parse_like_the_csv() -> None:
    rows = _rows()

    from_csv = _parse(rows_to_csv(rows))
    from_get = parse_frame(
        frame_from_json_rows(rows_to_json(rows)), bot_id=BOT, source_sha256="b" * 64, source_kind="get"
    )

    assert from_get.rows["source_kind"].unique().to_list() == ["get"]
    assert_frame_equal(
        from_get.rows.drop("source_kind", "source_sha256"), from_csv.rows.drop("source_kind", "source_sha256")
    )
    assert (from_get.rows_read, from_get.duplicates_in_file) == (from_csv.rows_read, 0)


def test_counts_add_up_with_duplicates_and_rejects() -> None:
    rows = _rows()
    bad = dict(rows[0], id="not-a-number")
    data = rows_to_csv(rows + rows[:3] + [bad])

    report = _parse(data)

    assert report.rows_read == len(rows) + 4
    assert report.duplicates_in_file == 3
    assert report.rejected.height == 1
    assert report.rows.height == len(rows)
    assert report.rows_read == report.rows.height + report.duplicates_in_file + report.rejected.height


def test_rejected_rows_keep_their_raw_text_and_a_reason() -> None:
    header = ["id", "timestamp", "message", "wait", "is_test"]
    data = _csv(
        header,
        [
            ["1", "2024-01-01T10:00:00Z", "fine", "0", "true"],
            ["2", "2024-01-01T10:00:01Z", "bad wait", "three", "true"],
            ["3", "yesterday", "bad timestamp", "0", "false"],
            ["4", "2024-01-01T10:00:03Z", "bad bool", "0", "maybe"],
            ["", "2024-01-01T10:00:04Z", "no id", "0", "false"],
        ],
    )

    report = _parse(data)

    assert report.rows["id"].to_list() == [1]
    reasons = dict(
        zip(report.rejected["message"].to_list(), report.rejected["reason"].to_list(), strict=True)
    )
    assert reasons == {
        "bad wait": "wait is not a valid int",
        "bad timestamp": "timestamp is not a valid timestamp",
        "bad bool": "is_test is not a valid bool",
        "no id": "id is missing",
    }
    assert report.rejected.filter(pl.col("message") == "bad wait")["wait"].to_list() == ["three"]


def test_timestamps_with_offsets_are_stored_as_utc() -> None:
    data = _csv(
        ["id", "timestamp"],
        [
            ["1", "2024-01-01T23:30:00+02:00"],
            ["2", "2024-01-02T00:30:00+02:00"],
            ["3", "2024-01-01 10:00:00"],
            ["4", "2024-01-01T10:00:00.123456Z"],
        ],
    )

    report = _parse(data)

    assert dict(zip(report.rows["id"], report.rows["timestamp"], strict=True)) == {
        1: datetime(2024, 1, 1, 21, 30, tzinfo=UTC),
        2: datetime(2024, 1, 1, 22, 30, tzinfo=UTC),
        3: datetime(2024, 1, 1, 10, 0, tzinfo=UTC),
        4: datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=UTC),
    }
    assert set(report.rows["date"].to_list()) == {DAY1}


def test_database_forms_of_a_timestamp_with_an_hour_only_offset_are_read() -> None:
    """PostgreSQL writes a timestamptz as `2024-01-01 23:30:00.5+02` (and DuckDB's CSV
    export the same): an export that went through a database must not lose every row."""
    data = _csv(
        ["id", "timestamp"],
        [
            ["1", "2024-01-01 23:30:00.5+02"],
            ["2", "2024-01-02 00:30:00-05"],
            ["3", "2024-01-01T10:00:00+00"],
            ["4", "2024-01-01+02"],
        ],
    )

    report = _parse(data)

    assert dict(zip(report.rows["id"], report.rows["timestamp"], strict=True)) == {
        1: datetime(2024, 1, 1, 21, 30, 0, 500000, tzinfo=UTC),
        2: datetime(2024, 1, 2, 5, 30, tzinfo=UTC),
        3: datetime(2024, 1, 1, 10, 0, tzinfo=UTC),
    }
    assert report.rejected["id"].to_list() == ["4"]  # a date with an offset is no timestamp


def test_missing_id_column_is_rejected_by_name() -> None:
    data = _csv(["timestamp", "message"], [["2024-01-01T00:00:00Z", "hi"]])

    with pytest.raises(ReportRejected, match=r"missing required column\(s\): id"):
        _parse(data)


def test_invalid_utf8_is_rejected() -> None:
    data = b"id,timestamp,message\r\n1,2024-01-01T00:00:00Z,caf\xe9\r\n"

    with pytest.raises(ReportRejected, match="UTF-8"):
        _parse(data)


@pytest.mark.parametrize(
    "line",
    [
        b"2,2024-01-01T00:00:01Z,one,too many",
        b"2,2024-01-01T00:00:01Z",
        b"2",
    ],
    ids=["too-many-fields", "too-few-fields", "cut-after-first-field"],
)
def test_ragged_line_rejects_the_file(line: bytes) -> None:
    data = (
        b"id,timestamp,message\r\n1,2024-01-01T00:00:00Z,hi\r\n" + line + b"\r\n3,2024-01-01T00:00:02Z,x\r\n"
    )

    with pytest.raises(ReportRejected):
        _parse(data)


def test_unterminated_quote_rejects_the_file() -> None:
    data = b'id,timestamp,message\r\n1,2024-01-01T00:00:00Z,"cut in the middle\r\n'

    with pytest.raises(ReportRejected):
        _parse(data)


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\r\n\r\n"], ids=["empty", "bom-only", "blank"])
def test_empty_file_is_rejected(data: bytes) -> None:
    with pytest.raises(ReportRejected):
        _parse(data)


def test_bom_and_crlf_are_fine() -> None:
    rows = _rows()

    with_bom = _parse(rows_to_csv(rows, bom=True))
    plain = _parse(rows_to_csv(rows))

    assert "id" in with_bom.rows.columns
    assert with_bom.extra_columns == []
    assert_frame_equal(with_bom.rows, plain.rows)


def test_column_order_does_not_matter() -> None:
    rows = _rows()
    shuffled = list(MESSAGE_DATA_COLUMNS)
    random.Random(7).shuffle(shuffled)
    assert shuffled != list(MESSAGE_DATA_COLUMNS)
    original = csv.DictReader(io.StringIO(rows_to_csv(rows).decode("utf-8"), newline=""))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=shuffled, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(original)

    report = _parse(buffer.getvalue().encode("utf-8"))

    assert_frame_equal(report.rows, _parse(rows_to_csv(rows)).rows)


def test_unknown_column_is_kept_in_extra() -> None:
    data = _csv(
        ["id", "timestamp", "message", "language", "channel"],
        [
            ["1", "2024-01-01T00:00:00Z", "hej", "da", "web"],
            ["2", "2024-01-01T00:00:01Z", "hi", "", "sms"],
        ],
    )

    report = _parse(data)

    assert report.extra_columns == ["language", "channel"]
    assert [json.loads(e) for e in report.rows["extra"]] == [
        {"language": "da", "channel": "web"},
        {"language": None, "channel": "sms"},
    ]


def test_flattened_bot_module_is_folded_into_json() -> None:
    data = _csv(
        ["id", "timestamp", "bot_module.name", "bot_module.id"],
        [
            ["1", "2024-01-01T00:00:00Z", "Returns, refunds", "123456"],
        ],
    )

    report = _parse(data)

    assert report.extra_columns == []
    assert json.loads(report.rows["bot_module"][0]) == {"name": "Returns, refunds", "id": "123456"}
    assert "bot_module.name" not in report.rows.columns


def test_rows_outside_the_window_are_rejected_with_the_window_named() -> None:
    rows = _rows(DAY1, date(2024, 1, 5))
    window = (date(2024, 1, 2), date(2024, 1, 4))

    report = _parse(rows_to_csv(rows), window=window)

    inside = [r for r in rows if window[0].isoformat() <= r["timestamp"][:10] <= window[1].isoformat()]
    assert report.rows["id"].to_list() == [r["id"] for r in inside]
    assert report.rejected.height == len(rows) - len(inside)
    assert set(report.rejected["reason"]) == {"timestamp outside the requested window 2024-01-02..2024-01-04"}


def test_row_count_matches_python_csv_with_quoted_newlines() -> None:
    data = rows_to_csv(_rows(DAY1, date(2024, 1, 10)))
    records = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert data.count(b"\n") > len(records)  # some records do span several lines

    report = _parse(data)

    assert report.rows_read == len(records) - 1


def _cell(valid: st.SearchStrategy[str], invalid: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(valid, st.sampled_from(invalid))


RANDOM_ROW = st.fixed_dictionaries(
    {
        "id": _cell(st.integers(1, 15).map(str), ["", "x", "1.5", "9" * 30, "0x10"]),
        "timestamp": _cell(
            st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
                lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            ),
            ["", "yesterday", "2024-13-01T00:00:00Z", "2024-01-01T25:00:00Z"],
        ),
        "message": CELL_TEXT,
        "wait": _cell(st.integers(-5, 10**12).map(str), ["", "three", "1e3", "NaN"]),
        "is_test": st.sampled_from(["true", "false", "True", "0", "1", "", "maybe", "yes!"]),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(RANDOM_ROW, min_size=1, max_size=25))
def test_counts_always_add_up(records: list[dict[str, str]]) -> None:
    header = ["id", "timestamp", "message", "wait", "is_test"]
    data = _csv(header, [[r[c] for c in header] for r in records])

    report = _parse(data)

    assert report.rows_read == len(records)
    assert report.rows_read == report.rows.height + report.duplicates_in_file + report.rejected.height
    assert report.rejected["reason"].null_count() == 0
    assert report.rows["id"].is_unique().all()


@settings(max_examples=80, deadline=None)
@given(st.lists(CELL_TEXT, min_size=1, max_size=5))
def test_message_text_round_trips_through_parquet(texts: list[str]) -> None:
    template = _rows(DAY1, DAY1, min_per_day=1, max_per_day=1)[0]
    rows = [dict(template, id=template["id"] + i, message=text) for i, text in enumerate(texts)]

    report = _parse(rows_to_csv(rows))
    buffer = io.BytesIO()
    report.rows.write_parquet(buffer)
    buffer.seek(0)
    back = pl.read_parquet(buffer)

    assert report.rejected.height == 0
    assert back.sort("id")["message"].to_list() == [text or None for text in texts]
