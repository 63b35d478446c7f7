"""Write parsed reports into the archive: Parquet partitioned by bot and date, the raw
bytes, rejected rows in quarantine, and a provenance manifest written last.

Layout (the contract users query)::

    <root>/messages/bot_id=<bot>/date=<YYYY-MM-DD>/part-<sha256[:16]>.parquet
    <root>/raw/bot_id=<bot>/<sha256>.<ext>
    <root>/quarantine/<sha256>/rejected_rows.parquet, reason.json
    <root>/manifests/<sha256>.json

Commit order: data files durable (fsync file and folder) -> manifest. A data file is
named after the source's hash and never rewritten, and rows whose (bot_id, id) a
partition already holds are skipped, so replaying a report after a crash adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from ingest.crashpoints import crash_point
from ingest.errors import OutputError
from ingest.parser import ParsedReport
from ingest.schema import DATASET, file_schema


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


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_once(path: Path, write: Any) -> bool:
    """Write a file under a temporary name, fsync it, then link it into place.

    ``write(tmp_path)`` produces the content. Returns False (and writes nothing) when
    ``path`` exists already: a published file is never replaced.
    """
    if path.exists():
        return False
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        return publish(tmp, path)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}", hint="INGEST_OUTPUT__ROOT") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # its folder could not even be made: there is nothing to clean up


STAGING = ".staging"
_AREAS = ("messages", "raw", "quarantine", "manifests")


def temp_name(path: Path, tag: str = "") -> Path:
    """The temporary name a file is written under before :func:`publish` links it.

    Temporary files live in ``<root>/.staging/`` (the same file system, so the link into
    place is atomic), never beside published data: a reader globbing
    ``messages/**/*.parquet`` while a job runs, or after a job was killed, sees only
    published files. Leftovers of a killed job are swept by the next one
    (:func:`sweep_staging`).
    """
    root = next((p.parent for p in path.parents if p.name in _AREAS), path.parent)
    staging = root / STAGING
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # the caller's write fails and reports it
    return staging / f".tmp-{os.getpid()}-{tag}{uuid.uuid4().hex[:8]}-{path.name}"


def sweep_staging(root: Path) -> int:
    """Remove temporary files left by a killed job. Only safe while holding the job lock
    (no other writer can be alive). Returns how many were removed."""
    removed = 0
    candidates = list((Path(root) / STAGING).glob(".tmp-*"))
    for area in _AREAS:  # leftovers from before the staging folder existed
        candidates += list((Path(root) / area).rglob(".tmp-*"))
    for leftover in candidates:
        try:
            leftover.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def publish(tmp: Path, path: Path) -> bool:
    """fsync a finished temporary file, link it to ``path``, fsync the folder.

    Returns False when ``path`` exists already (it is left alone: no overwrite, even in a
    race). The temporary name is the caller's to remove. Raises OSError.
    """
    with tmp.open("rb+") as stream:
        os.fsync(stream.fileno())
    try:
        os.link(tmp, path)  # fails if the name exists: no overwrite, even in a race
    except FileExistsError:
        return False
    _fsync_dir(path.parent)
    return True


def write_bytes_once(path: Path, data: bytes) -> bool:
    """:func:`write_once` for a bytes payload."""
    return write_once(path, lambda tmp: tmp.write_bytes(data))


def partition_dir(root: Path, bot_id: str, day: Any) -> Path:
    """messages/bot_id=<bot>/date=<YYYY-MM-DD>/ under the root."""
    return root / DATASET / f"bot_id={bot_id}" / f"date={day}"


def existing_ids(folder: Path) -> pl.Series:
    """The ids already archived in a partition folder."""
    # A leftover temporary file of a killed run is not archived data: its ids must not
    # make this run skip rows.
    files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    if not files:
        return pl.Series("id", [], dtype=pl.Int64)
    return pl.scan_parquet(files).select("id").collect().get_column("id")


def save_report(
    root: Path, parsed: ParsedReport, *, bot_id: str, source_sha256: str, raw: bytes,
    raw_name: str, provenance: dict[str, Any],
) -> SaveResult:
    """Archive one parsed report (raw bytes, new rows, rejects) and write its manifest."""
    root = Path(root)
    write_bytes_once(raw_path(root, bot_id, source_sha256, raw_name), raw)
    crash_point("after_raw")

    result = SaveResult(parsed.rows_read, 0, parsed.duplicates_in_file, parsed.rejected.height)
    columns = list(file_schema())
    for (day,), part in parsed.rows.partition_by("date", as_dict=True, maintain_order=True).items():
        folder = partition_dir(root, bot_id, day)
        new = part.join(existing_ids(folder).to_frame(), on="id", how="anti").select(columns)
        result.rows_duplicate += part.height - new.height
        if new.height == 0:
            continue
        target = folder / f"part-{source_sha256[:16]}.parquet"
        write_once(target, lambda tmp: new.write_parquet(tmp, compression="zstd", statistics=True))
        result.files.append(WrittenFile(target.relative_to(root).as_posix(), new.height,
                                        sha256_file(target)))
        result.rows_written += new.height

    if parsed.rejected.height:
        qdir = root / "quarantine" / source_sha256
        write_once(qdir / "rejected_rows.parquet", lambda tmp: parsed.rejected.write_parquet(tmp))
        write_reasons(root, source_sha256, dict(parsed.rejected.group_by("reason").len().rows()))

    crash_point("after_data")
    adopt_own_files(root, bot_id, source_sha256, result)
    result.manifest = write_manifest(
        root, result, bot_id=bot_id, source_sha256=source_sha256, raw_name=raw_name,
        raw_size=len(raw), extra_columns=parsed.extra_columns, provenance=provenance)
    crash_point("after_manifest")
    return result


def adopt_own_files(root: Path, bot_id: str, source_sha256: str, result: SaveResult) -> None:
    """List this source's data files that an earlier, killed attempt published before its
    manifest: their rows were just counted as duplicates (they are in the partition), but
    they are this report's rows, so they count as written by it, and the manifest names
    the files. Without this, a crash between data files and manifest leaves orphans."""
    if (Path(root) / "manifests" / f"{source_sha256}.json").exists():
        return  # committed before: this is a re-delivery, and its rows are duplicates
    listed = {f.path for f in result.files}
    pattern = f"{DATASET}/bot_id={bot_id}/date=*/part-{source_sha256[:16]}.parquet"
    for path in sorted(Path(root).glob(pattern)):
        relative = path.relative_to(root).as_posix()
        if relative in listed:
            continue
        rows = pq.ParquetFile(path).metadata.num_rows
        result.files.append(WrittenFile(relative, rows, sha256_file(path)))
        result.rows_written += rows
        result.rows_duplicate -= rows
    result.files.sort(key=lambda f: f.path)


def write_manifest(root: Path, result: SaveResult, *, bot_id: str, source_sha256: str,
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
        "counts": {k: v for k, v in asdict(result).items() if k.startswith("rows_")},
        "files": [asdict(f) for f in result.files],
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest_path = Path(root) / "manifests" / f"{source_sha256}.json"
    write_bytes_once(manifest_path, _json(manifest))
    return manifest_path.relative_to(root).as_posix()


def raw_path(root: Path, bot_id: str, source_sha256: str, raw_name: str) -> Path:
    """raw/bot_id=<bot>/<sha256>.<ext>: where the attachment's bytes are kept."""
    ext = raw_name.rsplit(".", 1)[-1].lower() if "." in raw_name else "bin"
    return Path(root) / "raw" / f"bot_id={bot_id}" / f"{source_sha256}.{ext}"


def write_reasons(root: Path, source_sha256: str, reasons: dict[str, int]) -> None:
    """quarantine/<sha256>/reason.json: how many rows were rejected for each reason."""
    qdir = Path(root) / "quarantine" / source_sha256
    write_bytes_once(qdir / "reason.json", _json({"reasons": dict(sorted(reasons.items()))}))


def quarantine_file(root: Path, source_sha256: str, raw: bytes | Path, raw_name: str, reason: str,
                    provenance: dict[str, Any]) -> str:
    """Keep a whole file that could not be archived, with its reason. Returns the folder.

    ``raw`` is the bytes, or the path of a file too big to hold (copied, not loaded).
    """
    qdir = Path(root) / "quarantine" / source_sha256
    if isinstance(raw, Path):
        write_once(qdir / f"original-{raw_name}", lambda tmp: shutil.copyfile(raw, tmp))
    else:
        write_bytes_once(qdir / f"original-{raw_name}", raw)
    write_bytes_once(qdir / "reason.json", _json({"reason": reason, **provenance}))
    return qdir.relative_to(root).as_posix()


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2, ensure_ascii=False, default=str).encode() + b"\n"
