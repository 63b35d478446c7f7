"""The raw CSV rewrite of an erasure: dropping a subject's records keeps every other byte,
whatever the quoting, line ends, BOM; and the retention's settings forms."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.archive import copies, csvrecords
from ingest.archive.copies import Unreadable, rewrite_csv, scan_file
from ingest.archive.csvrecords import csv_records, exact_records
from ingest.archive.forget import SubjectSelection
from ingest.archive.manifests import erasures_in_order, next_erasure_seq
from ingest.errors import ConfigError
from ingest.records import ErasureBody
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
) -> tuple[str, ErasureBody]:
    body: dict[str, Any] = {
        "id": record_id,
        "at": at,
        "copies": [{"key": "raw/x.csv", "original_sha256": original, "new_sha256": new}],
    }
    if seq is not None:
        body["seq"] = seq
    return f"manifests/erasure-{record_id}.json", ErasureBody.model_validate(body)


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


json_rows = st.lists(
    st.tuples(
        st.sampled_from(["4242", "42", "x"]), st.sampled_from(["", " ", "\n  ", "\r\n"]), st.booleans()
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(rows=json_rows, wrapped=st.booleans(), tail=st.sampled_from(["", "\n", "  \n"]))
def test_a_json_copy_loses_the_subjects_rows_and_keeps_every_other_rows_bytes(
    rows: list[tuple[str, str, bool]], wrapped: bool, tail: str
) -> None:
    def element(n: int, who: str, escaped: bool) -> str:
        shown = "".join(f"\\u{ord(c):04x}" for c in who) if escaped else who
        return f'{{"id": {n}, "botuser": {{"id": "{shown}"}}, "message": "ask 4242 \\"now\\""}}'

    elements = [(space + element(n, who, esc), who) for n, (who, space, esc) in enumerate(rows)]
    body = "[" + ",".join(e for e, _ in elements) + "]"
    text = ('{"count": 3, "rows": ' + body + ', "more": [1]}' if wrapped else body) + tail
    folder = Path(tempfile.mkdtemp())
    source, target = folder / "get.json", folder / "out.json"
    source.write_text(text)
    selection = SubjectSelection(("4242",))
    found = scan_file(
        source,
        "raw/bot_id=b/x.json",
        lambda h, c: selection.record("b", h, c),
        selection.candidate,
        [],
        target=target,
    )
    kept = [e for e, who in elements if who != "4242"]
    assert found.removed == len(elements) - len(kept) and found.kept == bool(kept)
    out = target.read_text()
    assert [json.loads(e) for e in kept] == (json.loads(out)["rows"] if wrapped else json.loads(out))
    at = 0
    for e in kept:  # each kept row's bytes, in order, as written
        at = out.index(e.strip(), at) + len(e.strip())
    assert out.endswith(tail) and '4242"}' not in out.replace("ask 4242", "")


@pytest.mark.parametrize(
    ("cell", "column"),
    [
        ('{"id":"\\u0034\\u0032\\u0034\\u0032"}', "botuser"),  # escaped digits
        ('{"id":4242}', "botuser"),  # a number
        ('{"created":"2024","id":"4242"}', "botuser"),
        ('{"id":"1","id":"4242"}', "botuser"),  # an id written twice: theirs whichever a reader keeps
        ("4242", "user_id"),
        ("4242", "botuser_id"),
    ],
)
def test_the_subject_is_found_by_value_in_every_form_an_id_is_written(cell: str, column: str) -> None:
    record = _record(["1", "x" * 200_000, cell], "\r\n")  # a field over csv's default limit too
    header = _record(["id", "message", column], "\r\n")
    target = io.BytesIO()
    selection = SubjectSelection(("4242",))
    found = rewrite_csv(
        io.BytesIO(header + record),
        target,
        lambda names, row: selection.record("b", names, row),
        selection.candidate,
        needles=selection.needles(),
    )
    assert found.removed == 1 and target.getvalue() == header
    names, cells = ["id", "message", column], ["1", "x", cell]
    for other in ("424", "42", "4242 ", "04242", "2024"):  # substrings and near misses: not them
        assert not SubjectSelection((other,)).record("b", names, cells)


def test_an_id_with_a_slash_or_a_quote_is_found_escaped_or_doubled() -> None:
    for who, cell in (("a/b", '{"id":"a\\/b"}'), ('say "hi"', '{"id":"say \\"hi\\""}')):
        header, record = _record(["botuser"], "\n"), _record([cell], "\n")
        selection = SubjectSelection((who,))
        found = rewrite_csv(
            io.BytesIO(header + record),
            None,
            lambda n, r, s=selection: s.record("b", n, r),
            selection.candidate,
            needles=selection.needles(),
        )
        assert found.removed == 1, who


@pytest.mark.parametrize("needles", [[], [b"4242"]])
def test_a_quote_inside_an_unquoted_field_is_literal_as_the_intake_reads_it(needles: list[bytes]) -> None:
    """``my 5" screen``: the intake's reader (and Python's csv) take the quote as a character.
    The quote-parity split glues records after it; they are split again as the readers split
    them, so an erasure drops only the subject's record and a prune reads every record."""
    odd = b'1,my 5" screen,{}\r\n'
    theirs = b'2,x,"{""id"":4242}"\r\n'
    rest = b'3,"ok",{}\r\n4,a 6" one,{}\r\n'
    source = b"id,message,botuser\r\n" + odd + theirs + rest
    selection = SubjectSelection((SUBJECT,))
    target = io.BytesIO()
    found = rewrite_csv(
        io.BytesIO(source),
        target,
        lambda h, c: selection.record("b", h, c),
        selection.candidate,
        needles=needles,
    )
    assert (found.removed, found.labels, found.kept) == (1, ["id 2"], True)
    assert target.getvalue() == b"id,message,botuser\r\n" + odd + rest
    seen: list[list[str]] = []
    rewrite_csv(io.BytesIO(source), None, lambda h, c: bool(seen.append(c)), lambda r: True)
    assert [row[0] for row in seen] == ["1", "2", "3", "4"]  # a prune reads each record


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.sampled_from(["a", '"', 'b"c', '"q"', "", "x\r\ny", ","]), min_size=1, max_size=4),
        max_size=8,
    )
)
def test_the_exact_split_splits_where_pythons_csv_splits(rows: list[list[str]]) -> None:
    text = "\r\n".join(",".join(row) for row in rows) + "\r\n"
    pieces = exact_records(text.encode())
    assert b"".join(pieces) == text.encode()
    expected = list(csv.reader(io.StringIO(text, newline="")))
    assert [r for p in pieces for r in csv.reader(io.StringIO(p.decode(), newline=""))] == expected
    assert all(len(list(csv.reader(io.StringIO(p.decode(), newline="")))) <= 1 for p in pieces)


def test_a_json_document_with_their_record_outside_its_rows_fails_rather_than_misses(tmp_path: Path) -> None:
    path = tmp_path / "original-odd.json"
    path.write_text('{"errors": [], "rows": [{"id": 1, "botuser": {"id": "4242"}}]}')
    selection = SubjectSelection(("4242",))
    with pytest.raises(Unreadable, match="outside the list of rows"):
        scan_file(
            path,
            "quarantine/x/original-odd.json",
            lambda h, c: selection.record("b", h, c),
            selection.candidate,
            [],
        )


def test_a_json_original_too_large_to_read_is_refused_only_when_it_may_hold_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copies, "MAX_JSON_BYTES", 100)
    path = tmp_path / "original-big.json"
    path.write_text(json.dumps([{"id": n, "botuser": {"id": "77"}} for n in range(20)]))
    for who, refused in (("4242", False), ("77", True)):
        selection = SubjectSelection((who,))
        scan = lambda s=selection: scan_file(  # noqa: E731
            path, "quarantine/x/original-big.json", lambda h, c: s.record("b", h, c), s.candidate, s.needles()
        )
        if refused:
            with pytest.raises(Unreadable, match="too large to read as JSON"):
                scan()
        else:
            assert scan().removed == 0


def test_a_field_of_many_line_ends_is_split_and_scanned_whole() -> None:
    """300,000 line ends inside one quoted field (they once took 147 s, each re-counting the
    quotes before it; one pass carrying the quote parity reads them at once): one record."""
    field = "\n" * 300_000
    source = b"id,message,botuser\r\n" + _record(["1", field, json.dumps({"id": SUBJECT})], "\r\n")
    source += _record(["2", "kept", json.dumps({"id": "77"})], "\r\n")
    assert len(list(csv_records(io.BytesIO(source), block=1 << 16))) == 3
    assert csvrecords._last_boundary(source) == len(source)
    target = io.BytesIO()
    selection = SubjectSelection((SUBJECT,))
    found = rewrite_csv(
        io.BytesIO(source),
        target,
        lambda h, c: selection.record("b", h, c),
        selection.candidate,
        needles=selection.needles(),
        block=1 << 16,
    )
    assert found.removed == 1
    assert target.getvalue() == b"id,message,botuser\r\n" + _record(
        ["2", "kept", json.dumps({"id": "77"})], "\r\n"
    )


def _refused_original(form: str) -> bytes:
    """A report the intake refuses whole, in a form a spreadsheet or another export makes;
    the subject's record is its second."""
    rows = [["id", "message", "botuser"], ["1", "hello", '{"id": "77"}'], ["2", "mine", '{"id": "4242"}']]
    if form == "upper":
        rows[0] = [name.upper() for name in rows[0]]
    buffer = io.StringIO(newline="")
    csv.writer(
        buffer, delimiter={"semicolon": ";", "tab": "\t"}.get(form, ","), lineterminator="\r\n"
    ).writerows(rows)
    text = ("\r\n" if form == "blank-first-line" else "") + buffer.getvalue()
    if form.startswith("utf-16"):
        return (
            text.encode(form) if form != "utf-16" else "\ufeff".encode("utf-16-le") + text.encode("utf-16-le")
        )
    return text.encode()


@pytest.mark.parametrize("form", ["semicolon", "tab", "upper", "blank-first-line", "utf-16", "utf-16-be"])
def test_a_refused_original_is_read_as_the_intake_tries_and_loses_only_the_subjects_record(
    form: str, tmp_path: Path
) -> None:
    from ingest.archive.forget import scan_copy
    from ingest.archive.storage import LocalStorage

    key = "quarantine/abc/original-report.csv"
    (tmp_path / "quarantine/abc").mkdir(parents=True)
    (tmp_path / key).write_bytes(_refused_original(form))
    storage = LocalStorage(tmp_path)
    found = scan_copy(storage, key, SubjectSelection((SUBJECT,)), target=tmp_path / "rewritten")
    assert (found.removed, found.kept) == (1, True)
    rewritten = (tmp_path / "rewritten").read_bytes()
    encoding = copies.text_encoding(rewritten)
    assert encoding == copies.text_encoding((tmp_path / key).read_bytes())  # written back as it was
    assert SUBJECT not in rewritten.decode(encoding) and "hello" in rewritten.decode(encoding)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le"])
def test_a_quarantined_file_holding_the_id_unread_as_records_fails_loudly(
    encoding: str, tmp_path: Path
) -> None:
    """No header (the first line is a record) or a header naming no bot user column: the id's
    characters there fail the erasure naming the file, never "nothing of this subject"."""
    from ingest.archive.forget import scan_copy
    from ingest.archive.storage import LocalStorage

    key = "quarantine/abc/original-report.csv"
    (tmp_path / "quarantine/abc").mkdir(parents=True)
    (tmp_path / key).write_text('2,mine,"{""id"": ""4242""}"\r\n3,x,{}\r\n', encoding=encoding)
    with pytest.raises(Unreadable, match=key):
        scan_copy(LocalStorage(tmp_path), key, SubjectSelection((SUBJECT,)))
    (tmp_path / key).write_text("id,message,botuser\r\n3,I am 4242 years old,{}\r\n", encoding=encoding)
    assert (
        scan_copy(LocalStorage(tmp_path), key, SubjectSelection((SUBJECT,))).removed == 0
    )  # by value: not theirs


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("name", ["raw/bot_id=b/get.json", "quarantine/abc/original-answer.txt"])
def test_a_json_copy_with_a_bom_or_in_utf16_loses_their_rows_and_keeps_its_encoding(
    encoding: str, name: str, tmp_path: Path
) -> None:
    """``json.loads`` reads bytes with a BOM or in UTF-16/32 (the intake reads a GET answer
    so): the copy is read as JSON (never as one odd CSV record) and written back as it was."""
    text = '[{"id": 1, "botuser": {"id": "77"}}, {"id": 2, "botuser": {"id": "4242"}}]'
    source, target = tmp_path / "source", tmp_path / "target"
    source.write_bytes(text.encode(encoding))
    selection = SubjectSelection((SUBJECT,))
    found = scan_file(
        source, name, lambda h, c: selection.record("b", h, c), selection.candidate, [], target=target
    )
    assert (found.removed, found.kept) == (1, True)
    assert target.read_bytes() == '[{"id": 1, "botuser": {"id": "77"}}]'.encode(encoding)


def test_a_json_copy_that_is_not_json_is_unreadable_not_read_as_csv(tmp_path: Path) -> None:
    source = tmp_path / "get.json"
    source.write_bytes(b'[{"id": 2, "botuser": {"id": "4242"}},')  # cut off
    selection = SubjectSelection((SUBJECT,))
    with pytest.raises(Unreadable, match="as json"):
        scan_file(
            source, "raw/bot_id=b/get.json", lambda h, c: selection.record("b", h, c), selection.candidate, []
        )


@pytest.mark.parametrize(
    ("stamp", "expired"),
    [
        ("2024-1-1T00:57:41Z", True),  # the intake reads it (no zero padding): its row was archived
        ("2024-01-01 00:57:41+00", True),  # PostgreSQL's text form
        ("2024-01-01T23:30:00-05:00", True),  # 2024-01-02 in UTC: still before the first kept day
        ("2024-03-01T00:00:00Z", False),
        ("not a time", False),  # rejected by the intake: kept, never guessed
    ],
)
def test_a_prune_reads_a_raw_records_timestamp_as_the_intake_does(stamp: str, expired: bool) -> None:
    from datetime import date

    from ingest.archive.forget import ExpiredSelection

    selection = ExpiredSelection({"messages": date(2024, 2, 1)}, lambda bot, day: False)
    assert selection.record("b", ["id", "timestamp"], ["1", stamp]) is expired


@pytest.mark.parametrize(
    ("botuser", "extra"),
    [
        ('{"id":"1","id":"4242"}', "{}"),  # an id written twice: json_path_match keeps one
        ('{"id":4242}', "{}"),
        ('{"id":"1"}', '{"user_id":"4242"}'),  # a user_id column beyond the schema
        ('{"id":"1"}', json.dumps({"botuser_duplicated_0": '{"id":"4242"}'})),  # a second botuser column
    ],
)
def test_the_tables_find_a_record_wherever_the_raw_side_does(botuser: str, extra: str) -> None:
    """One rule for both stores: the table's row (extra holds columns beyond the schema) and
    the raw record (those columns as written) are both the subject's."""
    import polars as pl

    from ingest.archive.forget import subject_expr

    frame = pl.DataFrame({"botuser": [botuser, '{"id":"77"}'], "extra": [extra, "{}"]})
    expr = subject_expr(frame.columns, [SUBJECT])
    assert expr is not None
    assert frame.select(expr).to_series().to_list() == [True, False]
    header, row = ["botuser"], [botuser]
    for name, value in json.loads(extra).items():
        header.append(name)
        row.append(value)
    assert SubjectSelection((SUBJECT,)).record("b", header, row)


def test_a_bot_user_cell_holding_the_id_that_is_not_json_stops_the_erasure_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(
        b'id,message,botuser\r\n1,hi,"{""id"": ""4242"", oops"\r\n2,x,"{""id"": ""77"", oops"\r\n'
    )
    selection = SubjectSelection((SUBJECT,))
    with pytest.raises(Unreadable, match="raw/bot_id=b/odd.csv.*botuser value holding this id is not JSON"):
        scan_file(
            path,
            "raw/bot_id=b/odd.csv",
            lambda h, c: selection.record("b", h, c),
            selection.candidate,
            [b"4242"],
        )
