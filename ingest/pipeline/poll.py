"""One pass over the watched folder: read new mail, screen it, hand each email to the
message boundary (:mod:`ingest.pipeline.one_email`), committing state per email.

Screening happens on headers and size only (cheap): mail from a sender not on the
allow-list, or failing the Authentication-Results check when it is required, is never
fetched whole; it is left alone (or moved to INGEST_IMAP__REJECTED_FOLDER) and counted.
Progress is by UID within a UIDVALIDITY; a dropped connection is re-opened with back-off
and the pass resumes after the last email recorded. The long-running loop around it is
:func:`ingest.pipeline.watch.watch`.

Example::

    summary = RunSummary()
    poll_mailbox(settings, store, storage, summary)
"""

from __future__ import annotations

import logging
import threading

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from ingest.archive.storage import Storage
from ingest.errors import MailboxUnavailable
from ingest.mail.mailbox import Mailbox
from ingest.mail.recipients import account_addresses
from ingest.mail.senders import check_watch_settings
from ingest.pipeline.one_email import examine, screen_safely, settle
from ingest.pipeline.summary import RunSummary
from ingest.settings import Settings
from ingest.state.store import Store

log = logging.getLogger(__name__)

#: Screened-out emails recorded per commit (a spam flood must not cost an fsync each).
IGNORED_BATCH = 1000


def poll_mailbox(
    settings: Settings,
    store: Store,
    storage: Storage,
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
                poll_folder(box, settings, store, storage, summary, stop)
            else:
                own = Mailbox(settings.imap).connect()
                connected = True
                try:
                    poll_folder(own, settings, store, storage, summary, stop)
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


def poll_folder(
    box: Mailbox,
    settings: Settings,
    store: Store,
    storage: Storage,
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
        handled = examine(box, uid, size, address, settings, store, summary, storage, received_at)
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
