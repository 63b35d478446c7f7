"""Report types 2-4 archived as datasets standard/, advanced/, content_management/: by
import, by emailed export (simulator + embedded IMAP, the real CLI) and by GET; read back
with DuckDB and polars as one table; deduplicated; schema drift quarantined."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ingest.ops.verify import verify_archive
from ingest.pipeline.file_import import import_files
from ingest.pipeline.summary import RunSummary
from ingest.report_types import DATASETS
from ingest.simulator import CertainlySimulator, EmbeddedImap, SimulatorConfig
from ingest.simulator.reports import generate_report_rows, report_to_csv
from ingest.state.store import Store
from tests.support.job import job_env, run_ingest

pytestmark = pytest.mark.integration

BOT = "9a8b7c6d-0000-4000-8000-0000000000d4"
FIRST, LAST = date(2024, 5, 1), date(2024, 5, 12)


def write_report(workdir: Path, report_id: int, first: date, last: date, name: str) -> Path:
    path = workdir / name
    path.write_bytes(report_to_csv(report_id, generate_report_rows(report_id, BOT, first, last)))
    return path


def duckdb_rows(root: Path, dataset: str) -> int:
    with duckdb.connect() as con:
        return con.execute(
            f"SELECT count(*) FROM read_parquet('{root}/{dataset}/bot_id=*/*/*.parquet', "
            "hive_partitioning = true, union_by_name = true)"
        ).fetchone()[0]  # type: ignore[index]


@pytest.mark.parametrize("report_id", [2, 3, 4])
def test_each_type_is_archived_typed_and_deduplicated(workdir: Path, report_id: int) -> None:
    root, dataset = workdir / "archive", DATASETS[report_id]
    truth = generate_report_rows(report_id, BOT, FIRST, LAST)
    with Store.open(workdir / "state.sqlite") as store:
        summary = RunSummary()
        import_files(
            root,
            store,
            [write_report(workdir, report_id, FIRST, LAST, "a.csv")],
            BOT,
            summary,
            report_id=report_id,
        )
        assert summary.reports_archived == 1 and summary.rows_written == len(truth)

        frame = pl.scan_parquet(f"{root}/{dataset}/bot_id=*/*/*.parquet", hive_partitioning=True).collect()
        assert frame.height == len(truth) == duckdb_rows(root, dataset)
        assert frame["row_key"].n_unique() == frame.height
        assert frame["bot_id"].unique().to_list() == [BOT]
        assert frame["date"].min() == FIRST and frame["date"].max() == LAST
        ints = [c for c, t in frame.schema.items() if t == pl.Int64]
        assert ints, "counts are typed as integers"
        column = ints[0]
        assert frame[column].sum() == sum(int(r[column]) for r in truth if r[column] not in ("", None))

        # An overlapping later export adds only the days not archived yet.
        later = write_report(workdir, report_id, date(2024, 5, 10), date(2024, 5, 20), "b.csv")
        again = RunSummary()
        import_files(root, store, [later], BOT, again, report_id=report_id)
        new = generate_report_rows(report_id, BOT, date(2024, 5, 13), date(2024, 5, 20))
        assert again.rows_written == len(new)
        assert again.rows_duplicate == again.rows_read - len(new)
        assert duckdb_rows(root, dataset) == len(truth) + len(new)
        assert verify_archive(root, store).ok, verify_archive(root, store).problems


def test_schema_drift_is_quarantined_with_its_reason(workdir: Path) -> None:
    root = workdir / "archive"
    rows = generate_report_rows(2, BOT, FIRST, LAST)
    with Store.open(workdir / "state.sqlite") as store:
        import_files(
            root, store, [write_report(workdir, 2, FIRST, LAST, "a.csv")], BOT, RunSummary(), report_id=2
        )
        drifted = [
            dict(r, conversations="many")
            for r in generate_report_rows(2, BOT, date(2024, 6, 1), date(2024, 6, 3))
        ]
        path = workdir / "drift.csv"
        path.write_bytes(report_to_csv(2, drifted))
        summary = RunSummary()
        import_files(root, store, [path], BOT, summary, report_id=2)
    assert summary.reports_quarantined == 1 and summary.rows_written == 0
    reasons = [json.loads(p.read_text()) for p in (root / "quarantine").rglob("reason.json")]
    assert any("schema drift: column 'conversations'" in r.get("reason", "") for r in reasons)
    assert pl.scan_parquet(f"{root}/standard/bot_id=*/*/*.parquet").collect().height == len(rows)


def test_an_emailed_advanced_report_is_archived_end_to_end(workdir: Path) -> None:
    with (
        EmbeddedImap() as imap,
        CertainlySimulator(
            SimulatorConfig(delivery_delay=0.05, recipient=imap.username), deliver=imap.delivery()
        ) as sim,
    ):
        env = job_env(sim, imap, workdir, INGEST_LOG_FORMAT="text")
        planned = run_ingest(
            "backfill",
            "--bot",
            BOT,
            "--from",
            str(FIRST),
            "--to",
            str(LAST),
            "--report-type",
            "3",
            env=env,
            cwd=workdir,
        )
        assert planned.returncode == 0, planned.stderr
        done = run_ingest("run", "--until-done", "--timeout", "60", env=env, cwd=workdir)
        assert done.returncode == 0, done.stdout + done.stderr
        truth = sim.expected_report_rows(3, BOT, FIRST, LAST)
        status = json.loads(run_ingest("status", "--json", env=env, cwd=workdir).stdout)
        assert [(b["dataset"], b["states"]) for b in status["bots"]] == [("advanced", {"archived": 1})]
        fetched = run_ingest(
            "fetch",
            "--bot",
            BOT,
            "--from",
            str(FIRST),
            "--to",
            str(LAST),
            "--report-type",
            "4",
            env=env,
            cwd=workdir,
        )
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        cm_truth = sim.expected_report_rows(4, BOT, FIRST, LAST)
    root = workdir / "archive"
    assert duckdb_rows(root, "advanced") == len(truth)
    assert duckdb_rows(root, "content_management") == len(cm_truth)
    manifest = json.loads(next((root / "manifests").glob("*.json")).read_text())
    assert manifest["window"]["report_id"] in (3, 4) and manifest["dataset"] in (
        "advanced",
        "content_management",
    )
    checked = run_ingest("verify", env=env, cwd=workdir)
    assert checked.returncode == 0, checked.stdout


def test_verify_finds_a_copied_file_in_a_typed_dataset(workdir: Path) -> None:
    root = workdir / "archive"
    with Store.open(workdir / "state.sqlite") as store:
        import_files(
            root, store, [write_report(workdir, 4, FIRST, LAST, "a.csv")], BOT, RunSummary(), report_id=4
        )
    original = next((root / "content_management").rglob("*.parquet"))
    (original.parent / "part-copy.parquet").write_bytes(original.read_bytes())
    problems = verify_archive(root).problems
    assert any("orphan data file" in p and "part-copy.parquet" in p for p in problems)
    assert any(p.startswith("duplicate (bot_id, row_key)") and "part-copy.parquet" in p for p in problems)
