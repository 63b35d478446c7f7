"""The watcher: read new mail in the watched folder, screen it, archive the reports and
move what was handled, committing state per email.

Screening happens on headers and size only (cheap): mail from a sender not on the
allow-list, or failing the Authentication-Results check when it is required, is never
fetched whole; it is left alone (or moved to INGEST_IMAP__REJECTED_FOLDER) and counted.
Progress is by UID within a UIDVALIDITY; a dropped connection is re-opened with back-off
and the pass resumes after the last email recorded.

Example::

    summary = RunSummary()
    poll_mailbox(settings, store, summary)
"""

from __future__ import annotations

import email
import email.policy
import logging
import tempfile
import threading
from pathlib import Path

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from ingest.archiver import RunSummary, archive_email
from ingest.attachments import (
    ParsedEmail,
    ReportFile,
    authentication_passed,
    parse_email,
    raw_header_values,
    reports_in_file,
    sender_address,
    sender_allowed,
)
from ingest.crashpoints import crash_point
from ingest.errors import ConfigError, MailboxUnavailable, ReportRejected
from ingest.mailbox import Mailbox
from ingest.partfetch import fetch_parts_to_disk
from ingest.storage import storage_for
from ingest.settings import ImapSettings, Settings, require
from ingest.store import Store

log = logging.getLogger(__name__)


def check_watch_settings(imap: ImapSettings) -> None:
    """Refuse settings under which the watcher would ingest nothing, or anybody's mail."""
    if not imap.allowed_senders:
        raise ConfigError("INGEST_IMAP__ALLOWED_SENDERS is empty, so no email would ever be "
                          "ingested; set it to the address (or @domain) reports come from")
    if imap.require_authentication:
        require(imap.authserv_id, "imap", "authserv_id")


def screen(imap: ImapSettings, header_bytes: bytes) -> tuple[str | None, str | None]:
    """(sender address, reason to refuse or None) from the From and A-R headers.

    More than one From header is refused, never resolved: mail programs show one, DKIM
    verifiers check another. Authentication-Results are read as the server wrote them.
    """
    headers = email.message_from_bytes(header_bytes, policy=email.policy.default)
    try:
        from_values = headers.get_all("From") or []
    except (ValueError, IndexError):
        from_values = []
    # The parsed header itself, not its text: str() would drop the parser's defects.
    address = sender_address(from_values[0]) if len(from_values) == 1 else None
    if not sender_allowed(address, imap.allowed_senders):
        return address, "sender not allowed"
    if imap.require_authentication:
        results = raw_header_values(headers, "Authentication-Results")
        if not authentication_passed(results, imap.authserv_id or "", address or ""):
            return address, "Authentication-Results missing or not passing"
    return address, None


def poll_mailbox(settings: Settings, store: Store, summary: RunSummary,
                 stop: threading.Event | None = None, box: Mailbox | None = None) -> None:
    """Handle every new email; reconnect (with back-off) if the server drops us."""
    check_watch_settings(settings.imap)
    connected = box is not None
    # Only a connection that drops mid-run is retried: a server refusing us from the start
    # is reported at once (exit 3), and the next scheduled run tries again.
    retrying = Retrying(
        stop=stop_after_attempt(settings.imap.reconnect_attempts),
        wait=wait_exponential(multiplier=0.5, max=30),
        retry=retry_if_exception(lambda err: isinstance(err, MailboxUnavailable) and connected),
        before_sleep=lambda state: log.warning("IMAP connection lost (%s); reconnecting",
                                               state.outcome.exception() if state.outcome else ""),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            if box is not None and attempt.retry_state.attempt_number == 1:
                poll_folder(box, settings, store, summary, stop)
            else:
                own = Mailbox(settings.imap).connect()
                connected = True
                try:
                    poll_folder(own, settings, store, summary, stop)
                finally:
                    own.close()


def fetch_and_parse(box: Mailbox, uid: int, size: int, imap: ImapSettings,
                    workdir: Path) -> ParsedEmail | None:
    """The email's provenance headers and report files; a large message is fetched part
    by part to disk instead of whole into memory."""
    if size <= imap.part_fetch_bytes:
        raw = box.fetch_message(uid)
        return parse_email(raw) if raw is not None else None
    header, parts = fetch_parts_to_disk(box, uid, workdir)
    if not header:
        return None
    parsed = parse_email(header)
    for part in parts:
        if not part.filename.lower().endswith((".zip", ".gz")):
            parsed.reports.append(ReportFile(part.filename, b"", path=part.path))  # streamed
            continue
        try:
            parsed.reports.extend(reports_in_file(part.filename, part.path.read_bytes()))
        except ReportRejected as err:
            parsed.problems.append(f"{part.filename}: {err}")
    return parsed


def poll_folder(box: Mailbox, settings: Settings, store: Store, summary: RunSummary,
                stop: threading.Event | None = None) -> None:
    """One scan of the watched folder over an open connection."""
    imap = settings.imap
    root = storage_for(settings)
    uidvalidity = box.select()
    position = store.mailbox_position(imap.folder)
    # A new UIDVALIDITY invalidates every UID we knew: re-scan; sha256 dedup prevents repeats.
    after = position[1] if position and position[0] == uidvalidity else 0
    uids = box.new_uids(after)
    screening = box.fetch_screening(uids)
    crash_point("after_screening")
    for uid in uids:
        if stop is not None and stop.is_set():
            return  # between emails: nothing half done
        if uid not in screening:
            continue  # expunged since the search: not ours to record
        header_bytes, size, received_at = screening[uid]
        summary.emails_seen += 1
        ids = {"uid": uid, "uidvalidity": uidvalidity}
        address, refusal = screen(imap, header_bytes)
        if refusal:
            summary.emails_ignored += 1
            if imap.rejected_folder:
                box.move(uid, imap.rejected_folder)
            store.record_email(imap.folder, uidvalidity, uid, message_id=None, sender=address,
                               subject=None, outcome="ignored", reason=refusal)
            log.info("email uid %s ignored: %s", uid, refusal, extra=ids)
            continue
        if size > imap.max_message_bytes:
            box.move(uid, imap.failed_folder)
            reason = f"message of {size} bytes exceeds INGEST_IMAP__MAX_MESSAGE_BYTES"
            summary.problems.append(f"email uid {uid}: {reason}")
            store.record_email(imap.folder, uidvalidity, uid, message_id=None, sender=address,
                               subject=None, outcome="too_large", reason=reason)
            log.warning("email uid %s: %s", uid, reason, extra=ids)
            continue
        with tempfile.TemporaryDirectory(prefix="ingest-mail-") as workdir:
            parsed = fetch_and_parse(box, uid, size, imap, Path(workdir))
            if parsed is None:
                continue  # expunged since the search
            parsed.received_at = received_at  # matching: no report of an export asked for later
            crash_point("after_fetch")
            outcome = archive_email(root, store, parsed, summary)
        # Data, manifest and state are durable by now: only then does the email move.
        crash_point("after_state")
        if outcome == "archived":
            box.move(uid, imap.processed_folder)
            summary.emails_archived += 1
        elif outcome == "quarantined":
            box.move(uid, imap.failed_folder)
        crash_point("after_move")
        store.record_email(imap.folder, uidvalidity, uid, message_id=parsed.message_id,
                           sender=address, subject=parsed.subject, outcome=outcome,
                           reason="; ".join(parsed.problems) or None)
        log.info("email uid %s: %s", uid, outcome, extra={**ids, "message_id": parsed.message_id})
