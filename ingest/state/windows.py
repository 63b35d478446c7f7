"""Export windows and their GET spans: their lifecycles, and the store's records of them.

A window is one export request (a bot, a report type, an inclusive date range) moving
planned -> submitting -> accepted -> delivered -> archived; a window routed to GET is
fetched in spans, each marked done only once its rows are durable.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from ingest.errors import StateError
from ingest.state.connection import Connected


class WindowState(StrEnum):
    """Export window lifecycle: planned -> submitting -> accepted -> delivered -> archived."""

    PLANNED = "planned"
    SUBMITTING = "submitting"
    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    ARCHIVED = "archived"
    DEFERRED = "deferred"  # retry after next_attempt_at (API busy or transient error)
    LOST = "lost"  # accepted, but no email within the delivery timeout; re-submitted
    FAILED = "failed"  # needs a person
    SPLIT = "split"  # lost too often: replaced by two half windows


S = WindowState
#: Allowed transitions. An email may arrive for a window we still think is submitting
#: (crash after POST) or lost (late mail), so delivery is allowed from those too.
TRANSITIONS: dict[WindowState, frozenset[WindowState]] = {
    S.PLANNED: frozenset({S.SUBMITTING, S.DELIVERED}),
    S.SUBMITTING: frozenset({S.ACCEPTED, S.DEFERRED, S.FAILED, S.PLANNED, S.LOST, S.DELIVERED}),
    S.ACCEPTED: frozenset({S.DELIVERED, S.LOST, S.FAILED, S.SPLIT}),
    S.DEFERRED: frozenset({S.SUBMITTING, S.DELIVERED, S.FAILED}),
    S.LOST: frozenset({S.SUBMITTING, S.DELIVERED, S.SPLIT}),
    S.SPLIT: frozenset({S.DELIVERED}),
    S.DELIVERED: frozenset({S.ARCHIVED, S.FAILED}),
    S.ARCHIVED: frozenset(),
    S.FAILED: frozenset({S.PLANNED}),
}
#: States in which nothing more will happen to a window by itself.
FINAL = (S.ARCHIVED, S.FAILED, S.SPLIT)


@dataclass(frozen=True)
class Window:
    """One export request: a bot, a report type and an inclusive date range."""

    id: int
    bot_id: str
    report_id: int
    from_date: date
    to_date: date
    state: WindowState
    attempts: int
    losses: int
    next_attempt_at: float | None
    submitted_at: float | None
    accepted_at: float | None
    rows_archived: int
    last_error: str | None
    updated_at: float
    via: str | None = None  # 'get' or 'email' once routed (ingest.pipeline.route); None before

    def days(self) -> int:
        """Number of calendar days covered, both ends included."""
        return (self.to_date - self.from_date).days + 1


def _window(row: sqlite3.Row) -> Window:
    return Window(
        id=row["id"],
        bot_id=row["bot_id"],
        report_id=row["report_id"],
        from_date=date.fromisoformat(row["from_date"]),
        to_date=date.fromisoformat(row["to_date"]),
        state=WindowState(row["state"]),
        attempts=row["attempts"],
        losses=row["losses"],
        next_attempt_at=row["next_attempt_at"],
        submitted_at=row["submitted_at"],
        accepted_at=row["accepted_at"],
        rows_archived=row["rows_archived"],
        last_error=row["last_error"],
        updated_at=row["updated_at"],
        via=row["via"],
    )


class SpanState(StrEnum):
    """A GET span of a window: pending, done (archived) or heavy (a day of 500+ rows)."""

    PENDING = "pending"
    DONE = "done"
    HEAVY = "heavy"
    SUPERSEDED = "superseded"  # left pending when the window went by email instead


@dataclass(frozen=True)
class Span:
    """One GET request's range inside a window routed to GET."""

    id: int
    window_id: int
    from_date: date
    to_date: date
    state: SpanState
    attempts: int
    rows: int
    sha256: str | None

    def days(self) -> int:
        """Number of calendar days covered, both ends included."""
        return (self.to_date - self.from_date).days + 1


def iter_days(start: date, end: date) -> Iterator[date]:
    """Every date from start to end inclusive."""
    for ordinal in range(start.toordinal(), end.toordinal() + 1):
        yield date.fromordinal(ordinal)


class WindowRecords(Connected):
    """The store's windows and GET spans (part of :class:`ingest.state.store.Store`)."""

    def plan_window(
        self, bot_id: str, report_id: int, from_date: date, to_date: date, *, via: str | None = None
    ) -> bool:
        """Insert a planned window; a failed one with that range is planned again (a person
        asked for it). False when that window exists already in any other state. ``via``
        pins how it is archived ('email', 'get'); None leaves it to the routing setting."""
        now = time.time()
        with self._tx():
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO windows (bot_id, report_id, from_date, to_date, state,"
                " created_at, updated_at, via) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (bot_id, report_id, from_date.isoformat(), to_date.isoformat(), S.PLANNED, now, now, via),
            )
            if cur.rowcount == 0:
                cur = self._conn.execute(
                    "UPDATE windows SET state = ?, attempts = 0, next_attempt_at = NULL,"
                    " updated_at = ?, via = ? WHERE bot_id = ? AND report_id = ? AND from_date = ?"
                    " AND to_date = ? AND state = ?",
                    (
                        S.PLANNED,
                        now,
                        via,
                        bot_id,
                        report_id,
                        from_date.isoformat(),
                        to_date.isoformat(),
                        S.FAILED,
                    ),
                )
                if cur.rowcount == 1:  # planned again: its old GET spans no longer count
                    self._conn.execute(
                        "DELETE FROM get_spans WHERE window_id = (SELECT id FROM windows WHERE"
                        " bot_id = ? AND report_id = ? AND from_date = ? AND to_date = ?)",
                        (bot_id, report_id, from_date.isoformat(), to_date.isoformat()),
                    )
        return cur.rowcount == 1

    def windows(
        self, *, bot_id: str | None = None, states: tuple[WindowState, ...] | None = None
    ) -> list[Window]:
        """Windows, oldest range first, optionally filtered by bot and state."""
        sql, params = "SELECT * FROM windows WHERE 1=1", []
        if bot_id is not None:
            sql += " AND bot_id = ?"
            params.append(bot_id)
        if states is not None:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params.extend(states)
        sql += " ORDER BY from_date, bot_id, id"
        return [_window(row) for row in self._query(sql, tuple(params))]

    def window(self, window_id: int) -> Window:
        rows = self._query("SELECT * FROM windows WHERE id = ?", (window_id,))
        if not rows:
            raise StateError(f"no window with id {window_id}")
        return _window(rows[0])

    def transition(self, window_id: int, new: WindowState, **fields: Any) -> Window:
        """Move a window to ``new``, checking the lifecycle, and set other columns."""
        allowed = {
            "attempts",
            "losses",
            "next_attempt_at",
            "submitted_at",
            "accepted_at",
            "rows_archived",
            "last_error",
            "via",
        }
        if set(fields) - allowed:
            raise ValueError(f"unknown window fields: {sorted(set(fields) - allowed)}")
        with self._tx():
            current = self.window(window_id)
            if new != current.state and new not in TRANSITIONS[current.state]:
                raise StateError(f"window {window_id} cannot go from {current.state} to {new}")
            assignments = ", ".join(f"{name} = ?" for name in ["state", "updated_at", *fields])
            self._conn.execute(
                f"UPDATE windows SET {assignments} WHERE id = ?",
                (new, time.time(), *fields.values(), window_id),
            )
        return self.window(window_id)

    def close_window(self, window_id: int, final: WindowState, **fields: Any) -> Window:
        """A planned window done without an email (GET): delivered and then ``final``
        (archived or failed) in one transaction, so a crash never leaves it half-way."""
        with self._tx():
            self.transition(window_id, S.DELIVERED)
            return self.transition(window_id, final, **fields)

    def split_window(self, window_id: int, last_of_first_half: date, *, losses: int) -> None:
        """Replace a window by two halves (one transaction): first..mid and mid+1..last."""
        with self._tx():
            window = self.window(window_id)
            self.transition(
                window_id, S.SPLIT, losses=losses, last_error=f"lost {losses} times: split in two"
            )
            # The halves keep the path: a heavy day sent by email stays with email.
            self.plan_window(
                window.bot_id, window.report_id, window.from_date, last_of_first_half, via=window.via
            )
            self.plan_window(
                window.bot_id,
                window.report_id,
                date.fromordinal(last_of_first_half.toordinal() + 1),
                window.to_date,
                via=window.via,
            )

    # -- GET spans (ingest.pipeline.route) ------------------------------------------------

    def spans(self, window_id: int) -> list[Span]:
        """A window's GET spans, oldest range first (none before it is first fetched)."""
        rows = self._query(
            "SELECT * FROM get_spans WHERE window_id = ? ORDER BY from_date, to_date", (window_id,)
        )
        return [
            Span(
                id=r["id"],
                window_id=r["window_id"],
                from_date=date.fromisoformat(r["from_date"]),
                to_date=date.fromisoformat(r["to_date"]),
                state=SpanState(r["state"]),
                attempts=r["attempts"],
                rows=r["rows"],
                sha256=r["sha256"],
            )
            for r in rows
        ]

    def add_spans(self, window_id: int, ranges: list[tuple[date, date]]) -> None:
        """Plan pending GET spans for a window (one transaction; existing ones are kept)."""
        now = time.time()
        with self._tx():
            self._conn.executemany(
                "INSERT OR IGNORE INTO get_spans (window_id, from_date, to_date, state, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(window_id, a.isoformat(), b.isoformat(), SpanState.PENDING, now) for a, b in ranges],
            )

    def finish_span(
        self, span_id: int, state: SpanState, *, rows: int = 0, sha256: str | None = None
    ) -> None:
        """A span archived (done) or found to be a heavy day."""
        with self._tx():
            self._conn.execute(
                "UPDATE get_spans SET state = ?, rows = ?, sha256 = ?, updated_at = ? WHERE id = ?",
                (state, rows, sha256, time.time(), span_id),
            )

    def hand_to_email(self, window_id: int, last_error: str) -> Window:
        """GET gives a window up: its pending spans are superseded (the email brings their
        rows), and the window keeps the rows its done spans archived, in one transaction."""
        with self._tx():
            self._conn.execute(
                "UPDATE get_spans SET state = ?, updated_at = ? WHERE window_id = ? AND state = ?",
                (SpanState.SUPERSEDED, time.time(), window_id, SpanState.PENDING),
            )
            done = self._query(
                "SELECT coalesce(sum(rows), 0) FROM get_spans WHERE window_id = ? AND state = ?",
                (window_id, SpanState.DONE),
            )[0][0]
            return self.transition(
                window_id, WindowState.PLANNED, via="email", last_error=last_error, rows_archived=int(done)
            )

    def halve_span(self, span: Span, last_of_first_half: date) -> None:
        """Replace a span whose answer was full (500 rows) by its two halves."""
        second = date.fromordinal(last_of_first_half.toordinal() + 1)
        with self._tx():
            self._conn.execute("DELETE FROM get_spans WHERE id = ?", (span.id,))
            self.add_spans(span.window_id, [(span.from_date, last_of_first_half), (second, span.to_date)])

    def count_span_attempt(self, span_id: int) -> int:
        """One more failed attempt at a span; returns the count."""
        with self._tx():
            self._conn.execute(
                "UPDATE get_spans SET attempts = attempts + 1, updated_at = ? WHERE id = ?",
                (time.time(), span_id),
            )
            return int(self._query("SELECT attempts FROM get_spans WHERE id = ?", (span_id,))[0][0])

    def span_counts(self) -> dict[str, int]:
        """GET spans by state, over every window."""
        return {r[0]: r[1] for r in self._query("SELECT state, count(*) FROM get_spans GROUP BY state")}
