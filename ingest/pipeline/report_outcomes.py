"""What becomes of a report once its fate is known, written to the archive and the state
store together: archived (its window advanced), set aside (unmatched or quarantined), or
kept aside as a conflict until ``ingest resolve`` says which report is right."""

from __future__ import annotations

import logging
from pathlib import Path

from ingest.archive.commit import SaveResult
from ingest.archive.layout import manifest_key
from ingest.archive.rejects import quarantine_file
from ingest.archive.storage import Storage, as_storage
from ingest.errors import IngestError
from ingest.mail.attachments import ParsedEmail, ReportFile
from ingest.pipeline.matching import UNNAMED, unnamed_closure
from ingest.pipeline.summary import RunSummary, record_conflicts
from ingest.records import ReportManifest, load
from ingest.state.store import Store
from ingest.state.windows import Window, WindowState

log = logging.getLogger(__name__)
S = WindowState


def closed_by(store: Store, window: Window, siblings: set[str] | None) -> bool:
    """Whether every report naming no bot that closed ``window`` is one of ``siblings``."""
    closures = [
        a["sha256"]
        for a in store.window_attachments(window.id)
        if a["outcome"] == "archived" and a["reason"] == UNNAMED
    ]
    return bool(siblings) and bool(closures) and set(closures) <= (siblings or set())


def set_aside_conflict(
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


def record_archived(
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
    elif window is not None and closed_by(store, window, siblings):  # a later part of the email
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


def set_aside(
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
        extra={"sha256": sha, "message_id": message_id_in(provenance)},
    )
    return outcome


def message_id_in(provenance: dict[str, object]) -> str | None:
    email = provenance.get("email")
    return email.get("message_id") if isinstance(email, dict) else None
