"""The connection dies mid-fetch, the server goes silent, the folder is recreated: in the
end every report is ingested exactly once and nothing else in the mailbox is touched.

A loopback TCP proxy (tests/support/tcpproxy.py) sits between the job and Dovecot and
cuts (or silences) a connection after a given number of bytes from the server, which
lands in the middle of the FETCH of a large report.
"""

from __future__ import annotations

import socket
import time
from datetime import date
from pathlib import Path

import pytest

from ingest.errors import MailboxUnavailable
from ingest.mail.mailbox import Mailbox
from ingest.pipeline.passes import run_once
from ingest.settings import Settings
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import assert_archive_matches
from tests.support.mail import (
    PROCESSED,
    Mailboxes,
    Report,
    accept_windows,
    attachment_rows,
    deliver,
    email_rows,
    imap,
    message_id,
    moved,
    report,
    report_email,
    snapshot,
    stranger_email,
    truth_of,
    watcher_settings,
)
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration

PASSWORD = "secret"
ACCOUNTS = Mailboxes("fault", 11, PASSWORD)
USERS = ACCOUNTS.users
BOT = "3f0c2a9e-4444-4c1a-9d4e-00000000000d"
CUT_AT = 1_500_000  # bytes from the server: past the small first report, inside the big one


@pytest.fixture(scope="module")
def reports() -> tuple[Report, Report, Report]:
    small = report(BOT, date(2024, 6, 1), date(2024, 6, 3))
    big = report(BOT, date(2024, 6, 4), date(2024, 6, 13), per_day=400)  # ~3.4 MB CSV
    last = report(BOT, date(2024, 6, 14), date(2024, 6, 16))
    assert len(report_email(small)) < CUT_AT / 4 and len(report_email(big)) > 2 * CUT_AT
    return small, big, last


def mailbox_with(
    dovecot, user: str, reports: tuple[Report, ...], folder: str = "INBOX"
) -> tuple[list[bytes], bytes]:  # type: ignore[no-untyped-def]
    raws = [report_email(r) for r in reports]
    stranger = stranger_email("attacker@evil.test")
    deliver(dovecot, user, PASSWORD, [raws[0], stranger, *raws[1:]], folder=folder)
    return raws, stranger


def assert_exactly_once(settings: Settings, *reps: Report) -> None:
    assert_archive_matches(Path(settings.output.root), truth_of(*reps))
    archived = [a for a in attachment_rows(settings.state.path) if a["outcome"] == "archived"]
    assert len(archived) == len(reps) and sum(a["rows_written"] for a in archived) == sum(
        len(r.rows) for r in reps
    )
    manifests = list((Path(settings.output.root) / "manifests").iterdir())
    assert len(manifests) == len(reps)
    with Store.open(settings.state.path) as store:
        assert {w.state for w in store.windows()} == {WindowState.ARCHIVED}


def test_a_cut_mid_fetch_reconnects_and_the_same_run_completes(dovecot, user, workdir, reports) -> None:
    raws, _ = mailbox_with(dovecot, user, reports)
    before = snapshot(dovecot, user, PASSWORD)
    with TcpProxy(dovecot.port, cut_after=CUT_AT, cut_connections={0}) as proxy:
        settings = watcher_settings(dovecot, user, PASSWORD, workdir, port=proxy.port)
        with Store.open(settings.state.path) as store:
            accept_windows(store, *reports)
            summary = run_once(settings, store)
        assert proxy.cuts == 1 and proxy.bytes_down(0) == CUT_AT  # it did die mid-stream
        assert proxy.connections == 2

    assert (summary.reports_archived, summary.reports_duplicate, summary.emails_archived) == (3, 0, 3)
    assert_exactly_once(settings, *reports)
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(r): PROCESSED for r in raws})
    outcomes = [(r["uid"], r["outcome"]) for r in email_rows(settings.state.path)]
    assert len(outcomes) == len({uid for uid, _ in outcomes}) == 4


def test_cuts_on_every_attempt_fail_the_run_and_the_next_run_completes(
    dovecot, user, workdir, reports
) -> None:
    raws, _ = mailbox_with(dovecot, user, reports)
    before = snapshot(dovecot, user, PASSWORD)
    with TcpProxy(dovecot.port, cut_after=CUT_AT) as proxy:
        settings = watcher_settings(dovecot, user, PASSWORD, workdir, port=proxy.port, reconnect_attempts=2)
        with Store.open(settings.state.path) as store:
            accept_windows(store, *reports)
            with pytest.raises(MailboxUnavailable):
                run_once(settings, store)
            assert proxy.cuts == 2
            # The first report was done before the first cut: it stays done.
            assert [a["filename"] for a in attachment_rows(settings.state.path)] == [reports[0].filename]

            proxy.heal()  # the network is back for the next scheduled run
            summary = run_once(settings, store)

    assert (summary.reports_archived, summary.reports_duplicate, summary.emails_archived) == (2, 0, 2)
    assert_exactly_once(settings, *reports)
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(r): PROCESSED for r in raws})


def test_a_server_gone_silent_mid_fetch_times_out_and_the_run_completes(
    dovecot, user, workdir, reports
) -> None:
    raws, _ = mailbox_with(dovecot, user, reports)
    before = snapshot(dovecot, user, PASSWORD)
    with TcpProxy(dovecot.port, cut_after=CUT_AT, cut_connections={0}, stall=True) as proxy:
        settings = watcher_settings(dovecot, user, PASSWORD, workdir, port=proxy.port, timeout=2)
        started = time.monotonic()
        with Store.open(settings.state.path) as store:
            accept_windows(store, *reports)
            summary = run_once(settings, store)
        elapsed = time.monotonic() - started
        assert proxy.cuts == 1 and proxy.connections >= 2

    assert elapsed < 20, f"a silent server held the run for {elapsed:.1f} s"
    assert (summary.reports_archived, summary.reports_duplicate) == (3, 0)
    assert_exactly_once(settings, *reports)
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(r): PROCESSED for r in raws})


def test_a_server_that_never_greets_fails_within_the_timeout(workdir) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the handshake; nobody ever says "* OK"
        server = type("Silent", (), {"host": "127.0.0.1", "port": silent.getsockname()[1]})()
        settings = watcher_settings(server, "nobody@example.test", PASSWORD, workdir, timeout=1.5)
        started = time.monotonic()
        with pytest.raises(MailboxUnavailable):
            Mailbox(settings.imap).connect()
        assert time.monotonic() - started < 10


def test_a_new_uidvalidity_rescans_without_losing_or_repeating(dovecot, user, workdir, reports) -> None:
    first, second = (
        report(BOT, date(2024, 7, 1), date(2024, 7, 3)),
        report(BOT, date(2024, 7, 4), date(2024, 7, 6)),
    )
    late = report(BOT, date(2024, 7, 7), date(2024, 7, 9))
    raws, stranger = mailbox_with(dovecot, user, (first, second), folder="Reports")
    settings = watcher_settings(dovecot, user, PASSWORD, workdir, folder="Reports")
    with Store.open(settings.state.path) as store:
        accept_windows(store, first, second, late)
        one = run_once(settings, store)
        old_validity, old_last = store.mailbox_position("Reports")  # type: ignore[misc]
    assert (one.reports_archived, one.emails_ignored) == (2, 1)
    assert old_last == 3

    # The folder is deleted and recreated (a migration, a restored backup): new UIDVALIDITY,
    # UIDs start again at 1. The late report gets UID 1, below the old position.
    with imap(dovecot, user, PASSWORD) as client:
        client.delete_folder("Reports")
        client.create_folder("Reports")
    late_raw = report_email(late)
    deliver(dovecot, user, PASSWORD, [late_raw, *raws, stranger], folder="Reports")
    before = snapshot(dovecot, user, PASSWORD)
    with Store.open(settings.state.path) as store:
        two = run_once(settings, store)
        new_validity, _ = store.mailbox_position("Reports")  # type: ignore[misc]
        three = run_once(settings, store)

    assert new_validity != old_validity
    assert (two.reports_archived, two.reports_duplicate, two.rows_written) == (1, 2, len(late.rows))
    assert (two.emails_archived, two.emails_ignored) == (3, 1)
    assert (three.emails_seen, three.rows_written) == (0, 0)
    assert_exactly_once(settings, first, second, late)
    # The re-appended copies are recognised and moved like the originals; the stranger stays.
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before,
        {message_id(late_raw): PROCESSED, **{message_id(r): PROCESSED for r in raws}},
        source="Reports",
    )


@pytest.mark.parametrize("server_saw_it", [False, True], ids=["move lost", "move done, answer lost"])
def test_a_cut_during_the_move_after_archiving_never_repeats_the_report(
    dovecot, user, workdir, server_saw_it
) -> None:
    rep = report(BOT, date(2024, 8, 1), date(2024, 8, 3))
    raws, _ = mailbox_with(dovecot, user, (rep,))
    before = snapshot(dovecot, user, PASSWORD)
    with TcpProxy(
        dovecot.port, cut_on_command=b"UID MOVE", cut_connections={0}, deliver_command=server_saw_it
    ) as proxy:
        settings = watcher_settings(dovecot, user, PASSWORD, workdir, port=proxy.port)
        with Store.open(settings.state.path) as store:
            accept_windows(store, rep)
            summary = run_once(settings, store)
        assert proxy.cuts == 1

    # Data was durable before the MOVE: the retry finds the bytes already archived.
    assert summary.reports_archived == 1
    assert summary.reports_duplicate == (0 if server_saw_it else 1)
    assert_exactly_once(settings, rep)
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(raws[0]): PROCESSED})
