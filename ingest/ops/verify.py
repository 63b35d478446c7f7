"""``ingest verify``: prove the archive is what its manifests say, and show what it covers.

The data checked is what readers see: each dataset's Delta table snapshot (current, or at
``--as-of`` a version or a timestamp). Problems (failures, each naming the file): a file of
the snapshot no manifest lists, or differing from its manifest (sha256, Parquet row count,
the Delta log's row count), or missing on disk; a bot user of a file the subject index
covers missing from it; a listed file not in the snapshot and not
replaced by a recorded compaction; a replaced file the table still reads; an orphan data
file on disk that no commit added (a crash between data file and commit, or a leftover
temporary file: readers globbing ``*.parquet`` see it; ``ingest vacuum`` removes it); a raw
file not hashing to its name or differing from its manifest, or with no manifest, or
missing; a duplicate ``(bot_id, id)``; a row outside its UTC date partition; an unreadable
file or table; manifest counts that do not add up; rows quarantined as conflicts (an id
archived with other content, see :mod:`ingest.archive.conflicts`). Files a compaction
replaced stay on disk until vacuum: not a problem. Coverage (days with rows, days without
rows inside the requested windows, windows not archived) is informational.
Bounded memory: 1 MiB hash blocks; row checks are lazy polars queries, streaming engine.
Example: ``report = verify_archive(Path("/data"), store); print(render_text(report))``
"""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

from deltalake.exceptions import DeltaError

from ingest.archive import audit, holds
from ingest.archive.compact import ALL_DATASETS
from ingest.archive.delta import open_table
from ingest.archive.forget import pending
from ingest.archive.layout import FORGETTING, is_data_file, is_raw, salt_key
from ingest.archive.manifests import Manifest, forgotten_days, listed_files, read_manifests
from ingest.archive.snapshot import snapshot_files
from ingest.archive.storage import LocalStorage, Storage, as_storage
from ingest.archive.subjects import check_archive
from ingest.errors import IngestError, one_line
from ingest.ops import verify_checks as checks
from ingest.ops.auditkey import SUFFIX as AUDIT_KEY_SUFFIX
from ingest.ops.verify_report import BotCoverage, VerifyReport, render_text, to_json
from ingest.records import (
    CompactionRecord,
    ErasureBody,
    ErasureRecord,
    ReportManifest,
)
from ingest.report_types import MESSAGE_REPORT_ID
from ingest.state.store import Store
from ingest.state.windows import WindowState


def verify_archive(
    root: Storage | Path, store: Store | None = None, as_of: int | str | None = None
) -> VerifyReport:
    """Re-hash and cross-check the archive (a local folder or an S3 prefix) against its
    manifests. With a ``store``, its archived windows count as requested; windows not
    archived are listed. The data files checked are those of each dataset's Delta table:
    its current snapshot, or the one at ``as_of`` (a table version, or an ISO timestamp)."""
    storage = as_storage(root)
    if isinstance(storage, LocalStorage) and not storage.root.is_dir():
        return VerifyReport(storage.describe(), [f"{storage.describe()}: archive root does not exist"])
    report = VerifyReport(storage.describe())
    objects = storage.objects("")
    on_disk = [o.key for o in objects if is_data_file(o.key)]
    snapshot = _snapshots(storage, report, on_disk, as_of)
    present = set(on_disk)
    data = sorted(k for k in snapshot if k in present)  # the table reads these; the others are missing
    raw = {o.key: o.size for o in objects if is_raw(o.key)}
    report.files, report.raw_files = len(data), len(raw)
    footer_rows = checks.footer_rows(storage, data, report.problems)
    report.rows = sum(footer_rows.values())
    report.problems.extend(
        f"{key}: {footer_rows[key]} rows, the Delta log says {rows}"
        for key, rows in sorted(snapshot.items())
        if rows is not None and key in footer_rows and footer_rows[key] != rows
    )
    attachments: dict[tuple[str, str], tuple[str, int | None]] = {}  # (bot, sha) -> (manifest, size)
    windows: dict[str, set[tuple[date, date]]] = defaultdict(set)
    every_record = read_manifests(storage, objects)
    committed_at = _commit_versions(storage, report.tables) if as_of is not None else {}
    records = [r for r in every_record if _as_of(r.doc, report.tables, as_of, committed_at)]
    report.manifests = len(records)
    for record in records:
        if record.report is not None:
            checks.check_manifest(record.key, record.report, report.problems, attachments, windows)
    listing = listed_files(records)
    report.problems.extend(f"{key}: unreadable manifest ({why})" for key, why in listing.unreadable)
    report.problems.extend(
        f"{path}: listed by both {first} and {second}" for path, first, second in listing.listed_twice
    )
    replaced = checks.check_compactions(listing.compactions, set(snapshot), report.problems)
    # At an older version, files committed later are on disk too: listed by a later record.
    later = set() if as_of is None else {p for r in every_record if r.doc for p in _paths(r.doc)}
    orphans = checks.uncommitted(on_disk, snapshot, replaced, set(listing.files) | later)
    report.problems.extend(problem for _, problem in orphans)
    report.problems.extend(
        f"{key}: missing data file (the Delta table reads it"
        + (f"; listed in {listing.files[key][0]})" if key in listing.files else ")")
        for key in sorted(set(snapshot) - present)
    )
    unfit, reasons = checks.other_records(storage, objects)
    report.problems.extend(unfit)
    report.problems.extend(checks.conflicts(reasons))
    listed = listing.files
    todo = [k for k in data if k in listed] + list(raw)  # a few threads: hashing releases the GIL
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        hashes = dict(zip(todo, pool.map(storage.sha256, todo), strict=True))
    report.problems.extend(checks.check_data_files(data, listed, hashes, footer_rows, present, set(snapshot)))
    report.problems.extend(
        checks.check_raw_files(raw, attachments, hashes, listing.rewritten) if as_of is None else []
    )
    _erasures(storage, report, listing.erasures)
    report.problems.extend(check_archive(storage, data) if as_of is None else [])  # the subject index
    # Rows are checked in what the table reads, and in the orphans a reader globbing
    # *.parquet would see too (a duplicate there is named as such).
    orphan_keys = [key for key, _ in orphans]
    checks.check_partitions(
        storage,
        report,
        data + orphan_keys,
        {**footer_rows, **checks.footer_rows(storage, orphan_keys, report.problems)},
        count=set(data),
    )
    _coverage(report, windows, store, forgotten_days(listing.erasures))
    return report


def _erasures(storage: Storage, report: VerifyReport, erasures: list[tuple[str, ErasureBody]]) -> None:
    """List each erasure and prune; check the audit log's chain, that each record has its
    audit record, that every hold file is the audit log's, and that none is left half done."""
    log = audit.records(storage)
    report.problems.extend(audit.check_chain(log))
    report.problems.extend(holds.check_against_audit(storage, log))
    for obj in storage.objects(""):  # a state store kept inside the archive puts its key there
        if obj.key.endswith(AUDIT_KEY_SUFFIX):
            report.problems.append(
                f"{obj.key}: an audit key file in the archive: move it (and INGEST_STATE__PATH) out"
            )
    if storage.exists(salt_key()):  # beside the hashes it lets any reader re-identify a subject
        report.problems.append(
            f"{salt_key()}: the audit key sits in the archive; `ingest migrate` moves it out"
        )
    if log:
        report.audit = {"records": len(log), "newest": log[-1].key, "newest_sha256": log[-1].sha256}
    audited = {r.entry.id: r for r in log}
    for key, body in erasures:
        rows = sum(t.rows for t in body.tables)
        copies = len(body.copies)
        record = audited.get(body.id)
        who = f"by {record.entry.actor}: {record.entry.reason}" if record else "NO AUDIT RECORD"
        report.erasures.append(
            f"{body.kind} {body.id} at {body.at}: {rows} row(s), "
            f"{copies} raw/quarantined file(s) rewritten ({who})"
        )
        if record is None:
            report.problems.append(f"{key}: no audit record for this {body.kind}")
    for forget_id in pending(storage):
        report.problems.append(
            f"{FORGETTING}/{forget_id}: an erasure or prune was interrupted; any writing command "
            "(ingest run, prune, erase) finishes it"
        )


def _snapshots(
    storage: Storage, report: VerifyReport, on_disk: list[str], as_of: int | str | None
) -> dict[str, int | None]:
    """The data files of every dataset's table (key -> rows in the log), at ``as_of``;
    records each table's version in ``report.tables``."""
    datasets = sorted({*ALL_DATASETS, *(key.split("/", 1)[0] for key in on_disk)})
    files: dict[str, int | None] = {}
    for dataset in datasets:
        try:
            table = open_table(storage, dataset, _version_arg(as_of))
        except (IngestError, ValueError, OSError, DeltaError) as err:
            report.problems.append(f"{dataset}/: cannot read its Delta table ({one_line(err)})")
            continue
        if table is None:
            if any(key.startswith(f"{dataset}/") for key in on_disk):
                report.problems.append(f"{dataset}/: data files but no Delta table ({dataset}/_delta_log)")
            continue
        report.tables[dataset] = table.version()
        files.update((f.key, f.rows) for f in snapshot_files(table, dataset))
    return files


def _version_arg(as_of: int | str | None) -> int | str | None:
    """``--as-of``: a version number, or a timestamp (RFC 3339)."""
    if isinstance(as_of, str) and as_of.isdigit():
        return int(as_of)
    return as_of


def _commit_versions(storage: Storage, tables: dict[str, int]) -> dict[str, tuple[str, int]]:
    """Report sha256 -> (dataset, version of its commit), from each table's history (the
    commits' provenance): for manifests that do not say their version (migrated ones)."""
    found: dict[str, tuple[str, int]] = {}
    for dataset in tables:
        table = open_table(storage, dataset)
        for info in table.history() if table is not None else []:
            sha, version = info.get("ingest.source_sha256"), info.get("version")
            if isinstance(sha, str) and isinstance(version, int):
                found.setdefault(sha, (dataset, version))
    return found


def _as_of(
    doc: Manifest | None,
    tables: dict[str, int],
    as_of: int | str | None,
    committed_at: dict[str, tuple[str, int]],
) -> bool:
    """Whether a record belongs to the snapshot verified: every record for the current one;
    at an older version, the records of the commits up to it (an unreadable one is kept)."""
    if as_of is None or doc is None or isinstance(doc, ErasureRecord):
        return True
    if isinstance(doc, CompactionRecord):
        table, version = doc.compaction.dataset, doc.compaction.version
    else:
        table, version = (doc.delta.table, doc.delta.version) if doc.delta is not None else (None, None)
    if version is None:
        sha = doc.attachment.sha256 if isinstance(doc, ReportManifest) else None
        if sha is not None and sha in committed_at:  # a migrated manifest: its commit says
            dataset, at = committed_at[sha]
            return dataset in tables and at <= tables[dataset]
        return True  # a record no commit names (an old compaction's): kept
    return table in tables and version <= tables[str(table)]


def _paths(doc: Manifest) -> list[str]:
    """Every data file a record names (a manifest's files; a compaction's files and replaced)."""
    if isinstance(doc, CompactionRecord):
        return [e.path for e in (*doc.compaction.merged(), *doc.compaction.replaces)]
    return [e.path for e in doc.files] if isinstance(doc, ReportManifest) else []


def _coverage(
    report: VerifyReport,
    windows: dict[str, set[tuple[date, date]]],
    store: Store | None,
    forgotten: dict[str, set[date]] | None = None,
) -> None:
    """Fill each bot's days with rows, days without rows inside windows (a day an erasure or
    prune emptied is listed as such, not as a gap), open windows."""
    if store is not None:
        for window in store.windows():
            if window.report_id != MESSAGE_REPORT_ID:
                continue
            bot = report.bots.setdefault(window.bot_id, BotCoverage(window.bot_id))
            if window.state is WindowState.ARCHIVED:
                windows[window.bot_id].add((window.from_date, window.to_date))
            elif window.state is not WindowState.SPLIT:  # a split window lives on as its halves
                bot.windows_not_archived.append(f"{window.from_date}..{window.to_date}: {window.state.value}")
    for bot_id in {*report.bots, *windows, *(forgotten or {})}:
        bot = report.bots.setdefault(bot_id, BotCoverage(bot_id))
        bot.days = sorted(set(bot.days))
        bot.first_day, bot.last_day = (bot.days[0], bot.days[-1]) if bot.days else (None, None)
        requested = {
            first + timedelta(days=n)
            for first, last in windows.get(bot_id, ())
            for n in range((last - first).days + 1)
        }
        emptied = (forgotten or {}).get(bot_id, set()) - set(bot.days)
        bot.days_forgotten = sorted(emptied)
        bot.days_without_rows = sorted(requested - set(bot.days) - emptied)
    report.bots = dict(sorted(report.bots.items()))


#: The report and its rendering live in :mod:`ingest.ops.verify_report`; imported from here too.
__all__ = ["BotCoverage", "VerifyReport", "render_text", "to_json", "verify_archive"]
