"""Forget rows: the one engine under ``ingest erase`` (a subject) and ``ingest prune`` (expired days).

A :class:`Selection` says which rows go. :func:`plan` finds them (read only: the dry run);
:func:`forget` removes them in steps, each durable before the next, so that a run killed
anywhere is finished (or, before anything was changed, undone) by :func:`resume`::

    forgetting/<id>/plan.json     what will be replaced, and the new names  crash point "forget_after_plan"
    new data files, rewritten raw and quarantine copies under forgetting/<id>/...
    forgetting/<id>/ready.json    every replacement written (from here no subject id is needed)
    Delta      one commit per table: remove the old files, add the rewritten ones
               (application transaction "certainly-ingest:forget-<id>": never twice)
                                                                         crash point "forget_after_delta"
    raw/...    each rewritten raw copy (and quarantined file) replaces its original, same key
                                                                         crash point "forget_after_raw"
    vacuum     at once (retention 0): no older version's file is left to time-travel to
    manifests/erasure-<id>.json   what was removed and rewritten: verify's evidence
                                                                         crash point "forget_before_audit"
    audit/<stamp>-<id>.json       the audit record (ingest.archive.audit); forgetting/<id>/ removed

Rows leave a table by a file-level rewrite (remove and add actions), not a Delta ``DELETE``:
delta-rs writes a delete's predicate into the commit info, which would keep the subject's id
in ``_delta_log`` for ever. Our commits' file statistics hold only integers
(:func:`ingest.archive.delta.file_stats`); a log that holds the id anyway (a file statistic
written by another tool) is checkpointed and its older entries removed.

Raw copies keep their key (named after the *original* sha256: a re-delivered report is still
recognised and never archived again); the erasure record gives their new sha256. A CSV is
read by value and rewritten record by record (:mod:`ingest.archive.copies`): every other
record's bytes stay exactly as they were.

Example::

    found = plan(storage, SubjectSelection(("4242",)))       # the dry run
    done = forget(storage, SubjectSelection(("4242",)), kind="erase", subject="<hash>", ...)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake.transaction import AddAction, RemoveAction

from ingest.archive import audit, subjects
from ingest.archive.commit import as_json, write_bytes_once
from ingest.archive.compact import ALL_DATASETS, vacuum_archive
from ingest.archive.copies import Found, Unreadable, holds_text, scan_file
from ingest.archive.delta import (
    APP,
    META,
    add_action,
    commit_actions,
    guarded,
    open_table,
    snapshot_files,
    transaction_version,
)
from ingest.archive.layout import (
    DELTA_LOG,
    FORGETTING,
    MANIFESTS,
    QUARANTINE,
    RAW,
    REASONS,
    erasure_key,
    forgetting_dir,
    is_erasure,
    is_raw,
    raw_source,
)
from ingest.archive.manifests import Record, listed_files, next_erasure_seq, read_manifests
from ingest.archive.storage import LocalStorage, Storage, sha256_file
from ingest.crashpoints import crash_point
from ingest.errors import IngestError, OutputError
from ingest.parse.arrowrows import parquet_writer
from ingest.parse.validate import parse_timestamp

#: Columns that name a bot user: a JSON object with ``id`` (Message Data), or the id itself.
SUBJECT_JSON = ("botuser",)
SUBJECT_ID = ("botuser_id", "user_id")
_FILE = "_forget_file"


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
    json_columns = [c for c in names if _is_subject_json(c)]
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
            for n in range(_EXTRA_BOTUSERS)
        ]
    return pl.any_horizontal(tests).fill_null(False) if tests else None


#: The column holding a row's columns beyond the schema, as a JSON object.
EXTRA = "extra"
#: Second and later ``botuser`` columns searched inside ``extra`` (a report never has more).
_EXTRA_BOTUSERS = 4


def _id_token(match: pl.Expr) -> pl.Expr:
    """The value of an ``"id": value`` match, as written (a string with its quotes)."""
    return match.str.replace(r'^"id"\s*:\s*', "")


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_subject_json(name: str) -> bool:
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
        elif _is_subject_json(name) and cell:
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


# ---------------------------------------------------------------- the plan
@dataclass
class FileChange:
    """A data file holding rows to forget: removed, and rewritten without them unless all go."""

    dataset: str
    key: str
    bot_id: str
    day: str
    rows: int
    forgotten: int
    new_key: str | None = None
    new_rows: int = 0
    new_sha256: str = ""


@dataclass
class CopyChange:
    """A raw copy or quarantined file holding records to forget: rewritten without them
    (same key), or removed whole when every record in it is one to forget."""

    key: str
    original_sha256: str = ""
    new_sha256: str = ""
    size: int = 0
    rows_removed: int = 0
    removed: bool = False  # every record in it went: the file is removed whole
    #: Which records go (ids, row numbers or byte offsets; at most copies.MAX_LABELS).
    records: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What an erasure or prune does (the dry run prints it)."""

    id: str
    kind: str
    files: list[FileChange] = field(default_factory=list)
    copies: list[CopyChange] = field(default_factory=list)
    #: Tables whose older log entries hold a needle: checkpointed and the entries removed.
    logs: list[str] = field(default_factory=list)
    #: Datasets without a bot user column: nothing of a subject is in them.
    skipped: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    #: Quarantined files not searched: their bot is unknown and ``--bot`` limits the search.
    unsearched: list[str] = field(default_factory=list)

    def rows_by_table(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for change in self.files:
            found[change.dataset] = found.get(change.dataset, 0) + change.forgotten
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "files": [asdict(f) for f in self.files],
            "copies": [asdict(c) for c in self.copies],
            "logs": self.logs,
            "skipped": self.skipped,
            "meta": self.meta,
            "unsearched": self.unsearched,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Plan:
        return cls(
            doc["id"],
            doc["kind"],
            [FileChange(**f) for f in doc.get("files", [])],
            [CopyChange(**c) for c in doc.get("copies", [])],
            list(doc.get("logs", [])),
            list(doc.get("skipped", [])),
            dict(doc.get("meta", {})),
            list(doc.get("unsearched", [])),
        )


def plan(out: Storage, selection: Selection, *, plan_id: str = "", kind: str = "erase") -> Plan:
    """Find what ``selection`` would forget: data files and rows, raw copies and quarantined
    files that may hold its rows (their rows are counted when rewritten), logs holding a needle."""
    found = Plan(plan_id or audit.new_id(), kind)
    for dataset in ALL_DATASETS:
        table = open_table(out, dataset)
        if table is None:
            continue
        files = [
            f
            for f in snapshot_files(table, dataset)
            if selection.partition(dataset, f.bot_id, date.fromisoformat(f.day))
        ]
        if not files:
            continue
        columns = out.scan([files[0].key], hive_partitioning=False).collect_schema()
        expr = selection.rows(columns)
        if expr is None:
            found.skipped.append(dataset)
            continue
        files = subjects.narrow(out, dataset, files, selection, found.meta)
        counts = _matching_rows(out, [f.key for f in files], expr)
        for f in files:
            if counts.get(f.key):
                total = f.rows if f.rows is not None else out.parquet_rows(f.key)
                found.files.append(FileChange(dataset, f.key, f.bot_id, f.day, total, counts[f.key]))
        needles = selection.needles()
        # Only a table losing rows can hold the subject in its log (a statistic of their
        # file): a byte search alone would cut the history of every table for "1".
        touched = any(f.dataset == dataset for f in found.files)
        if needles and touched and _log_holds(out, dataset, needles):
            found.logs.append(dataset)
    found.copies, found.unsearched = _copies(out, selection)
    return found


def _matching_rows(out: Storage, keys: list[str], expr: pl.Expr) -> dict[str, int]:
    """Rows ``expr`` matches in each file (key -> count), one streaming query."""
    if not keys:
        return {}
    key_of = {out.source(k): k for k in keys}
    frame = (
        out.scan(keys, hive_partitioning=False, include_file_paths=_FILE, extra_columns="ignore")
        .filter(expr)
        .group_by(_FILE)
        .len()
        .collect(engine="streaming")
    )
    return {key_of.get(path, path): int(n) for path, n in frame.iter_rows()}


def _log_holds(out: Storage, dataset: str, needles: list[bytes]) -> bool:
    """Whether any file of the table's log holds a needle (checkpoints decoded)."""
    for obj in out.objects(f"{dataset}/{DELTA_LOG}/"):
        data = out.read_bytes(obj.key)
        if obj.key.endswith(".parquet"):
            data = json.dumps(pq.read_table(pa.BufferReader(data)).to_pylist(), default=str).encode()
        if any(n in data for n in needles):
            return True
    return False


def _copies(out: Storage, selection: Selection) -> tuple[list[CopyChange], list[str]]:
    """Raw copies and quarantined files holding records to forget, each read by value (the
    dry run names them and their records); and quarantined files ``--bot`` left unsearched.
    Raises :class:`~ingest.archive.copies.Unreadable` naming a file it cannot read."""
    found = []
    for key, original in candidate_copies(out, selection):
        change = CopyChange(key, original_sha256=original)
        scanned = scan_copy(out, key, selection)
        if scanned.removed:
            change.rows_removed, change.removed, change.records = (
                scanned.removed,
                not scanned.kept,
                scanned.labels,
            )
            found.append(change)
    return found, unsearched_quarantine(out, selection)


def unsearched_quarantine(out: Storage, selection: Selection) -> list[str]:
    """Quarantined files ``selection`` does not search because their bot is unknown and
    ``--bot`` limits the search: said, never skipped in silence."""
    return list(_quarantined(out, selection, wanted=False))


def candidate_copies(out: Storage, selection: Selection) -> Iterator[tuple[str, str]]:
    """The raw copies and quarantined files ``selection`` searches: (key, its sha256 now,
    when known without hashing it: its name, or an earlier erasure's new sha256)."""
    records = read_manifests(out)
    days = raw_days(records)
    rewritten = listed_files(records).rewritten
    for obj in out.objects(f"{RAW}/"):
        bot_id, sha = raw_source(obj.key)
        if selection.raw_wanted(bot_id, days.get(sha, [])):
            now = rewritten[obj.key][1].get("new_sha256") if obj.key in rewritten else sha
            yield obj.key, str(now or "")
    for key in _quarantined(out, selection, wanted=True):
        yield key, ""


def _quarantined(out: Storage, selection: Selection, *, wanted: bool) -> Iterator[str]:
    """Quarantined files (every name but ``reason.json``) an erasure searches (``wanted``),
    or those it does not because their bot is unknown under ``--bot``. A prune keeps
    refused rows: it searches none."""
    if not selection.needles():
        return
    bots = _quarantine_bots(out)
    for obj in out.objects(f"{QUARANTINE}/"):
        if obj.key.rsplit("/", 1)[-1] == REASONS:
            continue
        bot_id = bots.get(obj.key.split("/")[1])
        searched = selection.raw_wanted(bot_id or "", [])
        if searched == wanted and (wanted or bot_id is None):
            yield obj.key


def known_bots(out: Storage) -> set[str]:
    """Every bot the archive knows: of a raw copy, a commit record or a quarantined file."""
    return set(_quarantine_bots(out).values())


def _quarantine_bots(out: Storage) -> dict[str, str]:
    """The bot of each quarantined source (sha256 -> bot): its raw copy's folder, its
    commit record, or the window (or the bot ``ingest import --bot`` named) its reason.json names."""
    bots = {raw_source(o.key)[1]: raw_source(o.key)[0] for o in out.objects(f"{RAW}/")}
    for record in read_manifests(out):
        attachment = (record.doc or {}).get("attachment")
        if isinstance(attachment, dict) and attachment.get("sha256") and attachment.get("bot_id"):
            bots.setdefault(str(attachment["sha256"]), str(attachment["bot_id"]))
    for obj in out.objects(f"{QUARANTINE}/"):
        sha = obj.key.split("/")[1]
        if obj.key.endswith(f"/{REASONS}") and sha not in bots:
            try:
                doc = json.loads(out.read_bytes(obj.key))
                window = doc.get("window") or {}
            except (ValueError, AttributeError):
                continue
            if isinstance(window, dict) and window.get("bot_id"):
                bots[sha] = str(window["bot_id"])
            elif isinstance(doc.get("bot_id"), str) and doc["bot_id"]:  # `ingest import --bot`
                bots[sha] = doc["bot_id"]
    return bots


def scan_copy(
    out: Storage, key: str, selection: Selection, *, target: Path | None = None, collect: bool = False
) -> Found:
    """Read one stored copy by value: its records to forget (written without them to
    ``target`` when given). Raises Unreadable naming it."""
    source, temporary = _local_copy(out, key)
    try:
        bot_id = raw_source(key)[0] if is_raw(key) else ""
        needles = selection.needles()
        found = scan_file(
            source,
            key,
            lambda header, cells: selection.record(bot_id, header, cells),
            selection.candidate,
            [*needles, *escapes(n.decode() for n in needles)] if needles else [],
            target=target,
            collect=collect,
        )
        if needles and not found.removed and not is_raw(key):
            refuse_unread_holder(source, key, found, needles)
        return found
    finally:
        if temporary:
            source.unlink(missing_ok=True)


def refuse_unread_holder(source: Path, key: str, found: Found, needles: list[bytes]) -> None:
    """A quarantined original read without a column naming a bot user (no header, one the
    intake refused: another separator, no ``botuser``) that holds the id's characters, in
    any encoding it may be in: :class:`Unreadable`, never "nothing of this subject"."""
    if found.header is None or any(_names_subject(name) for name in found.header):
        return  # not a CSV (read by value), or read with a bot user column: the id is other text
    if holds_text(source, [n.decode() for n in needles]):
        raise Unreadable(
            f"{key} holds this id's characters but no record of it could be read "
            "(a file the intake refused, its bot user column not found): nothing was changed",
            hint="a person decides: remove the subject's records from it by hand (or the file), "
            "then run the command again",
        )


def _names_subject(name: str) -> bool:
    return name in SUBJECT_ID or name in SUBJECT_JSON


def raw_days(records: Iterable[Record]) -> dict[str, list[date]]:
    """Each source's days (its data files' partitions and its window), from its commit
    record (:func:`ingest.archive.manifests.read_manifests`)."""
    days: dict[str, list[date]] = {}
    for record in records:
        if record.doc is None or record.compaction or record.erasure:
            continue
        try:
            doc = record.doc
            found = [date.fromisoformat(f["path"].split("/date=")[1][:10]) for f in doc["files"]]
            window = doc.get("window") or {}
            if window.get("from"):
                found.append(date.fromisoformat(window["from"]))
            days[doc["attachment"]["sha256"]] = found
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            continue
    return days


# ---------------------------------------------------------------- doing it
@dataclass
class Outcome:
    """What :func:`forget` did: the record written, the audit record, the tables' versions."""

    plan: Plan
    versions: dict[str, int] = field(default_factory=dict)
    record: str = ""
    audit: str = ""
    vacuumed: int = 0


def forget(out: Storage, selection: Selection, found: Plan, *, actor: str, reason: str) -> Outcome:
    """Forget what ``found`` (from :func:`plan`) lists: write the plan, the replacements, then
    finish (:func:`finish`). The caller holds the job lock. A replacement that cannot be
    written (a copy that reads otherwise than planned) undoes what was written and raises:
    nothing half-done, no record."""
    refuse_locked_copies(out, found)
    refuse_whole_removals(found)
    found.meta.update({"actor": actor, "reason": reason})
    if not found.files and not found.copies:  # nothing of theirs: nothing is touched
        done = Outcome(found)
        if found.kind == "erase":  # a request answered with nothing found is still on record
            body = {
                "kind": found.kind,
                **{k: v for k, v in found.meta.items() if k not in ("actor", "reason")},
            }
            done.audit = audit.append(
                out, {**body, "tables": [], "copies": [], "found": "nothing"}, actor=actor, reason=reason
            )
        return done
    folder = forgetting_dir(found.id)
    for change in found.files:
        if change.forgotten < change.rows:
            stem = change.key.rsplit("/", 1)[-1].removesuffix(".parquet")
            change.new_key = f"{change.key.rsplit('/', 1)[0]}/{stem.split('.')[0]}.f{found.id[:8]}.parquet"
    write_bytes_once(out, f"{folder}/plan.json", as_json(found.as_json()))
    crash_point("forget_after_plan")
    try:
        for change in found.files:
            if change.new_key is not None:
                _rewrite_data(out, change, selection)
        for copy in found.copies:
            _rewrite_copy(out, copy, selection, f"{folder}/{copy.key}")
    except IngestError:
        undo(out, found.id)
        raise
    write_bytes_once(out, f"{folder}/ready.json", as_json(found.as_json()))
    return finish(out, found)


def refuse_whole_removals(found: Plan) -> None:
    """A file is removed whole only when every record in it is one to forget: refuse a
    plan that says otherwise (one written by hand, or by an older version)."""
    for copy in found.copies:
        if copy.removed and copy.rows_removed == 0:
            raise OutputError(f"refused: the plan removes {copy.key} whole, but none of its records is to go")


def refuse_locked_copies(out: Storage, found: Plan) -> None:
    """Raise OutputError, before anything changes, when a file to rewrite is under an S3
    Object Lock retention and bypassing it is not allowed: a person decides."""
    if out.bypass_allowed:
        return
    locked = [c.key for c in found.copies if out.retained_until(c.key) is not None]
    if locked:
        raise OutputError(
            f"{len(locked)} file(s) holding these rows are under an S3 Object Lock retention "
            f"(first: {out.describe(locked[0])}); nothing was changed",
            hint="INGEST_OUTPUT__OBJECT_LOCK_BYPASS",
        )


def _rewrite_data(out: Storage, change: FileChange, selection: Selection) -> None:
    """Publish the file's rows less the forgotten ones under ``change.new_key``."""
    assert change.new_key is not None
    frame = out.scan([change.key], hive_partitioning=False)
    expr = selection.rows(frame.collect_schema())
    assert expr is not None
    schema = out.parquet_metadata(change.key).schema.to_arrow_schema()
    tmp = out.temp("forget.parquet")
    try:
        writer = (
            parquet_writer(tmp, schema)
            if "timestamp" in schema.names
            else pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=False)
        )
        with writer:
            for batch in frame.filter(~expr).collect_batches(chunk_size=50_000):
                writer.write_table(batch.to_arrow().cast(schema))
        change.new_rows = pq.ParquetFile(tmp).metadata.num_rows
        change.new_sha256 = sha256_file(tmp)
        if not out.publish(tmp, change.new_key) and out.sha256(change.new_key) != change.new_sha256:
            raise OutputError(f"cannot write {out.describe(change.new_key)}: another file is there")
    finally:
        tmp.unlink(missing_ok=True)


def _local_copy(out: Storage, key: str) -> tuple[Path, bool]:
    """A local path of a stored file (its own, for a local archive; else a temporary copy)."""
    if isinstance(out, LocalStorage):
        return out.path(key), False
    tmp = out.temp(key.rsplit("/", 1)[-1])
    tmp.write_bytes(out.read_bytes(key))
    return tmp, True


def _rewrite_copy(out: Storage, copy: CopyChange, selection: Selection, staged: str) -> None:
    """Rewrite a raw copy or quarantined file without the records into ``staged`` (nothing
    to write when it goes whole). Raises OutputError when it reads otherwise than planned:
    another record of someone else would go with a file removed whole, or the count changed."""
    tmp = out.temp("forget-copy")
    try:
        if not copy.original_sha256:
            source, temporary = _local_copy(out, copy.key)
            copy.original_sha256 = sha256_file(source)
            if temporary:
                source.unlink(missing_ok=True)
        found = scan_copy(out, copy.key, selection, target=tmp)
        if found.kept and copy.removed:
            raise OutputError(
                f"refused: {copy.key} would be removed whole but holds another person's record; "
                "nothing was changed"
            )
        if found.removed != copy.rows_removed or (not found.kept and not copy.removed):
            raise OutputError(
                f"{copy.key} changed since the plan ({found.removed} record(s) to go, "
                f"{copy.rows_removed} planned); nothing was changed: run the command again"
            )
        if copy.removed:
            return
        copy.new_sha256, copy.size = sha256_file(tmp), tmp.stat().st_size
        if not out.publish(tmp, staged) and out.sha256(staged) != copy.new_sha256:
            raise OutputError(f"cannot write {out.describe(staged)}: another file is there")
    finally:
        tmp.unlink(missing_ok=True)


def finish(out: Storage, found: Plan) -> Outcome:
    """From ``ready.json`` on: commit, swap the copies, vacuum, record, audit. Needs no
    subject id, and is safe to run again from anywhere in it."""
    done = Outcome(found)
    folder = forgetting_dir(found.id)
    for dataset in sorted({f.dataset for f in found.files}):
        done.versions[dataset] = _commit(
            out, dataset, [f for f in found.files if f.dataset == dataset], found.id
        )
    crash_point("forget_after_delta")
    for copy in found.copies:
        _swap(out, copy, f"{folder}/{copy.key}")
    crash_point("forget_after_raw")
    datasets = tuple(sorted({f.dataset for f in found.files} | set(found.logs)))
    for change in found.files:  # superseded at once: no older version can be read back
        out.delete(change.key)
    subjects.after_forget(out, {(f.dataset, f.bot_id) for f in found.files})
    done.vacuumed = sum(
        len(v) for v in vacuum_archive(out, retention_hours=0, datasets=datasets).removed.values()
    )
    for dataset in found.logs:
        _drop_old_log(out, dataset)
    # A versioned bucket (S3 Object Lock) keeps what plain deletes removed as older versions.
    for prefix in (*{f"{d}/" for d in datasets}, f"{RAW}/", f"{QUARANTINE}/"):
        out.purge_old_versions(prefix)
    done.record = erasure_key(found.id)
    record = erasure_record(found, done.versions, _next_seq(out, done.record))
    write_bytes_once(out, done.record, as_json(record))
    crash_point("forget_before_audit")
    body = {
        "kind": found.kind,
        **{k: v for k, v in found.meta.items() if k not in ("actor", "reason")},
        "record": done.record,
        "record_sha256": out.sha256(done.record),
        "tables": [
            {
                "dataset": d,
                "version": done.versions.get(d),
                "rows": n,
                "files": sum(1 for f in found.files if f.dataset == d),
            }
            for d, n in sorted(found.rows_by_table().items())
        ]
        + [
            {"dataset": d, "version": None, "rows": 0, "files": 0, "note": "no bot user column"}
            for d in found.skipped
        ],
        "copies": [{"key": c.key, "rows": c.rows_removed, "removed": c.removed} for c in found.copies],
    }
    done.audit = audit.append(
        out,
        body,
        actor=str(found.meta.get("actor", "")),
        reason=str(found.meta.get("reason", "")),
        record_id=found.id,
    )
    for obj in out.objects(f"{folder}/"):
        out.delete(obj.key)
    return done


def _next_seq(out: Storage, key: str) -> int:
    """This erasure record's ``seq``: after every erasure record already there (read at the
    moment it is written, under the job lock; a resumed run's record, already written, keeps
    its own)."""
    objects = [o for o in out.objects(f"{MANIFESTS}/") if is_erasure(o.key) and o.key != key]
    records = read_manifests(out, objects)
    return next_erasure_seq([(r.key, r.doc.get("erasure") or {}) for r in records if r.doc is not None])


def erasure_record(found: Plan, versions: dict[str, int], seq: int) -> dict[str, Any]:
    """``manifests/erasure-<id>.json``: per table the files removed and their replacements
    (the manifest walker applies them), and each rewritten copy's original and new sha256;
    ``seq`` orders the records as they were made (``at`` is whole seconds)."""
    tables = []
    for dataset in sorted({f.dataset for f in found.files}):
        changes = [f for f in found.files if f.dataset == dataset]
        tables.append(
            {
                "dataset": dataset,
                "version": versions.get(dataset),
                "rows": sum(f.forgotten for f in changes),
                "replaces": [{"path": f.key, "rows": f.rows} for f in changes],
                "files": [
                    {"path": f.new_key, "rows": f.new_rows, "sha256": f.new_sha256}
                    for f in changes
                    if f.new_key
                ],
                "days": sorted({f"{f.bot_id}/{f.day}" for f in changes}),
            }
        )
    return {
        "erasure": {
            "id": found.id,
            "seq": seq,
            "kind": found.kind,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tables": tables,
            "copies": [
                {
                    "key": c.key,
                    "original_sha256": c.original_sha256,
                    "new_sha256": None if c.removed else c.new_sha256,
                    "size": None if c.removed else c.size,
                    "rows_removed": c.rows_removed,
                    "removed": c.removed,
                }
                for c in found.copies
            ],
        }
    }


def _commit(out: Storage, dataset: str, changes: list[FileChange], forget_id: str) -> int:
    """One commit removing the files and adding their rewrites (once: app transaction)."""
    table = open_table(out, dataset)
    assert table is not None
    app = f"{APP}:forget-{forget_id}"
    if table.transaction_version(app) is None:
        now = int(time.time() * 1000)
        actions: list[AddAction | RemoveAction] = []
        for change in changes:
            relative = change.key.removeprefix(f"{dataset}/")
            partition: dict[str, str | None] = {"bot_id": change.bot_id, "date": change.day}
            actions.append(RemoveAction(quote(relative, safe="/="), True, now, None, partition))
            if change.new_key:
                actions.append(
                    add_action(
                        out, dataset, change.new_key, change.new_rows, bot_id=change.bot_id, day=change.day
                    )
                )
        commit_actions(out, dataset, table, actions, app=app, metadata={f"{META}.forget": forget_id})
    made = transaction_version(out, dataset, app, table.version())
    return table.version() if made is None else made  # its log entry cut back since: the latest


def _swap(out: Storage, copy: CopyChange, staged: str) -> None:
    """Put the rewritten copy in place of the original (same key), or remove the original.
    The staged copy is removed only once it is in place: while it is there, this is to do."""
    if copy.removed:
        out.delete(copy.key)
        return
    if not out.exists(staged):
        if out.sha256(copy.key) != copy.new_sha256:
            raise OutputError(f"cannot finish the erasure: {out.describe(staged)} is missing")
        return  # swapped by an earlier, killed run
    source, temporary = _local_copy(out, staged)  # a local archive's own file: linked, not copied
    try:
        out.delete(copy.key)  # the original goes; the rewritten copy waits at `staged` until published
        crash_point("forget_in_swap")
        out.publish(source, copy.key)
    finally:
        if temporary:
            source.unlink(missing_ok=True)
    out.delete(staged)


def _drop_old_log(out: Storage, dataset: str) -> None:
    """Checkpoint the table and remove the log entries (and checkpoints) before it: they
    hold what was forgotten. Time travel before the checkpoint ends."""
    table = open_table(out, dataset)
    assert table is not None
    guarded(out, dataset, table.create_checkpoint)
    version = table.version()
    for obj in out.objects(f"{dataset}/{DELTA_LOG}/"):
        name = obj.key.rsplit("/", 1)[-1]
        number = name.split(".")[0]
        if number.isdigit() and int(number) < version and (name.endswith(".json") or ".checkpoint." in name):
            out.delete(obj.key)
        elif name.endswith(".crc") and number.isdigit() and int(number) < version:
            out.delete(obj.key)


def pending(out: Storage) -> list[str]:
    """Ids of erasures or prunes in progress (a run was killed in the middle)."""
    return sorted({o.key.split("/")[1] for o in out.objects(f"{FORGETTING}/")})


def resume(out: Storage) -> list[tuple[str, str]]:
    """Finish every erasure or prune in progress whose replacements were all written; undo
    one killed before (nothing had been changed yet: its new files are removed, and it is
    to be run again). Returns (id, "finished" | "undone")."""
    done = []
    for forget_id in pending(out):
        folder = forgetting_dir(forget_id)
        if out.exists(f"{folder}/ready.json"):
            finish(out, Plan.from_json(json.loads(out.read_bytes(f"{folder}/ready.json"))))
            done.append((forget_id, "finished"))
            continue
        undo(out, forget_id)
        done.append((forget_id, "undone"))
    return done


def undo(out: Storage, forget_id: str) -> None:
    """Remove what an erasure or prune wrote before ``ready.json`` (new data files, staged
    copies): nothing had been changed yet, so nothing is left of it."""
    folder = forgetting_dir(forget_id)
    if out.exists(f"{folder}/plan.json"):
        planned = Plan.from_json(json.loads(out.read_bytes(f"{folder}/plan.json")))
        for change in planned.files:
            if change.new_key:
                out.delete(change.new_key)
    for obj in out.objects(f"{folder}/"):
        out.delete(obj.key)
