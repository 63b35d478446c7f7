"""Exactly once over the whole bot, and conflicts are loud: `ingest import` as a user runs it.

A row whose (bot_id, id) is archived already (on any day) or earlier in the same report is
a plain duplicate when its content is the same, and a conflict otherwise: quarantined with
its reason, recorded in the state store, shown by `ingest status` and `ingest verify`, and
the command exits 1. The archive is read back with DuckDB and polars.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from ingest.simulator import generate_messages, rows_to_csv
from tests.support.job import run_ingest

pytestmark = pytest.mark.integration

BOT = "3f2b8c1e-0000-4000-8000-0000000000c1"


def job_vars(root: Path) -> dict[str, str]:
    """The job's archive and state store under ``root``, on a wide terminal without colours."""
    return {
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "INGEST_OUTPUT__ROOT": str(root / "archive"),
        "INGEST_STATE__PATH": str(root / "state.sqlite"),
    }


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(rows_to_csv(rows))
    return path


def archived(root: Path) -> pl.DataFrame:
    """Every archived row of the bot, with its date partition, by DuckDB."""
    glob = str(root / "archive" / "messages" / "bot_id=*" / "*" / "*.parquet")  # not _delta_log's checkpoints
    return duckdb.sql(
        f"SELECT id, CAST(date AS VARCHAR) AS date, message, source_sha256 "
        f"FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY id"
    ).pl()


def day_rows(day: date, count: int = 5) -> list[dict[str, Any]]:
    return generate_messages(BOT, day, day, seed=3, min_per_day=count, max_per_day=count)


def test_the_same_id_on_another_day_is_a_conflict_never_a_second_row(workdir: Path) -> None:
    env = job_vars(workdir)
    rows = day_rows(date(2024, 3, 1))
    first = run_ingest("import", str(write(workdir / "first.csv", rows)), "--bot", BOT, env=env, cwd=workdir)
    assert first.returncode == 0, first.stderr
    moved = dict(rows[2], timestamp=rows[2]["timestamp"].replace("2024-03-01", "2024-03-02"))
    second = run_ingest(
        "import", str(write(workdir / "moved.csv", [moved])), "--bot", BOT, env=env, cwd=workdir
    )
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"id {moved['id']} is archived with different content" in second.stderr
    table = archived(workdir)
    assert table.height == len(rows)  # one row for that id, on its first day
    assert table.filter(pl.col("id") == moved["id"]).get_column("date").to_list() == ["2024-03-01"]
    assert "1 rejected" in second.stdout


def test_a_forged_report_then_the_genuine_one_is_a_recorded_conflict(workdir: Path) -> None:
    env = job_vars(workdir)
    genuine = day_rows(date(2024, 4, 1))
    forged = [dict(row, message="FORGED") for row in genuine[:2]]
    assert (
        run_ingest(
            "import", str(write(workdir / "export.csv", forged)), "--bot", BOT, env=env, cwd=workdir
        ).returncode
        == 0
    )
    result = run_ingest(
        "import", str(write(workdir / "genuine.csv", genuine)), "--bot", BOT, env=env, cwd=workdir
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 row(s) in conflict with archived rows" in result.stderr
    # The archive keeps one row per id (the forged ones stay until a person decides); the
    # genuine rows of the other ids are written.
    table = archived(workdir)
    assert table.height == len(genuine)
    assert table.get_column("id").n_unique() == len(genuine)
    # Recorded with both hashes and both sources, shown by status and status --json.
    status = run_ingest("status", "--json", env=env, cwd=workdir)
    assert status.returncode == 0, status.stderr
    conflicts = json.loads(status.stdout)["conflicts"]
    assert conflicts["count"] == 2
    genuine_sha = next(
        p.stem
        for p in (workdir / "archive" / "raw" / f"bot_id={BOT}").iterdir()
        if p.stem not in set(table.get_column("source_sha256").head(1).to_list())
    )
    for conflict in conflicts["latest"]:
        assert conflict["bot_id"] == BOT and conflict["row_id"] in {r["id"] for r in forged}
        assert conflict["existing_hash"] != conflict["new_hash"]
        assert conflict["new_source"] == genuine_sha
        assert conflict["existing_source"] == table.filter(pl.col("message") == "FORGED")["source_sha256"][0]
    shown = run_ingest("status", env=env, cwd=workdir)
    assert "conflicts: 2 row(s)" in shown.stderr
    # The quarantine holds the genuine rows with their reason; verify reports them.
    reasons = json.loads((workdir / "archive" / "quarantine" / genuine_sha / "reason.json").read_text())
    assert sum(n for r, n in reasons["reasons"].items() if r.startswith("conflict:")) == 2
    rejected = pl.read_parquet(workdir / "archive" / "quarantine" / genuine_sha / "rejected_rows.parquet")
    assert sorted(rejected.get_column("id").cast(pl.Int64).to_list()) == sorted(r["id"] for r in forged)
    verify = run_ingest("verify", env=env, cwd=workdir)
    assert verify.returncode == 1
    assert "in conflict with archived rows" in verify.stdout + verify.stderr


def test_an_identical_redelivery_is_duplicates_and_exit_0(workdir: Path) -> None:
    env = job_vars(workdir)
    rows = day_rows(date(2024, 5, 1)) + day_rows(date(2024, 5, 2))
    assert (
        run_ingest(
            "import", str(write(workdir / "a.csv", rows)), "--bot", BOT, env=env, cwd=workdir
        ).returncode
        == 0
    )
    # Not the same bytes (other order, one more row): only the new row is written.
    more = day_rows(date(2024, 5, 3), count=1)
    again = run_ingest(
        "import", str(write(workdir / "b.csv", more + rows[::-1])), "--bot", BOT, env=env, cwd=workdir
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(rows) + 1} read = 1 written + {len(rows)} duplicates + 0 rejected" in again.stdout
    assert archived(workdir).height == len(rows) + 1
    status = json.loads(run_ingest("status", "--json", env=env, cwd=workdir).stdout)
    assert status["conflicts"]["count"] == 0
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 0


def test_an_id_twice_in_one_report_with_other_content_is_a_conflict(workdir: Path) -> None:
    env = job_vars(workdir)
    rows = day_rows(date(2024, 6, 1))
    twice = rows + [dict(rows[0], message="changed"), dict(rows[1])]
    result = run_ingest(
        "import", str(write(workdir / "twice.csv", twice)), "--bot", BOT, env=env, cwd=workdir
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{len(twice)} read = {len(rows)} written + 1 duplicates + 1 rejected" in result.stdout
    assert f"id {rows[0]['id']} appears earlier in this report with different content" in result.stderr
    table = archived(workdir)
    assert table.height == len(rows)
    assert table.filter(pl.col("id") == rows[0]["id"])["message"].to_list() == [rows[0]["message"]]


def with_ids(rows: list[dict[str, Any]], ids: list[int]) -> list[dict[str, Any]]:
    """The rows carrying the given ids (the vendor's ids need not follow time)."""
    return [dict(row, id=value) for row, value in zip(rows, ids, strict=True)]


def test_ids_scattered_across_years_and_out_of_time_order_are_found_every_time(workdir: Path) -> None:
    """The check reads only the files whose id range can hold a report's id: an id archived
    years ago, or a small id archived lately (out of time order), is found all the same."""
    env = job_vars(workdir)
    years = {
        2021: day_rows(date(2021, 6, 1)),  # the simulator's ids: they grow with time
        2022: day_rows(date(2022, 6, 1)),
        # Out of time order: 2023's ids below 2021's, one far above everything (a wide range).
        2023: with_ids(day_rows(date(2023, 6, 1)), [101, 102, 103, 104, 9_000_000_000_000]),
        2024: day_rows(date(2024, 6, 1)),
    }
    for year, rows in years.items():
        done = run_ingest(
            "import", str(write(workdir / f"{year}.csv", rows)), "--bot", BOT, env=env, cwd=workdir
        )
        assert done.returncode == 0, done.stdout + done.stderr
    archived_before = archived(workdir)
    day = "2025-09-01"
    new = day_rows(date(2025, 9, 1), count=3)
    same = years[2021][0]  # years later, the same row again: a plain duplicate
    changed = dict(years[2022][1], message="rewritten three years on")  # a conflict across years
    low = dict(years[2023][2], timestamp=new[0]["timestamp"])  # a small id, years apart, other day
    high = dict(years[2023][4], message="other")  # the id far above every other
    repeated = dict(years[2024][3], timestamp=new[1]["timestamp"])  # repeated a year apart
    report = [new[0], same, changed, new[1], low, high, repeated, new[2]]

    result = run_ingest(
        "import", str(write(workdir / "2025.csv", report)), "--bot", BOT, env=env, cwd=workdir
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{len(report)} read = 3 written + 1 duplicates + 4 rejected" in result.stdout
    assert "4 row(s) in conflict with archived rows" in " ".join(result.stderr.split())
    table = archived(workdir)
    assert table.height == archived_before.height + 3 == table.get_column("id").n_unique()
    kept = table.filter(~pl.col("date").eq(day))
    assert kept.equals(archived_before)  # every earlier row as it was, on its first day
    assert sorted(table.filter(pl.col("date") == day).get_column("id").to_list()) == sorted(
        r["id"] for r in new
    )
    status = json.loads(run_ingest("status", "--json", env=env, cwd=workdir).stdout)
    assert status["conflicts"]["count"] == 4
    latest = status["conflicts"]["latest"]
    assert {c["row_id"] for c in latest} == {r["id"] for r in (changed, low, high, repeated)}
    assert all(
        c["reason"].startswith(f"conflict: id {c['row_id']} is archived with different") for c in latest
    )
