"""Each dataset of the archive is a Delta Lake table, and this job its only writer.

::

    <root>/<dataset>/_delta_log/<version>.json                         the table's log
    <root>/<dataset>/bot_id=<bot>/date=<YYYY-MM-DD>/part-<sha16>.parquet  data, one file per source and date

The data files are written by our own bounded-memory writers (:mod:`ingest.archive.staging`,
:mod:`ingest.archive.writer`), published under their key once, and then committed to the table
as *add actions*, one Delta commit per report (:func:`commit_report`). The commit carries the
report's provenance in its commit info (``ingest.*`` keys) and an *application transaction*
``(app_id = "certainly-ingest:<sha256>", version = 1)``: a report already committed is
recognised by :func:`committed` and never committed twice, whatever crashed in between.

Readers see a file only once a commit adds it; a file published but never committed (a
crash between data and commit) is invisible, adopted by the next run (same name) or removed
by ``ingest vacuum``. Globbing ``**/*.parquet`` is unsafe: it sees such files, and the files a
compaction replaced until vacuum removes them.

Deletion vectors are never enabled (delta-rs cannot write them); a table that has them is
refused (:class:`ingest.errors.OutputError`).

Example::

    version = commit_report(storage, "messages", "bot-1", files, sha, schema, {"window": ...})
    keys = snapshot_keys(storage, "messages")         # the data files readers see (ingest.archive.snapshot)
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any, TypeVar
from urllib.parse import quote
from weakref import WeakKeyDictionary

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Field, PostCommitHookProperties, Schema, Transaction
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction

from ingest.archive.deltalog import transaction_version
from ingest.archive.layout import DELTA_LOG
from ingest.archive.snapshot import snapshot_files
from ingest.archive.storage import LocalStorage, Storage
from ingest.errors import OutputError

T = TypeVar("T")

#: The partition columns of every table, in this order.
PARTITIONS = ("bot_id", "date")
PARTITION_TYPES: dict[str, pa.DataType] = {"bot_id": pa.string(), "date": pa.date32()}
#: Our application's prefix for Delta application transactions.
APP = "certainly-ingest"
#: A checkpoint every this many commits (delta-rs's post-commit hook writes it): opening the
#: table reads the last checkpoint and at most this many JSON entries after it, however many
#: commits the table has (delta-rs's default, 100, made each open replay up to 99 commits).
#: Measured over 400 reports in one process (2 bots, 400 rows each; CPU per report, last 60
#: over first 60): 2.1 at 100, 1.5 at 30, 1.3-1.4 at 10, 1.0 at 5. A checkpoint rewrites the
#: table's file list: its cost grows with the files, spread over 5 commits.
CHECKPOINT_INTERVAL = 5
#: Table properties set when a table is created: no deletion vectors, ever; checkpoints
#: at our cadence (set on an older table by its next write, :func:`ensure_table`).
CONFIGURATION = {
    "delta.enableDeletionVectors": "false",
    "delta.checkpointInterval": str(CHECKPOINT_INTERVAL),
}
#: After each commit: a checkpoint when the table's cadence says so, and no clean-up of
#: older log entries (time travel, ``verify --as-of``, keeps every version; only an erasure
#: cuts the log back, :mod:`ingest.archive.forget`).
POST_COMMIT = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)
#: Commit info keys carrying the report's provenance.
META = "ingest"


def app_id(source_sha256: str) -> str:
    """The application transaction id of a report: one per source, version 1 once committed."""
    return f"{APP}:{source_sha256}"


def table_uri(storage: Storage, dataset: str) -> str:
    """Where the dataset's table is, as deltalake and polars ``scan_delta`` take it."""
    if isinstance(storage, LocalStorage):
        return str(storage.root.resolve() / dataset)
    return storage.describe(dataset)


def storage_options(storage: Storage) -> dict[str, str] | None:
    """deltalake's storage options (S3 endpoint, credentials), None for a local folder."""
    if storage.storage_options is None:
        return None
    options = dict(storage.storage_options)
    if options.get("aws_allow_http") == "true":
        options["allow_http"] = "true"
    return options


def open_table(
    storage: Storage, dataset: str, version: int | str | datetime | None = None
) -> DeltaTable | None:
    """The dataset's table (at ``version``, a number or a timestamp), or None when it has none.

    Raises :class:`OutputError` for a table with deletion vectors: this job cannot keep its
    guarantees on one (delta-rs does not write them, and counts would disagree)."""
    try:
        table = guarded(
            storage,
            dataset,
            lambda: DeltaTable(table_uri(storage, dataset), storage_options=storage_options(storage)),
        )
    except TableNotFoundError:
        return None
    if version is not None:
        table.load_as_version(version)
    refuse_deletion_vectors(table, storage.describe(dataset))
    return table


#: Each storage's tables as this command last read them (one snapshot per command, brought
#: up to date between reports: :func:`current_table`). Weak: a storage forgotten takes its
#: tables with it.
_SNAPSHOTS: WeakKeyDictionary[Storage, dict[str, DeltaTable]] = WeakKeyDictionary()


def current_table(storage: Storage, dataset: str) -> DeltaTable | None:
    """The dataset's latest table, for a writer: opened once per command (per storage), then
    brought up to date from the commits since (``update_incremental`` reads only those), so
    a command of many reports, or a ``watch`` running for weeks, does not replay the log
    for each report. None when the table does not exist yet."""
    tables = _SNAPSHOTS.setdefault(storage, {})
    table = tables.get(dataset)
    if table is not None:
        try:
            table.update_incremental()
        except (DeltaError, OSError):
            table = None  # its log moved on without it (cleaned up, or the table replaced): read afresh
        else:
            refuse_deletion_vectors(table, storage.describe(dataset))
            return table
    table = open_table(storage, dataset)
    if table is None:
        tables.pop(dataset, None)
    else:
        tables[dataset] = table
    return table


def guarded(storage: Storage, dataset: str, call: Callable[[], T]) -> T:
    """``call()``, a deltalake operation on the dataset's table, with its failures as our
    errors (:func:`storage_error`)."""
    try:
        return call()
    except TableNotFoundError:
        raise
    except (DeltaError, OSError) as err:
        failure = storage_error(storage, dataset, err)
    raise failure  # outside the handler: delta-rs's error is no context of it


def storage_error(storage: Storage, dataset: str, err: Exception) -> Exception:
    """The error to raise for a deltalake failure: the storage's own (a missing bucket, an
    unreachable endpoint: classified and worded as for every other write), else an
    :class:`OutputError` naming the table."""
    check = getattr(storage, "check_bucket", None)  # S3: a missing bucket, an unreachable endpoint
    try:
        if callable(check):
            check()
        storage.exists(f"{dataset}/{DELTA_LOG}/_last_checkpoint")
    except Exception as classified:  # noqa: BLE001 - the storage's classified error
        classified.__context__ = None  # the store's error, not delta-rs's, decides (errors.stops_the_run)
        return classified
    # delta-rs chains its causes with coloured arrows: one plain line is enough here.
    text = re.sub(r"\x1b\[[0-9;]*m|\\x1b\[[0-9;]*m", "", str(err)).replace("↳", "<-")
    error = OutputError(
        f"cannot use the Delta table {storage.describe(dataset)}: {' '.join(text.split())}",
        hint="INGEST_OUTPUT__ROOT",
    )
    error.__suppress_context__ = True
    return error


def refuse_deletion_vectors(table: DeltaTable, where: str) -> None:
    """Raise OutputError when the table has (or may have) deletion vectors."""
    protocol = table.protocol()
    features = {*(protocol.reader_features or []), *(protocol.writer_features or [])}
    enabled = table.metadata().configuration.get("delta.enableDeletionVectors", "false").lower() == "true"
    if "deletionVectors" in features or enabled:
        raise OutputError(
            f"the Delta table {where} has deletion vectors enabled; certainly-ingest cannot write "
            f"such a table (delta-rs does not write deletion vectors) and refuses to touch it",
            hint="rewrite the table without deletion vectors (e.g. Spark: REORG TABLE ... APPLY (PURGE), "
            "then ALTER TABLE ... SET TBLPROPERTIES ('delta.enableDeletionVectors' = false))",
        )


def committed(table: DeltaTable | None, source_sha256: str) -> bool:
    """True when the table holds a commit of this report (its application transaction)."""
    return table is not None and table.transaction_version(app_id(source_sha256)) is not None


def snapshot_keys(
    storage: Storage, dataset: str, prefix: str = "", table: DeltaTable | None = None
) -> list[str]:
    """Keys of the dataset's current files (relative to the root) starting with ``prefix``
    (of ``table`` when given: opened already, at the version it has)."""
    table = table if table is not None else open_table(storage, dataset)
    return [f.key for f in snapshot_files(table, dataset) if f.key.startswith(prefix)]


def table_schema(files: pa.Schema) -> pa.Schema:
    """A table's schema: its data files' columns, then the partition columns."""
    fields = [f for f in files if f.name not in PARTITIONS]
    return pa.schema([*fields, *[pa.field(n, PARTITION_TYPES[n]) for n in PARTITIONS]])


def _delta_schema(schema: pa.Schema) -> Schema:
    # Delta has one string type: large / view strings are written as plain strings.
    plain = pa.schema([pa.field(f.name, _plain(f.type), True) for f in schema])
    return Schema.from_arrow(plain)


def _plain(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.binary()
    return kind


def ensure_table(
    storage: Storage, dataset: str, schema: pa.Schema, opened: DeltaTable | None = None
) -> DeltaTable:
    """The dataset's table, created (empty, partitioned by bot_id and date) when missing,
    with any column of ``schema`` it lacks added (typed reports bring new columns).

    ``opened``: the table as this report read it before (:class:`ingest.archive.conflicts.ArchivedIds`),
    brought up to the latest version instead of opened again: opening replays the whole log
    since the last checkpoint (0.35 s at 80 commits of 92 files), an update with nothing new
    reads one listing."""
    if opened is not None:
        guarded(storage, dataset, opened.update_incremental)
        refuse_deletion_vectors(opened, storage.describe(dataset))
    table = opened if opened is not None else current_table(storage, dataset)
    wanted = _delta_schema(table_schema(schema))
    if table is None:
        try:
            created = DeltaTable.create(
                table_uri(storage, dataset),
                wanted,
                mode="ignore",
                partition_by=list(PARTITIONS),
                configuration=CONFIGURATION,
                storage_options=storage_options(storage),
            )
        except (DeltaError, OSError):
            created = None  # another writer created it first (put-if-absent), or a real failure:
        table = created or open_table(storage, dataset)  # the table is there now, or its error says why
        if table is None:
            table = guarded(
                storage,
                dataset,
                lambda: DeltaTable.create(
                    table_uri(storage, dataset),
                    wanted,
                    mode="ignore",
                    partition_by=list(PARTITIONS),
                    configuration=CONFIGURATION,
                    storage_options=storage_options(storage),
                ),
            )
        refuse_deletion_vectors(table, storage.describe(dataset))
        _SNAPSHOTS.setdefault(storage, {})[dataset] = table
    have = {f.name for f in table.schema().fields}
    new = [f for f in wanted.fields if f.name not in have]
    if new:  # a metadata commit of its own: delta-rs appends cannot change the schema
        guarded(
            storage,
            dataset,
            lambda: table.alter.add_columns(
                [Field(f.name, f.type, nullable=True) for f in new],
                commit_properties=CommitProperties(
                    custom_metadata={f"{META}.new_columns": [f.name for f in new]}
                ),
            ),
        )
        table.update_incremental()
    set_checkpoint_interval(storage, dataset, table)
    return table


def set_checkpoint_interval(storage: Storage, dataset: str, table: DeltaTable) -> None:
    """Give a table made before the cadence (or by another tool) our checkpoint interval:
    one metadata commit, once."""
    if table.metadata().configuration.get("delta.checkpointInterval") is not None:
        return  # ours, or one its owner chose: left as it is
    guarded(
        storage,
        dataset,
        lambda: table.alter.set_table_properties(
            {"delta.checkpointInterval": str(CHECKPOINT_INTERVAL)},
            commit_properties=CommitProperties(
                custom_metadata={f"{META}.checkpoint_interval": CHECKPOINT_INTERVAL}
            ),
        ),
    )
    table.update_incremental()


def add_action(storage: Storage, dataset: str, key: str, rows: int, *, bot_id: str, day: str) -> AddAction:
    """The add action of a published data file, with statistics from its footer."""
    relative = key.removeprefix(f"{dataset}/")
    size = next((o.size for o in storage.objects(key) if o.key == key), None)
    if size is None:
        raise OutputError(f"cannot commit {storage.describe(key)}: the data file is not there")
    return AddAction(
        path=quote(relative, safe="/="),
        size=size,
        partition_values={"bot_id": bot_id, "date": day},
        modification_time=int(time.time() * 1000),
        data_change=True,
        stats=json.dumps(file_stats(storage, key, rows)),
    )


def file_stats(storage: Storage, key: str, rows: int) -> dict[str, Any]:
    """Delta statistics of a Parquet file: row count, null counts, min/max of integer columns.

    Only integers get min/max: their footer values are exact, where timestamps would be
    truncated to milliseconds and strings to a prefix (a reader could skip a file wrongly)."""
    stats: dict[str, Any] = {"numRecords": rows, "nullCount": {}, "minValues": {}, "maxValues": {}}
    try:
        meta = storage.parquet_metadata(key)
    except Exception:  # noqa: BLE001 - statistics are optional; the row count is known
        return {"numRecords": rows}
    schema = meta.schema.to_arrow_schema()
    for index, field in enumerate(schema):
        nulls: int | None = 0
        low: Any = None
        high: Any = None
        ranged = pa.types.is_integer(field.type)  # False once a group's values have no range
        for group in range(meta.num_row_groups):
            column = meta.row_group(group).column(index)
            if column.path_in_schema != field.name:
                nulls = None  # a nested column: leave it to readers
                break
            chunk = column.statistics
            if chunk is None or not chunk.has_null_count:
                nulls = None
                break
            nulls += chunk.null_count
            if not ranged or (not chunk.has_min_max and chunk.null_count == column.num_values):
                continue  # no range wanted, or a group of nulls only: no value to bound
            if chunk.has_min_max:
                low = chunk.min if low is None else min(low, chunk.min)
                high = chunk.max if high is None else max(high, chunk.max)
            else:  # values without a range: the file's range is unknown (not the others' alone)
                ranged = False
        if not ranged:
            low = high = None
        if nulls is None:
            continue
        stats["nullCount"][field.name] = nulls
        if low is not None and high is not None and nulls < rows:
            stats["minValues"][field.name] = low
            stats["maxValues"][field.name] = high
    return stats


def commit_report(
    storage: Storage,
    dataset: str,
    bot_id: str,
    files: Iterable[tuple[str, int]],
    source_sha256: str,
    schema: pa.Schema,
    provenance: dict[str, Any],
    opened: DeltaTable | None = None,
) -> int | None:
    """One Delta commit adding a report's published data files ``(key, rows)``, with its
    provenance and application transaction; returns the table version it made. A report
    committed before (a run killed after its commit) is not committed again: the version
    of its commit is returned (None if the log no longer has it). ``opened``: see
    :func:`ensure_table`."""
    table = ensure_table(storage, dataset, schema, opened)
    if committed(table, source_sha256):
        return transaction_version(storage, dataset, app_id(source_sha256), table.version())
    have = {f.key for f in snapshot_files(table, dataset, bot_id)}
    actions: list[AddAction | RemoveAction] = []
    for key, rows in files:
        if key in have:
            continue
        day = key.removeprefix(f"{dataset}/").split("/")[1].removeprefix("date=")
        actions.append(add_action(storage, dataset, key, rows, bot_id=bot_id, day=day))
    metadata = {f"{META}.{k}": _json_value(v) for k, v in provenance.items()}
    return commit_actions(storage, dataset, table, actions, app=app_id(source_sha256), metadata=metadata)


def commit_actions(
    storage: Storage,
    dataset: str,
    table: DeltaTable,
    actions: list[AddAction | RemoveAction],
    *,
    app: str,
    metadata: dict[str, Any],
) -> int | None:
    """One Delta commit of ``actions``, ``metadata`` in its commit info, with the application
    transaction ``(app, 1)``: whoever asks :meth:`DeltaTable.transaction_version` knows it is made.
    Returns the version the commit made (:func:`transaction_version`)."""
    properties = CommitProperties(
        custom_metadata=metadata,
        max_commit_retries=10,
        app_transactions=[Transaction(app, 1, int(time.time() * 1000))],
    )
    guarded(
        storage,
        dataset,
        lambda: table.create_write_transaction(
            actions,
            "append",
            table.schema(),
            list(PARTITIONS),
            commit_properties=properties,
            post_commithook_properties=POST_COMMIT,
        ),
    )
    # Not table.version(), nor history(): another writer may have committed after us, and
    # delta-rs labelled racing writers' history entries with the wrong versions (seen on
    # SeaweedFS). The log entry carrying our application transaction is exact. The table's
    # version is the one before our commit (delta-rs does not move it): transaction_version
    # looks above it, so no update_incremental (a replay of the log, as costly as an open).
    return transaction_version(storage, dataset, app, table.version())


def _json_value(value: Any) -> Any:
    """A provenance value as commit info takes it: JSON, no NaN."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return json.loads(json.dumps(value, default=str))


def table_versions(storage: Storage, datasets: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each existing table's version, file count and last commit time (``ingest status``)."""
    found: dict[str, dict[str, Any]] = {}
    for dataset in datasets:
        table = open_table(storage, dataset)
        if table is None:
            continue
        last = table.history(1)
        stamp = last[0].get("timestamp") if last else None
        found[dataset] = {
            "version": table.version(),
            "files": len(snapshot_files(table, dataset)),
            "last_commit": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp / 1000)) if stamp else None,
        }
    return found


def commit_infos(table: DeltaTable, limit: int | None = None) -> list[dict[str, Any]]:
    """The table's commit infos, newest first (``ingest.*`` keys: the provenance)."""
    return table.history(limit)
