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
from pathlib import Path
from typing import Any

from ingest.errors import StateError
from ingest.state.emails import EmailRecords
from ingest.state.migrations import MIGRATIONS, SCHEMA_VERSION
from ingest.state.reports import ReportRecords
from ingest.state.windows import WindowRecords


class Store(WindowRecords, EmailRecords, ReportRecords):
    """A connection to the state store. Each public method is one transaction; the methods
    are grouped by what they record (windows and spans, emails, reports)."""

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
