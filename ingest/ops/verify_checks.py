"""The checks ``ingest verify`` runs (:func:`ingest.ops.verify.verify_archive` puts them
together): data files against their manifests and the Delta log, raw copies against their
names and erasure records, rows against their partitions and ids, each manifest's counts,
compactions, and every other record against its model (:mod:`ingest.records`). Each
returns or appends problems, one line each, naming the file.

Example::

    problems = check_data_files(data, listing.files, hashes, footer_rows, present, snapshot)
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date
from typing import Any

import polars as pl
from pydantic import ValidationError

from ingest.archive.layout import FORGETTING, HOLDS, RAW, is_raw, is_reasons, raw_source
from ingest.archive.storage import Storage
from ingest.errors import IngestError, RecordTooNew, one_line
from ingest.ops.verify_report import BotCoverage, VerifyReport
from ingest.parse.reports import ROW_KEY
from ingest.parse.schema import DATASET, file_schema
from ingest.records import (
    CompactionBody,
    ErasedCopy,
    ErasurePlan,
    FileEntry,
    HoldLifting,
    HoldRecord,
    QuarantineReasons,
    Record,
    ReportManifest,
    first_problem,
    load,
)

_PARTITION = re.compile(r"^bot_id=([^/]+)/date=(\d{4}-\d{2}-\d{2})/[^/]+\.parquet$")
_FILE = "_verify_file"


def uncommitted(
    on_disk: list[str], snapshot: dict[str, int | None], replaced: set[str], listed: set[str]
) -> list[tuple[str, str]]:
    """Data files on disk that the table does not read and no compaction replaced: a crash
    between a file and its Delta commit (the report's next run adopts it; ``ingest vacuum``
    removes one whose report never comes back)."""
    problems = []
    for key in on_disk:
        if key in snapshot or key in replaced or key in listed:
            continue
        hint = "; a leftover temporary file" if key.rsplit("/", 1)[-1].startswith(".tmp-") else ""
        problems.append(
            (
                key,
                f"{key}: orphan data file, not in the Delta table and no manifest lists "
                f"it{hint} (readers globbing *.parquet see it; `ingest vacuum` removes it)",
            )
        )
    return problems


def footer_rows(storage: Storage, data: list[str], problems: list[str]) -> dict[str, int]:
    """num_rows of every readable data file; an unreadable footer is a problem."""
    rows: dict[str, int] = {}
    for key in data:
        try:
            rows[key] = storage.parquet_rows(key)
        except Exception as err:  # noqa: BLE001 - any reader error means an unreadable file
            problems.append(f"{key}: unreadable Parquet footer ({type(err).__name__})")
    return rows


def check_data_files(
    data: list[str],
    listed: dict[str, tuple[str, FileEntry]],
    hashes: dict[str, str | None],
    footer_rows: dict[str, int],
    on_disk: set[str],
    snapshot: set[str],
) -> list[str]:
    """Each listed file in the table's snapshot and as listed (sha256, rows); each file of
    the snapshot listed by a manifest (``data``: the snapshot's files that are on disk)."""
    problems = [
        f"{name}: missing data file (listed in {listed[name][0]})"
        if name not in on_disk
        else f"{name}: not in the Delta table (listed in {listed[name][0]}): its commit is missing"
        for name in sorted(set(listed) - snapshot)
    ]
    for name in data:
        if name not in listed:
            problems.append(
                f"{name}: orphan data file: in the Delta table, but no manifest lists it "
                "(an OPTIMIZE without its record: run `ingest compact`; or a file committed "
                "by another writer)"
            )
            continue
        manifest, entry = listed[name]
        if hashes[name] != entry.sha256:
            problems.append(f"{name}: sha256 differs from {manifest} (data file changed)")
        if name in footer_rows and footer_rows[name] != entry.rows:
            problems.append(f"{name}: {footer_rows[name]} rows, {manifest} says {entry.rows}")
    return problems


def check_raw_files(
    raw: dict[str, int],
    attachments: dict[tuple[str, str], tuple[str, int | None]],
    hashes: dict[str, str | None],
    rewritten: dict[str, tuple[str, ErasedCopy]],
) -> list[str]:
    """Each raw file hashing to its name (or, rewritten by an erasure, to the sha256 its
    record gives), of the size its manifest (or that record) says; none missing."""
    problems = []
    seen: set[tuple[str, str]] = set()
    for name, size in raw.items():
        source = raw_source(name)
        sha = source[1]
        seen.add(source)
        if name in rewritten:
            record, entry = rewritten[name]
            if hashes[name] != entry.new_sha256:
                problems.append(f"{name}: raw file changed, its sha256 is not the one {record} gives")
            elif entry.size != size:
                problems.append(f"{name}: size {size}, {record} says {entry.size}")
            if source not in attachments:
                problems.append(f"{name}: raw file without a manifest")
            continue
        if hashes[name] != sha:
            problems.append(f"{name}: raw file changed, its sha256 is not its name")
        if source not in attachments:
            problems.append(f"{name}: raw file without a manifest")
        elif attachments[source][1] != size:
            problems.append(f"{name}: size {size}, {attachments[source][0]} says {attachments[source][1]}")
    removed = {raw_source(k) for k, (_, e) in rewritten.items() if e.removed and is_raw(k)}
    for (bot_id, sha), (manifest, _) in sorted(attachments.items()):
        if (bot_id, sha) not in seen and (bot_id, sha) not in removed:
            problems.append(f"{RAW}/bot_id={bot_id}/{sha}.*: missing raw file (listed in {manifest})")
    return problems


def check_partitions(
    storage: Storage,
    report: VerifyReport,
    data: list[str],
    footer_rows: dict[str, int],
    count: set[str] | None = None,
) -> None:
    """Each file inside a bot/date partition; per bot, rows once and on their UTC date
    (messages) or each row key once (typed datasets); the days each bot covers (from the
    files in ``count``: all of ``data`` unless given)."""
    by_bot: dict[str, list[str]] = defaultdict(list)
    others: dict[tuple[str, str], list[str]] = defaultdict(list)  # (dataset, bot) -> files
    for name in data:
        dataset, _, rest = name.partition("/")
        match = _PARTITION.match(rest)
        if match is None:
            report.problems.append(f"{name}: not inside a bot_id=<bot>/date=<YYYY-MM-DD>/ partition")
            continue
        if dataset != DATASET:
            if name in footer_rows:
                others[(dataset, match[1])].append(name)
            continue
        bot = report.bots.setdefault(match[1], BotCoverage(match[1]))
        if footer_rows.get(name) and (count is None or name in count):
            bot.rows += footer_rows[name]
            bot.days.append(date.fromisoformat(match[2]))
        if name in footer_rows:
            by_bot[match[1]].append(name)
    for bot_id, keys in sorted(by_bot.items()):
        report.problems.extend(check_rows(storage, bot_id, keys))
    for (dataset, bot_id), keys in sorted(others.items()):
        report.problems.extend(check_row_keys(storage, dataset, bot_id, keys))


def other_records(storage: Storage, objects: list[Any]) -> tuple[list[str], dict[str, QuarantineReasons]]:
    """Every record besides manifests and the audit log (read by their own walkers), each read
    through its model: quarantine reasons, hold files and their liftings, plans of an erasure
    in progress. Returns a problem for each that does not fit, and the quarantine reasons read."""
    problems: list[str] = []
    reasons: dict[str, QuarantineReasons] = {}
    for obj in objects:
        model = _model_of(obj.key)
        if model is None:
            continue
        try:
            record = load(model, storage.read_bytes(obj.key), obj.key)
        except RecordTooNew as err:
            problems.append(str(err))
            continue
        except ValidationError as err:
            problems.append(f"{obj.key}: not a {model.NAME} ({first_problem(err)})")
            continue
        except (OSError, ValueError, IngestError) as err:
            problems.append(f"{obj.key}: unreadable {model.NAME} ({one_line(err)})")
            continue
        if isinstance(record, QuarantineReasons):
            reasons[obj.key] = record
    return problems, reasons


def _model_of(key: str) -> type[Record] | None:
    """The model of a record :func:`other_records` reads, by its key (None: not one of them)."""
    if is_reasons(key):
        return QuarantineReasons
    if key.startswith(f"{HOLDS}/") and key.endswith(".json"):
        return HoldLifting if key.endswith(".lifted.json") else HoldRecord
    if (
        key.startswith(f"{FORGETTING}/")
        and key.count("/") == 2
        and key.endswith(("/plan.json", "/ready.json"))
    ):
        return ErasurePlan
    return None


def conflicts(reasons: dict[str, QuarantineReasons]) -> list[str]:
    """Rows quarantined as conflicts (ingest.archive.conflicts): an id archived with other content
    needs a person to decide which row is right, so verify keeps reporting it."""
    found = []
    for key, record in sorted(reasons.items()):
        clashes = {r: n for r, n in (record.reasons or {}).items() if r.startswith("conflict:")}
        if clashes:
            first = sorted(clashes)[0]
            found.append(
                f"{key.rsplit('/', 1)[0]}: {sum(clashes.values())} row(s) in conflict with "
                f"archived rows, quarantined ({first}"
                + (f"; and {len(clashes) - 1} more id(s))" if len(clashes) > 1 else ")")
            )
    return found


def check_manifest(
    name: str,
    doc: ReportManifest,
    problems: list[str],
    attachments: dict[tuple[str, str], tuple[str, int | None]],
    windows: dict[str, set[tuple[date, date]]],
) -> None:
    """Check one commit record on its own; note its attachment and window."""
    bot, files, sha, size = doc.bot_id, doc.files, doc.attachment.sha256, doc.attachment.size
    try:
        read = doc.counts["rows_read"]
        parts = [doc.counts[f"rows_{k}"] for k in ("written", "duplicate", "rejected")]
        window = doc.window
        if window is not None and window.from_ and window.to:  # an import by hand has no window
            windows[bot].add((date.fromisoformat(window.from_), date.fromisoformat(window.to)))
    except (ValueError, KeyError) as err:
        problems.append(f"{name}: unreadable manifest ({type(err).__name__}: {err})")
        return
    stem = name.rsplit("/", 1)[-1].removesuffix(".json")
    if stem != sha:
        problems.append(f"{name}: named after {stem} but its attachment sha256 is {sha}")
    if read != sum(parts):
        problems.append(
            f"{name}: counts do not add up: rows_read {read} != written {parts[0]} "
            f"+ duplicate {parts[1]} + rejected {parts[2]}"
        )
    if sum(f.rows or 0 for f in files) != parts[0]:
        problems.append(
            f"{name}: its files hold {sum(f.rows or 0 for f in files)} rows, rows_written says {parts[0]}"
        )
    attachments[(bot, sha)] = (name, size)


def check_compactions(
    compactions: list[tuple[str, CompactionBody]], snapshot: set[str], problems: list[str]
) -> set[str]:
    """Row counts of each compaction record; a replaced file the table still reads is a
    problem. Returns every replaced file (on disk until ``ingest vacuum``: not orphans)."""
    replaced_all = set()
    for name, record in compactions:
        replaced = record.replaces
        merged_rows = sum(new.rows or 0 for new in record.merged())
        replaced_rows = sum(old.rows or 0 for old in replaced)
        if replaced_rows != merged_rows:
            problems.append(
                f"{name}: the merged files hold {merged_rows} rows, the files they replaced {replaced_rows}"
            )
        for old in replaced:
            replaced_all.add(old.path)
            if old.path in snapshot:
                problems.append(f"{old.path}: replaced by {name} but still in the Delta table")
    return replaced_all


def check_row_keys(storage: Storage, dataset: str, bot_id: str, keys: list[str]) -> list[str]:
    """Report types 2-4: each (bot_id, row_key) once across the bot's files."""
    try:
        frames = [storage.scan([k]).select(pl.col(ROW_KEY), pl.lit(k).alias(_FILE)) for k in keys]
        dups = (
            pl.concat(frames)
            .group_by(ROW_KEY)
            .agg(pl.col(_FILE).unique().sort(), pl.len())
            .filter(pl.col("len") > 1)
            .collect(engine="streaming")
        )
    except (pl.exceptions.PolarsError, OSError) as err:
        return [f"{dataset}/bot_id={bot_id}: row checks failed ({type(err).__name__}: {err})"]
    return [
        f"duplicate (bot_id, row_key) for bot {bot_id} in {dataset}/: {count} copies of "
        f"{key[:12]}... in {', '.join(files)}"
        for key, files, count in dups.sort(ROW_KEY).iter_rows()
    ]


def scan(storage: Storage, keys: list[str]) -> pl.LazyFrame:
    return storage.scan(
        keys,
        hive_partitioning=True,
        include_file_paths=_FILE,
        hive_schema={"bot_id": pl.String(), "date": pl.Date()},
        extra_columns="ignore",
    )


def check_rows(storage: Storage, bot_id: str, keys: list[str]) -> list[str]:
    """Duplicate ids and rows outside their date partition, for one bot's data files."""
    want = file_schema()
    key_of = {storage.source(k): k for k in keys}  # what polars reports as the file -> key
    bad = [
        k
        for k in keys
        if any(storage.scan([k]).collect_schema().get(c) != want[c] for c in ("id", "timestamp"))
    ]
    problems = [f"{k}: id or timestamp missing or not of the canonical type" for k in bad]
    usable = [k for k in keys if k not in bad]
    if not usable:
        return problems
    dup = scan(storage, usable).select("id").group_by("id").len().filter(pl.col("len") > 1).select("id")
    wrong = (
        scan(storage, usable)
        .filter(pl.col("timestamp").dt.date() != pl.col("date"))
        .group_by(_FILE)
        .agg(pl.len(), pl.col("timestamp").min())
        .sort(_FILE)
    )
    try:
        dups, wrongs = pl.collect_all([dup, wrong], engine="streaming")
    except (pl.exceptions.PolarsError, OSError) as failure:
        before = len(usable)
        for key in list(usable):  # find the unreadable files, then run the queries without them
            try:
                scan(storage, [key]).select("id", "timestamp").collect(engine="streaming")
            except (pl.exceptions.PolarsError, OSError) as err:
                usable.remove(key)
                problems.append(f"{key}: unreadable data ({type(err).__name__})")
        if len(usable) == before:  # every file reads alone: report, do not crash
            return [*problems, f"{DATASET}/bot_id={bot_id}: row checks failed ({failure})"]
        return problems + check_rows(storage, bot_id, usable)
    for file, count, first in wrongs.iter_rows():
        problems.append(
            f"{key_of.get(file, file)}: {count} row(s) outside its date partition "
            f"(e.g. {first:%Y-%m-%dT%H:%M:%SZ})"
        )
    if dups.height:
        where = (
            scan(storage, usable)
            .filter(pl.col("id").is_in(dups["id"].implode()))
            .select("id", _FILE)
            .unique()
            .collect(engine="streaming")
        )
        groups = (
            where.group_by("id")
            .agg(pl.col(_FILE).sort())
            .group_by(_FILE)
            .agg(pl.col("id").sort())
            .sort(_FILE)
        )
        for files, ids in groups.iter_rows():
            names = ", ".join(key_of.get(f, f) for f in files)
            problems.append(
                f"duplicate (bot_id, id) for bot {bot_id}: {len(ids)} id(s) (e.g. {ids[0]}) in {names}"
            )
    return problems
