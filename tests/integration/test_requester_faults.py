"""The requester against every kind of answer, scripted into the real simulator over loopback.

One test per answer kind: the window's state, attempts, next_attempt_at and last_error,
and the raw answer kept for audit (``store.api_answers``). The plain "busy simulator"
answers and planning are covered in test_requester.py; here the answers are scripted with
:class:`ingest.simulator.Fault` (status, body, headers, delay, dropped connection).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ingest.errors import TokenRejected
from ingest.request.client import CertainlyClient, client_from
from ingest.request.requester import advance, plan_backfill
from ingest.settings import RequesterSettings, Settings, explicit_settings
from ingest.simulator import CertainlySimulator, Fault, SimulatorConfig
from ingest.simulator.api import ACCEPTED_DETAIL, IN_PROGRESS_DETAIL
from ingest.state.store import Store
from ingest.state.windows import Window, WindowState

pytestmark = pytest.mark.integration

S = WindowState
BOT = "3f2b8c1e-0000-4000-8000-0000000000a1"
TOKEN = "fault-token"
CLIENT_TIMEOUT = 0.5  # seconds: a scripted delay longer than this is a client time-out
REQUESTER = {
    "retry_initial": 0.2,
    "retry_max": 10.0,
    "max_attempts": 3,
    "delivery_timeout": 3600.0,
    "via": "email",  # the POST path's faults
}
BUSY_JSON = json.dumps({"detail": IN_PROGRESS_DETAIL})


def make_settings(base_url: str, tmp_path: Path) -> Settings:
    return explicit_settings(
        certainly={
            "base_url": base_url,
            "token": TOKEN,
            "report_path": "api/v1/message-report/",
            "timeout": CLIENT_TIMEOUT,
        },
        requester=REQUESTER,
        output={"root": str(tmp_path / "archive")},
        state={"path": tmp_path / "state.sqlite"},
    )


@dataclass
class Env:
    sim: CertainlySimulator
    store: Store
    client: CertainlyClient
    settings: RequesterSettings

    def advance(self, now: float | None = None) -> Any:
        return advance(self.store, self.client, self.settings, now=now)


@pytest.fixture
def sim() -> Iterator[CertainlySimulator]:
    # A long delivery delay: an accepted export stays "in progress" for the whole test.
    with CertainlySimulator(SimulatorConfig(token=TOKEN, delivery_delay=60.0)) as started:
        yield started


@pytest.fixture
def env(sim: CertainlySimulator, tmp_path: Path) -> Iterator[Env]:
    settings = make_settings(sim.base_url, tmp_path)
    with Store.open(settings.state.path) as store:
        yield Env(sim, store, client_from(settings.certainly), settings.requester)


def plan(store: Store, windows: int = 1) -> list[int]:
    """Plan ``windows`` windows of 30 days for BOT from 2024-01-01; their ids, oldest first."""
    plan_backfill(
        store,
        [BOT],
        date(2024, 1, 1),
        date.fromordinal(date(2024, 1, 1).toordinal() + 30 * windows - 1),
        window_days=30,
    )
    return [w.id for w in store.windows()]


def last_answer(store: Store, window_id: int) -> dict[str, Any]:
    return store.api_answers(window_id)[-1]


def assert_deferred(window: Window, now: float, *, attempts: int, low: float, high: float) -> None:
    assert window.state is S.DEFERRED
    assert window.attempts == attempts
    assert window.next_attempt_at is not None
    assert now + low <= window.next_attempt_at <= now + high, (window.next_attempt_at - now, low, high)


# -- "already in progress", in its three documented-by-nobody shapes ------------------------


def test_in_progress_as_409_defers_then_the_retry_is_accepted(env: Env) -> None:
    [window_id] = plan(env.store)
    env.sim.script_post(Fault(status=409, body=BUSY_JSON))
    now = time.time()

    tick = env.advance(now)

    window = env.store.window(window_id)
    assert tick.deferred == [window_id] and tick.failed == []
    assert_deferred(window, now, attempts=1, low=0.1, high=0.2)  # retry_initial, jittered
    assert window.last_error == f"in_progress (409): {IN_PROGRESS_DETAIL}"
    answer = last_answer(env.store, window_id)
    assert (answer["method"], answer["status"], answer["outcome"], answer["body"]) == (
        "POST",
        409,
        "in_progress",
        BUSY_JSON,
    )
    assert env.sim.exports == []

    assert env.advance(window.next_attempt_at - 0.01).submitted == []  # not before its time
    tick = env.advance(window.next_attempt_at)

    window = env.store.window(window_id)
    assert tick.accepted == [window_id]
    assert (window.state, window.last_error) == (S.ACCEPTED, None)
    assert [a["outcome"] for a in env.store.api_answers(window_id)] == ["in_progress", "accepted"]
    assert len(env.sim.exports) == 1


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("5", 5.0, 10.0),  # honoured: at least Retry-After, at most retry_max
        ("3600", 10.0, 10.0),  # capped by retry_max
        ("0.05", 0.1, 0.2),  # shorter than our own back-off: ours wins
    ],
)
def test_in_progress_as_429_honours_retry_after(env: Env, retry_after: str, low: float, high: float) -> None:
    [window_id] = plan(env.store)
    env.sim.script_post(Fault(status=429, body=BUSY_JSON, headers={"Retry-After": retry_after}))
    now = time.time()

    env.advance(now)

    window = env.store.window(window_id)
    assert_deferred(window, now, attempts=1, low=low, high=high)
    assert window.last_error == f"in_progress (429): {IN_PROGRESS_DETAIL}"
    answer = last_answer(env.store, window_id)
    assert (answer["status"], answer["outcome"], answer["body"]) == (429, "in_progress", BUSY_JSON)


def test_throttled_429_is_transient_and_honours_retry_after(env: Env) -> None:
    [window_id] = plan(env.store)
    body = '{"detail": "Request was throttled. Expected available in 2 seconds."}'
    env.sim.script_post(Fault(status=429, body=body, headers={"Retry-After": "2"}))
    now = time.time()

    env.advance(now)

    window = env.store.window(window_id)
    assert_deferred(window, now, attempts=1, low=2.0, high=10.0)
    assert window.last_error == "transient (429): Request was throttled. Expected available in 2 seconds."
    answer = last_answer(env.store, window_id)
    assert (answer["status"], answer["outcome"], answer["body"]) == (429, "transient", body)


def test_in_progress_as_200_whose_body_says_so(env: Env) -> None:
    [window_id] = plan(env.store)
    env.sim.script_post(Fault(status=200, body=BUSY_JSON))
    now = time.time()

    env.advance(now)

    window = env.store.window(window_id)
    assert_deferred(window, now, attempts=1, low=0.1, high=0.2)
    assert window.last_error == f"in_progress (200): {IN_PROGRESS_DETAIL}"
    assert (last_answer(env.store, window_id)["status"], last_answer(env.store, window_id)["outcome"]) == (
        200,
        "in_progress",
    )
    assert env.sim.exports == []


@pytest.mark.parametrize("status", [200, 400])
@pytest.mark.parametrize(
    "detail",
    [
        "Export already running for this account.",
        "An export is already being generated for this account.",
        "A report is already being processed. Please try again later.",
        "Another export is currently running.",
    ],
)
def test_busy_wordings_defer_whatever_the_status(env: Env, status: int, detail: str) -> None:
    """Issue 4: "a 400 (or a 200) whose message says an export is already running or being
    generated means 'already in progress', not a failure" (and not an accept)."""
    [window_id] = plan(env.store)
    env.sim.script_post(Fault(status=status, body={"detail": detail}))

    env.advance()

    window = env.store.window(window_id)
    assert (window.state, last_answer(env.store, window_id)["outcome"]) == (S.DEFERRED, "in_progress"), (
        f"{status} {detail!r} was taken as {window.state}"
    )


def test_in_progress_is_never_a_failure_however_often(env: Env) -> None:
    [window_id] = plan(env.store)
    busy = REQUESTER["max_attempts"] + 2
    env.sim.script_post(*[Fault(status=409, body=BUSY_JSON)] * busy)
    now = time.time()

    for attempt in range(1, busy + 1):
        env.advance(now)
        window = env.store.window(window_id)
        assert (window.state, window.attempts) == (S.DEFERRED, attempt)
        assert window.next_attempt_at is not None
        now = window.next_attempt_at
    env.advance(now)

    assert env.store.window(window_id).state is S.ACCEPTED
    assert [a["outcome"] for a in env.store.api_answers(window_id)] == ["in_progress"] * busy + ["accepted"]


# -- token rejected: stop everything, touch nothing -----------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_token_rejected_stops_and_leaves_windows_untouched(env: Env, status: int) -> None:
    first, second = plan(env.store, windows=2)
    env.sim.script_post(Fault(status=409, body=BUSY_JSON))
    env.advance()  # the first window is now deferred, with an error and a retry time
    due = env.store.window(first).next_attempt_at
    assert due is not None

    def snapshot() -> list[tuple[Any, ...]]:
        return [
            (
                w.id,
                w.state,
                w.attempts,
                w.losses,
                w.next_attempt_at,
                w.accepted_at,
                w.last_error,
                w.rows_archived,
            )
            for w in env.store.windows()
        ]

    before = snapshot()
    body = {"detail": "Given token not valid for any token type"}
    env.sim.script_post(Fault(status=status, body=body))
    posts = len(env.sim.requests)

    with pytest.raises(TokenRejected) as caught:
        env.advance(due + 1)

    assert "rejected the token" in str(caught.value) and str(status) in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert snapshot() == before
    assert env.store.window(second).state is S.PLANNED
    assert len(env.sim.requests) == posts + 1  # stopped at the first refusal
    answer = last_answer(env.store, first)
    assert (answer["status"], answer["outcome"], answer["body"]) == (
        status,
        "token_rejected",
        json.dumps(body),
    )


# -- a refusal of the request itself: that window fails, the others go on --------------------


@pytest.mark.parametrize("status", [400, 422])
def test_refused_request_fails_that_window_with_the_api_message(env: Env, status: int) -> None:
    first, second = plan(env.store, windows=2)
    body = {"detail": "botId: this bot does not belong to your organisation."}
    env.sim.script_post(Fault(status=status, body=body))

    tick = env.advance()

    window = env.store.window(first)
    assert (tick.failed, tick.accepted) == ([first], [second])
    assert window.state is S.FAILED
    assert (
        window.last_error == f"API refused ({status}): botId: this bot does not belong to your organisation."
    )
    assert window.attempts == 0 and window.next_attempt_at is None
    answer = last_answer(env.store, first)
    assert (answer["status"], answer["outcome"], answer["body"]) == (status, "rejected", json.dumps(body))


# -- transient trouble: retried with back-off, failed only after max_attempts ----------------


def test_server_error_is_retried_and_fails_only_after_max_attempts(env: Env) -> None:
    [window_id] = plan(env.store)
    body = '{"detail": "A server error occurred."}'
    env.sim.script_post(*[Fault(status=500, body=body)] * REQUESTER["max_attempts"])
    now = time.time()

    for attempt in range(1, REQUESTER["max_attempts"]):
        env.advance(now)
        window = env.store.window(window_id)
        ceiling = min(REQUESTER["retry_max"], REQUESTER["retry_initial"] * 2 ** (attempt - 1))
        assert_deferred(window, now, attempts=attempt, low=ceiling / 2, high=ceiling)
        assert window.last_error == "transient (500): A server error occurred."
        assert window.next_attempt_at is not None
        now = window.next_attempt_at
    env.advance(now)

    window = env.store.window(window_id)
    assert window.state is S.FAILED
    assert window.attempts == REQUESTER["max_attempts"]
    assert (
        window.last_error == f"gave up after {REQUESTER['max_attempts']} attempts: A server error occurred."
    )
    answers = env.store.api_answers(window_id)
    assert [(a["status"], a["outcome"], a["body"]) for a in answers] == [(500, "transient", body)] * 3
    assert env.sim.exports == []


def test_bad_gateway_html_page_is_transient(env: Env) -> None:
    [window_id] = plan(env.store)
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    env.sim.script_post(Fault(status=502, body=page, headers={"Content-Type": "text/html"}))

    env.advance()

    window = env.store.window(window_id)
    assert (window.state, window.attempts) == (S.DEFERRED, 1)
    assert (last_answer(env.store, window_id)["status"], last_answer(env.store, window_id)["body"]) == (
        502,
        page,
    )


def test_timeout_defers(env: Env) -> None:
    [window_id] = plan(env.store)
    env.sim.script_post(Fault(delay=3.0))  # the answer would come, but too late
    now = time.time()

    env.advance(now)

    elapsed = time.time() - now
    window = env.store.window(window_id)
    assert CLIENT_TIMEOUT <= elapsed < 2.5
    assert_deferred(window, now, attempts=1, low=0.1, high=0.2)
    assert window.last_error is not None and window.last_error.startswith("transient (0): time-out")
    answer = last_answer(env.store, window_id)
    # No HTTP answer: the audit trail keeps the reason instead of an empty body.
    assert (answer["status"], answer["outcome"], answer["body"]) == (0, "transient", "time-out (ReadTimeout)")


def test_slow_server_within_the_timeout_is_accepted(env: Env) -> None:
    [window_id] = plan(env.store)
    env.sim.script_post(Fault(delay=CLIENT_TIMEOUT / 3))

    env.advance()

    assert env.store.window(window_id).state is S.ACCEPTED
    assert last_answer(env.store, window_id)["body"] == json.dumps({"detail": ACCEPTED_DETAIL})


def test_connection_refused_defers(tmp_path: Path) -> None:
    # A bound socket that does not listen: connecting to it is refused, and no one can take the port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        settings = make_settings(f"http://127.0.0.1:{closed.getsockname()[1]}/", tmp_path)
        with Store.open(settings.state.path) as store:
            [window_id] = plan(store)
            now = time.time()

            tick = advance(store, client_from(settings.certainly), settings.requester, now=now)

            window = store.window(window_id)
            assert tick.deferred == [window_id]
            assert_deferred(window, now, attempts=1, low=0.1, high=0.2)
            assert window.last_error is not None and window.last_error.startswith(
                "transient (0): cannot connect"
            )
            answer = last_answer(store, window_id)
            assert (answer["status"], answer["outcome"]) == (0, "transient")


def test_dropped_connection_defers(env: Env) -> None:
    [window_id] = plan(env.store)
    env.sim.script_post(Fault(drop=True))
    now = time.time()

    env.advance(now)

    window = env.store.window(window_id)
    assert_deferred(window, now, attempts=1, low=0.1, high=0.2)
    assert window.last_error is not None and window.last_error.startswith("transient (0): cannot connect")
    assert (last_answer(env.store, window_id)["status"], last_answer(env.store, window_id)["outcome"]) == (
        0,
        "transient",
    )
    assert env.sim.requests[-1].status == 0 and env.sim.exports == []


def test_unusual_2xx_is_accepted_and_logged_in_full_without_the_token(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    [window_id] = plan(env.store)
    body = '{"detail": "Queued.", "job": 4711}'
    env.sim.script_post(Fault(status=203, body=body))

    with caplog.at_level(logging.WARNING, logger="ingest.request.client"):
        env.advance()

    assert env.store.window(window_id).state is S.ACCEPTED
    assert last_answer(env.store, window_id)["body"] == body
    assert body in caplog.text and "203" in caplog.text
    assert TOKEN not in caplog.text
