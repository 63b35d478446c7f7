"""Reports naming no bot (issue 23). One that closed the wrong window must not push the
right one onto another bot's window (the "cascade"): with bot A's window closed by someone
else's unnamed report and bot B's window of the same dates accepted, A's own unnamed report
fits both, and is a conflict naming both, never B's report. The parts of one email are one
delivery: the second does not conflict with the first. Real parser, store and archive (the
end-to-end conflict flow is tests/e2e/test_window_conflict.py).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from ingest.archive.storage import LocalStorage
from ingest.mail.attachments import parse_email
from ingest.ops.status import window_conflicts
from ingest.pipeline.intake import archive_email
from ingest.pipeline.summary import RunSummary
from ingest.simulator import generate_messages, rows_to_csv
from ingest.state.store import Store
from tests.support.archive import read_archive
from tests.support.mail import RECIPIENT, accept_windows, email_with, report

A = "4d2a0000-0000-4000-8000-0000000000aa"
B = "4d2a0000-0000-4000-8000-0000000000bb"
THEIRS = "4d2a0000-0000-4000-8000-0000000000ff"
START, END = date(2024, 9, 1), date(2024, 9, 4)


def unnamed_report(bot: str) -> bytes:
    """A report naming no bot anywhere, sent to this account."""
    csv = rows_to_csv(generate_messages(bot, START, END))
    return email_with(
        subject="Your Certainly message report",
        recipient=RECIPIENT,
        attachments=[("message_report.csv", csv, "text/csv")],
    )


def test_an_unnamed_report_fitting_a_window_an_unnamed_report_closed_is_a_conflict_not_another_bots(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "state.sqlite")
    storage = LocalStorage(tmp_path / "archive")

    def ingest(raw: bytes) -> tuple[str, RunSummary]:
        summary = RunSummary()
        return archive_email(storage, store, parse_email(raw), summary, (RECIPIENT,)), summary

    [window_a] = accept_windows(store, report(A, START, END))
    assert ingest(unnamed_report(THEIRS))[0] == "archived"  # the wrong report closes A
    [window_b] = accept_windows(store, report(B, START, END))

    outcome, summary = ingest(unnamed_report(A))
    assert outcome == "unmatched"  # waits, as a conflict does
    conflicts = window_conflicts(store)
    assert [c["window"] for c in conflicts] == [window_a]
    assert f"it could answer any of windows {window_a}, {window_b}" in " ".join(summary.problems)
    assert store.window(window_b).state.value == "accepted"
    by_bot = read_archive(storage.root).group_by("bot_id").len()
    assert by_bot.filter(pl.col("bot_id") == B).height == 0  # nothing of A's under B
    assert by_bot["len"].sum() == len(generate_messages(THEIRS, START, END))


def test_the_parts_of_one_email_naming_no_bot_are_one_delivery_not_a_conflict(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.sqlite")
    storage = LocalStorage(tmp_path / "archive")
    [window] = accept_windows(store, report(A, START, END))
    rows = generate_messages(A, START, END)
    half = len(rows) // 2
    raw = email_with(
        subject="Your Certainly message report",
        recipient=RECIPIENT,
        attachments=[
            ("message_report_part1.csv", rows_to_csv(rows[:half]), "text/csv"),
            ("message_report_part2.csv", rows_to_csv(rows[half:]), "text/csv"),
        ],
    )
    summary = RunSummary()
    assert archive_email(storage, store, parse_email(raw), summary, (RECIPIENT,)) == "archived"
    assert summary.problems == [] and window_conflicts(store) == []
    assert store.window(window).rows_archived == len(rows)
    assert sorted(read_archive(storage.root)["id"].to_list()) == sorted(r["id"] for r in rows)
    # A later email's unnamed report for that window is still a conflict.
    assert archive_email(storage, store, parse_email(unnamed_report(THEIRS)), RunSummary(), (RECIPIENT,)) == (
        "unmatched"
    )
    assert [c["window"] for c in window_conflicts(store)] == [window]


def test_a_vendor_naming_nothing_still_closes_one_window_after_another(tmp_path: Path) -> None:
    """An unvouched closure holds back only reports that fit its own days: the next window's
    report (other days, naming no bot and no date) is still that window's."""
    store = Store.open(tmp_path / "state.sqlite")
    storage = LocalStorage(tmp_path / "archive")
    later = (date(2024, 9, 5), date(2024, 9, 8))
    for start, end in ((START, END), later):
        [window] = accept_windows(store, report(A, start, end))
        csv = rows_to_csv(generate_messages(A, start, end))
        raw = email_with(
            subject="Your report", recipient=RECIPIENT, attachments=[("export.csv", csv, "text/csv")]
        )
        assert archive_email(storage, store, parse_email(raw), RunSummary(), (RECIPIENT,)) == "archived"
        assert store.window(window).state.value == "archived"
    assert window_conflicts(store) == []
