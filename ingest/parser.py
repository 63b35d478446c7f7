"""Parse a Message Data report (CSV bytes or GET JSON rows) into canonical rows.

Every cell is read as text and cast strictly: a value that does not fit its column
rejects the row (with the reason), it is never turned into a silent null. A file that
cannot be read as a whole (not UTF-8, ragged, missing a required column) raises
:class:`ReportRejected`. The counts always add up::

    rows_read == len(rows) + duplicates_in_file + len(rejected)

Example::

    report = parse_csv(data, bot_id="bot-1", source_sha256=sha, window=(d1, d2))
    report.rows      # polars DataFrame: the canonical schema plus bot_id and date
    report.rejected  # the raw text of each rejected row, with `reason`
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from ingest.errors import ReportRejected
from ingest.schema import MESSAGE_DATA, NESTED_JSON, PROVENANCE, REQUIRED, SOURCE_COLUMNS, Column

_TRUE = ("true", "t", "1", "yes")
_FALSE = ("false", "f", "0", "no")
ROW_NUMBER = "_row"


@dataclass
class ParsedReport:
    """Canonical rows, rejected rows with reasons, and the counts that must add up."""

    rows: pl.DataFrame
    rejected: pl.DataFrame
    rows_read: int
    duplicates_in_file: int
    extra_columns: list[str] = field(default_factory=list)


def read_csv_text(data: bytes) -> pl.DataFrame:
    """Read CSV bytes with every column as text. Rejects non-UTF-8 and ragged files."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ReportRejected(f"not UTF-8 (byte {err.start}): refusing to guess the encoding") from None
    if not data.strip():
        raise ReportRejected("empty file")
    check_header_width(data)
    check_field_counts(text)
    try:
        frame = pl.read_csv(io.BytesIO(data), infer_schema=False, raise_if_empty=True)
    except (pl.exceptions.PolarsError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ReportRejected(f"unreadable CSV: {first_line}") from None
    return frame.rename({name: name.strip() for name in frame.columns})


#: A Message Data report has about 22 columns; far more is an attack or a wrong file.
MAX_COLUMNS = 1000


def check_header_width(data: bytes) -> None:
    """Reject a header wider than MAX_COLUMNS before any parser allocates for it."""
    end = data.find(b"\n", 0, 1 << 20)
    header = data[: end if end >= 0 else 1 << 20]
    # Commas inside quoted names can only over-count, and only on an absurd header.
    if header.count(b",") + 1 > MAX_COLUMNS or (end < 0 and len(data) > 1 << 20):
        raise ReportRejected(f"header has more than {MAX_COLUMNS} columns: not a message report")


def check_field_counts(text: str) -> int:
    """Reject a file whose records do not all have as many fields as its header.

    polars pads a short record with nulls without a word, which would archive a cut-off
    file as if its cells were empty. Returns the number of records (header excluded).
    """
    records = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        width = len(next(records))
        count = 0
        for count, record in enumerate(records, start=1):
            if len(record) != width and record:
                raise ReportRejected(
                    f"record {count} has {len(record)} fields, the header has {width}: "
                    "refusing a ragged or cut-off file")
    except csv.Error as err:
        raise ReportRejected(f"unreadable CSV: {err}") from None
    except StopIteration:
        return 0
    return count


def frame_from_json_rows(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Turn GET answer rows into the same all-text frame a CSV of them would give."""
    columns: dict[str, list[str | None]] = {}
    for index, row in enumerate(rows):
        for name in row:
            columns.setdefault(name, [None] * index)
        for name, cells in columns.items():
            cells.append(_cell_text(row.get(name)))
    return pl.DataFrame(columns, schema={name: pl.String for name in columns})


def _cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def parse_csv(data: bytes, **kwargs: Any) -> ParsedReport:
    """Parse report CSV bytes; see :func:`parse_frame` for the arguments."""
    return parse_frame(read_csv_text(data), source_kind="csv", **kwargs)


def parse_frame(
    raw: pl.DataFrame, *, bot_id: str, source_sha256: str, source_kind: str = "csv",
    window: tuple[date, date] | None = None,
) -> ParsedReport:
    """Validate an all-text frame and cast it to the canonical schema."""
    missing = [name for name in REQUIRED if name not in raw.columns]
    if missing:
        raise ReportRejected(f"missing required column(s): {', '.join(missing)}; has: "
                             f"{', '.join(raw.columns[:30])}")
    raw = _fold_flattened(raw)
    extra = [name for name in raw.columns if name not in SOURCE_COLUMNS]
    raw = raw.with_columns(
        [pl.lit(None, pl.String).alias(c) for c in SOURCE_COLUMNS if c not in raw.columns]
    ).with_row_index(ROW_NUMBER, offset=1)
    # Empty text and null are the same thing in a CSV: store both as null.
    text = {c: pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)) for c in SOURCE_COLUMNS}
    typed = [_cast(col, text[col.name]).alias(col.name) for col in MESSAGE_DATA]
    reasons = [_problem(col, text[col.name]) for col in MESSAGE_DATA]
    if window is not None:
        day = _cast(MESSAGE_DATA[1], text["timestamp"]).dt.date()
        reasons.append(pl.when((day < window[0]) | (day > window[1])).then(
            pl.lit(f"timestamp outside the requested window {window[0]}..{window[1]}")))
    extra_json = (pl.struct(extra).struct.json_encode() if extra else pl.lit(None, pl.String))
    checked = raw.with_columns(
        pl.coalesce(reasons).alias("reason") if reasons else pl.lit(None, pl.String).alias("reason")
    )
    rejected = checked.filter(pl.col("reason").is_not_null())
    good = checked.filter(pl.col("reason").is_null()).select(
        ROW_NUMBER, *typed, extra_json.alias("extra"),
        pl.lit(source_sha256).alias("source_sha256"), pl.lit(source_kind).alias("source_kind"),
    )
    unique = good.unique(subset="id", keep="first", maintain_order=True)
    rows = unique.sort("timestamp", ROW_NUMBER).drop(ROW_NUMBER).with_columns(
        pl.lit(bot_id).alias("bot_id"), pl.col("timestamp").dt.date().alias("date"),
    )
    return ParsedReport(
        rows=rows,
        rejected=rejected.select(ROW_NUMBER, "reason", *[c for c in raw.columns if c != ROW_NUMBER]),
        rows_read=raw.height,
        duplicates_in_file=good.height - unique.height,
        extra_columns=extra,
    )


def _fold_flattened(raw: pl.DataFrame) -> pl.DataFrame:
    """Fold flattened nested columns (``bot_module.name``) back into one JSON column."""
    for parent in NESTED_JSON:
        children = [c for c in raw.columns if c.startswith(parent + ".")]
        if not children or parent in raw.columns:
            continue
        fields = [pl.col(c).alias(c[len(parent) + 1:]) for c in children]
        raw = raw.with_columns(pl.struct(fields).struct.json_encode().alias(parent)).drop(children)
    return raw


def _timestamp(text: pl.Expr) -> pl.Expr:
    # ISO 8601 with Z or an offset first; then naive forms, which the vendor means as UTC.
    iso = text.str.replace(r"Z$", "+00:00")
    return pl.coalesce(
        iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us", time_zone="UTC"),
        iso.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%z", strict=False, time_unit="us", time_zone="UTC"),
        text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us").dt.replace_time_zone("UTC"),
        text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us").dt.replace_time_zone("UTC"),
    )


def _cast(column: Column, text: pl.Expr) -> pl.Expr:
    if column.kind == "int":
        return text.str.strip_chars().cast(pl.Int64, strict=False)
    if column.kind == "bool":
        lowered = text.str.strip_chars().str.to_lowercase()
        return pl.when(lowered.is_in(_TRUE)).then(True).when(lowered.is_in(_FALSE)).then(False)
    if column.kind == "timestamp":
        return _timestamp(text)
    return text


def _problem(column: Column, text: pl.Expr) -> pl.Expr:
    """A reason string where the cell is invalid for its column, else null."""
    if column.required:
        missing = pl.when(text.is_null()).then(pl.lit(f"{column.name} is missing"))
    else:
        missing = pl.lit(None, pl.String)
    if column.kind in ("text", "json"):
        return missing
    bad = text.is_not_null() & _cast(column, text).is_null()
    return pl.coalesce(missing, pl.when(bad).then(pl.lit(f"{column.name} is not a valid {column.kind}")))


PROVENANCE_COLUMNS = tuple(c.name for c in PROVENANCE)
