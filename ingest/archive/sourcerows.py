"""The rows one report brought: a :class:`~ingest.archive.forget.Selection` for the erasure
engine, so that a report a person rejected (``ingest resolve``) leaves the tables exactly as
an erased subject's rows do (one Delta commit per table, superseded files vacuumed at once,
an erasure record and an audit record).

Every archived row carries the sha256 of the report it came from (``source_sha256``), so
the rows are found by it. The report's raw copy is left as it is: like a report set aside
as unmatched in ``quarantine/``, the original bytes stay as the evidence of what arrived
(``ingest erase`` still rewrites it for a subject's rows).

Example::

    selection = SourceSelection("ab12...", "bot-uuid")
    found = plan(storage, selection, kind="resolve")
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

SOURCE_COLUMN = "source_sha256"


@dataclass(frozen=True)
class SourceSelection:
    """Every row of one bot whose ``source_sha256`` is this report's."""

    sha256: str
    bot_id: str

    def partition(self, dataset: str, bot_id: str, day: date) -> bool:
        return bot_id == self.bot_id

    def rows(self, columns: pl.Schema) -> pl.Expr | None:
        if SOURCE_COLUMN not in columns.names():
            return None
        return (pl.col(SOURCE_COLUMN) == self.sha256).fill_null(False)

    def record(self, bot_id: str, header: list[str], cells: list[str]) -> bool:
        return False  # raw copies are kept: see the module docstring

    def candidate(self, record: bytes) -> bool:
        return False

    def raw_wanted(self, bot_id: str, days: list[date]) -> bool:
        return False

    def needles(self) -> list[bytes]:
        return []
