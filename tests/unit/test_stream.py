"""The streaming archiver (ingest.archive.stream) gives exactly what parse_csv + save_report give.

Same rows, same files (paths, row counts, content, order), same quarantine, same raw
bytes, same manifest counts; a file that must be refused as a whole is refused, and
leaves nothing behind. Small blocks, chunks and budgets make records span reader
blocks, ids and dates span batches, dates flush in several row groups and out of order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import ingest.archive.staging
import ingest.parse.csvstream
from ingest.archive.writer import SaveResult, save_report
from ingest.errors import ReportRejected
from ingest.parse.csvstream import CsvBatches
from ingest.parse.schema import file_schema
from ingest.simulator import MESSAGE_DATA_COLUMNS, generate_messages, rows_to_csv
from tests.support.saving import archive_csv_file, parse_csv

BOT = "3f2b8c1e-0000-4000-8000-0000000000s1"
PROVENANCE = {"import": {"path": "/somewhere/report.csv"}}
WINDOW = (date(2024, 1, 2), date(2024, 1, 3))
# Cell text: anything but NUL (not representable in CSV text) and lone surrogates (not UTF-8).
CELL_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@contextmanager
def small_pieces(
    block: int = 4096, chunk: int = 8192, budget: int = 1, open_writers: int = 2, segment: int = 2048
) -> Iterator[int]:
    """Tiny reader blocks and batches, a budget that flushes every batch, few open files;
    a file bigger than ``segment`` is parsed in segments on two threads."""
    with (
        mock.patch.object(ingest.parse.csvstream, "BLOCK_BYTES", block),
        mock.patch.object(ingest.parse.csvstream, "SEGMENT_BYTES", segment),
        mock.patch.object(ingest.parse.csvstream, "CHUNK_BYTES", chunk),
        mock.patch.object(ingest.archive.staging, "MAX_OPEN_WRITERS", open_writers),
    ):
        yield budget


def in_memory(root: Path, data: bytes, window: tuple[date, date] | None = None) -> SaveResult:
    sha = hashlib.sha256(data).hexdigest()
    parsed = parse_csv(data, bot_id=BOT, source_sha256=sha, window=window)
    return save_report(
        root, parsed, bot_id=BOT, source_sha256=sha, raw=data, raw_name="report.csv", provenance=PROVENANCE
    )


def streamed(
    root: Path, source: Any, window: tuple[date, date] | None = None, budget: int = 32 << 20
) -> SaveResult:
    return archive_csv_file(
        root,
        source,
        bot_id=BOT,
        raw_name="report.csv",
        provenance=PROVENANCE,
        window=window,
        memory_budget=budget,
    )


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def assert_same_archive(a: SaveResult, root_a: Path, b: SaveResult, root_b: Path) -> None:
    """Two archives of the same report hold the same rows, files and counts."""
    counts = ("rows_read", "rows_written", "rows_duplicate", "rows_rejected")
    assert [getattr(b, c) for c in counts] == [getattr(a, c) for c in counts]
    assert b.rows_read == b.rows_written + b.rows_duplicate + b.rows_rejected
    assert [(f.path, f.rows) for f in b.files] == [(f.path, f.rows) for f in a.files]
    assert files_under(root_b) == files_under(root_a)  # no temporary file left either
    for written in b.files:
        left, right = pl.read_parquet(root_a / written.path), pl.read_parquet(root_b / written.path)
        assert right.schema == file_schema()
        assert_frame_equal(right, left)  # same rows, same order (timestamp, then file order)
        assert written.sha256 == hashlib.sha256((root_b / written.path).read_bytes()).hexdigest()
    for name in files_under(root_a):
        if name.startswith("quarantine/") and name.endswith(".parquet"):
            assert_frame_equal(pl.read_parquet(root_b / name), pl.read_parquet(root_a / name))
        elif name.startswith(("raw/", "quarantine/")):
            assert (root_b / name).read_bytes() == (root_a / name).read_bytes()
    manifests = []
    for root in (root_a, root_b):
        document = json.loads((root / a.manifest).read_text(encoding="utf-8"))
        document.pop("written_at")
        for entry in document["files"]:
            entry.pop("sha256")  # two Parquet writers: same rows, not the same bytes
        manifests.append(document)
    assert manifests[1] == manifests[0]


def compare(data: bytes, window: tuple[date, date] | None = None, **pieces: int) -> SaveResult:
    """Archive ``data`` both ways (the stream with small pieces); assert the same result."""
    with tempfile.TemporaryDirectory() as tmp:
        root_a, root_b = Path(tmp, "a"), Path(tmp, "b")
        try:
            a = in_memory(root_a, data, window)
        except ReportRejected:
            with small_pieces(**pieces), pytest.raises(ReportRejected):
                streamed(root_b, data, window)
            assert files_under(root_b) == []
            raise
        with small_pieces(**pieces) as budget:
            b = streamed(root_b, data, window, budget=budget)
        assert_same_archive(a, root_a, b, root_b)
        return b


def to_csv(
    header: list[str], records: list[list[str]], *, bom: bool = False, terminator: str = "\r\n"
) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=terminator)
    writer.writerow(header)
    writer.writerows(records)
    return (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8")


# ------------------------------------------------------------------ property tests

MOMENTS = [datetime(2024, 1, 1, 23, 59, 59) + timedelta(seconds=s) for s in (0, 1, 1, 3600, 86400, 90000)]
TIMESTAMP = st.one_of(
    st.sampled_from(MOMENTS).map(lambda m: m.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),  # ties too
    st.sampled_from(MOMENTS).map(lambda m: m.strftime("%Y-%m-%d %H:%M:%S")),
    st.sampled_from(MOMENTS).map(lambda m: m.strftime("%Y-%m-%dT%H:%M:%S+02:00")),
    st.sampled_from(MOMENTS).map(lambda m: m.strftime("%Y-%m-%d %H:%M:%S.%f-05")),  # PostgreSQL's form
    st.sampled_from(
        [
            "",
            "yesterday",
            "2024-13-01T00:00:00.000000Z",
            "2024-01-01T25:00:00Z",
            "2024-01-02T00:00:60.000000Z",
            " 2024-01-02T00:00:00.000000Z",
        ]
    ),
)
CELLS: dict[str, st.SearchStrategy[str]] = {
    "id": st.one_of(st.integers(1, 12).map(str), st.sampled_from(["", "x", " 7", "1.5", "9" * 30])),
    "timestamp": TIMESTAMP,
    "message": CELL_TEXT,
    "response": CELL_TEXT,
    "wait": st.one_of(st.integers(-5, 10**12).map(str), st.sampled_from(["", "three", " 4 "])),
    "is_test": st.sampled_from(["true", "false", "True", " yes", "0", "", "maybe"]),
    "bot_module": st.sampled_from(['{"id":1,"name":"Returns, refunds"}', "", "not json", "🤖"]),
}


@st.composite
def reports(draw: st.DrawFn) -> bytes:
    """A report with random cells, column order, extra column, BOM and line ends."""
    columns = draw(st.permutations(list(CELLS) + draw(st.sampled_from([[], ["language"]]))))
    rows = draw(
        st.lists(
            st.fixed_dictionaries({c: CELLS.get(c, CELL_TEXT) for c in columns}), min_size=0, max_size=30
        )
    )
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    if terminator == "\n":
        # csv.writer leaves a lone CR unquoted then; the readers disagree on it (see
        # ingest.parse.csvstream), and the export writes CRLF.
        rows = [{c: v.replace("\r", "") for c, v in row.items()} for row in rows]
    return to_csv(
        columns, [[row[c] for c in columns] for row in rows], bom=draw(st.booleans()), terminator=terminator
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports(), st.sampled_from([None, WINDOW]), st.sampled_from([(256, 512), (4096, 1 << 20)]))
def test_stream_and_in_memory_archive_the_same(
    data: bytes, window: tuple[date, date] | None, sizes: tuple[int, int]
) -> None:
    block, chunk = sizes
    try:
        result = compare(data, window, block=block, chunk=chunk)
    except ReportRejected:
        return  # both refused it (compare checked the stream left nothing behind)
    rows = len(list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))) - 1
    assert result.rows_read == rows


@settings(max_examples=40, deadline=None)
@given(st.lists(CELL_TEXT, min_size=1, max_size=6))
def test_any_text_round_trips_through_the_stream(texts: list[str]) -> None:
    template = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 1), min_per_day=1, max_per_day=1)[0]
    rows = [dict(template, id=template["id"] + i, message=text) for i, text in enumerate(texts)]
    with tempfile.TemporaryDirectory() as tmp:
        with small_pieces(block=512, chunk=1024):
            result = streamed(Path(tmp), rows_to_csv(rows))
        back = pl.scan_parquet(f"{tmp}/messages/bot_id=*/*/*.parquet").collect().sort("id")
    assert result.rows_rejected == 0
    assert back["message"].to_list() == [text or None for text in texts]


# --------------------------------------------------------------------- examples


def test_simulator_report_with_records_spanning_blocks() -> None:
    rows = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 6))
    data = rows_to_csv(rows + rows[:7])  # duplicates of ids already seen, days earlier
    assert max(len(line) for line in data.splitlines()) > 600  # records span 4 KiB blocks

    result = compare(data, block=4096, chunk=8192)

    assert result.rows_duplicate == 7
    records = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert data.count(b"\n") > len(records)  # quoted newlines
    assert result.rows_read == len(records) - 1


def test_rows_out_of_time_order_end_sorted_in_their_files() -> None:
    rows = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 4))
    shuffled = rows[::-1][: len(rows) // 2] + rows[: len(rows) // 2]  # days interleaved
    result = compare(rows_to_csv(shuffled), block=4096, chunk=4096, open_writers=1)

    assert len(result.files) == 4


@pytest.mark.parametrize("budget", [1, 64 << 10, 32 << 20], ids=["round-per-batch", "spilled", "in-memory"])
def test_a_shuffled_offset_bom_crlf_export_archives_exactly_the_generated_rows(
    budget: int, workdir: Path
) -> None:
    """Rows in no order, +02:00 offsets (a row just after local midnight belongs to the UTC
    day before), a BOM, CRLF, quoted newlines and tied timestamps: the archive holds exactly
    the generated rows, each under its UTC date, each file sorted by timestamp with ties in
    file order; checked against polars reading the CSV on its own, and the in-memory path."""
    import random

    import duckdb

    rows = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 6), min_per_day=40, max_per_day=60)
    for tie in range(0, len(rows) - 1, 17):  # ties: equal timestamps, stable order expected
        rows[tie + 1]["timestamp"] = rows[tie]["timestamp"]
    for row in rows:
        moment = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")) + timedelta(hours=2)
        row["timestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+02:00"
    random.Random(7).shuffle(rows)
    data = rows_to_csv(rows, bom=True)
    assert (
        data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data and sum("\n" in str(r["message"]) for r in rows)
    )

    result = compare(data, block=4096, chunk=8192, budget=budget)  # and the in-memory path agrees
    expected = (
        pl.read_csv(data, infer_schema=False)
        .with_row_index("order")
        .select(
            pl.col("id").cast(pl.Int64),
            pl.col("timestamp").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC"),
            "message",
            "order",
        )
        .with_columns(pl.col("timestamp").dt.date().alias("date"))
    )
    assert expected.height == len(rows) and expected["id"].n_unique() == len(rows)
    assert len(result.files) == expected["date"].n_unique()

    with tempfile.TemporaryDirectory() as tmp:
        streamed(Path(tmp), data, budget=budget)
        glob = str(Path(tmp) / "messages" / "bot_id=*" / "*" / "*.parquet")
        archive = duckdb.sql(
            f"SELECT id, timestamp, message, date, filename, file_row_number FROM "
            f"read_parquet('{glob}', hive_partitioning = true, filename = true, "
            "file_row_number = true) ORDER BY filename, file_row_number"
        ).pl()
    got = archive.select("id", pl.col("timestamp").dt.convert_time_zone("UTC"), "message", "date")
    assert_frame_equal(got.sort("id"), expected.drop("order").sort("id"), check_dtypes=False)
    # Within each file: by timestamp, ties in file order; one file per UTC date.
    ordered = archive.join(expected.select("id", "order"), on="id", maintain_order="left")
    for _, part in ordered.group_by("filename", maintain_order=True):
        assert part["date"].n_unique() == 1
        assert part.select("timestamp", "order").rows() == sorted(part.select("timestamp", "order").rows())


def test_window_rejects_rows_outside_it() -> None:
    rows = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 5))
    result = compare(rows_to_csv(rows), window=WINDOW)

    assert result.rows_rejected == sum(
        1 for r in rows if not "2024-01-02" <= r["timestamp"][:10] <= "2024-01-03"
    )


def test_header_only_and_blank_lines() -> None:
    header = ",".join(MESSAGE_DATA_COLUMNS).encode()
    assert compare(header + b"\r\n").rows_read == 0
    assert compare(header).rows_read == 0  # not even a line end
    line = b"1,2024-01-01T00:00:00.000000Z" + b"," * 20
    assert (
        compare(header + b"\r\n" + line + b"\r\n\r\n" + line.replace(b"1,", b"2,", 1) + b"\r\n\r\n").rows_read
        == 2
    )


@pytest.mark.parametrize(
    "data",
    [
        b"id,timestamp,message\r\n1,2024-01-01T00:00:00Z,hi\r\n2,2024-01-01T00:00:01Z\r\n",
        b"id,timestamp,message\r\n1,2024-01-01T00:00:00Z,hi\r\n2,2024-01-01T00:00:01Z,a,b\r\n",
        b'id,timestamp,message\r\n1,2024-01-01T00:00:00Z,"cut in the middle\r\n',
        b'id,timestamp,message\r\n1,2024-01-01T00:00:00Z,"',
        b'id,timestamp,message\r\n1,2024-01-01T00:00:00Z,"a ""quoted"" word\r\nand more',
        b'id,timestamp,message\r\n1,2024-01-01T00:00:00Z,hi\r\n2,"2024-01-01\r\n3,x,y\r\n',
        b"id,timestamp,message\r\n"
        + b"1,2024-01-01T00:00:00Z,fine\r\n" * 500
        + b"2,2024-01-01T00:00:00Z,caf\xe9\r\n",
        b"timestamp,message\r\n2024-01-01T00:00:00Z,hi\r\n",
        b"",
        b"\xef\xbb\xbf",
        b"\r\n\r\n",
        b"\r\nid,timestamp\r\n1,2024-01-01T00:00:00Z\r\n",
    ],
    ids=[
        "short-record",
        "long-record",
        "open-quote",
        "open-quote-at-end",
        "open-quote-escaped",
        "open-quote-mid-record",
        "not-utf8-far-in",
        "missing-id",
        "empty",
        "bom-only",
        "blank",
        "blank-first-line",
    ],
)
def test_files_refused_whole_by_both_paths(data: bytes) -> None:
    with pytest.raises(ReportRejected):
        compare(data, block=256, chunk=512)


def test_closed_quotes_at_the_end_are_fine() -> None:
    header = b"id,timestamp,message\r\n1,2024-01-01T00:00:00.000000Z,"
    for ending in (b'""""', b'"a,b"', b'"x"""', b'""'):
        assert compare(header + ending).rows_read == 1
        assert compare(header + ending + b"\r\n").rows_read == 1


def test_record_longer_than_the_block_is_read_again_with_a_bigger_one() -> None:
    rows = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 1), min_per_day=3, max_per_day=3)
    rows[1]["message"] = "long, " * 2000
    compare(rows_to_csv(rows), block=1024, chunk=1024)


ISO_Z = st.builds(
    lambda y, mo, d, h, mi, s, f: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{f:06d}Z",
    st.integers(1, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.integers(0, 999_999),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(ISO_Z, ISO_Z.map(lambda t: t.replace("T", " ")), CELL_TEXT, st.none()), max_size=20)
)
def test_fast_timestamp_path_parses_like_the_full_rules(texts: list[str | None]) -> None:
    from ingest.parse.validate import _timestamp_any, _timestamps

    series = pl.Series("timestamp", texts, dtype=pl.String)
    full = series.to_frame().select(_timestamp_any(pl.col("timestamp"))).to_series()
    assert _timestamps(series).to_list() == full.to_list()


CELL_FORMS = {
    "id": ["7", "007", "-0", "0x1F", "0X1f", " 7", "7 ", "+7", "7.0", "", "9223372036854775808"],
    "wait": ["3", "0x10", "3e2", "-3", ""],
    "is_test": ["true", "false", "TRUE", "False", "1", "0", "t", "yes", "No", " true", ""],
    "timestamp": [
        "2024-01-02T03:04:05.123456Z",
        "2024-01-02T03:04:05Z",
        "2024-01-02 03:04:05",
        "2024-01-02T03:04:05.123456+00:00",
        "2024-13-02T03:04:05.123456Z",
        "2024-01-04T00:00:00.000000Z",
        "2024-01-01T23:59:59.999999Z",
        "",
    ],
}


@pytest.mark.parametrize("column,value", [(c, v) for c, vs in CELL_FORMS.items() for v in vs])
@pytest.mark.parametrize("window", [None, WINDOW])
def test_arrow_judge_agrees_with_the_rules_or_declines(
    column: str, value: str, window: tuple[date, date] | None
) -> None:
    # The Arrow fast path either gives judge()'s very verdict, or none (judge decides).
    import pyarrow as pa

    from ingest.parse.csvstream import CsvBatches
    from ingest.parse.header import read_header
    from ingest.parse.validate import judge, judge_arrow, needed_columns, plan_columns

    rows = generate_messages(BOT, date(2024, 1, 2), date(2024, 1, 3))[:50]
    text = rows_to_csv(rows)
    header = read_header(text)
    with CsvBatches(text, header) as batches:
        table = pa.concat_tables(list(batches))
    cells = table.column(column).to_pylist()
    cells[len(cells) // 2] = value or None  # the reader reads an empty cell as null
    table = table.set_column(table.column_names.index(column), column, pa.array(cells, pa.string()))
    plan = plan_columns(table.column_names)
    fast = judge_arrow(table, plan, first_row=1, window=window)
    frame = pl.from_arrow(table.select(needed_columns(plan)))
    assert isinstance(frame, pl.DataFrame)
    rules = judge(frame, plan, first_row=1, window=window)
    if fast is None:
        assert (
            value
            in {
                "0x1F",
                "0X1f",
                " 7",
                "7 ",
                "+7",
                "7.0",
                "",
                "9223372036854775808",
                "0x10",
                "3e2",
                "t",
                "yes",
                "No",
                " true",
                "2024-01-02T03:04:05Z",
                "2024-01-02 03:04:05",
                "2024-01-02T03:04:05.123456+00:00",
                "2024-13-02T03:04:05.123456Z",
            }
            or window is not None
        )
        return
    assert rules.all_good and fast.all_good
    for name in fast.arrow:
        assert fast.typed_column(name).to_list() == rules.typed_column(name).to_list(), name
    assert fast.date.to_list() == rules.date.to_list()
    assert fast.rows.to_list() == rules.rows.to_list()


@pytest.mark.parametrize(
    "form",
    [
        "%Y-%m-%dT%H:%M:%S.%f+00:00",
        "%Y-%m-%dT%H:%M:%S.%f+02:00",
        "%Y-%m-%dT%H:%M:%S.%f-05:30",
        "%Y-%m-%dT%H:%M:%SZ",
        "%Y-%m-%dT%H:%M:%S+02:00",
        "%Y-%m-%dT%H:%M:%S.%f+0200",
    ],
)
def test_arrow_judge_reads_every_plain_timestamp_form_like_the_rules(form: str) -> None:
    # A whole column in one form with an offset (what some exports write): the Arrow
    # fast path gives the same instants and UTC dates as judge(), or declines.
    import pyarrow as pa

    from ingest.parse.csvstream import CsvBatches
    from ingest.parse.header import read_header
    from ingest.parse.validate import judge, judge_arrow, needed_columns, plan_columns

    rows = generate_messages(BOT, date(2024, 1, 2), date(2024, 1, 3))[:80]
    for row in rows:
        moment = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
        offset = {
            "+02:00": timedelta(hours=2),
            "-05:30": -timedelta(hours=5, minutes=30),
            "+0200": timedelta(hours=2),
        }.get(next((o for o in ("+02:00", "-05:30", "+0200") if form.endswith(o)), ""), timedelta(0))
        row["timestamp"] = (moment + offset).strftime(form)
    text = rows_to_csv(rows)
    with CsvBatches(text, read_header(text)) as batches:
        table = pa.concat_tables(list(batches))
    plan = plan_columns(table.column_names)
    fast = judge_arrow(table, plan, first_row=1)
    frame = pl.from_arrow(table.select(needed_columns(plan)))
    assert isinstance(frame, pl.DataFrame)
    rules = judge(frame, plan, first_row=1)
    assert rules.all_good
    if form.endswith("+0200"):
        assert fast is None  # not a plain form: the rules decide
        return
    assert fast is not None and fast.all_good
    assert fast.typed_column("timestamp").to_list() == rules.typed_column("timestamp").to_list()
    assert fast.date.to_list() == rules.date.to_list()
    expected = [datetime.fromisoformat(r["timestamp"]).astimezone(UTC).date() for r in rows]
    assert fast.date.to_list() == expected


@pytest.mark.parametrize("cell", ['"q\r\nz"', '"\r\n"', '"x\r\n\r\ny"', '"a\rb\r\n"'])
@pytest.mark.parametrize("candidates", [1, 16], ids=["held-back-CR", "safe-block-size"])
def test_a_quoted_crlf_on_any_block_edge_is_kept(
    cell: str, candidates: int, monkeypatch: pytest.MonkeyPatch, workdir: Path
) -> None:
    """pyarrow drops the LF of a quoted CRLF that its block boundary splits; every split
    position, from bytes and from a file, must read back exactly as Python's csv reads it,
    whether a safe block size is found or the trailing CR is held back."""
    monkeypatch.setattr(ingest.parse.csvstream, "BLOCK_CANDIDATES", candidates)
    for pad in range(32):  # blocks are longer than any record: no "record too long"
        data = b"a,b\r\n" + b"y" * 40 + b",1\r\n" + b"x" * pad + b"," + cell.encode() + b'\r\n1,"2\r\n"\r\n'
        truth = [row[1] for row in csv.reader(io.StringIO(data.decode(), newline=""))][1:]
        path = workdir / "report.csv"
        path.write_bytes(data)
        for source in (data, path):
            for block in (52, 64, 76):
                with CsvBatches(source, ["a", "b"], block_bytes=block) as batches:
                    got = [cell for table in batches for cell in table.column("b").to_pylist()]
                assert got == truth, (pad, block, type(source).__name__)


def test_the_streaming_path_never_imports_pandas(tmp_path: Path) -> None:
    """pyarrow's ``to_numpy()`` and ``pa.array(ndarray)`` import pandas the first time
    (0.3 to 0.6 s of CPU in ``ingest import``); shuffled rows (sorted runs spilled, then
    merged with the date's in-order part) get through without it."""
    import random
    import subprocess
    import sys

    rows = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 6), min_per_day=40, max_per_day=60)
    shuffled = rows[:60] + random.Random(3).sample(rows[60:], len(rows) - 60)  # in order, then not
    source = tmp_path / "shuffled.csv"
    source.write_bytes(rows_to_csv(shuffled))
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from unittest import mock\n"
        "import ingest.parse.csvstream\n"
        "from tests.support.saving import archive_csv_file\n"
        "with mock.patch.object(ingest.parse.csvstream, 'BLOCK_BYTES', 4096), "
        "mock.patch.object(ingest.parse.csvstream, 'CHUNK_BYTES', 8192):\n"
        f"    result = archive_csv_file(Path(sys.argv[1]), Path(sys.argv[2]), bot_id={BOT!r},\n"
        "                              raw_name='r.csv', provenance={}, memory_budget=64 << 10)\n"
        "assert result.rows_written == int(sys.argv[3]), result\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path / "archive"), str(source), str(len(rows))],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],  # the repository: tests.support imports
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_int64_values_cross_to_numpy_and_back_through_the_buffers() -> None:
    """Sliced chunks, several chunks, timestamps; nulls refused; take indices round-trip."""
    import numpy as np
    import pyarrow as pa

    from ingest.parse.arrowrows import indices_array, int64_numpy

    stamps = pa.array([5, 6, 7, 8], pa.timestamp("us", tz="UTC"))
    chunked = pa.chunked_array([stamps.slice(1, 2), pa.array([], stamps.type), stamps.slice(3)])
    assert int64_numpy(chunked.cast(pa.int64())).tolist() == [6, 7, 8]
    assert int64_numpy(stamps.slice(2)).tolist() == [7, 8]  # cast on the way
    assert int64_numpy(pa.chunked_array([], pa.int64())).tolist() == []
    with pytest.raises(ValueError):
        int64_numpy(pa.array([1, None], pa.int64()))
    order = np.argsort(np.array([3, 1, 2]), kind="stable")
    assert pa.table({"x": ["c", "a", "b"]}).take(indices_array(order)).column("x").to_pylist() == [
        "a",
        "b",
        "c",
    ]
