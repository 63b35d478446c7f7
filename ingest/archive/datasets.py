"""Archive Standard, Advanced and Content Management reports (reportId 2, 3, 4).

Their columns are not documented, so :mod:`ingest.parse.reports` types each file on its own
evidence. Files of one dataset must still read back as one table, so a new file is
conformed to the types the dataset already has (its first file's schema):

* a column that is all empty here takes the dataset's type;
* integers join a float column as floats; anything joins a text column as text;
* any other clash (text where the dataset has integers, say) is schema drift no cast can
  settle without loss: the file is refused (:class:`ReportRejected`, so it goes to
  quarantine with its reason, raw bytes kept) for a person to decide.

Columns the dataset has not seen are added (readers use ``union_by_name`` in DuckDB,
``missing_columns="insert"`` in polars) and listed in the manifest's ``extra_columns``.
Rows are deduplicated by ``(bot_id, row_key)``, the hash of the row's text: a re-delivered
or overlapping report adds only rows the partition does not have. Layout::

    <root>/<dataset>/bot_id=<bot>/date=<YYYY-MM-DD>/part-<sha256[:16]>.parquet

Example::

    typed = read_report(csv_bytes, 2, window=(first, last))
    result = save_typed_report(storage, typed, bot_id="b", source_sha256=sha, raw=csv_bytes,
                               raw_name="standard_report.csv", provenance={...})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from ingest.archive.commit import Attachment, SaveResult, commit, write_bytes_once
from ingest.archive.delta import snapshot_keys
from ingest.archive.layout import raw_key
from ingest.archive.storage import Storage, as_storage
from ingest.archive.writer import save_rejected, write_partitions
from ingest.errors import ReportRejected
from ingest.parse.reports import PARTITION, ROW_KEY, TypedReport


def established_schema(storage: Storage, dataset: str) -> pl.Schema | None:
    """The column types the dataset already has (its first data file), or None."""
    first = next(iter(snapshot_keys(storage, dataset)), None)
    return storage.scan([first]).collect_schema() if first else None


def conform(rows: pl.DataFrame, schema: pl.Schema | None, dataset: str) -> pl.DataFrame:
    """Cast ``rows`` to the dataset's established types where that loses nothing."""
    if schema is None:
        return rows
    casts = []
    for name, dtype in rows.schema.items():
        have = schema.get(name)
        if have is None or have == dtype or name in (PARTITION, ROW_KEY):
            continue
        if rows.get_column(name).null_count() == rows.height:
            casts.append(pl.col(name).cast(have))
        elif have == pl.Float64 and dtype == pl.Int64:
            casts.append(pl.col(name).cast(pl.Float64))
        elif have == pl.String:
            casts.append(pl.col(name).cast(pl.String))
        else:
            raise ReportRejected(
                f"schema drift: column {name!r} holds {dtype} here but {have} in the archive's "
                f"{dataset}/; import it by hand once the dataset's type is decided"
            )
    return rows.with_columns(casts) if casts else rows


def save_typed_report(
    root: Storage | Path,
    typed: TypedReport,
    *,
    bot_id: str,
    source_sha256: str,
    raw: bytes,
    raw_name: str,
    source_kind: str,
    provenance: dict[str, Any],
) -> SaveResult:
    """Archive a typed report (raw bytes, new rows, rejects), its manifest last.

    Raises :class:`ReportRejected` (nothing written) on schema drift.
    """
    storage = as_storage(root)
    schema = established_schema(storage, typed.dataset)
    rows = conform(typed.rows, schema, typed.dataset).with_columns(
        pl.lit(source_sha256).alias("source_sha256"), pl.lit(source_kind).alias("source_kind")
    )
    unique = rows.unique(subset=ROW_KEY, keep="first", maintain_order=True)
    result = SaveResult(typed.rows_read, 0, rows.height - unique.height, typed.rejected.height)
    columns = [c for c in unique.columns if c != PARTITION]  # the date is the partition key

    def data() -> None:
        write_partitions(
            storage,
            unique,
            result,
            dataset=typed.dataset,
            bot_id=bot_id,
            source_sha256=source_sha256,
            key=ROW_KEY,
            columns=columns,
        )
        if typed.rejected.height:
            save_rejected(storage, source_sha256, typed.rejected)

    new_columns = [c for c in columns if schema is not None and c not in schema]
    return commit(
        storage,
        result,
        Attachment(bot_id, source_sha256, raw_name, len(raw), typed.dataset),
        raw=lambda: write_bytes_once(storage, raw_key(bot_id, source_sha256, raw_name), raw),
        data=data,
        extra_columns=new_columns,
        schema=unique.select(columns).to_arrow().schema,
        provenance={**provenance, "dataset": typed.dataset, "columns": typed.columns},
    )
