"""``ingest compact`` and ``ingest vacuum``: Delta's OPTIMIZE and VACUUM, recorded.

Repeated small deliveries (daily schedules, overlapping windows) leave several files in a
partition. Compaction is Delta's ``OPTIMIZE``: for each partition holding at least
``min_files`` files, one commit replaces them with new files (``messages``: Z-ordered by
``timestamp``, i.e. sorted by it, one column; typed datasets: bin-packed, ``compact()``).
Then a compaction record ``manifests/compaction-<dataset>-v<version>.json`` lists, for each
OPTIMIZE commit, the files it added (path, rows, sha256) and every file it replaced: the
manifests stay the evidence ``ingest verify`` checks the table against.

A crash between the OPTIMIZE commit and its record leaves a commit without a record:
``verify`` reports the new files as listed by no manifest, and the next ``compact`` writes
the record from the commit's own log entry (:func:`finish_records`). Readers never see rows
twice: the commit swaps the files at once. The replaced files stay on disk (older versions
still read them) until ``ingest vacuum`` removes them after the retention period.

Vacuum is ``DeltaTable.vacuum(full=True)``: files no version within the retention references,
and files never committed (a crash between data and commit whose report never came back).
delta-rs has left files behind in some cases (#3911, #3644), so what remains is listed
afterwards (:class:`VacuumSummary`).

Example::

    done = compact_archive(storage, dataset="messages", bots=["b1"])
    print(done.partitions, done.files_before, done.files_after)
    swept = vacuum_archive(storage, retention_hours=168)
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from deltalake import CommitProperties, DeltaTable

from ingest.archive.commit import write_bytes_once
from ingest.archive.delta import META, PARTITIONS, guarded, open_table
from ingest.archive.deltalog import log_actions
from ingest.archive.layout import MANIFESTS, compaction_key, is_data_file
from ingest.archive.manifests import listed_files, read_manifests
from ingest.archive.snapshot import snapshot_files
from ingest.archive.storage import Storage, as_storage
from ingest.archive.subjects import refresh
from ingest.parse.schema import DATASET
from ingest.records import CompactionRecord, FileEntry, build, dump
from ingest.report_types import DATASETS

#: Vacuum's default retention: Delta's own default (``delta.deletedFileRetentionDuration``).
DEFAULT_RETENTION_HOURS = 7 * 24
#: Every dataset that may have a table.
ALL_DATASETS = (DATASET, *DATASETS.values())


@dataclass
class CompactSummary:
    """What :func:`compact_archive` did."""

    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    finished: int = 0  # OPTIMIZE commits of a killed run whose record was written now
    versions: list[int] = field(default_factory=list)


def record_name(dataset: str, version: int) -> str:
    """``<dataset>-v<version>``: a compaction record's name (after ``compaction-``)."""
    return f"{dataset}-v{version}"


def compact_archive(
    root: Storage | Path, *, dataset: str = DATASET, bots: list[str] | None = None, min_files: int = 2
) -> CompactSummary:
    """OPTIMIZE every partition of ``dataset`` holding at least ``min_files`` files."""
    storage = as_storage(root)
    summary = CompactSummary()
    table = open_table(storage, dataset)
    if table is None:
        return summary
    summary.finished = len(finish_records(storage, dataset, table))
    counts = Counter((f.bot_id, f.day) for f in snapshot_files(table, dataset))
    compacted: set[str] = set()
    for (bot, day), files in sorted(counts.items()):
        if files < min_files or (bots and bot not in bots):
            continue
        compacted.add(bot)
        before = table.version()
        where = [("bot_id", "=", bot), ("date", "=", day)]
        properties = CommitProperties(custom_metadata={f"{META}.compaction": True})
        guarded(storage, dataset, partial(_optimize, table, dataset, where, properties))
        table.update_incremental()
        for version in range(before + 1, table.version() + 1):
            record = write_record(storage, dataset, version)
            if record is None:
                continue
            summary.versions.append(version)
            summary.partitions += 1
            summary.files_before += len(record["replaces"])
            summary.files_after += len(record["files"])
            summary.rows += sum(f["rows"] for f in record["files"])
    # The subject index: the merged files indexed, the replaced ones' entries dropped.
    now = snapshot_files(table, dataset)
    for bot in sorted(compacted):
        refresh(storage, dataset, bot, {f.key: f.size for f in now if f.bot_id == bot})
    return summary


def _optimize(
    table: DeltaTable, dataset: str, where: list[tuple[str, str, Any]], properties: CommitProperties
) -> dict[str, Any]:
    """One partition's OPTIMIZE: messages Z-ordered by timestamp (one column: a sort by it),
    typed datasets bin-packed."""
    if dataset == DATASET:
        return table.optimize.z_order(["timestamp"], partition_filters=where, commit_properties=properties)
    return table.optimize.compact(partition_filters=where, commit_properties=properties)


def finish_records(storage: Storage, dataset: str, table: DeltaTable) -> list[int]:
    """Write the record of every OPTIMIZE commit that has none (a run killed in between)."""
    have = {o.key for o in storage.objects(f"{MANIFESTS}/")}
    done = []
    for info in table.history():
        version = info.get("version")
        if info.get("operation") != "OPTIMIZE" or not isinstance(version, int):
            continue
        if compaction_key(record_name(dataset, version)) not in have and write_record(
            storage, dataset, version
        ):
            done.append(version)
    return sorted(done)


def write_record(storage: Storage, dataset: str, version: int) -> dict[str, Any] | None:
    """The compaction record of OPTIMIZE commit ``version``: files added (rows from their
    footers, hashed) and files replaced (as their manifests list them). None for another
    kind of commit."""
    actions = log_actions(storage, dataset, version)
    info: dict[str, Any] = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
    if info.get("operation") != "OPTIMIZE":
        return None
    listed = listed_files(read_manifests(storage)).files
    added = [f"{dataset}/{unquote(a['add']['path'])}" for a in actions if "add" in a]
    removed = [f"{dataset}/{unquote(a['remove']['path'])}" for a in actions if "remove" in a]
    body = {
        "dataset": dataset,
        "version": version,
        "partitions": sorted({"/".join(key.split("/")[:3]) for key in added + removed}),
        "files": [
            {"path": key, "rows": storage.parquet_rows(key), "sha256": storage.sha256(key) or ""}
            for key in sorted(added)
        ],
        "replaces": [_entry(key, listed) for key in sorted(removed)],
    }
    record = build(
        CompactionRecord,
        {"compaction": body, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    )
    write_bytes_once(storage, compaction_key(record_name(dataset, version)), dump(record))
    return body


def _entry(key: str, listed: dict[str, tuple[str, FileEntry]]) -> dict[str, Any]:
    """A replaced file as its manifest lists it (path, rows, sha256)."""
    found = listed.get(key)
    if found is None:
        return {"path": key, "rows": None, "sha256": None}
    return {"path": found[1].path, "rows": found[1].rows, "sha256": found[1].sha256}


@dataclass
class VacuumSummary:
    """What :func:`vacuum_archive` removed, and what it left (delta-rs #3911, #3644)."""

    removed: dict[str, list[str]] = field(default_factory=dict)  # dataset -> keys
    #: Data files on disk that no current snapshot has, still there after vacuum: files a
    #: version inside the retention period reads, or left by delta-rs.
    left: dict[str, list[str]] = field(default_factory=dict)


def vacuum_archive(
    root: Storage | Path,
    *,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    datasets: tuple[str, ...] = ALL_DATASETS,
    dry_run: bool = False,
) -> VacuumSummary:
    """``VACUUM`` (full) each table: remove files older than the retention that no version
    in it reads, and files never committed; then list the data files still outside the
    current snapshot. A retention under the table's own (7 days unless set) is allowed:
    this job is the tables' only writer, and holds the job lock."""
    storage = as_storage(root)
    summary = VacuumSummary()
    for dataset in datasets:
        table = open_table(storage, dataset)
        if table is None:
            continue
        removed = guarded(
            storage,
            dataset,
            partial(
                table.vacuum,
                retention_hours=retention_hours,
                dry_run=dry_run,
                enforce_retention_duration=False,
                full=True,
            ),
        )
        summary.removed[dataset] = sorted(f"{dataset}/{path}" for path in removed)
        table.update_incremental()
        current = {f.key for f in snapshot_files(table, dataset)}
        summary.left[dataset] = [
            o.key for o in storage.objects(f"{dataset}/") if is_data_file(o.key) and o.key not in current
        ]
    return summary


__all__ = ["PARTITIONS", "CompactSummary", "VacuumSummary", "compact_archive", "vacuum_archive"]
