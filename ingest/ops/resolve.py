"""``ingest resolve``: a person says which of a window's reports in conflict is right.

A window closed by a report that named no bot may have been closed by anybody's report (a
vendor that names nothing leaves no other evidence). When a second report for the same
window arrives it is kept aside as a *conflict* (:mod:`ingest.pipeline.intake`), both are
named by ``ingest status`` and the evidence report, and the run exits 1 until a person
decides::

    ingest resolve --window 7 --keep 3fa2c1d0 --reason "vendor confirmed ticket 881" --apply

The kept report is the window's from then on. Every other one is rejected: one that was
archived leaves the tables through the erasure engine (:mod:`ingest.archive.forget` with
:class:`~ingest.archive.sourcerows.SourceSelection`: one Delta commit per table, superseded
files vacuumed at once, an erasure record, an audit record); one that was kept aside stays
in ``quarantine/`` as the evidence of what arrived. A kept report that was aside is then
archived for the window from its quarantined original. Every resolution leaves one audit
record naming the window, the report kept and those rejected. Rows under a legal hold are
never removed: the resolution is refused (exit 1) until a person lifts the hold. Dry run
unless ``apply``.
Run again after a crash, it finishes what is left (each step is idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ingest.archive import audit, holds
from ingest.archive.forget import Plan, forget, plan
from ingest.archive.layout import original_key, reasons_key, rejected_rows_key
from ingest.archive.manifests import listed_files, read_manifests
from ingest.archive.sourcerows import SourceSelection
from ingest.archive.storage import Storage, local_copy
from ingest.archive.stream import stage_csv
from ingest.errors import ConfigError, IngestError, ReportRejected, UnderLegalHold, one_line
from ingest.mail.attachments import ParsedEmail, ReportFile
from ingest.parse.reports import read_report
from ingest.pipeline.intake import archive_report
from ingest.pipeline.summary import RunSummary
from ingest.records import QuarantineReasons, load
from ingest.report_types import MESSAGE_REPORT_ID
from ingest.state.store import Store
from ingest.state.windows import Window

#: Outcomes of a window's reports that take part in a conflict.
IN_CONFLICT = ("archived", "conflict")
#: The shortest sha256 prefix ``--keep`` accepts (a typo must not pick a report).
MIN_PREFIX = 8


@dataclass
class Resolution:
    """What ``ingest resolve`` did (or, in a dry run, would do)."""

    window: Window
    kept: dict[str, Any]
    rejected: list[dict[str, Any]]
    rows_removed: int = 0
    applied: bool = False
    erasures: list[str] = field(default_factory=list)
    audit: str = ""
    summary: RunSummary = field(default_factory=RunSummary)


def reports_of(store: Store, window_id: int) -> tuple[Window, list[dict[str, Any]]]:
    """The window and its reports in conflict (the archived ones and those kept aside);
    a ConfigError (exit 2) when it has no conflict to resolve."""
    try:
        window = store.window(window_id)
    except IngestError:
        raise ConfigError(f"--window {window_id}: no such export window (ingest status lists them)") from None
    reports = [a for a in store.window_attachments(window_id) if a["outcome"] in IN_CONFLICT]
    if not any(a["outcome"] == "conflict" for a in reports):
        raise ConfigError(
            f"--window {window_id}: no reports in conflict for this window (ingest status lists them)"
        )
    return window, reports


def chosen(reports: list[dict[str, Any]], keep: str, window_id: int) -> dict[str, Any]:
    """The report ``keep`` (a sha256 or a prefix of at least :data:`MIN_PREFIX`) names."""
    prefix = keep.strip().lower()
    named = [a for a in reports if len(prefix) >= MIN_PREFIX and str(a["sha256"]).startswith(prefix)]
    if len(named) != 1:
        listed = ", ".join(f"{str(a['sha256'])[:16]} ({a['filename']})" for a in reports)
        raise ConfigError(
            f"--keep {keep!r} names {'none' if not named else 'several'} of window {window_id}'s reports "
            f"({listed}); give at least {MIN_PREFIX} characters of one's sha256"
        )
    return named[0]


def resolve(
    storage: Storage, store: Store, window_id: int, keep: str, *, reason: str, actor: str, apply: bool
) -> Resolution:
    """Keep one of the window's reports in conflict and reject the others (module docstring)."""
    window, reports = reports_of(store, window_id)
    kept = chosen(reports, keep, window_id)
    rejected = [a for a in reports if a is not kept]
    done = Resolution(window, kept, rejected)
    if apply and not reason.strip():
        raise ConfigError("a resolution needs a --reason (it is kept in the audit log)")
    if kept["outcome"] == "conflict":  # before anything changes, also in a dry run
        _check_archivable(storage, window, kept)
    meta = {"window": window.id, "bot_id": window.bot_id, "kept": kept["sha256"]}
    for other in rejected:
        if other["outcome"] != "archived":
            continue
        selection = SourceSelection(str(other["sha256"]), window.bot_id)
        found = plan(storage, selection, kind="resolve")
        _refuse_held(storage, found, str(other["sha256"]))
        done.rows_removed += sum(found.rows_by_table().values())
        if not apply:
            continue
        found.meta.update({**meta, "removed": other["sha256"]})
        outcome = forget(storage, selection, found, actor=actor, reason=reason)
        if outcome.record:
            done.erasures.append(outcome.record)
            done.audit = outcome.audit
    if not apply:
        return done
    prefix = f"ingest resolve: window {window.id} keeps {str(kept['sha256'])[:16]}:"
    note = f"{prefix} {reason}"
    for other in rejected:
        store.settle_attachment(
            str(other["sha256"]), "removed" if other["outcome"] == "archived" else "rejected", note
        )
    if kept["outcome"] == "conflict":
        _archive_kept(storage, store, window, kept, done.summary)
    else:  # a person vouched for it: no longer a report that named nothing
        store.settle_attachment(str(kept["sha256"]), "archived", None)
    # The window's row count is its archived reports' from now on (status sums them): the
    # rows each wrote, and those it found there already (a run killed after its commit).
    kept_rows = sum(
        a["rows_written"] + a["rows_duplicate"]
        for a in store.window_attachments(window.id)
        if a["outcome"] == "archived"
    )
    store.transition(window.id, window.state, rows_archived=kept_rows)
    # A run killed after it settled some reports left them settled: named here all the same.
    settled = [
        {**a, "outcome": "archived" if a["outcome"] == "removed" else "conflict"}
        for a in store.window_attachments(window.id)
        if str(a["reason"] or "").startswith(prefix) and all(a["sha256"] != r["sha256"] for r in rejected)
    ]
    body = {
        "kind": "resolve",
        **meta,
        "rejected": [
            {"sha256": a["sha256"], "filename": a["filename"], "was": a["outcome"]}
            for a in [*rejected, *settled]
        ],
        "erasures": done.erasures,
        "rows_removed": done.rows_removed,
    }
    done.audit = audit.append(storage, body, actor=actor, reason=reason)
    done.applied = True
    return done


def _check_archivable(storage: Storage, window: Window, kept: dict[str, Any]) -> None:
    """Refuse (ReportRejected, exit 1, nothing changed) a kept report aside whose
    quarantined original is missing, is not what the conflict recorded (an erasure's
    rewrite, named in its erasure record, is), or cannot be archived for ``window``."""
    sha, name = str(kept["sha256"]), str(kept["filename"])
    key = original_key(sha, name)
    if not storage.exists(key):
        raise ReportRejected(
            f"refused, nothing changed: the kept report's quarantined original {key} is missing",
            hint="restore the file, or keep another report",
        )
    now = storage.sha256(key)
    if now != sha:
        rewrite = listed_files(read_manifests(storage)).rewritten.get(key)
        if rewrite is None or rewrite[1].new_sha256 != now:
            raise ReportRejected(
                f"refused, nothing changed: the kept report's quarantined original {key} is not what "
                f"the conflict recorded (sha256 {str(now)[:16]}, not {sha[:16]})",
                hint="restore the file, or keep another report",
            )
    local, temporary = local_copy(storage, key)
    try:
        _read_for(storage, window, local, now or sha)
    except ReportRejected as err:
        raise ReportRejected(
            f"refused, nothing changed: the kept report {sha[:16]} cannot be archived for window "
            f"{window.id}: {one_line(err)}",
            hint="keep another report",
        ) from None
    finally:
        if temporary:
            local.unlink(missing_ok=True)


def _read_for(storage: Storage, window: Window, path: Path, sha: str) -> None:
    """Read and check the report at ``path`` for ``window`` as archiving would, writing
    nothing: ReportRejected when it cannot be archived, or no row of it is the window's."""
    span = (window.from_date, window.to_date)
    if window.report_id != MESSAGE_REPORT_ID:
        typed = read_report(path.read_bytes(), window.report_id, window=span)
        if typed.rows.height == 0 and typed.rejected.height:  # as intake: every row refused
            raise ReportRejected(f"no row falls inside {window.from_date}..{window.to_date}")
        return
    staged = stage_csv(storage, path, bot_id=window.bot_id, source_sha256=sha, window=span)
    try:
        if staged.rows_valid == 0 and staged.rows_rejected:  # as intake: every row refused
            raise ReportRejected(f"no row falls inside {window.from_date}..{window.to_date}")
    finally:
        staged.discard()


def _refuse_held(storage: Storage, found: Plan, sha: str) -> None:
    """Held data is never removed, whoever's it may be: a person lifts the hold first."""
    in_force = holds.active(storage)
    for change in found.files:
        covering = holds.covering(in_force, change.bot_id, date.fromisoformat(change.day))
        if covering:
            raise UnderLegalHold(
                f"refused: rows of report {sha[:16]} on {change.bot_id} {change.day} are under legal hold "
                f"{covering[0].id} ({covering[0].span()}): {covering[0].reason}",
                hint="a person decides: lift it with `ingest hold remove` first, or keep that report",
            )


def _archive_kept(
    storage: Storage, store: Store, window: Window, kept: dict[str, Any], summary: RunSummary
) -> None:
    """Archive a report kept aside in conflict for ``window``, from its quarantined
    original; then the original and the conflict's reason go (its bytes are the raw copy
    now). Killed before, the next ``ingest resolve`` archives it (it is still in conflict)."""
    sha, name = str(kept["sha256"]), str(kept["filename"])
    key = original_key(sha, name)
    provenance = _provenance(storage, sha)
    local, temporary = local_copy(storage, key)
    local_sha = storage.sha256(key) or sha
    try:
        outcome = archive_report(
            storage,
            store,
            ReportFile(name, b"", path=local),
            ParsedEmail(None, None, None, None, []),
            summary,
            provenance=provenance,
            for_window=window,
        )
    finally:
        if temporary:
            local.unlink(missing_ok=True)
    if outcome == "archived" and local_sha != sha:
        # An erasure rewrote the original: archived under its new sha256; the recorded bytes
        # (which held the erased rows) are settled, never archived again.
        store.settle_attachment(sha, "rejected", f"rewritten by an erasure; archived as {local_sha[:16]}")
    if outcome != "archived":
        raise ConfigError(
            f"the kept report {sha[:16]} could not be archived ({'; '.join(summary.set_aside) or outcome}); "
            "the others were rejected: see ingest status"
        )
    storage.delete(key)
    # The conflict's reason goes too, unless the report's rejected rows are kept there now.
    if not storage.exists(rejected_rows_key(sha)):
        storage.delete(reasons_key(sha))


def _provenance(storage: Storage, sha: str) -> dict[str, Any]:
    """The email facts kept with a report set aside (its ``reason.json``), minus the reason."""
    try:
        record = load(QuarantineReasons, storage.read_bytes(reasons_key(sha)), reasons_key(sha))
    except (OSError, ValueError, IngestError):
        return {}
    doc = record.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return {k: v for k, v in doc.items() if k not in ("reason", "format_version")}
