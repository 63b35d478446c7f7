"""``ingest migrate``: turn a hive-partitioned archive (with manifests) into Delta tables, in
place, rewriting no data file.

Each dataset folder (``messages``, ``standard``, ...) becomes a table whose files are exactly
those the manifests list (after compactions; :func:`ingest.archive.manifests.listed_files`),
committed as add actions: one commit per report manifest, with that report's provenance and
application transaction (as if it had been archived today), then one per old compaction
record for the merged files it lists. Nothing else is committed: a file no manifest lists
stays outside the table (``ingest verify`` names it, ``ingest vacuum`` removes it).

Then the subject index (:mod:`ingest.archive.subjects`) of every bot is brought up to date
(:func:`index_archive`): built for an archive made before it, or completed after a crash.

Crash-safe and idempotent: every commit is recognised by its application transaction, so a
run killed half-way commits the rest next time, and a second run commits nothing. Before
anything is committed, every listed file must be present and hash to its manifest's sha256
(:class:`MigrationRefused` otherwise: fix what ``verify`` says first).

Example::

    done = migrate_archive(storage)
    print(done.commits, done.files, done.rows)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ingest.archive.compact import ALL_DATASETS
from ingest.archive.delta import app_id, commit_report, committed, open_table
from ingest.archive.layout import NOT_DATASETS
from ingest.archive.manifests import listed_files, read_manifests
from ingest.archive.snapshot import snapshot_files
from ingest.archive.storage import Storage, as_storage
from ingest.archive.subjects import check, refresh
from ingest.errors import OutputError
from ingest.parse.arrowrows import FILE_SCHEMA
from ingest.parse.schema import DATASET
from ingest.records import FileEntry, ReportManifest


class MigrationRefused(OutputError):
    """The archive does not match its manifests: nothing was committed."""


@dataclass
class MigrateSummary:
    """What :func:`migrate_archive` did."""

    commits: int = 0  # made by this run
    already: int = 0  # made by an earlier (possibly killed) run
    files: int = 0
    rows: int = 0
    tables: dict[str, int] = field(default_factory=dict)  # dataset -> version after
    indexed: int = 0  # data files read into the subject index (ingest.archive.subjects)


def migrate_archive(root: Storage | Path, *, check_hashes: bool = True) -> MigrateSummary:
    """Commit every listed data file of every dataset to its Delta table (see the module)."""
    storage = as_storage(root)
    records = read_manifests(storage)
    listing = listed_files(records)
    if listing.unreadable:
        raise MigrationRefused(f"unreadable manifest {listing.unreadable[0][0]}: {listing.unreadable[0][1]}")
    if check_hashes:
        _check(storage, listing.files)
    # Which record owns each listed file now: a report's manifest, or a compaction record.
    owned: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for path, (record, entry) in sorted(listing.files.items()):
        owned[record].append((path, entry.rows or 0))
    docs = {r.key: r.report for r in records}
    summary = MigrateSummary()
    schemas: dict[str, pa.Schema] = {}
    order = sorted(owned, key=lambda key: (key.startswith("manifests/compaction-"), key))
    for key in order:
        files = owned[key]
        dataset = files[0][0].split("/", 1)[0]
        if dataset in NOT_DATASETS:
            continue
        if dataset not in schemas:
            schemas[dataset] = _schema(
                storage, dataset, [p for p, _ in listing.files.items() if p.startswith(f"{dataset}/")]
            )
        doc = docs.get(key)
        sha = _source_id(key, doc)
        if committed(open_table(storage, dataset), sha):
            summary.already += 1
            continue
        bot = files[0][0].split("/")[1].removeprefix("bot_id=")
        commit_report(storage, dataset, bot, files, sha, schemas[dataset], _provenance(key, doc, files))
        summary.commits += 1
        summary.files += len(files)
        summary.rows += sum(rows for _, rows in files)
    for dataset in schemas:
        table = open_table(storage, dataset)
        if table is not None:
            summary.tables[dataset] = table.version()
    summary.indexed = index_archive(storage)
    return summary


def index_archive(storage: Storage) -> int:
    """Bring the subject index of every bot of every table up to date (an archive made
    before it has none; a crash may have left one behind): the files it does not cover are
    read, the entries of files gone dropped. A bot whose index :func:`check` finds a problem
    in (a part lost, unreadable or from another archive, a person missing) is rebuilt from
    the data, so that ``verify`` is clean after it. Returns how many data files were read
    for the index (a clean second run reads none for it: idempotent)."""
    read = 0
    for dataset in ALL_DATASETS:
        table = open_table(storage, dataset)
        files = snapshot_files(table, dataset)
        for bot in sorted({f.bot_id for f in files}):
            sizes = {f.key: f.size for f in files if f.bot_id == bot}
            broken = bool(check(storage, dataset, bot, sizes))
            read += refresh(storage, dataset, bot, sizes, rebuild=broken)
    return read


def _check(storage: Storage, listed: dict[str, tuple[str, FileEntry]]) -> None:
    """Every listed file present and as its record says (sha256); else refuse."""
    problems = []
    for path, (record, entry) in sorted(listed.items()):
        digest = storage.sha256(path)
        if digest is None:
            problems.append(f"{path}: missing (listed in {record})")
        elif digest != entry.sha256:
            problems.append(f"{path}: sha256 differs from {record}")
    if problems:
        raise MigrationRefused(
            f"{len(problems)} listed file(s) do not match their manifests, nothing committed: {problems[0]}",
            hint="ingest verify",
        )


def _schema(storage: Storage, dataset: str, keys: list[str]) -> pa.Schema:
    """The table's columns: the canonical file schema (messages), else the union of the
    files' own schemas (typed reports, conformed by ingest.archive.datasets when written)."""
    if dataset == DATASET:
        return FILE_SCHEMA
    schemas = [storage.parquet_metadata(key).schema.to_arrow_schema() for key in keys]
    return pa.unify_schemas(schemas, promote_options="permissive")


def _source_id(key: str, doc: ReportManifest | None) -> str:
    """The application transaction's id part: the report's sha256, or the compaction's record."""
    return doc.attachment.sha256 if doc is not None else key.rsplit("/", 1)[-1].removesuffix(".json")


def _provenance(key: str, doc: ReportManifest | None, files: list[tuple[str, int]]) -> dict[str, Any]:
    """The commit info of a migrated report: what its manifest says, and that it was migrated."""
    return {
        "source": "migrate",
        "manifest": key,
        "source_sha256": _source_id(key, doc),
        "bot_id": doc.bot_id if doc is not None else None,
        "window_id": doc.window.id if doc is not None and doc.window is not None else None,
        "message_id": (doc.email or {}).get("message_id") if doc is not None else None,
        "counts": (doc.counts if doc is not None else None)
        or {"rows_written": sum(rows for _, rows in files)},
    }


__all__ = ["MigrateSummary", "MigrationRefused", "app_id", "migrate_archive"]
