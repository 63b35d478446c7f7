"""The subject index (ingest.archive.subjects): erasure and subject access read only the files
that hold the person, and never miss one, whatever state the index is in.

Archives are built in-process through the production commit path (``archive_csv_file``):
several bots, reports across years, the subject in a few of them, other people everywhere.
For each state of the index (fresh, stale after a kill between data commit and index, after
compaction, after another subject's erasure, removed and rebuilt by migrate), the test proves
both halves of the promise against the ground truth read independently (polars over the
table): the export's rows are exactly the subject's, and an erasure leaves no row of theirs
and every other row unchanged; and that fewer files were read than the table holds.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.archive.compact import compact_archive
from ingest.archive.delta import open_table
from ingest.archive.forget import SubjectSelection, plan
from ingest.archive.layout import SUBJECTS, subjects_prefix
from ingest.archive.migrate import index_archive
from ingest.archive.snapshot import snapshot_files
from ingest.archive.storage import Storage, as_storage
from ingest.archive.subjects import bucket, check_archive, covered_files, entries, files_to_read
from ingest.export.source import narrow_snapshot, open_snapshot
from ingest.ops.erasure import erase
from ingest.simulator import generate_messages
from ingest.simulator.data import rows_to_csv
from tests.support.archive import read_archive
from tests.support.job import run_ingest
from tests.support.saving import archive_csv_file

pytestmark = pytest.mark.integration

AUDIT_KEY = "test-audit-key-0123456789"
SUBJECT = "4242"
OTHER = "9191"
#: Ids with characters that break naive handling: quotes, slashes, backslashes, non-ASCII, spaces inside.
ODD = ['a"b', "x/y\\z", "Zoë 😀", "01", "id with space", "'; DROP"]


def _owner(row: dict[str, Any]) -> str:
    return str(row["botuser"]["id"])


def _report(
    storage: Storage,
    work: Path,
    bot: str,
    first: date,
    owners: dict[int, str],
    name: str,
    escaped: bool = False,
    generated_as: str = "",
) -> None:
    """One report of ``bot`` over 3 days from ``first``; rows at the given positions belong
    to those owners (the others to generated people)."""
    rows = generate_messages(generated_as or bot, first, first + timedelta(days=2))
    for position, who in owners.items():
        rows[position % len(rows)]["botuser"] = {"id": who, "created_date": "2023-12-01T00:00:00.000000Z"}
    data = rows_to_csv(rows)
    if escaped:  # the id's characters written as JSON escapes: its bytes are not in the file
        for who in set(owners.values()):
            plain = json.dumps(who)
            data = data.replace(
                plain.replace('"', '""').encode(),
                ('""' + "".join(f"\\u{ord(c):04x}" for c in who if ord(c) < 0x10000) + '""').encode(),
            )
    path = work / f"{name}.csv"
    path.write_bytes(data)
    archive_csv_file(
        storage, path, bot_id=bot, raw_name=f"{name}.csv", provenance={"import": {"path": str(path)}}
    )


def _build(work: Path, subjects: list[str] = (SUBJECT,)) -> Storage:  # type: ignore[assignment]
    """Two bots, a report a quarter over three years each; each subject in a few reports
    years apart, another person in many."""
    storage = as_storage(work / "archive")
    day = date(2022, 1, 3)
    for n in range(12):
        for bot in ("bot-a", "bot-b"):
            owners = {5 + n: OTHER, 17: OTHER}
            for k, who in enumerate(subjects):
                if (n + k) % 5 == 0 and bot == ("bot-a", "bot-b")[k % 2]:
                    owners[3 + k] = who
                    owners[40 + k] = who
            _report(storage, work, bot, day, owners, f"{bot}-{n}")
        day += timedelta(days=91)
    return storage


def _rows_of(root: Path, who: str) -> pl.DataFrame:
    frame = read_archive(root)
    return frame.filter(pl.col("botuser").str.json_path_match("$.id") == who).sort("bot_id", "id")


def _exported(storage: Storage, who: str) -> tuple[pl.DataFrame, int, int]:
    """What subject access reads: the snapshot narrowed by the index, filtered by the subject
    expression (the export's own filter); and files read, of all."""
    from ingest.archive.forget import subject_expr

    snap = open_snapshot(storage)
    read, total, _ = narrow_snapshot(snap, [who])
    frame = snap.scan("messages")
    if frame is None:
        return pl.DataFrame(), read, total
    expr = subject_expr(frame.collect_schema().names(), [who])
    assert expr is not None
    return frame.filter(expr).collect().sort("bot_id", "id"), read, total


def _indexed(storage: Storage, who: str) -> list[str]:
    """The index's entries naming ``who``, in any bot."""
    return [
        key
        for bot in ("bot-a", "bot-b")
        for key in entries(storage, "messages", bot, [who])["file"].to_list()
    ]


def _assert_access_and_erasure(root: Path, storage: Storage, who: str, *, narrowed: bool = True) -> None:
    """Export finds exactly their rows; erasure removes exactly them; neither reads every file
    (when ``narrowed``)."""
    truth = _rows_of(root, who)
    assert truth.height > 0
    exported, read, total = _exported(storage, who)
    assert exported.select(truth.columns).equals(truth.select(truth.columns))
    if narrowed:
        assert read < total
    before = read_archive(root)
    found = plan(storage, SubjectSelection((who,)))
    assert sum(found.rows_by_table().values()) == truth.height
    if narrowed:
        assert found.meta["data_files_read"] < found.meta["data_files"]
    erase(storage, [who], [], reason="test", actor="dpo", apply=True, salt=AUDIT_KEY)
    after = read_archive(root)
    assert _rows_of(root, who).height == 0
    others = before.filter(pl.col("botuser").str.json_path_match("$.id") != who)
    assert after.sort("bot_id", "id").equals(others.sort("bot_id", "id"))
    # The index forgets them too: no entry names them any more.
    assert _indexed(storage, who) == []
    assert (
        check_archive(storage, [f.key for f in snapshot_files(open_table(storage, "messages"), "messages")])
        == []
    )


def test_a_fresh_index_reads_only_the_subjects_files(tmp_path: Path) -> None:
    storage = _build(tmp_path)
    files = snapshot_files(open_table(storage, "messages"), "messages")
    holding = {k for k in (f.key for f in files) if SUBJECT in str(read_archive_file(storage, k))}
    read = set()
    for bot in ("bot-a", "bot-b"):
        read |= set(
            files_to_read(storage, "messages", bot, [f.key for f in files if f.bot_id == bot], [SUBJECT])
        )
    assert read == holding  # exactly the files that hold them: no more, no fewer
    _assert_access_and_erasure(tmp_path / "archive", storage, SUBJECT)


def read_archive_file(storage: Storage, key: str) -> list[Any]:
    return pl.read_parquet(storage.source(key))["botuser"].to_list()


def test_a_stale_index_after_a_kill_between_commit_and_index_misses_nothing(tmp_path: Path) -> None:
    """``ingest import`` killed right after its Delta commit (crash point after_commit): the
    report's files are in the table but not in the index; they are read directly."""
    storage = _build(tmp_path)
    rows = generate_messages("bot-a", date(2025, 6, 1), date(2025, 6, 3))
    rows[7]["botuser"] = {"id": SUBJECT, "created_date": "2023-12-01T00:00:00.000000Z"}
    (tmp_path / "late.csv").write_bytes(rows_to_csv(rows))
    env = {
        "INGEST_OUTPUT__ROOT": str(tmp_path / "archive"),
        "INGEST_STATE__PATH": str(tmp_path / "state.sqlite"),
        "INGEST_CRASH_AT": "after_commit",
    }
    done = run_ingest("import", "late.csv", "--bot", "bot-a", env=env, cwd=tmp_path)
    assert done.returncode != 0  # killed
    late = [f.key for f in snapshot_files(open_table(storage, "messages"), "messages") if "2025-06" in f.key]
    assert late  # committed: readers see the rows
    assert not set(late) & covered_files(storage, "messages", "bot-a")  # and the index does not cover them
    assert _rows_of(tmp_path / "archive", SUBJECT).filter(pl.col("date") >= date(2025, 6, 1)).height == 1
    _assert_access_and_erasure(tmp_path / "archive", storage, SUBJECT)


def test_after_compaction_and_another_subjects_erasure(tmp_path: Path) -> None:
    storage = _build(tmp_path)
    # Two reports of one partition's days, so that compaction merges files.
    _report(
        storage, tmp_path, "bot-a", date(2022, 1, 3), {2: SUBJECT, 9: OTHER}, "again", generated_as="bot-z"
    )
    done = compact_archive(storage)
    assert done.partitions > 0
    covered = covered_files(storage, "messages", "bot-a")
    now = {f.key for f in snapshot_files(open_table(storage, "messages"), "messages")}
    assert covered <= now  # the replaced files' entries are gone, the merged ones indexed
    erase(storage, [OTHER], [], reason="test", actor="dpo", apply=True, salt=AUDIT_KEY)
    assert _indexed(storage, OTHER) == []
    _assert_access_and_erasure(tmp_path / "archive", storage, SUBJECT)


def test_migrate_rebuilds_a_missing_index_once(tmp_path: Path) -> None:
    storage = _build(tmp_path)
    for obj in storage.objects(f"{SUBJECTS}/"):
        storage.delete(obj.key)
    # No index: everything is read, nothing missed.
    exported, read, total = _exported(storage, SUBJECT)
    assert read == total and exported.height == _rows_of(tmp_path / "archive", SUBJECT).height
    assert index_archive(storage) == total
    assert index_archive(storage) == 0  # idempotent: nothing left to read
    _assert_access_and_erasure(tmp_path / "archive", storage, SUBJECT)


def test_verify_names_a_covered_file_whose_person_the_index_lacks(tmp_path: Path) -> None:
    storage = _build(tmp_path)
    prefix = subjects_prefix("messages", "bot-a")
    parts = [o.key for o in storage.objects(f"{prefix}bucket={bucket(SUBJECT):02d}/")]
    part = next(k for k in parts if SUBJECT in pl.read_parquet(storage.source(k))["subject"].to_list())
    table = pl.read_parquet(storage.source(part)).filter(pl.col("subject") != SUBJECT)
    storage.delete(part)
    table.write_parquet(storage.source(part))
    keys = [f.key for f in snapshot_files(open_table(storage, "messages"), "messages")]
    problems = check_archive(storage, keys)
    assert problems and all("missing from the subject index" in p for p in problems)


def test_an_index_from_another_archive_is_read_around_named_by_verify_and_rebuilt_by_migrate(
    tmp_path: Path,
) -> None:
    """Two archives of the same reports: the first archived a small report (the subject's
    row among it) before the big one, so its file of the big report lacks that row (a
    duplicate); the second archived the big report alone. Same data file keys, other
    contents. The second archive given the first's index: searches read the file anyway
    (its size is not the one indexed), verify names it, migrate rebuilds the index."""
    rows = generate_messages("bot-a", date(2023, 3, 6), date(2023, 3, 8))
    rows[3]["botuser"] = {"id": SUBJECT, "created_date": "2023-12-01T00:00:00.000000Z"}
    roots = {}
    for name, reports in (("first", {"small": rows[:12], "big": rows}), ("second", {"big": rows})):
        work = tmp_path / name
        work.mkdir()
        roots[name] = as_storage(work / "archive")
        for report, data in reports.items():
            (work / f"{report}.csv").write_bytes(rows_to_csv(data))
            path = work / f"{report}.csv"
            archive_csv_file(roots[name], path, bot_id="bot-a", raw_name=path.name, provenance={"import": {}})
    out = roots["second"]
    keys = [f.key for f in snapshot_files(open_table(out, "messages"), "messages")]
    assert set(keys) <= {f.key for f in snapshot_files(open_table(roots["first"], "messages"), "messages")}
    for obj in out.objects(f"{SUBJECTS}/"):
        out.delete(obj.key)
    for obj in roots["first"].objects(f"{SUBJECTS}/"):
        (tmp_path / "second" / "archive" / obj.key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "second" / "archive" / obj.key).write_bytes(roots["first"].read_bytes(obj.key))
    holding = [k for k in keys if SUBJECT in str(read_archive_file(out, k))]
    assert holding and set(holding) <= set(files_to_read(out, "messages", "bot-a", keys, [SUBJECT]))
    problems = check_archive(out, keys)
    assert problems and all("size differs" in p for p in problems)
    index_archive(out)
    assert check_archive(out, keys) == []
    _assert_access_and_erasure(tmp_path / "second" / "archive", out, SUBJECT, narrowed=False)


def test_verify_names_a_lost_bucket_part_and_searches_read_its_files(tmp_path: Path) -> None:
    storage = _build(tmp_path)
    prefix = subjects_prefix("messages", "bot-a")
    lost = [o.key for o in storage.objects(f"{prefix}bucket={bucket(SUBJECT):02d}/")]
    for key in lost:
        storage.delete(key)
    files = [
        f.key for f in snapshot_files(open_table(storage, "messages"), "messages") if f.bot_id == "bot-a"
    ]
    holding = [k for k in files if SUBJECT in str(read_archive_file(storage, k))]
    assert holding and set(holding) <= set(files_to_read(storage, "messages", "bot-a", files, [SUBJECT]))
    problems = check_archive(storage, files)
    assert problems and all("is missing" in p for p in problems)
    assert any(key in p for p in problems for key in lost)
    index_archive(storage)
    assert check_archive(storage, files) == []
    _assert_access_and_erasure(tmp_path / "archive", storage, SUBJECT)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(who=st.sampled_from(ODD), escaped=st.booleans())
def test_odd_ids_written_plain_or_escaped(
    tmp_path_factory: pytest.TempPathFactory, who: str, escaped: bool
) -> None:
    work = tmp_path_factory.mktemp("odd")
    storage = as_storage(work / "archive")
    for n in range(4):
        owners = {3: who, 11: OTHER} if n in (0, 3) else {11: OTHER}
        first = date(2023, 1, 2) + timedelta(days=200 * n)
        _report(storage, work, "bot-a", first, owners, f"r{n}", escaped=escaped)
    _assert_access_and_erasure(work / "archive", storage, who)
