"""The requester against the real simulator over loopback HTTP: planning and the window lifecycle."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from ingest.errors import TokenRejected
from ingest.request.client import CertainlyClient
from ingest.request.requester import advance, expire_lost, plan_backfill
from ingest.settings import RequesterSettings
from ingest.simulator import CertainlySimulator, SimulatorConfig
from ingest.state.store import Store
from ingest.state.windows import WindowState

pytestmark = pytest.mark.integration

S = WindowState
BOT = "3f2b8c1e-0000-4000-8000-000000000001"
OTHER_BOT = "3f2b8c1e-0000-4000-8000-000000000002"
HTTP_TIMEOUT = 5.0
SETTINGS = RequesterSettings(retry_initial=60.0, retry_max=600.0, max_attempts=3, delivery_timeout=3600.0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state.sqlite") as opened:
        yield opened


@pytest.fixture
def make_sim() -> Iterator[Callable[..., CertainlySimulator]]:
    """Started simulators, all stopped (pending deliveries cancelled) at teardown."""
    sims: list[CertainlySimulator] = []

    def make(**config: Any) -> CertainlySimulator:
        config.setdefault("delivery_delay", 30.0)  # exports stay "in progress" during a test
        sim = CertainlySimulator(SimulatorConfig(**config)).start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop(timeout=5.0)


def _client(sim: CertainlySimulator, token: str | None = None) -> CertainlyClient:
    return CertainlyClient(
        sim.base_url, SecretStr(token or sim.config.token), sim.config.report_path, timeout=HTTP_TIMEOUT
    )


def _plan_one(store: Store) -> int:
    plan_backfill(store, [BOT], date(2024, 1, 1), date(2024, 1, 10), window_days=30)
    [window] = store.windows()
    return window.id


def _make_busy(sim: CertainlySimulator) -> None:
    """Start an export directly, as another client of the same account would."""
    response = requests.post(
        sim.report_url,
        timeout=HTTP_TIMEOUT,
        headers={"Authorization": f"JWT {sim.config.token}"},
        json={"fromDate": "2023-01-01", "toDate": "2023-01-02", "reportId": 1, "botId": OTHER_BOT},
    )
    assert response.status_code == sim.config.accepted_status


def _ranges(store: Store, bot: str = BOT) -> list[tuple[date, date]]:
    return [(w.from_date, w.to_date) for w in store.windows(bot_id=bot)]


# -- planning ----------------------------------------------------------------------------


def test_plan_backfill_splits_the_range(store: Store) -> None:
    planned = plan_backfill(store, [BOT, OTHER_BOT], date(2024, 1, 1), date(2024, 3, 1), window_days=30)

    expected = [
        (date(2024, 1, 1), date(2024, 1, 30)),
        (date(2024, 1, 31), date(2024, 2, 29)),
        (date(2024, 3, 1), date(2024, 3, 1)),
    ]
    assert _ranges(store) == expected
    assert _ranges(store, OTHER_BOT) == expected
    assert len(planned) == 6
    assert {w.state for w in store.windows()} == {S.PLANNED}


def test_plan_backfill_never_plans_twice(store: Store) -> None:
    plan_backfill(store, [BOT], date(2024, 1, 1), date(2024, 3, 1), window_days=30)

    again = plan_backfill(store, [BOT], date(2024, 1, 1), date(2024, 3, 1), window_days=30)
    inside = plan_backfill(store, [BOT], date(2024, 1, 10), date(2024, 2, 10), window_days=7)

    assert again == [] and inside == []
    assert len(store.windows()) == 3


def test_overlapping_range_plans_only_missing_days(store: Store) -> None:
    plan_backfill(store, [BOT], date(2024, 1, 10), date(2024, 1, 20), window_days=30)

    planned = plan_backfill(store, [BOT], date(2024, 1, 1), date(2024, 1, 31), window_days=30)

    assert planned == [(BOT, date(2024, 1, 1), date(2024, 1, 9)), (BOT, date(2024, 1, 21), date(2024, 1, 31))]
    days = [d for first, last in _ranges(store) for d in range(first.toordinal(), last.toordinal() + 1)]
    assert sorted(days) == list(range(date(2024, 1, 1).toordinal(), date(2024, 1, 31).toordinal() + 1))


def test_failed_window_can_be_planned_again(store: Store) -> None:
    window_id = _plan_one(store)
    store.transition(window_id, S.SUBMITTING)
    store.transition(window_id, S.FAILED, attempts=3, last_error="gave up after 3 attempts")

    planned = plan_backfill(store, [BOT], date(2024, 1, 1), date(2024, 1, 10), window_days=30)

    # A person asked again for the days of a failed window: they are submittable, with fresh attempts.
    assert planned == [(BOT, date(2024, 1, 1), date(2024, 1, 10))]
    [window] = store.windows()
    assert window.state is S.PLANNED
    assert window.attempts == 0


# -- advancing against the simulator -------------------------------------------------------


def test_accepted_window_and_raw_answer_kept(
    store: Store, make_sim: Callable[..., CertainlySimulator]
) -> None:
    sim = make_sim()
    window_id = _plan_one(store)

    tick = advance(store, _client(sim), SETTINGS)

    window = store.window(window_id)
    assert tick.accepted == [window_id]
    assert window.state is S.ACCEPTED
    assert window.accepted_at is not None and window.submitted_at is not None
    [answer] = store.api_answers(window_id)
    assert (answer["method"], answer["status"], answer["outcome"]) == ("POST", 200, "accepted")
    assert "will be sent to your email" in answer["body"]
    assert [(e.bot_id, e.from_date, e.to_date) for e in sim.exports] == [
        (BOT, date(2024, 1, 1), date(2024, 1, 10))
    ]


def test_only_max_in_flight_windows_are_accepted(
    store: Store, make_sim: Callable[..., CertainlySimulator]
) -> None:
    sim = make_sim()
    plan_backfill(store, [BOT], date(2024, 1, 1), date(2024, 3, 1), window_days=30)

    advance(store, _client(sim), SETTINGS)
    advance(store, _client(sim), SETTINGS)

    assert [w.state for w in store.windows()] == [S.ACCEPTED, S.PLANNED, S.PLANNED]
    assert len([r for r in sim.requests if r.method == "POST"]) == 1


@pytest.mark.parametrize("style", ["409", "400", "200"])
def test_in_progress_answer_defers_the_window(
    style: str, store: Store, make_sim: Callable[..., CertainlySimulator]
) -> None:
    sim = make_sim(in_progress_style=style)
    _make_busy(sim)
    window_id = _plan_one(store)
    before = time.time()

    tick = advance(store, _client(sim), SETTINGS)

    window = store.window(window_id)
    assert tick.deferred == [window_id]
    assert window.state is S.DEFERRED
    assert window.attempts == 1
    assert window.next_attempt_at is not None and window.next_attempt_at > before + 1
    assert "in_progress" in (window.last_error or "")
    assert store.api_answers(window_id)[-1]["outcome"] == "in_progress"
    assert store.api_answers(window_id)[-1]["status"] == int(style)


def test_deferred_window_is_not_retried_before_its_time(
    store: Store, make_sim: Callable[..., CertainlySimulator]
) -> None:
    sim = make_sim()
    _make_busy(sim)
    window_id = _plan_one(store)
    advance(store, _client(sim), SETTINGS)
    posts = len(sim.requests)

    tick = advance(store, _client(sim), SETTINGS)

    assert tick.submitted == []
    assert len(sim.requests) == posts
    assert store.window(window_id).state is S.DEFERRED


def test_wrong_token_raises_and_leaves_the_window_planned(
    store: Store, make_sim: Callable[..., CertainlySimulator]
) -> None:
    sim = make_sim()
    window_id = _plan_one(store)

    with pytest.raises(TokenRejected) as caught:
        advance(store, _client(sim, token="not-the-token"), SETTINGS)

    assert "not-the-token" not in str(caught.value)
    window = store.window(window_id)
    assert window.state is S.PLANNED
    assert window.attempts == 0
    assert store.api_answers(window_id)[-1]["outcome"] == "token_rejected"


def test_unreachable_api_defers_then_fails_after_max_attempts(
    store: Store, make_sim: Callable[..., CertainlySimulator]
) -> None:
    sim = make_sim()
    client = _client(sim)
    sim.stop(timeout=5.0)  # nothing listens on that port any more
    window_id = _plan_one(store)

    tick = advance(store, client, SETTINGS)

    window = store.window(window_id)
    assert tick.deferred == [window_id]
    assert (window.state, window.attempts) == (S.DEFERRED, 1)
    assert "cannot connect" in (window.last_error or "")

    for attempt in range(2, SETTINGS.max_attempts + 1):
        assert window.next_attempt_at is not None
        advance(store, client, SETTINGS, now=window.next_attempt_at + 1)
        window = store.window(window_id)
        assert window.attempts == attempt

    assert window.state is S.FAILED
    assert f"gave up after {SETTINGS.max_attempts} attempts" in (window.last_error or "")


def test_accepted_window_without_email_becomes_lost(
    store: Store, make_sim: Callable[..., CertainlySimulator]
) -> None:
    sim = make_sim()
    window_id = _plan_one(store)
    advance(store, _client(sim), SETTINGS)
    accepted_at = store.window(window_id).accepted_at
    assert accepted_at is not None

    assert expire_lost(store, SETTINGS, now=accepted_at + SETTINGS.delivery_timeout - 1) == []
    assert store.window(window_id).state is S.ACCEPTED

    assert expire_lost(store, SETTINGS, now=accepted_at + SETTINGS.delivery_timeout + 1) == [window_id]
    window = store.window(window_id)
    assert window.state is S.LOST
    assert window.losses == 1
    assert "delivery time-out" in (window.last_error or "")
