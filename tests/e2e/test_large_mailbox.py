"""A mailbox of 50,000 messages against a real Dovecot: the first pass screens every one of
them in bounded UID ranges (never one FETCH of 50,000 comma-separated UIDs, which is a
command line of ~300 KB, over Dovecot's default ``imap_max_line_length`` of 64 KiB) and
archives the one report among them; the second pass finds nothing new.

The folder is filled by writing maildir files directly (and letting Dovecot index them on
the first SELECT): about 0.4 s per 5,000 messages here, where MULTIAPPEND took 8.4 s per
5,000. Dovecot's folder lives on a RAM disk (/dev/shm) when one with room is there, so that
creating and removing 50,000 files does not wait on the disk. The pass times are printed
(run with -s) and kept as test properties; nothing is asserted on them.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ingest.mail.mailbox import Mailbox
from ingest.pipeline.passes import run_once
from ingest.state.store import Store
from tests.support.archive import assert_archive_matches
from tests.support.dovecot import Dovecot, require_dovecot
from tests.support.mail import (
    PROCESSED,
    accept_windows,
    imap,
    report,
    report_email,
    truth_of,
    watcher_settings,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PASSWORD = "secret"
USER = "big@example.test"
BOT = "7d1e4b2a-5555-4c1a-9d4e-0000000000aa"
MESSAGES = 50_000
REPORT_AT = 31_337  # where the one real report sits among the others


def ram_disk() -> str | None:
    """/dev/shm when it has room for the folder (a container's default 64 MiB has not)."""
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    return "/dev/shm" if stats.f_bavail * stats.f_frsize >= 2 * 1024**3 else None


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    require_dovecot()
    workdir = Path(tempfile.mkdtemp(prefix="ingest-bigbox-", dir=ram_disk()))
    try:
        with Dovecot(workdir, users={USER: PASSWORD}) as server:
            yield server
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(workdir)], check=False, timeout=120)


def unrelated(i: int) -> bytes:
    """A small everyday message from a sender not on the allow-list."""
    senders = ("news@shop.example.org", "billing@vendor.example.net", "Certainly <reports@evil.test>")
    return (
        f"From: {senders[i % len(senders)]}\r\nTo: {USER}\r\nSubject: Unrelated message {i}\r\n"
        f"Message-ID: <unrelated-{i}@fill.test>\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
        f"\r\nHello, this is message {i}.\r\n"
    ).encode()


def fill_maildir(server: object, messages: list[bytes]) -> None:
    """Write ``messages`` straight into the user's INBOX (maildir ``cur/``), in order, owned
    by the ``dovecot`` user; Dovecot assigns UIDs when the folder is first selected."""
    home = Path(server.config_path).parent / "mail" / USER  # type: ignore[attr-defined]
    for sub in ("cur", "new", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    stamp = int(time.time())
    cur = str(home / "cur")
    for i, raw in enumerate(messages):
        # <time>.M<n>P<pid>.<host>,S=<size>:2,<flags>: the size in the name spares a stat.
        fd = os.open(
            f"{cur}/{stamp}.M{i:06d}P1.fill,S={len(raw)}:2,", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        try:
            os.write(fd, raw)
        finally:
            os.close(fd)
    subprocess.run(["chown", "-R", "dovecot:dovecot", str(home)], check=True, timeout=120)


def folder_sizes(server: object) -> dict[str, int]:
    with imap(server, USER, PASSWORD) as client:
        return {
            folder: int(client.select_folder(client_name, readonly=True)[b"EXISTS"])
            for folder, client_name in (("INBOX", "INBOX"), (PROCESSED, PROCESSED.replace("/", ".")))
        }


def test_a_first_pass_over_fifty_thousand_messages_archives_the_report(
    dovecot, workdir, capsys, record_property
) -> None:
    rep = report(BOT, date(2024, 3, 1), date(2024, 3, 3))
    messages = [unrelated(i) for i in range(MESSAGES)]
    messages.insert(REPORT_AT, report_email(rep))
    started = time.monotonic()
    fill_maildir(dovecot, messages)
    filled = time.monotonic() - started
    settings = watcher_settings(dovecot, USER, PASSWORD, workdir, timeout=60)

    with Store.open(settings.state.path) as store:
        accept_windows(store, rep)
        started = time.monotonic()
        first = run_once(settings, store)
        first_s = time.monotonic() - started
        started = time.monotonic()
        second = run_once(settings, store)
        second_s = time.monotonic() - started

    with capsys.disabled():
        print(
            f"\n[measured] {MESSAGES:,} messages + 1 report: maildir filled in {filled:.1f} s, "
            f"first pass {first_s:.1f} s (Dovecot indexing included), second pass {second_s:.2f} s"
        )
    record_property("large_mailbox_first_pass_s", round(first_s, 1))
    record_property("large_mailbox_second_pass_s", round(second_s, 2))
    assert (first.emails_seen, first.emails_ignored, first.emails_archived) == (MESSAGES + 1, MESSAGES, 1)
    assert (first.reports_archived, first.rows_written, first.problems) == (1, len(rep.rows), [])
    assert (second.emails_seen, second.rows_written, second.problems) == (0, 0, [])
    assert_archive_matches(Path(settings.output.root), truth_of(rep))
    assert folder_sizes(dovecot) == {"INBOX": MESSAGES, PROCESSED: 1}
    with Mailbox(settings.imap) as box:  # what `ingest doctor` counts, in bounded ranges too
        box.select()
        assert box.count(["FROM", "shop.example.org"]) == len(range(0, MESSAGES, 3))


def test_bounded_ranges_screen_every_message_once_across_gaps(dovecot, workdir) -> None:
    fill_maildir(dovecot, [unrelated(i) for i in range(23)])
    with imap(dovecot, USER, PASSWORD) as client:  # expunge a run and a few single UIDs
        client.select_folder("INBOX")
        gone = [3, 4, 5, 6, 7, 8, 12, 20, 23]
        client.add_flags(gone, [b"\\Deleted"])
        client.uid_expunge(gone)
    settings = watcher_settings(dovecot, USER, PASSWORD, workdir)
    left = [uid for uid in range(1, 24) if uid not in gone]

    with Mailbox(settings.imap) as box:
        box.select()
        screened = [uid for uid, (_, size, _) in box.screen_new(0, span=4, batch=2) if size > 0]
        after_ten = [uid for uid, _ in box.screen_new(10, span=3, batch=1)]
        nothing = list(box.screen_new(max(left)))

    assert screened == left
    assert after_ten == [uid for uid in left if uid > 10]
    assert nothing == []
