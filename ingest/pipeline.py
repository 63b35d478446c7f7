"""One pass of the job, and the loop around it.

A pass: advance the requester, then read new mail in the watched folder and, for every
report email from an allowed sender, archive its attachments and move it to the
processed folder. Order per email: data durable -> manifest -> state -> email moved ->
position advanced, so a pass killed anywhere is simply run again.

Example::

    summary = run_once(settings, store, client)
    summary.rows_written
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
import time
from datetime import date, datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ingest.attachments import ParsedEmail, ReportFile, parse_email, sender_address, sender_allowed
from ingest.certainly import CertainlyClient
from ingest.errors import ConfigError, ReportRejected
from ingest.mailbox import Mailbox
from ingest.parser import parse_csv
from ingest.fetch import GET_MAX_DAYS, FetchSummary, fetch_range
from ingest.requester import advance, plan_schedule
from ingest.settings import Settings, require
from ingest.store import FINAL, Store, Window, WindowState
from ingest.writer import quarantine_file, save_report, sha256_bytes

log = logging.getLogger(__name__)
S = WindowState
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class RunSummary:
    """What a pass (or several) did, for the CLI and for tests."""

    submitted: int = 0
    accepted: int = 0
    deferred: int = 0
    failed: int = 0
    lost: int = 0
    emails_seen: int = 0
    emails_ignored: int = 0
    emails_archived: int = 0
    reports_archived: int = 0
    reports_duplicate: int = 0
    reports_unmatched: int = 0
    reports_quarantined: int = 0
    rows_read: int = 0
    rows_written: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    files_written: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: "RunSummary") -> None:
        for name, value in vars(other).items():
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)
        self.problems.extend(other.problems)

    def add_fetch(self, fetched: FetchSummary) -> None:
        """Count what the GET fast path archived."""
        self.reports_archived += fetched.windows_archived
        self.rows_read += fetched.rows_read
        self.rows_written += fetched.rows_written
        self.rows_duplicate += fetched.rows_duplicate
        self.rows_rejected += fetched.rows_rejected
        self.files_written += fetched.files_written

    @property
    def needs_attention(self) -> bool:
        """True when a person should look: failures, quarantine or unmatched reports."""
        return bool(self.failed or self.reports_unmatched or self.reports_quarantined or self.problems)


def make_client(settings: Settings) -> CertainlyClient:
    """The API client from settings; a ConfigError names any missing variable."""
    c = settings.certainly
    return CertainlyClient(c.base_url, require(c.token, "certainly", "token"),
                           require(c.report_path, "certainly", "report_path"), timeout=c.timeout)


def run_once(settings: Settings, store: Store, client: CertainlyClient | None = None, *,
             today: date | None = None) -> RunSummary:
    """One pass: schedule, requester tick (or GET fast path), then the mailbox."""
    summary = RunSummary()
    today = today or datetime.now(timezone.utc).date()
    if settings.certainly.bots:
        planned = plan_schedule(store, settings.certainly.bots, settings.requester, today=today,
                                report_id=settings.certainly.report_id)
        if planned and settings.requester.use_get:
            client = client or make_client(settings)
            for window in store.windows(states=(S.PLANNED,)):
                if window.days() <= GET_MAX_DAYS and window.bot_id in settings.certainly.bots:
                    fetched = fetch_range(settings, store, client, window.bot_id, window.from_date,
                                          window.to_date, report_id=window.report_id)
                    summary.add_fetch(fetched)
    if store.windows(states=(S.PLANNED, S.DEFERRED, S.LOST, S.SUBMITTING, S.ACCEPTED)):
        tick = advance(store, client or make_client(settings), settings.requester)
        summary.submitted, summary.accepted = len(tick.submitted), len(tick.accepted)
        summary.deferred, summary.failed, summary.lost = len(tick.deferred), len(tick.failed), len(tick.lost)
    poll_mailbox(settings, store, summary)
    return summary


def run_until_done(
    settings: Settings, store: Store, client: CertainlyClient | None = None, *,
    timeout: float | None = None, on_pass: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    """Pass after pass until no window is left to archive (archived or failed), or timeout."""
    total = RunSummary()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        total.add(run_once(settings, store, client))
        if on_pass:
            on_pass(total)
        if not store.windows(states=tuple(s for s in S if s not in FINAL)):
            return total
        if deadline is not None and time.monotonic() >= deadline:
            total.problems.append(f"stopped after {timeout:g} s with windows still open")
            return total
        time.sleep(settings.requester.poll_interval)


def poll_mailbox(settings: Settings, store: Store, summary: RunSummary) -> None:
    """Handle every new email in the watched folder, committing state per email."""
    imap = settings.imap
    if not imap.allowed_senders:
        raise ConfigError("INGEST_IMAP__ALLOWED_SENDERS is empty, so no email would ever be "
                          "ingested; set it to the address (or @domain) reports come from")
    root = Path(settings.output.root)
    with Mailbox(imap) as box:
        uidvalidity = box.select()
        position = store.mailbox_position(imap.folder)
        # A new UIDVALIDITY invalidates every UID we knew: re-scan; sha256 dedup prevents repeats.
        after = position[1] if position and position[0] == uidvalidity else 0
        uids = box.new_uids(after)
        senders = box.fetch_senders(uids)
        for uid in uids:
            if uid not in senders:
                continue  # expunged since the search: not ours to record
            summary.emails_seen += 1
            address = sender_address(_from_header(senders[uid]))
            if not sender_allowed(address, imap.allowed_senders):
                summary.emails_ignored += 1
                log.info("email uid %s ignored: sender not allowed", uid,
                         extra={"uid": uid, "uidvalidity": uidvalidity})
                store.record_email(imap.folder, uidvalidity, uid, message_id=None, sender=address,
                                   subject=None, outcome="ignored", reason="sender not allowed")
                continue
            raw = box.fetch_message(uid)
            if raw is None:
                continue
            parsed = parse_email(raw)
            outcome = archive_email(root, store, parsed, summary)
            if outcome == "archived":
                box.move(uid, imap.processed_folder)
                summary.emails_archived += 1
            store.record_email(imap.folder, uidvalidity, uid, message_id=parsed.message_id,
                               sender=address, subject=parsed.subject, outcome=outcome)
            log.info("email uid %s: %s", uid, outcome,
                     extra={"uid": uid, "uidvalidity": uidvalidity, "message_id": parsed.message_id})


def _from_header(header_bytes: bytes) -> str | None:
    message = email.message_from_bytes(header_bytes, policy=email.policy.default)
    try:
        value = message.get("From")
    except (ValueError, IndexError):
        return None
    return str(value) if value is not None else None


def archive_email(root: Path, store: Store, parsed: ParsedEmail, summary: RunSummary) -> str:
    """Archive each report file of an email. Returns the email's outcome."""
    for problem in parsed.problems:
        summary.problems.append(f"email {parsed.message_id}: {problem}")
    if not parsed.reports:
        return "no_report" if not parsed.problems else "quarantined"
    outcomes = {archive_report(root, store, report, parsed, summary) for report in parsed.reports}
    if outcomes <= {"archived", "duplicate"} and not parsed.problems:
        return "archived"
    return "unmatched" if "unmatched" in outcomes else "quarantined"


def email_provenance(parsed: ParsedEmail) -> dict[str, object]:
    """The email facts a manifest records."""
    return {"email": {"message_id": parsed.message_id, "from": parsed.sender, "date": parsed.date,
                      "subject": parsed.subject,
                      "authentication_results": parsed.authentication_results}}


def archive_report(root: Path, store: Store, report: ReportFile, parsed: ParsedEmail,
                   summary: RunSummary) -> str:
    """Match one report file to its window, parse, write, and record it."""
    sha = sha256_bytes(report.data)
    known = store.attachment(sha)
    if known is not None and known["outcome"] == "archived":
        summary.reports_duplicate += 1
        return "duplicate"
    provenance = email_provenance(parsed)
    window, exact = match_window(store, f"{parsed.subject or ''} {report.filename}")
    if window is None:
        return _set_aside(root, store, sha, report, provenance, summary, "unmatched",
                          "no export window is waiting for this report")
    provenance["window"] = {"id": window.id, "bot_id": window.bot_id, "report_id": window.report_id,
                            "from": window.from_date.isoformat(), "to": window.to_date.isoformat()}
    try:
        rows = parse_csv(report.data, bot_id=window.bot_id, source_sha256=sha,
                         window=(window.from_date, window.to_date))
    except ReportRejected as err:
        store.transition(window.id, S.FAILED, last_error=f"report rejected: {err}")
        return _set_aside(root, store, sha, report, provenance, summary, "quarantined", str(err))
    if not exact and rows.rows.height == 0 and rows.rejected.height:
        return _set_aside(root, store, sha, report, provenance, summary, "unmatched",
                          f"no row falls inside the oldest waiting window {window.id}")
    result = save_report(root, rows, bot_id=window.bot_id, source_sha256=sha, raw=report.data,
                         raw_name=report.filename, provenance=provenance)
    store.record_attachment(sha, filename=report.filename, size=len(report.data), window_id=window.id,
                            bot_id=window.bot_id, outcome="archived", rows_read=result.rows_read,
                            rows_written=result.rows_written, rows_duplicate=result.rows_duplicate,
                            rows_rejected=result.rows_rejected)
    if window.state is not S.ARCHIVED:
        store.transition(window.id, S.DELIVERED)
        store.transition(window.id, S.ARCHIVED, rows_archived=window.rows_archived + result.rows_written)
    summary.reports_archived += 1
    summary.rows_read += result.rows_read
    summary.rows_written += result.rows_written
    summary.rows_duplicate += result.rows_duplicate
    summary.rows_rejected += result.rows_rejected
    summary.files_written += len(result.files)
    if result.rows_rejected:
        summary.reports_quarantined += 1
    log.info("archived %s for window %s: %d rows read, %d written, %d duplicate, %d rejected",
             report.filename, window.id, result.rows_read, result.rows_written,
             result.rows_duplicate, result.rows_rejected,
             extra={"window_id": window.id, "bot_id": window.bot_id, "sha256": sha,
                    "message_id": parsed.message_id})
    return "archived"


def _set_aside(root: Path, store: Store, sha: str, report: ReportFile, provenance: dict[str, object],
               summary: RunSummary, outcome: str, reason: str) -> str:
    quarantine_file(root, sha, report.data, report.filename, f"{outcome}: {reason}", provenance)
    store.record_attachment(sha, filename=report.filename, size=len(report.data), window_id=None,
                            bot_id=None, outcome=outcome, reason=reason)
    if outcome == "unmatched":
        summary.reports_unmatched += 1
    else:
        summary.reports_quarantined += 1
    log.warning("%s %s: %s", outcome, report.filename, reason,
                extra={"sha256": sha, "message_id": provenance.get("email", {}).get("message_id")})  # type: ignore[union-attr]
    return outcome


def match_window(store: Store, hints: str) -> tuple[Window | None, bool]:
    """The window a report belongs to, and whether the hints named it exactly.

    Exact: the bot id and both dates appear in the subject or file name. Otherwise the
    oldest accepted window of a bot named in the hints, else the oldest accepted one.
    """
    waiting = store.windows(states=(S.ACCEPTED, S.SUBMITTING, S.LOST, S.DEFERRED, S.SPLIT, S.ARCHIVED))
    dates = set(_DATE.findall(hints))
    for window in waiting:
        if window.bot_id in hints and {window.from_date.isoformat(), window.to_date.isoformat()} <= dates:
            return window, True
    accepted = [w for w in waiting if w.state is S.ACCEPTED]
    named = [w for w in accepted if w.bot_id in hints]
    candidates = named or accepted
    return (min(candidates, key=lambda w: (w.accepted_at or 0, w.id)), False) if candidates else (None, False)
