"""Simulator exports delivered into the embedded pymap server, read back with imapclient."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from datetime import date

import pytest
import requests
from imapclient import IMAPClient

from ingest.simulator import (
    CertainlySimulator,
    EmbeddedImap,
    SimulatorConfig,
    rows_to_csv,
)

pytestmark = pytest.mark.integration

BOT = "3f2b8c1e-0000-4000-8000-000000000001"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def imap() -> Iterator[EmbeddedImap]:
    with EmbeddedImap("owner@example.test", "imap-test-password") as server:
        yield server


def _client(server: EmbeddedImap) -> IMAPClient:
    client = IMAPClient(server.host, port=server.port, ssl=False, timeout=TIMEOUT)
    client.login(server.username, server.password)
    return client


def test_mailbox_starts_empty_and_serves_imap(imap: EmbeddedImap) -> None:
    client = _client(imap)
    try:
        assert [name for _, _, name in client.list_folders()] == ["INBOX"]
        client.select_folder("INBOX", readonly=True)
        assert client.search(["FROM", "reports@certainly.example"]) == []
        assert b"IDLE" in client.capabilities() and b"UIDPLUS" in client.capabilities()
    finally:
        client.logout()


def test_wrong_password_is_refused(imap: EmbeddedImap) -> None:
    client = IMAPClient(imap.host, port=imap.port, ssl=False, timeout=TIMEOUT)
    try:
        with pytest.raises(IMAPClient.Error):
            client.login(imap.username, "not-the-password")
    finally:
        client.shutdown()


def test_export_arrives_with_its_attachment(imap: EmbeddedImap) -> None:
    folder = "Reports/Certainly"  # ImapDelivery creates a missing folder
    config = SimulatorConfig(delivery_delay=0.1, recipient=imap.username)
    with CertainlySimulator(config, deliver=imap.delivery(folder)) as sim:
        start, end = date(2024, 5, 1), date(2024, 5, 20)
        response = requests.post(
            sim.report_url,
            timeout=TIMEOUT,
            headers={"Authorization": "JWT demo-token"},
            json={"fromDate": start.isoformat(), "toDate": end.isoformat(), "reportId": 1, "botId": BOT},
        )
        assert response.status_code == 200
        assert sim.wait_idle(timeout=15.0)
        (export,) = sim.exports
        assert export.delivered and export.error is None
        expected_csv = rows_to_csv(sim.expected_rows(BOT, start, end))

    client = _client(imap)
    try:
        client.select_folder(folder, readonly=True)
        uids = client.search(["FROM", "reports@certainly.example"])
        assert len(uids) == 1
        fetched = client.fetch(uids, ["BODYSTRUCTURE", "BODY.PEEK[]"])[uids[0]]
    finally:
        client.logout()
    structure = fetched[b"BODYSTRUCTURE"]
    assert structure.is_multipart
    msg = email.message_from_bytes(fetched[b"BODY[]"], policy=email.policy.default)
    assert msg["Message-ID"] == export.message_id
    assert msg["Subject"] == f"Certainly message report {BOT} 2024-05-01 - 2024-05-20"
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == f"message_report_{BOT}_2024-05-01_2024-05-20.csv"
    assert attachment.get_payload(decode=True) == expected_csv


def test_stop_frees_the_port() -> None:
    server = EmbeddedImap().start()
    port = server.port
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2.0).close()
