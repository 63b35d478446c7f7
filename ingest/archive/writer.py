"""Write parsed reports into the archive: Parquet partitioned by bot and date, the raw
bytes, rejected rows in quarantine, and a provenance manifest written last.

Layout (the contract users query)::

    <root>/messages/bot_id=<bot>/date=<YYYY-MM-DD>/part-<sha256[:16]>.parquet
    <root>/raw/bot_id=<bot>/<sha256>.<ext>
    <root>/quarantine/<sha256>/rejected_rows.parquet, reason.json
    <root>/manifests/<sha256>.json

The root is a :class:`ingest.archive.storage.Storage` (a local folder or an S3 prefix); a plain
path means a local folder. Keys: :mod:`ingest.archive.layout`; commit order:
:mod:`ingest.archive.commit`. A data file is
named after the source's hash and never rewritten, and rows whose (bot_id, id) the bot's
archive already holds (any day: :mod:`ingest.archive.conflicts`) are duplicates or
conflicts, never a second row, so replaying a report after a crash adds nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from ingest.archive.commit import (
    Attachment,
    SaveResult,
    WrittenFile,
    commit,
    write_bytes_once,
    write_once,
    write_reasons,
)
from ingest.archive.conflicts import ArchivedIds, against_archive, conflict_record, in_report_conflicts
from ingest.archive.delta import snapshot_keys
from ingest.archive.layout import (
    bot_prefix,
    data_key,
    partition_key,
    raw_key,
    rejected_rows_key,
)
from ingest.archive.storage import Storage, as_storage, sha256_file
from ingest.parse.arrowrows import FILE_SCHEMA
from ingest.parse.parser import ParsedReport
from ingest.parse.schema import DATASET, file_schema


def existing_ids(
    storage: Storage, partition: str, key: str = "id", snapshot: list[str] | None = None
) -> pl.Series:
    """The ids (or other ``key`` values) already archived in a partition: in the files of
    its Delta table's snapshot (a file a killed run published but never committed is not
    archived data: its ids must not make this run skip rows). ``snapshot``: the table's
    file keys when already listed."""
    dataset = partition.split("/", 1)[0]
    keys = [
        k
        for k in (snapshot_keys(storage, dataset) if snapshot is None else snapshot)
        if k.startswith(partition + "/")
    ]
    if not keys:
        return pl.Series(key, [], dtype=pl.Int64 if key == "id" else pl.String)
    return storage.scan(keys).select(key).collect().get_column(key)


def save_report(
    root: Storage | Path,
    parsed: ParsedReport,
    *,
    bot_id: str,
    source_sha256: str,
    raw: bytes,
    raw_name: str,
    provenance: dict[str, Any],
) -> SaveResult:
    """Archive one parsed report held in memory (the GET path): raw bytes, new rows,
    rejects, through the commit protocol (:func:`ingest.archive.commit.commit`).

    Exactly once over the whole bot, as the stream does: a row whose id is archived on any
    day is a duplicate (same content) or a conflict (other content: quarantined, counted
    in rows_rejected and detailed in ``conflicts``), :func:`ingest.archive.conflicts.against_archive`."""
    storage = as_storage(root)
    archived = ArchivedIds.load(storage, bot_id)  # the table's log read once for the whole report
    keep, clashing, found = against_archive(
        storage, bot_id, archived, parsed.rows, parsed.row_numbers, parsed.text_of
    )
    rows = parsed.rows.filter(keep) if clashing is not None or found.duplicates else parsed.rows
    rejected = (
        parsed.rejected
        if clashing is None
        else pl.concat([parsed.rejected, clashing], how="vertical_relaxed")
    )
    result = SaveResult(
        parsed.rows_read,
        0,
        parsed.duplicates_in_file + found.duplicates,
        rejected.height,
        conflicts=[
            conflict_record(c, source_sha256)
            for c in in_report_conflicts(bot_id, parsed.in_file_conflicts) + found.conflicts
        ],
    )
    result.rows_conflict = len(result.conflicts)  # in the report and with the archive, as the stream counts

    def data() -> None:
        write_partitions(
            storage,
            rows,
            result,
            dataset=DATASET,
            bot_id=bot_id,
            source_sha256=source_sha256,
            key="id",
            columns=list(file_schema()),
            # No file to look in again: against_archive judged every id against all of the
            # bot's files (these partitions' among them), so no archived id is left in rows.
            snapshot=[],
        )
        if rejected.height:
            save_rejected(storage, source_sha256, rejected)

    return commit(
        storage,
        result,
        Attachment(bot_id, source_sha256, raw_name, len(raw)),
        raw=lambda: write_bytes_once(storage, raw_key(bot_id, source_sha256, raw_name), raw),
        data=data,
        extra_columns=parsed.extra_columns,
        provenance=provenance,
        schema=FILE_SCHEMA,
        opened=archived.table,
    )


def write_partitions(
    storage: Storage,
    rows: pl.DataFrame,
    result: SaveResult,
    *,
    dataset: str,
    bot_id: str,
    source_sha256: str,
    key: str,
    columns: list[str],
    snapshot: list[str] | None = None,
) -> None:
    """Write ``rows`` (with a ``date`` column) as one new file per date partition of
    ``<dataset>/bot_id=<bot>/``, without the ``key`` values the partition already holds
    (counted as duplicates in ``result``). ``snapshot``: the bot's files in the table's
    snapshot, when already listed."""
    if snapshot is None:
        snapshot = snapshot_keys(storage, dataset, bot_prefix(bot_id, dataset))  # the table's log, read once
    for (day,), part in rows.partition_by("date", as_dict=True, maintain_order=True).items():
        have = existing_ids(storage, partition_key(bot_id, day, dataset), key, snapshot)
        new = part.filter(~pl.col(key).is_in(have.implode())) if have.len() else part
        new = new.select(columns)
        result.rows_duplicate += part.height - new.height
        if new.height == 0:
            continue
        target = data_key(bot_id, day, source_sha256, dataset)
        written = _write_partition_file(storage, target, new)
        result.files.append(WrittenFile(target, new.height, written))
        result.rows_written += new.height


def _write_partition_file(storage: Storage, target: str, rows: pl.DataFrame) -> str:
    """Write one partition's new rows under ``target`` once; returns the file's sha256
    (of the file an earlier, killed attempt published, when it exists)."""
    digest: list[str] = []

    def write(tmp: Path) -> None:
        rows.write_parquet(tmp, compression="zstd", statistics=True)
        digest.append(sha256_file(tmp))

    if not write_once(storage, target, write):
        return storage.sha256(target) or ""
    return digest[-1]


def save_rejected(storage: Storage, source_sha256: str, rejected: pl.DataFrame) -> None:
    """quarantine/<sha256>/rejected_rows.parquet and reason.json for rows refused one by one."""
    write_once(storage, rejected_rows_key(source_sha256), lambda tmp: rejected.write_parquet(tmp))
    write_reasons(storage, source_sha256, dict(rejected.group_by("reason").len().rows()))
