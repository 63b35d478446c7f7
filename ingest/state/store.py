"""The job's state store: SQLite (stdlib), WAL, schema versioned with migrations.

It holds the export windows and their lifecycle, every raw API answer (for audit), the
mailbox position per folder, and the emails and attachments already handled, so that a
job killed at any instant can simply run again.

Example::

    with Store.open(Path("state.sqlite")) as store:
        store.plan_window("bot-1", 1, date(2024, 1, 1), date(2024, 1, 30))
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

from ingest.errors import StateError
from ingest.state.migrations import MIGRATIONS, SCHEMA_VERSION


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


#: Tables whose ``reason`` may quote a refused file's line (a bot user's record).
REASON_TABLES = ("emails", "attachments", "failed_messages", "conflicts")


class Store:
    """A connection to the state store. Each public method is one transaction."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating and migrating if needed) the store at ``path``."""
        path = Path(path)
        conn: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed state change survives power loss, so it never runs ahead of the data.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            store = cls(conn, path)
            store._migrate()
        except (sqlite3.DatabaseError, StateError, OSError) as err:
            if conn is not None:
                conn.close()
            if isinstance(err, StateError):
                raise
            if isinstance(err, OSError):
                raise StateError(
                    f"state store {path} cannot be created: {err.strerror}", hint="INGEST_STATE__PATH"
                ) from None
            raise StateError(f"state store {path} cannot be used: {err}", hint="INGEST_STATE__PATH") from None
        return store

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state store {self.path} has schema version {version}, newer than this "
                f"certainly-ingest understands ({SCHEMA_VERSION}); upgrade certainly-ingest"
            )
        for number in range(version, SCHEMA_VERSION):
            with self._tx():
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {number + 1}")

    def _tx(self) -> _Transaction:
        return _Transaction(self._conn)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    # -- windows ---------------------------------------------------------------------

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

    # -- notes: small facts shown by status (the GET pacing) ---------------------------------

    def set_note(self, key: str, value: dict[str, Any]) -> None:
        with self._tx():
            self._conn.execute(
                "INSERT OR REPLACE INTO notes (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def note(self, key: str) -> dict[str, Any] | None:
        rows = self._query("SELECT value FROM notes WHERE key = ?", (key,))
        return dict(json.loads(rows[0][0])) if rows else None

    def record_api_answer(
        self, window_id: int | None, method: str, status: int, outcome: str, body: str
    ) -> None:
        """Keep an API answer verbatim (never the request headers: they hold the token)."""
        with self._tx():
            self._conn.execute(
                "INSERT INTO api_answers (window_id, at, method, status, outcome, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (window_id, time.time(), method, status, outcome, body[:65536]),
            )

    def api_answers(self, window_id: int) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM api_answers WHERE window_id = ? ORDER BY id", (window_id,))
        return [dict(row) for row in rows]

    # -- mailbox ---------------------------------------------------------------------

    def quick_check(self) -> str:
        """SQLite's ``PRAGMA quick_check``: ``"ok"``, or what is damaged."""
        return str(self._conn.execute("PRAGMA quick_check").fetchone()[0])

    def mailbox_position(self, folder: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last UID handled) for a folder, or None before the first run."""
        rows = self._query("SELECT uidvalidity, last_uid FROM mailbox_position WHERE folder = ?", (folder,))
        return (rows[0][0], rows[0][1]) if rows else None

    def _advance_position(self, folder: str, uidvalidity: int, uid: int) -> None:
        """Move the folder's position up to ``uid`` (never back); a new UIDVALIDITY restarts it.
        Inside the caller's transaction."""
        self._conn.execute(
            "INSERT INTO mailbox_position (folder, uidvalidity, last_uid) VALUES (?, ?, ?)"
            " ON CONFLICT (folder) DO UPDATE SET uidvalidity = excluded.uidvalidity,"
            " last_uid = max(CASE WHEN mailbox_position.uidvalidity = excluded.uidvalidity"
            " THEN mailbox_position.last_uid ELSE 0 END, excluded.last_uid)",
            (folder, uidvalidity, uid),
        )

    def record_email(
        self,
        folder: str,
        uidvalidity: int,
        uid: int,
        *,
        message_id: str | None,
        sender: str | None,
        subject: str | None,
        outcome: str,
        reason: str | None = None,
    ) -> None:
        """Record what was done with one email and advance the folder position past it."""
        with self._tx():
            self._conn.execute(
                "INSERT OR REPLACE INTO emails (folder, uidvalidity, uid, message_id, sender,"
                " subject, outcome, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (folder, uidvalidity, uid, message_id, sender, subject, outcome, reason, time.time()),
            )
            self._advance_position(folder, uidvalidity, uid)

    def record_ignored(
        self, folder: str, uidvalidity: int, emails: list[tuple[int, str | None, str]]
    ) -> None:
        """Record many screened-out emails, (UID, sender, reason) each, in one transaction
        and advance the folder position past them: a flood of other people's mail costs one
        commit (one fsync) per batch, not one per email."""
        if not emails:
            return
        now = time.time()
        with self._tx():
            self._conn.executemany(
                "INSERT OR REPLACE INTO emails (folder, uidvalidity, uid, message_id, sender,"
                " subject, outcome, reason, at) VALUES (?, ?, ?, NULL, ?, NULL, 'ignored', ?, ?)",
                [(folder, uidvalidity, uid, sender, reason, now) for uid, sender, reason in emails],
            )
            self._advance_position(folder, uidvalidity, max(uid for uid, _, _ in emails))

    def record_failed_message(
        self,
        folder: str,
        uidvalidity: int,
        uid: int,
        *,
        message_id: str | None,
        sha256: str | None,
        reason: str,
    ) -> None:
        """Remember an email that needs a person (it goes to the failed folder), with its
        reason; recorded before it is moved, so a crash in between still leaves a trace
        that ``ingest retry --failed`` follows. A repeat failure counts another attempt."""
        now = time.time()
        with self._tx():
            self._conn.execute(
                "INSERT INTO failed_messages (folder, uidvalidity, uid, message_id, sha256,"
                " reason, state, attempts, failed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?,"
                " 'failed', 1, ?, ?) ON CONFLICT (folder, uidvalidity, uid) DO UPDATE SET"
                " message_id = coalesce(excluded.message_id, failed_messages.message_id),"
                " sha256 = coalesce(excluded.sha256, failed_messages.sha256),"
                " reason = excluded.reason, state = 'failed',"
                " attempts = failed_messages.attempts + 1, updated_at = excluded.updated_at",
                (folder, uidvalidity, uid, message_id, sha256, reason, now, now),
            )

    def set_failed_place(self, folder: str, uidvalidity: int, uid: int, place: str) -> None:
        """Where a failed email is now: the failed folder, or left (flagged) where it was."""
        with self._tx():
            self._conn.execute(
                "UPDATE failed_messages SET place = ?, updated_at = ? WHERE folder = ? AND"
                " uidvalidity = ? AND uid = ?",
                (place, time.time(), folder, uidvalidity, uid),
            )

    def resolve_failed_message(self, folder: str, uidvalidity: int, uid: int, outcome: str) -> None:
        """A failed email was retried and handled (``outcome``): no longer needs a person."""
        with self._tx():
            self._conn.execute(
                "UPDATE failed_messages SET state = ?, updated_at = ? WHERE folder = ? AND"
                " uidvalidity = ? AND uid = ?",
                (outcome, time.time(), folder, uidvalidity, uid),
            )

    def failed_messages(self) -> list[dict[str, Any]]:
        """Emails still waiting for a person, oldest first."""
        rows = self._query(
            "SELECT * FROM failed_messages WHERE state = 'failed' ORDER BY failed_at, folder, uid"
        )
        return [dict(row) for row in rows]

    def email_counts(self) -> dict[str, int]:
        rows = self._query("SELECT outcome, count(*) FROM emails GROUP BY outcome")
        return {row[0]: row[1] for row in rows}

    # -- attachments -------------------------------------------------------------------

    def attachment(self, sha256: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM attachments WHERE sha256 = ?", (sha256,))
        return dict(rows[0]) if rows else None

    def record_attachment(
        self,
        sha256: str,
        *,
        filename: str | None,
        size: int,
        window_id: int | None,
        bot_id: str | None,
        outcome: str,
        rows_read: int = 0,
        rows_written: int = 0,
        rows_duplicate: int = 0,
        rows_rejected: int = 0,
        reason: str | None = None,
    ) -> None:
        with self._tx():
            self._conn.execute(
                "INSERT OR REPLACE INTO attachments (sha256, filename, size, window_id, bot_id,"
                " outcome, rows_read, rows_written, rows_duplicate, rows_rejected, reason, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sha256,
                    filename,
                    size,
                    window_id,
                    bot_id,
                    outcome,
                    rows_read,
                    rows_written,
                    rows_duplicate,
                    rows_rejected,
                    reason,
                    time.time(),
                ),
            )

    def window_attachments(self, window_id: int) -> list[dict[str, Any]]:
        """The reports recorded for a window, oldest first."""
        rows = self._query("SELECT * FROM attachments WHERE window_id = ? ORDER BY at", (window_id,))
        return [dict(row) for row in rows]

    def conflicting_windows(self) -> list[int]:
        """Windows with a report set aside in conflict (``ingest resolve`` settles them)."""
        rows = self._query(
            "SELECT DISTINCT window_id FROM attachments WHERE outcome = 'conflict' ORDER BY window_id"
        )
        return [int(row[0]) for row in rows]

    def settle_attachment(self, sha256: str, outcome: str, reason: str | None) -> None:
        """Give a recorded report a new outcome (``ingest resolve``: kept, or removed)."""
        with self._tx():
            self._conn.execute(
                "UPDATE attachments SET outcome = ?, reason = ? WHERE sha256 = ?", (outcome, reason, sha256)
            )

    def attachment_totals(self) -> dict[str, int]:
        row = self._query(
            "SELECT count(*), coalesce(sum(rows_read),0), coalesce(sum(rows_written),0),"
            " coalesce(sum(rows_duplicate),0), coalesce(sum(rows_rejected),0) FROM attachments"
        )[0]
        return dict(
            zip(
                ["attachments", "rows_read", "rows_written", "rows_duplicate", "rows_rejected"],
                row,
                strict=True,
            )
        )

    # -- conflicts (ingest.archive.conflicts) -----------------------------------------------------
    def record_conflicts(self, conflicts: list[dict[str, Any]]) -> None:
        """Keep each row refused as a conflict: both content hashes and both sources."""
        if not conflicts:
            return
        with self._tx():
            self._conn.executemany(
                "INSERT INTO conflicts (bot_id, row_id, row, existing_hash, new_hash, existing_source,"
                " new_source, existing_file, reason, at) VALUES (:bot_id, :row_id, :row, :existing_hash,"
                " :new_hash, :existing_source, :new_source, :existing_file, :reason, :at)",
                [{**c, "at": time.time()} for c in conflicts],
            )

    def conflicts(self, limit: int = 20) -> tuple[int, list[dict[str, Any]]]:
        """How many conflicts are recorded, and the latest ``limit`` of them."""
        total = self._query("SELECT count(*) FROM conflicts")[0][0]
        rows = self._query(
            "SELECT bot_id, row_id, row, existing_hash, new_hash, existing_source,"
            " new_source, existing_file, reason, at FROM conflicts ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return int(total), [dict(r) for r in rows]

    # -- reasons quoting a record (ingest erase withholds those quoting an erased bot user) ----------
    def reasons_quoting(self, texts: list[str]) -> int:
        """How many recorded reasons hold one of ``texts`` (an erased bot user's id): a refused
        file's reason quotes its first line, which may be a record."""
        return sum(
            int(self._query(f"SELECT count(*) FROM {table} WHERE instr(reason, ?) > 0", (text,))[0][0])  # noqa: S608
            for table in REASON_TABLES
            for text in texts
        )

    def withhold_reasons(self, texts: list[str], note: str) -> int:
        """Replace every recorded reason holding one of ``texts`` by ``note``; how many."""
        changed = 0
        self._conn.execute("PRAGMA secure_delete=ON")  # the old text's bytes zeroed, not left free
        with self._tx():
            for table in REASON_TABLES:
                for text in texts:
                    sql = f"UPDATE {table} SET reason = ? WHERE instr(reason, ?) > 0"  # noqa: S608
                    changed += self._conn.execute(sql, (note, text)).rowcount
        if changed:  # the write-ahead log still holds the old pages: into the file, then emptied
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return changed

    # -- verify runs (ingest verify; the evidence report shows the last) ---------------------------
    def record_verify(
        self, *, version: str, root: str, ok: bool, problems: list[str], files: int, rows: int
    ) -> None:
        """Keep one `ingest verify` outcome (the first 50 problems in full)."""
        with self._tx():
            self._conn.execute(
                "INSERT INTO verify_runs (at, version, root, ok, problems, files, rows, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time(),
                    version,
                    root,
                    int(ok),
                    len(problems),
                    files,
                    rows,
                    json.dumps({"problems": problems[:50]}),
                ),
            )

    def last_verify(self) -> dict[str, Any] | None:
        """The latest recorded `ingest verify` outcome, or None when verify never ran."""
        rows = self._query(
            "SELECT at, version, root, ok, problems, files, rows, detail FROM verify_runs"
            " ORDER BY id DESC LIMIT 1"
        )
        if not rows:
            return None
        found = dict(rows[0])
        found["ok"] = bool(found["ok"])
        found["problem_list"] = json.loads(found.pop("detail")).get("problems", [])
        return found


class _Transaction:
    """``BEGIN IMMEDIATE`` .. ``COMMIT``; nested use joins the outer transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._outer = False

    def __enter__(self) -> None:
        self._outer = not self._conn.in_transaction
        if self._outer:
            self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self._outer:
            return
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")


def iter_days(start: date, end: date) -> Iterator[date]:
    """Every date from start to end inclusive."""
    for ordinal in range(start.toordinal(), end.toordinal() + 1):
        yield date.fromordinal(ordinal)
