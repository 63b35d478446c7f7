"""What a run did: row accounting shared by every path into the archive, and the counters
of a pass (windows, emails, reports) the CLI prints and the metrics export.

The invariant users rely on: ``rows_read == rows_written + rows_duplicate + rows_rejected``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ingest.archive.commit import SaveResult
from ingest.state.store import Store


@dataclass
class RowCounts:
    """Rows read, written, skipped as duplicates and rejected, and files written."""

    rows_read: int = 0
    rows_written: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    files_written: int = 0

    def add_saved(self, result: SaveResult) -> None:
        """Count one archived report."""
        self.rows_read += result.rows_read
        self.rows_written += result.rows_written
        self.rows_duplicate += result.rows_duplicate
        self.rows_rejected += result.rows_rejected
        self.files_written += len(result.files)

    def add_counts(self, other: RowCounts) -> None:
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


@dataclass
class FetchSummary(RowCounts):
    """What a GET fetch did."""

    requests: int = 0
    windows_archived: int = 0
    reports_quarantined: int = 0  # answers with rejected rows (bad values, outside the dates asked)
    throttled: int = 0  # GETs answered 429
    waiting_until: float = 0.0  # epoch: GET stopped for a Retry-After or back-off until then
    bisected: int = 0
    fallback_days: list[date] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # conflicts: the run needs a person


@dataclass
class RunSummary(RowCounts):
    """What a pass (or several) did, for the CLI and for tests."""

    submitted: int = 0
    accepted: int = 0
    deferred: int = 0
    failed: int = 0
    lost: int = 0
    emails_seen: int = 0
    emails_ignored: int = 0
    emails_archived: int = 0
    emails_failed: int = 0  # caught at the message boundary: in the failed folder, see status
    reports_archived: int = 0
    reports_duplicate: int = 0
    reports_unmatched: int = 0
    reports_quarantined: int = 0
    get_requests: int = 0  # GETs answered (routing auto or get, `ingest fetch`)
    heavy_days: int = 0  # days of 500+ rows GET handed to email
    get_throttled: int = 0  # GETs answered 429 (slow down)
    get_waiting_until: float = 0.0  # epoch: GET waits (Retry-After, back-off) until then
    problems: list[str] = field(default_factory=list)
    #: "attachment <name>: <reason>" for each report quarantined or unmatched as a whole:
    #: the watcher gives an email's reasons to the failed-message record.
    set_aside: list[str] = field(default_factory=list)

    def add(self, other: RunSummary) -> None:
        """Add another pass's counts (every integer field) and problems."""
        for name, value in vars(other).items():
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)
        self.problems.extend(other.problems)
        self.set_aside.extend(other.set_aside)
        self.get_waiting_until = other.get_waiting_until  # the latest pass's word

    def add_fetch(self, fetched: FetchSummary) -> None:
        """Count what the GET fast path archived."""
        self.reports_archived += fetched.windows_archived
        self.reports_quarantined += fetched.reports_quarantined
        self.get_requests += fetched.requests
        self.heavy_days += len(fetched.fallback_days)
        self.get_throttled += fetched.throttled
        self.get_waiting_until = fetched.waiting_until  # the latest pass's word
        self.add_counts(fetched)
        self.problems.extend(fetched.problems)

    @property
    def only_throttled(self) -> bool:
        """The API answered nothing but 429 (slow down), or GET still waits out an earlier
        one: nothing done, run again later."""
        return bool(
            (self.get_throttled or self.get_waiting_until)
            and not (self.get_requests or self.submitted or self.accepted or self.reports_archived)
        )

    @property
    def needs_attention(self) -> bool:
        """True when a person should look: failures, quarantine or unmatched reports."""
        return bool(
            self.failed
            or self.reports_unmatched
            or self.reports_quarantined
            or self.problems
            or self.emails_failed
        )


def record_conflicts(store: Store, name: str, result: SaveResult, problems: list[str]) -> None:
    """Conflicts are loud, whichever path found them: recorded in the state store (shown by
    ``ingest status``) and a problem of the run (exit 1)."""
    if not result.conflicts:
        return
    store.record_conflicts(result.conflicts)
    problems.append(
        f"{name}: {result.rows_conflict} row(s) in conflict with archived rows, "
        f"quarantined ({result.conflicts[0]['reason']})"
    )
