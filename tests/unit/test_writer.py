"""The archive writer: layout, manifest, idempotent saves, quarantine, read-back by other readers."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ingest.archive.writer import SaveResult, save_report
from ingest.errors import OutputError
from ingest.parse.parser import ParsedReport
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.saving import parse_csv

BOT = "3f2b8c1e-0000-4000-8000-000000000001"
PROVENANCE = {
    "email": {"message_id": "<m1@certainly.example>", "from": "reports@certainly.example"},
    "window": {"from": "2024-01-01", "to": "2024-01-03"},
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _report(start: date, end: date, *, extra_lines: bytes = b"") -> tuple[bytes, ParsedReport]:
    data = rows_to_csv(generate_messages(BOT, start, end)) + extra_lines
    return data, parse_csv(data, bot_id=BOT, source_sha256=_sha(data))


def _save(root: Path, data: bytes, parsed: ParsedReport, name: str = "report.csv") -> SaveResult:
    return save_report(
        root, parsed, bot_id=BOT, source_sha256=_sha(data), raw=data, raw_name=name, provenance=PROVENANCE
    )


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under root: its mtime (ns) and sha256."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, _sha(p.read_bytes()))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _archive(root: Path) -> pl.DataFrame:
    return pl.scan_parquet(
        root / "messages" / "bot_id=*" / "*" / "*.parquet", hive_partitioning=True
    ).collect()


def test_layout_raw_bytes_and_manifest(tmp_path: Path) -> None:
    data, parsed = _report(date(2024, 1, 1), date(2024, 1, 3))
    sha = _sha(data)

    result = _save(tmp_path, data, parsed)

    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert [f.path for f in result.files] == [
        f"messages/bot_id={BOT}/date={day}/part-{sha[:16]}.parquet" for day in days
    ]
    assert (tmp_path / "raw" / f"bot_id={BOT}" / f"{sha}.csv").read_bytes() == data
    assert result.rows_written == parsed.rows.height == parsed.rows_read
    assert (result.rows_duplicate, result.rows_rejected) == (0, 0)

    manifest_path = tmp_path / "manifests" / f"{sha}.json"
    assert result.manifest == f"manifests/{sha}.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert manifest["email"] == PROVENANCE["email"]
    assert manifest["window"] == PROVENANCE["window"]
    assert manifest["bot_id"] == BOT
    assert manifest["attachment"] == {"name": "report.csv", "size": len(data), "sha256": sha}
    assert manifest["counts"] == {
        "rows_read": parsed.rows_read,
        "rows_written": parsed.rows.height,
        "rows_duplicate": 0,
        "rows_rejected": 0,
    }
    assert sum(f["rows"] for f in manifest["files"]) == parsed.rows.height
    for entry in manifest["files"]:
        on_disk = tmp_path / entry["path"]
        assert entry["sha256"] == _sha(on_disk.read_bytes())
        assert entry["rows"] == pl.read_parquet(on_disk).height
        # The manifest is the commit record: written after every data file.
        assert manifest_path.stat().st_mtime_ns >= on_disk.stat().st_mtime_ns
    assert not list(tmp_path.rglob(".tmp-*"))


def test_same_report_twice_writes_nothing_new(tmp_path: Path) -> None:
    data, parsed = _report(date(2024, 1, 1), date(2024, 1, 3))
    first = _save(tmp_path, data, parsed)
    before = _snapshot(tmp_path)

    second = _save(tmp_path, data, parsed)

    assert _snapshot(tmp_path) == before
    assert second.rows_written == 0
    assert second.files == []
    assert second.rows_duplicate == first.rows_written
    assert second.rows_read == second.rows_written + second.rows_duplicate + second.rows_rejected
    assert _archive(tmp_path).height == first.rows_written


def test_overlapping_report_adds_only_new_ids_in_new_files(tmp_path: Path) -> None:
    data1, parsed1 = _report(date(2024, 1, 1), date(2024, 1, 3))
    _save(tmp_path, data1, parsed1)
    before = _snapshot(tmp_path)
    data2, parsed2 = _report(date(2024, 1, 2), date(2024, 1, 5))

    result = _save(tmp_path, data2, parsed2, name="second.csv")

    new_days = parsed2.rows.filter(pl.col("date") >= date(2024, 1, 4))
    assert result.rows_written == new_days.height
    assert result.rows_duplicate == parsed2.rows.height - new_days.height
    assert [f.path.split("/")[2] for f in result.files] == ["date=2024-01-04", "date=2024-01-05"]
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing rewritten
    archive = _archive(tmp_path)
    expected_ids = sorted(set(parsed1.rows["id"]) | set(parsed2.rows["id"]))
    assert archive["id"].sort().to_list() == expected_ids
    assert archive["id"].is_unique().all()


def test_rejected_rows_go_to_quarantine_with_reasons(tmp_path: Path) -> None:
    bad = b"999,not-a-time,,,,,,,,,,,,,,,,,,,,\r\nabc,2024-01-01T10:00:00Z,,,,,,,,,,,,,,,,,,,,\r\n"
    data, parsed = _report(date(2024, 1, 1), date(2024, 1, 1), extra_lines=bad)
    sha = _sha(data)

    result = _save(tmp_path, data, parsed)

    assert result.rows_rejected == 2
    assert result.rows_read == result.rows_written + result.rows_duplicate + result.rows_rejected
    rejected = pl.read_parquet(tmp_path / "quarantine" / sha / "rejected_rows.parquet")
    assert sorted(rejected["id"].to_list()) == ["999", "abc"]
    assert sorted(rejected["reason"].to_list()) == [
        "id is not a valid int",
        "timestamp is not a valid timestamp",
    ]
    reasons = json.loads((tmp_path / "quarantine" / sha / "reason.json").read_text(encoding="utf-8"))
    assert reasons == {
        "format_version": 1,
        "reasons": {"id is not a valid int": 1, "timestamp is not a valid timestamp": 1},
    }
    manifest = json.loads((tmp_path / "manifests" / f"{sha}.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["rows_rejected"] == 2


def test_archive_reads_back_with_polars_and_duckdb(tmp_path: Path) -> None:
    data, parsed = _report(date(2024, 2, 27), date(2024, 3, 2))  # across a month end, leap day
    _save(tmp_path, data, parsed)
    expected = parsed.rows.sort("id")

    with_polars = _archive(tmp_path).sort("id")
    assert with_polars["bot_id"].unique().to_list() == [BOT]
    assert with_polars["date"].dtype == pl.Date
    assert_frame_equal(with_polars.select(expected.columns), expected)

    glob = (tmp_path / "messages" / "bot_id=*" / "*" / "*.parquet").as_posix()
    conn = duckdb.connect()
    try:
        rows = conn.execute(
            "SELECT id, bot_id, CAST(date AS VARCHAR), epoch_us(timestamp), message, bot_module "
            "FROM read_parquet(?, hive_partitioning = true) ORDER BY id",
            [glob],
        ).fetchall()
    finally:
        conn.close()
    expected_rows = expected.select(
        "id",
        "bot_id",
        pl.col("date").cast(pl.String),
        pl.col("timestamp").dt.epoch("us"),
        "message",
        "bot_module",
    ).rows()
    assert rows == expected_rows


def test_every_row_is_in_the_partition_of_its_utc_date(tmp_path: Path) -> None:
    header = b"id,timestamp,message\r\n"
    data = header + (
        b"1,2024-01-01T23:30:00+02:00,late evening in Copenhagen\r\n"
        b"2,2024-01-02T00:30:00+02:00,after local midnight\r\n"
        b"3,2024-01-01T23:59:59.999999Z,last microsecond\r\n"
        b"4,2024-01-02T00:00:00Z,first instant\r\n"
        b"5,2024-01-01T20:00:00-05:00,evening in New York\r\n"
    )
    parsed = parse_csv(data, bot_id=BOT, source_sha256=_sha(data))

    _save(tmp_path, data, parsed)

    partitions = {}
    for path in (tmp_path / "messages").rglob("*.parquet"):
        day = date.fromisoformat(path.parent.name.removeprefix("date="))
        frame = pl.read_parquet(path)
        assert frame["timestamp"].dt.date().unique().to_list() == [day]
        partitions.update(dict.fromkeys(frame["id"].to_list(), day))
    assert partitions == {
        1: date(2024, 1, 1),
        2: date(2024, 1, 1),
        3: date(2024, 1, 1),
        4: date(2024, 1, 2),
        5: date(2024, 1, 2),
    }


def test_unwritable_root_is_an_output_error(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    root.write_bytes(b"a regular file where the archive folder should be")
    data, parsed = _report(date(2024, 1, 1), date(2024, 1, 1))

    with pytest.raises(OutputError) as caught:
        _save(root, data, parsed)

    message = str(caught.value)
    assert "\n" not in message
    assert str(root) in message


@pytest.mark.parametrize("path", ["in memory (GET)", "streamed (CSV)"])
def test_a_report_reads_the_table_log_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    # Opening a Delta table replays its log (0.35 s at 80 commits): once per report, not per step.
    import deltalake

    from tests.support.saving import archive_csv_file

    first, _ = _report(date(2024, 1, 1), date(2024, 1, 3))
    _save(tmp_path, first, parse_csv(first, bot_id=BOT, source_sha256=_sha(first)))
    data, parsed = _report(date(2024, 1, 3), date(2024, 1, 6))
    opened: list[object] = []
    real = deltalake.DeltaTable.__init__

    def counted(self: deltalake.DeltaTable, *args: object, **kwargs: object) -> None:
        opened.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(deltalake.DeltaTable, "__init__", counted)
    if path == "in memory (GET)":
        result = _save(tmp_path, data, parsed, "second.csv")
    else:
        result = archive_csv_file(tmp_path, data, bot_id=BOT, raw_name="second.csv", provenance=PROVENANCE)
    assert result.rows_written > 0 and result.rows_duplicate > 0 and result.version == 2
    assert len(opened) == 1
