"""Lost exports: an accepted window whose email never comes is lost and re-submitted;
lost again, a window of several days is split in half (a too-large attachment is the
likely cause), while a single day is simply tried again."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from ingest.request.requester import expire_lost
from ingest.settings import RequesterSettings
from ingest.state.store import Store
from ingest.state.windows import WindowState

S = WindowState
BOT = "1057e57a-0000-4000-8000-000000000001"
SETTINGS = RequesterSettings(delivery_timeout=60, split_after_losses=2)


def accept(store: Store, window_id: int, at: float) -> None:
    store.transition(window_id, S.SUBMITTING)
    store.transition(window_id, S.ACCEPTED, accepted_at=at)


def test_lost_twice_a_window_is_split_in_half(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as store:
        store.plan_window(BOT, 1, date(2024, 3, 1), date(2024, 3, 10))
        (window,) = store.windows()
        accept(store, window.id, at=1000.0)
        assert expire_lost(store, SETTINGS, now=1059.0) == []  # not overdue yet
        assert expire_lost(store, SETTINGS, now=1061.0) == [window.id]
        assert store.window(window.id).state is S.LOST and store.window(window.id).losses == 1

        accept(store, window.id, at=2000.0)
        expire_lost(store, SETTINGS, now=2100.0)
        split = store.window(window.id)
        assert (split.state, split.losses) == (S.SPLIT, 2)
        halves = [(w.from_date, w.to_date, w.state) for w in store.windows(states=(S.PLANNED,))]
        assert halves == [
            (date(2024, 3, 1), date(2024, 3, 5), S.PLANNED),
            (date(2024, 3, 6), date(2024, 3, 10), S.PLANNED),
        ]


def test_a_single_day_is_never_split_only_tried_again(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as store:
        store.plan_window(BOT, 1, date(2024, 3, 1), date(2024, 3, 1))
        (window,) = store.windows()
        for attempt in range(3):
            accept(store, window.id, at=float(attempt * 1000))
            expire_lost(store, SETTINGS, now=attempt * 1000 + 61.0)
        assert (store.window(window.id).state, store.window(window.id).losses) == (S.LOST, 3)
        assert len(store.windows()) == 1
