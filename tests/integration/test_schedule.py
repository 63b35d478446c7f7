"""Schedule mode: with INGEST_CERTAINLY__BOTS set, every `ingest run` keeps each bot
current up to yesterday (UTC) with no arguments, by email or, when configured, by GET."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from ingest.pipeline.passes import run_once, run_until_done
from ingest.settings import Settings
from ingest.simulator import CertainlySimulator, EmbeddedImap
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.job import job_settings

pytestmark = pytest.mark.integration

BOTS = ["5c4ed01e-0000-4000-8000-000000000001", "5c4ed01e-0000-4000-8000-000000000002"]
TODAY = date(2024, 6, 20)


SIMULATOR = {"delivery_delay": 0.02}  # the simulator of this module (tests/integration/conftest.py)


def scheduled(sim: CertainlySimulator, imap: EmbeddedImap, workdir: Path, **requester: object) -> Settings:
    return job_settings(
        sim,
        imap,
        workdir,
        certainly={"bots": BOTS},
        requester={"poll_interval": 0.05, "schedule_from": "2024-06-01", "via": "email", **requester},
    )


def test_each_run_plans_up_to_yesterday_and_archives_by_email(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    settings = scheduled(sim, imap, tmp_path)
    with Store.open(settings.state.path) as store:
        run_once(settings, store, today=TODAY)
        assert {(w.bot_id, w.from_date, w.to_date) for w in store.windows()} == {
            (bot, date(2024, 6, 1), TODAY - timedelta(days=1)) for bot in BOTS
        }
        run_until_done(settings, store, timeout=60, today=TODAY)
        # The next day's run plans exactly the one new day per bot.
        run_once(settings, store, today=TODAY + timedelta(days=1))
        newest = [w for w in store.windows() if w.from_date == TODAY]
        assert {(w.bot_id, w.to_date) for w in newest} == {(bot, TODAY) for bot in BOTS}
        run_until_done(settings, store, timeout=60, today=TODAY + timedelta(days=1))
        assert {w.state for w in store.windows()} == {WindowState.ARCHIVED}
    assert_archive_matches(tmp_path / "archive", expected_rows(BOTS, date(2024, 6, 1), TODAY))


def test_use_get_fetches_recent_days_without_any_email(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    settings = scheduled(sim, imap, tmp_path, use_get=True, window_days=7)
    with Store.open(settings.state.path) as store:
        summary = run_once(settings, store, today=TODAY)
        assert {w.state for w in store.windows()} == {WindowState.ARCHIVED}
    assert summary.rows_written == len(expected_rows(BOTS, date(2024, 6, 1), TODAY - timedelta(days=1)))
    assert sim.exports == []  # not a single emailed export was needed
    assert_archive_matches(
        tmp_path / "archive", expected_rows(BOTS, date(2024, 6, 1), TODAY - timedelta(days=1))
    )
