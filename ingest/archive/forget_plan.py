"""What an erasure or prune would forget, found read-only (the dry run): data files and
their matching rows, raw copies and quarantined files that may hold the selected records,
and table logs holding a needle. The plan is a record (:class:`ingest.records.ErasurePlan`):
``forgetting/<id>/plan.json`` and ``ready.json`` are its bytes.

Example::

    found = plan(storage, SubjectSelection(("4242",)))
    found.rows_by_table()             # {"messages": 12}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.archive import audit, subjects
from ingest.archive.compact import ALL_DATASETS
from ingest.archive.copies import Found, Unreadable, holds_text, scan_file
from ingest.archive.delta import open_table
from ingest.archive.forget_selection import SUBJECT_ID, SUBJECT_JSON, Selection, escapes
from ingest.archive.layout import (
    DELTA_LOG,
    QUARANTINE,
    RAW,
    REASONS,
    is_raw,
    raw_source,
)
from ingest.archive.manifests import Record, listed_files, read_manifests
from ingest.archive.snapshot import snapshot_files
from ingest.archive.storage import Storage, local_copy
from ingest.errors import RecordTooNew
from ingest.records import (
    ErasurePlan,
    PlannedCopy,
    PlannedFile,
    QuarantineReasons,
    load,
)

_FILE = "_forget_file"

#: The plan's parts are records (:mod:`ingest.records`): ``plan.json`` and ``ready.json`` are
#: their bytes, so a killed erasure resumes from what the plan says.
FileChange = PlannedFile
CopyChange = PlannedCopy
Plan = ErasurePlan


def plan(storage: Storage, selection: Selection, *, plan_id: str = "", kind: str = "erase") -> Plan:
    """Find what ``selection`` would forget: data files and rows, raw copies and quarantined
    files that may hold its rows (their rows are counted when rewritten), logs holding a needle."""
    found = Plan(
        id=plan_id or audit.new_id(),
        kind=kind,
        files=[],
        copies=[],
        logs=[],
        skipped=[],
        meta={},
        unsearched=[],
    )
    for dataset in ALL_DATASETS:
        table = open_table(storage, dataset)
        if table is None:
            continue
        files = [
            f
            for f in snapshot_files(table, dataset)
            if selection.partition(dataset, f.bot_id, date.fromisoformat(f.day))
        ]
        if not files:
            continue
        columns = storage.scan([files[0].key], hive_partitioning=False).collect_schema()
        expr = selection.rows(columns)
        if expr is None:
            found.skipped.append(dataset)
            continue
        files = subjects.narrow(storage, dataset, files, selection, found.meta)
        counts = _matching_rows(storage, [f.key for f in files], expr)
        for f in files:
            if counts.get(f.key):
                total = f.rows if f.rows is not None else storage.parquet_rows(f.key)
                found.files.append(
                    FileChange(
                        dataset=dataset,
                        key=f.key,
                        bot_id=f.bot_id,
                        day=f.day,
                        rows=total,
                        forgotten=counts[f.key],
                    )
                )
        needles = selection.needles()
        # Only a table losing rows can hold the subject in its log (a statistic of their
        # file): a byte search alone would cut the history of every table for "1".
        touched = any(f.dataset == dataset for f in found.files)
        if needles and touched and _log_holds(storage, dataset, needles):
            found.logs.append(dataset)
    found.copies, found.unsearched = _copies(storage, selection)
    return found


def _matching_rows(storage: Storage, keys: list[str], expr: pl.Expr) -> dict[str, int]:
    """Rows ``expr`` matches in each file (key -> count), one streaming query."""
    if not keys:
        return {}
    key_of = {storage.source(k): k for k in keys}
    frame = (
        storage.scan(keys, hive_partitioning=False, include_file_paths=_FILE, extra_columns="ignore")
        .filter(expr)
        .group_by(_FILE)
        .len()
        .collect(engine="streaming")
    )
    return {key_of.get(path, path): int(n) for path, n in frame.iter_rows()}


def _log_holds(storage: Storage, dataset: str, needles: list[bytes]) -> bool:
    """Whether any file of the table's log holds a needle (checkpoints decoded)."""
    for obj in storage.objects(f"{dataset}/{DELTA_LOG}/"):
        data = storage.read_bytes(obj.key)
        if obj.key.endswith(".parquet"):
            data = json.dumps(pq.read_table(pa.BufferReader(data)).to_pylist(), default=str).encode()
        if any(n in data for n in needles):
            return True
    return False


def _copies(storage: Storage, selection: Selection) -> tuple[list[CopyChange], list[str]]:
    """Raw copies and quarantined files holding records to forget, each read by value (the
    dry run names them and their records); and quarantined files ``--bot`` left unsearched.
    Raises :class:`~ingest.archive.copies.Unreadable` naming a file it cannot read."""
    found = []
    for key, original in candidate_copies(storage, selection):
        change = CopyChange(key=key, original_sha256=original)
        scanned = scan_copy(storage, key, selection)
        if scanned.removed:
            change.rows_removed, change.removed, change.records = (
                scanned.removed,
                not scanned.kept,
                scanned.labels,
            )
            found.append(change)
    return found, unsearched_quarantine(storage, selection)


def unsearched_quarantine(storage: Storage, selection: Selection) -> list[str]:
    """Quarantined files ``selection`` does not search because their bot is unknown and
    ``--bot`` limits the search: said, never skipped in silence."""
    return list(_quarantined(storage, selection, wanted=False))


def candidate_copies(storage: Storage, selection: Selection) -> Iterator[tuple[str, str]]:
    """The raw copies and quarantined files ``selection`` searches: (key, its sha256 now,
    when known without hashing it: its name, or an earlier erasure's new sha256)."""
    records = read_manifests(storage)
    days = raw_days(records)
    rewritten = listed_files(records).rewritten
    for obj in storage.objects(f"{RAW}/"):
        bot_id, sha = raw_source(obj.key)
        if selection.raw_wanted(bot_id, days.get(sha, [])):
            now = rewritten[obj.key][1].new_sha256 if obj.key in rewritten else sha
            yield obj.key, str(now or "")
    for key in _quarantined(storage, selection, wanted=True):
        yield key, ""


def _quarantined(storage: Storage, selection: Selection, *, wanted: bool) -> Iterator[str]:
    """Quarantined files (every name but ``reason.json``) an erasure searches (``wanted``),
    or those it does not because their bot is unknown under ``--bot``. A prune keeps
    refused rows: it searches none."""
    if not selection.needles():
        return
    bots = _quarantine_bots(storage)
    for obj in storage.objects(f"{QUARANTINE}/"):
        if obj.key.rsplit("/", 1)[-1] == REASONS:
            continue
        bot_id = bots.get(obj.key.split("/")[1])
        searched = selection.raw_wanted(bot_id or "", [])
        if searched == wanted and (wanted or bot_id is None):
            yield obj.key


def known_bots(storage: Storage) -> set[str]:
    """Every bot the archive knows: of a raw copy, a commit record or a quarantined file."""
    return set(_quarantine_bots(storage).values())


def _quarantine_bots(storage: Storage) -> dict[str, str]:
    """The bot of each quarantined source (sha256 -> bot): its raw copy's folder, its
    commit record, or the window (or the bot ``ingest import --bot`` named) its reason.json names."""
    bots = {raw_source(o.key)[1]: raw_source(o.key)[0] for o in storage.objects(f"{RAW}/")}
    for record in read_manifests(storage):
        if record.report is not None and record.report.bot_id:
            bots.setdefault(record.report.attachment.sha256, record.report.bot_id)
    for obj in storage.objects(f"{QUARANTINE}/"):
        sha = obj.key.split("/")[1]
        if obj.key.endswith(f"/{REASONS}") and sha not in bots:
            try:
                reasons = load(QuarantineReasons, storage.read_bytes(obj.key), obj.key)
            except (ValueError, RecordTooNew):
                continue
            if reasons.window is not None and reasons.window.bot_id:
                bots[sha] = reasons.window.bot_id
            elif reasons.bot_id:  # `ingest import --bot`
                bots[sha] = reasons.bot_id
    return bots


def scan_copy(
    storage: Storage, key: str, selection: Selection, *, target: Path | None = None, collect: bool = False
) -> Found:
    """Read one stored copy by value: its records to forget (written without them to
    ``target`` when given). Raises Unreadable naming it."""
    source, temporary = local_copy(storage, key)
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
        manifest = record.report
        if manifest is None:
            continue
        try:
            found = [date.fromisoformat(f.path.split("/date=")[1][:10]) for f in manifest.files]
            if manifest.window is not None and manifest.window.from_:
                found.append(date.fromisoformat(manifest.window.from_))
            days[manifest.attachment.sha256] = found
        except (ValueError, IndexError):
            continue
    return days
