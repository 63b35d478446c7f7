"""Whose report it is: the To header against the account's addresses, and the Date
header against the window's first request (ingest.mail.recipients, ingest.pipeline.matching).

The end-to-end scenario (another account's genuine report forwarded into the mailbox,
Dovecot, the simulator over HTTP, the real CLI) is tests/e2e/test_foreign_account.py.
"""

from __future__ import annotations

import email
import email.policy
import time
from datetime import date
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import ConfigError
from ingest.mail.attachments import ParsedEmail, ReportFile, parse_email
from ingest.mail.recipients import Addressing, account_addresses, normalised
from ingest.pipeline.matching import CLOCK_SKEW, Evidence, match_window
from ingest.settings import explicit_settings, load_settings
from ingest.simulator import report_filename
from ingest.state.store import Store
from ingest.state.windows import WindowState

OURS = ("owner@example.com",)
BOT = "3f2b8c1e-0000-4000-8000-00000000aaaa"
JAN = (date(2024, 1, 1), date(2024, 1, 15))


def addressing(headers: str) -> Addressing:
    raw = headers.replace("\n", "\r\n").encode("utf-8") + b"\r\n\r\nbody\r\n"
    return Addressing.of(email.message_from_bytes(raw, policy=email.policy.default))


@pytest.mark.parametrize(
    "headers",
    [
        "To: owner@example.com",
        "To: Owner <OWNER@Example.COM>",
        "To: =?utf-8?q?Own=C3=A9r_of_the_account?= <owner@example.com>",
        "To: team: ops@other.test, owner@example.com;",
        'To: "Ops, the team" <ops@other.test>, owner@example.com',
        "To: owner@example.com (the owner)",
        "To:\n owner@example.com",  # folded
    ],
)
def test_a_report_naming_the_account_in_to_is_ours(headers: str) -> None:
    assert addressing(headers).refusal(OURS) is None


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ("To: ops@other.test", "addressed to ops@other.test, not to this account"),
        ('To: "owner@example.com" <ops@other.test>', "addressed to ops@other.test"),  # a display name
        ("To: ops@other.test (owner@example.com)", "addressed to ops@other.test"),  # a comment
        ("To: =?utf-8?q?owner=40example.com?=", "malformed"),  # an encoded word is no address
        ("To: owner@example.com <ops@other.test>", "malformed"),  # read two ways
        ("To: owner@example.com\nTo: ops@other.test", "2 To headers"),  # which did DKIM sign?
        ("TO: owner@example.com\nto: ops@other.test", "2 To headers"),  # names compare without case
        ('To: "owner@example.com": ops@other.test;', "addressed to ops@other.test"),  # a group's name
        ("To: owner@[192.0.2.1]", "malformed"),  # a domain literal is no account address
        ("To: " + "(" * 5000 + "owner@example.com" + ")" * 5000, "too deeply nested"),  # no recursion
        ("To: " + ", ".join(f"u{i}@x.test" for i in range(20000)) + ", owner@example.com", "too long"),
        ("To: ops@other.test\nTo: owner@example.com", "2 To headers"),
        ("To: ops@other.test\nCc: owner@example.com", "addressed to ops@other.test"),  # Cc: unsigned
        (
            "To: owner@example.com\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
            "Date: Tue, 2 Jan 2024 00:00:00 +0000",
            "2 Date",
        ),
        ("To: undisclosed-recipients:;", "names no address in To"),
        ("Subject: no recipients at all", "names no address in To"),
        ("To: owner@example.com.evil.test", "addressed to owner@example.com.evil.test"),
        ("To: owner@example.co", "addressed to owner@example.co"),
        ("To: xowner@example.com", "addressed to xowner@example.com"),
    ],
)
def test_a_report_not_naming_the_account_is_refused_with_the_reason(headers: str, said: str) -> None:
    refusal = addressing(headers).refusal(OURS)
    assert refusal is not None and said in refusal


@pytest.mark.parametrize(
    "smuggled",
    [
        b"X-Fwd: a\rCc: owner@example.com\r\nTo: owner@example.com\r\n",  # a bare CR
        b"X-Fwd: a\nTo: owner@example.com\r\n",  # a bare LF among CRLF line ends
    ],
)
def test_a_header_hidden_by_a_bare_line_end_refuses_the_email(smuggled: bytes) -> None:
    raw = b"From: reports@certainly.example\r\n" + smuggled + b"Subject: s\r\n\r\nbody\r\n"
    refusal = parse_email(raw).addressing.refusal(OURS)
    assert refusal is not None and "bare CR or LF" in refusal


def test_a_plain_lf_email_is_read_as_usual() -> None:
    raw = b"From: reports@certainly.example\nTo: owner@example.com\nSubject: s\n\nbody\n"
    assert parse_email(raw).addressing.refusal(OURS) is None


def test_an_unknown_account_checks_nothing() -> None:
    assert addressing("To: ops@other.test").refusal(()) is None


def test_idna_and_case_compare_equal() -> None:
    assert normalised("Owner@BÜCHER.example") == normalised("owner@xn--bcher-kva.example")
    ours = (normalised("owner@bücher.example") or "",)
    assert addressing("To: owner@xn--bcher-kva.example").refusal(ours) is None


def test_the_date_header_is_read_and_a_missing_or_bad_one_says_nothing() -> None:
    assert addressing("Date: Mon, 01 Jan 2024 10:00:00 +0100").sent_at == 1704099600.0
    assert addressing("Date: Mon, 01 Jan 2024 09:00:00 -0000").sent_at == 1704099600.0
    assert addressing("Date: yesterday").sent_at is None
    assert addressing("To: owner@example.com").sent_at is None


@pytest.mark.parametrize(
    ("when", "moment"),
    [
        ("Mon, 01 Jan 124 10:00:00 +0000", 1704103200.0),  # RFC 5322 4.3: a 3-digit year is 1900+
        ("Mon, 01 Jan 24 10:00:00 +0000", 1704103200.0),
        ("Mon, 01 Jan 2024 05:00:00 EST", 1704103200.0),  # the US zone names have offsets
        ("Mon, 01 Jan 2024 03:00:00 PDT", 1704103200.0),
        ("Mon, 01 Jan 2024 10:00:00 GMT", 1704103200.0),
        ("Mon, 01 Jan 2024 11:00:00 +0100 (CET)", 1704103200.0),  # a comment is no zone
        ("Mon, 01 Jan 2024 11:00:00 CET", None),  # any other name: unknown zone, not checked
        ("Mon, 01 Jan 2024 00:00:00 HST", None),
        ("Mon, 01 Jan 2024 10:00:00 A", None),  # military letters were defined wrongly
        ("Mon, 01 Jan 2024 10:00:00", None),  # no zone at all
    ],
)
def test_obsolete_date_forms_are_read_per_rfc_5322_and_an_unknown_zone_is_not_checked(
    when: str, moment: float | None
) -> None:
    assert addressing(f"Date: {when}").sent_at == moment


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.text(max_size=80))
def test_any_to_and_date_text_is_read_or_refused_never_a_crash(to: str, when: str) -> None:
    text = "".join(c for c in to if c not in "\r\n")
    date_text = "".join(c for c in when if c not in "\r\n")
    found = addressing(f"To: {text}\nDate: {date_text}")
    refusal = found.refusal(OURS)
    # Ours only when the account's address is really one of the recipients read.
    assert (refusal is None) == (not found.problem and OURS[0] in found.recipients)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
def test_a_display_name_or_comment_never_makes_mail_ours(name: str) -> None:
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    for header in (
        f'To: "{quoted} owner@example.com" <ops@other.test>',
        f"To: ops@other.test (owner@example.com {name.replace(')', '').replace('(', '')})",
    ):
        assert addressing(header).refusal(OURS) is not None


def test_the_account_defaults_to_the_imap_login_when_it_is_an_address() -> None:
    def account(**imap: str) -> tuple[str, ...]:
        return account_addresses(explicit_settings(imap=imap))

    assert account(username="Owner@Example.com") == ("owner@example.com",)
    assert account(username="owner") == ()  # a login name, not an address: unknown
    configured = explicit_settings(
        certainly={"account_email": ["a@x.test", "Alias@X.test"]}, imap={"username": "login"}
    )
    assert account_addresses(configured) == ("a@x.test", "alias@x.test")


@pytest.mark.usefixtures("clean_env")
def test_a_bad_account_email_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_CERTAINLY__ACCOUNT_EMAIL", "owner@example.com, ops at other")
    with pytest.raises(ConfigError, match="INGEST_CERTAINLY__ACCOUNT_EMAIL.*not an email address"):
        load_settings()


def test_an_account_address_with_a_unicode_domain_is_accepted_and_compared_in_idna(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INGEST_CERTAINLY__ACCOUNT_EMAIL", "owner@bücher.example")
    ours = account_addresses(load_settings())
    assert ours == ("owner@xn--bcher-kva.example",)
    assert addressing("To: Owner <owner@xn--bcher-kva.example>").refusal(ours) is None


@pytest.mark.parametrize(
    "to",
    [
        "Jürgen Müller <owner@example.com>",  # RFC 6532: a raw UTF-8 display name
        '"Jürgen, Müller" <owner@example.com>',
        "owner@example.com (Jürgen)",
    ],
)
def test_a_raw_utf8_to_naming_the_account_is_ours(to: str) -> None:
    raw = f"From: reports@certainly.example\r\nTo: {to}\r\nSubject: s\r\n\r\nbody\r\n".encode()
    assert parse_email(raw).addressing.refusal(OURS) is None


def test_a_raw_utf8_domain_is_compared_in_idna() -> None:
    raw = "To: owner@bücher.example\r\n\r\nbody\r\n".encode()
    assert parse_email(raw).addressing.refusal(("owner@xn--bcher-kva.example",)) is None


@pytest.mark.parametrize(
    "headers", ["To: :;owner@example.com", "To: b@[bb", "To: .<owner@example.com>", "To: \xff@example.com"]
)
def test_a_to_the_parsers_fail_on_is_malformed_never_a_crash(headers: str) -> None:
    refusal = addressing(headers).refusal(OURS)
    assert refusal is not None and "malformed" in refusal


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"To", b"Cc", b"Date", b"to"]))
def test_any_header_bytes_are_read_or_refused_never_an_exception(value: bytes, name: str) -> None:
    raw = b"From: reports@certainly.example\r\n" + name + b": " + value + b"\r\nSubject: s\r\n\r\nbody\r\n"
    found = parse_email(raw).addressing
    refusal = found.refusal(OURS)
    assert (refusal is None) == (not found.problem and OURS[0] in found.recipients)


# -- matching ------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "state.sqlite")


def accept(store: Store, at: float) -> int:
    store.plan_window(BOT, 1, *JAN)
    window = store.windows(bot_id=BOT)[0]
    store.transition(window.id, WindowState.SUBMITTING, submitted_at=at)
    return store.transition(window.id, WindowState.ACCEPTED, accepted_at=at).id


def vendor_email(to: str, sent: float) -> ParsedEmail:
    raw = (
        f"From: reports@certainly.example\r\nTo: {to}\r\nDate: {format_datetime_at(sent)}\r\n"
        "Subject: Certainly message report\r\nContent-Type: text/plain\r\n\r\nattached\r\n"
    ).encode()
    parsed = parse_email(raw)
    parsed.reports = [ReportFile("export.csv", b"")]  # names no bot
    parsed.received_at = sent
    return parsed


def format_datetime_at(at: float) -> str:
    from datetime import UTC, datetime

    return format_datetime(datetime.fromtimestamp(at, UTC))


def test_another_accounts_report_never_matches_the_only_accepted_window(store: Store) -> None:
    now = time.time()
    accept(store, now)
    evidence = Evidence.of("export.csv", vendor_email("ops@other.test", now + 60), {BOT}, OURS)
    found = match_window(store, evidence)
    assert found.window is None
    assert found.reason.startswith("addressed to ops@other.test, not to this account")
    # The same email named for the window's bot and dates is still not ours.
    named = Evidence.of(report_filename(BOT, *JAN), vendor_email("ops@other.test", now + 60), {BOT}, OURS)
    assert match_window(store, named).window is None


def test_a_redirect_keeping_the_owners_to_is_matched(store: Store) -> None:
    now = time.time()
    window = accept(store, now)
    evidence = Evidence.of("export.csv", vendor_email("Owner <owner@example.com>", now + 60), {BOT}, OURS)
    assert match_window(store, evidence).window is not None
    assert match_window(store, evidence).window.id == window  # type: ignore[union-attr]


def test_a_date_header_before_the_request_is_not_the_windows_report(store: Store) -> None:
    now = time.time()
    accept(store, now)
    # Sent an hour before the export was asked for, received (INTERNALDATE) just after.
    old = vendor_email("owner@example.com", now - 3600)
    old.received_at = now + 60
    found = match_window(store, Evidence.of("export.csv", old, {BOT}, OURS))
    assert found.window is None and "Date header is before window" in found.reason
    # Within the clock allowance it is.
    near = vendor_email("owner@example.com", now - CLOCK_SKEW + 5)
    near.received_at = now + 60
    assert match_window(store, Evidence.of("export.csv", near, {BOT}, OURS)).window is not None
