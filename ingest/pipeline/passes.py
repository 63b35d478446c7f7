"""One pass of the job and the loop around it (the long-running watch: :mod:`ingest.pipeline.watch`).

A pass: keep scheduled bots planned (or fetch them with GET), advance the requester,
then let the watcher read new mail. Order per email: data durable -> manifest -> state
-> email moved -> position advanced, so a pass killed anywhere is simply run again.

Example::

    summary = run_once(settings, store)
    summary.rows_written
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

from ingest.archive.storage import Storage, storage_for
from ingest.mail.senders import check_watch_settings
from ingest.pipeline.get import GET_MAX_DAYS, fetch_range
from ingest.pipeline.poll import poll_mailbox
from ingest.pipeline.route import Router
from ingest.pipeline.summary import FetchSummary, RunSummary
from ingest.request.client import CertainlyClient, client_from
from ingest.request.pacing import PACING_NOTE
from ingest.request.requester import advance, plan_schedule
from ingest.settings import Settings
from ingest.state.store import Store
from ingest.state.windows import FINAL, WindowState

__all__ = ["RunSummary", "run_once", "run_until_done", "tick_requester"]

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
    storage: Storage,
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
                            storage,
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
        router = Router(settings, store, storage, client)
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
    storage: Storage | None = None,
    today: date | None = None,
) -> RunSummary:
    """One pass: the requester, then the mailbox. ``storage`` is the archive (built from the
    settings when not given)."""
    check_watch_settings(settings.imap)
    storage = storage or storage_for(settings)
    summary = RunSummary()
    tick_requester(settings, store, storage, summary, client, today=today)
    poll_mailbox(settings, store, storage, summary)
    return summary


def run_until_done(
    settings: Settings,
    store: Store,
    client: CertainlyClient | None = None,
    *,
    timeout: float | None = None,
    on_pass: Callable[[RunSummary], None] | None = None,
    storage: Storage | None = None,
    today: date | None = None,
) -> RunSummary:
    """Pass after pass until no window is left open (archived, failed or split), or timeout.
    ``today`` (UTC, default the real one) is what schedule mode plans up to the day before."""
    total = RunSummary()
    storage = storage or storage_for(settings)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        total.add(run_once(settings, store, client, storage=storage, today=today))
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
