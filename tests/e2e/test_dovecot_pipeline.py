"""The whole pipeline against real IMAP servers: the simulator mails reports into them.

Each server of :data:`SERVER_KINDS` in turn: Dovecot, Dovecot and Cyrus with the personal
namespace under ``INBOX.`` (cPanel, Courier, older Cyrus), and Cyrus in its default
namespace. The processed folder must hold the emails under the name that server gives it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient import IMAPClient

from ingest.pipeline.passes import run_once, run_until_done
from ingest.request.requester import plan_backfill
from ingest.settings import Settings
from ingest.simulator import CertainlySimulator, ImapDelivery, SimulatorConfig
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import archive_files, assert_archive_matches, expected_rows
from tests.support.imapservers import SERVER_KINDS, ImapServer, server_name
from tests.support.job import Account, job_settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

USER, PASSWORD = "owner@example.test", "secret"
USERS = {USER: PASSWORD}
BOTS = ["3f0c2a9e-1111-4c1a-9d4e-000000000001", "3f0c2a9e-2222-4c1a-9d4e-000000000002"]
START, END = date(2024, 1, 1), date(2024, 2, 14)
PROCESSED = "certainly-ingest/processed"


@pytest.fixture
def delivery(imap_server: ImapServer) -> ImapDelivery:
    return ImapDelivery(imap_server.host, imap_server.port, USER, PASSWORD, folder="INBOX")


@pytest.fixture
def simulator(delivery: ImapDelivery) -> Iterator[CertainlySimulator]:
    config = SimulatorConfig(delivery_delay=0.05, recipient=USER)
    with CertainlySimulator(config, deliver=delivery) as sim:
        yield sim


def settings_for(sim: CertainlySimulator, server: ImapServer, workdir: Path) -> Settings:
    return job_settings(
        sim,
        Account(server.host, server.port, USER, PASSWORD),
        workdir,
        certainly={"timeout": 10},
        requester={
            "window_days": 15,
            "poll_interval": 0.05,
            "retry_initial": 0.05,
            "retry_max": 0.2,
            "via": "email",  # the emailed path, as before routing (issue 27)
        },
        imap_options={"timeout": 10, "allowed_senders": ["@certainly.example"]},
    )


def stranger_email() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Certainly Reports <reports@certainly.example.evil.test>"
    msg["Subject"] = f"Certainly message report {BOTS[0]} {START} - {END}"
    msg.set_content("A look-alike that must be left alone.")
    msg.add_attachment(
        b"id,timestamp\n1,2024-01-01T00:00:00Z\n",
        maintype="text",
        subtype="csv",
        filename="message_report.csv",
    )
    return msg.as_bytes()


def folder_counts(server: ImapServer) -> dict[str, int]:
    """Messages per folder, by the name this server gives each (see :func:`server_name`)."""
    with IMAPClient(server.host, port=server.port, ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        counts = {}
        for folder in ("INBOX", server_name(server, PROCESSED)):
            if client.folder_exists(folder):
                counts[folder] = client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"]
        return counts


@pytest.mark.parametrize("imap_server", SERVER_KINDS, indirect=True)
def test_backfill_through_dovecot_archives_everything_once(
    simulator: CertainlySimulator, imap_server: ImapServer, delivery: ImapDelivery, tmp_path: Path
) -> None:
    delivery.deliver(stranger_email())
    settings = settings_for(simulator, imap_server, tmp_path)
    with Store.open(settings.state.path) as store:
        planned = plan_backfill(store, BOTS, START, END, window_days=15)
        summary = run_until_done(settings, store, timeout=120)
        assert {w.state for w in store.windows()} == {WindowState.ARCHIVED}

    truth = expected_rows(BOTS, START, END)
    assert_archive_matches(tmp_path / "archive", truth)
    assert summary.rows_written == len(truth)
    assert summary.rows_read == summary.rows_written + summary.rows_duplicate + summary.rows_rejected
    assert summary.emails_ignored == 1 and not summary.needs_attention
    # The look-alike stays where it was; every report email moved to the processed folder,
    # inside the server's personal namespace (INBOX.certainly-ingest.processed when prefixed).
    assert folder_counts(imap_server) == {"INBOX": 1, server_name(imap_server, PROCESSED): len(planned)}


@pytest.mark.parametrize("imap_server", ["dovecot", "cyrus-inbox-prefix"], indirect=True)
def test_second_run_writes_nothing_and_redelivery_is_skipped(
    simulator: CertainlySimulator, imap_server: ImapServer, delivery: ImapDelivery, tmp_path: Path
) -> None:
    settings = settings_for(simulator, imap_server, tmp_path)
    with Store.open(settings.state.path) as store:
        plan_backfill(store, BOTS[:1], START, date(2024, 1, 20), window_days=15)
        run_until_done(settings, store, timeout=120)
        files_before = archive_files(tmp_path / "archive")

        again = run_once(settings, store)
        assert (again.emails_seen, again.rows_written, again.files_written) == (0, 0, 0)

        # The vendor sends the same report twice: the copy is recognised by its bytes.
        with IMAPClient(imap_server.host, port=imap_server.port, ssl=False, timeout=10) as client:
            client.login(USER, PASSWORD)
            client.select_folder(server_name(imap_server, PROCESSED))
            uid = client.search("ALL")[0]
            raw = client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
        delivery.deliver(raw)
        third = run_once(settings, store)
        assert (third.reports_duplicate, third.rows_written, third.files_written) == (1, 0, 0)

    assert archive_files(tmp_path / "archive") == files_before
    assert_archive_matches(tmp_path / "archive", expected_rows(BOTS[:1], START, date(2024, 1, 20)))
    assert folder_counts(imap_server)["INBOX"] == 0
