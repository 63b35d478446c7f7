"""The SQLite state store: migrations, refusal of unusable files, window lifecycle, mailbox position."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ingest.errors import StateError
from ingest.state.migrations import SCHEMA_VERSION
from ingest.state.store import Store
from ingest.state.windows import WindowState

S = WindowState
BOT = "3f2b8c1e-0000-4000-8000-000000000001"
JAN1, JAN30 = date(2024, 1, 1), date(2024, 1, 30)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "state.sqlite")
    yield opened
    opened.close()


def _planned(store: Store) -> int:
    assert store.plan_window(BOT, 1, JAN1, JAN30)
    return store.windows()[0].id


def test_open_creates_schema_at_current_version(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "folder" / "state.sqlite"
    with Store.open(path) as store:
        assert store.windows() == []
        assert store.mailbox_position("INBOX") is None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"windows", "api_answers", "mailbox_position", "emails", "attachments"} <= tables


def test_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with Store.open(path) as store:
        store.plan_window(BOT, 1, JAN1, JAN30)
        store.record_email("INBOX", 7, 42, message_id=None, sender=None, subject=None, outcome="ignored")
    with Store.open(path) as store:
        [window] = store.windows()
        assert (window.bot_id, window.from_date, window.to_date, window.state) == (
            BOT,
            JAN1,
            JAN30,
            S.PLANNED,
        )
        assert store.mailbox_position("INBOX") == (7, 42)


def test_newer_schema_version_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")

    with pytest.raises(StateError) as caught:
        Store.open(path)

    message = str(caught.value)
    assert str(SCHEMA_VERSION + 5) in message
    assert "newer" in message
    assert "upgrade" in message


def test_file_that_is_not_sqlite_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"this is not a database\x00\xff\xfe" * 200)

    with pytest.raises(StateError) as caught:
        Store.open(path)

    assert str(path) in str(caught.value)


def test_allowed_transitions_record_fields(store: Store) -> None:
    window_id = _planned(store)

    store.transition(window_id, S.SUBMITTING, submitted_at=100.0)
    store.transition(window_id, S.ACCEPTED, accepted_at=101.0)
    store.transition(window_id, S.DELIVERED)
    window = store.transition(window_id, S.ARCHIVED, rows_archived=123)

    assert window.state is S.ARCHIVED
    assert (window.submitted_at, window.accepted_at, window.rows_archived) == (100.0, 101.0, 123)
    assert store.window(window_id) == window


def test_deferred_then_resubmitted(store: Store) -> None:
    window_id = _planned(store)
    store.transition(window_id, S.SUBMITTING)
    store.transition(window_id, S.DEFERRED, attempts=1, next_attempt_at=500.0, last_error="busy")
    window = store.transition(window_id, S.SUBMITTING)

    assert window.state is S.SUBMITTING
    assert window.attempts == 1
    assert window.last_error == "busy"


def test_forbidden_transition_raises_and_changes_nothing(store: Store) -> None:
    window_id = _planned(store)
    for state in (S.SUBMITTING, S.ACCEPTED, S.DELIVERED, S.ARCHIVED):
        store.transition(window_id, state)

    with pytest.raises(StateError, match="archived.*submitting"):
        store.transition(window_id, S.SUBMITTING, attempts=9)

    window = store.window(window_id)
    assert window.state is S.ARCHIVED
    assert window.attempts == 0


def test_planned_cannot_jump_to_archived(store: Store) -> None:
    window_id = _planned(store)
    with pytest.raises(StateError):
        store.transition(window_id, S.ARCHIVED)
    assert store.window(window_id).state is S.PLANNED


def test_unknown_window_is_a_state_error(store: Store) -> None:
    with pytest.raises(StateError, match="999"):
        store.window(999)


def test_plan_window_is_idempotent(store: Store) -> None:
    assert store.plan_window(BOT, 1, JAN1, JAN30) is True
    assert store.plan_window(BOT, 1, JAN1, JAN30) is False
    assert len(store.windows()) == 1
    # A different report type or bot is a different window.
    assert store.plan_window(BOT, 2, JAN1, JAN30) is True
    assert store.plan_window("other-bot", 1, JAN1, JAN30) is True
    assert len(store.windows()) == 3
    assert len(store.windows(bot_id=BOT)) == 2


def test_windows_filter_by_state(store: Store) -> None:
    first = _planned(store)
    store.plan_window(BOT, 1, date(2024, 1, 31), date(2024, 2, 29))
    store.transition(first, S.SUBMITTING)

    assert [w.id for w in store.windows(states=(S.SUBMITTING,))] == [first]
    assert [w.from_date for w in store.windows(states=(S.PLANNED,))] == [date(2024, 1, 31)]


def _email(store: Store, uidvalidity: int, uid: int) -> None:
    store.record_email(
        "INBOX",
        uidvalidity,
        uid,
        message_id=f"<{uid}@x>",
        sender="r@c.io",
        subject="report",
        outcome="archived",
    )


def test_record_email_advances_position_monotonically(store: Store) -> None:
    _email(store, 100, 5)
    assert store.mailbox_position("INBOX") == (100, 5)
    _email(store, 100, 9)
    assert store.mailbox_position("INBOX") == (100, 9)
    _email(store, 100, 7)  # handled out of order: the position never moves back
    assert store.mailbox_position("INBOX") == (100, 9)
    assert store.email_counts() == {"archived": 3}


def test_new_uidvalidity_resets_position(store: Store) -> None:
    _email(store, 100, 50)
    _email(store, 200, 3)  # the folder was recreated: UIDs start again

    assert store.mailbox_position("INBOX") == (200, 3)


def test_positions_are_per_folder(store: Store) -> None:
    _email(store, 100, 50)
    store.record_email("Reports", 1, 2, message_id=None, sender=None, subject=None, outcome="ignored")

    assert store.mailbox_position("INBOX") == (100, 50)
    assert store.mailbox_position("Reports") == (1, 2)
