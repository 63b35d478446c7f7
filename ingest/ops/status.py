"""What `ingest status` shows: windows per bot by state, rows, in-flight and errors."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from ingest.inert import inert
from ingest.pipeline.route import ROUTING_EXPLAINED
from ingest.report_types import dataset_of
from ingest.request.pacing import GET_AT_ONCE, PACING_NOTE
from ingest.settings import RequesterSettings
from ingest.state.store import Store
from ingest.state.windows import WindowState


def collect_status(store: Store, requester: RequesterSettings | None = None) -> dict[str, Any]:
    """A JSON-ready summary of the state store (and of the routing, when the requester's
    settings are given).

    Example: ``collect_status(store)["bots"][0]["states"]`` -> ``{"archived": 4}``
    """
    bots: dict[tuple[str, int], dict[str, Any]] = {}
    for window in store.windows():  # one entry per bot and report type (dataset)
        bot = bots.setdefault(
            (window.bot_id, window.report_id),
            {
                "bot_id": window.bot_id,
                "dataset": dataset_of(window.report_id),
                "windows": 0,
                "states": Counter(),
                "rows_archived": 0,
                "in_flight": None,
                "next_retry_at": None,
                "last_error": None,
                "covered_until": None,
                "via": Counter(),  # archived windows by path
                "routed": Counter(),  # windows routed to a path, not archived yet
            },
        )
        bot["windows"] += 1
        if window.via:
            bot["via" if window.state is WindowState.ARCHIVED else "routed"][window.via] += 1
        bot["states"][window.state.value] += 1
        bot["rows_archived"] += window.rows_archived
        if window.state is WindowState.ACCEPTED:
            bot["in_flight"] = {
                "window": f"{window.from_date}..{window.to_date}",
                "since": _iso(window.accepted_at),
            }
        if window.state is WindowState.DEFERRED and window.next_attempt_at:
            bot["next_retry_at"] = _iso(window.next_attempt_at)
        if window.last_error and window.state is not WindowState.ARCHIVED:
            bot["last_error"] = window.last_error
        if window.state is WindowState.ARCHIVED:
            bot["covered_until"] = max(filter(None, [bot["covered_until"], window.to_date.isoformat()]))
    for bot in bots.values():
        bot["states"] = dict(bot["states"])
        bot["via"] = dict(bot["via"])
        bot["routed"] = dict(bot["routed"])
    count, latest = store.conflicts()
    return {
        "bots": list(bots.values()),
        "routing": routing(store, requester),
        "emails": store.email_counts(),
        "attachments": store.attachment_totals(),
        "failed_messages": failed_messages(store),
        "conflicts": {"count": count, "latest": [{**c, "at": _iso(c["at"])} for c in latest]},
        "window_conflicts": window_conflicts(store),
    }


def window_conflicts(store: Store) -> list[dict[str, Any]]:
    """Windows with more than one report, the first of which named no bot: each report
    (archived, or kept aside in conflict) with its reason; ``ingest resolve`` settles them."""
    found = []
    for window_id in store.conflicting_windows():
        window = store.window(window_id)
        reports = [
            {
                "sha256": a["sha256"],
                "filename": a["filename"],
                "outcome": a["outcome"],
                "reason": a["reason"],
                "at": _iso(a["at"]),
            }
            for a in store.window_attachments(window_id)
            if a["outcome"] in ("archived", "conflict")
        ]
        found.append(
            {
                "window": window.id,
                "bot_id": window.bot_id,
                "from": window.from_date.isoformat(),
                "to": window.to_date.isoformat(),
                "reports": reports,
                "resolve": f"ingest resolve --window {window.id} --keep <sha256> --reason TEXT --apply",
            }
        )
    return found


def routing(store: Store, requester: RequesterSettings | None) -> dict[str, Any]:
    """How windows are routed and were archived, and the GET pacing (INGEST_REQUESTER__VIA)."""
    paths = Counter(w.via for w in store.windows() if w.via)
    pacing = store.note(PACING_NOTE) or {}
    return {
        "via": requester.via if requester else None,
        "windows_by_path": dict(sorted(paths.items())),
        "get_spans": store.span_counts(),
        "pacing": {
            "rate": requester.get_rate if requester else pacing.get("rate"),
            "at_once": GET_AT_ONCE,
            "requests": pacing.get("requests", 0),
            "throttled": pacing.get("throttled", 0),
            "failed": pacing.get("failed", 0),
            "next_get_not_before": _iso(pacing.get("not_before")),
            "last_wait": pacing.get("last_wait"),
        },
        "explained": ROUTING_EXPLAINED,
    }


def routing_line(report: dict[str, Any]) -> str:
    """One line: the routing, windows by path, and the GET pacing."""
    paths = report["windows_by_path"]
    pacing = report["pacing"]
    spans = ", ".join(f"{n} {state}" for state, n in sorted(report["get_spans"].items())) or "none"
    line = (
        f"routing: via={report['via'] or '?'}; windows archived or being archived by GET "
        f"{paths.get('get', 0)}, by email {paths.get('email', 0)}; GET spans: {spans}; "
        f"GET paced at {pacing['rate']:g} request(s)/s, {pacing['at_once']} at a time: "
        f"{pacing['requests']} sent, {pacing['throttled']} answered 429 (Retry-After honoured), "
        f"{pacing['failed']} failed (backed off)"
    )
    wait = pacing.get("last_wait")
    if wait:
        line += f"; last wait {wait['seconds']:g} s after a {wait['status'] or 'failed'} answer"
    return line


def failed_messages(store: Store) -> list[dict[str, Any]]:
    """Emails waiting for a person (in the failed folder or left flagged), with reasons;
    ``ingest retry --failed`` takes them up again."""
    return [
        {
            "folder": m["folder"],
            "uidvalidity": m["uidvalidity"],
            "uid": m["uid"],
            "message_id": m["message_id"],
            "sha256": m["sha256"],
            "reason": m["reason"],
            "now_in": m["place"],
            "attempts": m["attempts"],
            "failed_at": _iso(m["failed_at"]),
        }
        for m in store.failed_messages()
    ]


def _iso(timestamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp)) if timestamp else None


def render_status(report: dict[str, Any], console: Console, errors: Console) -> None:
    """``ingest status`` on a terminal: a block per bot and dataset, the row totals, the
    failed emails; conflicts go to ``errors`` (stderr). Stored text (API messages above
    all) is shown inert: never markup, never a control character.

    Each bot is a heading and one labelled line per fact, values folded (never cut) at
    the terminal's width: whole ids, dates and state names stay readable at 80 columns."""
    for bot in report["bots"]:
        console.print(inert(f"bot {bot['bot_id']} ({bot['dataset']})"), style="bold", overflow="fold")
        states = ", ".join(f"{k} {v}" for k, v in sorted(bot["states"].items()))
        flight = bot["in_flight"]
        facts = [
            ("windows", f"{bot['windows']}: {states}"),
            ("rows archived", f"{bot['rows_archived']:,}"),
            ("covered until", bot["covered_until"] or "nothing archived yet"),
            ("archived by", ", ".join(f"{path} {n}" for path, n in sorted(bot["via"].items()))),
            ("routed to", ", ".join(f"{path} {n}" for path, n in sorted(bot["routed"].items()))),
            ("in flight", f"{flight['window']} (accepted {flight['since']})" if flight else ""),
            ("next retry", bot["next_retry_at"] or ""),
            ("last error", bot["last_error"] or ""),
        ]
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for label, value in facts:
            if value:
                grid.add_row(f"  {label}", inert(value))
        console.print(grid)
    if report["routing"]["via"]:
        console.print(inert(routing_line(report["routing"])), overflow="fold")
        console.print(report["routing"]["explained"], overflow="fold", highlight=False)
    totals = report["attachments"]
    emails = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report["emails"].items())) or "none"
    console.print(
        inert(
            f"emails: {emails}; reports: {totals['attachments']}; rows: {totals['rows_read']} "
            f"read = {totals['rows_written']} written + {totals['rows_duplicate']} duplicates + "
            f"{totals['rows_rejected']} rejected"
        )
    )
    if report["failed_messages"]:
        console.print(
            f"failed emails ({len(report['failed_messages'])}; after a fix: ingest retry --failed):"
        )
        for m in report["failed_messages"]:
            console.print(
                inert(
                    f"  {m['folder']} uid {m['uid']} {m['message_id'] or '(no Message-ID)'}, now in "
                    f"{m['now_in'] or m['folder']}: {m['reason']}"
                )
            )
    for conflict in report.get("window_conflicts", []):
        errors.print(
            inert(
                f"window {conflict['window']} ({conflict['bot_id']} {conflict['from']}..{conflict['to']}): "
                f"{len(conflict['reports'])} reports in conflict; keep the right one with "
                f"{conflict['resolve']}"
            ),
            overflow="fold",
        )
        for r in conflict["reports"]:
            errors.print(
                inert(
                    f"  {r['outcome']}: {r['filename']} sha256 {r['sha256']}: {r['reason'] or 'named no bot'}"
                ),
                overflow="fold",
            )
    conflicts = report["conflicts"]
    if conflicts["count"]:
        errors.print(
            inert(
                f"conflicts: {conflicts['count']} row(s) refused, their id archived with "
                "other content (ingest status --json lists them):"
            )
        )
        for c in conflicts["latest"][:5]:
            errors.print(
                inert(
                    f"  bot {c['bot_id']} id {c['row_id']}: new source {c['new_source'][:16]}, "
                    f"kept {c['existing_file'] or 'an earlier row'} "
                    f"(source {c['existing_source'][:16]})"
                )
            )
