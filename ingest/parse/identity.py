"""A row's identity and content: the canonical content hash, and conflicts inside one report.

A row's identity is ``(bot_id, id)``; its content is every :data:`CONTENT_COLUMNS` value.
Two rows with one id and equal content are a plain duplicate; with different content, a
conflict (the archive-wide side lives in :mod:`ingest.archive.conflicts`).

Example::

    hashes = content_hashes(typed_frame)        # sha256 hex per row, stable (it is stored)
    clashes = in_file_conflicts(typed_frame)    # _row + reason of each later, different row
"""

from __future__ import annotations

import hashlib

import polars as pl

from ingest.parse.schema import MESSAGE_COLUMNS

#: The columns whose values make a row's content (provenance and partition keys excluded).
CONTENT_COLUMNS: tuple[str, ...] = (*(c.name for c in MESSAGE_COLUMNS), "extra")
_NULL = "\x00"  # stands for a null cell (no CSV text can hold NUL)
_SEPARATOR = "\x1f"


def content_hashes(frame: pl.DataFrame) -> list[str]:
    """sha256 (hex) of each row's canonical content: every :data:`CONTENT_COLUMNS` value
    as text (the archive's types: ints in decimal, booleans ``true``/``false``, timestamps
    in UTC with microseconds), nulls marked, unit-separated. Only colliding rows get here."""
    text = frame.select(
        pl.concat_str(
            [pl.col(name).cast(pl.String).fill_null(_NULL) for name in CONTENT_COLUMNS], separator=_SEPARATOR
        ).alias("content")
    ).to_series()
    return [hashlib.sha256(value.encode("utf-8")).hexdigest() for value in text.to_list()]


def in_file_conflicts(good: pl.DataFrame, row_number: str = "_row") -> pl.DataFrame:
    """Rows of one report (typed, in file order) whose id an earlier row had with other
    content: ``_row`` and ``reason``, then ``id``, ``_hash`` (the row's content hash) and
    ``_first`` (the first row's). Rows with the same content are plain duplicates."""
    dup = good.filter(pl.col("id").is_duplicated())
    if dup.height == 0:
        return pl.DataFrame(
            schema={
                row_number: pl.UInt32,
                "reason": pl.String,
                "id": pl.Int64,
                "_hash": pl.String,
                "_first": pl.String,
            }
        )
    keyed = dup.select(row_number, "id").with_columns(pl.Series("_hash", content_hashes(dup), pl.String))
    first = keyed.group_by("id", maintain_order=True).agg(pl.col("_hash").first().alias("_first"))
    return (
        keyed.join(first, on="id")
        .filter(pl.col("_hash") != pl.col("_first"))
        .select(row_number, pl.format(IN_FILE_REASON, pl.col("id")).alias("reason"), "id", "_hash", "_first")
    )


IN_FILE_REASON = "conflict: id {} appears earlier in this report with different content"
