"""A big file parsed on both cores (ingest.parse.segments) reads exactly as the one streaming reader.

Every file here is bigger than the (tiny) segment, so CsvBatches takes the segmented
path; the truth is the same file read with one segment covering it (the single
streaming reader, unchanged) and, for good files, Python's csv module. Cuts that the
quote count guesses wrongly (a stray quote in an unquoted field), bad bytes, ragged
and cut-off records in a later segment, and records longer than a segment must give
the same rows or the same one-line refusal.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import ReportRejected
from ingest.parse.csvstream import CsvBatches
from ingest.parse.csvstream import _convert_options as convert_options
from ingest.parse.header import read_header
from ingest.parse.segments import Unproven, segment_tables
from ingest.simulator import generate_messages, rows_to_csv

BOT = "3f2b8c1e-0000-4000-8000-0000000000s2"
WHOLE = 1 << 40  # one segment bigger than any file: the single streaming reader
CELL = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


def read(path: Path, segment: int) -> tuple[list[list[str | None]], str | None]:
    """The rows (as Python lists) and the refusal, if any, reading with ``segment``."""
    names = read_header(path.read_bytes().split(b"\n")[0] + b"\n")
    rows: list[list[str | None]] = []
    try:
        with CsvBatches(path, names, segment_bytes=segment, block_bytes=1024) as batches:
            for table in batches:
                rows.extend(zip(*(c.to_pylist() for c in table.columns), strict=True))  # type: ignore[arg-type]
    except ReportRejected as err:
        return [list(r) for r in rows], str(err)
    return [list(r) for r in rows], None


def same_as_one_reader(path: Path, data: bytes, segments: tuple[int, ...] = (64, 97, 256, 1000)) -> None:
    path.write_bytes(data)
    rows, refused = read(path, WHOLE)
    for segment in segments:
        got, why = read(path, segment)
        assert why == refused, segment  # a refused file stages nothing: only the message counts
        if refused is None:
            assert got == rows, segment


def proven(path: Path, segment: int) -> int:
    """Rows the segmented reader hands on without falling back (raises Unproven otherwise)."""
    names = read_header(path.read_bytes().split(b"\n")[0] + b"\n")
    parse = pa.csv.ParseOptions(newlines_in_values=True)
    return sum(
        t.num_rows
        for t in segment_tables(
            path, names, segment_bytes=segment, convert=convert_options(names), parse=parse
        )
    )


def test_a_simulator_export_is_cut_and_proven_at_every_segment(workdir: Path) -> None:
    rows = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 3), min_per_day=30, max_per_day=30)
    data = rows_to_csv(rows)
    path = workdir / "report.csv"
    for form in (data, b"\xef\xbb\xbf" + data, data.replace(b"\r\n", b"\n")):
        path.write_bytes(form)
        truth = [r[0] for r in csv.reader(io.StringIO(form.decode("utf-8-sig"), newline=""))][1:]
        for segment in (1500, 4096, 9000):
            assert proven(path, segment) == len(rows)  # no fallback on the export's own form
            got, refused = read(path, segment)
            assert refused is None and [r[0] for r in got] == truth


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cells=st.lists(st.tuples(CELL, CELL), min_size=3, max_size=30),
    newline=st.sampled_from([b"\r\n", b"\n"]),
    segment=st.integers(16, 300),
)
def test_any_text_reads_the_same_cut_in_segments(
    cells: list[tuple[str, str]], newline: bytes, segment: int, workdir: Path
) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=newline.decode()).writerows([("a", "b"), *cells])
    data = buffer.getvalue().encode()
    path = workdir / "report.csv"
    same_as_one_reader(path, data, segments=(segment,))


@pytest.mark.parametrize(
    "body",
    [
        # A quote inside an unquoted field: the quote count guesses every cut wrongly.
        b'1,5" screen\r\n' + b"2,plain text here\r\n" * 40 + b'3,"a\r\nb"\r\n' * 20,
        # Quoted line ends right at a cut, escaped quotes, empty quoted cells.
        b'1,"x\r\n\r\ny"\r\n' * 30 + b'2,""""\r\n3,""\r\n' * 20,
        # Blank lines between records.
        b"1,a\r\n\r\n\r\n" * 60,
    ],
    ids=["stray-quote", "quoted-newlines", "blank-lines"],
)
def test_odd_but_readable_files_read_the_same(body: bytes, workdir: Path) -> None:
    same_as_one_reader(workdir / "report.csv", b"id,message\r\n" + body)


@pytest.mark.parametrize(
    "tail",
    [
        b"2,too,many\r\n" + b"3,x\r\n" * 10,
        b"2\r\n" + b"3,x\r\n" * 10,
        b"2,caf\xe9\r\n" + b"3,x\r\n" * 10,
        b'2,"cut off in a quote\r\n' + b"3,x\r\n" * 10,
        b'2,"cut off at the end',
    ],
    ids=["long-record", "short-record", "not-utf8", "open-quote", "open-quote-at-end"],
)
def test_a_bad_record_far_in_is_refused_with_the_same_message(tail: bytes, workdir: Path) -> None:
    path = workdir / "report.csv"
    same_as_one_reader(path, b"id,message\r\n" + b"1,fine and dandy\r\n" * 200 + tail)
    assert read(path, 64)[1] is not None


def test_a_record_longer_than_a_segment_is_read_by_the_one_reader(workdir: Path) -> None:
    path = workdir / "report.csv"
    long = b'2,"' + b"long, \r\n" * 100 + b'"\r\n'
    data = b"id,message\r\n" + b"1,short\r\n" * 50 + long + b"3,short\r\n" * 50
    same_as_one_reader(path, data, segments=(64, 200))
    with pytest.raises(Unproven):
        proven(path, 200)
    rows, refused = read(path, 200)
    assert refused is None and len(rows) == 101
