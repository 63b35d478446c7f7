"""`ingest status` reads at 80 columns: whole bot ids, dates and state names, nothing cut."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.job import run_ingest

pytestmark = pytest.mark.integration

BOTS = ("3f2b8c1e-0000-4000-8000-000000000001", "3f2b8c1e-0000-4000-8000-000000000002")
ERROR = (
    "HTTP 400 from the API: the bot id is not known to this account; check "
    "INGEST_CERTAINLY__BOTS and who owns the token"
)


def test_status_at_80_columns_cuts_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state.sqlite") as store:
        store.plan_window(BOTS[0], 1, date(2024, 1, 1), date(2024, 1, 30))
        store.plan_window(BOTS[0], 1, date(2024, 1, 31), date(2024, 2, 29))
        store.plan_window(BOTS[1], 3, date(2024, 1, 1), date(2024, 1, 30))
        first, second, third = sorted(store.windows(), key=lambda w: (w.bot_id, w.from_date))
        for window in (first, second, third):
            store.transition(window.id, WindowState.SUBMITTING)
        store.transition(first.id, WindowState.ACCEPTED, accepted_at=time.time())
        store.transition(first.id, WindowState.DELIVERED)
        store.transition(first.id, WindowState.ARCHIVED, rows_archived=123_456)
        store.transition(second.id, WindowState.ACCEPTED, accepted_at=time.time())
        store.transition(third.id, WindowState.FAILED, last_error=ERROR)
    env = {"COLUMNS": "80", "NO_COLOR": "1", "INGEST_STATE__PATH": str(tmp_path / "state.sqlite")}

    shown = run_ingest("status", env=env, cwd=tmp_path)

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "…" not in shown.stdout
    text = " ".join(line.strip() for line in lines)
    for needed in (
        *BOTS,
        "(messages)",
        "(advanced)",
        "archived 1",
        "accepted 1",
        "failed 1",
        "2024-01-30",
        "2024-01-31..2024-02-29",
        "123,456",
        ERROR,
    ):
        assert needed in text, needed
