"""``ingest compact``: Delta OPTIMIZE makes many small files per partition one, the rows stay
exactly the same, the manifests record it, verify stays clean, and a crash between the
OPTIMIZE commit and its record is finished by the next run; ``ingest vacuum`` then removes
the replaced files. Locally; on S3 in tests/integration/test_delta_s3.py (SeaweedFS: moto's
server stalls on delta-rs's concurrent log reads)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import ingest.archive.compact as compact_module
from ingest.archive.compact import compact_archive, vacuum_archive
from ingest.archive.delta import open_table, table_uri
from ingest.archive.layout import is_data_file
from ingest.archive.snapshot import snapshot_files
from ingest.archive.storage import LocalStorage, Storage
from ingest.ops.verify import verify_archive
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.job import run_ingest
from tests.support.saving import archive_csv_file

pytestmark = pytest.mark.integration

BOT = "c0c0a000-0000-4000-8000-0000000000c1"
FIRST, LAST = date(2024, 7, 1), date(2024, 7, 4)


def deliver_in_pieces(storage: Storage | Path, workdir: Path, pieces: int = 3) -> list[dict[str, object]]:
    """The same days delivered as several reports, each with a share of every day's rows:
    every partition gets one file per piece."""
    rows = generate_messages(BOT, FIRST, LAST)
    for n in range(pieces):
        path = workdir / f"piece-{n}.csv"
        path.write_bytes(rows_to_csv(rows[n::pieces]))
        archive_csv_file(storage, path, bot_id=BOT, raw_name=path.name, provenance={})
    return rows


def table(storage: Storage) -> pl.DataFrame:
    """The messages table as polars reads it (its current snapshot)."""
    frame = pl.scan_delta(table_uri(storage, "messages"), storage_options=storage.storage_options).collect()
    return frame.drop("bot_id").sort("id")


def data_files(storage: Storage) -> list[str]:
    """The data files of the table's current snapshot."""
    return [f.key for f in snapshot_files(open_table(storage, "messages"), "messages")]


def on_disk(storage: Storage) -> list[str]:
    """Every data file in the dataset's folder, committed or not (not the Delta log)."""
    return [o.key for o in storage.objects("messages/") if is_data_file(o.key)]


def test_compaction_merges_partitions_and_keeps_every_row(workdir: Path) -> None:
    storage = LocalStorage(workdir / "archive")
    rows = deliver_in_pieces(storage, workdir)
    before = table(storage)
    assert len(data_files(storage)) == 3 * 4  # 4 days x 3 pieces

    done = compact_archive(storage)
    assert (done.partitions, done.files_before, done.files_after, done.rows) == (4, 12, 4, len(rows))
    assert len(data_files(storage)) == 4
    assert_frame_equal(table(storage), before)
    report = verify_archive(storage)
    assert report.ok, report.problems
    for key in data_files(storage):  # sorted by timestamp within the file
        assert storage.scan([key]).collect()["timestamp"].is_sorted()

    assert compact_archive(storage).partitions == 0  # nothing left to do
    assert len(on_disk(storage)) == 12 + 4  # the replaced files stay until vacuum: older versions read them
    swept = vacuum_archive(storage, retention_hours=0)
    assert len(swept.removed["messages"]) == 12 and swept.left["messages"] == []
    assert sorted(on_disk(storage)) == sorted(data_files(storage))
    assert verify_archive(storage).ok, verify_archive(storage).problems
    again = workdir / "again.csv"
    again.write_bytes(rows_to_csv(rows))
    redelivered = archive_csv_file(storage, again, bot_id=BOT, raw_name="again.csv", provenance={})
    assert redelivered.rows_written == 0 and redelivered.rows_duplicate == len(rows)


def test_a_file_never_committed_is_reported_then_vacuumed(workdir: Path) -> None:
    """A data file published but never committed (a crash before the Delta commit, its
    report never delivered again): readers do not see it, verify names it, vacuum removes it."""
    deliver_in_pieces(workdir / "archive", workdir)
    storage = LocalStorage(workdir / "archive")
    before = table(storage)
    partition = workdir / "archive" / "messages" / f"bot_id={BOT}" / "date=2024-07-02"
    stray = partition / "part-0123456789abcdef.parquet"
    before.head(3).write_parquet(stray)
    assert_frame_equal(table(storage), before)
    report = verify_archive(storage)
    assert any("orphan data file, not in the Delta table" in p for p in report.problems), report.problems
    swept = vacuum_archive(storage, retention_hours=0)
    assert swept.removed["messages"] == [stray.relative_to(workdir / "archive").as_posix()]
    assert not stray.exists()
    assert verify_archive(storage).ok, verify_archive(storage).problems


def test_a_crash_between_the_optimize_commit_and_its_record_is_finished_by_the_next_run(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver_in_pieces(workdir / "archive", workdir)
    storage = LocalStorage(workdir / "archive")
    before = table(storage)

    def killed(*args: object) -> bool:
        raise RuntimeError("killed")

    monkeypatch.setattr(compact_module, "write_bytes_once", killed)
    with pytest.raises(RuntimeError):
        compact_archive(storage)
    monkeypatch.undo()
    assert any("no manifest lists it" in p for p in verify_archive(storage).problems)
    assert_frame_equal(table(storage), before)  # committed: readers see the compacted files
    done = compact_archive(storage)
    assert done.finished == 1 and done.partitions == 3  # one record written, then the rest compacted
    assert verify_archive(storage).ok, verify_archive(storage).problems
    assert_frame_equal(table(storage), before)


def test_cli_compact(workdir: Path) -> None:
    deliver_in_pieces(workdir / "archive", workdir, pieces=2)
    env = {
        "INGEST_OUTPUT__ROOT": str(workdir / "archive"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
    }
    done = run_ingest("compact", "--bot", BOT, env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "compacted 4 partition(s): 8 files -> 4" in done.stdout
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 0
