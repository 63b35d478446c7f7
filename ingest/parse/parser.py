"""Parse a Message Data report (CSV bytes or GET JSON rows) into canonical rows.

Every cell is read as text and cast strictly: a value that does not fit its column
rejects the row (with the reason), it is never turned into a silent null. A file that
cannot be read as a whole (not UTF-8, ragged, missing a required column) raises
:class:`ReportRejected`. The counts always add up::

    rows_read == len(rows) + duplicates_in_file + len(rejected)

Example::

    report = parse_frame(frame_from_json_rows(rows), bot_id="bot-1", source_sha256=sha,
                         source_kind="get", window=(d1, d2))
    report.rows      # polars DataFrame: the canonical schema plus bot_id and date
    report.rejected  # the raw text of each rejected row, with `reason`
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import polars as pl

from ingest.errors import ReportRejected, first_line
from ingest.parse.header import BOM, check_header_width, decode_utf8
from ingest.parse.identity import in_file_conflicts
from ingest.parse.schema import MESSAGE_COLUMNS, SOURCE_COLUMNS
from ingest.parse.validate import (
    ROW_NUMBER,
    ColumnPlan,
    Verdict,
    blank_to_null,
    good_rows,
    judge,
    plan_columns,
    rejected_rows,
)


@dataclass
class ParsedReport:
    """Canonical rows, rejected rows with reasons, and the counts that must add up."""

    rows: pl.DataFrame
    rejected: pl.DataFrame
    rows_read: int
    duplicates_in_file: int
    extra_columns: list[str] = field(default_factory=list)
    #: Rows refused because an earlier row had their id with other content (also in
    #: ``rejected``): ``_row``, ``reason``, ``id``, ``_hash`` and the first row's ``_first``.
    in_file_conflicts: pl.DataFrame = field(default_factory=pl.DataFrame)
    #: The row number in the report (from 1) of each of ``rows``, in their order.
    row_numbers: pl.Series = field(default_factory=lambda: pl.Series(ROW_NUMBER, [], pl.UInt32))
    #: Rows by number -> their rejected-row form (``_row`` and the text of every column,
    #: in file order): what the quarantine keeps of a row refused after parsing (a conflict
    #: with the archive, :mod:`ingest.archive.conflicts`).
    text_of: Callable[[pl.Series], pl.DataFrame] = lambda numbers: pl.DataFrame()


def read_csv_text(data: bytes) -> pl.DataFrame:
    """Read CSV bytes with every column as text. Rejects non-UTF-8 and ragged files."""
    data = data.removeprefix(BOM)
    text = decode_utf8(data)
    if not data.strip():
        raise ReportRejected("empty file")
    check_header_width(data)
    records, blank = read_records(text)
    try:
        frame = pl.read_csv(io.BytesIO(data), infer_schema=False, raise_if_empty=True)
    except (pl.exceptions.PolarsError, ValueError) as err:
        raise ReportRejected(f"unreadable CSV: {first_line(err)}") from None
    if frame.height != records:
        # A carriage return outside quotes ends a record for Python's csv, not for polars.
        raise ReportRejected(
            f"the CSV reads as {records} records with Python's csv and "
            f"{frame.height} with polars (a bare carriage return?): refusing to guess"
        )
    if blank:  # polars reads a blank line as a row of nulls: it is no record at all
        frame = frame.filter(~pl.int_range(frame.height).is_in(blank))
    return frame.rename({name: name.strip() for name in frame.columns})


def read_records(text: str) -> tuple[int, list[int]]:
    """Reject a file whose records do not all have as many fields as its header.

    polars pads a short record with nulls without a word, which would archive a cut-off
    file as if its cells were empty. Returns the number of records (header excluded)
    and the 0-based indices of the blank lines among them: like csv.DictReader and the
    streaming reader, a blank line is no row.
    """
    records = csv.reader(io.StringIO(text, newline=""), strict=True)
    blank: list[int] = []
    count = 0
    try:
        width = len(next(records))
        for count, record in enumerate(records, start=1):
            if not record:
                blank.append(count - 1)
            elif len(record) != width:
                raise ReportRejected(
                    f"record {count} has {len(record)} fields, the header has {width}: "
                    "refusing a ragged or cut-off file"
                )
    except csv.Error as err:
        raise ReportRejected(f"unreadable CSV: {err}") from None
    except StopIteration:
        return 0, []
    return count, blank


def frame_from_json_rows(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Turn GET answer rows into the same all-text frame a CSV of them would give.

    An empty answer ``[]`` is a report of no rows (a quiet span), as a CSV holding only its
    header is: the frame has every source column and no row."""
    if not rows:
        return pl.DataFrame(schema={name: pl.String for name in SOURCE_COLUMNS})
    columns: dict[str, list[str | None]] = {}
    for index, row in enumerate(rows):
        for name in row:
            columns.setdefault(name, [None] * index)
        for name, cells in columns.items():
            cells.append(_cell_text(row.get(name), whole=name in _INT_COLUMNS))
    return pl.DataFrame(columns, schema={name: pl.String for name in columns})


#: Integer columns: a JSON encoder may write their numbers as floats (``0.0``).
_INT_COLUMNS = frozenset(c.name for c in MESSAGE_COLUMNS if c.kind == "int")
_EXACT_FLOAT_INT = 2**53


def _cell_text(value: Any, *, whole: bool = False) -> str | None:
    """A JSON value as the CSV's text. ``whole``: a whole float in an integer column is
    the integer the CSV would hold (``7389460000.0`` is ``7389460000``); any other float
    stays as it is (and the parser rejects it, as it would in a CSV), and so does one
    beyond 2**53, where a float no longer holds every integer (the id might be another)."""
    if whole and isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_FLOAT_INT:
        return str(int(value))
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def parse_frame(
    raw: pl.DataFrame,
    *,
    bot_id: str,
    source_sha256: str,
    source_kind: str = "csv",
    window: tuple[date, date] | None = None,
) -> ParsedReport:
    """Validate an all-text frame and cast it to the canonical schema."""
    plan = plan_columns(raw.columns)
    text = blank_to_null(raw)
    verdict = judge(text, plan, first_row=1, window=window)
    good = good_rows(text, plan, verdict)
    rejected = rejected_rows(text, plan, verdict)
    unique = good.unique(subset="id", keep="first", maintain_order=True)
    # An id an earlier row had with other content is a conflict (quarantined), as in
    # ingest.archive.stream; with the same content, a plain duplicate.
    conflicts = in_file_conflicts(good, ROW_NUMBER)
    if conflicts.height:
        reason = (
            verdict.rows.to_frame()
            .join(conflicts.select(ROW_NUMBER, "reason"), on=ROW_NUMBER, how="left")
            .get_column("reason")
        )
        rejected = pl.concat([rejected, rejected_rows(text, plan, replace(verdict, reason=reason))])
    unique = unique.sort("timestamp", ROW_NUMBER)
    rows = unique.select(
        *SOURCE_COLUMNS,
        "extra",
        pl.lit(source_sha256).alias("source_sha256"),
        pl.lit(source_kind).alias("source_kind"),
        pl.lit(bot_id).alias("bot_id"),
        "date",
    )
    return ParsedReport(
        rows=rows,
        rejected=rejected,
        rows_read=raw.height,
        duplicates_in_file=good.height - unique.height - conflicts.height,
        extra_columns=list(plan.extra),
        row_numbers=unique.get_column(ROW_NUMBER),
        in_file_conflicts=conflicts,
        text_of=functools.partial(_text_of, text, plan, verdict),
    )


def _text_of(text: pl.DataFrame, plan: ColumnPlan, verdict: Verdict, numbers: pl.Series) -> pl.DataFrame:
    """The rejected-row form of the rows numbered ``numbers`` (without a reason)."""
    chosen = verdict.rows.is_in(numbers.implode())
    mark = pl.select(pl.when(chosen).then(pl.lit("", pl.String)).alias("reason")).to_series()
    return rejected_rows(text, plan, replace(verdict, reason=mark)).drop("reason")
