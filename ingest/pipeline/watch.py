"""``ingest watch``: the long-running loop. It waits for mail with IMAP IDLE (polling on
servers without it), reads the mailbox (:func:`ingest.pipeline.poll.poll_mailbox`) when
something arrives, and ticks the requester every ``poll_interval``.

Example::

    stop = threading.Event()  # set by SIGTERM
    summary = watch(settings, store, stop)
"""

from __future__ import annotations

import logging
import threading
import time

from imapclient.exceptions import IMAPClientError

from ingest.archive.storage import Storage, storage_for
from ingest.errors import MailboxUnavailable
from ingest.mail.mailbox import Mailbox
from ingest.mail.senders import check_watch_settings
from ingest.pipeline.passes import tick_requester
from ingest.pipeline.poll import poll_mailbox, warn_if_account_unknown
from ingest.pipeline.summary import RunSummary
from ingest.request.client import CertainlyClient
from ingest.settings import Settings
from ingest.state.store import Store

log = logging.getLogger(__name__)


def watch(
    settings: Settings,
    store: Store,
    stop: threading.Event,
    client: CertainlyClient | None = None,
    *,
    storage: Storage | None = None,
) -> RunSummary:
    """Long-running: IMAP IDLE (polling on servers without it) with requester ticks every
    ``poll_interval``. Returns within about a second of ``stop`` being set, never in the
    middle of an email."""
    check_watch_settings(settings.imap)
    warn_if_account_unknown(settings)
    storage = storage or storage_for(settings)
    total = RunSummary()
    next_tick = 0.0
    failures = 0
    while not stop.is_set():
        try:
            with Mailbox(settings.imap) as box:
                failures = 0
                idle = "IDLE" in box.capabilities()
                while not stop.is_set():
                    if time.monotonic() >= next_tick:
                        tick_requester(settings, store, storage, total, client)
                        next_tick = time.monotonic() + settings.requester.poll_interval
                    poll_mailbox(settings, store, storage, total, stop, box=box)
                    wait = max(0.0, min(settings.imap.idle_seconds, next_tick - time.monotonic()))
                    _wait_for_mail(box, wait, stop, idle)
        except MailboxUnavailable as err:
            failures += 1
            delay = min(300.0, 2.0 ** min(failures, 9) / 2)  # 1 s, 2 s, 4 s ... 5 min
            log.warning("IMAP connection lost (%s); reconnecting in %.0f s", err, delay)
            stop.wait(delay)
    return total


def _wait_for_mail(box: Mailbox, seconds: float, stop: threading.Event, idle: bool) -> None:
    """IDLE until the server reports something, ``seconds`` pass, or ``stop`` is set."""
    deadline = time.monotonic() + seconds
    if not idle:
        stop.wait(seconds)
        return
    client = box.client
    try:
        client.idle()
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                # Short checks so that SIGTERM is honoured within a second.
                if client.idle_check(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                    return
        finally:
            try:
                client.idle_done()
            except (OSError, IMAPClientError):
                pass  # the connection is gone; the caller reconnects
    except (OSError, IMAPClientError) as err:
        raise MailboxUnavailable(
            f"IMAP connection lost while waiting for mail: {type(err).__name__}"
        ) from None
