"""Hostile and odd mail against a real Dovecot: each gets its documented outcome, and
nothing else in the mailbox is touched (counts per folder and flags, \\Seen included).

One Dovecot serves the whole module; every test logs in as its own user, so each test
sees an empty mailbox of its own. The pass runs in-process (``run_once``), which lets a
test shrink the zip-bomb limit and spy on what is fetched.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from ingest.mail.mailbox import Mailbox
from ingest.pipeline.passes import run_once
from ingest.settings import Settings
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import archive_files, assert_archive_matches
from tests.support.mail import (
    AUTHSERV_ID,
    FAILED,
    PROCESSED,
    SENDER,
    Mailboxes,
    Report,
    accept_windows,
    attachment_rows,
    deliver,
    email_rows,
    email_with,
    gzip_bomb,
    message_id,
    moved,
    non_utf8_csv,
    report,
    report_email,
    snapshot,
    stranger_email,
    truth_of,
    two_reports_email,
    watcher_settings,
    with_headers_on_top,
    zip_bomb,
)

pytestmark = pytest.mark.integration

PASSWORD = "secret"
ACCOUNTS = Mailboxes("user", 24, PASSWORD)
USERS = ACCOUNTS.users
BOT = "3f0c2a9e-1111-4c1a-9d4e-00000000000a"
BOT2 = "3f0c2a9e-2222-4c1a-9d4e-00000000000b"


def window(day: int, bot: str = BOT, *, length: int = 3) -> Report:
    """A small report for days ``day``..``day+length-1`` of March 2024."""
    return report(bot, date(2024, 3, day), date(2024, 3, day + length - 1))


def run(settings: Settings, *reports: Report):  # type: ignore[no-untyped-def]
    """Accept the reports' windows, then one pass; returns the summary."""
    with Store.open(settings.state.path) as store:
        known = {(w.bot_id, w.from_date, w.to_date) for w in store.windows()}
        accept_windows(store, *[r for r in reports if (r.bot_id, r.start, r.end) not in known])
        return run_once(settings, store)


def window_states(settings: Settings) -> dict[tuple[str, date], WindowState]:
    with Store.open(settings.state.path) as store:
        return {(w.bot_id, w.from_date): w.state for w in store.windows()}


def no_archive(settings: Settings) -> bool:
    return not (Path(settings.output.root) / "messages").exists()


# -- senders -------------------------------------------------------------------------------


SPOOFS = [
    "attacker@evil.test",
    '"reports@certainly.example" <attacker@evil.test>',
    "Certainly Reports <reports@certainly.example.evil.test>",
    "reports@evilcertainly.example",
    "reports@certainly.example, attacker@evil.test",
    "",
    None,  # no From header at all
]


def test_spoofed_senders_are_ignored_left_unread_and_counted(dovecot, user, workdir) -> None:
    genuine = window(1)
    spoofs = [stranger_email(s) if s is not None else email_with(sender=None) for s in SPOOFS]
    deliver(dovecot, user, PASSWORD, spoofs[:4])
    deliver(dovecot, user, PASSWORD, spoofs[4:], flags=[b"\\Flagged"])
    genuine_raw = report_email(genuine)
    deliver(dovecot, user, PASSWORD, [genuine_raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir, allowed_senders=["@certainly.example"])

    summary = run(settings, genuine)

    assert (summary.emails_seen, summary.emails_ignored, summary.emails_archived) == (
        len(SPOOFS) + 1,
        len(SPOOFS),
        1,
    )
    # Spoofs stay in INBOX with their flags (no \Seen added); only the report moved.
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(genuine_raw): PROCESSED})
    assert [r["outcome"] for r in email_rows(settings.state.path)].count("ignored") == len(SPOOFS)
    assert_archive_matches(Path(settings.output.root), truth_of(genuine))


def test_rejected_folder_receives_strangers_and_nothing_else(dovecot, user, workdir) -> None:
    genuine = window(4)
    strangers = [
        stranger_email("attacker@evil.test"),
        stranger_email("news@shop.example.org", with_csv=False),
    ]
    report_raw = report_email(genuine)
    deliver(dovecot, user, PASSWORD, strangers, flags=[b"\\Seen"])
    deliver(dovecot, user, PASSWORD, [report_raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir, rejected_folder="certainly-ingest/rejected")

    summary = run(settings, genuine)

    assert summary.emails_ignored == 2
    expected = moved(
        before,
        {
            message_id(strangers[0]): "certainly-ingest/rejected",
            message_id(strangers[1]): "certainly-ingest/rejected",
            message_id(report_raw): PROCESSED,
        },
    )
    assert snapshot(dovecot, user, PASSWORD) == expected


AMBIGUOUS_FROM = [
    # Unquoted display name holding an address: MUAs, MTAs and DMARC take <attacker@evil.test>.
    "reports@certainly.example <attacker@evil.test>",
    # CVE-2023-27043 shape: Python's parser keeps the first address and drops the rest.
    "reports@certainly.example)<attacker@evil.test>",
    # No address at all, only an encoded-word that decodes to one.
    "=?utf-8?b?cmVwb3J0c0BjZXJ0YWlubHkuZXhhbXBsZQ==?=",
]


@pytest.mark.parametrize("sender", AMBIGUOUS_FROM)
def test_ambiguous_from_header_is_refused_not_guessed(dovecot, user, workdir, sender) -> None:
    """ "Parse From strictly": a From header the parser has to repair is not trusted."""
    rep = window(7)
    raw = report_email(rep, sender=sender)
    deliver(dovecot, user, PASSWORD, [raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)

    summary = run(settings, rep)

    assert (summary.emails_ignored, summary.emails_archived) == (1, 0), (
        f"From: {sender} was taken for {SENDER}"
    )
    assert snapshot(dovecot, user, PASSWORD) == before
    assert no_archive(settings)


# -- Authentication-Results -------------------------------------------------------------------

PASS = (
    f"{AUTHSERV_ID}; spf=pass smtp.mailfrom=certainly.example; dkim=pass header.d=certainly.example; "
    "dmarc=pass header.from=certainly.example"
)
FAIL = (
    f"{AUTHSERV_ID}; spf=fail smtp.mailfrom=certainly.example; dkim=fail header.d=certainly.example; "
    "dmarc=fail header.from=certainly.example"
)


def test_authentication_results_only_the_topmost_from_our_server_counts(dovecot, user, workdir) -> None:
    cases = {  # name -> (report, A-R headers topmost first)
        "missing": (window(1), []),
        "failing": (window(4), [FAIL]),
        "forged pass below a failing top": (window(7), [FAIL, PASS]),
        "pass from another authserv-id": (window(10), [PASS.replace(AUTHSERV_ID, "mx.evil.test")]),
        "dkim pass for another domain": (
            window(13),
            [f"{AUTHSERV_ID}; dkim=pass header.d=evil.test; dmarc=fail header.from=certainly.example"],
        ),
    }
    good = window(16)
    raws = {
        name: with_headers_on_top(report_email(rep), [("Authentication-Results", h) for h in ars])
        for name, (rep, ars) in cases.items()
    }
    good_raw = with_headers_on_top(
        report_email(good), [("Authentication-Results", PASS), ("Authentication-Results", FAIL)]
    )
    deliver(dovecot, user, PASSWORD, [*raws.values(), good_raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(
        dovecot, user, PASSWORD, workdir, require_authentication=True, authserv_id=AUTHSERV_ID
    )

    summary = run(settings, good, *[rep for rep, _ in cases.values()])

    assert (summary.emails_ignored, summary.emails_archived) == (len(cases), 1)
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(good_raw): PROCESSED})
    assert_archive_matches(Path(settings.output.root), truth_of(good))
    ignored = [r for r in email_rows(settings.state.path) if r["outcome"] == "ignored"]
    assert len(ignored) == len(cases)
    assert all(r["reason"] == "Authentication-Results missing or not passing" for r in ignored)
    states = window_states(settings)
    assert states[(BOT, good.start)] is WindowState.ARCHIVED
    assert all(states[(BOT, rep.start)] is WindowState.ACCEPTED for rep, _ in cases.values())


def test_dmarc_pass_for_the_attackers_domain_is_not_trusted(dovecot, user, workdir) -> None:
    """The real attack on an allow-list + DMARC check: the receiving server evaluates
    DMARC for the domain in <...> (evil.test, which passes: the attacker owns it), while a
    lenient parser reads the unquoted display name as the sender."""
    rep = window(19)
    raw = with_headers_on_top(
        report_email(rep, sender="reports@certainly.example <attacker@evil.test>"),
        [
            (
                "Authentication-Results",
                f"{AUTHSERV_ID}; spf=pass smtp.mailfrom=evil.test; "
                "dkim=pass header.d=evil.test; dmarc=pass header.from=evil.test",
            )
        ],
    )
    deliver(dovecot, user, PASSWORD, [raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(
        dovecot, user, PASSWORD, workdir, require_authentication=True, authserv_id=AUTHSERV_ID
    )

    summary = run(settings, rep)

    assert (summary.emails_ignored, summary.emails_archived) == (1, 0)
    assert snapshot(dovecot, user, PASSWORD) == before
    assert no_archive(settings)


# -- attachments ------------------------------------------------------------------------------


def test_zip_and_gzip_bombs_go_to_failed_and_the_job_keeps_going(dovecot, user, workdir) -> None:
    zipped, gzipped, good = window(1), window(4), window(7)
    zip_raw = report_email(
        zipped,
        filename=zipped.filename[:-4] + ".zip",
        mime="application/zip",
        data=zip_bomb(zipped.filename, 16 * 1024 * 1024),
    )
    gz_raw = report_email(
        gzipped, filename=gzipped.filename + ".gz", mime="application/gzip", data=gzip_bomb(16 * 1024 * 1024)
    )
    assert len(zip_raw) < 200_000 and len(gz_raw) < 200_000
    good_raw = report_email(good)
    deliver(dovecot, user, PASSWORD, [zip_raw, gz_raw, good_raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)
    settings.output.max_inflated_bytes = 1024 * 1024

    summary = run(settings, zipped, gzipped, good)

    assert summary.emails_archived == 1
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before, {message_id(zip_raw): FAILED, message_id(gz_raw): FAILED, message_id(good_raw): PROCESSED}
    )
    rows = {r["message_id"]: r for r in email_rows(settings.state.path)}
    for raw in (zip_raw, gz_raw):
        assert rows[message_id(raw)]["outcome"] == "quarantined"
        assert "inflates beyond" in (rows[message_id(raw)]["reason"] or "")
    assert sum("inflates beyond" in p for p in summary.problems) == 2
    assert_archive_matches(Path(settings.output.root), truth_of(good))


def test_message_over_the_size_limit_goes_to_failed_without_being_fetched(
    dovecot, user, workdir, monkeypatch
) -> None:
    big = report(BOT, date(2024, 4, 1), date(2024, 4, 10), per_day=100)  # ~0.9 MB CSV
    small = window(1)
    big_raw, small_raw = report_email(big), report_email(small)
    assert len(big_raw) > 1024 * 1024 > len(small_raw)
    deliver(dovecot, user, PASSWORD, [big_raw, small_raw])
    before = snapshot(dovecot, user, PASSWORD)
    fetched: list[int] = []
    real_fetch = Mailbox.fetch_message

    def spy(self: Mailbox, uid: int) -> bytes | None:
        fetched.append(uid)
        return real_fetch(self, uid)

    monkeypatch.setattr(Mailbox, "fetch_message", spy)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir, max_message_bytes=1024 * 1024)

    summary = run(settings, big, small)

    rows = {r["message_id"]: r for r in email_rows(settings.state.path)}
    too_large = [r for r in rows.values() if r["outcome"] == "too_large"]
    assert len(too_large) == 1 and "MAX_MESSAGE_BYTES" in too_large[0]["reason"]
    assert fetched == [rows[message_id(small_raw)]["uid"]], "the big message was fetched"
    assert summary.emails_archived == 1
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before, {message_id(big_raw): FAILED, message_id(small_raw): PROCESSED}
    )
    assert_archive_matches(Path(settings.output.root), truth_of(small))
    assert window_states(settings)[(BOT, big.start)] is WindowState.ACCEPTED


TRAVERSAL_NAMES = [
    "../../etc/passwd.csv",
    ("utf-8", "", "../../../../tmp/ingest-escape.csv"),  # RFC 2231: filename*=utf-8''..%2F..
    "..\\..\\..\\ingest-escape-backslash.csv",
    "/tmp/ingest-escape-absolute.csv",
    "....//....//ingest-escape-dots.csv",
]


def test_path_traversal_filenames_write_nothing_outside_the_archive(dovecot, user, workdir) -> None:
    reports = [window(1 + 3 * i) for i in range(len(TRAVERSAL_NAMES))]
    raws = [report_email(rep, filename=name) for rep, name in zip(reports, TRAVERSAL_NAMES, strict=True)]
    # One more that is quarantined: its original bytes are kept under a name made from the attachment's.
    bad = window(1, BOT2)
    bad_raw = report_email(bad, filename="../../../ingest-escape-quarantine.csv", data=non_utf8_csv(bad))
    deliver(dovecot, user, PASSWORD, [*raws, bad_raw])
    before = snapshot(dovecot, user, PASSWORD)
    root = workdir / "a" / "b" / "c" / "archive"
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)
    settings.output.root = str(root)
    outside_before = {p for p in workdir.rglob("*") if root not in p.parents and p != root}
    escapes = [
        Path("/etc/passwd.csv"),
        Path("/tmp/ingest-escape.csv"),
        Path("/tmp/ingest-escape-absolute.csv"),
        Path("/ingest-escape-backslash.csv"),
    ]
    assert not any(p.exists() for p in escapes)

    summary = run(settings, *reports, bad)

    assert summary.emails_archived == len(reports)
    outside_after = {p for p in workdir.rglob("*") if root not in p.parents and p != root}
    assert outside_after - outside_before <= {
        workdir / "state.sqlite",
        workdir / "state.sqlite-wal",
        workdir / "state.sqlite-shm",
        workdir / "a",
        workdir / "a" / "b",
        workdir / "a" / "b" / "c",
    }
    assert not any(p.exists() for p in escapes)
    for path in root.rglob("*"):
        assert ".." not in path.relative_to(root).parts and "\\" not in str(path)
        assert path.resolve().is_relative_to(root.resolve())
    assert_archive_matches(root, truth_of(*reports))
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before, {**{message_id(r): PROCESSED for r in raws}, message_id(bad_raw): FAILED}
    )


def test_non_utf8_csv_is_quarantined_with_its_reason_and_the_email_goes_to_failed(
    dovecot, user, workdir
) -> None:
    bad, good = window(1), window(4)
    bad_raw, good_raw = report_email(bad, data=non_utf8_csv(bad)), report_email(good)
    deliver(dovecot, user, PASSWORD, [bad_raw, good_raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)

    summary = run(settings, bad, good)

    assert summary.reports_quarantined == 1 and summary.emails_archived == 1
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before, {message_id(bad_raw): FAILED, message_id(good_raw): PROCESSED}
    )
    quarantined = [a for a in attachment_rows(settings.state.path) if a["outcome"] == "quarantined"]
    assert len(quarantined) == 1 and "UTF-8" in quarantined[0]["reason"]
    reason_file = Path(settings.output.root) / "quarantine" / quarantined[0]["sha256"] / "reason.json"
    assert "UTF-8" in reason_file.read_text(encoding="utf-8")
    assert {r["message_id"]: r["outcome"] for r in email_rows(settings.state.path)}[
        message_id(bad_raw)
    ] == "quarantined"
    assert_archive_matches(Path(settings.output.root), truth_of(good))


@pytest.mark.parametrize("subject", ["generic", "names both windows"])
def test_an_email_with_two_reports_archives_both(dovecot, user, workdir, subject) -> None:
    first, second = window(1), window(1, BOT2, length=5)
    raw = two_reports_email(
        first,
        second,
        subject="Your Certainly message reports"
        if subject == "generic"
        else f"{first.subject}; {second.subject}",
    )
    deliver(dovecot, user, PASSWORD, [raw])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)

    summary = run(settings, first, second)

    assert (summary.reports_archived, summary.emails_archived, summary.rows_rejected) == (2, 1, 0)
    assert set(window_states(settings).values()) == {WindowState.ARCHIVED}
    assert_archive_matches(Path(settings.output.root), truth_of(first, second))
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(raw): PROCESSED})


def test_a_subject_naming_one_bot_does_not_vouch_for_another_bots_attachment(dovecot, user, workdir) -> None:
    """Strict matching: the subject names only the first bot, so the second bot's file in
    the same email has evidence that disagrees: unmatched, its window left waiting."""
    first, second = window(1), window(1, BOT2, length=5)
    raw = two_reports_email(first, second)  # the subject is the first report's
    deliver(dovecot, user, PASSWORD, [raw])
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)

    summary = run(settings, first, second)

    assert (summary.reports_archived, summary.reports_unmatched) == (1, 1)
    assert summary.needs_attention
    assert window_states(settings) == {
        (BOT, first.start): WindowState.ARCHIVED,
        (BOT2, second.start): WindowState.ACCEPTED,
    }
    assert_archive_matches(Path(settings.output.root), truth_of(first))
    unmatched = [a for a in attachment_rows(settings.state.path) if a["outcome"] == "unmatched"]
    assert [a["filename"] for a in unmatched] == [second.filename]
    assert BOT in unmatched[0]["reason"]


def test_the_same_report_delivered_twice_is_a_duplicate_and_both_emails_are_processed(
    dovecot, user, workdir
) -> None:
    rep = window(1)
    first, second = report_email(rep), report_email(rep)  # same CSV bytes, two emails
    deliver(dovecot, user, PASSWORD, [first, second])
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)

    summary = run(settings, rep)

    assert (summary.reports_archived, summary.reports_duplicate, summary.emails_archived) == (1, 1, 2)
    assert summary.rows_written == len(rep.rows)
    files = archive_files(Path(settings.output.root))
    # A third copy, a day later: nothing new written, and it is moved like the others.
    third = report_email(rep)
    deliver(dovecot, user, PASSWORD, [third])
    again = run(settings)
    assert (again.reports_duplicate, again.rows_written, again.files_written) == (1, 0, 0)
    assert archive_files(Path(settings.output.root)) == files
    assert_archive_matches(Path(settings.output.root), truth_of(rep))
    expected = moved(before, {message_id(first): PROCESSED, message_id(second): PROCESSED})
    expected[PROCESSED][(message_id(third), frozenset())] += 1
    assert snapshot(dovecot, user, PASSWORD) == expected
    assert len(os.listdir(Path(settings.output.root) / "manifests")) == 1


def test_odd_but_valid_encodings_are_all_archived(dovecot, user, workdir) -> None:
    from ingest.simulator import rows_to_csv

    reps = [window(1 + 3 * i) for i in range(7)]
    encoded_word = report_email(reps[3], filename="PLACEHOLDER.csv").replace(
        b'filename="PLACEHOLDER.csv"',
        b'filename="=?utf-8?q?' + reps[3].filename.replace("_", "=5F").encode() + b'?="',
    )
    raws = [
        report_email(reps[0], mime="application/octet-stream"),  # generic type, .csv name
        report_email(reps[1], cte="quoted-printable"),
        report_email(reps[2], filename=("utf-8", "", f"rapport_ø_{reps[2].filename}")),  # RFC 2231
        encoded_word,  # RFC 2047 inside the quoted filename, as Outlook writes it
        email_with(subject=reps[4].subject, attachments=[(None, reps[4].csv, "text/csv")]),  # no name
        report_email(reps[5], data=rows_to_csv(list(reps[5].rows), bom=True)),  # UTF-8 BOM
        report_email(reps[6], filename=reps[6].filename.upper().replace(".CSV", ".Csv")),
    ]
    deliver(dovecot, user, PASSWORD, raws)
    before = snapshot(dovecot, user, PASSWORD)
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)

    summary = run(settings, *reps)

    assert (summary.reports_archived, summary.emails_archived, summary.rows_rejected) == (7, 7, 0), (
        summary.problems
    )
    assert_archive_matches(Path(settings.output.root), truth_of(*reps))
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(r): PROCESSED for r in raws})
