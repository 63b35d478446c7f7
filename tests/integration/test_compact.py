"""``ingest compact``: many small files per partition become one, the rows stay exactly
the same, the manifests record it, verify stays clean, and a crash at either step is
finished by the next run. Locally and on S3 (moto)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import ingest.archive.compact as compact_module
from ingest.archive.compact import compact_archive
from ingest.archive.s3 import S3Storage
from ingest.archive.storage import LocalStorage, Storage
from ingest.ops.verify import verify_archive
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.job import run_ingest
from tests.support.s3 import CREDENTIALS, moto_s3
from tests.support.saving import archive_csv_file

pytestmark = pytest.mark.integration

BOT = "c0c0a000-0000-4000-8000-0000000000c1"
FIRST, LAST = date(2024, 7, 1), date(2024, 7, 4)


def deliver_in_pieces(out: Storage | Path, workdir: Path, pieces: int = 3) -> list[dict[str, object]]:
    """The same days delivered as several reports, each with a share of every day's rows:
    every partition gets one file per piece."""
    rows = generate_messages(BOT, FIRST, LAST)
    for n in range(pieces):
        path = workdir / f"piece-{n}.csv"
        path.write_bytes(rows_to_csv(rows[n::pieces]))
        archive_csv_file(out, path, bot_id=BOT, raw_name=path.name, provenance={})
    return rows


def table(out: Storage) -> pl.DataFrame:
    keys = [o.key for o in out.objects("messages/") if o.key.endswith(".parquet")]
    return out.scan(keys, hive_partitioning=True).collect().drop("bot_id").sort("id")


def data_files(out: Storage) -> list[str]:
    return [o.key for o in out.objects("messages/")]


def test_compaction_merges_partitions_and_keeps_every_row(workdir: Path) -> None:
    out = LocalStorage(workdir / "archive")
    rows = deliver_in_pieces(out, workdir)
    before = table(out)
    assert len(data_files(out)) == 3 * 4  # 4 days x 3 pieces

    done = compact_archive(out)
    assert (done.partitions, done.files_before, done.files_after, done.rows) == (4, 12, 4, len(rows))
    assert len(data_files(out)) == 4
    assert_frame_equal(table(out), before)
    report = verify_archive(out)
    assert report.ok, report.problems
    for key in data_files(out):  # sorted by timestamp within the file
        assert out.scan([key]).collect()["timestamp"].is_sorted()

    assert compact_archive(out).partitions == 0  # nothing left to do
    again = workdir / "again.csv"
    again.write_bytes(rows_to_csv(rows))
    redelivered = archive_csv_file(out, again, bot_id=BOT, raw_name="again.csv", provenance={})
    assert redelivered.rows_written == 0 and redelivered.rows_duplicate == len(rows)


class FailingDelete(LocalStorage):
    """Dies at the first delete: a crash between the compaction record and the clean-up."""

    def delete(self, key: str) -> None:
        raise RuntimeError("killed")


def test_a_crash_after_the_record_is_reported_then_finished(workdir: Path) -> None:
    deliver_in_pieces(workdir / "archive", workdir)
    out = LocalStorage(workdir / "archive")
    before = table(out)
    with pytest.raises(RuntimeError):
        compact_archive(FailingDelete(workdir / "archive"))
    report = verify_archive(out)
    assert any("unfinished compaction" in p for p in report.problems)
    done = compact_archive(out)
    assert done.finished == 1
    assert verify_archive(out).ok, verify_archive(out).problems
    assert_frame_equal(table(out), before)


def test_a_crash_before_the_record_is_adopted_by_the_next_run(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver_in_pieces(workdir / "archive", workdir)
    out = LocalStorage(workdir / "archive")
    before = table(out)

    def killed(*args: object) -> bool:
        raise RuntimeError("killed")

    monkeypatch.setattr(compact_module, "write_bytes_once", killed)
    with pytest.raises(RuntimeError):
        compact_archive(out)
    monkeypatch.undo()
    assert any("orphan data file" in p for p in verify_archive(out).problems)
    compact_archive(out)
    assert verify_archive(out).ok, verify_archive(out).problems
    assert_frame_equal(table(out), before)


def test_compaction_on_s3(workdir: Path) -> None:
    with moto_s3() as s3:
        out = S3Storage(
            s3.bucket,
            "compact",
            staging=workdir / "staging",
            endpoint_url=s3.endpoint,
            access_key_id=CREDENTIALS["aws_access_key_id"],
            secret_access_key=CREDENTIALS["aws_secret_access_key"],
        )
        deliver_in_pieces(out, workdir)
        before = table(out)
        done = compact_archive(out)
        assert (done.files_before, done.files_after) == (12, 4)
        assert len(s3.keys("compact/messages/")) == 4
        assert_frame_equal(table(out), before)
        assert verify_archive(out).ok, verify_archive(out).problems


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
