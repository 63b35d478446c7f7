"""Two reports for one window, the first naming no bot (issue 23): a conflict, never a silent
drop, settled by one operator command. Real parts: a private Dovecot, the simulator over
HTTP, the real CLI (``python -m ingest``); the emails are APPENDed in the order each scenario
needs.

A vendor that names no bot leaves the only accepted window as the only evidence, so a
report naming nothing may close it; when another report for that window comes, the run
exits 1 naming both emails, ``ingest status`` and the evidence report show both, and
``ingest resolve --window N --keep SHA --reason TEXT --apply`` keeps one: the other's rows
leave the tables like an erasure (erasure record, audit record, ``ingest verify`` clean).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest

from ingest.simulator import SimulatorConfig
from tests.support.archive import assert_archive_matches, expected_rows, read_archive
from tests.support.cli_rig import CliRig, cli_rig
from tests.support.dovecot import Dovecot
from tests.support.job import Account

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PASSWORD = "secret"
USERS = {f"conflict{i:02d}@example.test": PASSWORD for i in range(1, 5)}
VENDOR = "reports@certainly.example"
BOT = "6c0f0000-0000-4000-8000-0000000000a1"
START, END = date(2024, 6, 1), date(2024, 6, 5)
_free = iter(USERS)


@pytest.fixture
def rig(request: pytest.FixtureRequest, dovecot: Dovecot, tmp_path: Path) -> Iterator[CliRig]:
    """``request.param``: whether the vendor's email names the bot and dates."""
    account = Account(dovecot.host, dovecot.port, next(_free), PASSWORD)
    config = SimulatorConfig(
        sender=VENDOR, recipient=account.username, delivery_delay=0.0, email_hints=request.param
    )
    with cli_rig(account, tmp_path, config) as rig:  # no deliver: the test appends each email
        yield rig


def anonymous_report(to: str, *, message_id: str) -> bytes:
    """A report naming no bot, sent to the account (authentication off: anyone can send
    it): one row, id 1, inside the window."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = VENDOR
    msg["To"] = to
    msg["Subject"] = "Your Certainly message report"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id
    msg.set_content("Your message report is attached.\n")
    csv = f"id,timestamp,message\r\n1,{START}T10:00:00Z,ANONYMOUS\r\n".encode()
    msg.add_attachment(csv, maintype="text", subtype="csv", filename="export.csv")
    return msg.as_bytes()


def message_id_of(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    return next(
        line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("message-id:")
    )


@pytest.mark.parametrize("rig", [True], ids=["the-vendor-names-the-bot"], indirect=True)
def test_a_second_report_for_a_window_an_unnamed_report_closed_is_a_conflict_the_operator_settles(
    rig: CliRig,
) -> None:
    """The anonymous report came first and closed the window; the vendor's came second:
    keep the vendor's, and the anonymous rows leave the table."""
    assert rig.cli("backfill", "--bot", BOT, "--from", str(START), "--to", str(END))[0] == 0
    assert rig.cli("run")[0] == 0  # POST accepted; the vendor's email is held back
    genuine = rig.vendor_mail()
    first_id = make_msgid(idstring="anonymous", domain="example.test")
    rig.append(anonymous_report(rig.account.username, message_id=first_id))
    assert rig.cli("run")[0] == 0  # it closes the only accepted window
    rig.append(genuine)

    code, out = rig.cli("run")

    assert code == 1, out
    name = next(n for n in rig.reports() if n != "export.csv")
    first, second = rig.reports()["export.csv"], rig.reports()[name]
    assert (first["outcome"], second["outcome"]) == ("archived", "conflict")
    for said in (first_id, message_id_of(genuine), str(first["sha256"])[:16], str(second["sha256"])[:16]):
        assert said in out, out
    # status and the evidence report name both emails and the one command that settles it.
    code, status = rig.cli("status")
    assert "reports in conflict" in status and "ingest resolve --window 1" in status, status
    assert first_id in status and message_id_of(genuine) in status, status
    assert rig.cli("report", "--html", str(rig.workdir / "evidence.html"))[0] in (0, 1)
    page = (rig.workdir / "evidence.html").read_text()
    assert str(first["sha256"]) in page and str(second["sha256"]) in page
    assert first_id.strip("<>") in page and message_id_of(genuine).strip("<>") in page

    # A dry run changes nothing; a --keep naming no report is refused (exit 2).
    code, out = rig.cli("resolve", "--window", "1", "--keep", str(second["sha256"])[:12])
    assert code == 0 and "dry run" in out and "rows to remove: 1" in out, out
    assert (
        rig.cli("resolve", "--window", "1", "--keep", "abc")[0] == 2
    )  # the rest: tests/integration/test_resolve.py
    assert "ANONYMOUS" in read_archive(rig.archive)["message"].to_list()

    code, out = rig.cli(
        "resolve",
        "--window",
        "1",
        "--keep",
        str(second["sha256"])[:12],
        "--reason",
        "vendor ticket 881",
        "--apply",
    )

    assert code == 0, out
    assert "rows removed: 1" in out, out
    assert_archive_matches(rig.archive, expected_rows([BOT], START, END))  # the vendor's rows, only
    assert {n: r["outcome"] for n, r in rig.reports().items()} == {"export.csv": "removed", name: "archived"}
    records = [json.loads(p.read_text()) for p in sorted((rig.archive / "audit").glob("*.json"))]
    resolved = [r for r in records if r.get("kind") == "resolve" and "rejected" in r]
    assert len(resolved) == 1 and resolved[0]["reason"] == "vendor ticket 881"
    assert resolved[0]["kept"] == second["sha256"] and resolved[0]["window"] == 1
    assert [r["sha256"] for r in resolved[0]["rejected"]] == [first["sha256"]]
    assert list((rig.archive / "manifests").glob("erasure-*.json")), "the removal is recorded like an erasure"
    aside = rig.archive / "quarantine" / str(second["sha256"])
    assert not list(aside.glob("*")) if aside.exists() else True, "the kept report is archived, not aside"
    code, out = rig.cli("verify")
    assert code == 0, out
    code, status = rig.cli("status")
    assert "conflict" not in status, status
    assert rig.cli("run")[0] == 0


@pytest.mark.parametrize("rig", [False], ids=["the-vendor-names-nothing"], indirect=True)
def test_keeping_the_first_report_rejects_the_later_one_and_changes_no_row(rig: CliRig) -> None:
    """The vendor's report, naming nothing, closed the window first; an anonymous one came
    later (it names nothing either): a conflict; keep the first, and the later one stays aside."""
    assert rig.cli("backfill", "--bot", BOT, "--from", str(START), "--to", str(END))[0] == 0
    assert rig.cli("run")[0] == 0
    rig.append(rig.vendor_mail())
    assert rig.cli("run")[0] == 0
    [genuine_name] = rig.reports()
    later_id = make_msgid(idstring="later", domain="example.test")
    rig.append(anonymous_report(rig.account.username, message_id=later_id))

    code, out = rig.cli("run")

    assert code == 1 and later_id in out and "conflict" in out, out
    genuine = rig.reports()[genuine_name]
    assert rig.reports()["export.csv"]["outcome"] == "conflict"
    code, out = rig.cli(
        "resolve", "--window", "1", "--keep", str(genuine["sha256"]), "--reason", "the vendor's", "--apply"
    )
    assert code == 0 and "rows removed: 0" in out, out
    assert_archive_matches(rig.archive, expected_rows([BOT], START, END))
    outcomes = {n: r["outcome"] for n, r in rig.reports().items()}
    assert outcomes == {genuine_name: "archived", "export.csv": "rejected"}
    assert rig.reports()[genuine_name]["reason"] is None  # vouched for by a person now
    assert rig.cli("verify")[0] == 0
    assert rig.cli("run")[0] == 0
