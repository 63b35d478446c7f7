"""Routing (INGEST_REQUESTER__VIA): each window by the fastest path the API allows.

``email``: every window is a POST export answered by email (one at a time per account),
as before. ``auto``: a window is first fetched by GET in spans of at most 15 days; a span
whose answer holds 500 rows (probably truncated) is halved; a day that still holds 500 rows
is a heavy day, and only heavy days go by POST and email, contiguous ones merged into one
window. The email queue then holds only heavy days while GET works through the rest in
the same passes. ``get``: GET only; a window with a heavy day fails, saying so.

The ledger knows the path: a window routed to GET has ``via = 'get'`` and its spans in the
state store (pending, done, heavy), each marked done only after its rows are durable, so a
killed run resumes a half-done window without refetching the done spans; a window sent by
POST has ``via = 'email'``. Rows from either path go through the same parser and writer
(:func:`ingest.pipeline.get.save_get_answer`): one archive, whatever the path.

Example::

    router = Router(settings, store, out, client)
    router.claim()           # planned windows not yet routed go to GET
    router.work(summary, budget=30)
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime, timedelta

from ingest.archive.storage import Storage
from ingest.crashpoints import crash_point
from ingest.errors import ApiRefused, ApiUnavailable, ReportRejected
from ingest.pipeline.get import GET_MAX_DAYS, GET_MAX_ROWS, record_get_report, save_get_answer
from ingest.pipeline.summary import FetchSummary
from ingest.request.client import CertainlyClient
from ingest.request.pacing import GetPacer
from ingest.request.requester import split_range
from ingest.settings import Settings
from ingest.state.store import Store
from ingest.state.windows import Span, SpanState, Window, WindowState

log = logging.getLogger(__name__)
S = WindowState
#: 429s in a row a window takes, as a multiple of INGEST_REQUESTER__MAX_ATTEMPTS.
THROTTLE_FACTOR = 5
#: The longest wait (a Retry-After) auto sits out for GET: beyond it, an emailed export
#: (minutes) is the faster path, so the windows waiting on GET go by email.
LONG_WAIT = 900.0

#: One line per path, for status, the evidence report and the demo.
ROUTING_EXPLAINED = (
    "Routing (INGEST_REQUESTER__VIA): with auto, each window is first fetched by GET in spans "
    "of at most 15 days, paced (INGEST_REQUESTER__GET_RATE requests per second, one at a "
    "time, 429 Retry-After and 5xx back-off honoured); a span answered with 500 rows is "
    "halved, and only a day still at 500 rows goes by POST export and email, contiguous heavy "
    "days in one window, while GET goes on with the light days. With email every window is "
    "a POST export (one at a time per account); with get, GET only and a heavy day fails. "
    "Rows from either path land in the same tables with the same values and the same "
    "exactly-once rules; each window records which path archived it (via)."
)


def _utc(epoch: float) -> str:
    """An epoch time as a person reads it: 2024-05-01T10:00:00Z."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def heavy_runs(days: list[date]) -> list[tuple[date, date]]:
    """Contiguous runs of days, as (first, last): as few POST windows as possible.

    >>> heavy_runs([date(2024, 1, 3), date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 9)])
    ... # doctest: +NORMALIZE_WHITESPACE
    [(datetime.date(2024, 1, 1), datetime.date(2024, 1, 3)),
     (datetime.date(2024, 1, 9), datetime.date(2024, 1, 9))]
    """
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


class Router:
    """Claims planned windows for GET and works through their spans, paced."""

    def __init__(self, settings: Settings, store: Store, storage: Storage, client: CertainlyClient) -> None:
        self.mode = settings.requester.via
        self._settings = settings
        self._store = store
        self._out = storage
        self.pacer = GetPacer(client, settings.requester, store)
        self.failed = 0  # windows failed by this router (via=get and a heavy day, refusals)

    def claim(self) -> list[int]:
        """Planned windows nobody routed yet go to GET (auto and get modes)."""
        claimed: list[int] = []
        if self.mode == "email":
            self._release()
            return claimed
        for window in self._store.windows(states=(S.PLANNED,)):
            if window.via is None:
                self._store.transition(window.id, S.PLANNED, via="get")
                claimed.append(window.id)
        return claimed

    def _release(self) -> None:
        """Routing switched to email: windows GET had begun go by email, keeping the rows
        their done spans archived (their leftover spans superseded)."""
        for window in self._store.windows(states=(S.PLANNED,)):
            if window.via == "get":
                self._store.hand_to_email(window.id, "INGEST_REQUESTER__VIA=email: sent by email")

    def pending(self) -> list[Window]:
        """Windows routed to GET and not finished yet."""
        if self.mode == "email":
            return []
        return [w for w in self._store.windows(states=(S.PLANNED,)) if w.via == "get"]

    def work(self, summary: FetchSummary, *, budget: float) -> None:
        """Fetch spans for up to ``budget`` seconds (never starting a GET whose turn comes
        later than that), oldest window first."""
        ends = time.monotonic() + budget
        for window in self.pending():
            if self._waits_too_long(window):
                continue
            if not self._work_window(window, summary, ends):
                if self._waits_too_long(window):  # a long Retry-After just came
                    continue
                if self.pacer.held_off():  # a Retry-After or back-off, not the mere pace
                    summary.waiting_until = self.pacer.not_before
                    log.warning("GET waits until %s (Retry-After or back-off)", _utc(self.pacer.not_before))
                return

    def _waits_too_long(self, window: Window) -> bool:
        """Under auto, a wait longer than :data:`LONG_WAIT` sends the window by email."""
        wait = self.pacer.wait_time()
        if self.mode != "auto" or wait <= LONG_WAIT:
            return False
        self._give_up(window, f"GET asked to wait {wait:.0f} s, until {_utc(self.pacer.not_before)}")
        return True

    def _work_window(self, window: Window, summary: FetchSummary, ends: float) -> bool:
        """Work one window's spans; False when the budget ran out first."""
        if not self._store.spans(window.id):
            self._store.add_spans(window.id, split_range(window.from_date, window.to_date, GET_MAX_DAYS))
        while True:
            pending = [s for s in self._store.spans(window.id) if s.state is SpanState.PENDING]
            if not pending:
                self._finish(window)
                return True
            if time.monotonic() + self.pacer.wait_time() > ends:
                return False
            if not self._fetch_span(window, pending[0], summary):
                return True  # the window was handed over (to email) or failed

    def _fetch_span(self, window: Window, span: Span, summary: FetchSummary) -> bool:
        """GET one span and archive it, halve it, or mark its day heavy. False when the
        window gave up on GET."""
        try:
            rows, body = self.pacer.fetch(window.bot_id, span.from_date, span.to_date, window.report_id)
        except ApiUnavailable as err:
            status = getattr(err, "status", 0)
            self._store.record_api_answer(window.id, "GET", status, "transient", str(err))
            if status == 429:
                summary.throttled += 1
                return self._throttled(window)
            if self._store.count_span_attempt(span.id) < self._settings.requester.max_attempts:
                return True
            self._give_up(window, f"GET failed {self._settings.requester.max_attempts} times: {err}")
            return False
        except ApiRefused as err:
            self._store.record_api_answer(window.id, "GET", 400, "rejected", str(err))
            self._give_up(window, str(err))
            return False
        summary.requests += 1
        crash_point("after_get")
        if len(rows) >= GET_MAX_ROWS:
            self._store.record_api_answer(
                window.id, "GET", 200, "full", f"{len(rows)} rows: {span.from_date}..{span.to_date}"
            )
            if span.from_date == span.to_date:
                self._store.finish_span(span.id, SpanState.HEAVY, rows=len(rows))
                summary.fallback_days.append(span.from_date)
            else:
                summary.bisected += 1
                self._store.halve_span(span, span.from_date + timedelta(days=span.days() // 2 - 1))
            return True
        try:
            result, sha = save_get_answer(
                self._out, window.bot_id, span.from_date, span.to_date, window.report_id, rows, body
            )
        except ReportRejected as err:  # a GET answer the parser refuses: the CSV may do
            self._store.record_api_answer(window.id, "GET", 200, "rejected", str(err))
            self._give_up(window, f"GET answer for {span.from_date}..{span.to_date} refused: {err}")
            return False
        self._store.record_api_answer(
            window.id,
            "GET",
            200,
            "archived",
            f"{len(rows)} rows {span.from_date}..{span.to_date} sha256 {sha}",
        )
        record_get_report(
            self._store, summary, window.bot_id, span.from_date, span.to_date, body, sha, result, window.id
        )
        self._store.finish_span(span.id, SpanState.DONE, rows=result.rows_written, sha256=sha)
        crash_point("after_get_span")
        return True

    def _throttled(self, window: Window) -> bool:
        """A 429 is "slow down", not "cannot": the pacer waits and the span stays GET's,
        until :meth:`throttle_limit` 429s in a row; then GET has had its chance (auto sends
        the window by email, get fails it) and a run never waits on GET for ever."""
        count = self.pacer.throttled_in_a_row
        if count < self.throttle_limit:
            return True
        self.pacer.forgive_throttling()
        self._give_up(window, f"GET throttled (429) {count} times in a row")
        return False

    @property
    def throttle_limit(self) -> int:
        """429s in a row before a window leaves GET: five times max_attempts (a 5xx's limit),
        since a 429 is the server pacing us, not failing."""
        return THROTTLE_FACTOR * self._settings.requester.max_attempts

    def _give_up(self, window: Window, reason: str) -> None:
        """GET cannot get this window: auto sends it all by email, get fails it."""
        if self.mode == "auto":
            log.warning("window %s: %s; sent by email instead", window.id, reason)
            self._store.hand_to_email(window.id, f"{reason}: sent by email")
        else:
            self._fail(window, reason)

    def _fail(self, window: Window, reason: str) -> None:
        self.failed += 1
        self._store.close_window(window.id, S.FAILED, last_error=reason)

    def _finish(self, window: Window) -> None:
        """Every span done or heavy: heavy days go by email (auto) or fail the window (get),
        and the window is archived with what GET brought."""
        spans = self._store.spans(window.id)
        runs = heavy_runs([s.from_date for s in spans if s.state is SpanState.HEAVY])
        rows = sum(s.rows for s in spans if s.state is SpanState.DONE)
        if runs and self.mode == "get":
            days = ", ".join(f"{a}..{b}" if a != b else f"{a}" for a, b in runs)
            self._fail(
                window,
                f"GET cannot hold {days}: {GET_MAX_ROWS} rows or more a day "
                "(INGEST_REQUESTER__VIA=auto sends such days by email)",
            )
            return
        if runs == [(window.from_date, window.to_date)]:  # heavy throughout: this window by email
            self._store.transition(window.id, S.PLANNED, via="email")
            return
        for first, last in runs:
            self._store.plan_window(window.bot_id, window.report_id, first, last, via="email")
            log.info("%s %s..%s: 500 rows or more a day, planned for email", window.bot_id, first, last)
        self._store.close_window(window.id, S.ARCHIVED, rows_archived=rows)
