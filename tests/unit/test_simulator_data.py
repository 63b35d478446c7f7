"""The simulator's report generator: determinism, ids, CSV form."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.simulator import (
    MESSAGE_DATA_COLUMNS,
    generate_messages,
    rows_to_csv,
    rows_to_json,
)

BOT = "3f2b8c1e-0000-4000-8000-000000000001"


def _parse_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def test_same_day_same_rows_whatever_the_range() -> None:
    day = date(2024, 2, 29)
    alone = generate_messages(BOT, day, day)
    in_range = generate_messages(BOT, day - timedelta(days=3), day + timedelta(days=2))
    assert alone == [r for r in in_range if r["timestamp"].startswith("2024-02-29")]
    assert alone == generate_messages(BOT, day, day)


@settings(max_examples=25, deadline=None)
@given(
    start=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
    length=st.integers(min_value=1, max_value=10),
    split=st.integers(min_value=0, max_value=9),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_split_ranges_concatenate(start: date, length: int, split: int, seed: int) -> None:
    end = start + timedelta(days=length - 1)
    cut = start + timedelta(days=min(split, length - 1))
    whole = generate_messages(BOT, start, end, seed=seed)
    parts = generate_messages(BOT, start, cut, seed=seed) + generate_messages(
        BOT, cut + timedelta(days=1), end, seed=seed
    )
    assert whole == parts


def test_seed_and_bot_change_the_data() -> None:
    day = date(2024, 1, 1)
    base = generate_messages(BOT, day, day)
    assert generate_messages(BOT, day, day, seed=1) != base
    assert generate_messages("other-bot", day, day) != base


def test_rows_shape_order_and_ids() -> None:
    start, end = date(2023, 12, 25), date(2024, 1, 10)
    rows = generate_messages(BOT, start, end, min_per_day=5, max_per_day=40)
    days = (end - start).days + 1
    assert 5 * days <= len(rows) <= 40 * days
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # ids grow with time
    stamps = [r["timestamp"] for r in rows]
    assert stamps == sorted(stamps)
    for row in rows:
        assert tuple(row) == MESSAGE_DATA_COLUMNS
        moment = datetime.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").date()
        assert start <= moment <= end
        assert row["type"] in ("Text", "Wait", "Choice")
        assert row["user_message_empty"] == (row["message"] == "")
        assert row["bot_module_id"] == row["bot_module"]["id"]
        assert row["data"]["type"] in ("local", "global")
        assert set(row["botuser_meta"]["web"]) == {"host", "current_ip", "hostPageUrl"}
        assert row["botuser_meta"]["web"]["current_ip"].startswith("192.0.2.")
    # Both end days are included.
    assert rows[0]["timestamp"].startswith("2023-12-25")
    assert rows[-1]["timestamp"].startswith("2024-01-10")


def test_tricky_text_is_present() -> None:
    messages = [r["message"] for r in generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 8))]
    assert any("\n" in m for m in messages)
    assert any('"' in m and "," in m for m in messages)
    assert any("🤖" in m and "你好" in m for m in messages)
    assert "" in messages


def test_empty_range_and_bad_density() -> None:
    assert generate_messages(BOT, date(2024, 1, 2), date(2024, 1, 1)) == []
    with pytest.raises(ValueError):
        generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 1), min_per_day=5, max_per_day=4)


def test_csv_round_trips_through_csv_module() -> None:
    rows = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 5))
    data = rows_to_csv(rows)
    assert data.startswith(b"id,timestamp,message,")
    assert data.endswith(b"\r\n")
    # Every record ends in CRLF; newlines inside messages stay bare LF, inside quotes.
    assert data.count(b"\r\n") == len(rows) + 1
    parsed = _parse_csv(data)
    assert len(parsed) == len(rows)
    assert tuple(parsed[0]) == MESSAGE_DATA_COLUMNS
    for row, cells in zip(rows, parsed, strict=True):
        assert cells["id"] == str(row["id"])
        assert cells["message"] == row["message"]
        assert cells["is_test"] == ("true" if row["is_test"] else "false")
        assert cells["external_agent"] == (row["external_agent"] or "")
        assert json.loads(cells["bot_module"]) == row["bot_module"]
        assert json.loads(cells["through_bot_modules"]) == row["through_bot_modules"]
        assert json.loads(cells["botuser_meta"]) == row["botuser_meta"]


def test_csv_nested_json_is_compact_and_not_escaped() -> None:
    row = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 1))[0]
    row = dict(row, data={"type": "local", "fallback": True, "position": 2}, message="Grüße, 你好")
    cells = _parse_csv(rows_to_csv([row]))[0]
    assert cells["data"] == '{"type":"local","fallback":true,"position":2}'
    assert cells["message"] == "Grüße, 你好"
    assert "Grüße".encode() in rows_to_csv([row])


def test_csv_bom_and_header_only() -> None:
    assert rows_to_csv([]) == (",".join(MESSAGE_DATA_COLUMNS) + "\r\n").encode()
    assert rows_to_csv([], bom=True).startswith(b"\xef\xbb\xbfid,")


def test_rows_to_json_is_a_serialisable_copy() -> None:
    rows = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 1))
    body = rows_to_json(rows)
    assert body == rows
    assert json.loads(json.dumps(body)) == rows
    body[0]["bot_module"]["name"] = "changed"
    assert rows[0]["bot_module"]["name"] != "changed"
