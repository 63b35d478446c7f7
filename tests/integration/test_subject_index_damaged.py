"""Breakers for the subject index (issue 25): states of the index in which erasure and
subject access miss a person, or in which the repair ``verify`` advises does not repair.

The promise attacked (docs/COMPLIANCE.md, ingest.archive.subjects): whatever state the index
is in, ``erase`` leaves nothing of the person and ``export --botuser`` returns all of their
rows; ``verify`` names a damaged index and ``ingest migrate`` rebuilds it. Archives are built
through the production commit path; the erasure and the export are the production functions,
judged against the table read independently (polars over the Delta table).
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from ingest.archive.delta import open_table, snapshot_files
from ingest.archive.forget import subject_expr
from ingest.archive.layout import SUBJECTS, subjects_prefix
from ingest.archive.migrate import index_archive
from ingest.archive.storage import Storage, as_storage
from ingest.archive.subjects import bucket, check_archive
from ingest.export.source import narrow_snapshot, open_snapshot
from ingest.ops.erasure import erase
from ingest.simulator import generate_messages
from ingest.simulator.data import rows_to_csv
from tests.support.archive import read_archive
from tests.support.saving import archive_csv_file

pytestmark = pytest.mark.integration

AUDIT_KEY = "test-audit-key-0123456789"
WHO = "4242"
OTHER = "9191"


def _csv(work: Path, name: str, rows: list[dict[str, object]]) -> Path:
    path = work / f"{name}.csv"
    path.write_bytes(rows_to_csv(rows))
    return path


def _import(storage: Storage, path: Path, bot: str = "bot-a") -> None:
    archive_csv_file(
        storage, path, bot_id=bot, raw_name=path.name, provenance={"import": {"path": str(path)}}
    )


def _rows(first: date, owners: dict[int, str], bot: str = "bot-a") -> list[dict[str, object]]:
    rows = generate_messages(bot, first, first + timedelta(days=2))
    for position, who in owners.items():
        rows[position]["botuser"] = {"id": who, "created_date": "2023-12-01T00:00:00.000000Z"}
    return rows


def _build(work: Path) -> Storage:
    """One bot, six reports a quarter apart; the person in two of them, another in all."""
    storage = as_storage(work / "archive")
    day = date(2022, 1, 3)
    for n in range(6):
        owners = {3: WHO, 40: WHO, 11: OTHER} if n in (1, 4) else {11: OTHER}
        _import(storage, _csv(work, f"r{n}", _rows(day, owners)))
        day += timedelta(days=91)
    return storage


def _theirs(root: Path, who: str = WHO) -> pl.DataFrame:
    frame = read_archive(root)
    return frame.filter(pl.col("botuser").str.json_path_match("$.id") == who).sort("id")


def _exported(storage: Storage, who: str = WHO) -> pl.DataFrame:
    """What ``export --botuser`` reads: the snapshot narrowed by the index, then filtered."""
    snap = open_snapshot(storage)
    narrow_snapshot(snap, [who])
    frame = snap.scan("messages")
    if frame is None:
        return pl.DataFrame()
    expr = subject_expr(frame.collect_schema().names(), [who])
    assert expr is not None
    return frame.filter(expr).collect().sort("id")


def _snapshot_keys(storage: Storage) -> list[str]:
    return [f.key for f in snapshot_files(open_table(storage, "messages"), "messages")]


def _their_part(storage: Storage, who: str = WHO) -> str:
    prefix = subjects_prefix("messages", "bot-a")
    parts = [o.key for o in storage.objects(f"{prefix}bucket={bucket(who):02d}/")]
    return next(k for k in parts if who in pl.read_parquet(storage.source(k))["subject"].to_list())


def _assert_erased_exactly(root: Path, storage: Storage, who: str = WHO) -> None:
    before = read_archive(root)
    truth = _theirs(root, who)
    assert truth.height > 0
    assert _exported(storage, who).height == truth.height  # subject access: all of their rows
    erase(storage, [who], [], reason="test", actor="dpo", apply=True, salt=AUDIT_KEY)
    assert _theirs(root, who).height == 0  # nothing of them left
    others = before.filter(pl.col("botuser").str.json_path_match("$.id") != who).sort("id")
    assert read_archive(root).sort("id").equals(others)  # every other row unchanged


def test_an_index_copied_from_another_archive_of_the_same_reports_misses_nobody(tmp_path: Path) -> None:
    """Two archives of the same vendor reports: the first got a small report P (the person's
    row) before the big report B holding the same row, so its file of B lacks that row (a
    duplicate); the second archived B alone, so its file of B holds it. Data file keys are
    named after the source, so both archives have the same key for B's file with different
    content. An operator restores the second archive's index from the first (a copy of the
    subjects/ folder, a mixed-up backup): the index covers B's file and does not name the
    person in it, and erasure and subject access trust that."""
    day = date(2023, 3, 6)
    big = _rows(day, {3: WHO, 40: WHO, 11: OTHER})
    small = [dict(r) for r in big[:12]]  # the person's row 3 among them, as B has it
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    one = as_storage(first / "archive")
    _import(one, _csv(first, "small", small))
    _import(one, _csv(first, "big", big))
    two = as_storage(second / "archive")
    _import(two, _csv(second, "big", big))
    assert set(_snapshot_keys(two)) <= set(_snapshot_keys(one))  # the same keys...
    shutil.rmtree(second / "archive" / SUBJECTS)
    shutil.copytree(first / "archive" / SUBJECTS, second / "archive" / SUBJECTS)
    _assert_erased_exactly(second / "archive", two)


def test_migrate_repairs_an_index_verify_says_lacks_a_person(tmp_path: Path) -> None:
    """verify names a covered file whose person the index lacks and says `ingest migrate`
    rebuilds it. After migrate, verify must be clean and an erasure must find every row."""
    storage = _build(tmp_path)
    part = _their_part(storage)
    table = pl.read_parquet(storage.source(part)).filter(pl.col("subject") != WHO)
    storage.delete(part)
    table.write_parquet(storage.source(part))
    assert check_archive(storage, _snapshot_keys(storage))  # verify notices
    index_archive(storage)  # what `ingest migrate` runs for the index
    assert check_archive(storage, _snapshot_keys(storage)) == []  # ... and migrate repaired it
    _assert_erased_exactly(tmp_path / "archive", storage)


def test_migrate_repairs_a_truncated_merged_part(tmp_path: Path) -> None:
    """A merged part (written by migrate, compaction or erasure) damaged on disk: verify says
    "unreadable subject index: `ingest migrate` rebuilds it"; migrate must leave a readable
    index that verify accepts."""
    storage = _build(tmp_path)
    index_archive(storage)  # merge: one part per bucket, named after the snapshot's files
    part = _their_part(storage)
    path = Path(storage.source(part))
    path.write_bytes(path.read_bytes()[:40])
    assert any("unreadable" in p for p in check_archive(storage, _snapshot_keys(storage)))
    index_archive(storage)
    assert check_archive(storage, _snapshot_keys(storage)) == []


def test_an_operator_removing_one_bucket_folder_does_not_hide_the_person(tmp_path: Path) -> None:
    """An incomplete copy or restore of subjects/ (the bucket folder holding the person lost,
    the covered parts kept): erasure and subject access must still find every row, as they
    do when the whole index is gone."""
    storage = _build(tmp_path)
    folder = tmp_path / "archive" / subjects_prefix("messages", "bot-a") / f"bucket={bucket(WHO):02d}"
    shutil.rmtree(folder)
    _assert_erased_exactly(tmp_path / "archive", storage)


def test_an_operator_removing_one_bucket_folder_then_running_migrate(tmp_path: Path) -> None:
    """The same loss, then what verify advises: `ingest migrate`. The index must be whole again."""
    storage = _build(tmp_path)
    folder = tmp_path / "archive" / subjects_prefix("messages", "bot-a") / f"bucket={bucket(WHO):02d}"
    shutil.rmtree(folder)
    assert check_archive(storage, _snapshot_keys(storage))  # verify notices
    index_archive(storage)
    assert check_archive(storage, _snapshot_keys(storage)) == []
    _assert_erased_exactly(tmp_path / "archive", storage)
