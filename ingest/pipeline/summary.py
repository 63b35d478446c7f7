"""Row accounting shared by every path into the archive.

The invariant users rely on: ``rows_read == rows_written + rows_duplicate + rows_rejected``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Saved(Protocol):
    """What a write reports (``ingest.archive.writer.SaveResult``)."""

    rows_read: int
    rows_written: int
    rows_duplicate: int
    rows_rejected: int
    files: list  # type: ignore[type-arg]


@dataclass
class RowCounts:
    """Rows read, written, skipped as duplicates and rejected, and files written."""

    rows_read: int = 0
    rows_written: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    files_written: int = 0

    def add_saved(self, result: Saved) -> None:
        """Count one archived report."""
        self.rows_read += result.rows_read
        self.rows_written += result.rows_written
        self.rows_duplicate += result.rows_duplicate
        self.rows_rejected += result.rows_rejected
        self.files_written += len(result.files)

    def add_counts(self, other: "RowCounts") -> None:
        """Add another tally's row and file counts."""
        self.rows_read += other.rows_read
        self.rows_written += other.rows_written
        self.rows_duplicate += other.rows_duplicate
        self.rows_rejected += other.rows_rejected
        self.files_written += other.files_written

    @property
    def balanced(self) -> bool:
        """Nothing lost: every row read is written, a duplicate, or rejected."""
        return self.rows_read == self.rows_written + self.rows_duplicate + self.rows_rejected
