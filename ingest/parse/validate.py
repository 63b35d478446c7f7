"""Validate all-text Message Data rows and cast them to the canonical schema.

Shared by the in-memory parser (:func:`ingest.parse.parser.parse_frame`) and the streaming
archiver (:mod:`ingest.archive.stream`), so both give the same rows, the same reasons and the
same counts. A report's header is planned once (:func:`plan_columns`); each batch of
rows is then checked with :func:`judge` (which reads only the short columns it casts)
and put in canonical columns by :func:`good_rows` / :func:`rejected_rows`, or all at
once by :func:`check_rows`. Nothing looks at other batches: deduplication and sorting
are the caller's job.

Example::

    plan = plan_columns(frame.columns)
    checked = check_rows(frame, plan, first_row=1, window=(d1, d2))
    checked.good      # _row, the typed MESSAGE_COLUMNS columns, extra, date
    checked.rejected  # _row, reason, then the raw text of every column
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ingest.errors import ReportRejected
from ingest.parse.schema import (
    MESSAGE_COLUMNS,
    NESTED_JSON,
    REQUIRED,
    SOURCE_COLUMNS,
    Column,
    Kind,
)

_TRUE = ("true", "t", "1", "yes")
_FALSE = ("false", "f", "0", "no")
_BOOLS = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}
ROW_NUMBER = "_row"
_CAST: tuple[Kind, ...] = ("int", "bool", "timestamp")
#: The form the emailed export uses; everything else goes through :func:`_timestamp_any`.
_ISO_Z = "%Y-%m-%dT%H:%M:%S%.fZ"


@dataclass(frozen=True)
class ColumnPlan:
    """How one report's header maps onto the canonical schema."""

    header: tuple[str, ...]  # the column names as read (already stripped)
    folded: tuple[tuple[str, tuple[str, ...]], ...]  # (parent, flattened children) to fold
    extra: tuple[str, ...]  # columns beyond the schema, kept as a JSON object
    missing: tuple[str, ...]  # schema columns the report lacks (all null)

    @property
    def raw_columns(self) -> list[str]:
        """The text columns after folding and filling: what a rejected row keeps."""
        children = {c for _, kids in self.folded for c in kids}
        return (
            [c for c in self.header if c not in children] + [p for p, _ in self.folded] + list(self.missing)
        )


def plan_columns(header: list[str] | tuple[str, ...]) -> ColumnPlan:
    """Plan a header; rejects a report without a required column, by name."""
    missing_required = [name for name in REQUIRED if name not in header]
    if missing_required:
        raise ReportRejected(
            f"missing required column(s): {', '.join(missing_required)}; has: {', '.join(list(header)[:30])}"
        )
    folded = []
    for parent in NESTED_JSON:
        children = tuple(c for c in header if c.startswith(parent + "."))
        if children and parent not in header:
            folded.append((parent, children))
    after_fold = [c for c in header if not any(c in kids for _, kids in folded)]
    after_fold += [p for p, _ in folded]
    extra = tuple(c for c in after_fold if c not in SOURCE_COLUMNS)
    missing = tuple(c for c in SOURCE_COLUMNS if c not in after_fold)
    return ColumnPlan(tuple(header), tuple(folded), extra, missing)


@dataclass
class Verdict:
    """What :func:`judge` found in one batch: typed values and a reason per bad row."""

    rows: pl.Series  # row numbers in the file, from 1
    typed: list[pl.Series]  # the int, bool and timestamp columns, cast
    folded: list[pl.Series]  # JSON columns folded from flattened ones (bot_module.name)
    extra: pl.Series | None  # columns beyond the schema, as a JSON object per row
    date: pl.Series  # the UTC date of each row's timestamp
    reason: pl.Series  # why a row is rejected; null for a good row
    #: The cast columns as Arrow arrays, by name, when :func:`judge_arrow` cast them
    #: (then ``typed`` is empty): the Parquet writer takes them as they are.
    arrow: dict[str, pa.Array | pa.ChunkedArray] = field(default_factory=dict)

    @property
    def all_good(self) -> bool:
        """True when no row is rejected (the usual case: nothing to filter)."""
        return self.reason.null_count() == self.reason.len()

    def typed_column(self, name: str) -> pl.Series:
        """One cast column (``id``, ``timestamp``...) as a polars Series."""
        if name in self.arrow:
            series = pl.from_arrow(self.arrow[name])
            assert isinstance(series, pl.Series)
            return series.alias(name)
        return next(s for s in self.typed if s.name == name)


@dataclass
class CheckedRows:
    """One batch, checked: good rows typed (not yet deduplicated), rejects with a reason."""

    good: pl.DataFrame
    rejected: pl.DataFrame


def blank_to_null(raw: pl.DataFrame) -> pl.DataFrame:
    """Empty text and null are the same thing in a CSV: make every empty cell null."""
    return raw.with_columns(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in raw.columns)


def needed_columns(plan: ColumnPlan) -> list[str]:
    """The header columns :func:`judge` reads (the long text columns are not among them)."""
    wanted = set(REQUIRED) | {c.name for c in MESSAGE_COLUMNS if c.kind in _CAST}
    wanted |= set(plan.extra) | {c for _, kids in plan.folded for c in kids}
    return [c for c in plan.header if c in wanted]


def judge(
    raw: pl.DataFrame, plan: ColumnPlan, *, first_row: int, window: tuple[date, date] | None = None
) -> Verdict:
    """Check one batch of rows numbered from ``first_row``.

    ``raw`` needs at least the :func:`needed_columns`, as text or null, never empty
    (see :func:`blank_to_null`). Each cast runs once: a cell is bad when its text is
    there but its typed value is null. The window check reuses the parsed timestamp.
    """
    cast = [c.name for c in MESSAGE_COLUMNS if c.kind in _CAST]
    raw = raw.with_columns(pl.lit(None, pl.String).alias(c) for c in cast if c not in raw.columns)
    typed = _cast_all(raw)
    day = next(t for t in typed if t.name == "timestamp").dt.date().alias("date")
    # The reason needs both the text (bad = text there, value not) and the typed value.
    both = raw.select(cast).with_columns(*[t.alias(f"_typed_{t.name}") for t in typed], day.alias("_date"))
    reason = both.select(_reason(window)).get_column("reason")
    folded = [
        raw.select(
            pl.struct([pl.col(c).alias(c[len(parent) + 1 :]) for c in children])
            .struct.json_encode()
            .alias(parent)
        ).to_series()
        for parent, children in plan.folded
    ]
    extra = (
        raw.select(pl.struct(list(plan.extra)).struct.json_encode().alias("extra")).to_series()
        if plan.extra
        else None
    )
    rows = pl.int_range(first_row, first_row + raw.height, dtype=pl.UInt32, eager=True)
    return Verdict(rows.alias(ROW_NUMBER), typed, folded, extra, day, reason)


def judge_arrow(
    table: pa.Table, plan: ColumnPlan, *, first_row: int, window: tuple[date, date] | None = None
) -> Verdict | None:
    """:func:`judge` for a batch of the usual kind, in Arrow: None when it is not.

    The usual kind: a header without flattened or extra columns, and every cell in
    the export's own form (``12``, ``true``, ``2024-01-01T00:00:00.000000Z``), ids and
    timestamps all there, every date in the window; so every row is good. Arrow casts
    such a batch in one pass per column, without converting it to polars, to the same
    values the rules of :func:`judge` give. Any other batch (a bad cell, a value in
    another form, a row outside the window) returns None: :func:`judge` decides it.
    ``table`` is the reader's all-text table (empty cells null).
    """
    if plan.folded or plan.extra:
        return None
    height = table.num_rows
    present = set(table.column_names)
    arrow: dict[str, pa.Array | pa.ChunkedArray] = {}
    try:
        for column in _ARROW_CAST:
            if column.name not in present:  # not required (plan_columns checked)
                arrow[column.name] = pa.nulls(height, _ARROW_TYPES[column.kind])
                continue
            text = table.column(column.name)
            if column.required and text.null_count:
                return None
            if column.kind == "int" and _has_any_byte(text, b"xX"):
                return None  # Arrow reads 0x1F as 31; the rules refuse it
            if column.kind == "timestamp" and not _iso_z(text):
                return None
            # Arrow's strict casts accept a subset of the rules' forms: plain decimal
            # ints (hex excluded above), true/false/1/0 in any case, ISO 8601 with Z.
            arrow[column.name] = pc.cast(text, _ARROW_TYPES[column.kind])
    except pa.ArrowInvalid:
        return None  # a cell not in the plain form: the full rules decide
    # Through a naive timestamp (the same UTC instant): five times faster than the
    # zone-aware cast, which looks up the zone.
    day = pc.cast(arrow["timestamp"].cast(pa.timestamp("us")), pa.date32())
    if window is not None and height:
        low, high = (v.as_py() for v in pc.min_max(day.cast(pa.int32())).values())
        if low < _epoch_days(window[0]) or high > _epoch_days(window[1]):
            return None
    rows = pl.int_range(first_row, first_row + height, dtype=pl.UInt32, eager=True)
    days = pl.from_arrow(day)
    assert isinstance(days, pl.Series)
    return Verdict(
        rows.alias(ROW_NUMBER),
        [],
        [],
        None,
        days.alias("date"),
        pl.repeat(None, height, dtype=pl.String, eager=True).alias("reason"),
        arrow,
    )


_ARROW_CAST = [c for c in MESSAGE_COLUMNS if c.kind in _CAST]
_ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def _iso_z(text: pa.ChunkedArray) -> bool:
    """Whether every timestamp has one plain ISO 8601 shape the rules read the same way:
    ``2024-01-01T00:00:00[.ffffff]`` then ``Z`` or ``+HH:MM`` / ``-HH:MM``, all of the
    same length (an export writes one form). Arrow's cast then checks every digit; other
    forms (a space, ``+HHMM``, other fraction lengths) go to the full rules."""
    # No Python number goes into a compute call: pa.scalar() would import pandas (0.3 s).
    lengths = pc.min_max(pc.binary_length(text)).as_py()
    size = lengths["min"]
    if size != lengths["max"] or size not in _PLAIN_SIZES:
        return False
    if _PLAIN_SIZES[size] == "Z":
        return bool(pc.all(pc.ends_with(text, "Z")).as_py())
    # Byte slices of the text seen as binary (no copy; utf8 slicing is 40 times slower).
    # starts_with takes its pattern as an option; pc.equal(x, "+") would make a scalar.
    raw = text.cast(pa.binary())
    sign = pc.binary_slice(raw, size - 6, size - 5)
    return (
        bool(pc.all(pc.or_(pc.starts_with(sign, "+"), pc.starts_with(sign, "-"))).as_py())
        and bool(pc.all(pc.starts_with(pc.binary_slice(raw, size - 3, size - 2), ":")).as_py())
        and bool(pc.all(pc.starts_with(pc.binary_slice(raw, 10, 11), "T")).as_py())
    )


#: Lengths of the plain forms: seconds (19) + fraction (0 or 7) + ``Z`` (1) or offset (6).
_PLAIN_SIZES = {20: "Z", 27: "Z", 25: "offset", 32: "offset"}


def _has_any_byte(text: pa.ChunkedArray, needles: bytes) -> bool:
    """Whether any of ``needles`` is in the text's bytes (a scan of the value buffers:
    forty times faster than ``match_substring``; a slice's whole buffer is scanned)."""
    for chunk in text.chunks:
        data = chunk.buffers()[2]
        if data is not None and len(chunk):
            raw = data.to_pybytes()
            if any(bytes([byte]) in raw for byte in needles):
                return True
    return False


def _epoch_days(day: date) -> int:
    return day.toordinal() - date(1970, 1, 1).toordinal()


def check_rows(
    raw: pl.DataFrame, plan: ColumnPlan, *, first_row: int, window: tuple[date, date] | None = None
) -> CheckedRows:
    """Check and cast one batch of all-text rows numbered from ``first_row``.

    ``good`` has ``_row``, the typed MESSAGE_COLUMNS columns, ``extra`` and ``date``;
    ``rejected`` has ``_row``, ``reason`` and the text of every column.
    """
    verdict = judge(raw, plan, first_row=first_row, window=window)
    return CheckedRows(good_rows(raw, plan, verdict), rejected_rows(raw, plan, verdict))


def good_rows(raw: pl.DataFrame, plan: ColumnPlan, verdict: Verdict) -> pl.DataFrame:
    """The rows :func:`judge` found good, in the canonical columns."""
    text = raw.with_columns(*verdict.folded, *[pl.lit(None, pl.String).alias(c) for c in plan.missing])
    extra = verdict.extra if verdict.extra is not None else pl.lit(None, pl.String).alias("extra")
    good = (
        text.select(*SOURCE_COLUMNS)
        .with_columns(*verdict.typed)
        .select(verdict.rows, *SOURCE_COLUMNS, extra, verdict.date)
    )
    return good if verdict.all_good else good.filter(verdict.reason.is_null())


def rejected_rows(raw: pl.DataFrame, plan: ColumnPlan, verdict: Verdict) -> pl.DataFrame:
    """The rows :func:`judge` rejected: row number, reason, and the text of every column.

    ``raw`` may be all the batch's rows or only the rejected ones.
    """
    keep = verdict.reason.is_not_null()
    if raw.height == keep.len():
        raw = raw.filter(keep)
    folded = [f.filter(keep) for f in verdict.folded]
    return raw.with_columns(*folded, *[pl.lit(None, pl.String).alias(c) for c in plan.missing]).select(
        verdict.rows.filter(keep), verdict.reason.filter(keep), *plan.raw_columns
    )


@functools.lru_cache(maxsize=16)
def _reason(window: tuple[date, date] | None) -> pl.Expr:
    """The first problem of a row, or null: built once (the batches are many)."""
    reasons = [r for r in (_problem(col) for col in MESSAGE_COLUMNS) if r is not None]
    if window is not None:
        outside = (pl.col("_date") < window[0]) | (pl.col("_date") > window[1])
        reasons.append(
            pl.when(outside).then(pl.lit(f"timestamp outside the requested window {window[0]}..{window[1]}"))
        )
    return pl.coalesce(reasons).alias("reason")


def _cast_all(raw: pl.DataFrame) -> list[pl.Series]:
    """Cast the int, bool and timestamp columns; null where the text is not valid.

    The fast form (what the export writes: ``12``, ``true``) is tried on every cell in
    one pass, the full rules (spaces, ``Yes``, ``T``, ``0``...) only on cells where it
    failed: same values, a fraction of the time.
    """
    fast = raw.select(_FAST_FORMS)
    typed = [
        _retry(raw.get_column(c.name), fast.get_column(c.name), _FULL_RULES[c.kind]) for c in _FAST_COLUMNS
    ]
    return [*typed, _timestamps(raw.get_column("timestamp"))]


_FAST_COLUMNS = [c for c in MESSAGE_COLUMNS if c.kind in ("int", "bool")]
_FAST_FORMS = [
    (
        pl.col(c.name).cast(pl.Int64, strict=False)
        if c.kind == "int"
        else pl.when(pl.col(c.name) == "true").then(True).when(pl.col(c.name) == "false").then(False)
    ).alias(c.name)
    for c in _FAST_COLUMNS
]
_FULL_RULES: dict[str, Callable[[pl.Series], pl.Series]] = {
    "int": lambda t: t.str.strip_chars().cast(pl.Int64, strict=False),
    "bool": lambda t: (
        t.str.strip_chars().str.to_lowercase().replace_strict(_BOOLS, default=None, return_dtype=pl.Boolean)
    ),
}


def _retry(text: pl.Series, fast: pl.Series, slow: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """``fast``, with the cells it left null (but which have text) cast by ``slow``."""
    if fast.null_count() == text.null_count():  # a null value always has null text
        return fast
    failed = (fast.is_null() & text.is_not_null()).arg_true()
    return fast.clone().scatter(failed, slow(text.gather(failed)))


def _problem(column: Column) -> pl.Expr | None:
    """A reason string where the cell is invalid for its column, else null."""
    text = pl.col(column.name)
    missing = pl.when(text.is_null()).then(pl.lit(f"{column.name} is missing")) if column.required else None
    if column.kind not in _CAST:
        return missing
    bad = pl.when(text.is_not_null() & pl.col(f"_typed_{column.name}").is_null()).then(
        pl.lit(f"{column.name} is not a valid {column.kind}")
    )
    return bad if missing is None else pl.coalesce(missing, bad)


def _timestamps(text: pl.Series) -> pl.Series:
    """Parse timestamps to UTC: the export's form with Arrow's ISO 8601 parser (ten times
    polars' strptime), everything else with the full rules of :func:`_timestamp_any`."""
    shaped = (text.str.len_bytes() == len("2024-01-01T00:00:00.000000Z")) & text.str.ends_with("Z")
    if shaped.all():  # all present, all in the export's form: one vectorised cast
        try:
            fast = pl.from_arrow(pc.cast(text.to_arrow(), pa.timestamp("us", tz="UTC")))
            assert isinstance(fast, pl.Series)
            return fast.alias(text.name)
        except pa.ArrowInvalid:
            pass  # some value is out of range (month 13...): the full rules decide
    fast = text.str.to_datetime(_ISO_Z, strict=False, time_unit="us").dt.replace_time_zone("UTC")
    return _retry(text, fast, lambda t: t.to_frame("t").select(_timestamp_any(pl.col("t"))).to_series())


def _timestamp_any(text: pl.Expr) -> pl.Expr:
    # ISO 8601 with Z or an offset first; then naive forms, which the vendor means as UTC.
    # An hour-only offset (`+00`, `-05`: PostgreSQL's text form of a timestamptz, as a
    # database export writes it) gets its minutes, which the %z parser requires.
    iso = text.str.replace(r"Z$", "+00:00").str.replace(r"(:\d{2}(?:\.\d+)?)([+-]\d{2})$", "${1}${2}:00")
    return pl.coalesce(
        iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us", time_zone="UTC"),
        iso.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%z", strict=False, time_unit="us", time_zone="UTC"),
        text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us").dt.replace_time_zone(
            "UTC"
        ),
        text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us").dt.replace_time_zone(
            "UTC"
        ),
    )


def parse_timestamp(text: str) -> datetime | None:
    """One timestamp as the intake reads it (UTC; naive means UTC), or None when the intake
    rejects it: a retention prune decides a raw record's day by the same rules as its row."""
    parsed = _timestamps(pl.Series("t", [text.strip()], dtype=pl.String))[0]
    return parsed if isinstance(parsed, datetime) else None
