"""The commit protocol: the one way a source's rows enter the archive.

Every save (the streaming CSV path, the in-memory GET path, typed reports) goes through
:func:`commit`, in this order, each step durable before the next::

    raw bytes  -> raw/bot_id=<bot>/<sha256>.<ext>              crash point "after_raw"
    data files -> <dataset>/.../part-<sha16>.parquet
    quarantine -> quarantine/<sha256>/...                      crash point "after_data"
    adopt      -> this source's files a killed attempt published count as its own
    Delta      -> one commit adding the files to <dataset>/    crash point "after_commit"
    (replay)   -> a killed attempt's commit stands: files of rows the table lost since go
    index      -> subjects/<dataset>/bot_id=<bot>/...          (the subject index, same crash point)
    manifest   -> manifests/<sha256>.json (the evidence)       crash point "after_manifest"

Readers see the rows once the Delta commit (:func:`ingest.archive.delta.commit_report`) is
made; the manifest is written after it, the record ``verify`` checks the table against.
A run killed anywhere replays the source and names every file once (data files are named
after the source's hash and never rewritten; a published key is never replaced,
:func:`write_once`); a report already committed is recognised by its Delta application
transaction and never committed twice.

Example::

    result = SaveResult(rows_read=10, rows_written=0, rows_duplicate=0, rows_rejected=0)
    commit(out, result, Attachment("bot-1", sha, "report.csv", size), raw=publish_raw,
           data=publish_data, extra_columns=[], provenance={"source": "GET"})
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import pyarrow as pa
from deltalake import DeltaTable

from ingest.archive.delta import commit_report, committed, current_table
from ingest.archive.layout import bot_prefix, manifest_key, part_name, reasons_key
from ingest.archive.snapshot import snapshot_files
from ingest.archive.storage import Storage
from ingest.archive.subjects import index_files
from ingest.crashpoints import crash_point
from ingest.errors import OutputError
from ingest.parse.schema import DATASET
from ingest.records import QuarantineReasons, ReportManifest, build, dump


@dataclass(frozen=True)
class WrittenFile:
    """A data file this report added to the archive."""

    path: str  # relative to the archive root, with forward slashes
    rows: int
    sha256: str


class RowCounts(TypedDict):
    """A report's four row counts, by the names the state store and manifests use."""

    rows_read: int
    rows_written: int
    rows_duplicate: int
    rows_rejected: int


@dataclass
class SaveResult:
    """What a commit did; it is also the body of the manifest's counts."""

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
    #: The Delta table version of this report's commit (made now or by a killed run).
    version: int | None = None

    def counts(self) -> RowCounts:
        """The four row counts, by name (``rows_read`` = the other three added up)."""
        return {
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "rows_duplicate": self.rows_duplicate,
            "rows_rejected": self.rows_rejected,
        }


@dataclass(frozen=True)
class Attachment:
    """What a commit is for: whose, the source's hash, name and size, its dataset."""

    bot_id: str
    sha256: str
    raw_name: str
    raw_size: int
    dataset: str = DATASET


def commit(
    storage: Storage,
    result: SaveResult,
    source: Attachment,
    *,
    raw: Callable[[], object],
    data: Callable[[], object],
    extra_columns: list[str],
    provenance: dict[str, Any],
    schema: pa.Schema,
    discard: Callable[[], object] = lambda: None,
    opened: DeltaTable | None = None,
) -> SaveResult:
    """Publish a source: ``raw()`` (its bytes), ``data()`` (its data files, recorded in
    ``result``, and its quarantine), then adopt its own earlier files, then one Delta commit
    of the files (``schema``: theirs, without the partition columns), then the manifest.
    On an error before the data is in place, ``discard()`` removes what is temporary.
    ``opened``: the dataset's table as this report read it before (updated, not reopened)."""
    try:
        raw()
        crash_point("after_raw")
        data()
    except OSError as err:
        discard()
        raise OutputError(
            f"cannot write under {storage.describe()}: {err.strerror or err}", hint="INGEST_OUTPUT__ROOT"
        ) from None
    except BaseException:
        discard()
        raise
    crash_point("after_data")
    adopt_own_files(storage, source, result, opened)
    # A replay of a report an earlier, killed attempt committed (checked before committing).
    replay = committed(current_table(storage, source.dataset) if opened is None else opened, source.sha256)
    result.version = commit_report(
        storage,
        source.dataset,
        source.bot_id,
        [(f.path, f.rows) for f in result.files],
        source.sha256,
        schema,
        commit_provenance(result, source, provenance),
        opened,
    )
    crash_point("after_commit")
    if replay:
        drop_uncommitted(storage, source, result)
    # The subject index, after the data is committed (a crash before it only slows searches).
    index_files(storage, source.dataset, source.bot_id, [f.path for f in result.files])
    result.manifest = write_manifest(
        storage, result, source, extra_columns=extra_columns, provenance=provenance
    )
    crash_point("after_manifest")
    return result


def commit_provenance(result: SaveResult, source: Attachment, provenance: dict[str, Any]) -> dict[str, Any]:
    """What a Delta commit's info says of its report (``ingest.*`` keys): the source's hash,
    bot, file name, window, email Message-ID and counts; the manifest has the rest."""
    window = provenance.get("window")
    email = provenance.get("email")
    return {
        "source_sha256": source.sha256,
        "bot_id": source.bot_id,
        "attachment": source.raw_name,
        "source": provenance.get("source", "email" if isinstance(email, dict) else ""),
        "window_id": window.get("id") if isinstance(window, dict) else None,
        "message_id": email.get("message_id") if isinstance(email, dict) else None,
        "counts": {k: v for k, v in asdict(result).items() if k.startswith("rows_")},
    }


def write_once(storage: Storage, key: str, write: Callable[[Path], object]) -> bool:
    """Write a file under a temporary name, then publish it under ``key``, once.

    ``write(tmp_path)`` produces the content. Returns False (and writes nothing) when
    ``key`` exists already: a published file is never replaced.
    """
    if storage.exists(key):
        return False
    tmp = storage.temp(key.rsplit("/", 1)[-1])
    try:
        write(tmp)
        return storage.publish(tmp, key)
    except OSError as err:
        raise OutputError(
            f"cannot write {storage.describe(key)}: {err.strerror or err}", hint="INGEST_OUTPUT__ROOT"
        ) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # its folder could not even be made: there is nothing to clean up


def write_bytes_once(storage: Storage, key: str, data: bytes) -> bool:
    """:func:`write_once` for a bytes payload."""
    return write_once(storage, key, lambda tmp: tmp.write_bytes(data))


def adopt_own_files(
    storage: Storage, source: Attachment, result: SaveResult, opened: DeltaTable | None = None
) -> None:
    """List this source's data files that an earlier, killed attempt committed before its
    manifest: their rows were just counted as duplicates (they are in the table), but
    they are this report's rows, so they count as written by it, and the manifest names
    the files. Without this, a crash between commit and manifest leaves files no manifest names.

    Looked for in the table's snapshot (``opened``, the table this report read), not by
    listing every partition of the bot: that listing grew with the archive. A file a killed
    attempt published but never committed holds rows no reader saw, so this attempt found
    them new and wrote them under the same key (kept as it was, :func:`write_once`)."""
    if storage.exists(manifest_key(source.sha256)):
        return  # committed before: this is a re-delivery, and its rows are duplicates
    table = current_table(storage, source.dataset) if opened is None else opened
    if table is None:
        return
    listed = {f.path for f in result.files}
    prefix, name = bot_prefix(source.bot_id, source.dataset) + "date=", "/" + part_name(source.sha256)
    for found in snapshot_files(table, source.dataset, source.bot_id):
        if not found.key.startswith(prefix) or not found.key.endswith(name) or found.key in listed:
            continue
        rows = storage.parquet_rows(found.key)
        result.files.append(WrittenFile(found.key, rows, storage.sha256(found.key) or ""))
        result.rows_written += rows
        result.rows_duplicate -= rows
    result.files.sort(key=lambda f: f.path)


def drop_uncommitted(storage: Storage, source: Attachment, result: SaveResult) -> None:
    """Remove the files this replay published that the table does not hold. A report whose
    commit an earlier, killed attempt made is not committed again; rows that commit archived
    and that left the table since (erased, pruned, resolved away) were found new by this
    replay and written again: they must not stay on disk, nor be indexed or listed (an
    erasure between a killed import and its retry would otherwise come undone). They count
    as duplicates: this report's commit archived them once."""
    table = current_table(storage, source.dataset)
    if table is None:
        return
    have = {f.key for f in snapshot_files(table, source.dataset, source.bot_id)}
    for written in [f for f in result.files if f.path not in have]:
        storage.delete(written.path)
        result.files.remove(written)
        result.rows_written -= written.rows
        result.rows_duplicate += written.rows


def write_manifest(
    storage: Storage,
    result: SaveResult,
    source: Attachment,
    *,
    extra_columns: list[str],
    provenance: dict[str, Any],
) -> str:
    """Write the manifest, the commit record: only after every data file is durable.

    Returns its path relative to the root.
    """
    manifest = build(
        ReportManifest,
        {
            **provenance,
            "bot_id": source.bot_id,
            "attachment": {"name": source.raw_name, "size": source.raw_size, "sha256": source.sha256},
            "extra_columns": extra_columns,
            # rows_conflict (inside rows_rejected) only when there are some: manifests stay as they were.
            "counts": {
                k: v
                for k, v in asdict(result).items()
                if k.startswith("rows_") and (v or k != "rows_conflict")
            },
            "files": [asdict(f) for f in result.files],
            # The Delta commit that made the files visible (verify --as-of checks older snapshots).
            "delta": {"table": source.dataset, "version": result.version},
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    key = manifest_key(source.sha256)
    write_bytes_once(storage, key, dump(manifest))
    return key


def write_reasons(storage: Storage, source_sha256: str, reasons: dict[str, int]) -> None:
    """quarantine/<sha256>/reason.json: how many rows were rejected for each reason."""
    record = QuarantineReasons(reasons=dict(sorted(reasons.items())))
    write_bytes_once(storage, reasons_key(source_sha256), dump(record))
