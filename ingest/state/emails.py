"""The store's record of the mailbox: each folder's position, every email handled, and the
emails that need a person (the failed folder, ``ingest retry --failed``)."""

from __future__ import annotations

import time
from typing import Any

from ingest.state.connection import Connected


class EmailRecords(Connected):
    """Mailbox position, emails and failed emails (part of :class:`ingest.state.store.Store`)."""

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
