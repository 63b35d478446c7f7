"""The one manifest walker: what the archive's commit and compaction records list.

A data file is archived when a manifest lists it (``manifests/<sha256>.json``), or a
compaction record names it as the file that replaced others
(``manifests/compaction-<sha16>.json``). :func:`read_manifests` reads every record once;
:func:`listed_files` applies the compactions, so what it returns is what readers should
see. ``compact`` and ``verify`` both read the archive through here.

Example::

    listing = listed_files(read_manifests(storage))
    listing.files["messages/bot_id=b/date=2024-03-01/part-0123456789abcdef.parquet"]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from itertools import groupby

from pydantic import ValidationError

from ingest.archive.layout import MANIFESTS, is_compaction, is_erasure, is_manifest
from ingest.archive.storage import Storage, StoredObject
from ingest.errors import IngestError
from ingest.records import (
    CompactionBody,
    CompactionRecord,
    ErasedCopy,
    ErasureBody,
    ErasureRecord,
    FileEntry,
    ReportManifest,
    first_problem,
    load,
)
from ingest.report_types import MESSAGES

#: What ``manifests/`` holds: a report's commit record, a compaction's or an erasure's.
Manifest = ReportManifest | CompactionRecord | ErasureRecord


@dataclass(frozen=True)
class Record:
    """One record under ``manifests/``: read through its model, or why it could not be."""

    key: str
    doc: Manifest | None
    error: str | None = None

    @property
    def compaction(self) -> bool:
        """A compaction record, not a source's commit record."""
        return is_compaction(self.key)

    @property
    def erasure(self) -> bool:
        """An erasure's or prune's record (``manifests/erasure-<id>.json``)."""
        return is_erasure(self.key)

    @property
    def report(self) -> ReportManifest | None:
        """A report's commit record, when this is one (and readable)."""
        return self.doc if isinstance(self.doc, ReportManifest) else None


@dataclass
class Listing:
    """Data files the records list (path -> (record key, file entry)), after compactions."""

    files: dict[str, tuple[str, FileEntry]] = field(default_factory=dict)
    #: Compaction records: (key, its "compaction" body), in table version order.
    compactions: list[tuple[str, CompactionBody]] = field(default_factory=list)
    #: Erasure and prune records: (key, their "erasure" body), oldest first.
    erasures: list[tuple[str, ErasureBody]] = field(default_factory=list)
    #: Raw copies and quarantined files an erasure rewrote: key -> (record key, its entry),
    #: the latest rewrite's (``new_sha256`` None: the file was removed).
    rewritten: dict[str, tuple[str, ErasedCopy]] = field(default_factory=dict)
    #: Files listed twice: (path, first record, second record).
    listed_twice: list[tuple[str, str, str]] = field(default_factory=list)
    #: Records that could not be read: (key, reason).
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def model_of(key: str) -> type[Manifest]:
    """The model of the record under ``key`` (by its name, as :mod:`ingest.archive.layout` makes it)."""
    if is_compaction(key):
        return CompactionRecord
    return ErasureRecord if is_erasure(key) else ReportManifest


def read_manifests(storage: Storage, objects: Iterable[StoredObject] | None = None) -> list[Record]:
    """Every record under ``manifests/`` (from ``objects`` when already listed), read once,
    each through its model (:mod:`ingest.records`): one that does not fit it, or is of a
    newer format than this tool reads, is unreadable, with the reason."""
    keys = sorted(
        o.key
        for o in (storage.objects(f"{MANIFESTS}/") if objects is None else objects)
        if is_manifest(o.key)
    )
    records = []
    for key in keys:
        try:
            records.append(Record(key, load(model_of(key), storage.read_bytes(key), key)))
        except ValidationError as err:
            records.append(Record(key, None, f"not a {model_of(key).NAME}: {first_problem(err)}"))
        except (OSError, ValueError, IngestError) as err:
            records.append(Record(key, None, f"{type(err).__name__}: {err}"))
    return records


def listed_files(records: Iterable[Record]) -> Listing:
    """What the records list, a compacted file in place of the files it replaced."""
    listing = Listing()
    for record in records:
        doc = record.doc
        if doc is None:
            listing.unreadable.append((record.key, record.error or "unreadable"))
        elif isinstance(doc, CompactionRecord):
            listing.compactions.append((record.key, doc.compaction))
        elif isinstance(doc, ErasureRecord):
            listing.erasures.append((record.key, doc.erasure))
        else:
            for entry in doc.files:
                if entry.path in listing.files:
                    listing.listed_twice.append((entry.path, listing.files[entry.path][0], record.key))
                listing.files[entry.path] = (record.key, entry)
    # Applied in the order they were committed (a compaction may replace a compacted file,
    # an erasure a compacted file, a compaction an erasure's rewrite).
    listing.compactions.sort(key=lambda item: (item[1].dataset or "", _version(item[1].version), item[0]))
    listing.erasures = erasures_in_order(listing.erasures)
    steps: list[tuple[str, int, str, list[FileEntry], list[FileEntry]]] = [
        (body.dataset or "", _version(body.version), key, body.replaces, body.merged())
        for key, body in listing.compactions
    ]
    for key, erased in listing.erasures:
        for table in erased.tables:
            steps.append((table.dataset, _version(table.version), key, table.replaces, table.files))
        for copy in erased.copies:
            listing.rewritten[copy.key] = (key, copy)
    for _, _, key, replaced, merged in sorted(steps, key=lambda step: step[:3]):  # new replace old
        for old in replaced:
            listing.files.pop(old.path, None)
        for new in merged:
            listing.files[new.path] = (key, new)
    return listing


def erasures_in_order(erasures: list[tuple[str, ErasureBody]]) -> list[tuple[str, ErasureBody]]:
    """Erasure records in the order they were made: by their ``seq``. Records written before
    ``seq`` existed (all older than any with one) come first, by ``at`` (whole seconds); two
    of one second are put in the order their copies' hashes chain (one's ``new_sha256`` is
    the other's ``original_sha256``), not left to their random ids."""
    legacy = sorted((e for e in erasures if e[1].seq is None), key=lambda e: (e[1].at, e[0]))
    numbered = sorted((e for e in erasures if e[1].seq is not None), key=lambda e: (e[1].seq or 0, e[0]))
    return _chained(legacy) + numbered


def next_erasure_seq(erasures: list[tuple[str, ErasureBody]]) -> int:
    """The ``seq`` of the next erasure record: after every record there (numbered or not)."""
    seqs = [e[1].seq for e in erasures if e[1].seq is not None]
    return max([len(erasures), *seqs]) + 1


def _chained(erasures: list[tuple[str, ErasureBody]]) -> list[tuple[str, ErasureBody]]:
    """Within each second, a record goes after the one whose rewritten copy it started from."""
    ordered: list[tuple[str, ErasureBody]] = []
    for _, group in groupby(erasures, key=lambda e: e[1].at):
        pending = list(group)
        while pending:
            made = {c.new_sha256 for e in pending for c in e[1].copies if c.new_sha256}
            first = next((e for e in pending if not _started_from(e[1]) & made), pending[0])
            ordered.append(first)
            pending.remove(first)
    return ordered


def _started_from(body: ErasureBody) -> set[str]:
    return {c.original_sha256 for c in body.copies if c.original_sha256}


def forgotten_days(erasures: list[tuple[str, ErasureBody]]) -> dict[str, set[date]]:
    """Per bot, the Message Data days an erasure or prune touched (``bot/day`` in its record):
    a day it emptied is no gap in the archive's coverage."""
    days: dict[str, set[date]] = defaultdict(set)
    for _, body in erasures:
        for table in body.tables:
            if table.dataset != MESSAGES:
                continue
            for entry in table.days:
                bot, _, day = entry.rpartition("/")
                try:
                    days[bot].add(date.fromisoformat(day))
                except ValueError:
                    continue
    return days


def _version(version: int | None) -> int:
    return version if version is not None else -1
