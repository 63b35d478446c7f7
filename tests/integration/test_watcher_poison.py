"""One bad email never stops the archive (issue 12): each kind of poison, as a real email
in a real Dovecot placed before a valid report, is set aside with its reason while the
valid report after it is archived in the same pass; a second pass adds nothing and does
not take the bad one up again; ``retry --failed`` does, after a fix.

One Dovecot serves the module; each test logs in as its own user. The passes run
in-process (``run_once``) so a test can change a setting between passes; the command
line, exit codes and ``status --json`` are covered by tests/e2e/test_watcher_poison_cli.py.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

import ingest.mail.attachments
from ingest.archive.storage import storage_for
from ingest.ops.status import collect_status
from ingest.pipeline.failed_emails import retry_failed
from ingest.pipeline.passes import run_once
from ingest.pipeline.summary import RunSummary
from ingest.settings import Settings
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import archive_files, assert_archive_matches
from tests.support.imapservers import server_name
from tests.support.mail import (
    FAILED,
    PROCESSED,
    Mailboxes,
    Report,
    accept_windows,
    corrupt_gzip,
    damaged_base64_email,
    deeply_nested_email,
    deliver,
    email_rows,
    encrypted_zip,
    message_id,
    moved,
    non_utf8_csv,
    report,
    report_email,
    snapshot,
    truth_of,
    watcher_settings,
)

pytestmark = pytest.mark.integration

PASSWORD = "secret"
ACCOUNTS = Mailboxes("poison", 16, PASSWORD)
USERS = ACCOUNTS.users
BOT = "3f0c2a9e-3333-4c1a-9d4e-00000000000c"
CJK_NAME = "月次メッセージ報告書" * 12 + ".csv"  # 120 characters before .csv: 364 bytes in UTF-8


def window(day: int) -> Report:
    return report(BOT, date(2024, 5, day), date(2024, 5, day + 2))


def run(settings: Settings, *reports: Report) -> RunSummary:
    """Accept the reports' windows (once), then one pass."""
    with Store.open(settings.state.path) as store:
        known = {(w.bot_id, w.from_date, w.to_date) for w in store.windows()}
        accept_windows(store, *[r for r in reports if (r.bot_id, r.start, r.end) not in known])
        return run_once(settings, store)


def failed_in_status(settings: Settings) -> dict[str, dict[str, object]]:
    """`ingest status`'s failed emails by Message-ID."""
    with Store.open(settings.state.path) as store:
        return {str(m["message_id"]): m for m in collect_status(store)["failed_messages"]}


#: class -> (build the poisoned email for a report, words its one-line reason must have,
#: imap settings the class needs)
POISONS: dict[str, tuple[Callable[[Report], bytes], str, dict[str, object]]] = {
    "corrupt gzip stream": (
        lambda rep: report_email(
            rep, filename=rep.filename + ".gz", mime="application/gzip", data=corrupt_gzip(rep.csv)
        ),
        ".csv.gz: corrupt gzip stream",
        {},
    ),
    "encrypted zip member": (
        lambda rep: report_email(
            rep,
            filename=rep.filename[:-4] + ".zip",
            mime="application/zip",
            data=encrypted_zip(rep.filename, rep.csv),
        ),
        "is encrypted",
        {},
    ),
    "MIME nested 1000 levels": (lambda rep: deeply_nested_email(rep, 1000), "nested deeper than 50", {}),
    "120 CJK characters in the name": (
        lambda rep: report_email(rep, filename=CJK_NAME, data=non_utf8_csv(rep)),
        "not UTF-8",
        {},
    ),
    "bad base64 line, part by part": (
        lambda rep: damaged_base64_email(rep),
        "attachment message_report_",
        {"part_fetch_bytes": 1024},
    ),
}


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poisoned_email_is_set_aside_and_the_report_after_it_is_archived(
    dovecot, user, workdir, poison: str
) -> None:
    build, reason_words, imap_fields = POISONS[poison]
    bad, good = window(1), window(4)
    bad_raw, good_raw = build(bad), report_email(good)
    deliver(dovecot, user, PASSWORD, [bad_raw, good_raw])  # the poison first
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir, **imap_fields)

    summary = run(settings, bad, good)

    assert summary.emails_archived == 1 and summary.needs_attention  # exit 1
    assert_archive_matches(Path(settings.output.root), truth_of(good))
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before, {message_id(bad_raw): FAILED, message_id(good_raw): PROCESSED}
    )
    failed = failed_in_status(settings)
    assert list(failed) == [message_id(bad_raw)]
    record = failed[message_id(bad_raw)]
    assert reason_words in str(record["reason"]) and "\n" not in str(record["reason"])
    assert (
        record["now_in"] == server_name(dovecot, FAILED) and record["attempts"] == 1
    )  # as the server names it
    with Store.open(settings.state.path) as store:
        assert {w.from_date: w.state for w in store.windows()}[good.start] is WindowState.ARCHIVED

    files = archive_files(Path(settings.output.root))
    again = run(settings)

    assert (again.emails_seen, again.emails_failed, again.problems) == (0, 0, [])
    assert archive_files(Path(settings.output.root)) == files
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before, {message_id(bad_raw): FAILED, message_id(good_raw): PROCESSED}
    )
    assert failed_in_status(settings)[message_id(bad_raw)]["attempts"] == 1  # not tried again


def test_a_long_cjk_name_is_quarantined_under_a_name_the_file_system_takes(dovecot, user, workdir) -> None:
    bad = window(7)
    deliver(dovecot, user, PASSWORD, [report_email(bad, filename=CJK_NAME, data=non_utf8_csv(bad))])
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)

    summary = run(settings, bad)

    assert (
        summary.reports_quarantined == 1 and summary.emails_failed == 0
    )  # its own reason, not the catch-all
    [kept] = list((Path(settings.output.root) / "quarantine").glob("*/original-*"))
    assert len(kept.name.encode()) <= 255 and kept.name.endswith(".csv")
    assert kept.read_bytes() == non_utf8_csv(bad)
    assert "UTF-8" in json.loads((kept.parent / "reason.json").read_text())["reason"]


def test_the_part_path_decodes_a_damaged_base64_line_as_the_in_memory_path_does(
    dovecot, user, workdir
) -> None:
    """The same damaged message, fetched whole and fetched part by part: neither raises,
    and both set it aside for the same reason."""
    reasons = []
    for part_fetch_bytes in (64 * 1024**2, 1024):
        user = ACCOUNTS.take()
        bad = window(10)
        deliver(dovecot, user, PASSWORD, [damaged_base64_email(bad)])
        settings = watcher_settings(
            dovecot, user, PASSWORD, workdir / str(part_fetch_bytes), part_fetch_bytes=part_fetch_bytes
        )
        summary = run(settings, bad)
        assert summary.emails_failed == 0 and summary.reports_quarantined == 1
        reasons.append([r["reason"] for r in email_rows(settings.state.path)])
    assert reasons[0] == reasons[1] and reasons[0][0]


def test_anything_unexpected_is_caught_at_the_message_boundary(dovecot, user, workdir, monkeypatch) -> None:
    """Without the depth check, a 1000-level MIME tree makes the email package raise
    RecursionError: the boundary catches it, records it and goes on."""
    monkeypatch.setattr(ingest.mail.attachments, "MAX_MIME_DEPTH", 10**6)
    bad, good = window(13), window(16)
    bad_raw, good_raw = deeply_nested_email(bad, 1000), report_email(good)
    deliver(dovecot, user, PASSWORD, [bad_raw, good_raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)

    summary = run(settings, bad, good)

    assert (summary.emails_failed, summary.emails_archived) == (1, 1)
    assert any("RecursionError" in p and message_id(bad_raw) in p for p in summary.problems)
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before, {message_id(bad_raw): FAILED, message_id(good_raw): PROCESSED}
    )
    record = failed_in_status(settings)[message_id(bad_raw)]
    assert "RecursionError" in str(record["reason"])
    assert record["sha256"] and record["uid"] == 1
    assert [r["outcome"] for r in email_rows(settings.state.path)] == ["failed", "archived"]
    assert_archive_matches(Path(settings.output.root), truth_of(good))


def test_retry_failed_archives_what_a_fix_made_readable(dovecot, user, workdir) -> None:
    """A large report over a too-small inflate limit fails; once the limit is raised,
    `retry --failed` finds it in the failed folder by Message-ID and archives it; what
    still fails stays listed, one more attempt counted."""
    import gzip

    big, hopeless = report(BOT, date(2024, 6, 1), date(2024, 6, 10), per_day=60), window(19)
    big_raw = report_email(
        big, filename=big.filename + ".gz", mime="application/gzip", data=gzip.compress(big.csv)
    )
    hopeless_raw = POISONS["encrypted zip member"][0](hopeless)
    deliver(dovecot, user, PASSWORD, [big_raw, hopeless_raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)
    settings.output.max_inflated_bytes = len(big.csv) // 2

    first = run(settings, big, hopeless)

    assert first.emails_archived == 0
    assert "inflates beyond" in str(failed_in_status(settings)[message_id(big_raw)]["reason"])

    settings.output.max_inflated_bytes = 512 * 1024**2  # the fix
    with Store.open(settings.state.path) as store:
        summary = RunSummary()
        retried = {
            r.record["message_id"]: r.outcome
            for r in retry_failed(settings, store, storage_for(settings), summary)
        }

    assert retried == {message_id(big_raw): "archived", message_id(hopeless_raw): "quarantined"}
    assert summary.emails_archived == 1 and summary.needs_attention
    assert_archive_matches(Path(settings.output.root), truth_of(big))
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before, {message_id(big_raw): PROCESSED, message_id(hopeless_raw): FAILED}
    )
    still = failed_in_status(settings)
    assert list(still) == [message_id(hopeless_raw)] and still[message_id(hopeless_raw)]["attempts"] == 2
    with Store.open(settings.state.path) as store:
        assert {w.from_date: w.state for w in store.windows()}[big.start] is WindowState.ARCHIVED
        assert retry_failed(settings, store, storage_for(settings), RunSummary())[0].outcome == "quarantined"


def test_retry_finds_a_failed_email_without_message_id_by_its_bytes(dovecot, user, workdir) -> None:
    bad = window(22)
    raw = POISONS["corrupt gzip stream"][0](bad)
    raw = b"".join(line for line in raw.splitlines(keepends=True) if not line.startswith(b"Message-ID:"))
    deliver(dovecot, user, PASSWORD, [raw])
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)
    run(settings, bad)
    with Store.open(settings.state.path) as store:
        [record] = store.failed_messages()
        assert record["message_id"] is None and record["sha256"]

        [retried] = retry_failed(settings, store, storage_for(settings), RunSummary())

        assert retried.outcome == "quarantined" and "corrupt gzip stream" in str(retried.reason)
        assert store.failed_messages()[0]["attempts"] == 2


def test_when_the_server_will_not_take_the_failed_folder_the_email_is_left_flagged(
    dovecot, user, workdir
) -> None:
    """Dovecot refuses to create "~failed" ("Invalid mailbox name: Begins with '~'"): the
    bad email stays in INBOX, flagged, recorded where it is; the pass goes on, and
    `retry --failed` finds it there by its UID."""
    bad, good = window(25), window(28)
    bad_raw, good_raw = POISONS["encrypted zip member"][0](bad), report_email(good)
    deliver(dovecot, user, PASSWORD, [bad_raw, good_raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir, failed_folder="~failed")

    summary = run(settings, bad, good)

    assert summary.emails_archived == 1
    flagged = moved(before, {message_id(good_raw): PROCESSED})
    flagged["INBOX"] = Counter(
        {
            (mid, flags | {"\\Flagged"} if mid == message_id(bad_raw) else flags): n
            for (mid, flags), n in flagged["INBOX"].items()
        }
    )
    assert snapshot(dovecot, user, PASSWORD) == flagged
    record = failed_in_status(settings)[message_id(bad_raw)]
    assert record["now_in"] == "INBOX (flagged)" and "is encrypted" in str(record["reason"])
    assert run(settings).emails_seen == 0

    with Store.open(settings.state.path) as store:
        [retried] = retry_failed(settings, store, storage_for(settings), RunSummary())
    assert retried.outcome == "quarantined" and snapshot(dovecot, user, PASSWORD) == flagged
