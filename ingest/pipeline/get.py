"""The GET fast path: fetch short windows synchronously, straight into the archive.

GET answers at most 15 days and at most 500 rows; exactly 500 rows back means
"probably truncated", so the window is bisected, and a single day that still hits the
cap is planned as a POST export instead. Rows go through the same parser and writer as
emailed CSVs, so both paths give identical archive rows for the same messages.

Example::

    summary = fetch_range(storage, store, client, "bot-1", date(2024, 5, 1), date(2024, 5, 31))
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from ingest.archive.commit import SaveResult
from ingest.archive.datasets import save_typed_report
from ingest.archive.storage import Storage, sha256_bytes
from ingest.archive.writer import save_report
from ingest.parse.parser import frame_from_json_rows, parse_frame
from ingest.parse.reports import read_report_rows
from ingest.pipeline.summary import FetchSummary, record_conflicts
from ingest.report_types import MESSAGE_REPORT_ID
from ingest.request.client import CertainlyClient
from ingest.request.requester import split_range
from ingest.settings import check_bot_id
from ingest.state.store import Store
from ingest.state.windows import TRANSITIONS, WindowState

log = logging.getLogger(__name__)
S = WindowState
GET_MAX_DAYS = 15
GET_MAX_ROWS = 500


def fetch_range(
    storage: Storage,
    store: Store,
    client: CertainlyClient,
    bot_id: str,
    start: date,
    end: date,
    *,
    report_id: int = MESSAGE_REPORT_ID,
) -> FetchSummary:
    """Fetch start..end for one bot with GET, in windows of at most 15 days."""
    check_bot_id(bot_id, "bot id")  # it becomes a folder name and an S3 key part
    summary = FetchSummary()
    for first, last in split_range(start, end, GET_MAX_DAYS):
        fetch_window(storage, store, client, bot_id, first, last, report_id, summary)
    return summary


def fetch_window(
    storage: Storage,
    store: Store,
    client: CertainlyClient,
    bot_id: str,
    first: date,
    last: date,
    report_id: int,
    summary: FetchSummary,
) -> None:
    """GET one window; bisect when truncated; fall back to POST for a full single day."""
    rows, body = client.fetch_report(bot_id, first, last, report_id)
    summary.requests += 1
    if len(rows) >= GET_MAX_ROWS:
        if first == last:
            # Even one day hits the cap: only the emailed export has it all.
            store.plan_window(bot_id, report_id, first, last, via="email")
            summary.fallback_days.append(first)
            log.info("GET %s %s hit %d rows: planned a POST export instead", bot_id, first, len(rows))
            return
        summary.bisected += 1
        middle = first + timedelta(days=(last - first).days // 2)
        fetch_window(storage, store, client, bot_id, first, middle, report_id, summary)
        fetch_window(storage, store, client, bot_id, middle + timedelta(days=1), last, report_id, summary)
        return
    result, sha = save_get_answer(storage, bot_id, first, last, report_id, rows, body)
    window_id = record_get_window(store, bot_id, report_id, first, last, result.rows_written)
    record_get_report(store, summary, bot_id, first, last, body, sha, result, window_id)


def get_params(bot_id: str, first: date, last: date, report_id: int) -> dict[str, object]:
    """The GET request's query, as sent (the provenance of what it answered)."""
    return {
        "fromDate": first.isoformat(),
        "toDate": last.isoformat(),
        "reportId": report_id,
        "botId": bot_id,
    }


def save_get_answer(
    storage: Storage,
    bot_id: str,
    first: date,
    last: date,
    report_id: int,
    rows: list[dict[str, Any]],
    body: bytes,
) -> tuple[SaveResult, str]:
    """Archive one GET answer through the same parser and writer as an emailed CSV: same
    tables, canonical values and exactly-once rules; the request and the answer's sha256
    go into the manifest. Returns the result and that sha256."""
    sha = sha256_bytes(body)
    provenance = {
        "source": "GET",
        "request": {"method": "GET", "params": get_params(bot_id, first, last, report_id)},
        "window": {
            "bot_id": bot_id,
            "report_id": report_id,
            "from": first.isoformat(),
            "to": last.isoformat(),
        },
    }
    if report_id == MESSAGE_REPORT_ID:
        parsed = parse_frame(
            frame_from_json_rows(rows),
            bot_id=bot_id,
            source_sha256=sha,
            source_kind="get",
            window=(first, last),
        )
        result = save_report(
            storage,
            parsed,
            bot_id=bot_id,
            source_sha256=sha,
            raw=body,
            raw_name=f"get-{first}-{last}.json",
            provenance=provenance,
        )
    else:  # Standard, Advanced, Content Management: typed on their own evidence
        typed = read_report_rows(rows, report_id, window=(first, last))
        result = save_typed_report(
            storage,
            typed,
            bot_id=bot_id,
            source_sha256=sha,
            raw=body,
            raw_name=f"get-{first}-{last}.json",
            source_kind="get",
            provenance=provenance,
        )
    return result, sha


def record_get_report(
    store: Store,
    summary: FetchSummary,
    bot_id: str,
    first: date,
    last: date,
    body: bytes,
    sha: str,
    result: SaveResult,
    window_id: int,
) -> None:
    """Record an archived GET answer as a report of its window, and count it."""
    store.record_attachment(
        sha,
        filename=f"get-{first}-{last}.json",
        size=len(body),
        window_id=window_id,
        bot_id=bot_id,
        outcome="archived",
        **result.counts(),
    )
    # Exactly once over the whole bot: an archived id with other content is a conflict.
    record_conflicts(store, f"GET {bot_id} {first}..{last}", result, summary.problems)
    summary.windows_archived += 1
    summary.add_saved(result)
    if result.rows_rejected:  # as an emailed report with rejects: quarantined rows, exit 1
        summary.reports_quarantined += 1
        log.warning(
            "GET %s %s..%s: %d row(s) rejected and quarantined", bot_id, first, last, result.rows_rejected
        )


def record_get_window(store: Store, bot_id: str, report_id: int, first: date, last: date, rows: int) -> int:
    """Record a window archived through GET, so status shows it and backfill skips it."""
    store.plan_window(bot_id, report_id, first, last)
    window = next(
        w
        for w in store.windows(bot_id=bot_id)
        if (w.report_id, w.from_date, w.to_date) == (report_id, first, last)
    )
    if window.state is S.ARCHIVED:
        store.transition(window.id, S.ARCHIVED, rows_archived=window.rows_archived + rows)
    elif S.DELIVERED in TRANSITIONS[window.state]:
        store.transition(window.id, S.DELIVERED, via="get")
        store.transition(window.id, S.ARCHIVED, rows_archived=window.rows_archived + rows)
    return window.id
