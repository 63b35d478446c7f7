"""The one seam through which exports and reports read the archive.

An export is cut from one version of each dataset's Delta table: :func:`open_snapshot`
opens every table once, pinned at its current version, and :meth:`Snapshot.scan` reads
exactly the files of that snapshot (a compacted partition's old files are gone from it, so
nothing is counted twice). The commit records (``manifests/``) give each source report's
provenance. :attr:`Snapshot.version` names the cut: the table versions, and a sha256 over
the files read (path, rows), so a recipient can tell two cuts apart.

Example::

    snap = open_snapshot(storage)
    snap.scan("messages", bots=["bot-1"]).filter(pl.col("date") >= date(2024, 3, 1))
    snap.version   # {"kind": "delta", "tables": {"messages": 12}, "files": 40, "listing_sha256": "..."}
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from ingest.archive.delta import open_table
from ingest.archive.manifests import forgotten_days, listed_files, read_manifests
from ingest.archive.snapshot import snapshot_files
from ingest.archive.storage import Storage
from ingest.archive.subjects import files_to_read
from ingest.report_types import DATASETS, MESSAGES

#: Every dataset an export can name, Message Data first.
ALL_DATASETS: tuple[str, ...] = (MESSAGES, *DATASETS.values())
#: The hive partition keys, typed as readers expect them.
HIVE_SCHEMA = {"bot_id": pl.String(), "date": pl.Date()}


@dataclass(frozen=True)
class SourceRecord:
    """One commit record's provenance: where a report came from."""

    manifest: str
    bot_id: str
    dataset: str
    attachment_sha256: str
    attachment_name: str | None
    email_message_id: str | None
    window: dict[str, Any] | None
    kind: str  # "email", "import", "GET"


@dataclass
class Snapshot:
    """What the archive lists at one moment: data files per dataset and bot, sources."""

    storage: Storage
    #: dataset -> bot -> listed data file keys (sorted)
    files: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: listed data file key -> its rows, as its record says
    rows: dict[str, int] = field(default_factory=dict)
    #: listed data file key -> its size, as the table's add action says (the subject index
    #: covers a file only at the size it indexed)
    sizes: dict[str, int] = field(default_factory=dict)
    #: source sha256 -> its commit record's provenance
    sources: dict[str, SourceRecord] = field(default_factory=dict)
    version: dict[str, Any] = field(default_factory=dict)
    #: Records that could not be read or files listed twice: the cut says so.
    problems: list[str] = field(default_factory=list)
    #: bot -> Message Data days an erasure or prune touched (ingest.archive.manifests.forgotten_days)
    forgotten: dict[str, set[date]] = field(default_factory=dict)

    def bots(self, dataset: str) -> list[str]:
        """Bots with listed files in ``dataset``."""
        return sorted(self.files.get(dataset, {}))

    def listed_rows(self, dataset: str, bot: str, first: date | None = None, last: date | None = None) -> int:
        """Rows the records list for one bot's partitions of ``dataset`` between two days
        (inclusive, either open): what an export without row filters will write."""
        total = 0
        for key in self.files.get(dataset, {}).get(bot, []):
            day = date.fromisoformat(key.split("/date=", 1)[1][:10]) if "/date=" in key else None
            if day is None or ((first is None or day >= first) and (last is None or day <= last)):
                total += self.rows.get(key, 0)
        return total

    def scan(self, dataset: str, bots: list[str] | None = None) -> pl.LazyFrame | None:
        """A lazy scan of the listed files of ``dataset`` (for ``bots``, else all), with the
        hive columns ``bot_id`` and ``date``; None when nothing is listed.

        Message Data files share one schema; a typed dataset's files may differ by a column
        (added later, or typed differently), so they are scanned one by one and stacked
        diagonally, a column missing from a file being null there."""
        keys = [
            key
            for bot in (bots if bots is not None else self.bots(dataset))
            for key in self.files.get(dataset, {}).get(bot, [])
        ]
        if not keys:
            return None
        if dataset == MESSAGES:
            return self.storage.scan(keys, hive_partitioning=True, hive_schema=HIVE_SCHEMA)
        frames = [self.storage.scan([key], hive_partitioning=True, hive_schema=HIVE_SCHEMA) for key in keys]
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def narrow_snapshot(snap: Snapshot, botusers: list[str]) -> tuple[int, int, dict[str, str]]:
    """Keep in ``snap`` only the data files that may hold these bot users' rows (the subject
    index, :func:`ingest.archive.subjects.files_to_read`); returns the files kept, the files
    before, and a file of each dataset left with none (its columns still say whether it
    could hold a person at all)."""
    kept = total = 0
    emptied: dict[str, str] = {}
    for dataset, bots in snap.files.items():
        for bot, keys in bots.items():
            sizes = {k: snap.sizes.get(k, -1) for k in keys}
            bots[bot] = files_to_read(snap.storage, dataset, bot, sizes, [str(b) for b in botusers])
            kept, total = kept + len(bots[bot]), total + len(keys)
            if keys and dataset not in emptied:
                emptied[dataset] = keys[0]
        if any(bots.values()):
            emptied.pop(dataset, None)
    return kept, total, emptied


def open_snapshot(storage: Storage) -> Snapshot:
    """Pin each dataset's table at its current version; read the records' provenance once."""
    records = read_manifests(storage)
    listing = listed_files(records)
    snap = Snapshot(storage)
    files: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    digest = hashlib.sha256()
    tables: dict[str, int] = {}
    in_tables: set[str] = set()
    for dataset in ALL_DATASETS:
        table = open_table(storage, dataset)
        if table is None:
            continue
        tables[dataset] = table.version()
        for found in snapshot_files(table, dataset):
            files[dataset][found.bot_id].append(found.key)
            listed = listing.files.get(found.key)
            rows = found.rows if found.rows is not None else (listed[1].rows or 0) if listed else 0
            snap.rows[found.key] = rows
            snap.sizes[found.key] = found.size
            in_tables.add(found.key)
            digest.update(json.dumps([found.key, rows]).encode() + b"\n")
    snap.files = {
        d: {b: sorted(keys) for b, keys in sorted(bots.items())} for d, bots in sorted(files.items())
    }
    for record in records:
        manifest = record.report
        if manifest is None:
            continue
        sha = manifest.attachment.sha256
        kind = "GET" if manifest.source == "GET" else "import" if manifest.import_ else "email"
        message_id = (manifest.email or {}).get("message_id")
        snap.sources[sha] = SourceRecord(
            manifest=record.key,
            bot_id=manifest.bot_id,
            # What bundles have always said: a manifest names no dataset of its own.
            dataset=str((manifest.model_extra or {}).get("dataset", MESSAGES)),
            attachment_sha256=sha,
            attachment_name=manifest.attachment.name,
            email_message_id=message_id if isinstance(message_id, str) else None,
            window=manifest.window.model_dump(mode="json", by_alias=True, exclude_unset=True)
            if manifest.window is not None
            else None,
            kind=kind,
        )
    snap.forgotten = forgotten_days(listing.erasures)
    snap.problems = [f"{key}: unreadable ({why})" for key, why in listing.unreadable]
    snap.problems += [f"{path}: listed by both {a} and {b}" for path, a, b in listing.listed_twice]
    snap.problems += [
        f"{key}: in the table but in no record (run ingest verify)"
        for key in sorted(in_tables - set(listing.files))
    ]
    snap.version = {
        "kind": "delta",
        "tables": tables,
        "records": len(records),
        "compactions": len(listing.compactions),
        "files": len(in_tables),
        "listing_sha256": digest.hexdigest(),
        "root": storage.describe(),
    }
    return snap


def scan_dataset(storage: Storage, dataset: str, bots: list[str] | None = None) -> pl.LazyFrame | None:
    """The listed rows of one dataset (a fresh snapshot); None when it has no files."""
    return open_snapshot(storage).scan(dataset, bots)
