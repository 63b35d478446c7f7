"""`ingest report --html` in a real headless browser (Debian's chromium): the page renders
(a screenshot is taken), and the days, counts and gaps its DOM shows are the archive's."""

from __future__ import annotations

import shutil
import subprocess
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from ingest.simulator import generate_messages
from ingest.simulator.data import rows_to_csv
from ingest.simulator.reports import generate_report_rows, report_to_csv
from tests.support.job import run_ingest

pytestmark = pytest.mark.integration

BOT_A, BOT_B = "bot-a", "bot-b"
MISSING = {date(2024, 1, 4), date(2024, 1, 9), date(2024, 1, 10)}


class DayCells(HTMLParser):
    """The calendar squares of each bot section: bot -> {date: (rows, gap)}, and ids' text."""

    def __init__(self) -> None:
        super().__init__()
        self.bots: dict[str, dict[str, tuple[int, bool]]] = {}
        self.bot: str | None = None
        self.texts: dict[str, str] = {}
        self._id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section" and found.get("data-bot"):
            self.bot = found["data-bot"]
            self.bots[self.bot or ""] = {}
        if tag == "rect" and found.get("class") == "day" and self.bot is not None:
            self.bots[self.bot][str(found["data-date"])] = (
                int(found["data-rows"] or 0),
                found["data-gap"] == "1",
            )
        if found.get("id"):
            self._id = found["id"]
            self.texts[self._id or ""] = ""

    def handle_data(self, data: str) -> None:
        if self._id is not None:
            self.texts[self._id] += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "div"):
            self._id = None


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed (apt-get install chromium; .ci/run installs it)"
    return found


def browser(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={cwd / 'chromium-profile'}",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def test_the_html_report_shows_the_archives_days_counts_and_gaps(workdir: Path) -> None:
    rows_a = [
        r
        for r in generate_messages(BOT_A, date(2024, 1, 1), date(2024, 1, 14))
        if date.fromisoformat(r["timestamp"][:10]) not in MISSING
    ]
    rows_b = generate_messages(BOT_B, date(2024, 1, 3), date(2024, 1, 6))
    rows_b[5]["id"] = "not-a-number"  # one row refused: a quarantined report
    (workdir / "a.csv").write_bytes(rows_to_csv(rows_a))
    (workdir / "b.csv").write_bytes(rows_to_csv(rows_b))
    (workdir / "std.csv").write_bytes(
        report_to_csv(2, generate_report_rows(2, BOT_A, date(2024, 1, 1), date(2024, 1, 5)))
    )
    env = {
        "INGEST_OUTPUT__ROOT": str(workdir / "archive"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
    }
    for args in (
        ("import", "a.csv", "--bot", BOT_A),
        ("import", "b.csv", "--bot", BOT_B),
        ("import", "std.csv", "--bot", BOT_A, "--report-type", "2"),
        ("backfill", "--bot", BOT_A, "--from", "2024-02-01", "--to", "2024-02-10"),
        ("verify",),
    ):
        done = run_ingest(*args, env=env, cwd=workdir)
        assert done.returncode in (0, 1), done.stderr  # the import with a refused row says so (exit 1)
    page = workdir / "evidence.html"

    made = run_ingest("report", "--html", str(page), env=env, cwd=workdir)

    assert made.returncode == 0, made.stderr
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    shot = browser("--screenshot=evidence.png", "--window-size=1280,900", page.as_uri(), cwd=workdir)
    assert (workdir / "evidence.png").is_file(), shot.stderr
    assert (workdir / "evidence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (workdir / "evidence.png").stat().st_size > 10_000  # a page was painted, not a blank
    dom = browser("--dump-dom", page.as_uri(), cwd=workdir)
    assert dom.returncode == 0, dom.stderr
    cells = DayCells()
    cells.feed(dom.stdout)
    with duckdb.connect() as con:
        counted = con.execute(
            f"SELECT bot_id, strftime(date, '%Y-%m-%d'), count(*) FROM read_parquet("
            f"'{workdir}/archive/messages/bot_id=*/*/*.parquet', hive_partitioning=true) GROUP BY ALL"
        ).fetchall()
    archive = {(b, d): n for b, d, n in counted}
    shown = {(bot, day): rows for bot, days in cells.bots.items() for day, (rows, _) in days.items() if rows}
    assert shown == archive
    gaps = {bot: {day for day, (_, gap) in days.items() if gap} for bot, days in cells.bots.items()}
    assert gaps == {BOT_A: {d.isoformat() for d in MISSING}, BOT_B: set()}
    assert all(cells.bots[BOT_A][d.isoformat()][0] == 0 for d in MISSING)
    assert "OK" in cells.texts["verify-state"]
    assert cells.texts["total-gap-days"].startswith("3")
    assert cells.texts["total-quarantined-reports"].startswith("1")
    assert cells.texts["total-message-rows"].startswith(f"{sum(archive.values()):,}")
