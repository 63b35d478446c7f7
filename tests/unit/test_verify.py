"""`ingest verify`: a real archive (simulator -> parser -> writer) verifies clean, and each
kind of tampering or crash leftover is reported naming the file."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from ingest.archive.writer import save_report
from ingest.ops.verify import VerifyReport, render_text, to_json, verify_archive
from ingest.simulator import generate_messages, rows_to_csv
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.saving import parse_csv

BOT_A = "3f2b8c1e-0000-4000-8000-00000000000a"
BOT_B = "3f2b8c1e-0000-4000-8000-00000000000b"
D = date.fromisoformat

#: (bot, rows generated from..to, requested window or None for an import by hand)
REPORTS = [
    (BOT_A, D("2024-01-01"), D("2024-01-06"), (D("2024-01-01"), D("2024-01-05"))),  # 01-06 rejected
    (BOT_A, D("2024-01-04"), D("2024-01-08"), (D("2024-01-04"), D("2024-01-08"))),  # overlaps
    (BOT_A, D("2024-01-20"), D("2024-01-22"), (D("2024-01-20"), D("2024-01-24"))),  # 2 empty days
    (BOT_B, D("2024-01-01"), D("2024-01-03"), (D("2024-01-01"), D("2024-01-03"))),
    (BOT_B, D("2024-02-01"), D("2024-02-02"), None),
]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _save(
    root: Path, bot: str, first: date, last: date, window: tuple[date, date] | None, shift_partition: int = 0
) -> str:
    """Archive the simulator's rows of bot for first..last; returns the attachment sha256."""
    data = rows_to_csv(generate_messages(bot, first, last))
    sha = _sha(data)
    parsed = parse_csv(data, bot_id=bot, source_sha256=sha, window=window)
    if shift_partition:  # a writer bug: rows filed under the wrong date
        parsed.rows = parsed.rows.with_columns(pl.col("date") + timedelta(days=shift_partition))
    provenance = {"window": {"from": window[0].isoformat(), "to": window[1].isoformat()}} if window else {}
    save_report(
        root, parsed, bot_id=bot, source_sha256=sha, raw=data, raw_name=f"{bot}.csv", provenance=provenance
    )
    return sha


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    for bot, first, last, window in REPORTS:
        _save(root, bot, first, last, window)
    return root


def _data_files(root: Path) -> list[Path]:
    """The data files (not the table log's checkpoints, which are Parquet too)."""
    return sorted(p for p in (root / "messages").rglob("*.parquet") if "_delta_log" not in p.parts)


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _assert_only_about(report: VerifyReport, *names: str) -> None:
    """The report failed, and every problem names one of these files."""
    assert not report.ok
    assert report.problems
    for problem in report.problems:
        assert any(name in problem for name in names), problem


def test_clean_archive_verifies_with_totals_and_coverage(archive: Path) -> None:
    report = verify_archive(archive)

    assert report.ok, report.problems
    truth_a = generate_messages(BOT_A, D("2024-01-01"), D("2024-01-08")) + generate_messages(
        BOT_A, D("2024-01-20"), D("2024-01-22")
    )
    truth_b = generate_messages(BOT_B, D("2024-01-01"), D("2024-01-03")) + generate_messages(
        BOT_B, D("2024-02-01"), D("2024-02-02")
    )
    assert report.rows == len(truth_a) + len(truth_b)
    assert report.files == len(_data_files(archive))
    assert (report.raw_files, report.manifests) == (len(REPORTS), len(REPORTS))

    a, b = report.bots[BOT_A], report.bots[BOT_B]
    assert (a.first_day, a.last_day, a.rows) == (D("2024-01-01"), D("2024-01-22"), len(truth_a))
    assert a.days == _days(D("2024-01-01"), D("2024-01-08")) + _days(D("2024-01-20"), D("2024-01-22"))
    assert a.days_without_rows == [D("2024-01-23"), D("2024-01-24")]  # inside a window, no rows
    assert (b.first_day, b.last_day, len(b.days), b.days_without_rows) == (
        D("2024-01-01"),
        D("2024-02-02"),
        5,
        [],
    )

    document = json.loads(to_json(report))
    assert document["ok"] is True
    assert document["totals"] == {
        "files": report.files,
        "rows": report.rows,
        "raw_files": len(REPORTS),
        "manifests": len(REPORTS),
    }
    assert document["bots"][0]["days_without_rows"] == ["2024-01-23", "2024-01-24"]
    text = render_text(report)
    assert "OK" in text and BOT_A in text and "2024-01-23..2024-01-24" in text


def test_store_windows_give_gaps_and_windows_not_archived(archive: Path, tmp_path: Path) -> None:
    with Store.open(tmp_path / "state.sqlite") as store:
        store.plan_window(BOT_B, 1, D("2024-01-10"), D("2024-01-12"))  # archived, no rows at all
        store.plan_window(BOT_B, 1, D("2024-03-01"), D("2024-03-15"))  # still planned
        for window in store.windows(bot_id=BOT_B):
            if window.from_date == D("2024-01-10"):
                store.transition(window.id, WindowState.DELIVERED)
                store.transition(window.id, WindowState.ARCHIVED)
        report = verify_archive(archive, store)

    assert report.ok, report.problems  # gaps and open windows are information, not failures
    b = report.bots[BOT_B]
    assert b.days_without_rows == _days(D("2024-01-10"), D("2024-01-12"))
    assert b.windows_not_archived == ["2024-03-01..2024-03-15: planned"]
    assert "windows not archived: 2024-03-01..2024-03-15" in render_text(report)


def test_changed_byte_in_raw_file_is_named(archive: Path) -> None:
    raw = sorted((archive / "raw").rglob("*.csv"))[1]
    _flip_byte(raw, raw.stat().st_size // 2)

    _assert_only_about(verify_archive(archive), _rel(archive, raw))


@pytest.mark.parametrize("where", ["middle", "footer", "first"])
def test_changed_byte_in_data_file_is_named(archive: Path, where: str) -> None:
    target = _data_files(archive)[3]
    size = target.stat().st_size
    _flip_byte(target, {"middle": size // 2, "footer": size - 12, "first": 4}[where])

    report = verify_archive(archive)

    _assert_only_about(report, _rel(archive, target))
    assert any("sha256 differs" in p for p in report.problems)


def test_data_file_with_unreadable_pages_is_named_and_the_rest_still_checked(archive: Path) -> None:
    target = _data_files(archive)[3]
    data = bytearray(target.read_bytes())
    data[4 : len(data) // 2] = b"\xff" * (len(data) // 2 - 4)  # footer intact, pages garbage
    target.write_bytes(bytes(data))
    other = _data_files(archive)[0]
    pl.read_parquet(other, hive_partitioning=False).head(1).write_parquet(
        other.with_name("part-extra.parquet")
    )

    report = verify_archive(archive)

    assert any(_rel(archive, target) in p and "unreadable" in p for p in report.problems)
    assert any("duplicate" in p and _rel(archive, other) in p for p in report.problems)


def test_deleted_data_file_is_missing(archive: Path) -> None:
    target = next(p for p in _data_files(archive) if f"{BOT_A}/date=2024-01-02" in p.as_posix())
    target.unlink()

    report = verify_archive(archive)

    _assert_only_about(report, _rel(archive, target))
    assert any("missing" in p for p in report.problems)
    assert D("2024-01-02") in report.bots[BOT_A].days_without_rows


def test_extra_file_with_duplicate_id_is_orphan_and_duplicate(archive: Path) -> None:
    existing = _data_files(archive)[0]
    extra = existing.with_name("part-extra.parquet")
    pl.read_parquet(existing, hive_partitioning=False).head(1).write_parquet(extra)

    report = verify_archive(archive)

    assert not report.ok
    orphan = [p for p in report.problems if "orphan" in p]
    duplicate = [p for p in report.problems if "duplicate" in p]
    assert len(orphan) == 1 and _rel(archive, extra) in orphan[0]
    assert len(duplicate) == 1 and _rel(archive, extra) in duplicate[0]
    assert _rel(archive, existing) in duplicate[0]
    assert len(report.problems) == 2


def test_leftover_temporary_file_is_an_orphan(archive: Path) -> None:
    existing = _data_files(archive)[0]
    leftover = existing.with_name(f".tmp-4242-{existing.name}")
    leftover.write_bytes(existing.read_bytes())  # what a kill between write and link leaves

    report = verify_archive(archive)

    assert any("orphan" in p and "temporary" in p for p in report.problems)
    _assert_only_about(report, _rel(archive, leftover))


def test_manifest_counts_that_do_not_add_up(archive: Path) -> None:
    manifest = sorted((archive / "manifests").glob("*.json"))[0]
    document = json.loads(manifest.read_text(encoding="utf-8"))
    document["counts"]["rows_read"] += 1
    manifest.write_text(json.dumps(document), encoding="utf-8")

    report = verify_archive(archive)

    _assert_only_about(report, f"manifests/{manifest.name}")
    assert any("do not add up" in p for p in report.problems)


def test_row_in_wrong_date_partition(archive: Path) -> None:
    sha = _save(archive, BOT_B, D("2024-01-15"), D("2024-01-15"), None, shift_partition=1)
    target = archive / "messages" / f"bot_id={BOT_B}" / "date=2024-01-16" / f"part-{sha[:16]}.parquet"
    assert target.exists()

    report = verify_archive(archive)

    _assert_only_about(report, _rel(archive, target))
    assert any("outside its date partition" in p for p in report.problems)


def test_missing_manifest_leaves_orphans_and_unaccounted_raw(archive: Path) -> None:
    manifest = sorted((archive / "manifests").glob("*.json"))[0]
    listed = [entry["path"] for entry in json.loads(manifest.read_text(encoding="utf-8"))["files"]]
    manifest.unlink()  # a crash after the data files, before the manifest

    report = verify_archive(archive)

    raw = next((archive / "raw").rglob(f"{manifest.stem}.*"))
    _assert_only_about(report, _rel(archive, raw), *listed)
    assert all(any(path in p and "orphan" in p for p in report.problems) for path in listed)


def test_empty_or_absent_archive(tmp_path: Path) -> None:
    assert verify_archive(tmp_path).ok
    assert not verify_archive(tmp_path / "nowhere").ok


def test_an_archive_written_before_format_version_verifies_clean(archive: Path) -> None:
    records = [*(archive / "manifests").glob("*.json"), *(archive / "quarantine").glob("*/reason.json")]
    assert records
    for path in records:
        document = json.loads(path.read_text(encoding="utf-8"))
        assert document.pop("format_version") == 1
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

    assert verify_archive(archive).problems == []


def test_a_record_that_does_not_fit_its_model_is_named(archive: Path) -> None:
    reasons = sorted((archive / "quarantine").glob("*/reason.json"))[0]
    document = json.loads(reasons.read_text(encoding="utf-8"))
    document["reasons"] = "many"  # a count per reason, not a text
    reasons.write_text(json.dumps(document), encoding="utf-8")

    report = verify_archive(archive)

    _assert_only_about(report, _rel(archive, reasons))
    assert any("does not fit the quarantine reasons format (reasons:" in p for p in report.problems)


def test_a_record_of_a_newer_format_is_named_not_guessed_at(archive: Path) -> None:
    manifest = sorted((archive / "manifests").glob("*.json"))[0]
    document = json.loads(manifest.read_text(encoding="utf-8"))
    document["format_version"] = 2
    manifest.write_text(json.dumps(document), encoding="utf-8")

    problems = verify_archive(archive).problems

    assert any(
        f"manifests/{manifest.name}: report manifest format_version 2 is newer than this tool reads (1..1)"
        in p
        for p in problems
    ), problems
