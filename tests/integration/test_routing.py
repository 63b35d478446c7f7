"""Routing (INGEST_REQUESTER__VIA, issue 27) against the simulator and an embedded IMAP
server over loopback: GET first, only heavy days by email, one archive whatever the path."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from ingest import crashpoints
from ingest.cli import run_exit_code
from ingest.ops.status import collect_status
from ingest.pipeline.passes import run_once, run_until_done
from ingest.request.pacing import PACING_NOTE
from ingest.request.requester import plan_backfill
from ingest.settings import Settings
from ingest.simulator import CertainlySimulator, EmbeddedImap
from ingest.simulator.data import rows_to_json
from ingest.simulator.faults import Fault
from ingest.state.store import Store
from ingest.state.windows import SpanState, WindowState
from tests.support.archive import assert_archive_matches
from tests.support.job import job_settings, run_ingest

pytestmark = pytest.mark.integration

S = WindowState
LIGHT = "7a1c0d2e-0000-4000-8000-00000000a001"
HEAVY = "7a1c0d2e-0000-4000-8000-00000000a002"
START, END = date(2024, 3, 1), date(2024, 4, 9)
HEAVY_DAYS = {HEAVY: {date(2024, 3, 10), date(2024, 3, 11), date(2024, 3, 12), date(2024, 3, 20)}}


#: The simulator of this module (tests/integration/conftest.py): heavy days over a GET page.
SIMULATOR = {"max_per_day": 30, "heavy_days": HEAVY_DAYS}


def settings_for(sim: CertainlySimulator, imap: EmbeddedImap, workdir: Path, **requester: Any) -> Settings:
    return job_settings(
        sim,
        imap,
        workdir,
        requester={
            "poll_interval": 0.05,
            "retry_initial": 0.05,
            "retry_max": 0.2,
            "get_rate": 50,
            **requester,
        },
    )


def truth(sim: CertainlySimulator, bots: list[str], start: date, end: date) -> dict[tuple[str, int], Any]:
    return {(bot, row["id"]): row for bot in bots for row in sim.expected_rows(bot, start, end)}


def gets(sim: CertainlySimulator) -> list[tuple[str, str, str]]:
    return [
        (r.params["botId"], r.params["fromDate"], r.params["toDate"])
        for r in sim.requests
        if r.method == "GET"
    ]


def test_auto_sends_only_the_heavy_days_by_email(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    settings = settings_for(sim, imap, tmp_path, via="auto")
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT, HEAVY], START, END, window_days=30)
        summary = run_until_done(settings, store, timeout=60)
        windows = store.windows()

    assert not summary.problems, summary.problems
    assert {w.state for w in windows} == {S.ARCHIVED}
    # Contiguous heavy days are one POST window; nothing else went by email.
    exports = sorted((e.bot_id, e.from_date, e.to_date) for e in sim.exports)
    assert exports == [
        (HEAVY, date(2024, 3, 10), date(2024, 3, 12)),
        (HEAVY, date(2024, 3, 20), date(2024, 3, 20)),
    ]
    by_path = sorted((w.via, w.bot_id, w.from_date, w.to_date) for w in windows)
    assert [v for v, *_ in by_path].count("email") == 2
    assert [v for v, *_ in by_path].count("get") == 4
    # Every GET asked for at most 15 days.
    assert all((date.fromisoformat(b) - date.fromisoformat(a)).days < 15 for _, a, b in gets(sim))
    assert summary.emails_archived == 2 and summary.heavy_days == 4
    assert_archive_matches(Path(settings.output.root), truth(sim, [LIGHT, HEAVY], START, END))


def test_via_get_fails_a_window_it_cannot_hold_and_says_why(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    settings = settings_for(sim, imap, tmp_path, via="get")
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT, HEAVY], START, date(2024, 3, 30), window_days=30)
        summary = run_until_done(settings, store, timeout=60)
        windows = {w.bot_id: w for w in store.windows()}

    assert sim.exports == []  # never a POST
    assert summary.needs_attention and summary.failed == 1
    assert windows[LIGHT].state is S.ARCHIVED and windows[LIGHT].via == "get"
    failed = windows[HEAVY]
    assert failed.state is S.FAILED
    assert failed.last_error is not None
    assert "2024-03-10..2024-03-12, 2024-03-20" in failed.last_error
    assert "INGEST_REQUESTER__VIA=auto" in failed.last_error


def test_email_routing_is_todays_post_only_behaviour(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    settings = settings_for(sim, imap, tmp_path, via="email")
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT], START, date(2024, 3, 30), window_days=15)
        run_until_done(settings, store, timeout=60)
        assert {(w.state, w.via) for w in store.windows()} == {(S.ARCHIVED, "email")}
    assert gets(sim) == []
    assert len(sim.exports) == 2


def test_one_day_by_both_paths_is_duplicates_not_conflicts(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    day = date(2024, 3, 5)
    with Store.open(tmp_path / "state.sqlite") as store:
        plan_backfill(store, [LIGHT], day, day + timedelta(days=1), window_days=2)
        by_get = run_until_done(settings_for(sim, imap, tmp_path, via="auto"), store, timeout=30)
        store.plan_window(LIGHT, 1, day, day, via="email")  # the same day again, emailed
        by_email = run_until_done(settings_for(sim, imap, tmp_path, via="auto"), store, timeout=30)
        conflicts, _ = store.conflicts()

    day_rows = len(sim.expected_rows(LIGHT, day, day))
    assert by_get.rows_written == len(sim.expected_rows(LIGHT, day, day + timedelta(days=1)))
    assert by_email.emails_archived == 1
    assert (by_email.rows_written, by_email.rows_duplicate) == (0, day_rows)
    assert conflicts == 0
    assert_archive_matches(tmp_path / "archive", truth(sim, [LIGHT], day, day + timedelta(days=1)))


class Killed(Exception):
    """Stands for SIGKILL in-process (as the model-based test does)."""


def test_a_killed_run_resumes_a_half_done_get_window_without_refetching(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(sim, imap, tmp_path, via="auto")

    def die() -> None:
        raise Killed

    monkeypatch.setattr(crashpoints, "_die", die)
    monkeypatch.setenv("INGEST_CRASH_AT", "after_get_span")
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT], START, date(2024, 3, 30), window_days=30)
        with pytest.raises(Killed):
            run_until_done(settings, store, timeout=30)
        (window,) = store.windows()
        assert (window.state, window.via) == (S.PLANNED, "get")  # the ledger: being fetched by GET
        assert [s.state for s in store.spans(window.id)] == [SpanState.DONE, SpanState.PENDING]
        monkeypatch.delenv("INGEST_CRASH_AT")
        run_until_done(settings, store, timeout=30)
        assert store.window(window.id).state is S.ARCHIVED

    assert gets(sim) == [
        (LIGHT, "2024-03-01", "2024-03-15"),
        (LIGHT, "2024-03-16", "2024-03-30"),
    ]
    assert_archive_matches(Path(settings.output.root), truth(sim, [LIGHT], START, date(2024, 3, 30)))


def test_429_retry_after_as_seconds_and_as_a_date_is_honoured(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    settings = settings_for(sim, imap, tmp_path, via="auto")
    # An HTTP date has whole seconds: 4 s ahead, truncated, is at least 3 s ahead.
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=4), usegmt=True)
    sim.script_get(
        Fault(status=429, body={"detail": "Request was throttled."}, headers={"Retry-After": "1"}),
        Fault(status=429, body={"detail": "Request was throttled."}, headers={"Retry-After": later}),
    )
    started = time.monotonic()
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT], START, date(2024, 3, 10), window_days=30)
        summary = run_until_done(settings, store, timeout=30)
        pacing = store.note(PACING_NOTE)
        assert store.windows()[0].state is S.ARCHIVED
    took = time.monotonic() - started

    assert not summary.problems
    # 1 s, then until the date (3 to 4 s after the start).
    assert took >= 3.0, took
    assert pacing is not None and pacing["throttled"] == 2
    assert len(gets(sim)) == 3


def test_switching_auto_to_email_mid_window_finishes_by_email_without_conflicts(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A careless operator: a GET window half done, then INGEST_REQUESTER__VIA=email. The
    window goes by POST whole; the days GET brought are duplicates, never conflicts."""

    def die() -> None:
        raise Killed

    monkeypatch.setattr(crashpoints, "_die", die)
    monkeypatch.setenv("INGEST_CRASH_AT", "after_get_span")
    with Store.open(tmp_path / "state.sqlite") as store:
        plan_backfill(store, [LIGHT], START, date(2024, 3, 30), window_days=30)
        with pytest.raises(Killed):
            run_until_done(settings_for(sim, imap, tmp_path, via="auto"), store, timeout=30)
        monkeypatch.delenv("INGEST_CRASH_AT")
        summary = run_until_done(settings_for(sim, imap, tmp_path, via="email"), store, timeout=30)
        (window,) = store.windows()
        spans = [s.state for s in store.spans(window.id)]
        conflicts, _ = store.conflicts()

    assert (window.state, window.via) == (S.ARCHIVED, "email")
    # Its rows counted whole (GET's span and the email's rest), its GET leftover superseded.
    assert window.rows_archived == len(sim.expected_rows(LIGHT, START, date(2024, 3, 30)))
    assert spans == [SpanState.DONE, SpanState.SUPERSEDED]
    assert len(sim.exports) == 1 and summary.rows_duplicate == len(
        sim.expected_rows(LIGHT, START, date(2024, 3, 15))
    )
    assert conflicts == 0
    assert_archive_matches(tmp_path / "archive", truth(sim, [LIGHT], START, date(2024, 3, 30)))


@pytest.mark.parametrize(
    ("name", "value"), [("INGEST_REQUESTER__VIA", "fastest"), ("INGEST_REQUESTER__GET_RATE", "0")]
)
def test_a_bad_routing_setting_is_exit_2_in_one_line(tmp_path: Path, name: str, value: str) -> None:
    done = run_ingest(
        "run", env={name: value, "INGEST_STATE__PATH": str(tmp_path / "s.sqlite")}, cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and name in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("via", ["auto", "get"])
def test_a_get_answer_that_is_no_report_goes_by_email_or_fails_the_window(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path, via: str
) -> None:
    """A hostile or broken GET answer (rows of no report) never reaches the archive: auto
    asks for the window by email instead, get fails it saying why."""
    sim.script_get(Fault(status=200, body=[{"nonsense": 1, "id": "x"}]))
    settings = settings_for(sim, imap, tmp_path, via=via)
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT], START, date(2024, 3, 10), window_days=30)
        run_until_done(settings, store, timeout=30)
        (window,) = store.windows()

    if via == "auto":
        assert (window.state, window.via) == (S.ARCHIVED, "email")
        assert len(sim.exports) == 1
        assert_archive_matches(tmp_path / "archive", truth(sim, [LIGHT], START, date(2024, 3, 10)))
    else:
        assert window.state is S.FAILED and sim.exports == []
        assert window.last_error is not None and "refused" in window.last_error


def test_5xx_backs_off_then_hands_the_window_to_email_but_429s_only_slow_it_down(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    throttled = Fault(status=429, body={"detail": "Request was throttled."}, headers={"Retry-After": "0"})
    sim.script_get(throttled, throttled, throttled)  # more 429s than max_attempts: still GET's
    settings = settings_for(sim, imap, tmp_path, via="auto", max_attempts=2)
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT], START, date(2024, 3, 10), window_days=30)
        run_until_done(settings, store, timeout=30)
        assert [(w.state, w.via) for w in store.windows()] == [(S.ARCHIVED, "get")]
        sim.script_get(Fault(status=503), Fault(status=502))  # two failures: max_attempts
        plan_backfill(store, [LIGHT], date(2024, 3, 11), date(2024, 3, 20), window_days=30)
        started = time.monotonic()
        run_until_done(settings, store, timeout=30)
        took = time.monotonic() - started
        handed = store.windows()[-1]
        pacing = store.note(PACING_NOTE)
        answers = [(a["method"], a["status"], a["outcome"]) for a in store.api_answers(handed.id)]

    assert (handed.state, handed.via) == (S.ARCHIVED, "email")
    # The ledger keeps why: two failed GETs, then the POST that took the window over.
    assert answers == [("GET", 503, "transient"), ("GET", 502, "transient"), ("POST", 200, "accepted")]
    assert [(e.from_date, e.to_date) for e in sim.exports] == [(date(2024, 3, 11), date(2024, 3, 20))]
    assert took >= 0.05  # backed off (retry_initial 0.05 s) between the two failures
    assert pacing is not None and (pacing["throttled"], pacing["failed"]) == (3, 2)
    assert_archive_matches(tmp_path / "archive", truth(sim, [LIGHT], START, date(2024, 3, 20)))


def test_rows_a_get_answer_rejects_are_quarantined_and_the_run_says_so(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    """Rows GET brought that the parser rejects (a bad value, a day outside the dates
    asked) are counted as the email path counts them: the run needs a person (exit 1)."""
    last = date(2024, 3, 5)
    rows = rows_to_json(sim.expected_rows(LIGHT, START, last))
    bad = {**rows[0], "timestamp": "not a time"}
    outside = {**rows[1], "id": rows[-1]["id"] + 99, "timestamp": "2024-06-01T10:00:00.000000Z"}
    sim.script_get(Fault(status=200, body=[bad, outside, *rows[2:]]))
    settings = settings_for(sim, imap, tmp_path, via="auto")
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT], START, last, window_days=30)
        summary = run_until_done(settings, store, timeout=30)

    assert summary.rows_rejected == 2
    # `ingest run` exits 1 on needs_attention and prints "1 with rejects".
    assert summary.reports_quarantined == 1 and summary.needs_attention


@pytest.mark.parametrize("via", ["auto", "get"])
def test_an_empty_get_answer_is_a_span_of_no_rows(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path, via: str
) -> None:
    """A quiet span answers ``[]``: no rows, the span is done, never a refused report that
    fails the window (get) or sends it by email (auto)."""
    sim.script_get(Fault(status=200, body=[]))  # the first span, 1..15 March, is quiet
    last = date(2024, 3, 20)
    settings = settings_for(sim, imap, tmp_path, via=via)
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT], START, last, window_days=30)
        summary = run_until_done(settings, store, timeout=30)
        (window,) = store.windows()
        spans = [(s.from_date, s.to_date, s.state, s.rows) for s in store.spans(window.id)]

    assert not summary.needs_attention, summary.problems
    assert (window.state, window.via) == (S.ARCHIVED, "get") and sim.exports == []
    assert spans[0] == (START, date(2024, 3, 15), SpanState.DONE, 0)
    assert_archive_matches(tmp_path / "archive", truth(sim, [LIGHT], date(2024, 3, 16), last))


@pytest.mark.parametrize("via", ["auto", "get"])
def test_endless_429s_hand_the_window_to_email_or_fail_it_saying_so(
    sim: CertainlySimulator,
    imap: EmbeddedImap,
    tmp_path: Path,
    via: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that only ever says 429 never keeps a window (and `run --until-done`) on
    GET for ever: after 5 x max_attempts 429s in a row, auto emails it, get fails it."""
    throttled = Fault(status=429, body={"detail": "Request was throttled."}, headers={"Retry-After": "0"})
    sim.script_get(*[throttled] * 50)
    settings = settings_for(sim, imap, tmp_path, via=via, max_attempts=1)
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT], START, date(2024, 3, 10), window_days=30)
        summary = run_until_done(settings, store, timeout=30)
        (window,) = store.windows()

    assert len(gets(sim)) == 5 and summary.get_throttled == 5
    if via == "auto":
        assert "GET throttled (429) 5 times in a row; sent by email instead" in caplog.text
        assert (window.state, window.via) == (S.ARCHIVED, "email") and len(sim.exports) == 1
        assert_archive_matches(tmp_path / "archive", truth(sim, [LIGHT], START, date(2024, 3, 10)))
    else:
        assert window.state is S.FAILED and sim.exports == [] and summary.needs_attention
        assert window.last_error == "GET throttled (429) 5 times in a row"


def test_a_run_the_api_only_throttled_says_so_and_exits_3(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    sim.script_get(
        Fault(status=429, body={"detail": "Request was throttled."}, headers={"Retry-After": "60"})
    )
    settings = settings_for(sim, imap, tmp_path, via="auto")
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT], START, date(2024, 3, 10), window_days=30)
        summary = run_once(settings, store)

    assert summary.get_throttled == 1 and summary.only_throttled and not summary.needs_attention
    assert run_exit_code(summary) == 3  # exit code 3: "a server kept failing; run again later"


def test_json_numbers_as_floats_are_the_csv_integers_duplicates_not_conflicts(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    """A GET answer writing integer columns as whole floats (``0.0``, ``7389460000.0``)
    archives the same values the emailed CSV has: the day emailed again is all duplicates;
    a float that is no integer (or beyond 2**53) is rejected, never rounded."""
    day = date(2024, 3, 5)
    rows = rows_to_json(sim.expected_rows(LIGHT, day, day + timedelta(days=1)))
    on_day = len(sim.expected_rows(LIGHT, day, day))
    assert on_day >= 2  # the two broken rows are the first day's
    floats = [
        {
            k: float(v) if k in ("id", "wait", "bot_module_id") and isinstance(v, int) else v
            for k, v in row.items()
        }
        for row in rows
    ]
    floats[0]["wait"] = 0.5
    floats[1]["id"] = float(2**53 + 2)
    sim.script_get(Fault(status=200, body=floats))
    with Store.open(tmp_path / "state.sqlite") as store:
        plan_backfill(store, [LIGHT], day, day + timedelta(days=1), window_days=2)
        by_get = run_until_done(settings_for(sim, imap, tmp_path, via="get"), store, timeout=30)
        store.plan_window(LIGHT, 1, day, day, via="email")  # the same day again, emailed
        by_email = run_until_done(settings_for(sim, imap, tmp_path, via="auto"), store, timeout=30)
        conflicts, _ = store.conflicts()

    assert (by_get.rows_written, by_get.rows_rejected) == (len(rows) - 2, 2)
    assert (by_email.rows_written, by_email.rows_duplicate) == (2, on_day - 2)
    assert conflicts == 0 and by_email.rows_rejected == 0
    assert_archive_matches(tmp_path / "archive", truth(sim, [LIGHT], day, day + timedelta(days=1)))


def test_a_long_retry_after_hands_auto_to_email_and_get_says_until_when(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    """A Retry-After of an hour: auto does not sit it out (an emailed export takes minutes),
    get waits and each run says until when, exit 3 (run again later)."""
    hour = Fault(status=429, body={"detail": "Request was throttled."}, headers={"Retry-After": "3600"})
    sim.script_get(hour)
    auto = settings_for(sim, imap, tmp_path / "auto", via="auto")
    with Store.open(auto.state.path) as store:
        plan_backfill(store, [LIGHT], START, date(2024, 3, 10), window_days=30)
        started = time.monotonic()
        run_until_done(auto, store, timeout=30)
        (window,) = store.windows()
    assert time.monotonic() - started < 20
    assert (window.state, window.via) == (S.ARCHIVED, "email") and len(gets(sim)) == 1
    assert_archive_matches(tmp_path / "auto" / "archive", truth(sim, [LIGHT], START, date(2024, 3, 10)))

    sim.script_get(hour)
    get = settings_for(sim, imap, tmp_path / "get", via="get")
    with Store.open(get.state.path) as store:
        plan_backfill(store, [LIGHT], START, date(2024, 3, 10), window_days=30)
        first = run_once(get, store)
        again = run_once(get, store)  # the next run asks nothing and says it still waits
        (window,) = store.windows()
    assert (window.state, window.via) == (S.PLANNED, "get") and len(gets(sim)) == 2
    for summary in (first, again):
        assert 3590 < summary.get_waiting_until - time.time() <= 3600
        assert run_exit_code(summary) == 3


def test_status_after_get_hands_a_half_done_window_to_email(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    """GET archives the first span, then fails: the emailed window counts every row (the
    GET span's too), its leftover span is superseded, and status says which windows were
    archived by which path and which are only routed."""
    last = date(2024, 3, 20)
    sim.script_get(Fault(), Fault(status=503), Fault(status=503))
    settings = settings_for(sim, imap, tmp_path, via="auto", max_attempts=2)
    with Store.open(settings.state.path) as store:
        plan_backfill(store, [LIGHT], START, last, window_days=30)
        run_until_done(settings, store, timeout=30)
        (window,) = store.windows()
        spans = [(s.from_date, s.state) for s in store.spans(window.id)]
        plan_backfill(store, [LIGHT], date(2024, 3, 21), date(2024, 3, 25), window_days=30)
        store.transition(store.windows()[-1].id, S.PLANNED, via="get")  # routed, as claim does
        (bot,) = collect_status(store, settings.requester)["bots"]

    assert (window.state, window.via) == (S.ARCHIVED, "email")
    assert window.rows_archived == len(sim.expected_rows(LIGHT, START, last))
    assert spans == [(START, SpanState.DONE), (date(2024, 3, 16), SpanState.SUPERSEDED)]
    assert bot["rows_archived"] == window.rows_archived
    assert (bot["via"], bot["routed"]) == ({"email": 1}, {"get": 1})
