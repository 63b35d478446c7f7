"""The one seam through which exports and reports read the archive.

Today the archive is hive-partitioned Parquet whose commit records (``manifests/``) list
every data file; :func:`open_snapshot` reads those records once and
:meth:`Snapshot.scan` scans exactly the files they list (through
:func:`ingest.archive.manifests.listed_files`, so a compacted partition or a file listed
twice is never counted twice). :attr:`Snapshot.version` is "the archive table versions a
cut was made from": today the count of records and listed files and a sha256 over the
sorted listing (path, sha256, rows of each file). When the archive becomes Delta tables,
only this module changes: ``scan`` reads a Delta snapshot and ``version`` records the
table versions.

Example::

    snap = open_snapshot(storage)
    snap.scan("messages", bots=["bot-1"]).filter(pl.col("date") >= date(2024, 3, 1))
    snap.version   # {"kind": "parquet-manifests", "records": 12, "files": 40, "listing_sha256": "..."}
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from ingest.archive.layout import NOT_DATASETS
from ingest.archive.manifests import listed_files, read_manifests
from ingest.archive.storage import Storage
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
    #: source sha256 -> its commit record's provenance
    sources: dict[str, SourceRecord] = field(default_factory=dict)
    version: dict[str, Any] = field(default_factory=dict)
    #: Records that could not be read or files listed twice: the cut says so.
    problems: list[str] = field(default_factory=list)

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


def open_snapshot(storage: Storage) -> Snapshot:
    """Read the archive's records once: the files they list and the sources' provenance."""
    records = read_manifests(storage)
    listing = listed_files(records)
    snap = Snapshot(storage)
    files: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    digest = hashlib.sha256()
    for path, (_, entry) in sorted(listing.files.items()):
        dataset, _, rest = path.partition("/")
        bot = rest.split("/", 1)[0].removeprefix("bot_id=")
        if dataset in NOT_DATASETS or not rest.startswith("bot_id="):
            continue
        files[dataset][bot].append(path)
        snap.rows[path] = int(entry.get("rows") or 0)
        digest.update(json.dumps([path, entry.get("sha256"), entry.get("rows")]).encode() + b"\n")
    snap.files = {
        d: {b: sorted(keys) for b, keys in sorted(bots.items())} for d, bots in sorted(files.items())
    }
    for record in records:
        if record.doc is None or record.compaction:
            continue
        doc = record.doc
        attachment = doc.get("attachment") or {}
        sha = str(attachment.get("sha256") or record.key.rsplit("/", 1)[-1].removesuffix(".json"))
        email = doc.get("email") or {}
        kind = "GET" if doc.get("source") == "GET" else "import" if doc.get("import") else "email"
        snap.sources[sha] = SourceRecord(
            manifest=record.key,
            bot_id=str(doc.get("bot_id", "")),
            dataset=str(doc.get("dataset", MESSAGES)),
            attachment_sha256=sha,
            attachment_name=attachment.get("name"),
            email_message_id=email.get("message_id") if isinstance(email, dict) else None,
            window=doc.get("window") if isinstance(doc.get("window"), dict) else None,
            kind=kind,
        )
    snap.problems = [f"{key}: unreadable ({why})" for key, why in listing.unreadable]
    snap.problems += [f"{path}: listed by both {a} and {b}" for path, a, b in listing.listed_twice]
    snap.version = {
        "kind": "parquet-manifests",
        "records": len(records),
        "compactions": len(listing.compactions),
        "files": len(listing.files),
        "listing_sha256": digest.hexdigest(),
        "root": storage.describe(),
    }
    return snap


def scan_dataset(storage: Storage, dataset: str, bots: list[str] | None = None) -> pl.LazyFrame | None:
    """The listed rows of one dataset (a fresh snapshot); None when it has no files."""
    return open_snapshot(storage).scan(dataset, bots)
