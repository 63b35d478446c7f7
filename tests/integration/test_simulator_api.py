"""The fake Certainly API over real HTTP on loopback."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

import pytest
import requests

from ingest.simulator import CertainlySimulator, SimulatorConfig, rows_to_csv

pytestmark = pytest.mark.integration

BOT = "3f2b8c1e-0000-4000-8000-000000000001"
TIMEOUT = 10.0
AUTH = {"Authorization": "JWT demo-token"}


def _params(start: date, end: date, bot: str = BOT, report: Any = 1) -> dict[str, Any]:
    return {"fromDate": start.isoformat(), "toDate": end.isoformat(), "reportId": report, "botId": bot}


@pytest.fixture
def make_sim() -> Iterator[Any]:
    """Factory of started simulators, all stopped at teardown."""
    sims: list[CertainlySimulator] = []

    def make(deliver: Any = None, **config: Any) -> CertainlySimulator:
        config.setdefault("delivery_delay", 0.05)
        sim = CertainlySimulator(SimulatorConfig(**config), deliver=deliver).start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop(timeout=5.0)


@pytest.fixture
def sim(make_sim: Any) -> CertainlySimulator:
    return make_sim()  # type: ignore[no-any-return]


def _get(sim: CertainlySimulator, params: dict[str, Any], headers: Any = AUTH) -> Any:
    return requests.get(sim.report_url, params=params, headers=headers, timeout=TIMEOUT)


def _post(sim: CertainlySimulator, body: Any, headers: Any = AUTH) -> Any:
    return requests.post(sim.report_url, json=body, headers=headers, timeout=TIMEOUT)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "JWT wrong"},
        {"Authorization": "Bearer demo-token"},
        {"Authorization": "jwt demo-token"},
    ],
)
def test_bad_or_missing_token_is_401(sim: CertainlySimulator, headers: dict[str, str]) -> None:
    day = date(2024, 1, 1)
    for response in (_get(sim, _params(day, day), headers), _post(sim, _params(day, day), headers)):
        assert response.status_code == 401
        assert "detail" in response.json()
    assert sim.exports == []


def test_routes(sim: CertainlySimulator) -> None:
    day = _params(date(2024, 1, 1), date(2024, 1, 1))
    assert sim.report_url == sim.base_url + "api/v1/message-report/"
    no_slash = sim.report_url.rstrip("/")
    assert requests.get(no_slash, params=day, headers=AUTH, timeout=TIMEOUT).status_code == 200
    other = requests.get(sim.base_url + "api/v1/other/", headers=AUTH, timeout=TIMEOUT)
    assert other.status_code == 404 and other.json() == {"detail": "Not found."}
    put = requests.put(sim.report_url, json=day, headers=AUTH, timeout=TIMEOUT)
    assert put.status_code == 405


def test_get_returns_generated_rows(sim: CertainlySimulator) -> None:
    start, end = date(2024, 3, 1), date(2024, 3, 3)
    response = _get(sim, _params(start, end))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == sim.expected_rows(BOT, start, end)
    assert sim.requests[-1] == ("GET", "/api/v1/message-report/", _params(start, end, report="1"), 200)


def test_get_15_day_limit(sim: CertainlySimulator) -> None:
    start = date(2024, 1, 1)
    fifteen = _get(sim, _params(start, start + timedelta(days=14)))
    assert fifteen.status_code == 200
    sixteen = _get(sim, _params(start, start + timedelta(days=15)))
    assert sixteen.status_code == 400
    assert "15 days" in sixteen.json()["detail"]


def test_get_500_row_cap(make_sim: Any) -> None:
    sim = make_sim(min_per_day=40, max_per_day=40)  # 15 days x 40 = 600 rows
    start, end = date(2024, 1, 1), date(2024, 1, 15)
    body = _get(sim, _params(start, end)).json()
    expected = sim.expected_rows(BOT, start, end)
    assert len(expected) == 600
    assert body == expected[:500]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"toDate": "2024-01-01", "reportId": "1", "botId": BOT}, "fromDate"),
        ({"fromDate": "2024-01-01", "reportId": "1", "botId": BOT}, "toDate"),
        ({"fromDate": "2024-01-01", "toDate": "2024-01-02", "botId": BOT}, "reportId"),
        ({"fromDate": "2024-01-01", "toDate": "2024-01-02", "reportId": "1"}, "botId"),
        ({"fromDate": "01/01/2024", "toDate": "2024-01-02", "reportId": "1", "botId": BOT}, "fromDate"),
        ({"fromDate": "2024-01-01", "toDate": "2024-02-30", "reportId": "1", "botId": BOT}, "toDate"),
        ({"fromDate": "2024-01-01", "toDate": "2024-01-02", "reportId": "9", "botId": BOT}, "reportId"),
        ({"fromDate": "2024-01-05", "toDate": "2024-01-02", "reportId": "1", "botId": BOT}, "toDate"),
    ],
)
def test_get_validation(sim: CertainlySimulator, params: dict[str, str], field: str) -> None:
    response = _get(sim, params)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(field)


def test_post_accepted_in_progress_then_accepted_again(make_sim: Any) -> None:
    sim = make_sim(delivery_delay=0.3)
    start, end = date(2024, 1, 1), date(2024, 2, 9)  # 40 days: no GET limits on POST
    first = _post(sim, _params(start, end))
    assert first.status_code == 200
    assert "email" in first.json()["detail"]
    busy = _post(sim, _params(start, end))
    assert busy.status_code == 400
    assert "in progress" in busy.json()["detail"]
    assert sim.wait_idle(timeout=10.0)
    again = _post(sim, _params(end, end))
    assert again.status_code == 200
    assert sim.wait_idle(timeout=10.0)

    exports = sim.exports
    assert [(e.from_date, e.to_date, e.delivered, e.lost, e.finished) for e in exports] == [
        (start, end, True, False, True),
        (end, end, True, False, True),
    ]
    msg = email.message_from_bytes(sim.outbox[0], policy=email.policy.default)
    (attachment,) = list(msg.iter_attachments())
    expected = sim.expected_rows(BOT, start, end)
    assert len(expected) > 500
    assert attachment.get_payload(decode=True) == rows_to_csv(expected)
    assert (
        len(list(csv.DictReader(io.StringIO(rows_to_csv(expected).decode(), newline=""))))
        == len(expected)
        == exports[0].rows
    )
    assert exports[0].message_id == msg["Message-ID"]


@pytest.mark.parametrize("style", ["409", "400", "200"])
def test_in_progress_style(make_sim: Any, style: str) -> None:
    sim = make_sim(delivery_delay=5.0, in_progress_style=style, accepted_status=202)
    day = _params(date(2024, 1, 1), date(2024, 1, 1))
    assert _post(sim, day).status_code == 202
    busy = _post(sim, day)
    assert busy.status_code == int(style)
    assert busy.json() == {
        "detail": "A previous request is already in progress. Please wait until it finishes."
    }
    assert len(sim.exports) == 1


def test_concurrent_posts_accept_exactly_one(make_sim: Any) -> None:
    sim = make_sim(delivery_delay=5.0)
    body = _params(date(2024, 1, 1), date(2024, 1, 1))
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: _post(sim, body).status_code, range(16)))
    assert sorted(statuses) == [200] + [400] * 15
    assert len(sim.exports) == 1


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b"", '{"fromDate": "\u00e9"}'])
def test_post_rejects_non_json_and_bad_bodies(sim: CertainlySimulator, payload: Any) -> None:
    response = requests.post(
        sim.report_url, data=payload, timeout=TIMEOUT, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["detail"]
    assert sim.exports == []


def test_post_accepts_integer_or_string_report_id(sim: CertainlySimulator) -> None:
    assert _post(sim, _params(date(2024, 1, 1), date(2024, 1, 1), report="1")).status_code == 200
    assert sim.wait_idle(timeout=10.0)
    assert _post(sim, _params(date(2024, 1, 1), date(2024, 1, 1), report=True)).status_code == 400


def test_lose_every_drops_emails_but_frees_the_slot(make_sim: Any) -> None:
    sim = make_sim(lose_every=2)
    for offset in range(4):
        day = date(2024, 1, 1) + timedelta(days=offset)
        assert _post(sim, _params(day, day)).status_code == 200
        assert sim.wait_idle(timeout=10.0)
    assert [e.lost for e in sim.exports] == [False, True, False, True]
    assert [e.delivered for e in sim.exports] == [True, False, True, False]
    assert len(sim.outbox) == 2


def test_failing_delivery_still_clears_in_progress(make_sim: Any, caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: bytes) -> None:
        raise ConnectionRefusedError("mailbox down")

    sim = make_sim(deliver=broken)
    day = _params(date(2024, 1, 1), date(2024, 1, 1))
    assert _post(sim, day).status_code == 200
    assert sim.wait_idle(timeout=10.0)
    assert sim.exports[0].error == "ConnectionRefusedError: mailbox down"
    assert not sim.exports[0].delivered
    assert "report delivery failed" in caplog.text
    assert _post(sim, day).status_code == 200


def test_stop_is_bounded_and_cancels_pending_delivery(make_sim: Any) -> None:
    sim = make_sim(delivery_delay=60.0)
    url = sim.report_url
    assert _post(sim, _params(date(2024, 1, 1), date(2024, 1, 1))).status_code == 200
    began = time.monotonic()
    sim.stop(timeout=5.0)
    assert time.monotonic() - began < 5.0
    assert sim.wait_idle(timeout=0.1)
    assert sim.exports[0].error == "cancelled: simulator stopped"
    assert sim.outbox == []
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=AUTH, timeout=2.0)
