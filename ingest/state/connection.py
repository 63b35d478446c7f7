"""The store's connection and its transactions, shared by the record mixins.

The store's methods are grouped by what they record (:mod:`ingest.state.windows`,
:mod:`ingest.state.emails`, :mod:`ingest.state.reports`); each group needs the one SQLite
connection and the rule that every public method is one transaction, which live here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


class Connected:
    """The SQLite connection a store holds; each public method of a subclass is one
    transaction (:meth:`_tx`), and nested use joins the outer one."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    def _tx(self) -> Transaction:
        return Transaction(self._conn)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()


class Transaction:
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
