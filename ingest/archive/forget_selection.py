"""Which rows an erasure or prune forgets: a :class:`Selection` (a subject's bot user ids,
or days past their retention) answers for partitions, rows (a polars expression), CSV
records, raw copies and the bytes a file must hold to be worth reading (needles).

Example::

    selection = SubjectSelection(("4242",))
    selection.rows(table_schema)      # a polars expression: the subject's rows
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import polars as pl

from ingest.parse.validate import parse_timestamp

#: Columns that name a bot user: a JSON object with ``id`` (Message Data), or the id itself.
SUBJECT_JSON = ("botuser",)
SUBJECT_ID = ("botuser_id", "user_id")


class Selection(Protocol):
    """Which rows to forget."""

    def partition(self, dataset: str, bot_id: str, day: date) -> bool:
        """Whether the partition may hold rows to forget."""

    def rows(self, columns: pl.Schema) -> pl.Expr | None:
        """The rows to forget in a file of these columns (None: no such row can be in it)."""

    def record(self, bot_id: str, header: list[str], cells: list[str]) -> bool:
        """Whether a raw CSV record (its header's names and its cells) is to be forgotten."""

    def candidate(self, record: bytes) -> bool:
        """A cheap test before parsing a record: False when it cannot be one to forget."""

    def raw_wanted(self, bot_id: str, days: list[date]) -> bool:
        """Whether a raw copy of this bot whose rows span these days may hold rows to forget."""

    def needles(self) -> list[bytes]:
        """Bytes that must be found nowhere afterwards (an erasure's subject id)."""


def subject_expr(columns: Iterable[str], ids: list[str]) -> pl.Expr | None:
    """Rows of these bot users: ``botuser`` JSON with that ``id``, or a ``botuser_id`` /
    ``user_id`` column equal to it; None when no such column is there."""
    names = set(columns)
    json_columns = [c for c in names if is_subject_json(c)]
    tests = [pl.col(c).str.json_path_match("$.id").is_in(ids) for c in json_columns]
    # An "id" written twice: json_path_match keeps one; the raw side counts either (a token).
    tokens = sorted(
        {json.dumps(i, ensure_ascii=a) for i in ids for a in (True, False)}
        | {i for i in ids if _is_number_text(i)}
    )
    pattern = r'"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*)'
    tests += [
        pl.col(c)
        .str.extract_all(pattern)
        .list.eval(_id_token(pl.element()))
        .list.set_intersection(tokens)
        .list.len()
        > 0
        for c in json_columns
    ]
    tests += [pl.col(c).cast(pl.String).is_in(ids) for c in SUBJECT_ID if c in names]
    if EXTRA in names:  # columns beyond the schema (user_id, a second botuser) are kept there
        extra = pl.col(EXTRA)
        tests += [extra.str.json_path_match(f"$.{c}").is_in(ids) for c in SUBJECT_ID]
        tests += [
            extra.str.json_path_match(f"$.botuser_duplicated_{n}").str.json_path_match("$.id").is_in(ids)
            for n in range(EXTRA_BOTUSERS)
        ]
    return pl.any_horizontal(tests).fill_null(False) if tests else None


#: The column holding a row's columns beyond the schema, as a JSON object.
EXTRA = "extra"
#: Second and later ``botuser`` columns searched inside ``extra`` (a report never has more).
EXTRA_BOTUSERS = 4


def _id_token(match: pl.Expr) -> pl.Expr:
    """The value of an ``"id": value`` match, as written (a string with its quotes)."""
    return match.str.replace(r'^"id"\s*:\s*', "")


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_subject_json(name: str) -> bool:
    """``botuser``, or a second one (``botuser_duplicated_0``: the name the intake's reader
    gives a repeated column), is a bot user's JSON object."""
    return name in SUBJECT_JSON or any(name.startswith(f"{c}_duplicated_") for c in SUBJECT_JSON)


class UnreadableSubject(ValueError):
    """A bot user cell holding the id's characters that is not JSON: a person decides."""


def subject_ids(header: list[str], cells: list[str], wanted: Iterable[str] = ()) -> set[str]:
    """The bot user ids a record holds, by value: a ``botuser`` JSON object's ``id``
    (decoded: escapes undone, a number as its text, as ``json_path_match`` reads it), and
    any ``botuser_id`` / ``user_id`` cell. Every such column counts, as in the tables. A bot
    user cell that is not JSON but holds one of ``wanted`` raises :class:`UnreadableSubject`."""
    found = set()
    for name, cell in zip(header, cells, strict=False):
        if name in SUBJECT_ID and cell:
            found.add(cell)
        elif is_subject_json(name) and cell:
            try:
                value = json.loads(cell, object_pairs_hook=_Pairs)
            except ValueError:
                if wanted and any(w in cell for w in wanted):
                    raise UnreadableSubject(
                        f"a {name} value holding this id is not JSON (whose it is cannot be read)"
                    ) from None
                continue
            # Every "id" of the object: one written twice is theirs whichever a reader keeps.
            for key, named in value if isinstance(value, _Pairs) else []:
                if key == "id" and (isinstance(named, str) or _is_number(named)):
                    found.add(str(named))
    return found


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, duplicates kept."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


#: JSON's two-character escapes of characters an id may hold.
_SHORT_ESCAPES = {'"': b'\\"', "\\": b"\\\\", "/": b"\\/"}


def escapes(ids: Iterable[str]) -> list[bytes]:
    """What a JSON-escaped id holds where its own bytes may be absent (``"\\u0034242"``):
    any ``\\u`` escape, and the short escape of a character an id has (``\\/``). Not any
    backslash: chat text in JSON columns is full of ``\\"``, and each hit is parsed."""
    ids = list(ids)
    quoted = {i.replace('"', '""').encode() for i in ids if '"' in i}  # a CSV cell doubles quotes
    return [b"\\u", *sorted({_SHORT_ESCAPES[c] for i in ids for c in i if c in _SHORT_ESCAPES} | quoted)]


@dataclass(frozen=True)
class SubjectSelection:
    """An erasure: every row of these bot users (of these bots; none given: every bot)."""

    ids: tuple[str, ...]
    bots: tuple[str, ...] = ()

    def partition(self, dataset: str, bot_id: str, day: date) -> bool:
        return not self.bots or bot_id in self.bots

    def rows(self, columns: pl.Schema) -> pl.Expr | None:
        return subject_expr(columns.names(), list(self.ids))

    def record(self, bot_id: str, header: list[str], cells: list[str]) -> bool:
        return not subject_ids(header, cells, self.ids).isdisjoint(self.ids)

    def candidate(self, record: bytes) -> bool:
        return any(n in record for n in (*self.needles(), *escapes(self.ids)))

    def raw_wanted(self, bot_id: str, days: list[date]) -> bool:
        return not self.bots or bot_id in self.bots

    def needles(self) -> list[bytes]:
        return [i.encode() for i in self.ids]


@dataclass(frozen=True)
class ExpiredSelection:
    """A prune: rows whose UTC day is before the dataset's first kept day, unless held."""

    first_kept: dict[str, date]  # dataset -> first day kept
    held: Callable[[str, date], bool]  # (bot, day) -> under a legal hold

    def partition(self, dataset: str, bot_id: str, day: date) -> bool:
        first = self.first_kept.get(dataset)
        return first is not None and day < first and not self.held(bot_id, day)

    def rows(self, columns: pl.Schema) -> pl.Expr | None:
        return pl.lit(True)  # the partition decides: a partition is one bot and day

    def record(self, bot_id: str, header: list[str], cells: list[str]) -> bool:
        first = self.first_kept.get("messages")
        if first is None or "timestamp" not in header:
            return False
        text = cells[header.index("timestamp")] if len(cells) > header.index("timestamp") else ""
        try:
            stamp: datetime | None = datetime.fromisoformat(text.strip().replace(" ", "T"))  # fast
        except ValueError:  # other forms the intake reads (`2024-1-1T00:57:41Z`): by its rules
            stamp = parse_timestamp(text)
        if stamp is None:
            return False  # unreadable: it was rejected, and it is kept rather than guessed
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(UTC)
        day = stamp.date()
        return day < first and not self.held(bot_id, day)

    def candidate(self, record: bytes) -> bool:
        return True

    def raw_wanted(self, bot_id: str, days: list[date]) -> bool:
        first = self.first_kept.get("messages")
        return first is not None and (not days or min(days) < first)

    def needles(self) -> list[bytes]:
        return []
