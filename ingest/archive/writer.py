"""Write parsed reports into the archive: Parquet partitioned by bot and date, the raw
bytes, rejected rows in quarantine, and a provenance manifest written last.

Layout (the contract users query)::

    <root>/messages/bot_id=<bot>/date=<YYYY-MM-DD>/part-<sha256[:16]>.parquet
    <root>/raw/bot_id=<bot>/<sha256>.<ext>
    <root>/quarantine/<sha256>/rejected_rows.parquet, reason.json
    <root>/manifests/<sha256>.json

The root is a :class:`ingest.archive.storage.Storage` (a local folder or an S3 prefix); a plain
path means a local folder. Commit order: data files durable (published) -> manifest. A data file is
named after the source's hash and never rewritten, and rows whose (bot_id, id) a
partition already holds are skipped, so replaying a report after a crash adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ingest.crashpoints import crash_point
from ingest.errors import OutputError
from ingest.parse.parser import ParsedReport
from ingest.parse.schema import DATASET, file_schema
from ingest.archive.storage import Storage, as_storage, sha256_stream


@dataclass(frozen=True)
class WrittenFile:
    """A data file this report added to the archive."""

    path: str  # relative to the archive root, with forward slashes
    rows: int
    sha256: str


@dataclass
class SaveResult:
    """What :func:`save_report` did; it is also the body of the manifest's counts."""

    rows_read: int
    rows_written: int
    rows_duplicate: int
    rows_rejected: int
    files: list[WrittenFile] = field(default_factory=list)
    manifest: str = ""
    #: Rows refused as conflicts (inside rows_rejected): their id is archived with other
    #: content. The manifest counts them; ``conflicts`` details them for the state store.
    rows_conflict: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    with path.open("rb") as stream:
        return sha256_stream(stream)


def write_once(out: Storage, key: str, write: Any) -> bool:
    """Write a file under a temporary name, then publish it under ``key``, once.

    ``write(tmp_path)`` produces the content. Returns False (and writes nothing) when
    ``key`` exists already: a published file is never replaced.
    """
    if out.exists(key):
        return False
    tmp = out.temp(key.rsplit("/", 1)[-1])
    try:
        write(tmp)
        return out.publish(tmp, key)
    except OSError as err:
        raise OutputError(f"cannot write {out.describe(key)}: {err.strerror or err}",
                          hint="INGEST_OUTPUT__ROOT") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # its folder could not even be made: there is nothing to clean up


def write_bytes_once(out: Storage, key: str, data: bytes) -> bool:
    """:func:`write_once` for a bytes payload."""
    return write_once(out, key, lambda tmp: tmp.write_bytes(data))


def partition_key(bot_id: str, day: Any, dataset: str = DATASET) -> str:
    """messages/bot_id=<bot>/date=<YYYY-MM-DD>: a partition's folder, as a key prefix."""
    return f"{dataset}/bot_id={bot_id}/date={day}"


def existing_ids(out: Storage, partition: str, key: str = "id") -> pl.Series:
    """The ids (or other ``key`` values) already archived in a partition."""
    # A leftover temporary file of a killed run is not archived data: its ids must not
    # make this run skip rows.
    keys = [o.key for o in out.objects(partition + "/")
            if o.key.endswith(".parquet") and not o.key.rsplit("/", 1)[-1].startswith(".")]
    if not keys:
        return pl.Series(key, [], dtype=pl.Int64 if key == "id" else pl.String)
    return out.scan(keys).select(key).collect().get_column(key)


def save_report(
    root: Storage | Path, parsed: ParsedReport, *, bot_id: str, source_sha256: str, raw: bytes,
    raw_name: str, provenance: dict[str, Any],
) -> SaveResult:
    """Archive one parsed report (raw bytes, new rows, rejects) and write its manifest."""
    out = as_storage(root)
    write_bytes_once(out, raw_key(bot_id, source_sha256, raw_name), raw)
    crash_point("after_raw")

    result = SaveResult(parsed.rows_read, 0, parsed.duplicates_in_file, parsed.rejected.height)
    if parsed.rejected.height:  # in-file conflicts (ingest.archive.conflicts), counted like the stream does
        result.rows_conflict = parsed.rejected.filter(pl.col("reason").str.starts_with("conflict:")).height
    write_partitions(out, parsed.rows, result, dataset=DATASET, bot_id=bot_id,
                     source_sha256=source_sha256, key="id", columns=list(file_schema()))
    if parsed.rejected.height:
        save_rejected(out, source_sha256, parsed.rejected)

    crash_point("after_data")
    adopt_own_files(out, bot_id, source_sha256, result)
    result.manifest = write_manifest(
        out, result, bot_id=bot_id, source_sha256=source_sha256, raw_name=raw_name,
        raw_size=len(raw), extra_columns=parsed.extra_columns, provenance=provenance)
    crash_point("after_manifest")
    return result


def write_partitions(out: Storage, rows: pl.DataFrame, result: SaveResult, *, dataset: str,
                     bot_id: str, source_sha256: str, key: str, columns: list[str]) -> None:
    """Write ``rows`` (with a ``date`` column) as one new file per date partition of
    ``<dataset>/bot_id=<bot>/``, without the ``key`` values the partition already holds
    (counted as duplicates in ``result``)."""
    for (day,), part in rows.partition_by("date", as_dict=True, maintain_order=True).items():
        folder = partition_key(bot_id, day, dataset)
        have = existing_ids(out, folder, key)
        new = part.filter(~pl.col(key).is_in(have.implode())) if have.len() else part
        new = new.select(columns)
        result.rows_duplicate += part.height - new.height
        if new.height == 0:
            continue
        target = f"{folder}/part-{source_sha256[:16]}.parquet"
        digest: list[str] = []

        def write(tmp: Path, new: pl.DataFrame = new) -> None:
            new.write_parquet(tmp, compression="zstd", statistics=True)
            digest.append(sha256_file(tmp))

        if not write_once(out, target, write):  # published by an earlier, killed attempt
            digest = [out.sha256(target) or ""]
        result.files.append(WrittenFile(target, new.height, digest[-1]))
        result.rows_written += new.height


def save_rejected(out: Storage, source_sha256: str, rejected: pl.DataFrame) -> None:
    """quarantine/<sha256>/rejected_rows.parquet and reason.json for rows refused one by one."""
    write_once(out, f"quarantine/{source_sha256}/rejected_rows.parquet",
               lambda tmp: rejected.write_parquet(tmp))
    write_reasons(out, source_sha256, dict(rejected.group_by("reason").len().rows()))


def adopt_own_files(out: Storage, bot_id: str, source_sha256: str, result: SaveResult,
                    dataset: str = DATASET) -> None:
    """List this source's data files that an earlier, killed attempt published before its
    manifest: their rows were just counted as duplicates (they are in the partition), but
    they are this report's rows, so they count as written by it, and the manifest names
    the files. Without this, a crash between data files and manifest leaves orphans."""
    if out.exists(manifest_key(source_sha256)):
        return  # committed before: this is a re-delivery, and its rows are duplicates
    listed = {f.path for f in result.files}
    name = f"/part-{source_sha256[:16]}.parquet"
    for found in out.objects(f"{dataset}/bot_id={bot_id}/date="):
        if not found.key.endswith(name) or found.key in listed:
            continue
        rows = out.parquet_rows(found.key)
        result.files.append(WrittenFile(found.key, rows, out.sha256(found.key) or ""))
        result.rows_written += rows
        result.rows_duplicate -= rows
    result.files.sort(key=lambda f: f.path)


def write_manifest(out: Storage, result: SaveResult, *, bot_id: str, source_sha256: str,
                   raw_name: str, raw_size: int, extra_columns: list[str],
                   provenance: dict[str, Any]) -> str:
    """Write the manifest, the commit record: only after every data file is durable.

    Returns its path relative to the root.
    """
    manifest = {
        **provenance,
        "bot_id": bot_id,
        "attachment": {"name": raw_name, "size": raw_size, "sha256": source_sha256},
        "extra_columns": extra_columns,
        # rows_conflict (inside rows_rejected) only when there are some: manifests stay as they were.
        "counts": {k: v for k, v in asdict(result).items()
                   if k.startswith("rows_") and (v or k != "rows_conflict")},
        "files": [asdict(f) for f in result.files],
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    key = manifest_key(source_sha256)
    write_bytes_once(out, key, _json(manifest))
    return key


def manifest_key(source_sha256: str) -> str:
    """manifests/<sha256>.json: a source's commit record."""
    return f"manifests/{source_sha256}.json"


def raw_key(bot_id: str, source_sha256: str, raw_name: str) -> str:
    """raw/bot_id=<bot>/<sha256>.<ext>: where the attachment's bytes are kept."""
    ext = raw_name.rsplit(".", 1)[-1].lower() if "." in raw_name else "bin"
    return f"raw/bot_id={bot_id}/{source_sha256}.{ext}"


def write_reasons(out: Storage, source_sha256: str, reasons: dict[str, int]) -> None:
    """quarantine/<sha256>/reason.json: how many rows were rejected for each reason."""
    write_bytes_once(out, f"quarantine/{source_sha256}/reason.json",
                     _json({"reasons": dict(sorted(reasons.items()))}))


def quarantine_file(root: Storage | Path, source_sha256: str, raw: bytes | Path, raw_name: str, reason: str,
                    provenance: dict[str, Any]) -> str:
    """Keep a whole file that could not be archived, with its reason. Returns the folder.

    ``raw`` is the bytes, or the path of a file too big to hold (copied, not loaded).
    """
    out = as_storage(root)
    qdir = f"quarantine/{source_sha256}"
    if isinstance(raw, Path):
        write_once(out, f"{qdir}/original-{raw_name}", lambda tmp: shutil.copyfile(raw, tmp))
    else:
        write_bytes_once(out, f"{qdir}/original-{raw_name}", raw)
    write_bytes_once(out, f"{qdir}/reason.json", _json({"reason": reason, **provenance}))
    return qdir


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2, ensure_ascii=False, default=str).encode() + b"\n"
