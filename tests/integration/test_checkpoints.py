"""The table stays cheap to open: a checkpoint every 5 commits, one snapshot per command.

`ingest import` of many daily reports in one command, as a user runs it: the table's log
gets a checkpoint every 10 commits and keeps every commit (time travel reaches the first
report); readers (polars, DuckDB over the snapshot's files) see every row once. A table
made before the cadence gets it on its next write. Within one process (a `watch`), the
table is opened once and brought up to date, commits of other writers included.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable

from ingest.archive.delta import (
    CHECKPOINT_INTERVAL,
    PARTITIONS,
    _delta_schema,
    current_table,
    table_schema,
    table_uri,
)
from ingest.archive.storage import LocalStorage
from ingest.parse.arrowrows import FILE_SCHEMA
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.archive import duckdb_snapshot
from tests.support.job import run_ingest
from tests.support.saving import archive_csv_file

pytestmark = pytest.mark.integration

BOT = "3f2b8c1e-0000-4000-8000-0000000000d1"
FIRST = date(2024, 1, 1)


def job_vars(root: Path) -> dict[str, str]:
    return {
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "INGEST_OUTPUT__ROOT": str(root / "archive"),
        "INGEST_STATE__PATH": str(root / "state.sqlite"),
    }


def daily_reports(root: Path, days: int, start: date = FIRST) -> list[Path]:
    made = []
    for n in range(days):
        day = start + timedelta(days=n)
        path = root / f"{day}.csv"
        path.write_bytes(rows_to_csv(generate_messages(BOT, day, day, seed=1, min_per_day=3, max_per_day=3)))
        made.append(path)
    return made


def log_names(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "archive" / "messages" / "_delta_log").iterdir())


def test_many_reports_in_one_command_leave_checkpoints_and_every_commit(tmp_path: Path) -> None:
    env = job_vars(tmp_path)
    reports = daily_reports(tmp_path, 23)

    result = run_ingest("import", *map(str, reports), "--bot", BOT, env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    names = log_names(tmp_path)
    checkpoints = [n for n in names if n.endswith(".checkpoint.parquet")]
    assert len(checkpoints) == 23 // CHECKPOINT_INTERVAL  # created empty, then a commit per report
    assert "_last_checkpoint" in names
    assert [n for n in names if n.endswith(".json")] == [f"{v:020d}.json" for v in range(24)]  # none removed
    table = pl.read_delta(str(tmp_path / "archive" / "messages"))
    assert table.height == 23 * 3 == table.get_column("id").n_unique()
    assert duckdb.sql(
        f"SELECT count(DISTINCT id) FROM {duckdb_snapshot(tmp_path / 'archive')}"
    ).fetchall() == [(69,)]
    first = pl.read_delta(str(tmp_path / "archive" / "messages"), version=1)
    assert first.get_column("date").unique().to_list() == [FIRST]  # time travel to the first report
    verify = run_ingest("verify", env=env, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_table_made_before_the_cadence_gets_it_on_its_next_write(tmp_path: Path) -> None:
    messages = tmp_path / "archive" / "messages"
    DeltaTable.create(
        str(messages),
        _delta_schema(table_schema(FILE_SCHEMA)),
        partition_by=list(PARTITIONS),
        configuration={"delta.enableDeletionVectors": "false"},  # as tables were made before
    )
    env = job_vars(tmp_path)

    result = run_ingest("import", *map(str, daily_reports(tmp_path, 12)), "--bot", BOT, env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    table = DeltaTable(str(messages))
    assert table.metadata().configuration["delta.checkpointInterval"] == str(CHECKPOINT_INTERVAL)
    assert any(n.endswith(".checkpoint.parquet") for n in log_names(tmp_path))
    assert pl.read_delta(str(messages)).height == 12 * 3


def test_one_process_keeps_its_snapshot_and_sees_other_writers_commits(tmp_path: Path) -> None:
    """As a long-running `watch` does: the same table object, brought up to date."""
    root = tmp_path / "archive"
    mine, other = LocalStorage(root), LocalStorage(root)
    first, second, third = daily_reports(tmp_path, 3)
    archive_csv_file(mine, first, bot_id=BOT, raw_name=first.name, provenance={})
    opened = current_table(mine, "messages")
    assert opened is not None

    archive_csv_file(other, second, bot_id=BOT, raw_name=second.name, provenance={})  # another writer
    again = current_table(mine, "messages")

    assert again is opened  # not opened again
    assert again.version() == DeltaTable(table_uri(mine, "messages")).version()
    assert len(again.file_uris()) == 2
    archive_csv_file(mine, third, bot_id=BOT, raw_name=third.name, provenance={})  # through the kept table
    assert len(pl.read_delta(str(root / "messages"))) == 9


def test_a_kept_snapshot_survives_the_log_cut_back_under_it(tmp_path: Path) -> None:
    """An erasure (another process) checkpoints the table and removes the older log entries
    while a `watch` holds its snapshot: the next report still sees the table as it is."""
    root = tmp_path / "archive"
    mine, other = LocalStorage(root), LocalStorage(root)
    reports = daily_reports(tmp_path, 5)
    archive_csv_file(mine, reports[0], bot_id=BOT, raw_name=reports[0].name, provenance={})
    kept = current_table(mine, "messages")
    assert kept is not None
    for report in reports[1:4]:
        archive_csv_file(other, report, bot_id=BOT, raw_name=report.name, provenance={})
    latest = DeltaTable(table_uri(other, "messages"))
    latest.create_checkpoint()
    log = root / "messages" / "_delta_log"
    for entry in log.iterdir():  # what an erasure does to a log that held the subject
        number = entry.name.split(".")[0]
        if number.isdigit() and int(number) < latest.version():
            entry.unlink()

    now = current_table(mine, "messages")

    assert now is not None and now.version() == latest.version()
    assert len(now.file_uris()) == 4
    archive_csv_file(mine, reports[4], bot_id=BOT, raw_name=reports[4].name, provenance={})
    assert pl.read_delta(str(root / "messages")).height == 15


def test_an_interval_the_tables_owner_chose_is_left_as_it_is(tmp_path: Path) -> None:
    messages = tmp_path / "archive" / "messages"
    DeltaTable.create(
        str(messages),
        _delta_schema(table_schema(FILE_SCHEMA)),
        partition_by=list(PARTITIONS),
        configuration={"delta.enableDeletionVectors": "false", "delta.checkpointInterval": "50"},
    )
    env = job_vars(tmp_path)

    result = run_ingest("import", *map(str, daily_reports(tmp_path, 6)), "--bot", BOT, env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    table = DeltaTable(str(messages))
    assert table.metadata().configuration["delta.checkpointInterval"] == "50"
    assert table.version() == 6  # created, then one commit per report: no property commit
    assert not any(n.endswith(".checkpoint.parquet") for n in log_names(tmp_path))
