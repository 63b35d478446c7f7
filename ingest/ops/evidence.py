"""``ingest report --html``: one self-contained HTML page a person can read without a command.

No script, no network: inline CSS and SVG only. Per bot: a calendar of rows per day
(darker is more; a red outlined square is a *gap*: a day without rows between the bot's
first and last archived day, or inside a window archived as requested), the export windows
by state, and the other datasets' rows. Then the last ``ingest verify`` (outcome, version,
time, kept in the state store), conflicts, quarantined reports, failed emails, totals,
and how to check all of it. Every day square carries ``data-date``, ``data-rows`` and
``data-gap``, so the figures can be checked against the archive by a machine as well.

The archive is read through :mod:`ingest.export.source` (the same seam as exports).

Example::

    html = render_html(collect_evidence(storage, store, version="0.1.0"))
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape
from typing import Any

import polars as pl

from ingest.archive.layout import QUARANTINE, is_reasons
from ingest.archive.storage import Storage
from ingest.errors import RecordTooNew
from ingest.export.source import ALL_DATASETS, Snapshot, open_snapshot
from ingest.ops.status import failed_messages, window_conflicts
from ingest.ops.verify_report import day_ranges
from ingest.pipeline.route import ROUTING_EXPLAINED
from ingest.records import QuarantineReasons, load
from ingest.report_types import MESSAGE_REPORT_ID, MESSAGES, dataset_of
from ingest.state.store import Store
from ingest.state.windows import WindowState


@dataclass
class BotEvidence:
    """What the page shows of one bot."""

    bot_id: str
    days: dict[date, int] = field(default_factory=dict)  # Message Data rows per UTC day
    gaps: list[date] = field(default_factory=list)
    requested: set[date] = field(default_factory=set)  # days inside archived windows
    windows: Counter[str] = field(default_factory=Counter)  # "<dataset> <state>" -> count
    open_windows: list[str] = field(default_factory=list)
    datasets: dict[str, tuple[int, int]] = field(default_factory=dict)  # dataset -> (rows, days)
    #: Days an erasure or prune emptied: shown as such, never as gaps.
    forgotten: list[date] = field(default_factory=list)
    #: Reports archived per path ("GET", "email", "import"), from their manifests.
    paths: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return sum(self.days.values())


@dataclass
class Evidence:
    """Everything :func:`render_html` shows."""

    generated_at: float
    version: str
    archive: dict[str, Any]
    bots: dict[str, BotEvidence]
    verify: dict[str, Any] | None
    conflicts: tuple[int, list[dict[str, Any]]]
    quarantined: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    archive_problems: list[str]
    window_conflicts: list[dict[str, Any]] = field(default_factory=list)


def collect_evidence(storage: Storage, store: Store | None, *, version: str) -> Evidence:
    """Read the archive (one snapshot) and the state store for the page."""
    snap = open_snapshot(storage)
    bots: dict[str, BotEvidence] = {}

    def bot(bot_id: str) -> BotEvidence:
        return bots.setdefault(bot_id, BotEvidence(bot_id))

    for dataset in ALL_DATASETS:
        frame = snap.scan(dataset)
        if frame is None:
            continue
        counted = frame.group_by("bot_id", "date").len().collect(engine="streaming")
        for bot_id, day, rows in counted.iter_rows():
            if dataset == MESSAGES:
                bot(bot_id).days[day] = rows
        for bot_id, rows, days in (
            counted.group_by("bot_id").agg(pl.col("len").sum(), pl.len().alias("d")).iter_rows()
        ):
            bot(bot_id).datasets[dataset] = (int(rows), int(days))
    _windows(snap, store, bot)
    for bot_id, days in snap.forgotten.items():
        bot(bot_id).forgotten = sorted(days - set(bot(bot_id).days))
    for evidence in bots.values():
        _gaps(evidence)
    return Evidence(
        generated_at=time.time(),
        version=version,
        archive=snap.version,
        bots=dict(sorted(bots.items())),
        verify=store.last_verify() if store else None,
        conflicts=store.conflicts(limit=50) if store else (0, []),
        quarantined=_quarantined(storage, snap),
        failed=failed_messages(store) if store else [],
        archive_problems=snap.problems,
        window_conflicts=window_conflicts(store) if store else [],
    )


def _windows(snap: Snapshot, store: Store | None, bot: Callable[[str], BotEvidence]) -> None:
    """Requested days (archived windows: the store's, and those the manifests name)."""
    for source in snap.sources.values():
        bot(source.bot_id).paths[source.kind] += 1
        asked = source.window or {}
        if source.dataset == MESSAGES and asked.get("from") and asked.get("to"):
            bot(source.bot_id).requested.update(
                _span(date.fromisoformat(asked["from"]), date.fromisoformat(asked["to"]))
            )
    if store is None:
        return
    for window in store.windows():
        evidence = bot(window.bot_id)
        evidence.windows[f"{dataset_of(window.report_id)} {window.state.value}"] += 1
        if window.report_id == MESSAGE_REPORT_ID and window.state is WindowState.ARCHIVED:
            evidence.requested.update(_span(window.from_date, window.to_date))
        elif window.state not in (WindowState.ARCHIVED, WindowState.SPLIT):
            evidence.open_windows.append(
                f"{dataset_of(window.report_id)} {window.from_date}..{window.to_date}: "
                f"{window.state.value}" + (f" ({window.last_error})" if window.last_error else "")
            )


def _span(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _gaps(evidence: BotEvidence) -> None:
    """Days without rows between the first and last day with rows, or inside requested windows,
    that no erasure or prune emptied."""
    covered = set(evidence.days)
    inside = set(_span(min(covered), max(covered))) if covered else set()
    evidence.gaps = sorted((inside | evidence.requested) - covered - set(evidence.forgotten))


def _quarantined(storage: Storage, snap: Snapshot) -> list[dict[str, Any]]:
    """Each quarantine folder: the source, its bot (from its manifest or provenance) and reasons."""
    found = []
    for obj in storage.objects(f"{QUARANTINE}/"):
        if not is_reasons(obj.key):
            continue
        sha = obj.key.split("/")[1]
        try:
            reasons = load(QuarantineReasons, storage.read_bytes(obj.key), obj.key)
        except (OSError, ValueError, RecordTooNew):  # verify names it; the page shows the folder
            reasons = QuarantineReasons()
        record = snap.sources.get(sha)
        window_bot = reasons.window.bot_id if reasons.window is not None else None
        per_row = ", ".join(f"{k} ({v} rows)" for k, v in sorted((reasons.reasons or {}).items()))
        found.append(
            {
                "sha256": sha,
                "bot_id": record.bot_id if record else window_bot or "?",
                "whole_file": reasons.reason is not None,
                "reason": reasons.reason or per_row or "see reason.json",
            }
        )
    return found


# -- rendering --------------------------------------------------------------------------------------

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;margin:0;
background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:17px;margin:20px 0 6px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:14px 18px;margin:12px 0}
.ok{color:#116329;font-weight:600}.bad{color:#b42318;font-weight:600}.muted{color:#57606a}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #d0d7de;padding:4px 10px;text-align:left}
th{background:#f0f2f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.totals{display:flex;gap:12px;flex-wrap:wrap}.totals div{background:#fff;border:1px solid #d0d7de;
border-radius:8px;padding:10px 16px;min-width:120px}.totals b{display:block;font-size:22px}
.cal{overflow-x:auto}.legend span{display:inline-block;width:12px;height:12px;margin:0 5px -2px 14px;
border-radius:2px}code{background:#eef1f4;padding:1px 4px;border-radius:4px}
"""
SHADES = ("#c6e48b", "#7bc96f", "#239a3b", "#196127")
NO_ROWS, GAP = "#ebedf0", "#ffd8d3"


def render_html(evidence: Evidence) -> str:
    """The whole page."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(evidence.generated_at))
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        "<title>Certainly archive: evidence report</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>Certainly chatbot archive: evidence report</h1>",
        f"<p class=muted>Made {escape(when)} by certainly-ingest {escape(evidence.version)} "
        "from the archive at "
        f"<code>{escape(str(evidence.archive.get('root')))}</code>.</p>",
        _totals(evidence),
        f"<h2>Routing</h2><p id=routing>{escape(ROUTING_EXPLAINED)} Each report's manifest names "
        "its path, its request (the window asked for; for a GET the query sent) and the sha256 "
        "of the answer or attachment it came from; <code>ingest verify</code> re-hashes them.</p>",
        _verify(evidence),
    ]
    for bot in evidence.bots.values():
        parts.append(_bot(bot))
    parts += [
        _window_conflicts(evidence),
        _conflicts(evidence),
        _quarantine(evidence),
        _failed(evidence),
        _how_to_check(evidence),
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _totals(evidence: Evidence) -> str:
    rows = sum(b.rows for b in evidence.bots.values())
    other = sum(r for b in evidence.bots.values() for d, (r, _) in b.datasets.items() if d != MESSAGES)
    gaps = sum(len(b.gaps) for b in evidence.bots.values())
    boxes = [
        ("bots", len(evidence.bots)),
        ("message rows", rows),
        ("other report rows", other),
        ("days with messages", sum(len(b.days) for b in evidence.bots.values())),
        ("gap days", gaps),
        ("data files", evidence.archive.get("files", 0)),
        ("conflicts", evidence.conflicts[0]),
        ("quarantined reports", len(evidence.quarantined)),
        ("failed emails", len(evidence.failed)),
    ]
    inner = "".join(
        f"<div id='total-{escape(label.replace(' ', '-'))}'><b>{value:,}</b>{escape(label)}</div>"
        for label, value in boxes
    )
    return f"<h2>Totals</h2><div class=totals>{inner}</div>"


def _verify(evidence: Evidence) -> str:
    found = evidence.verify
    if found is None:
        body = (
            "<p class=bad id=verify-state>Never verified.</p><p>Run <code>ingest verify</code>: it re-hashes "
            "every file against the archive's records; its outcome then shows here.</p>"
        )
    else:
        at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(found["at"]))
        state = (
            "<span class=ok>OK: every file matches its record</span>"
            if found["ok"]
            else f"<span class=bad>{found['problems']} problem(s)</span>"
        )
        body = (
            f"<p id=verify-state>{state}</p><p>Last run {escape(at)} by certainly-ingest "
            f"{escape(found['version'])}, over {found['files']:,} data files and {found['rows']:,} rows.</p>"
        )
        if found["problem_list"]:
            body += "<ul>" + "".join(f"<li>{escape(p)}</li>" for p in found["problem_list"]) + "</ul>"
    if evidence.archive_problems:
        body += (
            "<p class=bad>Records that could not be read:</p><ul>"
            + "".join(f"<li>{escape(p)}</li>" for p in evidence.archive_problems)
            + "</ul>"
        )
    return f"<h2>Integrity (ingest verify)</h2><div class=card>{body}</div>"


def _bot(bot: BotEvidence) -> str:
    title = escape(bot.bot_id)
    out = [f"<section class=bot data-bot='{title}'><h2>Bot {title}</h2><div class=card>"]
    if bot.days:
        first, last = min(bot.days), max(bot.days)
        out.append(
            f"<p><b>{bot.rows:,}</b> message rows on <b>{len(bot.days)}</b> days, {first} to {last}; "
            f"<b class='{'bad' if bot.gaps else 'ok'}'>{len(bot.gaps)}</b> gap day(s).</p>"
        )
    else:
        out.append("<p>No message rows archived.</p>")
    if bot.days or bot.gaps or bot.forgotten:
        out.append(f"<div class=cal>{calendar_svg(bot)}</div>")
        out.append(
            f"<p class=legend><span style='background:{NO_ROWS}'></span>no rows"
            f"<span style='background:{GAP};outline:2px solid #b42318'></span>gap (no rows, expected)"
            f"<span style='background:{SHADES[0]}'></span>few"
            + "".join(f"<span style='background:{c}'></span>" for c in SHADES[1:])
            + f"many rows per day (darkest: {max(bot.days.values(), default=0):,})</p>"
        )
    if bot.gaps:
        out.append("<p>Gap days: <span class=gaps>" + ", ".join(day_ranges(bot.gaps, " to ")) + "</span></p>")
    if bot.forgotten:
        out.append(
            "<p>Days emptied by an erasure or prune (recorded in the audit log; not gaps): "
            "<span class=forgotten>" + ", ".join(day_ranges(bot.forgotten, " to ")) + "</span></p>"
        )
    if bot.windows:
        rows = "".join(
            f"<tr><td>{escape(k)}</td><td class=n>{v}</td></tr>" for k, v in sorted(bot.windows.items())
        )
        out.append(
            f"<h3>Export windows</h3><table><tr><th>dataset and state</th><th>windows</th></tr>{rows}</table>"
        )
    if bot.paths:
        out.append(
            "<p class=paths>Reports archived by path: "
            + escape(", ".join(f"{path} {n}" for path, n in sorted(bot.paths.items())))
            + "</p>"
        )
    if bot.open_windows:
        out.append(
            "<p>Not archived:</p><ul>" + "".join(f"<li>{escape(w)}</li>" for w in bot.open_windows) + "</ul>"
        )
    if bot.datasets:
        rows = "".join(
            f"<tr><td>{escape(d)}</td><td class=n>{r:,}</td><td class=n>{n}</td></tr>"
            for d, (r, n) in sorted(bot.datasets.items())
        )
        out.append(
            f"<h3>Datasets</h3><table><tr><th>dataset</th><th>rows</th><th>days</th></tr>{rows}</table>"
        )
    out.append("</div></section>")
    return "".join(out)


def calendar_svg(bot: BotEvidence) -> str:
    """A week-column calendar (Monday on top) from the first to the last day shown."""
    shown = set(bot.days) | set(bot.gaps) | set(bot.forgotten)
    first, last = min(shown), max(shown)
    start = first - timedelta(days=first.weekday())
    weeks = (last - start).days // 7 + 1
    cell, left, top = 20, 34, 22
    gap_set, most = set(bot.gaps), max(bot.days.values(), default=0)
    width, height = left + max(weeks * cell, 80) + 10, top + 7 * cell + 4
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role=img "
        f"aria-label='rows per day for {escape(bot.bot_id)}'>"
    ]
    for row, name in ((0, "Mon"), (2, "Wed"), (4, "Fri")):
        out.append(f"<text x='0' y='{top + row * cell + 14}' font-size='11' fill='#57606a'>{name}</text>")
    month, label_x = None, -100
    for week in range(weeks):
        monday = start + timedelta(weeks=week)
        if monday.month != month and left + week * cell - label_x >= 70:  # labels never overlap
            month, label_x = monday.month, left + week * cell
            out.append(f"<text x='{label_x}' y='14' font-size='11' fill='#57606a'>{monday:%b %Y}</text>")
        for weekday in range(7):
            day = monday + timedelta(days=weekday)
            if day < first or day > last:
                continue
            rows = bot.days.get(day, 0)
            is_gap = day in gap_set
            colour = (
                GAP if is_gap else NO_ROWS if not rows else SHADES[min(3, (rows * 4 - 1) // max(most, 1))]
            )
            outline = " stroke='#b42318' stroke-width='2'" if is_gap else ""
            label = (
                f"{day}: {rows:,} rows"
                + (" (gap)" if is_gap else "")
                + (" (erased or pruned)" if day in bot.forgotten else "")
            )
            out.append(
                f"<rect class=day data-date='{day}' data-rows='{rows}' data-gap='{int(is_gap)}' "
                f"x='{left + week * cell}' y='{top + weekday * cell}' width='{cell - 3}' height='{cell - 3}' "
                f"rx='2' fill='{colour}'{outline}><title>{label}</title></rect>"
            )
    out.append("</svg>")
    return "".join(out)


def _conflicts(evidence: Evidence) -> str:
    count, latest = evidence.conflicts
    if not count:
        return "<h2>Conflicts</h2><p class=ok>None: no row arrived with an archived id and other content.</p>"
    rows = "".join(
        f"<tr><td>{escape(c['bot_id'])}</td><td class=n>{c['row_id']}</td>"
        f"<td>{escape(c['new_source'][:16])}</td>"
        f"<td>{escape(c['existing_file'] or '')}</td><td>{escape(c['reason'])}</td></tr>"
        for c in latest
    )
    return (
        f"<h2>Conflicts</h2><p class=bad>{count} row(s) refused: their id is archived with other "
        "content. A person decides which is right (the archived row was kept).</p><table><tr><th>bot</th>"
        f"<th>row id</th><th>new source</th><th>kept in</th><th>reason</th></tr>{rows}</table>"
    )


def _window_conflicts(evidence: Evidence) -> str:
    if not evidence.window_conflicts:
        return "<h2>Reports in conflict</h2><p class=ok>None: no window has two reports to choose from.</p>"
    rows = "".join(
        f"<tr><td class=n>{c['window']}</td><td>{escape(c['bot_id'])}</td>"
        f"<td>{escape(c['from'])} to {escape(c['to'])}</td><td>{escape(r['outcome'])}</td>"
        f"<td>{escape(str(r['filename']))}</td><td><code>{escape(str(r['sha256']))}</code></td>"
        f"<td>{escape(str(r['reason'] or 'named no bot'))}</td></tr>"
        for c in evidence.window_conflicts
        for r in c["reports"]
    )
    return (
        f"<h2>Reports in conflict</h2><p class=bad>{len(evidence.window_conflicts)} window(s) closed by a "
        "report that named no bot have another report: a person decides which is right with "
        "<code>ingest resolve --window N --keep SHA256 --reason TEXT --apply</code>.</p><table><tr>"
        "<th>window</th><th>bot</th><th>days</th><th>state</th><th>report</th><th>sha256</th>"
        f"<th>why</th></tr>{rows}</table>"
    )


def _quarantine(evidence: Evidence) -> str:
    if not evidence.quarantined:
        return "<h2>Quarantined reports</h2><p class=ok>None.</p>"
    rows = "".join(
        f"<tr><td>{escape(q['bot_id'])}</td><td><code>{escape(q['sha256'][:16])}</code></td>"
        f"<td>{'whole file' if q['whole_file'] else 'some rows'}</td><td>{escape(q['reason'])}</td></tr>"
        for q in evidence.quarantined
    )
    return (
        "<h2>Quarantined reports</h2><p>Kept aside under <code>quarantine/&lt;sha256&gt;/</code> with their "
        "reasons; nothing in them is in the rows above.</p><table><tr><th>bot</th><th>report (sha256)</th>"
        f"<th>what</th><th>reason</th></tr>{rows}</table>"
    )


def _failed(evidence: Evidence) -> str:
    if not evidence.failed:
        return "<h2>Failed emails</h2><p class=ok>None waiting for a person.</p>"
    rows = "".join(
        f"<tr><td>{escape(str(m['message_id'] or '(none)'))}</td>"
        f"<td>{escape(str(m['now_in'] or m['folder']))}</td>"
        f"<td>{escape(str(m['reason']))}</td><td>{escape(str(m['failed_at']))}</td></tr>"
        for m in evidence.failed
    )
    return (
        "<h2>Failed emails</h2><p>Each waits for a fix, then <code>ingest retry --failed</code>.</p>"
        f"<table><tr><th>Message-ID</th><th>now in</th><th>reason</th><th>since</th></tr>{rows}</table>"
    )


def _how_to_check(evidence: Evidence) -> str:
    version = evidence.archive
    return (
        "<h2>How to check this report</h2><div class=card><ol>"
        "<li>The figures come from the archive's own records: every data file is listed, with its sha256 and "
        "row count, in <code>manifests/</code>. This page was made from "
        f"{version.get('files', 0):,} listed data files in {version.get('records', 0):,} records "
        f"(listing sha256 <code>{escape(str(version.get('listing_sha256', '')))}</code>).</li>"
        "<li><code>ingest verify</code> re-hashes every file against those records and checks every row is "
        "once in its day; its last outcome is shown above.</li>"
        "<li>Count the rows per day yourself, e.g. with DuckDB: <code>SELECT bot_id, date, count(*) FROM "
        "read_parquet('ARCHIVE/messages/bot_id=*/*/*.parquet', hive_partitioning=true) GROUP BY ALL</code> "
        "(after <code>ingest compact</code> the records, not a glob, say which files count).</li>"
        "<li>A gap is a day without rows between a bot's first and last day, or inside an export window "
        "archived as requested. A quiet day can be a real gap or no conversations: the export windows say "
        "what was asked for.</li>"
        "<li>Exports for a third party (<code>ingest export</code>) are signed bundles; "
        "<code>ingest verify-export</code> or <code>sha256sum -c SHA256SUMS</code> and OpenSSL check them "
        "(docs/COMPLIANCE.md).</li></ol></div>"
    )
