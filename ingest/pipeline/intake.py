"""Archive report files: match each to its export window, parse, write, record.

Used for emailed attachments (the watcher), and for files that arrived some other way
(`ingest import`). A report is identified by the sha256 of its bytes: the same bytes are
never archived twice, whatever folder, UID or path they come from.

Example::

    summary = RunSummary()
    archive_email(Path("archive"), store, parse_email(raw), summary)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from ingest.archive.commit import SaveResult
from ingest.archive.datasets import save_typed_report
from ingest.archive.layout import manifest_key
from ingest.archive.rejects import quarantine_file
from ingest.archive.storage import Storage, as_storage, sha256_bytes, sha256_file
from ingest.archive.stream import stage_csv
from ingest.errors import IngestError, ReportRejected, one_line, stops_the_run
from ingest.mail.attachments import (
    Inflater,
    ParsedEmail,
    ReportFile,
    parse_email,
    reports_in_file,
    safe_name,
    scratch,
)
from ingest.parse.reports import MAX_WHOLE_REPORT_BYTES, read_report
from ingest.pipeline.matching import (
    UNNAMED,
    Evidence,
    closed_without_a_name,
    match_window,
    unnamed_closure,
)
from ingest.pipeline.summary import RunSummary, record_conflicts
from ingest.records import ReportManifest, load
from ingest.report_types import MESSAGE_REPORT_ID
from ingest.settings import check_bot_id
from ingest.state.store import TRANSITIONS, Store, Window, WindowState

log = logging.getLogger(__name__)
S = WindowState


def import_files(
    root: Storage | Path,
    store: Store,
    paths: list[Path],
    bot_id: str,
    summary: RunSummary,
    on_rows: Callable[[str, int], None] | None = None,
    report_id: int = MESSAGE_REPORT_ID,
    *,
    max_inflated_bytes: int | None = None,
    temp_dir: Path | None = None,
) -> None:
    """Archive files that arrived some other way (CSV, .csv.gz, .zip, .eml) for one bot.

    No window is required: rows are taken whatever their dates, deduplicated as usual.
    ``report_id`` says which report type they are (1 Message Data, 2-4 the others).
    Each file is its own unit: one that cannot be read (corrupt, encrypted, a bomb ...)
    becomes one line in ``summary.problems`` and the next file is imported; only what
    stops the run (:func:`ingest.errors.stops_the_run`) is raised. A compressed file
    inflates into a scratch folder in ``temp_dir``, at most ``max_inflated_bytes`` in all.
    """
    check_bot_id(bot_id, "bot id")  # it becomes a folder name and an S3 key part
    for path in paths:
        try:
            with scratch(temp_dir, prefix="ingest-import-") as workdir:
                _import_file(
                    root,
                    store,
                    Path(path),
                    bot_id,
                    summary,
                    on_rows,
                    report_id,
                    Inflater(max_inflated_bytes, Path(workdir)),
                )
        except Exception as err:  # noqa: BLE001 - the file boundary: one bad file is one problem
            if stops_the_run(err):
                raise
            log.warning("import %s failed: %s", path, one_line(err), exc_info=log.isEnabledFor(logging.DEBUG))
            summary.problems.append(f"{Path(path).name}: {one_line(err)}")


def _import_file(
    root: Storage | Path,
    store: Store,
    path: Path,
    bot_id: str,
    summary: RunSummary,
    on_rows: Callable[[str, int], None] | None,
    report_id: int,
    inflater: Inflater,
) -> None:
    """One file of :func:`import_files`, read as a stream (a .eml whole: it is mail)."""
    if (
        path.name.lower().endswith(".csv") and report_id == MESSAGE_REPORT_ID
    ):  # any size: streamed, never held in memory
        no_email = email_provenance(ParsedEmail(None, None, None, None, []))
        report = ReportFile(safe_name(path.name), b"", path=path)
        archive_report(
            root,
            store,
            report,
            ParsedEmail(None, None, None, None, []),
            summary,
            bot_id=bot_id,
            provenance={"import": {"path": str(path)}, **no_email},
            on_rows=functools.partial(on_rows, path.name) if on_rows else None,
        )
        return
    if path.name.lower().endswith(".eml"):
        parsed = parse_email(path.read_bytes(), inflater)
        problems = [f"{path.name}: {problem}" for problem in parsed.problems]
    else:
        parsed = ParsedEmail(None, None, None, None, [])
        problems = []
        try:
            parsed.reports = reports_in_file(path.name, path, inflater)
        except ReportRejected as err:
            problems.append(f"{path.name}: {err}")
    provenance: dict[str, object] = {"import": {"path": str(path)}, **email_provenance(parsed)}
    summary.problems.extend(problems)
    if not parsed.reports and not problems:
        summary.problems.append(f"{path}: no CSV report found in it")
    for report in parsed.reports:
        archive_report(
            root, store, report, parsed, summary, bot_id=bot_id, provenance=provenance, report_id=report_id
        )


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
            if closed is not None and _closed_by(store, closed, siblings):
                window = closed  # an earlier part of this very email closed it
            elif closed is not None:
                also = found.reason if found.reason.startswith("it could answer any of") else ""
                return _set_aside_conflict(
                    root, store, sha, report, parsed, provenance, summary, closed, also
                )
            else:
                if evidence.elsewhere:  # another account's mail: say which email, whatever the log format
                    summary.problems.append(
                        f"email {parsed.message_id or '?'} ({report.filename}): {evidence.elsewhere}"
                    )
                return _set_aside(root, store, sha, report, provenance, summary, "unmatched", found.reason)
        elif (
            named
            and window.state is S.ARCHIVED
            and unnamed_closure(store, window, sha) is not None
            and not _closed_by(store, window, siblings)
        ):
            return _set_aside_conflict(root, store, sha, report, parsed, provenance, summary, window)
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
        return _set_aside(
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
        return _set_aside(
            root,
            store,
            sha,
            report,
            provenance,
            summary,
            "unmatched",
            _outside(window),
        )
    result = staged.commit(raw_name=report.filename, provenance=provenance)
    return _record(
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


def _closed_by(store: Store, window: Window, siblings: set[str] | None) -> bool:
    """Whether every report naming no bot that closed ``window`` is one of ``siblings``."""
    closures = [
        a["sha256"]
        for a in store.window_attachments(window.id)
        if a["outcome"] == "archived" and a["reason"] == UNNAMED
    ]
    return bool(siblings) and bool(closures) and set(closures) <= (siblings or set())


def _outside(window: Window) -> str:
    """Why a report every row of which lies outside its matched window is set aside."""
    return f"no row falls inside window {window.id} ({window.from_date}..{window.to_date})"


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
        return _set_aside(
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
            return _set_aside(
                root,
                store,
                sha,
                report,
                provenance,
                summary,
                "unmatched",
                _outside(window),
            )
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
        return _set_aside(root, store, sha, report, provenance, summary, "quarantined", str(err))
    return _record(
        store,
        report,
        summary,
        result,
        sha=sha,
        bot_id=bot_id,
        window=window,
        message_id=_message_id(provenance),
        named=named,
        siblings=siblings,
    )


def _fail_window(store: Store, window: Window | None, named: bool, err: ReportRejected) -> None:
    """A broken report fails its window only when it names the window's bot: a report
    matched for want of any other candidate may be anybody's, and must not decide a
    window's fate (the window waits on, and is re-requested when its email stays away)."""
    if window is not None and named and S.FAILED in TRANSITIONS[window.state]:
        store.transition(window.id, S.FAILED, last_error=f"report rejected: {err}")


def _set_aside_conflict(
    root: Storage | Path,
    store: Store,
    sha: str,
    report: ReportFile,
    parsed: ParsedEmail,
    provenance: dict[str, object],
    summary: RunSummary,
    window: Window,
    also: str = "",
) -> str:
    """A second report for a window a report naming no bot closed: the earlier one may have
    been anybody's. Never dropped, never silently added: kept aside (quarantine, recorded
    with the window), both named, exit 1, until ``ingest resolve`` says which is right."""
    earlier = unnamed_closure(store, window, sha)
    assert earlier is not None
    first, second = str(earlier["sha256"]), sha
    reason = (
        f"conflict: window {window.id} ({window.bot_id} {window.from_date}..{window.to_date}) was closed by "
        f"{earlier['filename']} (sha256 {first[:16]}, email {_archived_message_id(root, first) or '?'}), "
        f"which named no bot; {report.filename} (sha256 {second[:16]}, email {parsed.message_id or '?'}) "
        f"answers it too{f' ({also})' if also else ''}: check which one is genuine, "
        f"then `ingest resolve --window {window.id} "
        f"--keep <sha256> --reason ...`"
    )
    quarantine_file(root, sha, report.source, report.filename, reason, provenance)
    store.record_attachment(
        sha,
        filename=report.filename,
        size=report.size,
        window_id=window.id,
        bot_id=window.bot_id,
        outcome="conflict",
        reason=reason,
    )
    summary.problems.append(reason)
    summary.set_aside.append(f"attachment {report.filename}: {reason}")
    log.warning("%s", reason, extra={"sha256": sha, "message_id": parsed.message_id, "window_id": window.id})
    return "conflict"


def _archived_message_id(root: Storage | Path, sha: str) -> str | None:
    """The Message-ID an archived report came in, from its manifest (None if unknown)."""
    try:
        manifest = load(ReportManifest, as_storage(root).read_bytes(manifest_key(sha)), manifest_key(sha))
    except (OSError, ValueError, IngestError):
        return None
    value = (manifest.email or {}).get("message_id")
    return str(value) if value else None


def _record(
    store: Store,
    report: ReportFile,
    summary: RunSummary,
    result: SaveResult,
    *,
    sha: str,
    bot_id: str,
    window: Window | None,
    message_id: str | None,
    named: bool = True,
    siblings: set[str] | None = None,
) -> str:
    """Record an archived report in the state store and the window's progress."""
    store.record_attachment(
        sha,
        filename=report.filename,
        size=report.size,
        window_id=window.id if window else None,
        bot_id=bot_id,
        outcome="archived",
        **result.counts(),
        reason=None if named or window is None else UNNAMED,
    )
    record_conflicts(store, report.filename, result, summary.problems)  # loud: status shows them, exit 1
    if siblings is not None:
        siblings.add(sha)
    if window is not None and window.state is not S.ARCHIVED:
        store.transition(window.id, S.DELIVERED)
        store.transition(window.id, S.ARCHIVED, rows_archived=window.rows_archived + result.rows_written)
    elif window is not None and _closed_by(store, window, siblings):  # a later part of the email
        now = store.window(window.id)
        store.transition(window.id, now.state, rows_archived=now.rows_archived + result.rows_written)
    summary.reports_archived += 1
    summary.add_saved(result)
    if result.rows_rejected:
        summary.reports_quarantined += 1
    log.info(
        "archived %s for bot %s: %d rows read, %d written, %d duplicate, %d rejected",
        report.filename,
        bot_id,
        result.rows_read,
        result.rows_written,
        result.rows_duplicate,
        result.rows_rejected,
        extra={
            "window_id": window.id if window else None,
            "bot_id": bot_id,
            "sha256": sha,
            "message_id": message_id,
        },
    )
    return "archived"


def _set_aside(
    root: Storage | Path,
    store: Store,
    sha: str,
    report: ReportFile,
    provenance: dict[str, object],
    summary: RunSummary,
    outcome: str,
    reason: str,
) -> str:
    quarantine_file(root, sha, report.source, report.filename, f"{outcome}: {reason}", provenance)
    store.record_attachment(
        sha,
        filename=report.filename,
        size=report.size,
        window_id=None,
        bot_id=str(provenance["bot_id"]) if provenance.get("bot_id") else None,
        outcome=outcome,
        reason=reason,
    )
    if outcome == "unmatched":
        summary.reports_unmatched += 1
    else:
        summary.reports_quarantined += 1
    summary.set_aside.append(f"attachment {report.filename}: {reason}")
    log.warning(
        "%s %s: %s",
        outcome,
        report.filename,
        reason,
        extra={"sha256": sha, "message_id": _message_id(provenance)},
    )
    return outcome


def _message_id(provenance: dict[str, object]) -> str | None:
    email = provenance.get("email")
    return email.get("message_id") if isinstance(email, dict) else None
