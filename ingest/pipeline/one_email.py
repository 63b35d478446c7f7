"""One email at the message boundary: fetch it (whole, or part by part to disk), parse it,
archive its reports, then move and record it.

Whatever goes wrong while handling an email (a corrupt attachment, an encrypted zip, MIME
nested a thousand levels deep, a bug) sets that one email aside (:func:`examine`):
recorded with its reason in the state store (``failed_messages``), moved to the failed
folder (or left flagged when the server will not move it), the position advanced past
it, and the pass goes on to the next email. Only what is the run's problem
(:func:`ingest.errors.stops_the_run`: a lost connection, an unavailable store) ends the
pass. ``ingest retry --failed`` (:mod:`ingest.pipeline.failed_emails`) takes the
set-aside emails up again after a fix.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.archive.storage import Storage
from ingest.crashpoints import crash_point
from ingest.errors import MailboxUnavailable, ReportRejected, one_line, stops_the_run
from ingest.mail.attachments import Inflater, ParsedEmail, ReportFile, parse_email, reports_in_file, scratch
from ingest.mail.mailbox import Mailbox
from ingest.mail.partfetch import fetch_parts_to_disk
from ingest.mail.recipients import account_addresses
from ingest.mail.senders import screen
from ingest.pipeline.intake import archive_email
from ingest.pipeline.summary import RunSummary
from ingest.settings import ImapSettings, Settings
from ingest.state.store import Store

log = logging.getLogger(__name__)


class FetchedHash:
    """sha256 of every byte fetched for one email (whole, or header, part headers and
    bodies), so a failed email's record says exactly what was looked at."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes, /) -> None:
        self._digest.update(data)
        self.size += len(data)

    def hexdigest(self) -> str | None:
        """The hash, or None when nothing was fetched."""
        return self._digest.hexdigest() if self.size else None


def fetch_and_parse(
    box: Mailbox,
    uid: int,
    size: int,
    imap: ImapSettings,
    workdir: Path,
    inflater: Inflater | None = None,
    fetched: FetchedHash | None = None,
) -> ParsedEmail | None:
    """The email's provenance headers and report files; a large message is fetched part
    by part to disk instead of whole into memory. Compressed attachments inflate into
    ``workdir`` (through ``inflater``: one budget for the whole email)."""
    inflater = inflater or Inflater(workdir=workdir)
    if size <= imap.part_fetch_bytes:
        raw = box.fetch_message(uid)
        if raw is None:
            return None
        if fetched is not None:
            fetched.update(raw)
        return parse_email(raw, inflater)
    header, parts = fetch_parts_to_disk(box, uid, workdir, fetched)
    if not header:
        return None
    parsed = parse_email(header, inflater)
    for part in parts:
        if not part.filename.lower().endswith((".zip", ".gz")):
            parsed.reports.append(ReportFile(part.filename, b"", path=part.path))  # streamed
            continue
        try:
            parsed.reports.extend(reports_in_file(part.filename, part.path, inflater))
        except ReportRejected as err:
            parsed.problems.append(f"attachment {part.filename}: {err}")
    return parsed


#: Outcomes after which an email goes to the failed folder and waits for a person.
TO_FAILED = frozenset({"quarantined", "failed", "too_large"})


@dataclass
class Handled:
    """What became of one email at the message boundary (nothing moved yet)."""

    outcome: str  # archived, quarantined, unmatched, no_report, too_large, failed, gone
    reason: str | None = None
    sender: str | None = None
    message_id: str | None = None
    subject: str | None = None
    sha256: str | None = None


def screen_safely(imap: ImapSettings, header_bytes: bytes) -> tuple[str | None, str | None]:
    """:func:`screen`, where headers nobody can read are a refusal (the sender cannot be
    known, so the email is not ours to ingest), never an exception that ends the pass."""
    try:
        return screen(imap, header_bytes)
    except Exception as err:  # noqa: BLE001 - the message boundary, for the screening headers
        return None, f"headers unreadable ({one_line(err)})"


def examine(
    box: Mailbox,
    uid: int,
    size: int,
    address: str | None,
    settings: Settings,
    store: Store,
    summary: RunSummary,
    root: Storage,
    received_at: float | None = None,
) -> Handled:
    """Fetch, parse and archive one screened email: the message boundary.

    Never raises for what the email holds: any failure is returned as outcome "failed"
    with a one-line reason, and the caller sets the email aside. What
    :func:`~ingest.errors.stops_the_run` (a lost connection, an unavailable store, ...)
    is raised, and the email is left for the next pass. Moves no mail.
    """
    imap = settings.imap
    fetched = FetchedHash()
    try:
        if size > imap.max_message_bytes:
            return Handled(
                "too_large", f"message of {size} bytes exceeds INGEST_IMAP__MAX_MESSAGE_BYTES", address
            )
        with scratch(settings.output.temp_dir) as workdir:
            inflater = Inflater(settings.output.max_inflated_bytes, Path(workdir))
            parsed = fetch_and_parse(box, uid, size, imap, Path(workdir), inflater, fetched)
            if parsed is None:
                return Handled("gone")  # expunged since the search
            parsed.received_at = received_at  # matching: no report of an export asked for later
            crash_point("after_fetch")
            before = len(summary.set_aside)
            outcome = archive_email(root, store, parsed, summary, account_addresses(settings))
            reasons = [*parsed.problems, *summary.set_aside[before:]]
        return Handled(
            outcome,
            "; ".join(reasons)[:1000] or None,
            address,
            parsed.message_id,
            parsed.subject,
            fetched.hexdigest(),
        )
    except Exception as err:  # noqa: BLE001 - the message boundary: see the module docstring
        if stops_the_run(err):
            raise
        log.warning(
            "email uid %s failed: %s",
            uid,
            one_line(err),
            exc_info=log.isEnabledFor(logging.DEBUG),
            extra={"uid": uid},
        )
        return Handled("failed", one_line(err), address, sha256=fetched.hexdigest())


def settle(
    box: Mailbox,
    settings: Settings,
    store: Store,
    summary: RunSummary,
    handled: Handled,
    uidvalidity: int,
    uid: int,
) -> None:
    """Move and record one examined email of the watched folder. Order: data durable
    (done) -> state -> email moved -> position advanced; a set-aside email is recorded
    before it moves, so that a crash in between leaves a trace ``retry --failed`` follows."""
    imap = settings.imap
    key = (imap.folder, uidvalidity, uid)
    ids: dict[str, Any] = {"uid": uid, "uidvalidity": uidvalidity}
    if handled.outcome in TO_FAILED:
        message_id = handled.message_id or message_id_of(box, uid)
        reason = handled.reason or "a report was quarantined"
        store.record_failed_message(*key, message_id=message_id, sha256=handled.sha256, reason=reason)
        if handled.outcome == "failed":
            summary.emails_failed += 1
            summary.problems.append(
                f"email uid {uid}" + (f" {message_id}" if message_id else "") + f": {reason}"
            )
        elif handled.outcome == "too_large":
            summary.problems.append(f"email uid {uid}: {reason}")
        if handled.outcome != "quarantined":
            # Recorded (position advanced) before the move: an email that fails every
            # time is never taken up again by itself, even if the move is what fails.
            _record_email(store, key, handled, message_id=message_id)
            park(box, store, key, uid, imap.failed_folder)
            log.warning("email uid %s: %s", uid, reason, extra={**ids, "message_id": message_id})
            return
    # Data, manifest and state are durable by now: only then does the email move.
    crash_point("after_state")
    if handled.outcome == "archived":
        box.move(uid, imap.processed_folder)
        summary.emails_archived += 1
    elif handled.outcome == "quarantined":
        park(box, store, key, uid, imap.failed_folder)
    crash_point("after_move")
    _record_email(store, key, handled, message_id=handled.message_id)
    log.info("email uid %s: %s", uid, handled.outcome, extra={**ids, "message_id": handled.message_id})


def _record_email(
    store: Store, key: tuple[str, int, int], handled: Handled, *, message_id: str | None
) -> None:
    store.record_email(
        *key,
        message_id=message_id,
        sender=handled.sender,
        subject=handled.subject,
        outcome=handled.outcome,
        reason=handled.reason,
    )


def park(box: Mailbox, store: Store, key: tuple[str, int, int], uid: int, failed_folder: str) -> None:
    """Move a set-aside email to the failed folder; if the server refuses (no right to
    create it, quota ...), leave it where it is, flagged. A lost connection is raised."""
    try:
        box.move(uid, failed_folder)
        store.set_failed_place(*key, box.server_folder(failed_folder))  # as `status` shows it
    except MailboxUnavailable as err:
        try:
            box.flag(uid)
        except MailboxUnavailable:
            raise err from None
        store.set_failed_place(*key, f"{key[0]} (flagged)")
        log.warning(
            "email uid %s could not be moved to %s (%s): left in %s, flagged", uid, failed_folder, err, key[0]
        )


def message_id_of(box: Mailbox, uid: int) -> str | None:
    """The Message-ID of an email that failed before its headers were parsed."""
    header = box.fetch_section(uid, "HEADER.FIELDS (MESSAGE-ID)")
    if not header:
        return None
    try:
        value = email.message_from_bytes(header, policy=email.policy.default).get("Message-ID")
    except (ValueError, IndexError, TypeError):
        return None
    if value is None:
        return None
    return " ".join(str(value).split())[:998] or None
