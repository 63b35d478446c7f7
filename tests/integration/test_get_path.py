"""The GET fast path (``fetch_range``) against the simulator over loopback.

15-day windows, bisection of truncated (500-row) answers, the POST fallback for a single
day that still hits the cap, and -- the contract that matters -- the same messages archived
via GET and via the emailed CSV give identical archive rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ingest.archive.storage import storage_for
from ingest.mail.attachments import parse_email
from ingest.pipeline.get import GET_MAX_ROWS, fetch_range
from ingest.pipeline.intake import archive_email
from ingest.pipeline.summary import RunSummary
from ingest.request.client import client_from
from ingest.request.requester import advance, plan_backfill
from ingest.settings import Settings, explicit_settings
from ingest.simulator import CertainlySimulator, SimulatorConfig
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import assert_archive_matches, read_archive

pytestmark = pytest.mark.integration

S = WindowState
BOT = "3f2b8c1e-0000-4000-8000-0000000000b1"
TOKEN = "get-path-token"
WAIT = 10.0  # seconds, for any simulator delivery


@pytest.fixture
def make_sim() -> Iterator[Callable[..., CertainlySimulator]]:
    sims: list[CertainlySimulator] = []

    def make(**config: Any) -> CertainlySimulator:
        config.setdefault("delivery_delay", 0.0)
        sim = CertainlySimulator(SimulatorConfig(token=TOKEN, **config), deliver=None).start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop(timeout=5.0)


def make_settings(sim: CertainlySimulator, workdir: Path) -> Settings:
    return explicit_settings(
        certainly={
            "base_url": sim.base_url,
            "token": TOKEN,
            "report_path": sim.config.report_path,
            "timeout": 10,
        },
        requester={"retry_initial": 0.05, "retry_max": 0.2, "delivery_timeout": 3600, "via": "email"},
        output={"root": str(workdir / "archive")},
        state={"path": workdir / "state.sqlite"},
    )


def truth(sim: CertainlySimulator, start: date, end: date, bot: str = BOT) -> dict[tuple[str, int], Any]:
    return {(bot, row["id"]): row for row in sim.expected_rows(bot, start, end)}


def gets(sim: CertainlySimulator) -> list[tuple[str, str]]:
    return [(r.params["fromDate"], r.params["toDate"]) for r in sim.requests if r.method == "GET"]


def archive_by_email(sim: CertainlySimulator, settings: Settings, store: Store) -> RunSummary:
    """Submit every planned window by POST and archive each emailed CSV (the watcher's code path)."""
    summary = RunSummary()
    client = client_from(settings.certainly)
    while store.windows(states=(S.PLANNED,)):
        tick = advance(store, client, settings.requester)
        assert tick.accepted, tick
        assert sim.wait_idle(WAIT), "the simulator did not deliver in time"
        assert len(sim.outbox) == len(sim.exports)
        outcome = archive_email(Path(settings.output.root), store, parse_email(sim.outbox[-1]), summary)
        assert outcome == "archived"
    return summary


def test_forty_days_are_fetched_in_fifteen_day_windows(
    make_sim: Callable[..., CertainlySimulator], tmp_path: Path
) -> None:
    sim = make_sim(min_per_day=5, max_per_day=30)  # 15 days stay under 500 rows
    settings = make_settings(sim, tmp_path)
    start, end = date(2024, 3, 1), date(2024, 4, 9)
    expected = truth(sim, start, end)

    with Store.open(settings.state.path) as store:
        summary = fetch_range(storage_for(settings), store, client_from(settings.certainly), BOT, start, end)

        assert gets(sim) == [
            ("2024-03-01", "2024-03-15"),
            ("2024-03-16", "2024-03-30"),
            ("2024-03-31", "2024-04-09"),
        ]
        assert (summary.requests, summary.windows_archived, summary.bisected) == (3, 3, 0)
        assert summary.fallback_days == []
        assert summary.rows_written == summary.rows_read == len(expected)
        windows = store.windows(bot_id=BOT)
        assert [(w.from_date, w.to_date, w.state) for w in windows] == [
            (date(2024, 3, 1), date(2024, 3, 15), S.ARCHIVED),
            (date(2024, 3, 16), date(2024, 3, 30), S.ARCHIVED),
            (date(2024, 3, 31), date(2024, 4, 9), S.ARCHIVED),
        ]
        assert sum(w.rows_archived for w in windows) == len(expected)

        # Fetching again adds nothing: every row is recognised as already archived.
        again = fetch_range(storage_for(settings), store, client_from(settings.certainly), BOT, start, end)
        assert (again.rows_written, again.rows_duplicate, again.files_written) == (0, len(expected), 0)

    assert_archive_matches(tmp_path / "archive", expected)


def test_truncated_answer_is_bisected(make_sim: Callable[..., CertainlySimulator], tmp_path: Path) -> None:
    sim = make_sim(min_per_day=40, max_per_day=60)  # 15 days >= 600 rows: truncated at 500
    settings = make_settings(sim, tmp_path)
    start, end = date(2024, 5, 1), date(2024, 5, 15)
    expected = truth(sim, start, end)
    assert len(expected) > GET_MAX_ROWS

    with Store.open(settings.state.path) as store:
        summary = fetch_range(storage_for(settings), store, client_from(settings.certainly), BOT, start, end)

        assert gets(sim) == [
            ("2024-05-01", "2024-05-15"),
            ("2024-05-01", "2024-05-08"),
            ("2024-05-09", "2024-05-15"),
        ]
        assert (summary.requests, summary.bisected, summary.windows_archived) == (3, 1, 2)
        assert summary.rows_written == len(expected)
        # Only the halves that were archived are windows; the truncated answer wrote nothing.
        assert [(w.from_date, w.to_date, w.state) for w in store.windows()] == [
            (date(2024, 5, 1), date(2024, 5, 8), S.ARCHIVED),
            (date(2024, 5, 9), date(2024, 5, 15), S.ARCHIVED),
        ]

    assert_archive_matches(tmp_path / "archive", expected)


def test_single_day_over_the_cap_falls_back_to_an_emailed_export(
    make_sim: Callable[..., CertainlySimulator], tmp_path: Path
) -> None:
    sim = make_sim(min_per_day=600, max_per_day=700)  # even one day is truncated by GET
    settings = make_settings(sim, tmp_path)
    start, end = date(2024, 6, 1), date(2024, 6, 2)
    expected = truth(sim, start, end)

    with Store.open(settings.state.path) as store:
        summary = fetch_range(storage_for(settings), store, client_from(settings.certainly), BOT, start, end)

        assert gets(sim) == [
            ("2024-06-01", "2024-06-02"),
            ("2024-06-01", "2024-06-01"),
            ("2024-06-02", "2024-06-02"),
        ]
        assert summary.fallback_days == [start, end]
        assert (summary.windows_archived, summary.rows_written) == (0, 0)
        assert not (tmp_path / "archive" / "messages").exists()  # no truncated day half-archived
        assert [(w.from_date, w.to_date, w.state) for w in store.windows()] == [
            (start, start, S.PLANNED),
            (end, end, S.PLANNED),
        ]

        # The planned POST exports bring every row of those days, well over 500 each.
        emailed = archive_by_email(sim, settings, store)
        assert {w.state for w in store.windows()} == {S.ARCHIVED}
        assert emailed.rows_written == len(expected) > 2 * GET_MAX_ROWS

    assert_archive_matches(tmp_path / "archive", expected)


def comparable(root: Path) -> pl.DataFrame:
    return read_archive(root).drop("source_sha256", "source_kind").sort("bot_id", "id")


@pytest.mark.parametrize(("start", "days"), [(date(2024, 2, 20), 10), (date(2023, 12, 31), 1)])
def test_get_and_emailed_csv_give_identical_archive_rows(
    make_sim: Callable[..., CertainlySimulator], tmp_path: Path, start: date, days: int
) -> None:
    sim = make_sim(min_per_day=5, max_per_day=40)  # <= 400 rows for 10 days: one GET
    end = start + timedelta(days=days - 1)
    via_get = make_settings(sim, tmp_path / "get")
    via_csv = make_settings(sim, tmp_path / "csv")

    with Store.open(via_get.state.path) as store:
        fetched = fetch_range(storage_for(via_get), store, client_from(via_get.certainly), BOT, start, end)
        assert (fetched.requests, fetched.windows_archived) == (1, 1)
    with Store.open(via_csv.state.path) as store:
        plan_backfill(store, [BOT], start, end, window_days=30)
        emailed = archive_by_email(sim, via_csv, store)
        assert len(sim.outbox) == 1

    a, b = read_archive(tmp_path / "get" / "archive"), read_archive(tmp_path / "csv" / "archive")
    assert a["source_kind"].unique().to_list() == ["get"]
    assert b["source_kind"].unique().to_list() == ["csv"]
    assert a.height == b.height == fetched.rows_written == emailed.rows_written == len(truth(sim, start, end))
    assert_frame_equal(comparable(tmp_path / "get" / "archive"), comparable(tmp_path / "csv" / "archive"))
    # And both are the simulator's truth, tricky text (quotes, newlines, non-ASCII) included.
    assert_archive_matches(tmp_path / "csv" / "archive", truth(sim, start, end))
