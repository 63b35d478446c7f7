"""The streaming archiver's files: what it refuses, what it reads from, what it leaves.

Sources (path, bytes, gzip stream), re-delivery and overlap, leftovers of a killed run,
staging then discarding, commit order, the stamped hash, read-back by DuckDB and polars,
an unwritable root. Helpers come from test_stream (the comparison with the in-memory path).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from datetime import date
from pathlib import Path
from unittest import mock

import polars as pl
import pytest

import ingest.parse.csvstream
from ingest.archive.stream import stage_csv
from ingest.errors import OutputError, ReportRejected
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.saving import parse_csv
from tests.unit.test_stream import (
    BOT,
    assert_same_archive,
    files_under,
    in_memory,
    small_pieces,
    streamed,
    to_csv,
)


def test_record_longer_than_the_limit_rejects_the_file(tmp_path: Path) -> None:
    data = b'id,timestamp,message\r\n1,2024-01-01T00:00:00Z,"' + b"x\r\n" * 5000 + b'"\r\n'
    with (
        mock.patch.object(ingest.parse.csvstream, "BLOCK_BYTES", 1024),
        mock.patch("ingest.archive.stream.MAX_RECORD_BYTES", 4096),
        pytest.raises(ReportRejected, match="longer than"),
    ):
        streamed(tmp_path, data)
    assert files_under(tmp_path) == []


def test_sources_path_bytes_and_stream_give_the_same_archive(tmp_path: Path) -> None:
    data = rows_to_csv(generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 3)))
    path = tmp_path / "report.csv"
    path.write_bytes(data)
    results = {"path": streamed(tmp_path / "path", path), "bytes": streamed(tmp_path / "bytes", data)}
    with gzip.open(io.BytesIO(gzip.compress(data))) as stream:  # a .csv.gz, never inflated in memory
        results["stream"] = streamed(tmp_path / "stream", stream)
    assert_same_archive(results["path"], tmp_path / "path", results["bytes"], tmp_path / "bytes")
    assert_same_archive(results["path"], tmp_path / "path", results["stream"], tmp_path / "stream")
    sha = hashlib.sha256(data).hexdigest()
    assert results["path"].manifest == f"manifests/{sha}.json"


def test_same_report_twice_adds_nothing(tmp_path: Path) -> None:
    data = rows_to_csv(generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 3)))
    first = streamed(tmp_path, data)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}

    second = streamed(tmp_path, data)

    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before
    assert (second.rows_written, second.files, second.rows_duplicate) == (0, [], first.rows_written)


def test_overlapping_report_adds_only_new_ids_like_save_report(tmp_path: Path) -> None:
    first = rows_to_csv(generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 3)))
    second = rows_to_csv(generate_messages(BOT, date(2024, 1, 2), date(2024, 1, 5)))
    in_memory(tmp_path / "a", first)
    streamed(tmp_path / "b", first)
    a = in_memory(tmp_path / "a", second)
    with small_pieces() as budget:
        b = streamed(tmp_path / "b", second, budget=budget)
    assert_same_archive(a, tmp_path / "a", b, tmp_path / "b")
    assert [f.path.split("/")[2] for f in b.files] == ["date=2024-01-04", "date=2024-01-05"]


def test_leftover_temporary_file_does_not_hide_rows(tmp_path: Path) -> None:
    data = rows_to_csv(generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 1)))
    streamed(tmp_path / "elsewhere", data)
    part = next((tmp_path / "elsewhere" / "messages").rglob("*.parquet"))
    folder = tmp_path / "archive" / part.parent.relative_to(tmp_path / "elsewhere")
    folder.mkdir(parents=True)
    (folder / f".tmp-4242-{part.name}").write_bytes(part.read_bytes())  # a killed run's

    result = streamed(tmp_path / "archive", data)

    assert result.rows_written == result.rows_read


def test_staged_report_can_be_looked_at_then_discarded(tmp_path: Path) -> None:
    data = rows_to_csv(generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 2)))
    staged = stage_csv(tmp_path, data, bot_id=BOT)
    assert staged.sha256 == hashlib.sha256(data).hexdigest()
    assert staged.rows_valid == staged.rows_read > 0

    staged.discard()

    assert files_under(tmp_path) == []


def test_manifest_is_written_last(tmp_path: Path) -> None:
    data = rows_to_csv(generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 3)))
    result = streamed(tmp_path, data)
    manifest = (tmp_path / result.manifest).stat().st_mtime_ns
    assert all((tmp_path / name).stat().st_mtime_ns <= manifest for name in files_under(tmp_path))


def test_stamped_file_is_the_file_a_writer_given_the_hash_makes(tmp_path: Path) -> None:
    import pyarrow as pa

    from ingest.parse.arrowrows import FILE_SCHEMA, parquet_writer, stamp

    data = rows_to_csv(generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 1)))
    sha, stand_in = hashlib.sha256(data).hexdigest(), "0123456789abcdef" * 4
    rows = parse_csv(data, bot_id=BOT, source_sha256="").rows
    for value, name in ((stand_in, "stamped.parquet"), (sha, "direct.parquet")):
        table = rows.with_columns(pl.lit(value).alias("source_sha256")).select(FILE_SCHEMA.names)
        with parquet_writer(tmp_path / name, FILE_SCHEMA) as writer:  # two row groups
            arrow = table.to_arrow().cast(FILE_SCHEMA)
            writer.write_table(arrow.slice(0, 5))
            writer.write_table(arrow.slice(5))
    stamp(tmp_path / "stamped.parquet", stand_in, sha)
    assert (tmp_path / "stamped.parquet").read_bytes() == (tmp_path / "direct.parquet").read_bytes()
    assert pa.types.is_string(FILE_SCHEMA.field("source_sha256").type)


def test_streamed_archive_reads_back_with_duckdb_and_polars(tmp_path: Path) -> None:
    import duckdb

    rows = generate_messages(BOT, date(2024, 2, 27), date(2024, 3, 2))  # month end, leap day
    streamed(tmp_path, rows_to_csv(rows))
    glob = (tmp_path / "messages" / "bot_id=*" / "*" / "*.parquet").as_posix()
    with_polars = pl.scan_parquet(glob, hive_partitioning=True).collect().sort("id")
    with duckdb.connect() as conn:
        with_duckdb = conn.execute(
            "SELECT id, bot_id, CAST(date AS VARCHAR), epoch_us(timestamp), message "
            "FROM read_parquet(?, hive_partitioning = true) ORDER BY id",
            [glob],
        ).fetchall()
    assert (
        with_duckdb
        == with_polars.select(
            "id", "bot_id", pl.col("date").cast(pl.String), pl.col("timestamp").dt.epoch("us"), "message"
        ).rows()
    )
    assert with_polars.height == len(rows)


def test_bare_carriage_return_reads_as_pythons_csv_does(tmp_path: Path) -> None:
    # csv.writer with lineterminator="\n" leaves a lone CR unquoted: Python's csv and
    # pyarrow end the line there, polars does not. The in-memory reader refuses to guess;
    # the stream reads it as Python's csv does (the blank line is no row).
    header = ["message", "id", "timestamp"]
    data = to_csv(
        header,
        [["a", "1", "2024-01-01T00:00:00.000000Z"], ["\r", "2", "2024-01-01T00:00:01.000000Z"]],
        terminator="\n",
    )
    assert b"\n\r,2," in data
    with pytest.raises(ReportRejected, match="carriage return"):
        in_memory(tmp_path / "a", data)
    result = streamed(tmp_path / "b", data)
    records = [r for r in csv.reader(io.StringIO(data.decode(), newline="")) if r]
    assert result.rows_read == len(records) - 1 == 2


def test_unwritable_root_is_an_output_error(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    root.write_bytes(b"a regular file where the archive folder should be")
    data = rows_to_csv(generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 1)))

    with pytest.raises(OutputError) as caught:
        streamed(root, data)

    assert "\n" not in str(caught.value) and str(root) in str(caught.value)


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, (4 << 20) + 1, (8 << 20) - 5])
@pytest.mark.parametrize("direct", [True, False])
def test_raw_copy_is_the_source_byte_for_byte(tmp_path: Path, size: int, direct: bool) -> None:
    # One pass: read, hash, write (O_DIRECT where allowed, padded then cut back).
    import os

    from ingest.archive import rawcopy

    data = os.urandom(size)
    (tmp_path / "src").write_bytes(data)
    with mock.patch.object(rawcopy.os, "O_DIRECT", getattr(os, "O_DIRECT", 0) if direct else 0, create=True):
        sha, copied = rawcopy._hash_and_copy(tmp_path / "src", tmp_path / "dst")
    assert (sha, copied) == (hashlib.sha256(data).hexdigest(), size)
    assert (tmp_path / "dst").read_bytes() == data


@pytest.mark.parametrize("pattern", ["one", "midnight", "interleaved", "back and forth"])
def test_a_batch_splits_by_date_in_file_order(pattern: str) -> None:
    import pyarrow as pa

    from ingest.archive.staging import _by_date

    d1, d2, d3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)
    days = {
        "one": [d1] * 5,
        "midnight": [d1] * 3 + [d2] * 4,
        "interleaved": [d1, d2, d3] * 7,
        "back and forth": [d1, d2, d2, d1, d3, d1],
    }[pattern]
    table = pa.table({"row": list(range(len(days)))})
    parts = _by_date(table, pl.Series(days))
    got: dict[date, list[int]] = {}
    for day, part in parts:
        got.setdefault(day, []).extend(part.column("row").to_pylist())
    assert got == {d: [i for i, x in enumerate(days) if x == d] for d in sorted(set(days))}
    assert sum(part.num_rows for _, part in parts) == len(days)
