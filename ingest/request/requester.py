"""The requester: plans export windows and advances them through their lifecycle.

One :func:`advance` call is one requester tick: resolve windows left ``submitting`` by
a crash, expire ``accepted`` windows whose email never came (``lost``), then submit the
next due window if fewer than ``max_in_flight`` are accepted. Each state change is
committed before the next step, so the tick can be killed anywhere.

Example::

    plan_backfill(store, ["bot-1"], date(2024, 1, 1), date(2024, 3, 31), window_days=30)
    advance(store, client, settings.requester)
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

from ingest.crashpoints import crash_point
from ingest.errors import TokenRejected
from ingest.report_types import MESSAGE_REPORT_ID
from ingest.request.client import CertainlyClient, Outcome
from ingest.settings import RequesterSettings, check_bot_id
from ingest.state.store import Store
from ingest.state.windows import Window, WindowState, iter_days

log = logging.getLogger(__name__)
S = WindowState

#: States from which a window may be (re)submitted when its time has come.
SUBMITTABLE = (S.SUBMITTING, S.LOST, S.DEFERRED, S.PLANNED)


@dataclass
class TickReport:
    """What one requester tick did."""

    submitted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)


def split_range(start: date, end: date, window_days: int) -> list[tuple[date, date]]:
    """Consecutive inclusive windows of at most ``window_days`` days covering start..end.

    >>> split_range(date(2024, 1, 1), date(2024, 1, 5), 2)  # doctest: +NORMALIZE_WHITESPACE
    [(datetime.date(2024, 1, 1), datetime.date(2024, 1, 2)),
     (datetime.date(2024, 1, 3), datetime.date(2024, 1, 4)),
     (datetime.date(2024, 1, 5), datetime.date(2024, 1, 5))]
    """
    windows = []
    cursor = start
    while cursor <= end:
        last = min(end, cursor + timedelta(days=window_days - 1))
        windows.append((cursor, last))
        cursor = last + timedelta(days=1)
    return windows


def plan_backfill(
    store: Store,
    bot_ids: list[str],
    start: date,
    end: date,
    *,
    window_days: int,
    report_id: int = MESSAGE_REPORT_ID,
) -> list[tuple[str, date, date]]:
    """Plan windows for the days of start..end that no window (but a failed one) covers yet.

    Re-running it, or asking for an overlapping range, plans only what is missing.
    Returns the windows newly planned.
    """
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    for bot_id in bot_ids:
        check_bot_id(bot_id, "bot id")  # it becomes a folder name and an S3 key part
    planned = []
    for bot_id in bot_ids:
        covered = {
            day
            for window in store.windows(bot_id=bot_id)
            if window.report_id == report_id and window.state is not S.FAILED
            for day in iter_days(window.from_date, window.to_date)
        }
        for gap_start, gap_end in _gaps(start, end, covered):
            for first, last in split_range(gap_start, gap_end, window_days):
                if store.plan_window(bot_id, report_id, first, last):
                    planned.append((bot_id, first, last))
    return planned


def plan_schedule(
    store: Store,
    bot_ids: list[str],
    settings: RequesterSettings,
    *,
    today: date,
    report_id: int = MESSAGE_REPORT_ID,
) -> list[tuple[str, date, date]]:
    """Keep each bot planned up to yesterday (UTC): plan the days after its last window.

    A bot seen for the first time starts at ``schedule_from`` (default: yesterday).
    """
    yesterday = today - timedelta(days=1)
    planned = []
    for bot_id in bot_ids:
        known = [
            w.to_date
            for w in store.windows(bot_id=bot_id)
            if w.report_id == report_id and w.state is not S.FAILED
        ]
        start = max(known) + timedelta(days=1) if known else (settings.schedule_from or yesterday)
        if start <= yesterday:
            planned += plan_backfill(
                store, [bot_id], start, yesterday, window_days=settings.window_days, report_id=report_id
            )
    return planned


def _gaps(start: date, end: date, covered: set[date]) -> list[tuple[date, date]]:
    """Maximal runs of days in start..end that are not in ``covered``."""
    gaps: list[tuple[date, date]] = []
    run_start: date | None = None
    for day in iter_days(start, end):
        if day in covered:
            if run_start is not None:
                gaps.append((run_start, day - timedelta(days=1)))
                run_start = None
        elif run_start is None:
            run_start = day
    if run_start is not None:
        gaps.append((run_start, end))
    return gaps


def backoff_delay(attempt: int, settings: RequesterSettings, retry_after: float | None = None) -> float:
    """Exponential back-off with full jitter, capped; the server's Retry-After wins if longer."""
    ceiling = min(settings.retry_max, settings.retry_initial * (2 ** max(0, attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling) if ceiling > 0 else 0.0
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.retry_max))
    return delay


def expire_lost(store: Store, settings: RequesterSettings, now: float) -> list[int]:
    """Accepted windows whose email is overdue become ``lost`` and are re-submitted later;
    after ``split_after_losses`` losses a window of several days is split in half instead
    (an attachment too large to be mailed is the likely cause)."""
    lost = []
    for window in store.windows(states=(S.ACCEPTED,)):
        if window.accepted_at is None or now - window.accepted_at <= settings.delivery_timeout:
            continue
        losses = window.losses + 1
        log.warning(
            "window %s (%s %s..%s) lost (%d time(s)): no email in time",
            window.id,
            window.bot_id,
            window.from_date,
            window.to_date,
            losses,
            extra={"window_id": window.id, "bot_id": window.bot_id},
        )
        if losses >= settings.split_after_losses and window.days() > 1:
            middle = window.from_date + timedelta(days=window.days() // 2 - 1)
            store.split_window(window.id, middle, losses=losses)
        else:
            store.transition(
                window.id, S.LOST, losses=losses, last_error="no report email within the delivery time-out"
            )
        lost.append(window.id)
    return lost


def next_due(store: Store, now: float, *, skip_get: bool = False) -> Window | None:
    """The window to submit next: oldest range first, then the bot least recently served.
    With ``skip_get`` (routing auto or get) planned windows routed to GET are not the
    requester's (the pass routes planned windows before the requester's tick)."""
    due = [
        w
        for w in store.windows(states=SUBMITTABLE)
        if (w.state is not S.DEFERRED or (w.next_attempt_at or 0) <= now)
        and not (skip_get and w.state is S.PLANNED and w.via == "get")
    ]
    if not due:
        return None
    last_served: dict[str, float] = {}
    for w in store.windows():
        last_served[w.bot_id] = max(last_served.get(w.bot_id, 0.0), w.submitted_at or 0.0)
    return min(due, key=lambda w: (w.from_date, last_served.get(w.bot_id, 0.0), w.id))


def submit(
    store: Store, client: CertainlyClient, window: Window, settings: RequesterSettings, now: float
) -> WindowState:
    """Submit one window and record the classified answer. Returns the window's new state."""
    previous = window.state
    # Written before the HTTP call: a crash mid-call leaves a visible 'submitting' window.
    store.transition(window.id, S.SUBMITTING, submitted_at=now, via="email")
    crash_point("before_post")
    answer = client.request_export(window.bot_id, window.from_date, window.to_date, window.report_id)
    crash_point("after_post")
    # No HTTP answer (time-out, refused): keep the reason, so the audit trail says why.
    store.record_api_answer(window.id, "POST", answer.status, answer.outcome, answer.body or answer.message)
    log.info(
        "window %s (%s %s..%s): %s %s",
        window.id,
        window.bot_id,
        window.from_date,
        window.to_date,
        answer.status,
        answer.outcome,
        extra={
            "window_id": window.id,
            "bot_id": window.bot_id,
            "status": answer.status,
            "outcome": str(answer.outcome),
        },
    )
    if answer.outcome is Outcome.ACCEPTED:
        state = store.transition(window.id, S.ACCEPTED, accepted_at=time.time(), last_error=None).state
        crash_point("after_accept")
        return state
    if answer.outcome is Outcome.TOKEN_REJECTED:
        # Windows untouched: put this one back where it was.
        store.transition(window.id, S.PLANNED if previous is S.SUBMITTING else previous)
        raise TokenRejected(f"Certainly API rejected the token ({answer.status}: {answer.message})")
    if answer.outcome is Outcome.IN_PROGRESS and previous is S.SUBMITTING:
        # We were killed mid-POST last time: the export in progress is most likely our own.
        # Wait for its email as if accepted; if it was not ours, the delivery time-out
        # marks the window lost and it is submitted again.
        return store.transition(
            window.id,
            S.ACCEPTED,
            accepted_at=time.time(),
            last_error="in progress after an interrupted submission: possibly ours",
        ).state
    if answer.outcome is Outcome.REJECTED:
        return store.transition(
            window.id, S.FAILED, last_error=f"API refused ({answer.status}): {answer.message}"
        ).state
    attempts = window.attempts + 1
    if answer.outcome is Outcome.TRANSIENT and attempts >= settings.max_attempts:
        return store.transition(
            window.id,
            S.FAILED,
            attempts=attempts,
            last_error=f"gave up after {attempts} attempts: {answer.message}",
        ).state
    delay = backoff_delay(attempts, settings, answer.retry_after)
    return store.transition(
        window.id,
        S.DEFERRED,
        attempts=attempts,
        next_attempt_at=now + delay,
        last_error=f"{answer.outcome} ({answer.status}): {answer.message}",
    ).state


def advance(
    store: Store, client: CertainlyClient, settings: RequesterSettings, now: float | None = None
) -> TickReport:
    """One requester tick: expire lost windows, then submit while fewer than max_in_flight."""
    now = time.time() if now is None else now
    report = TickReport(lost=expire_lost(store, settings, now))
    while len(store.windows(states=(S.ACCEPTED,))) < settings.max_in_flight:
        window = next_due(store, now, skip_get=settings.via != "email")
        if window is None:
            break
        report.submitted.append(window.id)
        state = submit(store, client, window, settings, now)
        {S.ACCEPTED: report.accepted, S.DEFERRED: report.deferred, S.FAILED: report.failed}.get(
            state, []
        ).append(window.id)
        if state is S.DEFERRED:
            break  # the account is busy or the API is failing: ask again next tick
    return report
