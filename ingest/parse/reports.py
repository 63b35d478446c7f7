"""Read a Standard, Advanced or Content Management report (reportId 2, 3, 4) into typed rows.

The vendor documents no columns for these types, so nothing about them is assumed. As for
Message Data (:mod:`ingest.parse.parser`), every cell is read as text and a file that cannot be
read as a whole (not UTF-8, ragged, no or duplicate column names) raises
:class:`~ingest.errors.ReportRejected`. A column is then typed only where the evidence is
total: every non-empty cell has the strict form of one kind, else the column stays text
(so ``007`` never becomes ``7``). Empty cells are null.

Each row is placed on a day: the column ``date`` (or ``day``), else the first column of
dates or timestamps (UTC day), else the window's first day. A row that cannot be placed,
or falls outside the window, is rejected with its reason. The counts always add up::

    rows_read == report.rows.height + report.rejected.height

Example::

    report = read_report(csv_bytes, 3, window=(date(2024, 1, 1), date(2024, 1, 15)))
    report.rows      # typed columns, then "date" (pl.Date) and "row_key" (sha256 hex)
    report.columns   # {"channel": "text", "bounce_rate": "float", ...}
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from ingest.errors import ReportRejected
from ingest.parse.header import HEADER_BYTES, read_header, refuse_pattern_names
from ingest.parse.parser import frame_from_json_rows, read_csv_text
from ingest.parse.schema import Kind
from ingest.parse.validate import ROW_NUMBER, blank_to_null
from ingest.report_types import DATASETS

#: Largest type 2-4 report read: they are aggregates (a row per day and channel ...),
#: read whole and typed in memory, so a bigger file is quarantined with this reason
#: rather than risking the job's memory (polars holds several copies of its text).
MAX_WHOLE_REPORT_BYTES = 32 * 1024**2

REASON = "reason"
ROW_KEY = "row_key"
PARTITION = "date"
#: Names this module adds to the rows or the rejects: a report using one is refused
#: rather than having a column silently renamed or overwritten.
RESERVED = (ROW_NUMBER, REASON, ROW_KEY)
#: Columns that name the row's day, by preference.
DAY_COLUMNS = ("date", "day")
#: Where a source column named ``date`` goes when it is not plain dates (e.g. timestamps):
#: ``date`` itself must be the partition day.
DATE_SOURCE = "date_source"

# [0-9], never \d: the regex engine's \d also matches other scripts' digits.
_INT = r"^-?(0|[1-9][0-9]*)$"
# Integers match too, so a column mixing 3 and 2.5 is Float64. No exponent: codes like
# "2E10" must stay text.
_FLOAT = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
_BOOL = r"(?i)^(true|false)$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TIMESTAMP = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
)


def _timestamp(text: pl.Expr) -> pl.Expr:
    """ISO 8601 with ``Z`` or an offset, to microseconds in UTC (null when invalid)."""
    return text.str.replace(r"Z$", "+00:00").str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us", time_zone="UTC"
    )


#: The kinds tried on a column, in order: the first whose form every value has wins.
_KINDS: tuple[tuple[Kind, str, Callable[[pl.Expr], pl.Expr]], ...] = (
    ("int", _INT, lambda t: t.cast(pl.Int64, strict=False)),
    ("float", _FLOAT, lambda t: t.cast(pl.Float64, strict=False)),
    ("bool", _BOOL, lambda t: t.str.to_lowercase() == "true"),
    ("date", _DATE, lambda t: t.str.to_date("%Y-%m-%d", strict=False)),
    ("timestamp", _TIMESTAMP, _timestamp),
)


@dataclass
class TypedReport:
    """Typed rows, rejected rows with reasons, and the counts that must add up."""

    dataset: str  # "standard", "advanced" or "content_management"
    rows: pl.DataFrame  # typed columns + "date" (pl.Date) + "row_key" (str)
    rejected: pl.DataFrame  # _row, reason, then every source column as text
    rows_read: int
    columns: dict[str, Kind]  # every column of ``rows`` but row_key -> the kind chosen


def read_report(
    source: bytes | Path, report_id: int, *, window: tuple[date, date] | None = None
) -> TypedReport:
    """Read one type 2-4 report CSV (bytes or a file) into a :class:`TypedReport`.

    ``window`` is the export window: rows dated outside it are rejected, and when the
    report has no date column at all its rows are placed on the window's first day.
    Raises :class:`ReportRejected` for a file that cannot be read as a whole, and
    ``ValueError`` for a report type other than 2, 3 or 4.
    """
    if report_id not in DATASETS:
        raise ValueError(f"report_id must be one of {sorted(DATASETS)}, not {report_id!r}")
    data = source.read_bytes() if isinstance(source, Path) else source
    check_header(data)
    raw = blank_to_null(read_csv_text(data))  # ragged rows, bare CRs... as for type 1
    numbered = raw.with_columns(
        pl.int_range(1, raw.height + 1, dtype=pl.UInt32).alias(ROW_NUMBER), row_keys(raw)
    )
    day, reason = _placement(numbered, window)
    placed = numbered.with_columns(day.alias("_day"), reason.alias(REASON))
    rejected = placed.filter(pl.col(REASON).is_not_null()).select(ROW_NUMBER, REASON, *raw.columns)
    good = placed.filter(pl.col(REASON).is_null())
    # Typed on the placed rows only: one unplaceable "n/a" must not turn a column to text.
    typed: list[pl.Series] = []
    kinds: dict[str, Kind] = {}
    for name in raw.columns:
        kind, series = type_column(good.get_column(name))
        if name == PARTITION and kind != "date" and good.height:
            # Timestamps (or a mix) under "date": "date" must be the partition day, so
            # the source values are kept beside it rather than truncated to a day.
            if DATE_SOURCE in raw.columns:
                raise ReportRejected(
                    f"column {PARTITION!r} is not plain dates and "
                    f"{DATE_SOURCE!r} is taken: nowhere to keep it"
                )
            name, series = DATE_SOURCE, series.alias(DATE_SOURCE)
        typed.append(series)
        kinds[name] = kind
    kinds[PARTITION] = "date"  # set last: the partition day overwrites a "date" source column
    rows = pl.DataFrame(typed).with_columns(
        good.get_column("_day").alias(PARTITION), good.get_column(ROW_KEY)
    )
    return TypedReport(DATASETS[report_id], rows, rejected, raw.height, kinds)


def read_report_rows(
    rows: list[dict[str, Any]], report_id: int, *, window: tuple[date, date] | None = None
) -> TypedReport:
    """:func:`read_report` for a GET answer (a list of JSON objects).

    The objects are written as the CSV the export would carry (booleans ``true``/``false``,
    nested values as compact JSON, null as empty) and read by the same rules, so a row
    gets the same types and the same ``row_key`` whichever way it came.
    """
    if not rows:  # a typed report's columns come from its rows (Message Data's are known)
        raise ReportRejected("empty GET answer: no rows, so no columns to read")
    frame = frame_from_json_rows(rows)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(frame.columns)
    writer.writerows(["" if cell is None else cell for cell in row] for row in frame.iter_rows())
    return read_report(buffer.getvalue().encode("utf-8"), report_id, window=window)


def check_header(data: bytes) -> list[str]:
    """The header's column names (stripped); rejects a file with no usable header.

    Refused: an empty file, invalid UTF-8, an empty header or an unnamed column, a
    duplicate name (polars would rename it, and a column would change name unseen), and
    the names this module adds (:data:`RESERVED`).
    """
    names = [n.strip() for n in read_header(data[: HEADER_BYTES + 1])]
    if not any(names):
        raise ReportRejected("empty header: the first line names no columns")
    if "" in names:
        raise ReportRejected(f"column {names.index('') + 1} of the header has no name")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ReportRejected(f"duplicate column name(s) in the header: {', '.join(duplicates)}")
    reserved = [n for n in names if n in RESERVED]
    if reserved:
        raise ReportRejected(f"column name(s) {', '.join(reserved)} are reserved by the archive")
    refuse_pattern_names(names)
    return names


def type_column(text: pl.Series) -> tuple[Kind, pl.Series]:
    """The column's kind and its cast values; ``("text", text)`` unless every non-null
    cell has the strict form of one kind (and casts: no overflow, no 30 February)."""
    present = text.drop_nulls()
    if present.len() == 0:  # no evidence at all: text, all null
        return "text", text
    for kind, pattern, cast in _KINDS:
        if not present.str.contains(pattern).all():
            continue
        if kind == "float" and present.str.contains(_INT).all():
            continue  # integers beyond Int64: as floats they would be rounded, keep the text
        values = text.to_frame().select(cast(pl.col(text.name))).to_series()
        if values.null_count() == text.null_count():
            return kind, values
    return "text", text


def row_keys(raw: pl.DataFrame) -> pl.Series:
    """A stable sha256 hex per row, from its text cells, for de-duplication by bot.

    The input is a JSON object of the non-empty cells by column name with sorted keys:
    unambiguous whatever the cells contain, unchanged by a reordered header or a new
    empty column, and independent of the polars version (its hash is not stable).
    """
    names = raw.columns
    keys = [
        hashlib.sha256(
            json.dumps(
                {n: v for n, v in zip(names, row, strict=True) if v is not None},
                sort_keys=True,
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode("utf-8")
        ).hexdigest()
        for row in raw.iter_rows()
    ]
    return pl.Series(ROW_KEY, keys, dtype=pl.String)


def _placement(raw: pl.DataFrame, window: tuple[date, date] | None) -> tuple[pl.Expr, pl.Expr]:
    """Each row's day and, for a row that cannot be placed, the reason (else null)."""
    column = next((c for n in DAY_COLUMNS for c in raw.columns if c == n), None)
    if column is None:  # no column named for it: the first column that is all dates
        column = next(
            (
                c
                for c in raw.columns
                if c not in (ROW_NUMBER, ROW_KEY)
                and type_column(raw.get_column(c))[0] in ("date", "timestamp")
            ),
            None,
        )
    if column is None:
        if window is None:
            raise ReportRejected(
                "no date column (date, day, or a column of dates or "
                "timestamps) and no window to place the rows in"
            )
        return pl.lit(window[0], pl.Date), pl.lit(None, pl.String)
    text = pl.col(column)
    day = (
        pl.when(text.str.contains(_DATE))
        .then(text.str.to_date("%Y-%m-%d", strict=False))
        .when(text.str.contains(_TIMESTAMP))
        .then(_timestamp(text).dt.date())
    )
    reasons = [
        pl.when(text.is_null()).then(pl.lit(f"{column} is empty: no day for the row")),
        # concat_str, not pl.format: a column name may contain braces.
        pl.when(day.is_null()).then(
            pl.concat_str(pl.lit(f"{column} is not a date or ISO timestamp: "), text.str.slice(0, 60))
        ),
    ]
    if window is not None:
        reasons.append(
            pl.when((day < window[0]) | (day > window[1])).then(
                pl.concat_str(
                    pl.lit(f"{column} "),
                    day.cast(pl.String),
                    pl.lit(f" is outside the requested window {window[0]}..{window[1]}"),
                )
            )
        )
    return day, pl.coalesce(reasons)
