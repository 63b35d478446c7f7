"""``ingest compact``: merge a partition's many small files into one, and record it.

Repeated small deliveries (daily schedules, overlapping windows) leave several files in a
partition. Compaction rewrites such a partition as one file, sorted by timestamp, in this
order, each step durable before the next:

1. the merged file is published under a name derived from the replaced files' hashes
   (``compact-<sha16>.parquet``: the same inputs always give the same name, so a re-run
   after a crash adopts a merged file it finds instead of writing another);
2. a compaction manifest ``manifests/compaction-<sha16>.json`` records the merged file
   and every file it replaces (path, rows, sha256): the commit record;
3. the replaced files are deleted.

A crash before 2 leaves an unlisted merged file (``ingest verify`` reports it; the next
``ingest compact`` adopts it); a crash between 2 and 3 leaves replaced files that
``verify`` reports as an unfinished compaction and the next ``compact`` deletes. Between
steps 1 and 3 (milliseconds on a local disk) a reader may see the partition's rows twice:
neither a folder nor a bucket can swap several files at once.

Only files some manifest lists are merged; anything else in a partition is left alone.

Example::

    done = compact_archive(storage, dataset="messages", bots=["b1"])
    print(done.partitions, done.files_before, done.files_after)
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.archive.commit import as_json, write_bytes_once, write_once
from ingest.archive.layout import compact_key, compaction_key
from ingest.archive.manifests import listed_files, read_manifests
from ingest.archive.storage import Storage, as_storage, sha256_file


@dataclass
class CompactSummary:
    """What :func:`compact_archive` did."""

    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    finished: int = 0  # unfinished compactions of a killed run, completed


def compact_archive(
    root: Storage | Path, *, dataset: str = "messages", bots: list[str] | None = None, min_files: int = 2
) -> CompactSummary:
    """Merge every partition of ``dataset`` holding at least ``min_files`` listed files."""
    out = as_storage(root)
    summary = CompactSummary()
    existing = {o.key for o in out.objects(f"{dataset}/")}
    listing = listed_files(read_manifests(out))
    listed = {path: entry for path, (_, entry) in listing.files.items()}
    for _, record in listing.compactions:  # finish what a killed run left between steps 2 and 3
        leftovers = [old["path"] for old in record["replaces"] if old["path"] in existing]
        for key in leftovers:
            out.delete(key)
        existing -= set(leftovers)
        summary.finished += bool(leftovers)
    partitions: dict[str, list[str]] = defaultdict(list)
    for key in sorted(existing):
        folder = key.rsplit("/", 1)[0]
        bot = folder.split("/")[1].removeprefix("bot_id=") if folder.count("/") >= 2 else ""
        if key in listed and key.endswith(".parquet") and (not bots or bot in bots):
            partitions[folder].append(key)
    for folder, keys in sorted(partitions.items()):
        if len(keys) < min_files:
            continue
        summary.rows += compact_partition(out, folder, [listed[k] for k in keys])
        summary.partitions += 1
        summary.files_before += len(keys)
        summary.files_after += 1
    return summary


def compact_partition(out: Storage, folder: str, files: list[dict[str, Any]]) -> int:
    """Merge ``files`` (manifest entries) of one partition folder; returns the rows."""
    files = sorted(files, key=lambda f: f["path"])
    name = hashlib.sha256("\n".join(f["sha256"] for f in files).encode()).hexdigest()[:16]
    target = compact_key(folder, name)
    merged = out.scan([f["path"] for f in files], hive_partitioning=False).collect()
    if "timestamp" in merged.columns:  # stable: equal timestamps keep their order
        merged = merged.sort("timestamp", maintain_order=True)
    digest: list[str] = []

    def write(tmp: Path) -> None:
        merged.write_parquet(tmp, compression="zstd", statistics=True)
        digest.append(sha256_file(tmp))

    if not write_once(out, target, write):  # merged by a killed run before its record
        digest = [out.sha256(target) or ""]
    record = {
        "compaction": {
            "partition": folder,
            "file": {"path": target, "rows": merged.height, "sha256": digest[-1]},
            "replaces": [{k: f[k] for k in ("path", "rows", "sha256")} for f in files],
        },
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_bytes_once(out, compaction_key(name), as_json(record))
    for entry in files:
        out.delete(entry["path"])
    return merged.height
