"""A year for 3 bots through a real Dovecot, with a simulator that loses 1 email in 10 and
answers "in progress" to 1 POST in 3: ``run_until_done`` must end with every day archived
once, and ``collect_status`` must say so. Prints the measured outcome (quoted in issue 4).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ingest.ops.status import collect_status
from ingest.pipeline.passes import run_until_done
from ingest.request.requester import plan_backfill
from ingest.settings import Settings
from ingest.simulator import CertainlySimulator, ImapDelivery, SimulatorConfig
from ingest.state.store import Store
from ingest.state.windows import WindowState, iter_days
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.dovecot import Dovecot
from tests.support.job import Account, job_settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

S = WindowState
USER, PASSWORD = "owner@example.test", "year-secret"
USERS = {USER: PASSWORD}
BOTS = [
    "7d1e0c55-aaaa-4b1a-9d4e-000000000001",
    "7d1e0c55-bbbb-4b1a-9d4e-000000000002",
    "7d1e0c55-cccc-4b1a-9d4e-000000000003",
]
START, END = date(2023, 1, 1), date(2023, 12, 31)
RUN_TIMEOUT = 150.0  # seconds for run_until_done; the whole test must stay under 3 minutes


@pytest.fixture
def simulator(dovecot: Dovecot) -> Iterator[CertainlySimulator]:
    delivery = ImapDelivery(dovecot.host, dovecot.port, USER, PASSWORD, folder="INBOX", timeout=10)
    config = SimulatorConfig(
        token="year-token", delivery_delay=0.05, recipient=USER, lose_every=10, in_progress_every=3
    )
    with CertainlySimulator(config, deliver=delivery) as sim:
        yield sim


def settings_for(sim: CertainlySimulator, dovecot: Dovecot, workdir: Path) -> Settings:
    return job_settings(
        sim,
        Account(dovecot.host, dovecot.port, USER, PASSWORD),
        workdir,
        certainly={"timeout": 10},
        requester={
            "via": "email",  # the emailed path, as before routing (issue 27)
            "window_days": 30,
            "poll_interval": 0.05,
            "retry_initial": 0.05,
            "retry_max": 0.2,
            "delivery_timeout": 1.5,
            "split_after_losses": 2,
            "max_attempts": 8,
        },
        imap_options={"timeout": 10, "allowed_senders": ["@certainly.example"]},
    )


def test_a_year_for_three_bots_ends_complete_despite_losses_and_busy_answers(
    simulator: CertainlySimulator, dovecot: Dovecot, tmp_path: Path
) -> None:
    settings = settings_for(simulator, dovecot, tmp_path)
    truth = expected_rows(BOTS, START, END)
    with Store.open(settings.state.path) as store:
        planned = plan_backfill(store, BOTS, START, END, window_days=30)
        started = time.monotonic()
        summary = run_until_done(settings, store, timeout=RUN_TIMEOUT)
        wall = time.monotonic() - started

        windows = store.windows()
        answers = Counter(a["outcome"] for w in windows for a in store.api_answers(w.id))
        states = Counter(w.state.value for w in windows)
        status = collect_status(store)
        outcome = {
            "planned": len(planned),
            "windows": len(windows),
            "states": dict(states),
            "posts": sum(answers.values()),
            "answers": dict(answers),
            "retries": answers["in_progress"] + answers["transient"],
            "lost": sum(w.losses for w in windows),
            "split": states["split"],
            "emails": store.email_counts().get("archived", 0),
            "rows": summary.rows_written,
            "wall_s": round(wall, 1),
        }
        print(f"\nyear backfill outcome: {outcome}")

        # Every window archived, or split with its halves archived: each day of each bot is
        # covered by exactly one archived window.
        assert set(states) <= {"archived", "split"}, outcome
        for bot in BOTS:
            days = Counter(
                day
                for w in windows
                if w.bot_id == bot and w.state is S.ARCHIVED
                for day in iter_days(w.from_date, w.to_date)
            )
            assert sorted(days) == list(iter_days(START, END)) and set(days.values()) == {1}, (bot, outcome)
        assert not summary.needs_attention, (summary.problems, outcome)

        # The faults really happened, and each was absorbed.
        lost_by_sim = sum(1 for e in simulator.exports if e.lost)
        assert lost_by_sim >= 3 and outcome["lost"] == lost_by_sim == summary.lost, outcome
        assert (
            answers["in_progress"] >= outcome["posts"] // 3 - 1 and answers["in_progress"] == summary.deferred
        ), outcome
        assert answers["accepted"] == len(simulator.exports) == outcome["emails"] + lost_by_sim, outcome
        assert answers.keys() <= {"accepted", "in_progress"}, outcome

        # Status says so: per bot, only archived (and split) windows, nothing in flight or pending.
        assert {b["bot_id"] for b in status["bots"]} == set(BOTS)
        for bot in status["bots"]:
            assert set(bot["states"]) <= {"archived", "split"}, bot
            assert bot["in_flight"] is None and bot["next_retry_at"] is None, bot
            assert bot["last_error"] is None, bot
            assert bot["covered_until"] == END.isoformat(), bot
            assert bot["rows_archived"] == sum(1 for key in truth if key[0] == bot["bot_id"]), bot
        assert status["attachments"]["rows_written"] == len(truth)
        assert status["emails"] == {"archived": outcome["emails"]}

    frame = assert_archive_matches(tmp_path / "archive", truth)
    assert frame.select("bot_id", "date").unique().height == len(BOTS) * len(list(iter_days(START, END)))
    assert summary.rows_written == len(truth) and summary.rows_duplicate == 0, outcome
    assert wall < RUN_TIMEOUT, f"too slow: {outcome}"
