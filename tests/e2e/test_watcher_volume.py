"""Volume against a real Dovecot: a mailbox of 1,000 unrelated emails, a 50 MB attachment,
and the fetch throughput of a 25 MB attachment (raw FETCH and through the pipeline).

The figures are printed (run with -s to see them) and kept as test properties.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest
from imapclient import IMAPClient

import ingest.pipeline.one_email as one_email
from ingest.pipeline.passes import run_once
from ingest.state.store import Store
from tests.support.archive import assert_archive_matches
from tests.support.mail import (
    PROCESSED,
    SENDER,
    Mailboxes,
    accept_windows,
    deliver,
    email_with,
    message_id,
    moved,
    report,
    report_email,
    snapshot,
    truth_of,
    unrelated_emails,
    watcher_settings,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PASSWORD = "secret"
ACCOUNTS = Mailboxes("vol", 5, PASSWORD)
USERS = ACCOUNTS.users
BOT = "3f0c2a9e-6666-4c1a-9d4e-00000000000f"
MB = 1024 * 1024


def say(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[measured] {text}")


def test_a_thousand_unrelated_emails_are_left_alone(dovecot, user, workdir, capsys, record_property) -> None:
    reports = [report(BOT, date(2024, 10, d), date(2024, 10, d + 2)) for d in (1, 4, 7)]
    raws = [report_email(r) for r in reports]
    others = unrelated_emails(990)
    # Ten from the report sender that carry no report (a newsletter, a password reset):
    # fetched, found empty, left where they are.
    newsletters = [email_with(sender=SENDER, subject=f"Certainly news {i}") for i in range(10)]
    deliver(dovecot, user, PASSWORD, others[:400])
    deliver(dovecot, user, PASSWORD, [raws[0], *newsletters[:5]])
    deliver(dovecot, user, PASSWORD, others[400:700], flags=[b"\\Seen"])
    deliver(dovecot, user, PASSWORD, [raws[1], *newsletters[5:]])
    deliver(dovecot, user, PASSWORD, others[700:], flags=[b"\\Flagged"])
    deliver(dovecot, user, PASSWORD, [raws[2]])
    before = snapshot(dovecot, user, PASSWORD)
    assert sum(before["INBOX"].values()) == 1003
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)

    with Store.open(settings.state.path) as store:
        accept_windows(store, *reports)
        started = time.monotonic()
        summary = run_once(settings, store)
        elapsed = time.monotonic() - started
        started = time.monotonic()
        again = run_once(settings, store)
        idle_pass = time.monotonic() - started

    say(capsys, f"1,000 unrelated + 3 reports: first pass {elapsed:.2f} s, next pass {idle_pass:.2f} s")
    record_property("thousand_pass_s", round(elapsed, 2))
    assert (summary.emails_seen, summary.emails_ignored, summary.emails_archived) == (1003, 990, 3)
    assert (again.emails_seen, again.rows_written) == (0, 0)
    assert_archive_matches(Path(settings.output.root), truth_of(*reports))
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(r): PROCESSED for r in raws})


def test_a_50_mb_attachment_is_archived(dovecot, user, workdir, capsys, record_property) -> None:
    big = report(BOT, date(2024, 1, 1), date(2024, 1, 30), per_day=2100)
    assert len(big.csv) >= 50 * MB
    raw = report_email(big)
    deliver(dovecot, user, PASSWORD, [raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir, timeout=60)

    with Store.open(settings.state.path) as store:
        accept_windows(store, big)
        started = time.monotonic()
        summary = run_once(settings, store)
        elapsed = time.monotonic() - started

    say(
        capsys,
        f"{len(big.csv) / MB:.1f} MB attachment ({len(raw) / MB:.1f} MB message, "
        f"{len(big.rows)} rows): pass {elapsed:.1f} s",
    )
    record_property("attachment_50mb_pass_s", round(elapsed, 1))
    assert (summary.reports_archived, summary.rows_written, summary.rows_rejected) == (1, len(big.rows), 0)
    assert_archive_matches(Path(settings.output.root), truth_of(big))
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(raw): PROCESSED})


def test_fetch_throughput_of_a_25_mb_attachment(
    dovecot, user, workdir, capsys, record_property, monkeypatch
) -> None:
    rep = report(BOT, date(2024, 2, 1), date(2024, 2, 29), per_day=1080)
    assert 25 * MB <= len(rep.csv) < 27 * MB
    raw = report_email(rep)
    deliver(dovecot, user, PASSWORD, [raw])

    # Raw FETCH alone: one BODY.PEEK[] of the whole message over loopback.
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=60) as client:
        client.login(user, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        uid = client.search("ALL")[0]
        client.fetch([uid], ["RFC822.SIZE"])  # warm the server's cache of the file
        started = time.monotonic()
        body = client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
        raw_fetch = time.monotonic() - started
        client.logout()
    assert len(body) == len(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))

    # The pipeline's own fetch: a message this large goes part by part to disk.
    fetches: list[float] = []
    real_fetch = one_email.fetch_and_parse

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.monotonic()
        try:
            return real_fetch(*args, **kwargs)
        finally:
            fetches.append(time.monotonic() - started)

    monkeypatch.setattr(one_email, "fetch_and_parse", timed)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir, timeout=60)
    with Store.open(settings.state.path) as store:
        accept_windows(store, rep)
        started = time.monotonic()
        summary = run_once(settings, store)
        whole_pass = time.monotonic() - started

    assert summary.rows_written == len(rep.rows) and len(fetches) == 1
    size_mb, attachment_mb = len(body) / MB, len(rep.csv) / MB
    say(
        capsys,
        f"25 MB attachment ({attachment_mb:.1f} MB CSV, {size_mb:.1f} MB message base64): "
        f"raw FETCH {raw_fetch:.2f} s = {size_mb / raw_fetch:.0f} MB/s of message "
        f"({attachment_mb / raw_fetch:.0f} MB/s of attachment); pipeline fetch "
        f"{fetches[0]:.2f} s = {size_mb / fetches[0]:.0f} MB/s; whole pass {whole_pass:.1f} s "
        f"= {attachment_mb / whole_pass:.1f} MB/s of attachment archived",
    )
    record_property("fetch_25mb_raw_mb_s", round(size_mb / raw_fetch))
    record_property("fetch_25mb_pipeline_mb_s", round(size_mb / fetches[0]))
    assert_archive_matches(Path(settings.output.root), truth_of(rep))
