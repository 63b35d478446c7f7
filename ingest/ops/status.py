"""What `ingest status` shows: windows per bot by state, rows, in-flight and errors."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from ingest.parse.reports import DATASETS
from ingest.parse.schema import DATASET
from ingest.state.store import Store, WindowState


def collect_status(store: Store) -> dict[str, Any]:
    """A JSON-ready summary of the state store.

    Example: ``collect_status(store)["bots"][0]["states"]`` -> ``{"archived": 4}``
    """
    bots: dict[tuple[str, int], dict[str, Any]] = {}
    for window in store.windows():  # one entry per bot and report type (dataset)
        bot = bots.setdefault((window.bot_id, window.report_id), {
            "bot_id": window.bot_id, "dataset": DATASETS.get(window.report_id, DATASET), "windows": 0, "states": Counter(), "rows_archived": 0,
            "in_flight": None, "next_retry_at": None, "last_error": None, "covered_until": None,
        })
        bot["windows"] += 1
        bot["states"][window.state.value] += 1
        bot["rows_archived"] += window.rows_archived
        if window.state is WindowState.ACCEPTED:
            bot["in_flight"] = {"window": f"{window.from_date}..{window.to_date}",
                                "since": _iso(window.accepted_at)}
        if window.state is WindowState.DEFERRED and window.next_attempt_at:
            bot["next_retry_at"] = _iso(window.next_attempt_at)
        if window.last_error and window.state is not WindowState.ARCHIVED:
            bot["last_error"] = window.last_error
        if window.state is WindowState.ARCHIVED:
            bot["covered_until"] = max(filter(None, [bot["covered_until"], window.to_date.isoformat()]))
    for bot in bots.values():
        bot["states"] = dict(bot["states"])
    count, latest = store.conflicts()
    return {"bots": list(bots.values()), "emails": store.email_counts(),
            "attachments": store.attachment_totals(), "failed_messages": failed_messages(store),
            "conflicts": {"count": count, "latest": [{**c, "at": _iso(c["at"])} for c in latest]}}


def failed_messages(store: Store) -> list[dict[str, Any]]:
    """Emails waiting for a person (in the failed folder or left flagged), with reasons;
    ``ingest retry --failed`` takes them up again."""
    return [{"folder": m["folder"], "uidvalidity": m["uidvalidity"], "uid": m["uid"],
             "message_id": m["message_id"], "sha256": m["sha256"], "reason": m["reason"],
             "now_in": m["place"], "attempts": m["attempts"], "failed_at": _iso(m["failed_at"])}
            for m in store.failed_messages()]


def _iso(timestamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp)) if timestamp else None
