"""What ``ingest verify`` found, and how it is shown: the report (problems, coverage per bot,
totals), as text for a person and as JSON (``--json``).

Example::

    print(render_text(verify_archive(storage)))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ingest.inert import inert


@dataclass
class BotCoverage:
    """What the archive holds for one bot (``messages/`` dataset)."""

    bot_id: str
    rows: int = 0
    first_day: date | None = None
    last_day: date | None = None
    days: list[date] = field(default_factory=list)  # days with at least one row, sorted
    days_without_rows: list[date] = field(default_factory=list)  # inside requested windows
    days_forgotten: list[date] = field(default_factory=list)  # emptied by an erasure or prune: no gap
    windows_not_archived: list[str] = field(default_factory=list)  # from the state store


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_archive`: problems (failures), coverage and totals."""

    root: str  # a folder or an s3:// URL
    problems: list[str] = field(default_factory=list)
    bots: dict[str, BotCoverage] = field(default_factory=dict)
    files: int = 0  # data files of the tables' snapshots
    rows: int = 0  # rows in those files (Parquet footers)
    raw_files: int = 0
    manifests: int = 0
    #: Each dataset's Delta table version verified (dataset -> version).
    tables: dict[str, int] = field(default_factory=dict)
    #: Erasures and prunes, one line each (from their records and the audit log).
    erasures: list[str] = field(default_factory=list)
    #: The audit log: its record count and the newest record's sha256 (keep it elsewhere: it
    #: shows the newest record removed or edited later).
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no integrity problem was found."""
        return not self.problems


def day_ranges(days: list[date], joiner: str = "..") -> list[str]:
    """Sorted days as compact ranges: ["2024-01-01..2024-01-03", "2024-01-05"] (the evidence
    page joins with " to ")."""
    out: list[list[date]] = []
    for day in days:
        if out and day - out[-1][1] == timedelta(days=1):
            out[-1][1] = day
        else:
            out.append([day, day])
    return [f"{a}" if a == b else f"{a}{joiner}{b}" for a, b in out]


def to_json(report: VerifyReport) -> str:
    """The report as indented JSON text (``ingest verify --json``)."""
    bots = [
        {
            "bot_id": b.bot_id,
            "rows": b.rows,
            "first_day": b.first_day,
            "last_day": b.last_day,
            "days_with_rows": len(b.days),
            "covered": day_ranges(b.days),
            "days_without_rows": b.days_without_rows,
            "days_erased_or_pruned": day_ranges(b.days_forgotten),
            "windows_not_archived": b.windows_not_archived,
        }
        for b in report.bots.values()
    ]
    totals = {
        "files": report.files,
        "rows": report.rows,
        "raw_files": report.raw_files,
        "manifests": report.manifests,
    }
    tables = {name: {"version": version} for name, version in report.tables.items()}
    return json.dumps(
        {
            "root": str(report.root),
            "ok": report.ok,
            "totals": totals,
            "tables": tables,
            "bots": bots,
            "erasures": report.erasures,
            "audit": report.audit,
            "problems": report.problems,
        },
        indent=2,
        default=str,
    )


def render_text(report: VerifyReport) -> str:
    """A few lines per bot, then the problems, for a person."""
    lines = [
        f"archive {report.root}: {report.files} data files, {report.rows} rows, "
        f"{report.raw_files} raw files, {report.manifests} manifests"
    ]
    if report.tables:
        lines.append(
            "Delta tables: " + ", ".join(f"{name} v{version}" for name, version in report.tables.items())
        )
    for bot in report.bots.values():
        span = f"{bot.first_day}..{bot.last_day}" if bot.days else "no rows"
        lines.append(f"bot {bot.bot_id}: {span}, {len(bot.days)} days with rows, {bot.rows} rows")
        if bot.days_without_rows:
            lines.append(
                f"  days without rows inside archived windows ({len(bot.days_without_rows)}): "
                + ", ".join(day_ranges(bot.days_without_rows))
            )
        if bot.days_forgotten:
            lines.append(
                f"  days emptied by an erasure or prune ({len(bot.days_forgotten)}): "
                + ", ".join(day_ranges(bot.days_forgotten))
            )
        if bot.windows_not_archived:
            lines.append("  windows not archived: " + ", ".join(bot.windows_not_archived))
    lines.extend(f"erasure: {line}" for line in report.erasures)
    if report.audit:
        lines.append(
            f"audit log: {report.audit['records']} record(s), newest {report.audit['newest']} "
            f"sha256 {report.audit['newest_sha256']}"
        )
    lines.append(
        f"verify: {len(report.problems)} problem(s)"
        if report.problems
        else "verify: OK, every file matches its manifest"
    )
    # Folder and file names come from the archive as found: shown inert (no control characters).
    return "\n".join(
        inert(line, markup=False) for line in [*lines, *(f"  - {problem}" for problem in report.problems)]
    )


__all__ = ["BotCoverage", "VerifyReport", "day_ranges", "render_text", "to_json"]
