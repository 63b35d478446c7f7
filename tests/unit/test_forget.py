"""The raw CSV rewrite of an erasure: dropping a subject's records keeps every other byte,
whatever the quoting, line ends, BOM; and the retention's settings forms."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.archive.copies import csv_records, rewrite_csv
from ingest.archive.forget import SubjectSelection
from ingest.archive.manifests import erasures_in_order, next_erasure_seq
from ingest.errors import ConfigError
from ingest.settings import load_settings

SUBJECT = "4242"
HEADER = ["id", "message", "botuser"]
#: Cells biased towards what breaks naive splitting: quotes, separators, CR, LF, CRLF.
cells = st.lists(st.sampled_from([*'ab ,"\r\n\t€é', "\r\n"]), max_size=12).map("".join)


def _record(row: list[str], terminator: str) -> bytes:
    buffer = io.StringIO(newline="")
    # csv.writer leaves a lone CR unquoted under an LF terminator: a file Python's csv itself
    # reads as two records (the vendor's writer, CRLF, quotes it).
    quoting = csv.QUOTE_ALL if any("\r" in cell for cell in row) else csv.QUOTE_MINIMAL
    csv.writer(buffer, lineterminator=terminator, quoting=quoting).writerow(row)
    return buffer.getvalue().encode()


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(cells, st.booleans(), st.sampled_from(["1", "77", SUBJECT])), max_size=25),
    terminator=st.sampled_from(["\r\n", "\n"]),
    bom=st.booleans(),
    block=st.integers(min_value=1, max_value=64),
)
def test_dropping_a_subject_keeps_every_other_record_byte_for_byte(
    rows: list[tuple[str, bool, str]], terminator: str, bom: bool, block: int
) -> None:
    header = (b"\xef\xbb\xbf" if bom else b"") + _record(HEADER, terminator)
    records = [
        _record([str(n), text, json.dumps({"id": int(who) if numeric else who})], terminator)
        for n, (text, numeric, who) in enumerate(rows)
    ]
    source = header + b"".join(records)
    expected = header + b"".join(r for r, (_, _, who) in zip(records, rows, strict=True) if who != SUBJECT)
    assert b"".join(csv_records(io.BytesIO(source), block=block)) == source
    selection = SubjectSelection((SUBJECT,))
    for needles in ((), selection.needles()):  # record by record, and runs without the id at once
        target = io.BytesIO()
        removed = rewrite_csv(
            io.BytesIO(source),
            target,
            lambda names, row: selection.record("bot", names, row),
            selection.candidate,
            needles=needles,
            block=block,
        ).removed
        assert target.getvalue() == expected
        assert removed == sum(1 for _, _, who in rows if who == SUBJECT)


def test_records_split_where_pythons_csv_splits() -> None:
    data = b'a,b\r\n1,"x\r\ny"\r\n2,"q""\n"\n3,z'
    assert list(csv_records(io.BytesIO(data), block=3)) == [
        b"a,b\r\n",
        b'1,"x\r\ny"\r\n',
        b'2,"q""\n"\n',
        b"3,z",
    ]


@pytest.mark.parametrize(
    "value",
    ['{"messages": 365, "standard": 730}', "messages=365, standard=730", "messages:365,standard:730"],
)
def test_retention_per_dataset_in_the_forms_people_write(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_RETENTION__DATASETS", value)
    monkeypatch.setenv("INGEST_RETENTION__DAYS", "90")
    retention = load_settings().retention
    assert (
        retention.days_for("messages"),
        retention.days_for("standard"),
        retention.days_for("advanced"),
    ) == (
        365,
        730,
        90,
    )


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ('{"mesages": 3}', "INGEST_RETENTION__DATASETS: unknown dataset 'mesages'"),
        ("messages", "INGEST_RETENTION__DATASETS: entry 'messages' is not dataset=days"),
        ('{"messages": 0}', "INGEST_RETENTION__DATASETS"),
    ],
)
def test_a_bad_retention_names_the_setting(value: str, named: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_RETENTION__DATASETS", value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def _erasure(
    record_id: str, at: str, original: str, new: str, seq: int | None = None
) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {
        "id": record_id,
        "at": at,
        "copies": [{"key": "raw/x.csv", "original_sha256": original, "new_sha256": new}],
    }
    if seq is not None:
        body["seq"] = seq
    return f"manifests/erasure-{record_id}.json", body


def test_erasure_records_replay_by_sequence_and_old_ones_of_one_second_by_their_hash_chain() -> None:
    second = "2026-01-01T00:00:00Z"
    made = [
        _erasure("ffff", second, "a", "b"),  # no seq: written before records had one
        _erasure("eeee", second, "b", "c"),
        _erasure("dddd", second, "c", "d"),
        _erasure("9999", "2026-01-01T00:00:05Z", "d", "e", seq=4),
        _erasure("cccc", second, "e", "f", seq=5),  # a clock set back: the sequence still rules
    ]
    for shuffled in (made, made[::-1], [made[2], made[0], made[4], made[1], made[3]]):
        assert [key for key, _ in erasures_in_order(shuffled)] == [key for key, _ in made]
    assert next_erasure_seq(made) == 6
    assert next_erasure_seq(made[:3]) == 4
