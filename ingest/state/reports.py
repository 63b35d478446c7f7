"""The store's record of report files (attachments and imports), of the rows refused as
conflicts, and of the reasons that may quote a refused file's line (``ingest erase``)."""

from __future__ import annotations

import time
from typing import Any

from ingest.state.connection import Connected

#: Tables whose ``reason`` may quote a refused file's line (a bot user's record).
REASON_TABLES = ("emails", "attachments", "failed_messages", "conflicts")


class ReportRecords(Connected):
    """Report files, conflicts and recorded reasons (part of :class:`ingest.state.store.Store`)."""

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
