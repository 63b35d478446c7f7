"""One pass of the job, the loop around it, and the long-running watch.

A pass: keep scheduled bots planned (or fetch them with GET), advance the requester,
then let the watcher read new mail. Order per email: data durable -> manifest -> state
-> email moved -> position advanced, so a pass killed anywhere is simply run again.

Example::

    summary = run_once(settings, store)
    summary.rows_written
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

from imapclient.exceptions import IMAPClientError

from ingest.archive.storage import Storage, storage_for
from ingest.errors import MailboxUnavailable
from ingest.mail.mailbox import Mailbox
from ingest.mail.senders import check_watch_settings
from ingest.pipeline.get import GET_MAX_DAYS, fetch_range
from ingest.pipeline.route import Router
from ingest.pipeline.summary import FetchSummary, RunSummary
from ingest.pipeline.watch import poll_mailbox, warn_if_account_unknown
from ingest.request.client import CertainlyClient, client_from
from ingest.request.pacing import PACING_NOTE
from ingest.request.requester import advance, plan_schedule
from ingest.settings import Settings
from ingest.state.store import FINAL, Store, WindowState

__all__ = ["RunSummary", "run_once", "run_until_done", "tick_requester", "watch"]

log = logging.getLogger(__name__)
S = WindowState
OPEN = (S.PLANNED, S.DEFERRED, S.LOST, S.SUBMITTING, S.ACCEPTED)
#: Seconds of GET work a pass does at least before it reads the mailbox again: a mailbox
#: read costs about as much as a GET span (a connection, a search), and an email waits
#: minutes for the vendor anyway, so a few seconds more between reads cost nothing.
GET_BUDGET_MIN = 5.0


def tick_requester(
    settings: Settings,
    store: Store,
    out: Storage,
    summary: RunSummary,
    client: CertainlyClient | None = None,
    *,
    today: date | None = None,
) -> None:
    """Schedule mode (plan up to yesterday; GET short windows when configured), then one
    requester tick. Without a ``client`` one is built only when there is something to ask
    (a run that only reads mail needs no token)."""
    today = today or datetime.now(UTC).date()
    if settings.certainly.bots:
        planned = plan_schedule(
            store,
            settings.certainly.bots,
            settings.requester,
            today=today,
            report_id=settings.certainly.report_id,
        )
        if planned and settings.requester.use_get:
            client = client or client_from(settings.certainly)
            for window in store.windows(states=(S.PLANNED,)):
                if window.days() <= GET_MAX_DAYS and window.bot_id in settings.certainly.bots:
                    summary.add_fetch(
                        fetch_range(
                            out,
                            store,
                            client,
                            window.bot_id,
                            window.from_date,
                            window.to_date,
                            report_id=window.report_id,
                        )
                    )
    if store.windows(states=OPEN):
        client = client or client_from(settings.certainly)
        router = Router(settings, store, out, client)
        router.claim()  # before the requester looks: planned windows go to GET first
        tick = advance(store, client, settings.requester)
        summary.submitted += len(tick.submitted)
        summary.accepted += len(tick.accepted)
        summary.deferred += len(tick.deferred)
        summary.failed += len(tick.failed)
        summary.lost += len(tick.lost)
        # GET works through its windows while the email (if any) is on its way; the pass
        # then reads the mailbox, so an email never waits longer than one budget.
        fetched = FetchSummary()
        router.work(fetched, budget=max(GET_BUDGET_MIN, settings.requester.poll_interval))
        summary.add_fetch(fetched)
        summary.failed += router.failed


def run_once(
    settings: Settings,
    store: Store,
    client: CertainlyClient | None = None,
    *,
    out: Storage | None = None,
    today: date | None = None,
) -> RunSummary:
    """One pass: the requester, then the mailbox. ``out`` is the archive (built from the
    settings when not given)."""
    check_watch_settings(settings.imap)
    out = out or storage_for(settings)
    summary = RunSummary()
    tick_requester(settings, store, out, summary, client, today=today)
    poll_mailbox(settings, store, out, summary)
    return summary


def run_until_done(
    settings: Settings,
    store: Store,
    client: CertainlyClient | None = None,
    *,
    timeout: float | None = None,
    on_pass: Callable[[RunSummary], None] | None = None,
    out: Storage | None = None,
    today: date | None = None,
) -> RunSummary:
    """Pass after pass until no window is left open (archived, failed or split), or timeout.
    ``today`` (UTC, default the real one) is what schedule mode plans up to the day before."""
    total = RunSummary()
    out = out or storage_for(settings)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        total.add(run_once(settings, store, client, out=out, today=today))
        if on_pass:
            on_pass(total)
        if not store.windows(states=tuple(s for s in S if s not in FINAL)):
            return total
        if deadline is not None and time.monotonic() >= deadline:
            total.problems.append(f"stopped after {timeout:g} s with windows still open")
            return total
        time.sleep(_pause(settings, store))


def _pause(settings: Settings, store: Store) -> float:
    """The wait before the next pass: none while GET has windows to work through and may
    send now (the pacer spaces the requests), else the poll interval (a Retry-After or a
    back-off is honoured by the pacer, while the mailbox is still read every interval)."""
    pacing = store.note(PACING_NOTE) or {}
    if (
        settings.requester.via != "email"
        and float(pacing.get("not_before", 0.0)) - time.time() <= GET_BUDGET_MIN
        and any(w.via == "get" for w in store.windows(states=(S.PLANNED,)))
    ):
        return 0.0
    return settings.requester.poll_interval


def watch(
    settings: Settings,
    store: Store,
    stop: threading.Event,
    client: CertainlyClient | None = None,
    *,
    out: Storage | None = None,
) -> RunSummary:
    """Long-running: IMAP IDLE (polling on servers without it) with requester ticks every
    ``poll_interval``. Returns within about a second of ``stop`` being set, never in the
    middle of an email."""
    check_watch_settings(settings.imap)
    warn_if_account_unknown(settings)
    out = out or storage_for(settings)
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
                        tick_requester(settings, store, out, total, client)
                        next_tick = time.monotonic() + settings.requester.poll_interval
                    poll_mailbox(settings, store, out, total, stop, box=box)
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
