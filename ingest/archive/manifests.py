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

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from itertools import groupby
from typing import Any

from ingest.archive.layout import MANIFESTS, is_compaction, is_erasure, is_manifest
from ingest.archive.storage import Storage, StoredObject
from ingest.errors import IngestError
from ingest.report_types import MESSAGES


@dataclass(frozen=True)
class Record:
    """One record under ``manifests/``: its document, or why it could not be read."""

    key: str
    doc: dict[str, Any] | None
    error: str | None = None

    @property
    def compaction(self) -> bool:
        """A compaction record, not a source's commit record."""
        return is_compaction(self.key)

    @property
    def erasure(self) -> bool:
        """An erasure's or prune's record (``manifests/erasure-<id>.json``)."""
        return is_erasure(self.key)


@dataclass
class Listing:
    """Data files the records list (path -> (record key, file entry)), after compactions."""

    files: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    #: Compaction records: (key, its "compaction" body), in table version order.
    compactions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Erasure and prune records: (key, their "erasure" body), oldest first.
    erasures: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Raw copies and quarantined files an erasure rewrote: key -> (record key, its entry),
    #: the latest rewrite's (``new_sha256`` None: the file was removed).
    rewritten: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    #: Files listed twice: (path, first record, second record).
    listed_twice: list[tuple[str, str, str]] = field(default_factory=list)
    #: Records that could not be read: (key, reason).
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def read_manifests(out: Storage, objects: Iterable[StoredObject] | None = None) -> list[Record]:
    """Every record under ``manifests/`` (from ``objects`` when already listed), read once."""
    keys = sorted(
        o.key for o in (out.objects(f"{MANIFESTS}/") if objects is None else objects) if is_manifest(o.key)
    )
    records = []
    for key in keys:
        try:
            doc = json.loads(out.read_bytes(key))
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            records.append(Record(key, doc))
        except (OSError, ValueError, IngestError) as err:
            records.append(Record(key, None, f"{type(err).__name__}: {err}"))
    return records


def listed_files(records: Iterable[Record]) -> Listing:
    """What the records list, a compacted file in place of the files it replaced."""
    listing = Listing()
    for record in records:
        if record.doc is None:
            listing.unreadable.append((record.key, record.error or "unreadable"))
        elif record.compaction:
            body = record.doc.get("compaction")
            if not isinstance(body, dict):
                listing.unreadable.append((record.key, "KeyError: 'compaction'"))
                continue
            listing.compactions.append((record.key, body))
        elif record.erasure:
            body = record.doc.get("erasure")
            if not isinstance(body, dict):
                listing.unreadable.append((record.key, "KeyError: 'erasure'"))
                continue
            listing.erasures.append((record.key, body))
        else:
            for entry in record.doc.get("files", []) or []:
                path = str(entry.get("path"))
                if path in listing.files:
                    listing.listed_twice.append((path, listing.files[path][0], record.key))
                listing.files[path] = (record.key, entry)
    # Applied in the order they were committed (a compaction may replace a compacted file,
    # an erasure a compacted file, a compaction an erasure's rewrite).
    listing.compactions.sort(key=lambda item: (str(item[1].get("dataset", "")), _version(item[1]), item[0]))
    listing.erasures = erasures_in_order(listing.erasures)
    steps = [(str(body.get("dataset", "")), _version(body), key, body) for key, body in listing.compactions]
    for key, body in listing.erasures:
        for table in body.get("tables") or []:
            if isinstance(table, dict):
                steps.append((str(table.get("dataset", "")), _version(table), key, table))
        for entry in body.get("copies") or []:
            if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                listing.rewritten[entry["key"]] = (key, entry)
    for _, _, key, body in sorted(steps, key=lambda step: step[:3]):  # new files replace old ones
        try:
            # Delta OPTIMIZE records list "files"; records of the pre-Delta compaction one "file".
            replaced, merged = body["replaces"], body["files"] if "files" in body else [body["file"]]
            for old in replaced:
                listing.files.pop(old["path"], None)
            for new in merged:
                listing.files[new["path"]] = (key, new)
        except (KeyError, TypeError) as err:
            listing.unreadable.append((key, f"{type(err).__name__}: {err}"))
    return listing


def erasures_in_order(erasures: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Erasure records in the order they were made: by their ``seq``. Records written before
    ``seq`` existed (all older than any with one) come first, by ``at`` (whole seconds); two
    of one second are put in the order their copies' hashes chain (one's ``new_sha256`` is
    the other's ``original_sha256``), not left to their random ids."""
    legacy = sorted(
        (e for e in erasures if not isinstance(e[1].get("seq"), int)),
        key=lambda e: (str(e[1].get("at", "")), e[0]),
    )
    numbered = sorted(
        (e for e in erasures if isinstance(e[1].get("seq"), int)), key=lambda e: (e[1]["seq"], e[0])
    )
    return _chained(legacy) + numbered


def next_erasure_seq(erasures: list[tuple[str, dict[str, Any]]]) -> int:
    """The ``seq`` of the next erasure record: after every record there (numbered or not)."""
    seqs: list[int] = [e[1]["seq"] for e in erasures if isinstance(e[1].get("seq"), int)]
    return max([len(erasures), *seqs]) + 1


def _chained(erasures: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Within each second, a record goes after the one whose rewritten copy it started from."""
    ordered: list[tuple[str, dict[str, Any]]] = []
    for _, group in groupby(erasures, key=lambda e: str(e[1].get("at", ""))):
        pending = list(group)
        while pending:
            made = {h for e in pending for h in _copy_hashes(e[1], "new_sha256")}
            first = next((e for e in pending if not _copy_hashes(e[1], "original_sha256") & made), pending[0])
            ordered.append(first)
            pending.remove(first)
    return ordered


def _copy_hashes(body: dict[str, Any], field_name: str) -> set[str]:
    copies = body.get("copies")
    return {
        str(c[field_name])
        for c in (copies if isinstance(copies, list) else [])
        if isinstance(c, dict) and c.get(field_name)
    }


def forgotten_days(erasures: list[tuple[str, dict[str, Any]]]) -> dict[str, set[date]]:
    """Per bot, the Message Data days an erasure or prune touched (``bot/day`` in its record):
    a day it emptied is no gap in the archive's coverage."""
    days: dict[str, set[date]] = defaultdict(set)
    for _, body in erasures:
        for table in body.get("tables") or []:
            if not isinstance(table, dict) or table.get("dataset") != MESSAGES:
                continue
            for entry in table.get("days") or []:
                bot, _, day = str(entry).rpartition("/")
                try:
                    days[bot].add(date.fromisoformat(day))
                except ValueError:
                    continue
    return days


def _version(body: dict[str, Any]) -> int:
    version = body.get("version")
    return version if isinstance(version, int) else -1
