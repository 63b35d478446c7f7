"""classify_answer: what an answer to a POST export request means, by status and wording."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.request.client import Outcome, classify_answer

ACCEPTED, IN_PROGRESS, REJECTED = Outcome.ACCEPTED, Outcome.IN_PROGRESS, Outcome.REJECTED
TOKEN_REJECTED, TRANSIENT = Outcome.TOKEN_REJECTED, Outcome.TRANSIENT
JSON = {"Content-Type": "application/json"}
HTML = {"Content-Type": "text/html; charset=utf-8"}


def detail(text: str) -> str:
    return json.dumps({"detail": text})


BUSY = "A previous request is already in progress. Please wait until it finishes."
SIM_ACCEPTED = "Your report is being generated and will be sent to your email."
MAINTENANCE_PAGE = "<!DOCTYPE html><html><head><title>Maintenance</title></head><body>Back soon</body></html>"

CASES: list[tuple[str, int, str, Any, Outcome]] = [
    # id, status, body, headers, expected outcome
    ("200-accepted", 200, detail("Your report will be sent by email"), JSON, ACCEPTED),
    ("202-accepted-empty-object", 202, "{}", JSON, ACCEPTED),
    ("201-accepted", 201, detail("Export queued"), JSON, ACCEPTED),
    ("200-being-generated-is-an-accept", 200, detail(SIM_ACCEPTED), JSON, ACCEPTED),
    ("409-busy", 409, detail(BUSY), JSON, IN_PROGRESS),
    ("400-busy", 400, detail(BUSY), JSON, IN_PROGRESS),
    ("429-busy", 429, detail(BUSY), JSON, IN_PROGRESS),
    ("200-busy", 200, detail(BUSY), JSON, IN_PROGRESS),
    ("400-being-generated-is-busy", 400, detail("Your report is being generated"), JSON, IN_PROGRESS),
    ("409-another-export", 409, detail("Another export is currently running"), JSON, IN_PROGRESS),
    ("401-token", 401, detail("Invalid token."), JSON, TOKEN_REJECTED),
    ("403-token", 403, detail("You do not have permission to perform this action."), JSON, TOKEN_REJECTED),
    ("403-token-even-with-busy-wording", 403, detail(BUSY), JSON, TOKEN_REJECTED),
    ("400-bad-date", 400, detail("fromDate: date has wrong format. Use YYYY-MM-DD."), JSON, REJECTED),
    ("422-unprocessable", 422, detail("botId: not a valid bot id."), JSON, REJECTED),
    ("404-wrong-path", 404, detail("Not found."), JSON, REJECTED),
    ("200-error-wording", 200, detail("Invalid botId"), JSON, REJECTED),
    ("500", 500, detail("Internal server error"), JSON, TRANSIENT),
    ("502-plain", 502, "Bad Gateway", None, TRANSIENT),
    ("503-plain", 503, "Service Unavailable", None, TRANSIENT),
    ("429-throttled", 429, detail("Request was throttled."), JSON, TRANSIENT),
    ("408-timeout", 408, "", None, TRANSIENT),
    ("200-html-page", 200, MAINTENANCE_PAGE, HTML, TRANSIENT),
    ("200-html-page-no-content-type", 200, MAINTENANCE_PAGE, None, TRANSIENT),
    (
        "200-html-maintenance-in-progress",
        200,
        "<html><body><h1>Scheduled maintenance in progress</h1></body></html>",
        HTML,
        TRANSIENT,
    ),
    ("drf-list-busy", 400, json.dumps([BUSY]), JSON, IN_PROGRESS),
    ("drf-list-error", 400, json.dumps(["toDate must not be before fromDate."]), JSON, REJECTED),
    ("drf-non-field-errors", 400, json.dumps({"non_field_errors": ["Range too long."]}), JSON, REJECTED),
    ("text-busy-409", 409, "Export already in progress", None, IN_PROGRESS),
    ("text-error-400", 400, "Bad Request: botId is required", None, REJECTED),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_classify_answer(status: int, body: str, headers: Any, expected: Outcome) -> None:
    answer = classify_answer(status, body, headers)

    assert answer.outcome is expected
    assert answer.status == status
    assert answer.body == body


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            400,
            detail("fromDate: date has wrong format. Use YYYY-MM-DD."),
            "fromDate: date has wrong format. Use YYYY-MM-DD.",
        ),
        (422, json.dumps({"message": "Report type 7 does not exist"}), "Report type 7 does not exist"),
        (400, json.dumps(["toDate must not be before fromDate."]), "toDate must not be before fromDate."),
        (400, json.dumps({"error": ["first", "second"]}), "first second"),
        (400, "  Bad Request:\n  botId is required  ", "Bad Request: botId is required"),
    ],
)
def test_rejected_message_is_the_human_detail(status: int, body: str, message: str) -> None:
    answer = classify_answer(status, body)

    assert answer.outcome is REJECTED
    assert answer.message == message


def test_retry_after_seconds_is_kept() -> None:
    answer = classify_answer(429, detail("Request was throttled."), {"Retry-After": "30"})

    assert answer.outcome is TRANSIENT
    assert answer.retry_after == 30.0


@pytest.mark.parametrize("value", ["Wed, 21 Oct 2015 07:28:00 GMT", "soon", ""])
def test_retry_after_that_is_not_seconds_is_ignored(value: str) -> None:
    answer = classify_answer(503, "", {"Retry-After": value})

    assert answer.outcome is TRANSIENT
    assert answer.retry_after is None


def test_retry_after_on_a_busy_answer() -> None:
    answer = classify_answer(429, detail(BUSY), {"Retry-After": "120"})

    assert answer.outcome is IN_PROGRESS
    assert answer.retry_after == 120.0


def test_huge_body_is_truncated_for_audit() -> None:
    body = "x" * 200_000
    answer = classify_answer(500, body)

    assert answer.outcome is TRANSIENT
    assert len(answer.body) <= 65536
    assert len(answer.message) <= 300


@settings(max_examples=100, deadline=None)
@given(
    status=st.integers(min_value=100, max_value=599),
    body=st.one_of(
        st.text(),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda children: st.lists(children) | st.dictionaries(st.text(), children),
            max_leaves=10,
        ).map(json.dumps),
        st.builds(
            lambda key, value: json.dumps({key: value}),
            st.sampled_from(["detail", "message", "error", "non_field_errors", "status"]),
            st.one_of(st.text(), st.lists(st.text()), st.integers(), st.none()),
        ),
    ),
    retry_after=st.none() | st.text(),
)
def test_classify_answer_never_raises(status: int, body: str, retry_after: str | None) -> None:
    headers = None if retry_after is None else {"Retry-After": retry_after}

    answer = classify_answer(status, body, headers)

    assert answer.outcome in set(Outcome)
    assert answer.status == status
    assert isinstance(answer.message, str)
    assert answer.retry_after is None or answer.retry_after >= 0
