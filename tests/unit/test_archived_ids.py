"""The exactly-once lookup reads only the files that can hold an id, and misses none.

An archive of a few reports whose ids are scattered (years apart, out of time order, one
file whose range spans all the others) is built once through the production path
(``stage_csv`` + commit). For any ids asked about, :class:`ArchivedIds` answers exactly
what the archive holds (read back with polars, file by file), and the files it read are
only those whose ids (from the files themselves, not from Delta's statistics) can hold one
of them: a new report above every archived id reads no file at all.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.archive.conflicts import ArchivedIds
from ingest.archive.storage import LocalStorage
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.saving import archive_csv_file

BOT = "3f2b8c1e-0000-4000-8000-0000000000a1"
OTHER = "3f2b8c1e-0000-4000-8000-0000000000a2"

#: day -> the ids of that day's report (None: the simulator's, which grow with time).
REPORTS: dict[date, list[int] | None] = {
    date(2021, 1, 4): None,
    date(2022, 7, 1): None,
    date(2023, 2, 1): [5, 6, 7, 8, 9],  # out of time order: below every earlier id
    date(2024, 5, 1): [3, 4_000_000_000_000, 10_000_000_000_000, 11, 12],  # a range spanning all
    date(2025, 9, 1): None,
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, set[int]]]:
    """The archive, and each of the bot's data files with the ids it holds."""
    root = tmp_path_factory.mktemp("archived-ids")
    for n, (day, ids) in enumerate(REPORTS.items()):
        rows = generate_messages(BOT, day, day, seed=n, min_per_day=5, max_per_day=5)
        if ids is not None:
            rows = [dict(row, id=value) for row, value in zip(rows, ids, strict=True)]
        archive_csv_file(root, rows_to_csv(rows), bot_id=BOT, raw_name=f"{day}.csv", provenance={})
    # Another bot's file holding the same ids: never read for this bot, never a hit.
    rows = generate_messages(OTHER, date(2021, 1, 4), date(2021, 1, 4), seed=0, min_per_day=5, max_per_day=5)
    archive_csv_file(root, rows_to_csv(rows), bot_id=OTHER, raw_name="other.csv", provenance={})
    files = {
        str(path.relative_to(root)): set(pl.read_parquet(path).get_column("id").to_list())
        for path in sorted((root / "messages" / f"bot_id={BOT}").rglob("*.parquet"))
    }
    assert len(files) == len(REPORTS)
    return root, files


def read_files(archived: ArchivedIds) -> set[str]:
    return {key for key, read in zip(archived.files, archived.read.tolist(), strict=True) if read}


def could_hold(files: dict[str, set[int]], ids: list[int]) -> set[str]:
    """The files whose own id range holds one of ``ids``."""
    return {key for key, held in files.items() if any(min(held) <= i <= max(held) for i in ids)}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_archived_id_is_found_and_only_files_that_can_hold_one_are_read(
    archive: tuple[Path, dict[str, set[int]]], data: st.DataObject
) -> None:
    root, files = archive
    everything = sorted(set().union(*files.values()))
    asked = data.draw(
        st.lists(
            st.one_of(st.sampled_from(everything), st.integers(-(2**63), 2**63 - 1)),
            max_size=30,
        )
    )
    archived = ArchivedIds.load(LocalStorage(root), BOT)

    found = archived.contains(np.array(asked, dtype=np.int64))

    assert found.tolist() == [i in everything for i in asked]
    assert read_files(archived) <= could_hold(files, asked)
    hits = [i for i in asked if i in everything]
    if hits:
        holders = archived.file_of(np.array(hits, dtype=np.int64))
        assert all(i in files[key] for i, key in zip(hits, holders, strict=True))


def test_a_new_report_above_every_archived_id_reads_no_file(
    archive: tuple[Path, dict[str, set[int]]],
) -> None:
    root, _ = archive
    archived = ArchivedIds.load(LocalStorage(root), BOT)
    new = np.arange(10_000_000_000_001, 10_000_000_002_001, dtype=np.int64)

    assert not archived.contains(new).any()
    assert read_files(archived) == set()


def test_lookups_batch_by_batch_read_each_file_once(archive: tuple[Path, dict[str, set[int]]]) -> None:
    root, files = archive
    archived = ArchivedIds.load(LocalStorage(root), BOT)
    everything = sorted(set().union(*files.values()))
    for value in everything + everything:  # as the stream asks: one batch after another
        assert archived.contains(np.array([value], dtype=np.int64)).tolist() == [True]
    assert read_files(archived) == set(files)
    assert len(archived.ids) == len(everything)  # each file's ids loaded once


def test_a_file_without_id_statistics_is_always_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file committed without statistics (its footer unreadable then, or another writer's)
    has no known range: every lookup reads it, so its ids are still found."""
    import ingest.archive.delta as delta

    day = date(2022, 2, 2)
    rows = [
        dict(row, id=value)
        for row, value in zip(
            generate_messages(BOT, day, day, seed=5, min_per_day=3, max_per_day=3), [7, 70, 700], strict=True
        )
    ]
    with monkeypatch.context() as patched:
        patched.setattr(delta, "file_stats", lambda out, key, rows: {"numRecords": rows})
        archive_csv_file(tmp_path, rows_to_csv(rows), bot_id=BOT, raw_name="nostats.csv", provenance={})
    archived = ArchivedIds.load(LocalStorage(tmp_path), BOT)
    assert archived.ranged.tolist() == [False]

    assert archived.contains(np.array([70, 71, 10**15], dtype=np.int64)).tolist() == [True, False, False]
    assert archived.read.tolist() == [True]
