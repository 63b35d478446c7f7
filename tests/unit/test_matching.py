"""Strict matching of a report to its export window, rule by rule, on a real state store.

The end-to-end scenarios (Dovecot, the simulator, the CLI) are in tests/e2e/test_trust.py;
these pin each rule of ingest.pipeline.matching so that a change to one is seen at once.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from ingest.mail.attachments import ParsedEmail, ReportFile
from ingest.pipeline.matching import CLOCK_SKEW, Evidence, match_window
from ingest.simulator import report_filename
from ingest.state.store import Store
from ingest.state.windows import Window, WindowState

S = WindowState
A = "3f2b8c1e-0000-4000-8000-00000000aaaa"
B = "3f2b8c1e-0000-4000-8000-00000000bbbb"
STRANGER = "3f2b8c1e-0000-4000-8000-00000000eeee"  # no window of ours
JAN = (date(2024, 1, 1), date(2024, 1, 15))
FEB = (date(2024, 2, 1), date(2024, 2, 15))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "state.sqlite")


def accept(
    store: Store, bot: str, span: tuple[date, date], report_id: int = 1, at: float | None = None
) -> Window:
    store.plan_window(bot, report_id, *span)
    window = next(
        w for w in store.windows(bot_id=bot) if (w.from_date, w.to_date) == span and w.report_id == report_id
    )
    store.transition(window.id, S.SUBMITTING, submitted_at=at or time.time())
    return store.transition(window.id, S.ACCEPTED, accepted_at=at or time.time())


def email(subject: str = "", body: str = "", files: int = 1, received: float | None = None) -> ParsedEmail:
    parsed = ParsedEmail(
        "<m@x>", "reports@certainly.example", None, subject, [], body_text=body, received_at=received
    )
    parsed.reports = [ReportFile(f"f{i}.csv", b"") for i in range(files)]
    return parsed


def match(store: Store, filename: str, parsed: ParsedEmail):  # type: ignore[no-untyped-def]
    return match_window(store, Evidence.of(filename, parsed, {w.bot_id for w in store.windows()}))


def test_the_simulators_names_match_their_window_and_no_other(store: Store) -> None:
    a, b = accept(store, A, JAN), accept(store, B, JAN)
    for window, bot in ((a, A), (b, B)):
        found = match(
            store,
            report_filename(bot, *JAN),
            email(
                f"Certainly message report {bot} {JAN[0]} - {JAN[1]}",
                f"Your message report for bot {bot} from {JAN[0]} to {JAN[1]} is attached.",
            ),
        )
        assert found.window == window and found.named


def test_no_fallback_across_bots(store: Store) -> None:
    accept(store, A, JAN)
    found = match(store, report_filename(STRANGER, *JAN), email())
    assert found.window is None and STRANGER in found.reason


def test_a_stated_range_that_differs_is_not_the_windows(store: Store) -> None:
    accept(store, A, JAN)
    assert match(store, report_filename(A, JAN[0], date(2024, 1, 14)), email()).window is None
    assert match(store, "export.csv", email(f"report {A} {JAN[0]} - 2024-01-30")).window is None


def test_the_report_type_must_agree(store: Store) -> None:
    accept(store, A, JAN, report_id=1)
    found = match(store, f"standard_report_{A}_{JAN[0]}_{JAN[1]}.csv", email())
    assert found.window is None


def test_mail_received_before_the_export_was_requested_is_not_its_report(store: Store) -> None:
    now = time.time()
    window = accept(store, A, JAN, at=now)
    early = email(received=now - CLOCK_SKEW - 60)
    assert match(store, report_filename(A, *JAN), early).window is None
    assert "before window" in match(store, "export.csv", early).reason
    within_skew = email(received=now - CLOCK_SKEW + 60)
    assert match(store, report_filename(A, *JAN), within_skew).window == window


def test_a_report_naming_no_bot_matches_only_the_one_accepted_window(store: Store) -> None:
    a = accept(store, A, JAN)
    assert match(store, "export.csv", email("Your Certainly message report")).window == a
    assert not match(store, "export.csv", email()).named
    accept(store, B, FEB)
    found = match(store, "export.csv", email("Your Certainly message report"))
    assert found.window is None and "nothing tells which" in found.reason
    # Dates alone narrow it down to one window: that one.
    assert match(store, "export.csv", email(f"Report {FEB[0]} - {FEB[1]}")).window.bot_id == B  # type: ignore[union-attr]


def test_an_unnamed_report_never_matches_a_window_no_longer_accepted(store: Store) -> None:
    a = accept(store, A, JAN)
    store.transition(a.id, S.DELIVERED)
    store.transition(a.id, S.ARCHIVED)
    assert match(store, "export.csv", email()).window is None
    # Named and dated, a late copy still finds its (archived) window: sha256 dedup decides.
    assert match(store, report_filename(A, *JAN), email()).window == store.window(a.id)


def test_an_email_with_several_reports_may_name_each_bot(store: Store) -> None:
    a, b = accept(store, A, JAN), accept(store, B, JAN)
    subject = f"Reports {A} and {B} {JAN[0]} - {JAN[1]}"
    assert match(store, report_filename(A, *JAN), email(subject, files=2)).window == a
    assert match(store, report_filename(B, *JAN), email(subject, files=2)).window == b
    # One report: a subject naming two bots names the wrong one too.
    assert match(store, report_filename(A, *JAN), email(subject, files=1)).window is None


def test_a_short_bot_id_that_is_a_word_of_the_body_names_nothing(store: Store) -> None:
    window = accept(store, "bot-7", JAN)
    accept(store, "a", FEB)
    body = f"Your message report for bot bot-7 from {JAN[0]} to {JAN[1]} is attached as a CSV file."
    assert match(store, report_filename("bot-7", *JAN), email(body=body)).window == window
