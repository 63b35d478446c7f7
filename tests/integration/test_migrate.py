"""``ingest migrate``: a hive-partitioned archive with manifests becomes Delta tables in place,
no data file rewritten, one commit per report, verify clean after, row counts equal; a run
killed half-way is finished by the next, and a second run commits nothing."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

import ingest.archive.migrate as migrate_module
from ingest.archive.delta import open_table
from ingest.archive.migrate import MigrationRefused, migrate_archive
from ingest.archive.storage import LocalStorage
from ingest.ops.verify import verify_archive
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.job import run_ingest
from tests.support.saving import archive_csv_file

pytestmark = pytest.mark.integration

BOT = "319a0000-0000-4000-8000-0000000000e1"
FIRST, LAST = date(2024, 9, 1), date(2024, 9, 5)


def hive_archive(root: Path, workdir: Path, pieces: int = 3) -> dict[str, int]:
    """An archive as the job wrote it before Delta: the same files and manifests, no
    ``_delta_log`` and no Delta version in the manifests. Returns data files -> inode."""
    rows = generate_messages(BOT, FIRST, LAST)
    for n in range(pieces):
        path = workdir / f"piece-{n}.csv"
        path.write_bytes(rows_to_csv(rows[n::pieces]))
        archive_csv_file(root, path, bot_id=BOT, raw_name=path.name, provenance={"source": "import"})
    shutil.rmtree(root / "messages" / "_delta_log")
    for manifest in (root / "manifests").glob("*.json"):
        doc = json.loads(manifest.read_text())
        doc.pop("delta", None)
        manifest.write_text(json.dumps(doc, indent=2) + "\n")
    return {str(p.relative_to(root)): p.stat().st_ino for p in (root / "messages").rglob("*.parquet")}


def glob_rows(root: Path) -> int:
    return (
        pl.scan_parquet(str(root / "messages" / "bot_id=*" / "*" / "*.parquet"), hive_partitioning=True)
        .collect()
        .height
    )


def test_migrate_commits_every_listed_file_in_place(workdir: Path) -> None:
    root = workdir / "archive"
    files = hive_archive(root, workdir)
    before = glob_rows(root)
    assert any("no Delta table" in p for p in verify_archive(root).problems)

    done = migrate_archive(LocalStorage(root))
    assert (done.commits, done.files, done.rows) == (3, len(files), before)
    assert done.tables == {"messages": 3}  # created, then one commit per report
    report = verify_archive(root)
    assert report.ok, report.problems
    assert report.rows == before
    # No data file rewritten: the same inodes, and nothing new beside them.
    after = {
        str(p.relative_to(root)): p.stat().st_ino
        for p in (root / "messages").rglob("*.parquet")
        if "_delta_log" not in p.parts
    }
    assert after == files
    assert_archive_matches(root, expected_rows([BOT], FIRST, LAST))
    table = open_table(LocalStorage(root), "messages")
    assert table is not None
    assert {c.get("ingest.source") for c in table.history() if c["operation"] == "WRITE"} == {"migrate"}

    again = migrate_archive(LocalStorage(root))
    assert (again.commits, again.already) == (0, 3)


def test_a_migration_killed_half_way_is_finished_by_the_next_run(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = workdir / "archive"
    hive_archive(root, workdir)
    real = migrate_module.commit_report
    calls = []

    def dies_second_time(*args: object, **kwargs: object) -> int | None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(migrate_module, "commit_report", dies_second_time)
    with pytest.raises(RuntimeError):
        migrate_archive(LocalStorage(root))
    monkeypatch.undo()
    done = migrate_archive(LocalStorage(root))
    assert (done.commits, done.already) == (2, 1)
    assert verify_archive(root).ok, verify_archive(root).problems
    assert_archive_matches(root, expected_rows([BOT], FIRST, LAST))


def test_a_changed_file_refuses_the_migration_and_commits_nothing(workdir: Path) -> None:
    root = workdir / "archive"
    files = hive_archive(root, workdir)
    victim = root / sorted(files)[0]
    victim.write_bytes(victim.read_bytes()[:-9] + b"X" + victim.read_bytes()[-8:])
    with pytest.raises(MigrationRefused, match="sha256 differs"):
        migrate_archive(LocalStorage(root))
    assert not (root / "messages" / "_delta_log").exists()


def test_cli_migrate(workdir: Path) -> None:
    root = workdir / "archive"
    hive_archive(root, workdir, pieces=2)
    env = {"INGEST_OUTPUT__ROOT": str(root), "INGEST_STATE__PATH": str(workdir / "state.sqlite")}
    done = run_ingest("migrate", env=env, cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migrated: 2 commit(s)" in done.stdout and "verify: OK" in done.stdout
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 0
    assert run_ingest("verify", "--as-of", "1", env=env, cwd=workdir).returncode == 0  # one report then
    status = run_ingest("status", "--json", env=env, cwd=workdir)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["tables"]["messages"]["version"] == 2
    assert "Delta table messages: version 2" in run_ingest("status", env=env, cwd=workdir).stdout
