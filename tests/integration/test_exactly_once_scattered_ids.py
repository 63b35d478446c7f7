"""Breakers for the flat-cost exactly-once check (issue 25): an id archived on any day of the
bot is found again, whatever rewrote its file and whichever process last moved the table.

Ids are drawn scattered (negative, huge, out of time order, one report spanning them all);
between the reports the archive is compacted, another person erased (files rewritten with
new statistics) and checkpointed (more commits than the checkpoint interval), partly by a
second "process" (another Storage object: its own table snapshot and listing cache). Then a
report of archived rows (some with other content) and new ones must give exactly: the same
rows as duplicates, the changed ones as conflicts, the new ones written; and every id once.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.archive.compact import compact_archive, vacuum_archive
from ingest.archive.storage import as_storage
from ingest.ops.erasure import erase
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.archive import read_archive
from tests.support.saving import archive_csv_file

pytestmark = pytest.mark.integration

BOT = "3f2b8c1e-0000-4000-8000-0000000000b1"
TWIN = "3f2b8c1e-0000-4000-8000-0000000000b2"
AUDIT_KEY = "test-audit-key-0123456789"
GONE = "777000777"


def _day_rows(bot: str, day: date, ids: list[int], seed: int) -> list[dict[str, Any]]:
    rows = generate_messages(bot, day, day, seed=seed, min_per_day=len(ids), max_per_day=len(ids))
    return [dict(row, id=value) for row, value in zip(rows, ids, strict=True)]


def _save(root: Path, rows: list[dict[str, Any]], name: str, bot: str = BOT) -> Any:
    return archive_csv_file(
        as_storage(root), rows_to_csv(rows), bot_id=bot, raw_name=f"{name}.csv", provenance={}
    )


ids_strategy = st.lists(
    st.integers(min_value=-(2**62), max_value=2**62), min_size=24, max_size=40, unique=True
)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=ids_strategy, data=st.data())
def test_archived_ids_are_found_after_compaction_erasure_checkpoints_and_another_process(
    tmp_path_factory: pytest.TempPathFactory, ids: list[int], data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("once") / "archive"
    # Seven reports years apart (more commits than the checkpoint interval), ids dealt out in
    # the drawn order (out of time order); two reports share a day (compaction merges them).
    days = [date(2020, 1, 6) + timedelta(days=400 * n) for n in range(6)] + [date(2020, 1, 6)]
    chunks = [ids[n::7] for n in range(7)]
    archived: dict[int, dict[str, Any]] = {}
    for n, (day, chunk) in enumerate(zip(days, chunks, strict=True)):
        rows = _day_rows(BOT, day, chunk, seed=n)
        if n == 2:  # a person erased later: their file is rewritten with new statistics
            rows[0]["botuser"] = {"id": GONE, "created_date": "2020-01-01T00:00:00.000000Z"}
        _save(root, rows, f"r{n}")
        archived.update({row["id"]: row for row in rows})
        if n == 2:
            # The same ids in another bot: never a hit for BOT, never a conflict there.
            _save(root, _day_rows(TWIN, day, chunk, seed=99), "twin", bot=TWIN)
    assert compact_archive(as_storage(root)).partitions >= 1
    erase(as_storage(root), [GONE], [], reason="test", actor="dpo", apply=True, salt=AUDIT_KEY)
    archived = {k: v for k, v in archived.items() if v["botuser"].get("id") != GONE}
    vacuum_archive(as_storage(root), retention_hours=0)
    # The report: archived rows (some changed), and new ids.
    chosen = data.draw(st.lists(st.sampled_from(sorted(archived)), min_size=1, max_size=10, unique=True))
    changed = set(data.draw(st.lists(st.sampled_from(chosen), max_size=3, unique=True)))
    fresh = [value for value in range(2**62 + 1, 2**62 + 4)]
    report = [dict(archived[k], message="edited") if k in changed else dict(archived[k]) for k in chosen]
    report += _day_rows(BOT, date(2031, 5, 5), fresh, seed=7)
    result = _save(root, report, "again")
    assert result.rows_duplicate == len(chosen) - len(changed)
    assert result.rows_conflict == len(changed)
    assert result.rows_written == len(fresh)
    table = read_archive(root).filter(pl.col("bot_id") == BOT)
    assert table.height == table.get_column("id").n_unique() == len(archived) + len(fresh)


def test_a_second_process_committing_between_reports_is_seen(tmp_path: Path) -> None:
    """One long-lived writer (one Storage: its table and listing are cached between reports,
    as in ``watch``) and another process importing, compacting and vacuuming between its
    reports: an id the other process archived is found by the first."""
    root = tmp_path / "archive"
    watch = as_storage(root)
    day = date(2024, 3, 4)
    first = _day_rows(BOT, day, [100, 200, 300], seed=1)
    archive_csv_file(watch, rows_to_csv(first), bot_id=BOT, raw_name="a.csv", provenance={})
    # The other process: the same day's ids in between, then a compaction and a vacuum.
    other = _day_rows(BOT, day, [150, 250], seed=2)
    _save(root, other, "b")
    assert compact_archive(as_storage(root)).partitions == 1
    vacuum_archive(as_storage(root), retention_hours=0)
    again = [dict(other[0], message="edited"), dict(other[1]), dict(first[0])]
    result = archive_csv_file(watch, rows_to_csv(again), bot_id=BOT, raw_name="c.csv", provenance={})
    assert (result.rows_conflict, result.rows_duplicate, result.rows_written) == (1, 2, 0)
    assert read_archive(root).height == 5
