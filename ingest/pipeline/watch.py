"""The watcher: read new mail in the watched folder, screen it, archive the reports and
move what was handled, committing state per email.

Screening happens on headers and size only (cheap): mail from a sender not on the
allow-list, or failing the Authentication-Results check when it is required, is never
fetched whole; it is left alone (or moved to INGEST_IMAP__REJECTED_FOLDER) and counted.
Progress is by UID within a UIDVALIDITY; a dropped connection is re-opened with back-off
and the pass resumes after the last email recorded.

Each email is a unit (the message boundary, :func:`examine`): whatever goes wrong while
handling it (a corrupt attachment, an encrypted zip, MIME nested a thousand levels deep,
a bug) sets that one email aside: recorded with its reason in the state store
(``failed_messages``), moved to the failed folder (or left flagged when the server will
not move it), the position advanced past it, and the pass goes on to the next email.
Only what is the run's problem (:func:`ingest.errors.stops_the_run`: a lost connection,
an unavailable store) ends the pass. ``ingest retry --failed`` (:func:`retry_failed`)
takes the set-aside emails up again after a fix.

Example::

    summary = RunSummary()
    poll_mailbox(settings, store, storage, summary)
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from ingest.archive.storage import Storage
from ingest.crashpoints import crash_point
from ingest.errors import (
    MailboxUnavailable,
    ReportRejected,
    one_line,
    stops_the_run,
)
from ingest.mail.attachments import (
    Inflater,
    ParsedEmail,
    ReportFile,
    parse_email,
    reports_in_file,
    scratch,
)
from ingest.mail.mailbox import Mailbox
from ingest.mail.partfetch import fetch_parts_to_disk
from ingest.mail.recipients import account_addresses
from ingest.mail.senders import check_watch_settings, screen
from ingest.pipeline.intake import archive_email
from ingest.pipeline.summary import RunSummary
from ingest.settings import ImapSettings, Settings
from ingest.state.store import Store

log = logging.getLogger(__name__)

#: Screened-out emails recorded per commit (a spam flood must not cost an fsync each).
IGNORED_BATCH = 1000


def poll_mailbox(
    settings: Settings,
    store: Store,
    out: Storage,
    summary: RunSummary,
    stop: threading.Event | None = None,
    box: Mailbox | None = None,
) -> None:
    """Handle every new email; reconnect (with back-off) if the server drops us."""
    check_watch_settings(settings.imap)
    if box is None:  # once per pass; `ingest watch` (which hands its box) says it once at its start
        warn_if_account_unknown(settings)
    connected = box is not None
    # Only a connection that drops mid-run is retried: a server refusing us from the start
    # is reported at once (exit 3), and the next scheduled run tries again.
    retrying = Retrying(
        stop=stop_after_attempt(settings.imap.reconnect_attempts),
        wait=wait_exponential(multiplier=0.5, max=30),
        retry=retry_if_exception(lambda err: isinstance(err, MailboxUnavailable) and connected),
        before_sleep=lambda state: log.warning(
            "IMAP connection lost (%s); reconnecting", state.outcome.exception() if state.outcome else ""
        ),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            if box is not None and attempt.retry_state.attempt_number == 1:
                poll_folder(box, settings, store, out, summary, stop)
            else:
                own = Mailbox(settings.imap).connect()
                connected = True
                try:
                    poll_folder(own, settings, store, out, summary, stop)
                finally:
                    own.close()


def warn_if_account_unknown(settings: Settings) -> None:
    """Log that a report's To cannot be checked, when the account's address is not known."""
    if not account_addresses(settings):
        log.warning(
            "the account's address is not known (INGEST_CERTAINLY__ACCOUNT_EMAIL unset and "
            "INGEST_IMAP__USERNAME not an address): another account's report forwarded here "
            "cannot be told from ours"
        )


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


def poll_folder(
    box: Mailbox,
    settings: Settings,
    store: Store,
    out: Storage,
    summary: RunSummary,
    stop: threading.Event | None = None,
) -> None:
    """One scan of the watched folder over an open connection."""
    imap = settings.imap
    box.check_folders()  # before anything moves: never into a special-use folder
    uidvalidity = box.select()
    position = store.mailbox_position(imap.folder)
    # A new UIDVALIDITY invalidates every UID we knew: re-scan; sha256 dedup prevents repeats.
    after = position[1] if position and position[0] == uidvalidity else 0
    ignored: list[tuple[int, str | None, str]] = []  # recorded together: see record_ignored
    # Bounded UID ranges, screened one batch at a time: a folder of any size.
    for uid, (header_bytes, size, received_at) in box.screen_new(after):
        if stop is not None and stop.is_set():
            _record_ignored(store, imap.folder, uidvalidity, ignored, summary)
            return  # between emails: nothing half done
        ids = {"uid": uid, "uidvalidity": uidvalidity}
        address, refusal = screen_safely(imap, header_bytes)
        if refusal:
            if imap.rejected_folder:
                box.move(uid, imap.rejected_folder)
            ignored.append((uid, address, refusal))
            log.info("email uid %s ignored: %s", uid, refusal, extra=ids)
            if len(ignored) >= IGNORED_BATCH:
                _record_ignored(store, imap.folder, uidvalidity, ignored, summary)
            continue
        # Anything recorded next advances the position: the ignored ones before it first.
        _record_ignored(store, imap.folder, uidvalidity, ignored, summary)
        summary.emails_seen += 1
        handled = examine(box, uid, size, address, settings, store, summary, out, received_at)
        if handled.outcome != "gone":
            settle(box, settings, store, summary, handled, uidvalidity, uid)
    _record_ignored(store, imap.folder, uidvalidity, ignored, summary)


def _record_ignored(
    store: Store,
    folder: str,
    uidvalidity: int,
    ignored: list[tuple[int, str | None, str]],
    summary: RunSummary,
) -> None:
    """Record the screened-out emails held back so far, in one commit, and count them.

    Held back only in memory: if the pass dies first, they are screened again next time
    (nothing of theirs was fetched or changed, unless moved to the rejected folder)."""
    if ignored:
        store.record_ignored(folder, uidvalidity, ignored)
        summary.emails_seen += len(ignored)
        summary.emails_ignored += len(ignored)
        ignored.clear()


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
        message_id = handled.message_id or _message_id(box, uid)
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
            _record(store, key, handled, message_id=message_id)
            _park(box, store, key, uid, imap.failed_folder)
            log.warning("email uid %s: %s", uid, reason, extra={**ids, "message_id": message_id})
            return
    # Data, manifest and state are durable by now: only then does the email move.
    crash_point("after_state")
    if handled.outcome == "archived":
        box.move(uid, imap.processed_folder)
        summary.emails_archived += 1
    elif handled.outcome == "quarantined":
        _park(box, store, key, uid, imap.failed_folder)
    crash_point("after_move")
    _record(store, key, handled, message_id=handled.message_id)
    log.info("email uid %s: %s", uid, handled.outcome, extra={**ids, "message_id": handled.message_id})


def _record(store: Store, key: tuple[str, int, int], handled: Handled, *, message_id: str | None) -> None:
    store.record_email(
        *key,
        message_id=message_id,
        sender=handled.sender,
        subject=handled.subject,
        outcome=handled.outcome,
        reason=handled.reason,
    )


def _park(box: Mailbox, store: Store, key: tuple[str, int, int], uid: int, failed_folder: str) -> None:
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


def _message_id(box: Mailbox, uid: int) -> str | None:
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


def _same_bytes(box: Mailbox, sha256: str | None, claimed: set[tuple[str, int]]) -> list[int]:
    """UIDs in the selected folder of messages without a Message-ID whose bytes hash to
    ``sha256`` (an email fetched whole before it failed; one fetched part by part has
    the hash of its parts, which this does not recompute)."""
    if not sha256:
        return []
    found = []
    for uid in box.search_without_message_id():
        raw = box.fetch_message(uid) if (box.folder, uid) not in claimed else None
        if raw is not None and hashlib.sha256(raw).hexdigest() == sha256:
            found.append(uid)
    return found


@dataclass
class Retried:
    """One failed email taken up by :func:`retry_failed`."""

    record: dict[str, Any]  # its failed_messages row
    outcome: str  # archived, or why it is still failed (not_found, quarantined, failed ...)
    reason: str | None


def retry_failed(settings: Settings, store: Store, out: Storage, summary: RunSummary) -> list[Retried]:
    """Take up again every email the state store lists as failed (``ingest status``).

    Each is looked for in the failed folder by its Message-ID, else where it failed by
    its recorded UID (same UIDVALIDITY), then handled as a pass would (screened, fetched,
    parsed, archived). Archived: moved to the processed folder and no longer failed.
    Failing again: it stays (or goes) in the failed folder with its new reason, one more
    attempt counted. One not found anywhere is reported and stays listed.
    """
    check_watch_settings(settings.imap)
    records = store.failed_messages()
    if not records:
        return []
    imap = settings.imap
    done: list[Retried] = []
    claimed: set[tuple[str, int]] = set()
    with Mailbox(imap) as box:
        box.check_folders()
        for record in records:
            key = (record["folder"], record["uidvalidity"], record["uid"])
            found = _locate(box, imap.failed_folder, record, claimed)
            if found is None:
                reason = "not found in the failed folder (by Message-ID) nor where it failed (by UID)"
                summary.problems.append(
                    f"retry {record['message_id'] or 'uid ' + str(record['uid'])}: {reason}"
                )
                done.append(Retried(record, "not_found", reason))
                continue
            folder, uid = found
            screening = box.fetch_screening([uid])
            if uid not in screening:
                done.append(Retried(record, "not_found", "expunged meanwhile"))
                continue
            summary.emails_seen += 1
            header_bytes, size, received_at = screening[uid]
            address, refusal = screen_safely(imap, header_bytes)
            handled = (
                Handled("failed", refusal, address)
                if refusal
                else examine(box, uid, size, address, settings, store, summary, out, received_at)
            )
            if handled.outcome == "archived":
                box.move(uid, imap.processed_folder)
                store.resolve_failed_message(*key, "archived")
                store.record_email(
                    *key,
                    message_id=handled.message_id,
                    sender=handled.sender,
                    subject=handled.subject,
                    outcome="archived",
                    reason=None,
                )
                summary.emails_archived += 1
                done.append(Retried(record, "archived", None))
                continue
            reason = handled.reason or {
                "unmatched": "no export window is waiting for its report",
                "no_report": "no report in it",
                "gone": "expunged meanwhile",
            }.get(handled.outcome, handled.outcome)
            store.record_failed_message(
                *key,
                message_id=handled.message_id or record["message_id"],
                sha256=handled.sha256 or record["sha256"],
                reason=reason,
            )
            if handled.outcome == "failed":
                summary.emails_failed += 1
            summary.problems.append(
                f"retry {record['message_id'] or 'uid ' + str(record['uid'])}: still failing: {reason}"
            )
            if folder != box.server_folder(imap.failed_folder):
                _park(box, store, key, uid, imap.failed_folder)
            done.append(Retried(record, handled.outcome, reason))
    return done


def _locate(
    box: Mailbox, failed_folder: str, record: dict[str, Any], claimed: set[tuple[str, int]]
) -> tuple[str, int] | None:
    """(server folder, UID) of a failed email, selected: in the failed folder by its
    Message-ID, else in the folder it failed in by its UID (same UIDVALIDITY and, when
    known, the same Message-ID). ``claimed`` keeps two records off one copy."""
    places = [("failed", box.server_folder(failed_folder)), ("source", box.server_folder(record["folder"]))]
    for how, folder in places:
        if not box.folder_exists(folder):
            continue
        box.folder = folder
        uidvalidity = box.select()
        if how == "failed" and record["message_id"]:
            uids = [u for u in box.search_message_id(record["message_id"]) if (folder, u) not in claimed]
        elif how == "failed":
            uids = _same_bytes(box, record["sha256"], claimed)
        elif uidvalidity == record["uidvalidity"] and (folder, record["uid"]) not in claimed:
            uids = [record["uid"]]
            if record["message_id"] and _message_id(box, record["uid"]) != record["message_id"]:
                uids = []
        else:
            uids = []
        if uids:
            claimed.add((folder, uids[0]))
            return folder, uids[0]
    return None
