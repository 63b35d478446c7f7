"""Simulator fault injection: scripted answers, delays, dropped connections, in_progress_every.

Quick tests: the simulator is an in-process HTTP server on 127.0.0.1, delays are short.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ingest.mail.attachments import parse_email
from ingest.simulator import CertainlySimulator, Fault, FaultScript, SimulatorConfig
from ingest.simulator.api import ACCEPTED_DETAIL, IN_PROGRESS_DETAIL

BOT = "3f2b8c1e-0000-4000-8000-00000000000f"
AUTH = {"Authorization": "JWT demo-token"}
BODY = {"fromDate": "2024-01-01", "toDate": "2024-01-02", "reportId": 1, "botId": BOT}
TIMEOUT = 5.0


@pytest.fixture
def make_sim() -> Iterator[Any]:
    sims: list[CertainlySimulator] = []

    def make(**config: Any) -> CertainlySimulator:
        config.setdefault("delivery_delay", 0.0)
        sim = CertainlySimulator(SimulatorConfig(**config)).start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop(timeout=5.0)


def _post(sim: CertainlySimulator, timeout: float = TIMEOUT) -> requests.Response:
    return requests.post(sim.report_url, json=BODY, headers=AUTH, timeout=timeout)


def _get(sim: CertainlySimulator) -> requests.Response:
    params = {"fromDate": "2024-01-01", "toDate": "2024-01-01", "reportId": 1, "botId": BOT}
    return requests.get(sim.report_url, params=params, headers=AUTH, timeout=TIMEOUT)


# -- Fault -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "payload"),
    [
        (Fault(status=500), b'{"detail": "Internal Server Error"}'),
        (Fault(status=499), b'{"detail": "Status 499."}'),
        (Fault(status=409, body={"detail": "busy"}), b'{"detail": "busy"}'),
        (Fault(status=502, body="<html>Bad gateway</html>"), b"<html>Bad gateway</html>"),
        (Fault(status=200, body=b"\xff raw"), b"\xff raw"),
    ],
)
def test_fault_payload(fault: Fault, payload: bytes) -> None:
    assert fault.payload() == payload


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay": -1},
        {"status": 99},
        {"status": 600},
        {"drop": True, "status": 500},
        {"drop": True, "headers": {"X": "y"}},
        {"body": "x"},
        {"headers": {"Retry-After": "1"}},
    ],
)
def test_fault_refuses_contradictions(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Fault(**kwargs)


def test_script_is_a_fifo_per_method_and_thread_safe() -> None:
    script = FaultScript()
    faults = [Fault(status=500 + i % 10) for i in range(400)]

    threads = [threading.Thread(target=script.script, args=("post", *faults[i::4])) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    script.script("GET", Fault(status=404))

    assert script.pending() == 401 and script.pending("POST") == 400
    taken: list[Fault] = []
    lock = threading.Lock()

    def drain() -> None:
        while (fault := script.take("POST")) is not None:
            with lock:
                taken.append(fault)

    workers = [threading.Thread(target=drain) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(5)
    assert len(taken) == 400 and script.take("POST") is None
    assert script.take("get") == Fault(status=404) and script.pending() == 0
    with pytest.raises(TypeError):
        script.script("POST", 500)  # type: ignore[arg-type]


def test_pause_is_cut_short_by_stop() -> None:
    script = FaultScript()
    assert script.pause(0) is False
    threading.Timer(0.1, script.stop).start()
    started = time.monotonic()

    assert script.pause(10) is True
    assert time.monotonic() - started < 5


# -- over HTTP ---------------------------------------------------------------------------


def test_scripted_answers_come_first_then_normal_behaviour(make_sim: Any) -> None:
    sim = make_sim(delivery_delay=30.0)
    sim.script_post(
        Fault(status=429, body='{"detail": "Request was throttled."}', headers={"Retry-After": "2"}),
        Fault(status=503, body="down", headers={"Content-Type": "text/plain"}),
    )

    first, second, third, fourth = _post(sim), _post(sim), _post(sim), _post(sim)

    assert (first.status_code, first.json(), first.headers["Retry-After"]) == (
        429,
        {"detail": "Request was throttled."},
        "2",
    )
    assert first.headers["Content-Type"] == "application/json"
    assert (second.status_code, second.text, second.headers["Content-Type"]) == (503, "down", "text/plain")
    assert (third.status_code, third.json()) == (200, {"detail": ACCEPTED_DETAIL})
    assert (fourth.status_code, fourth.json()) == (400, {"detail": IN_PROGRESS_DETAIL})
    assert [r.status for r in sim.requests] == [429, 503, 200, 400]
    assert len(sim.exports) == 1  # scripted answers create no export
    assert [a.method for a in sim.faults.arrivals] == ["POST"] * 4
    assert sim.faults.arrivals[0].params == BODY


def test_get_faults_do_not_touch_posts(make_sim: Any) -> None:
    sim = make_sim()
    sim.script_get(Fault(status=500))

    assert _post(sim).status_code == 200
    assert _get(sim).status_code == 500
    response = _get(sim)
    assert response.status_code == 200 and isinstance(response.json(), list)


def test_delay_longer_than_the_client_timeout_is_a_timeout(make_sim: Any) -> None:
    sim = make_sim()
    sim.script_post(Fault(delay=1.0))
    started = time.monotonic()

    with pytest.raises(requests.Timeout):
        _post(sim, timeout=0.2)

    assert time.monotonic() - started < 1.0
    # The request was logged on arrival; after the delay the simulator still accepts it.
    assert sim.faults.wait_for_arrivals("POST", 1, timeout=1)
    deadline = time.monotonic() + 5
    while not sim.exports and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sim.exports) == 1


def test_slow_answer_within_the_timeout(make_sim: Any) -> None:
    sim = make_sim()
    sim.script_post(Fault(status=409, body={"detail": IN_PROGRESS_DETAIL}, delay=0.3))
    started = time.monotonic()

    response = _post(sim)

    assert response.status_code == 409
    assert time.monotonic() - started >= 0.3


def test_dropped_connection_gets_no_answer(make_sim: Any) -> None:
    sim = make_sim()
    sim.script_post(Fault(drop=True))

    with pytest.raises(requests.ConnectionError):
        _post(sim)

    assert sim.requests[-1].status == 0 and sim.requests[-1].params == BODY
    assert sim.exports == []
    assert _post(sim).status_code == 200  # the next request is served normally


def test_stop_cuts_a_delay_short_and_drops(make_sim: Any) -> None:
    sim = make_sim()
    sim.script_post(Fault(delay=30))
    host, port = sim.base_url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(
            "POST",
            "/" + sim.config.report_path,
            body=json.dumps(BODY),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert sim.faults.wait_for_arrivals("POST", 1, timeout=5)
        started = time.monotonic()
        sim.stop(timeout=5)
        assert time.monotonic() - started < 5
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
    finally:
        conn.close()
    assert sim.exports == []


def test_wait_for_arrivals_times_out(make_sim: Any) -> None:
    sim = make_sim()
    assert sim.faults.wait_for_arrivals("POST", 1, timeout=0.05) is False
    _get(sim)
    assert sim.faults.wait_for_arrivals("GET", 1, timeout=1) is True
    assert sim.faults.wait_for_arrivals("POST", 1, timeout=0.05) is False


def test_in_progress_every_nth_post_even_when_idle(make_sim: Any) -> None:
    sim = make_sim(in_progress_every=3, in_progress_style="409")
    statuses = []
    for _ in range(9):
        statuses.append(_post(sim).status_code)
        assert sim.wait_idle(timeout=5)

    assert statuses == [200, 200, 409, 200, 200, 409, 200, 200, 409]
    assert len(sim.exports) == 6


def test_in_progress_every_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="in_progress_every"):
        SimulatorConfig(in_progress_every=-1)


@pytest.mark.parametrize("hints", [True, False])
def test_email_hints_can_be_left_out(make_sim: Any, hints: bool) -> None:
    sim = make_sim(email_hints=hints)
    assert _post(sim).status_code == 200
    assert sim.wait_idle(timeout=5)

    [raw] = sim.outbox
    parsed = parse_email(raw)
    [report] = parsed.reports
    named = f"{parsed.subject} {report.filename} {raw.decode()}"
    assert (BOT in named, "2024-01-02" in named) == (hints, hints)
    assert report.data.startswith(b"id,timestamp,")
