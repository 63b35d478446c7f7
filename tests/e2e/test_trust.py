"""Forged and replayed reports against real parts: a private Dovecot, the simulator over
HTTP, and the real CLI (``python -m ingest`` in a child process).

Every report email of the simulator is kept in its outbox and APPENDed by the test at the
moment the scenario needs it (INTERNALDATE included), so each sequence is exact without
any sleep: a forgery already waiting in the inbox, a forgery arriving after the export was
accepted, the genuine report last. Outcomes asserted are what a user sees: rows per bot in
the archive, window states, quarantine entries, the exit code and its message.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest

from ingest.simulator import (
    SimulatorConfig,
    build_report_email,
    generate_messages,
    rows_to_csv,
)
from tests.support.archive import assert_archive_matches, expected_rows, read_archive
from tests.support.cli_rig import CliRig, cli_rig
from tests.support.dovecot import Dovecot
from tests.support.job import Account

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PASSWORD = "secret"
USERS = {f"trust{i:02d}@example.test": PASSWORD for i in range(1, 13)}
VENDOR = "reports@certainly.example"
MX = "mx.example.test"  # our receiving server's authserv-id
VICTIM = "5e1f0000-0000-4000-8000-0000000000a1"
OTHER = "5e1f0000-0000-4000-8000-0000000000b2"  # a second bot of ours
ATTACKER = "5e1f0000-0000-4000-8000-0000000000e6"  # the attacker's own bot at the vendor
START, END = date(2024, 5, 1), date(2024, 5, 5)
_free_users = iter(USERS)


@pytest.fixture
def rig(dovecot: Dovecot, tmp_path: Path) -> Iterator[CliRig]:
    account = Account(dovecot.host, dovecot.port, next(_free_users), PASSWORD)
    config = SimulatorConfig(sender=VENDOR, recipient=account.username, delivery_delay=0.0)
    with cli_rig(account, tmp_path, config, INGEST_SECRETS_DIR=str(tmp_path / "no-secrets")) as rig:
        yield rig


def authenticate(rig: CliRig) -> None:
    """Require what our MX writes: DMARC or aligned DKIM in its Authentication-Results."""
    rig.env.update({"INGEST_IMAP__REQUIRE_AUTHENTICATION": "true", "INGEST_IMAP__AUTHSERV_ID": MX})


def as_received_by_our_mx(raw: bytes, *, genuine: bool) -> bytes:
    """The message as our MX stores it: its Authentication-Results on top (a pass only for
    mail the vendor signed), above whatever the sender wrote."""
    verdict = (
        "dkim=pass header.d=certainly.example; dmarc=pass header.from=certainly.example"
        if genuine
        else "dkim=none; spf=softfail smtp.mailfrom=certainly.example; "
        "dmarc=fail header.from=certainly.example"
    )
    return f"Authentication-Results: {MX}; {verdict}\r\n".encode() + raw


def forgery(
    *, filename: str = "export.csv", subject: str = "Your Certainly message report", csv: bytes | None = None
) -> bytes:
    """A look-alike from the vendor's address: one row (id 1, "FORGED") inside the window,
    an Authentication-Results pass written by the sender itself (below our MX's)."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = VENDOR
    msg["To"] = "owner@example.test"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(idstring="forged", domain="evil.test")
    msg["Authentication-Results"] = (
        f"{MX}; dkim=pass header.d=certainly.example; dmarc=pass header.from=certainly.example"
    )
    msg.set_content("Your message report is attached.\n")
    if csv is None:
        csv = f"id,timestamp,message\r\n1,{START.isoformat()}T10:00:00Z,FORGED\r\n".encode()
    msg.add_attachment(csv, maintype="text", subtype="csv", filename=filename)
    return msg.as_bytes()


def attackers_own_export(bot: str = ATTACKER) -> bytes:
    """A genuine vendor email of the attacker's own export (same dates as the victim's)."""
    rows = generate_messages(bot, START, END)
    return build_report_email(
        csv_bytes=rows_to_csv(rows), bot_id=bot, from_date=START, to_date=END, sender=VENDOR
    )


def archived_bots(rig: CliRig) -> set[str]:
    """The bots the messages table holds rows of (what readers see), and the bots with a
    partition folder on disk: the same set, or the set with a stray folder in it."""
    root = rig.archive / "messages"
    if not root.exists():
        return set()
    folders = {p.name.removeprefix("bot_id=") for p in root.iterdir() if p.name != "_delta_log"}
    in_table = set(read_archive(rig.archive)["bot_id"].unique()) if (root / "_delta_log").exists() else set()
    return folders | in_table


# -- authentication off ----------------------------------------------------------------------


def test_a_forgery_waiting_in_the_inbox_is_quarantined_and_the_genuine_report_archived(rig: CliRig) -> None:
    """The issue's first case: the forgery was there before the export was asked for."""
    rig.append(forgery(), received=datetime.now(UTC) - timedelta(hours=1))
    assert rig.cli("backfill", "--bot", VICTIM, "--from", str(START), "--to", str(END))[0] == 0

    code, out = rig.cli("run")  # POST accepted; the forgery is the only mail so far
    assert code == 1 and "1 unmatched" in out
    rig.append(rig.vendor_mail(VICTIM))
    code, out = rig.cli("run")

    assert code == 0, out
    assert rig.windows() == {f"{VICTIM} {START}": "archived"}
    assert_archive_matches(rig.archive, expected_rows([VICTIM], START, END))  # no FORGED row
    [unmatched] = rig.attachments("unmatched")
    assert unmatched["filename"] == "export.csv"
    assert "before window" in str(unmatched["reason"])
    reason = json.loads((rig.archive / "quarantine" / str(unmatched["sha256"]) / "reason.json").read_text())
    assert "unmatched" in json.dumps(reason)


def test_forged_then_genuine_with_authentication_off_ends_reported_not_a_silent_win(rig: CliRig) -> None:
    """The forgery names no bot and arrives after the export was accepted: strict matching
    lets it close the only accepted window (it may be the vendor's anonymous report), but
    when the genuine report naming the window arrives, the run says so and exits 1."""
    rig.cli("backfill", "--bot", VICTIM, "--from", str(START), "--to", str(END))
    assert rig.cli("run")[0] == 0  # accepted; the vendor's email is held back
    genuine = rig.vendor_mail(VICTIM)
    rig.append(forgery())
    assert rig.cli("run")[0] == 0  # the anonymous report of the only accepted window
    rig.append(genuine)

    code, out = rig.cli("run")

    assert code == 1, out
    assert "named no bot" in out and "export.csv" in out
    assert rig.windows() == {f"{VICTIM} {START}": "archived"}
    assert archived_bots(rig) == {VICTIM}


def test_a_broken_csv_named_for_another_bot_leaves_the_victims_window_alone(rig: CliRig) -> None:
    rig.cli("backfill", "--bot", VICTIM, "--from", str(START), "--to", str(END))
    rig.cli("run")
    genuine = rig.vendor_mail(VICTIM)
    broken_name = f"message_report_{ATTACKER}_{START}_{END}.csv"
    rig.append(forgery(filename=broken_name, csv=b"id,timestamp\r\n\xff\xfe not a report\r\n"))

    code, out = rig.cli("run")

    assert code == 1 and "1 unmatched" in out
    assert rig.windows() == {f"{VICTIM} {START}": "accepted"}  # not failed
    [unmatched] = rig.attachments("unmatched")
    assert ATTACKER in str(unmatched["reason"])
    rig.append(genuine)
    assert rig.cli("run")[0] == 0
    assert rig.windows() == {f"{VICTIM} {START}": "archived"}
    assert_archive_matches(rig.archive, expected_rows([VICTIM], START, END))


@pytest.mark.parametrize(
    "forged_at", ["waiting before any request", "after the first bot's export was accepted"]
)
def test_two_bots_with_a_forgery_waiting_no_rows_land_under_the_wrong_bot(
    rig: CliRig, forged_at: str
) -> None:
    """The issue's cascade: two bots, the same dates, one export at a time."""
    if forged_at.startswith("waiting"):
        rig.append(forgery(), received=datetime.now(UTC) - timedelta(hours=1))
    rig.cli("backfill", "--bot", VICTIM, "--bot", OTHER, "--from", str(START), "--to", str(END))
    codes = [rig.cli("run")[0]]  # the first bot's export accepted
    if forged_at.startswith("after"):
        rig.append(forgery())
        codes.append(rig.cli("run")[0])
    rig.append(rig.vendor_mail(VICTIM))  # arrives while (or before) the other bot's is asked for
    codes.append(rig.cli("run")[0])
    codes.append(rig.cli("run")[0])  # the other bot's export accepted, if not yet
    rig.append(rig.vendor_mail(OTHER))
    code, out = rig.cli("run")
    codes.append(code)

    assert 1 in codes  # the forgery is reported, one way or the other
    assert set(rig.windows().values()) == {"archived"}
    genuine_rows = expected_rows([VICTIM, OTHER], START, END)
    if forged_at.startswith("after"):
        # The forgery (naming no bot) closed the victim's window; the genuine report naming it
        # is a conflict kept aside (issue 23) until a person keeps it: then the forged rows go.
        [aside] = rig.attachments("conflict")
        with closing(sqlite3.connect(rig.workdir / "state.sqlite")) as conn:
            [(window_id,)] = conn.execute("SELECT id FROM windows WHERE bot_id = ?", (VICTIM,)).fetchall()
        code, out = rig.cli(
            "resolve", "--window", str(window_id), "--keep", str(aside["sha256"]), "--reason", "ok", "--apply"
        )
        assert code == 0, out
    assert_archive_matches(rig.archive, genuine_rows)  # exact: nothing forged, nothing moved
    # Whatever the forgery did, no genuine row of one bot is stored under the other.
    import polars as pl

    stored = pl.scan_parquet(
        rig.archive / "messages" / "bot_id=*" / "*" / "*.parquet", hive_partitioning=True
    ).collect()
    truth = {(bot, row_id) for bot, row_id in genuine_rows}
    for bot in (VICTIM, OTHER):
        ids = set(stored.filter(pl.col("bot_id") == bot)["id"].to_list())
        other = OTHER if bot == VICTIM else VICTIM
        wrong = {i for i in ids if (other, i) in truth and (bot, i) not in truth}
        assert not wrong, f"rows of {other} stored under {bot}"
        assert {i for (b, i) in truth if b == bot} <= ids


# -- authentication on -----------------------------------------------------------------------


def test_with_authentication_on_the_forgery_is_never_archived(rig: CliRig) -> None:
    authenticate(rig)
    rig.cli("backfill", "--bot", VICTIM, "--from", str(START), "--to", str(END))
    assert rig.cli("run")[0] == 0
    genuine = rig.vendor_mail(VICTIM)
    rig.append(as_received_by_our_mx(forgery(), genuine=False))  # after acceptance: the worst case
    assert rig.cli("run")[0] == 0
    assert rig.windows() == {f"{VICTIM} {START}": "accepted"}
    rig.append(as_received_by_our_mx(genuine, genuine=True))

    code, out = rig.cli("run")

    assert code == 0, out
    assert rig.windows() == {f"{VICTIM} {START}": "archived"}
    assert_archive_matches(rig.archive, expected_rows([VICTIM], START, END))
    with closing(sqlite3.connect(rig.workdir / "state.sqlite")) as conn:
        outcomes = sorted(r[0] for r in conn.execute("SELECT outcome FROM emails"))
    assert outcomes == ["archived", "ignored"]


def test_a_replayed_genuine_email_of_another_bots_export_is_quarantined_not_matched_to_the_victim(
    rig: CliRig,
) -> None:
    """DKIM-signed by the vendor, so it passes authentication; it names the attacker's bot."""
    authenticate(rig)
    rig.cli("backfill", "--bot", VICTIM, "--from", str(START), "--to", str(END))
    rig.cli("run")
    genuine = rig.vendor_mail(VICTIM)
    rig.append(as_received_by_our_mx(attackers_own_export(), genuine=True))

    code, out = rig.cli("run")

    assert code == 1 and "1 unmatched" in out
    assert rig.windows() == {f"{VICTIM} {START}": "accepted"}
    assert archived_bots(rig) == set()
    [unmatched] = rig.attachments("unmatched")
    assert ATTACKER in str(unmatched["reason"])
    rig.append(as_received_by_our_mx(genuine, genuine=True))
    assert rig.cli("run")[0] == 0
    assert_archive_matches(rig.archive, expected_rows([VICTIM], START, END))


# -- doctor ------------------------------------------------------------------------------------


def test_doctor_warns_loudly_when_sender_authentication_is_off(rig: CliRig) -> None:
    code, out = rig.cli("doctor")
    assert code == 0, out  # a warning, not a failure: the setup works
    [row] = [line for line in out.splitlines() if "sender authentication" in line]
    assert "WARN" in row and "anyone can forge" in row and "INGEST_IMAP__REQUIRE_AUTHENTICATION" in row


def test_doctor_warns_when_recent_vendor_mail_has_no_header_of_our_server(rig: CliRig) -> None:
    authenticate(rig)
    rig.append(as_received_by_our_mx(attackers_own_export(VICTIM), genuine=True))

    code, out = rig.cli("doctor")
    [row] = [line for line in out.splitlines() if "sender authentication" in line]
    assert code == 0 and "WARN" not in row and "1 of the last 1 emails" in row and MX in row

    rig.env["INGEST_IMAP__AUTHSERV_ID"] = "mx.elsewhere.test"  # a typo: every report ignored
    code, out = rig.cli("doctor")
    [row] = [line for line in out.splitlines() if "sender authentication" in line]
    assert code == 0 and "WARN" in row and "INGEST_IMAP__AUTHSERV_ID" in row
