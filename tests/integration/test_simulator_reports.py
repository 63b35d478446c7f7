"""Report types 2-4 from the simulator over real HTTP on loopback, read back typed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from pydantic import SecretStr

from ingest.mail.attachments import parse_email
from ingest.parse.reports import read_report, read_report_rows
from ingest.request.client import CertainlyClient, Outcome
from ingest.simulator import CertainlySimulator, SimulatorConfig
from ingest.simulator.reports import report_type_filename
from tests.support.archive import typed_truth

pytestmark = pytest.mark.integration

BOT = "3f2b8c1e-0000-4000-8000-000000000001"
START, END = date(2024, 3, 1), date(2024, 3, 10)


@pytest.fixture
def sim() -> Iterator[CertainlySimulator]:
    simulator = CertainlySimulator(SimulatorConfig(delivery_delay=0.05, seed=3)).start()
    try:
        yield simulator
    finally:
        simulator.stop(timeout=5.0)


def _client(sim: CertainlySimulator) -> CertainlyClient:
    return CertainlyClient(sim.base_url, SecretStr(sim.config.token), sim.config.report_path, timeout=10.0)


@pytest.mark.parametrize("report_id", [2, 3, 4])
def test_get_returns_the_ground_truth_of_each_type(sim: CertainlySimulator, report_id: int) -> None:
    rows, body = _client(sim).fetch_report(BOT, START, END, report_id)
    truth = sim.expected_report_rows(report_id, BOT, START, END)
    assert rows == truth and rows and body.startswith(b"[{")
    assert list(rows[0]) == list(truth[0])  # the objects keep the CSV's column order
    assert sim.requests[-1].params["reportId"] == str(report_id)
    report = read_report_rows(rows, report_id, window=(START, END))
    assert report.rows.drop("row_key").to_dicts() == typed_truth(truth)


def test_get_type_1_is_still_message_data(sim: CertainlySimulator) -> None:
    rows, _ = _client(sim).fetch_report(BOT, START, START, 1)
    assert rows == sim.expected_rows(BOT, START, START) == sim.expected_report_rows(1, BOT, START, START)
    assert "conversation_id" in rows[0]


def test_post_export_of_type_3_emails_a_csv_that_reads_back_to_the_ground_truth(
    sim: CertainlySimulator,
) -> None:
    answer = _client(sim).request_export(BOT, START, END, 3)
    assert answer.outcome is Outcome.ACCEPTED
    assert sim.wait_idle(timeout=10.0), "the simulator did not deliver in time"
    [export] = sim.exports
    assert export.delivered and export.report_id == 3 and len(sim.outbox) == 1
    parsed = parse_email(sim.outbox[0])
    [attachment] = parsed.reports
    assert attachment.filename == report_type_filename(3, BOT, START, END)
    assert BOT in (parsed.subject or "") and START.isoformat() in (parsed.subject or "")
    truth = sim.expected_report_rows(3, BOT, START, END)
    assert export.rows == len(truth)
    report = read_report(attachment.data, 3, window=(START, END))
    assert report.rows_read == len(truth) and report.rejected.height == 0
    assert report.rows.drop("row_key").to_dicts() == typed_truth(truth)
    assert report.columns["bounce_rate"] == "float" and report.columns["channel"] == "text"
