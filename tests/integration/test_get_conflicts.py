"""Exactly once over the whole bot on the GET path, as on the emailed one: `ingest fetch` as a user runs it.

A CSV is archived with `ingest import`, then the simulator's GET answer (over HTTP on
loopback) brings some of its ids again: the same content is a plain duplicate; another day
or other text is a conflict -- quarantined with its reason, recorded in the state store,
shown by `ingest status` and `ingest verify`, and the command exits 1, as `ingest import`
does (tests/integration/test_conflicts.py). The archive is read back with polars
(``read_delta``) and DuckDB (the Delta snapshot's files).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from ingest.simulator import CertainlySimulator, SimulatorConfig, rows_to_csv
from ingest.simulator.data import rows_to_json
from ingest.simulator.faults import Fault
from tests.support.archive import duckdb_snapshot
from tests.support.job import run_ingest

pytestmark = pytest.mark.integration

BOT = "3f2b8c1e-0000-4000-8000-0000000000c2"
TOKEN = "get-conflicts-token"
DAY1, DAY2 = date(2024, 3, 1), date(2024, 3, 2)


@pytest.fixture
def sim() -> Iterator[CertainlySimulator]:
    server = CertainlySimulator(
        SimulatorConfig(token=TOKEN, delivery_delay=0.0, min_per_day=5, max_per_day=5), deliver=None
    ).start()
    yield server
    server.stop(timeout=5.0)


def job_vars(sim: CertainlySimulator, root: Path) -> dict[str, str]:
    """The job's API, archive and state store, on a wide terminal without colours."""
    return {
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "INGEST_CERTAINLY__BASE_URL": sim.base_url,
        "INGEST_CERTAINLY__TOKEN": TOKEN,
        "INGEST_CERTAINLY__REPORT_PATH": sim.config.report_path,
        "INGEST_OUTPUT__ROOT": str(root / "archive"),
        "INGEST_STATE__PATH": str(root / "state.sqlite"),
    }


def import_csv(env: dict[str, str], root: Path, rows: list[dict[str, Any]]) -> str:
    """`ingest import` of the rows as an emailed CSV; returns the CSV's sha256."""
    data = rows_to_csv(rows)
    path = root / "export.csv"
    path.write_bytes(data)
    result = run_ingest("import", str(path), "--bot", BOT, env=env, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return hashlib.sha256(data).hexdigest()


def fetch(env: dict[str, str], root: Path) -> Any:
    return run_ingest(
        "fetch", "--bot", BOT, "--from", DAY1.isoformat(), "--to", DAY2.isoformat(), env=env, cwd=root
    )


def by_polars(root: Path) -> pl.DataFrame:
    return pl.read_delta(str(root / "archive" / "messages")).sort("id")


def by_duckdb(root: Path) -> pl.DataFrame:
    return duckdb.sql(
        f"SELECT id, CAST(date AS VARCHAR) AS date, message, source_sha256 "
        f"FROM {duckdb_snapshot(root / 'archive')} ORDER BY id"
    ).pl()


def test_a_get_answer_with_archived_ids_on_another_day_or_changed_is_a_recorded_conflict(
    sim: CertainlySimulator, tmp_path: Path
) -> None:
    env = job_vars(sim, tmp_path)
    first = sim.expected_rows(BOT, DAY1, DAY1)
    later = sim.expected_rows(BOT, DAY2, DAY2)
    csv_sha = import_csv(env, tmp_path, first)
    same, changed, moved = first[0], dict(first[1], message="changed"), dict(first[2])
    moved["timestamp"] = moved["timestamp"].replace(DAY1.isoformat(), DAY2.isoformat())
    answer = Fault(status=200, body=rows_to_json([same, changed, moved, *later]))
    get_sha = hashlib.sha256(answer.payload()).hexdigest()
    sim.script_get(answer)

    result = fetch(env, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    # rows read = written + duplicates + rejected: the day-2 rows are new, one row is a
    # plain duplicate, the changed and the moved rows are conflicts.
    assert f"rows {3 + len(later)} read = {len(later)} written + 1 duplicates + 2 rejected" in result.stdout
    assert "2 row(s) in conflict with archived rows" in result.stderr
    # One row per id, on its first day and with its first text, read by polars and DuckDB.
    for table in (by_polars(tmp_path), by_duckdb(tmp_path)):
        assert table.height == len(first) + len(later)
        assert table.get_column("id").n_unique() == table.height
        assert table.filter(pl.col("id") == moved["id"]).get_column("date").cast(pl.String).to_list() == [
            DAY1.isoformat()
        ]
        assert table.filter(pl.col("id") == changed["id"])["message"].to_list() == [
            first[1]["message"] or None
        ]
    # Quarantined under the GET answer's sha256, with reasons starting "conflict:".
    quarantine = tmp_path / "archive" / "quarantine" / get_sha
    reasons = json.loads((quarantine / "reason.json").read_text())["reasons"]
    assert sum(n for r, n in reasons.items() if r.startswith("conflict:")) == 2
    rejected = pl.read_parquet(quarantine / "rejected_rows.parquet")
    assert sorted(rejected.get_column("id").cast(pl.Int64).to_list()) == sorted([changed["id"], moved["id"]])
    for row in (changed, moved):
        (reason,) = rejected.filter(pl.col("id").cast(pl.Int64) == row["id"])["reason"].to_list()
        assert reason.startswith(f"conflict: id {row['id']} is archived with different content")
    # Recorded in the state store like the CSV path's conflicts, shown by status and verify.
    status = run_ingest("status", "--json", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    conflicts = json.loads(status.stdout)["conflicts"]
    assert conflicts["count"] == 2
    for conflict in conflicts["latest"]:
        assert conflict["bot_id"] == BOT and conflict["row_id"] in {changed["id"], moved["id"]}
        assert conflict["existing_hash"] != conflict["new_hash"]
        assert (conflict["existing_source"], conflict["new_source"]) == (csv_sha, get_sha)
        assert conflict["reason"].startswith("conflict:")
    assert "conflicts: 2 row(s)" in run_ingest("status", env=env, cwd=tmp_path).stderr
    verify = run_ingest("verify", env=env, cwd=tmp_path)
    assert verify.returncode == 1
    assert "in conflict with archived rows" in verify.stdout + verify.stderr


def test_an_identical_redelivery_via_get_is_duplicates_and_exit_0(
    sim: CertainlySimulator, tmp_path: Path
) -> None:
    env = job_vars(sim, tmp_path)
    first = sim.expected_rows(BOT, DAY1, DAY1)
    later = sim.expected_rows(BOT, DAY2, DAY2)
    import_csv(env, tmp_path, first)

    # The simulator's own answer: day 1 as archived from the CSV (other bytes, JSON), day 2 new.
    result = fetch(env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    total = len(first) + len(later)
    assert f"rows {total} read = {len(later)} written + {len(first)} duplicates + 0 rejected" in result.stdout
    # Fetched again: every row a plain duplicate.
    again = fetch(env, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"rows {total} read = 0 written + {total} duplicates + 0 rejected" in again.stdout
    for table in (by_polars(tmp_path), by_duckdb(tmp_path)):
        assert table.height == total == table.get_column("id").n_unique()
    status = json.loads(run_ingest("status", "--json", env=env, cwd=tmp_path).stdout)
    assert status["conflicts"]["count"] == 0
    assert run_ingest("verify", env=env, cwd=tmp_path).returncode == 0


def test_an_id_fetched_by_get_then_on_another_day_by_get_is_a_conflict(
    sim: CertainlySimulator, tmp_path: Path
) -> None:
    env = job_vars(sim, tmp_path)
    first = sim.expected_rows(BOT, DAY1, DAY1)
    assert fetch(env, tmp_path).returncode == 0  # both days, by GET only
    moved = dict(first[0])
    moved["timestamp"] = moved["timestamp"].replace(DAY1.isoformat(), DAY2.isoformat())
    sim.script_get(Fault(status=200, body=rows_to_json([moved])))

    result = fetch(env, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "rows 1 read = 0 written + 0 duplicates + 1 rejected" in result.stdout
    table = by_polars(tmp_path)
    assert table.filter(pl.col("id") == moved["id"]).get_column("date").cast(pl.String).to_list() == [
        DAY1.isoformat()
    ]
    assert json.loads(run_ingest("status", "--json", env=env, cwd=tmp_path).stdout)["conflicts"]["count"] == 1


def test_an_id_twice_in_one_get_answer_with_other_content_is_a_recorded_conflict(
    sim: CertainlySimulator, tmp_path: Path
) -> None:
    env = job_vars(sim, tmp_path)
    rows = sim.expected_rows(BOT, DAY1, DAY1)
    sim.script_get(Fault(status=200, body=rows_to_json([*rows, dict(rows[0], message="changed"), rows[1]])))

    result = fetch(env, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"rows {len(rows) + 2} read = {len(rows)} written + 1 duplicates + 1 rejected" in result.stdout
    shown = " ".join(result.stderr.split())  # the console wraps long lines
    assert f"id {rows[0]['id']} appears earlier in this report with different content" in shown
    conflicts = json.loads(run_ingest("status", "--json", env=env, cwd=tmp_path).stdout)["conflicts"]
    assert conflicts["count"] == 1
    (conflict,) = conflicts["latest"]
    assert (conflict["row_id"], conflict["row"], conflict["existing_source"]) == (
        rows[0]["id"],
        len(rows) + 1,
        "this report",
    )
    assert by_polars(tmp_path).height == len(rows)


def test_get_finds_ids_archived_years_before_and_out_of_time_order(
    sim: CertainlySimulator, tmp_path: Path
) -> None:
    """The GET path looks ids up as the emailed path does (only the files whose id range can
    hold one): an id from years before, or a small id archived later, is still a conflict."""
    env = job_vars(sim, tmp_path)
    old = sim.expected_rows(BOT, date(2021, 3, 1), date(2021, 3, 1))
    odd = [
        dict(row, id=value)  # 2023's ids below 2021's, one far above everything
        for row, value in zip(
            sim.expected_rows(BOT, date(2023, 3, 1), date(2023, 3, 1)),
            [11, 12, 13, 14, 9_000_000_000_000],
            strict=True,
        )
    ]
    import_csv(env, tmp_path, old)
    import_csv(env, tmp_path, odd)
    later = sim.expected_rows(BOT, DAY2, DAY2)
    stamp1 = sim.expected_rows(BOT, DAY1, DAY1)[0]["timestamp"]
    repeated = dict(old[0], timestamp=stamp1)  # three years apart
    low = dict(odd[1], timestamp=later[0]["timestamp"])
    high = dict(odd[4], timestamp=later[1]["timestamp"])
    sim.script_get(Fault(status=200, body=rows_to_json([repeated, low, high, *later])))

    result = fetch(env, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"rows {3 + len(later)} read = {len(later)} written + 0 duplicates + 3 rejected" in result.stdout
    for table in (by_polars(tmp_path), by_duckdb(tmp_path)):
        assert table.height == len(old) + len(odd) + len(later) == table.get_column("id").n_unique()
        dates = dict(
            zip(
                table.get_column("id").to_list(),
                table.get_column("date").cast(pl.String).to_list(),
                strict=True,
            )
        )
        assert (dates[repeated["id"]], dates[low["id"]], dates[high["id"]]) == (
            "2021-03-01",
            "2023-03-01",
            "2023-03-01",
        )
    conflicts = json.loads(run_ingest("status", "--json", env=env, cwd=tmp_path).stdout)["conflicts"]
    assert conflicts["count"] == 3
    assert {c["row_id"] for c in conflicts["latest"]} == {repeated["id"], low["id"], high["id"]}
