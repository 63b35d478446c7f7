"""Archive report files: match each to its export window, parse, write, record.

Used for emailed attachments (the watcher), for files that arrived some other way
(`ingest import`, :mod:`ingest.pipeline.file_import`) and for the report a person names
(`ingest resolve`); what becomes of each is written by :mod:`ingest.pipeline.report_outcomes`.
A report is identified by the sha256 of its bytes: the same bytes are never archived twice,
whatever folder, UID or path they come from.

Example::

    summary = RunSummary()
    archive_email(Path("archive"), store, parse_email(raw), summary)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ingest.archive.datasets import save_typed_report
from ingest.archive.storage import Storage, sha256_bytes, sha256_file
from ingest.archive.stream import stage_csv
from ingest.errors import ReportRejected
from ingest.mail.attachments import ParsedEmail, ReportFile
from ingest.parse.reports import MAX_WHOLE_REPORT_BYTES, read_report
from ingest.pipeline.matching import Evidence, closed_without_a_name, match_window, unnamed_closure
from ingest.pipeline.report_outcomes import (
    closed_by,
    message_id_in,
    record_archived,
    set_aside,
    set_aside_conflict,
)
from ingest.pipeline.summary import RunSummary
from ingest.report_types import MESSAGE_REPORT_ID
from ingest.state.store import Store
from ingest.state.windows import TRANSITIONS, Window, WindowState

log = logging.getLogger(__name__)
S = WindowState


def archive_email(
    root: Storage | Path,
    store: Store,
    parsed: ParsedEmail,
    summary: RunSummary,
    account: tuple[str, ...] = (),
) -> str:
    """Archive each report file of an email sent to ``account`` (its normalised addresses,
    :func:`ingest.mail.recipients.account_addresses`; empty: not checked). Returns the
    email's outcome."""
    for problem in parsed.problems:
        summary.problems.append(f"email {parsed.message_id}: {problem}")
    if not parsed.reports:
        return "no_report" if not parsed.problems else "quarantined"
    siblings: set[str] = set()  # the email's reports archived so far: one delivery, no conflict
    outcomes = {
        archive_report(root, store, report, parsed, summary, account=account, siblings=siblings)
        for report in parsed.reports
    }
    if outcomes <= {"archived", "duplicate"} and not parsed.problems:
        return "archived"
    # A report in conflict waits like an unmatched one: the email stays where it is.
    return "unmatched" if outcomes & {"unmatched", "conflict"} else "quarantined"


def email_provenance(parsed: ParsedEmail) -> dict[str, object]:
    """The email facts a manifest records."""
    return {
        "email": {
            "message_id": parsed.message_id,
            "from": parsed.sender,
            "date": parsed.date,
            "subject": parsed.subject,
            "received_at": parsed.received_at,
            "authentication_results": parsed.authentication_results,
        }
    }


def archive_report(
    root: Storage | Path,
    store: Store,
    report: ReportFile,
    parsed: ParsedEmail,
    summary: RunSummary,
    *,
    bot_id: str | None = None,
    provenance: dict[str, object] | None = None,
    on_rows: Callable[[int], None] | None = None,
    report_id: int = MESSAGE_REPORT_ID,
    account: tuple[str, ...] = (),
    for_window: Window | None = None,
    siblings: set[str] | None = None,
) -> str:
    """Match one report file to its window (or take ``bot_id`` for an import, or the window
    a person named: ``for_window``, see :mod:`ingest.ops.resolve`), then read,
    check and write it in bounded memory (ingest.archive.stream), and record it.
    ``siblings``: the sha256s of the same email's reports archived before this one (a
    window one of them closed is this one's too: the parts of one email are one delivery).
    Returns "archived", "duplicate", "unmatched", "conflict" or "quarantined"."""
    # `ingest import FILE.csv`: the file is hashed while it is staged (the raw copy's single
    # pass, in its own thread), not in a pass of its own first; a known file is discarded after.
    deferred = report.path is not None and bot_id is not None and report_id == MESSAGE_REPORT_ID
    sha = (
        "" if deferred else sha256_file(report.path) if report.path is not None else sha256_bytes(report.data)
    )
    if not deferred and _known(store, sha):
        summary.reports_duplicate += 1
        return "duplicate"
    if for_window is None and bot_id is None and _rejected(store, sha, report.filename):
        summary.reports_duplicate += 1  # settled by a person: handled, never archived again
        return "duplicate"
    provenance = dict(provenance or email_provenance(parsed))
    window: Window | None = for_window
    named = True  # an import names its bot by hand; ingest resolve names the window
    if window is None and bot_id is None:
        bots = {w.bot_id for w in store.windows()}
        evidence = Evidence.of(report.filename, parsed, bots, account)
        found = match_window(store, evidence)
        window, named = found.window, found.named
        if window is None:
            closed = closed_without_a_name(store, evidence)
            if closed is not None and closed_by(store, closed, siblings):
                window = closed  # an earlier part of this very email closed it
            elif closed is not None:
                also = found.reason if found.reason.startswith("it could answer any of") else ""
                return set_aside_conflict(root, store, sha, report, parsed, provenance, summary, closed, also)
            else:
                if evidence.elsewhere:  # another account's mail: say which email, whatever the log format
                    summary.problems.append(
                        f"email {parsed.message_id or '?'} ({report.filename}): {evidence.elsewhere}"
                    )
                return set_aside(root, store, sha, report, provenance, summary, "unmatched", found.reason)
        elif (
            named
            and window.state is S.ARCHIVED
            and unnamed_closure(store, window, sha) is not None
            and not closed_by(store, window, siblings)
        ):
            return set_aside_conflict(root, store, sha, report, parsed, provenance, summary, window)
    if window is not None:
        bot_id, report_id = window.bot_id, window.report_id
        provenance["window"] = {
            "id": window.id,
            "bot_id": window.bot_id,
            "report_id": window.report_id,
            "from": window.from_date.isoformat(),
            "to": window.to_date.isoformat(),
            "matched_by": "person" if for_window else "named" if named else "only_candidate",
        }
    assert bot_id is not None
    if report_id != MESSAGE_REPORT_ID:
        return _archive_typed(
            root,
            store,
            report,
            summary,
            sha=sha,
            bot_id=bot_id,
            window=window,
            report_id=report_id,
            provenance=provenance,
            named=named,
            siblings=siblings,
        )
    try:
        staged = stage_csv(
            root,
            report.source,
            bot_id=bot_id,
            source_sha256=sha or None,
            window=(window.from_date, window.to_date) if window else None,
            on_rows=on_rows,
        )
    except ReportRejected as err:
        _fail_window(store, window, named, err)
        if not sha:  # deferred (a file imported by path): hashed while staged, which failed
            assert report.path is not None
            sha = sha256_file(report.path)
        named_bot = (
            {"bot_id": bot_id} if window is None else {}
        )  # an import's bot: an erasure's --bot finds it
        return set_aside(
            root, store, sha, report, {**provenance, **named_bot}, summary, "quarantined", str(err)
        )
    if deferred:
        sha = staged.sha256
        if _known(store, sha):
            staged.discard()
            summary.reports_duplicate += 1
            return "duplicate"
    if window is not None and staged.rows_valid == 0 and staged.rows_rejected:
        # Every row refused for this window: the match was wrong, not the data. Keep the
        # report aside (not recorded as archived, so a later delivery is tried again).
        staged.discard()
        return _set_aside_outside(root, store, sha, report, provenance, summary, window)
    result = staged.commit(raw_name=report.filename, provenance=provenance)
    return record_archived(
        store,
        report,
        summary,
        result,
        sha=sha,
        bot_id=bot_id,
        window=window,
        message_id=parsed.message_id,
        named=named,
        siblings=siblings,
    )


def _set_aside_outside(
    root: Storage | Path,
    store: Store,
    sha: str,
    report: ReportFile,
    provenance: dict[str, object],
    summary: RunSummary,
    window: Window,
) -> str:
    """A report every row of which lies outside its matched window: the match was wrong,
    not the data, so it is set aside as unmatched (a later delivery is tried again)."""
    reason = f"no row falls inside window {window.id} ({window.from_date}..{window.to_date})"
    return set_aside(root, store, sha, report, provenance, summary, "unmatched", reason)


def _known(store: Store, sha: str) -> bool:
    """Whether a report with these bytes was archived already."""
    known = store.attachment(sha)
    return known is not None and known["outcome"] == "archived"


def _rejected(store: Store, sha: str, filename: str) -> bool:
    """Whether a person rejected a report with these bytes (``ingest resolve``): the same
    bytes arriving again, in any email, are never archived again without a person (one who
    decides otherwise imports the file by hand, ``ingest import --bot``)."""
    known = store.attachment(sha)
    if known is None or known["outcome"] not in ("rejected", "removed"):
        return False
    log.warning(
        "%s (sha256 %s) arrived again: it was %s by ingest resolve (%s); not archived again",
        filename,
        sha[:16],
        known["outcome"],
        known["reason"] or "",
        extra={"sha256": sha},
    )
    return True


def _archive_typed(
    root: Storage | Path,
    store: Store,
    report: ReportFile,
    summary: RunSummary,
    *,
    sha: str,
    bot_id: str,
    window: Window | None,
    report_id: int,
    provenance: dict[str, object],
    named: bool = True,
    siblings: set[str] | None = None,
) -> str:
    """Report types 2-4: small aggregate files, read whole and typed on their evidence;
    one over :data:`~ingest.parse.reports.MAX_WHOLE_REPORT_BYTES` is quarantined unread."""
    if report.size > MAX_WHOLE_REPORT_BYTES:
        return set_aside(
            root,
            store,
            sha,
            report,
            provenance,
            summary,
            "quarantined",
            f"a type {report_id} report of {report.size} bytes is over the "
            f"{MAX_WHOLE_REPORT_BYTES} bytes such reports may have (they are read whole)",
        )
    data = report.data if report.path is None else report.path.read_bytes()
    span = (window.from_date, window.to_date) if window else None
    try:
        typed = read_report(data, report_id, window=span)
        if window is not None and typed.rows.height == 0 and typed.rejected.height:
            return _set_aside_outside(root, store, sha, report, provenance, summary, window)
        result = save_typed_report(
            root,
            typed,
            bot_id=bot_id,
            source_sha256=sha,
            raw=data,
            raw_name=report.filename,
            source_kind="csv",
            provenance=provenance,
        )
    except ReportRejected as err:
        _fail_window(store, window, named, err)
        return set_aside(root, store, sha, report, provenance, summary, "quarantined", str(err))
    return record_archived(
        store,
        report,
        summary,
        result,
        sha=sha,
        bot_id=bot_id,
        window=window,
        message_id=message_id_in(provenance),
        named=named,
        siblings=siblings,
    )


def _fail_window(store: Store, window: Window | None, named: bool, err: ReportRejected) -> None:
    """A broken report fails its window only when it names the window's bot: a report
    matched for want of any other candidate may be anybody's, and must not decide a
    window's fate (the window waits on, and is re-requested when its email stays away)."""
    if window is not None and named and S.FAILED in TRANSITIONS[window.state]:
        store.transition(window.id, S.FAILED, last_error=f"report rejected: {err}")
