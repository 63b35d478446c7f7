"""The archive's Delta tables on a real S3-compatible server (SeaweedFS, ``weed mini``): one
commit per report with its provenance and application transaction, read back by polars
``scan_delta``; verify (current and ``--as-of``); compaction and vacuum; and several writers
committing to one table at once (put-if-absent: every commit lands once, nothing is lost).
Locally too where the point is the table, not the store."""

from __future__ import annotations

import multiprocessing
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ingest.archive.compact import compact_archive, vacuum_archive
from ingest.archive.delta import APP, app_id, commit_report, open_table
from ingest.archive.layout import is_data_file
from ingest.archive.snapshot import snapshot_files
from ingest.archive.storage import LocalStorage, Storage
from ingest.errors import OutputError
from ingest.ops.verify import verify_archive
from ingest.parse.arrowrows import FILE_SCHEMA
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.archive import expected_rows
from tests.support.saving import archive_csv_file
from tests.support.seaweed import SeaweedS3

pytestmark = pytest.mark.integration

BOT = "de17a000-0000-4000-8000-0000000000d1"
FIRST, LAST = date(2024, 8, 1), date(2024, 8, 6)


def deliver(storage: Storage, workdir: Path, bot: str = BOT, pieces: int = 3) -> list[dict[str, Any]]:
    """The days as ``pieces`` reports, each a share of every day's rows."""
    rows = generate_messages(bot, FIRST, LAST)
    for n in range(pieces):
        path = workdir / f"{bot[:8]}-piece-{n}.csv"
        path.write_bytes(rows_to_csv(rows[n::pieces]))
        archive_csv_file(
            storage,
            path,
            bot_id=bot,
            raw_name=path.name,
            provenance={
                "source": "import",
                "window": {"id": 100 + n},
                "email": {"message_id": f"<piece-{n}@example.test>"},
            },
        )
    return rows


def read(storage: Storage) -> pl.DataFrame:
    table = open_table(storage, "messages")
    assert table is not None
    return (
        pl.scan_delta(table.table_uri, storage_options=storage.storage_options).collect().sort("bot_id", "id")
    )


def test_one_commit_per_report_with_provenance_on_s3(seaweed: SeaweedS3, workdir: Path) -> None:
    storage = seaweed.storage("commits", workdir / "staging")
    rows = deliver(storage, workdir)
    frame = seaweed.table("commits")
    truth = expected_rows([BOT], FIRST, LAST)
    assert sorted(zip(frame["bot_id"], frame["id"], strict=True)) == sorted(truth)
    assert frame.height == len(rows)

    table = open_table(storage, "messages")
    assert table is not None and table.version() == 3  # created empty, then one commit per report
    writes = [c for c in table.history() if c["operation"] == "WRITE"]
    assert len(writes) == 3
    for commit in writes:
        sha = commit["ingest.source_sha256"]
        assert table.transaction_version(app_id(sha)) == 1
        assert commit["ingest.bot_id"] == BOT
        assert commit["ingest.window_id"] in (100, 101, 102)
        assert commit["ingest.message_id"].startswith("<piece-")
        counts = commit["ingest.counts"]
        assert (
            counts["rows_read"] == counts["rows_written"] + counts["rows_duplicate"] + counts["rows_rejected"]
        )
    assert sum(c["ingest.counts"]["rows_written"] for c in writes) == len(rows)
    assert all(k.startswith(f"{APP}:") for k in [app_id("x")])

    report = verify_archive(storage)
    assert report.ok, report.problems
    assert report.tables == {"messages": 3} and report.rows == len(rows)
    older = verify_archive(storage, as_of=2)  # two reports committed then: their manifests only
    assert older.ok, older.problems
    assert older.rows == sum(c["ingest.counts"]["rows_written"] for c in writes if c["version"] <= 2)


def test_a_report_committed_before_is_never_committed_twice(workdir: Path) -> None:
    """The application transaction: committing the same report again (a run killed after its
    commit, before its manifest) adds nothing and returns the first commit's version."""
    storage = LocalStorage(workdir / "archive")
    deliver(storage, workdir, pieces=1)
    table = open_table(storage, "messages")
    assert table is not None
    files = snapshot_files(table, "messages")
    sha = table.history(1)[0]["ingest.source_sha256"]
    version = commit_report(
        storage, "messages", BOT, [(f.key, f.rows or 0) for f in files], sha, FILE_SCHEMA, {"source": "again"}
    )
    assert version == 1
    again = open_table(storage, "messages")
    assert again is not None and again.version() == 1
    assert verify_archive(storage).ok


def test_a_table_with_deletion_vectors_is_refused(workdir: Path) -> None:
    storage = LocalStorage(workdir / "archive")
    deliver(storage, workdir, pieces=1)
    table = open_table(storage, "messages")
    assert table is not None
    table.alter.set_table_properties({"delta.enableDeletionVectors": "true"}, raise_if_not_exists=False)
    with pytest.raises(OutputError, match="deletion vectors"):
        open_table(storage, "messages")
    assert not verify_archive(storage).ok


def test_compaction_and_vacuum_on_s3(seaweed: SeaweedS3, workdir: Path) -> None:
    storage = seaweed.storage("compact", workdir / "staging")
    deliver(storage, workdir)
    before = read(storage)
    done = compact_archive(storage)
    assert (done.partitions, done.files_before, done.files_after) == (6, 18, 6)
    assert_frame_equal(read(storage), before)
    assert verify_archive(storage).ok, verify_archive(storage).problems
    files = [k for k in seaweed.keys("compact/messages/") if is_data_file(k.removeprefix("compact/"))]
    assert len(files) == 18 + 6  # replaced files stay until vacuum
    swept = vacuum_archive(storage, retention_hours=0)
    assert len(swept.removed["messages"]) == 18
    assert swept.left["messages"] == []  # what vacuum left outside the snapshot: nothing
    files = [k for k in seaweed.keys("compact/messages/") if is_data_file(k.removeprefix("compact/"))]
    assert len(files) == 6
    assert_frame_equal(read(storage), before)
    assert verify_archive(storage).ok, verify_archive(storage).problems


def _writer(args: tuple[dict[str, str], str, str, int, Any]) -> str:
    """One writer process: archive one bot's report into the shared table. Returns
    ``"landed v<N>"`` or ``"refused: <one line>"`` (a clean failure)."""
    options, workdir, bot, n, barrier = args
    seaweed = SeaweedS3(int(options["port"]), options["bucket"])
    storage = seaweed.storage("concurrent", Path(workdir) / f"staging-{n}")
    path = Path(workdir) / f"writer-{n}.csv"
    path.write_bytes(rows_to_csv(generate_messages(bot, FIRST, LAST)))
    if barrier is not None:
        barrier.wait(timeout=60)
    try:
        result = archive_csv_file(
            storage, path, bot_id=bot, raw_name=path.name, provenance={"source": f"writer-{n}"}
        )
    except OutputError as err:
        assert "\n" not in str(err)
        return f"refused: {err}"
    return f"landed v{result.version}"


def test_concurrent_writers_on_s3_each_land_once_at_their_own_version(
    seaweed: SeaweedS3, workdir: Path
) -> None:
    """Four processes (four bots, no shared lock) commit to one table at once. Each either
    lands at the version its commit really has (put-if-absent: a loser retries at the next
    version) or is refused cleanly; nothing is lost. Run again (as the next scheduled job
    would), each that landed is recognised and reports the same version; any refused one
    lands now: every row is there once, each report has one commit, verify is clean."""
    bots = [f"c0ca0000-0000-4000-8000-00000000000{n}" for n in range(4)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(len(bots))
    options = {"port": str(seaweed.port), "bucket": seaweed.bucket}
    with context.Pool(len(bots)) as pool:
        first = pool.map(_writer, [(options, str(workdir), bot, n, barrier) for n, bot in enumerate(bots)])
    assert all(o.startswith(("landed v", "refused: ")) for o in first), first
    storage = seaweed.storage("concurrent", workdir / "staging")
    table = open_table(storage, "messages")
    assert table is not None
    version_of = {
        c["ingest.source"]: f"landed v{c['version']}" for c in table.history() if "ingest.source" in c
    }
    landed = {f"writer-{n}": o for n, o in enumerate(first) if o.startswith("landed")}
    # Each writer was told the version its own commit has: distinct versions, none lost.
    assert landed == {source: version_of[source] for source in landed}, (first, version_of)
    again = [_writer((options, str(workdir), bot, n, None)) for n, bot in enumerate(bots)]
    table = open_table(storage, "messages")
    assert table is not None
    version_of = {
        c["ingest.source"]: f"landed v{c['version']}" for c in table.history() if "ingest.source" in c
    }
    assert again == [version_of[f"writer-{n}"] for n in range(len(bots))], (first, again, version_of)
    assert all(again[n] == o for n, o in enumerate(first) if o.startswith("landed")), (first, again)
    reports = [c.get("ingest.source") for c in table.history() if c.get("ingest.source")]
    assert sorted(reports) == sorted(f"writer-{n}" for n in range(len(bots))), (first, reports)
    frame = read(storage)
    truth = expected_rows(bots, FIRST, LAST)
    # Nothing lost, nothing twice.
    assert sorted(zip(frame["bot_id"], frame["id"], strict=True)) == sorted(truth)
    assert verify_archive(storage).ok, verify_archive(storage).problems


def _same_report(args: tuple[str, str, list[tuple[str, int]], Any]) -> str:
    """One of two processes committing the very same report at once."""
    root, sha, files, barrier = args
    storage = LocalStorage(Path(root))
    barrier.wait(timeout=60)
    try:
        return f"v{commit_report(storage, 'messages', BOT, files, sha, FILE_SCHEMA, {'source': 'race'})}"
    except OutputError as err:
        return f"refused: {err}"


def test_the_same_report_committed_by_two_writers_at_once_lands_once(workdir: Path) -> None:
    """Two writers race to commit one report's files: its application transaction makes the
    loser's commit conflict (or, if it looked later, see the winner's): one commit, rows once."""
    storage = LocalStorage(workdir / "archive")
    deliver(storage, workdir, pieces=1)
    table = open_table(storage, "messages")
    assert table is not None
    files = [(f.key, f.rows or 0) for f in snapshot_files(table, "messages")]
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(2)
    sha = "f" * 64
    with context.Pool(2) as pool:
        outcomes = pool.map(_same_report, [(str(workdir / "archive"), sha, files, barrier)] * 2)
    table = open_table(storage, "messages")
    assert table is not None
    commits = [c for c in table.history() if c.get("ingest.source") == "race"]
    assert len(commits) == 1, outcomes
    assert table.transaction_version(app_id(sha)) == 1
    assert any(o.startswith("v") for o in outcomes), outcomes
    assert read(storage).height == len(generate_messages(BOT, FIRST, LAST))
