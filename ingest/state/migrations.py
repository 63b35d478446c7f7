"""The state store's schema, one migration per version (``PRAGMA user_version``).

Append a new string to upgrade; never edit an old one: stores in the field have run it.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the walking skeleton
    """
    CREATE TABLE windows (
        id INTEGER PRIMARY KEY,
        bot_id TEXT NOT NULL,
        report_id INTEGER NOT NULL,
        from_date TEXT NOT NULL,
        to_date TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        losses INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        submitted_at REAL,
        accepted_at REAL,
        rows_archived INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (bot_id, report_id, from_date, to_date)
    );
    CREATE INDEX windows_state ON windows (state, from_date);
    CREATE TABLE api_answers (
        id INTEGER PRIMARY KEY,
        window_id INTEGER REFERENCES windows (id),
        at REAL NOT NULL,
        method TEXT NOT NULL,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE mailbox_position (
        folder TEXT PRIMARY KEY,
        uidvalidity INTEGER NOT NULL,
        last_uid INTEGER NOT NULL
    );
    CREATE TABLE emails (
        folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        message_id TEXT,
        sender TEXT,
        subject TEXT,
        outcome TEXT NOT NULL,
        reason TEXT,
        at REAL NOT NULL,
        PRIMARY KEY (folder, uidvalidity, uid)
    );
    CREATE TABLE attachments (
        sha256 TEXT PRIMARY KEY,
        filename TEXT,
        size INTEGER NOT NULL,
        window_id INTEGER REFERENCES windows (id),
        bot_id TEXT,
        outcome TEXT NOT NULL,
        rows_read INTEGER NOT NULL DEFAULT 0,
        rows_written INTEGER NOT NULL DEFAULT 0,
        rows_duplicate INTEGER NOT NULL DEFAULT 0,
        rows_rejected INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        at REAL NOT NULL
    );
    """,
    # 2: messages that need a person (issue 12): each email moved to the failed folder (or
    # left flagged) with its reason, until `ingest retry --failed` gets it archived.
    """
    CREATE TABLE failed_messages (
        folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        message_id TEXT,
        sha256 TEXT,
        reason TEXT NOT NULL,
        place TEXT,
        state TEXT NOT NULL DEFAULT 'failed',
        attempts INTEGER NOT NULL DEFAULT 1,
        failed_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (folder, uidvalidity, uid)
    );
    CREATE INDEX failed_messages_state ON failed_messages (state, failed_at);
    """,
    # 3: conflicts: a row refused because its (bot_id, id) is archived with other content
    """
    CREATE TABLE conflicts (
        id INTEGER PRIMARY KEY,
        bot_id TEXT NOT NULL,
        row_id INTEGER NOT NULL,
        row INTEGER NOT NULL,
        existing_hash TEXT NOT NULL,
        new_hash TEXT NOT NULL,
        existing_source TEXT NOT NULL,
        new_source TEXT NOT NULL,
        existing_file TEXT NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX conflicts_bot ON conflicts (bot_id, row_id);
    """,
    # 4: each `ingest verify` run's outcome (issue 17): the evidence report shows the last one
    """
    CREATE TABLE verify_runs (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        version TEXT NOT NULL,
        root TEXT NOT NULL,
        ok INTEGER NOT NULL,
        problems INTEGER NOT NULL,
        files INTEGER NOT NULL,
        rows INTEGER NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # 5: routing (issue 27): how each window is archived (via: 'get' or 'email'; NULL until
    # routed), the GET spans of a window being fetched (so a killed run resumes without
    # refetching the done ones), and the GET pacing the job honours (key/value notes).
    """
    ALTER TABLE windows ADD COLUMN via TEXT;
    CREATE TABLE get_spans (
        id INTEGER PRIMARY KEY,
        window_id INTEGER NOT NULL REFERENCES windows (id),
        from_date TEXT NOT NULL,
        to_date TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        rows INTEGER NOT NULL DEFAULT 0,
        sha256 TEXT,
        updated_at REAL NOT NULL,
        UNIQUE (window_id, from_date, to_date)
    );
    CREATE TABLE notes (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
