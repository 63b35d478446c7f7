"""``ingest verify``: prove the archive is what its manifests say, and show what it covers.

The data checked is what readers see: each dataset's Delta table snapshot (current, or at
``--as-of`` a version or a timestamp). Problems (failures, each naming the file): a file of
the snapshot no manifest lists, or differing from its manifest (sha256, Parquet row count,
the Delta log's row count), or missing on disk; a bot user of a file the subject index
covers missing from it; a listed file not in the snapshot and not
replaced by a recorded compaction; a replaced file the table still reads; an orphan data
file on disk that no commit added (a crash between data file and commit, or a leftover
temporary file: readers globbing ``*.parquet`` see it; ``ingest vacuum`` removes it); a raw
file not hashing to its name or differing from its manifest, or with no manifest, or
missing; a duplicate ``(bot_id, id)``; a row outside its UTC date partition; an unreadable
file or table; manifest counts that do not add up; rows quarantined as conflicts (an id
archived with other content, see :mod:`ingest.archive.conflicts`). Files a compaction
replaced stay on disk until vacuum: not a problem. Coverage (days with rows, days without
rows inside the requested windows, windows not archived) is informational.
Bounded memory: 1 MiB hash blocks; row checks are lazy polars queries, streaming engine.
Example: ``report = verify_archive(Path("/data"), store); print(render_text(report))``
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from deltalake.exceptions import DeltaError

from ingest.archive import audit, holds
from ingest.archive.compact import ALL_DATASETS
from ingest.archive.delta import open_table, snapshot_files
from ingest.archive.forget import pending
from ingest.archive.layout import FORGETTING, RAW, is_data_file, is_raw, is_reasons, raw_source, salt_key
from ingest.archive.manifests import forgotten_days, listed_files, read_manifests
from ingest.archive.storage import LocalStorage, Storage, as_storage
from ingest.archive.subjects import check_archive
from ingest.errors import IngestError, one_line
from ingest.inert import inert
from ingest.ops.auditkey import SUFFIX as AUDIT_KEY_SUFFIX
from ingest.parse.reports import ROW_KEY
from ingest.parse.schema import DATASET, file_schema
from ingest.report_types import MESSAGE_REPORT_ID
from ingest.state.store import Store, WindowState

_PARTITION = re.compile(r"^bot_id=([^/]+)/date=(\d{4}-\d{2}-\d{2})/[^/]+\.parquet$")
_FILE = "_verify_file"


@dataclass
class BotCoverage:
    """What the archive holds for one bot (``messages/`` dataset)."""

    bot_id: str
    rows: int = 0
    first_day: date | None = None
    last_day: date | None = None
    days: list[date] = field(default_factory=list)  # days with at least one row, sorted
    days_without_rows: list[date] = field(default_factory=list)  # inside requested windows
    days_forgotten: list[date] = field(default_factory=list)  # emptied by an erasure or prune: no gap
    windows_not_archived: list[str] = field(default_factory=list)  # from the state store


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_archive`: problems (failures), coverage and totals."""

    root: str  # a folder or an s3:// URL
    problems: list[str] = field(default_factory=list)
    bots: dict[str, BotCoverage] = field(default_factory=dict)
    files: int = 0  # data files of the tables' snapshots
    rows: int = 0  # rows in those files (Parquet footers)
    raw_files: int = 0
    manifests: int = 0
    #: Each dataset's Delta table version verified (dataset -> version).
    tables: dict[str, int] = field(default_factory=dict)
    #: Erasures and prunes, one line each (from their records and the audit log).
    erasures: list[str] = field(default_factory=list)
    #: The audit log: its record count and the newest record's sha256 (keep it elsewhere: it
    #: shows the newest record removed or edited later).
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no integrity problem was found."""
        return not self.problems


def verify_archive(
    root: Storage | Path, store: Store | None = None, as_of: int | str | None = None
) -> VerifyReport:
    """Re-hash and cross-check the archive (a local folder or an S3 prefix) against its
    manifests. With a ``store``, its archived windows count as requested; windows not
    archived are listed. The data files checked are those of each dataset's Delta table:
    its current snapshot, or the one at ``as_of`` (a table version, or an ISO timestamp)."""
    out = as_storage(root)
    if isinstance(out, LocalStorage) and not out.root.is_dir():
        return VerifyReport(out.describe(), [f"{out.describe()}: archive root does not exist"])
    report = VerifyReport(out.describe())
    objects = out.objects("")
    on_disk = [o.key for o in objects if is_data_file(o.key)]
    snapshot = _snapshots(out, report, on_disk, as_of)
    present = set(on_disk)
    data = sorted(k for k in snapshot if k in present)  # the table reads these; the others are missing
    raw = {o.key: o.size for o in objects if is_raw(o.key)}
    report.files, report.raw_files = len(data), len(raw)
    footer_rows = _footer_rows(out, data, report.problems)
    report.rows = sum(footer_rows.values())
    report.problems.extend(
        f"{key}: {footer_rows[key]} rows, the Delta log says {rows}"
        for key, rows in sorted(snapshot.items())
        if rows is not None and key in footer_rows and footer_rows[key] != rows
    )
    attachments: dict[tuple[str, str], tuple[str, int]] = {}  # (bot, sha) -> (manifest, size)
    windows: dict[str, set[tuple[date, date]]] = defaultdict(set)
    every_record = read_manifests(out, objects)
    committed_at = _commit_versions(out, report.tables) if as_of is not None else {}
    records = [r for r in every_record if _as_of(r.doc, report.tables, as_of, committed_at)]
    report.manifests = len(records)
    for record in records:
        if record.doc is not None and not record.compaction and not record.erasure:
            _check_manifest(record.key, record.doc, report.problems, attachments, windows)
    listing = listed_files(records)
    report.problems.extend(f"{key}: unreadable manifest ({why})" for key, why in listing.unreadable)
    report.problems.extend(
        f"{path}: listed by both {first} and {second}" for path, first, second in listing.listed_twice
    )
    replaced = _check_compactions(listing.compactions, set(snapshot), report.problems)
    # At an older version, files committed later are on disk too: listed by a later record.
    later = set() if as_of is None else {p for r in every_record if r.doc for p in _paths(r.doc)}
    orphans = _uncommitted(on_disk, snapshot, replaced, set(listing.files) | later)
    report.problems.extend(problem for _, problem in orphans)
    report.problems.extend(
        f"{key}: missing data file (the Delta table reads it"
        + (f"; listed in {listing.files[key][0]})" if key in listing.files else ")")
        for key in sorted(set(snapshot) - present)
    )
    report.problems.extend(_conflicts(out, objects))
    listed = listing.files
    todo = [k for k in data if k in listed] + list(raw)  # a few threads: hashing releases the GIL
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        hashes = dict(zip(todo, pool.map(out.sha256, todo), strict=True))
    report.problems.extend(_check_data_files(data, listed, hashes, footer_rows, present, set(snapshot)))
    report.problems.extend(
        _check_raw_files(raw, attachments, hashes, listing.rewritten) if as_of is None else []
    )
    _erasures(out, report, listing.erasures)
    report.problems.extend(check_archive(out, data) if as_of is None else [])  # the subject index
    # Rows are checked in what the table reads, and in the orphans a reader globbing
    # *.parquet would see too (a duplicate there is named as such).
    orphan_keys = [key for key, _ in orphans]
    _check_partitions(
        out,
        report,
        data + orphan_keys,
        {**footer_rows, **_footer_rows(out, orphan_keys, report.problems)},
        count=set(data),
    )
    _coverage(report, windows, store, forgotten_days(listing.erasures))
    return report


def _erasures(out: Storage, report: VerifyReport, erasures: list[tuple[str, dict[str, Any]]]) -> None:
    """List each erasure and prune; check the audit log's chain, that each record has its
    audit record, that every hold file is the audit log's, and that none is left half done."""
    log = audit.records(out)
    report.problems.extend(audit.check_chain(log))
    report.problems.extend(holds.check_against_audit(out, log))
    for obj in out.objects(""):  # a state store kept inside the archive puts its key there
        if obj.key.endswith(AUDIT_KEY_SUFFIX):
            report.problems.append(
                f"{obj.key}: an audit key file in the archive: move it (and INGEST_STATE__PATH) out"
            )
    if out.exists(salt_key()):  # beside the hashes it lets any reader re-identify a subject
        report.problems.append(
            f"{salt_key()}: the audit key sits in the archive; `ingest migrate` moves it out"
        )
    if log:
        report.audit = {"records": len(log), "newest": log[-1].key, "newest_sha256": log[-1].sha256}
    audited = {str(r.doc.get("id")): r for r in log}
    for key, body in erasures:
        rows = sum(int(t.get("rows") or 0) for t in body.get("tables") or [] if isinstance(t, dict))
        copies = len(body.get("copies") or [])
        record = audited.get(str(body.get("id")))
        who = f"by {record.doc.get('actor')}: {record.doc.get('reason')}" if record else "NO AUDIT RECORD"
        report.erasures.append(
            f"{body.get('kind', 'erase')} {body.get('id')} at {body.get('at')}: {rows} row(s), "
            f"{copies} raw/quarantined file(s) rewritten ({who})"
        )
        if record is None:
            report.problems.append(f"{key}: no audit record for this {body.get('kind', 'erasure')}")
    for forget_id in pending(out):
        report.problems.append(
            f"{FORGETTING}/{forget_id}: an erasure or prune was interrupted; any writing command "
            "(ingest run, prune, erase) finishes it"
        )


def _snapshots(
    out: Storage, report: VerifyReport, on_disk: list[str], as_of: int | str | None
) -> dict[str, int | None]:
    """The data files of every dataset's table (key -> rows in the log), at ``as_of``;
    records each table's version in ``report.tables``."""
    datasets = sorted({*ALL_DATASETS, *(key.split("/", 1)[0] for key in on_disk)})
    files: dict[str, int | None] = {}
    for dataset in datasets:
        try:
            table = open_table(out, dataset, _version_arg(as_of))
        except (IngestError, ValueError, OSError, DeltaError) as err:
            report.problems.append(f"{dataset}/: cannot read its Delta table ({one_line(err)})")
            continue
        if table is None:
            if any(key.startswith(f"{dataset}/") for key in on_disk):
                report.problems.append(f"{dataset}/: data files but no Delta table ({dataset}/_delta_log)")
            continue
        report.tables[dataset] = table.version()
        files.update((f.key, f.rows) for f in snapshot_files(table, dataset))
    return files


def _version_arg(as_of: int | str | None) -> int | str | None:
    """``--as-of``: a version number, or a timestamp (RFC 3339)."""
    if isinstance(as_of, str) and as_of.isdigit():
        return int(as_of)
    return as_of


def _commit_versions(out: Storage, tables: dict[str, int]) -> dict[str, tuple[str, int]]:
    """Report sha256 -> (dataset, version of its commit), from each table's history (the
    commits' provenance): for manifests that do not say their version (migrated ones)."""
    found: dict[str, tuple[str, int]] = {}
    for dataset in tables:
        table = open_table(out, dataset)
        for info in table.history() if table is not None else []:
            sha, version = info.get("ingest.source_sha256"), info.get("version")
            if isinstance(sha, str) and isinstance(version, int):
                found.setdefault(sha, (dataset, version))
    return found


def _as_of(
    doc: dict[str, Any] | None,
    tables: dict[str, int],
    as_of: int | str | None,
    committed_at: dict[str, tuple[str, int]],
) -> bool:
    """Whether a record belongs to the snapshot verified: every record for the current one;
    at an older version, the records of the commits up to it (an unreadable one is kept)."""
    if as_of is None or doc is None:
        return True
    body = doc.get("compaction") if isinstance(doc.get("compaction"), dict) else doc.get("delta")
    if not isinstance(body, dict) or not isinstance(body.get("version"), int):
        attachment = doc.get("attachment")
        sha = attachment.get("sha256") if isinstance(attachment, dict) else None
        if isinstance(sha, str) and sha in committed_at:  # a migrated manifest: its commit says
            dataset, at = committed_at[sha]
            return dataset in tables and at <= tables[dataset]
        return True  # a record no commit names (an old compaction's): kept
    table = body.get("dataset", body.get("table"))
    return table in tables and int(body["version"]) <= tables[table]


def _paths(doc: dict[str, Any]) -> list[str]:
    """Every data file a record names (a manifest's files; a compaction's files and replaced)."""
    nested = doc.get("compaction")
    body: dict[str, Any] = nested if isinstance(nested, dict) else doc
    entries = [*(body.get("files") or []), *(body.get("replaces") or []), body.get("file")]
    return [str(e.get("path")) for e in entries if isinstance(e, dict)]


def _uncommitted(
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


def _footer_rows(out: Storage, data: list[str], problems: list[str]) -> dict[str, int]:
    """num_rows of every readable data file; an unreadable footer is a problem."""
    rows: dict[str, int] = {}
    for key in data:
        try:
            rows[key] = out.parquet_rows(key)
        except Exception as err:  # noqa: BLE001 - any reader error means an unreadable file
            problems.append(f"{key}: unreadable Parquet footer ({type(err).__name__})")
    return rows


def _check_data_files(
    data: list[str],
    listed: dict[str, tuple[str, dict[str, Any]]],
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
        if hashes[name] != entry.get("sha256"):
            problems.append(f"{name}: sha256 differs from {manifest} (data file changed)")
        if name in footer_rows and footer_rows[name] != entry.get("rows"):
            problems.append(f"{name}: {footer_rows[name]} rows, {manifest} says {entry.get('rows')}")
    return problems


def _check_raw_files(
    raw: dict[str, int],
    attachments: dict[tuple[str, str], tuple[str, int]],
    hashes: dict[str, str | None],
    rewritten: dict[str, tuple[str, dict[str, Any]]],
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
            if hashes[name] != entry.get("new_sha256"):
                problems.append(f"{name}: raw file changed, its sha256 is not the one {record} gives")
            elif entry.get("size") != size:
                problems.append(f"{name}: size {size}, {record} says {entry.get('size')}")
            if source not in attachments:
                problems.append(f"{name}: raw file without a manifest")
            continue
        if hashes[name] != sha:
            problems.append(f"{name}: raw file changed, its sha256 is not its name")
        if source not in attachments:
            problems.append(f"{name}: raw file without a manifest")
        elif attachments[source][1] != size:
            problems.append(f"{name}: size {size}, {attachments[source][0]} says {attachments[source][1]}")
    removed = {raw_source(k) for k, (_, e) in rewritten.items() if e.get("removed") and is_raw(k)}
    for (bot_id, sha), (manifest, _) in sorted(attachments.items()):
        if (bot_id, sha) not in seen and (bot_id, sha) not in removed:
            problems.append(f"{RAW}/bot_id={bot_id}/{sha}.*: missing raw file (listed in {manifest})")
    return problems


def _check_partitions(
    out: Storage,
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
        report.problems.extend(_check_rows(out, bot_id, keys))
    for (dataset, bot_id), keys in sorted(others.items()):
        report.problems.extend(_check_row_keys(out, dataset, bot_id, keys))


def _conflicts(out: Storage, objects: list[Any]) -> list[str]:
    """Rows quarantined as conflicts (ingest.archive.conflicts): an id archived with other content
    needs a person to decide which row is right, so verify keeps reporting it."""
    found = []
    for obj in objects:
        if not is_reasons(obj.key):
            continue
        try:
            reasons = json.loads(out.read_bytes(obj.key)).get("reasons", {})
        except (OSError, ValueError, AttributeError):
            continue  # a whole-file quarantine's reason.json has no per-row reasons
        clashes = {r: n for r, n in reasons.items() if isinstance(r, str) and r.startswith("conflict:")}
        if clashes:
            first = sorted(clashes)[0]
            found.append(
                f"{obj.key.rsplit('/', 1)[0]}: {sum(clashes.values())} row(s) in conflict with "
                f"archived rows, quarantined ({first}"
                + (f"; and {len(clashes) - 1} more id(s))" if len(clashes) > 1 else ")")
            )
    return found


def _check_manifest(
    name: str,
    doc: dict[str, Any],
    problems: list[str],
    attachments: dict[tuple[str, str], tuple[str, int]],
    windows: dict[str, set[tuple[date, date]]],
) -> None:
    """Check one commit record on its own; note its attachment and window."""
    try:
        bot, files, sha, size = (
            doc["bot_id"],
            doc["files"],
            doc["attachment"]["sha256"],
            doc["attachment"]["size"],
        )
        read = doc["counts"]["rows_read"]
        parts = [doc["counts"][f"rows_{k}"] for k in ("written", "duplicate", "rejected")]
        window = doc.get("window") or {}
        if window.get("from") and window.get("to"):  # an import by hand has no window
            windows[bot].add((date.fromisoformat(window["from"]), date.fromisoformat(window["to"])))
    except (ValueError, KeyError, TypeError) as err:
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
    if sum(f.get("rows", 0) for f in files) != parts[0]:
        problems.append(
            f"{name}: its files hold {sum(f.get('rows', 0) for f in files)} rows, "
            f"rows_written says {parts[0]}"
        )
    attachments[(bot, sha)] = (name, size)


def _check_compactions(
    compactions: list[tuple[str, dict[str, Any]]], snapshot: set[str], problems: list[str]
) -> set[str]:
    """Row counts of each compaction record; a replaced file the table still reads is a
    problem. Returns every replaced file (on disk until ``ingest vacuum``: not orphans)."""
    replaced_all = set()
    for name, record in compactions:
        try:
            merged = record["files"] if "files" in record else [record["file"]]
            replaced = record["replaces"]
            merged_rows = sum(new["rows"] for new in merged)
            replaced_rows = sum(old["rows"] or 0 for old in replaced)
        except (KeyError, TypeError):
            continue  # listed_files reported it
        if replaced_rows != merged_rows:
            problems.append(
                f"{name}: the merged files hold {merged_rows} rows, the files they replaced {replaced_rows}"
            )
        for old in replaced:
            replaced_all.add(old["path"])
            if old["path"] in snapshot:
                problems.append(f"{old['path']}: replaced by {name} but still in the Delta table")
    return replaced_all


def _check_row_keys(out: Storage, dataset: str, bot_id: str, keys: list[str]) -> list[str]:
    """Report types 2-4: each (bot_id, row_key) once across the bot's files."""
    try:
        frames = [out.scan([k]).select(pl.col(ROW_KEY), pl.lit(k).alias(_FILE)) for k in keys]
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


def _scan(out: Storage, keys: list[str]) -> pl.LazyFrame:
    return out.scan(
        keys,
        hive_partitioning=True,
        include_file_paths=_FILE,
        hive_schema={"bot_id": pl.String(), "date": pl.Date()},
        extra_columns="ignore",
    )


def _check_rows(out: Storage, bot_id: str, keys: list[str]) -> list[str]:
    """Duplicate ids and rows outside their date partition, for one bot's data files."""
    want = file_schema()
    key_of = {out.source(k): k for k in keys}  # what polars reports as the file -> key
    bad = [
        k for k in keys if any(out.scan([k]).collect_schema().get(c) != want[c] for c in ("id", "timestamp"))
    ]
    problems = [f"{k}: id or timestamp missing or not of the canonical type" for k in bad]
    usable = [k for k in keys if k not in bad]
    if not usable:
        return problems
    dup = _scan(out, usable).select("id").group_by("id").len().filter(pl.col("len") > 1).select("id")
    wrong = (
        _scan(out, usable)
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
                _scan(out, [key]).select("id", "timestamp").collect(engine="streaming")
            except (pl.exceptions.PolarsError, OSError) as err:
                usable.remove(key)
                problems.append(f"{key}: unreadable data ({type(err).__name__})")
        if len(usable) == before:  # every file reads alone: report, do not crash
            return [*problems, f"{DATASET}/bot_id={bot_id}: row checks failed ({failure})"]
        return problems + _check_rows(out, bot_id, usable)
    for file, count, first in wrongs.iter_rows():
        problems.append(
            f"{key_of.get(file, file)}: {count} row(s) outside its date partition "
            f"(e.g. {first:%Y-%m-%dT%H:%M:%SZ})"
        )
    if dups.height:
        where = (
            _scan(out, usable)
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


def _coverage(
    report: VerifyReport,
    windows: dict[str, set[tuple[date, date]]],
    store: Store | None,
    forgotten: dict[str, set[date]] | None = None,
) -> None:
    """Fill each bot's days with rows, days without rows inside windows (a day an erasure or
    prune emptied is listed as such, not as a gap), open windows."""
    if store is not None:
        for window in store.windows():
            if window.report_id != MESSAGE_REPORT_ID:
                continue
            bot = report.bots.setdefault(window.bot_id, BotCoverage(window.bot_id))
            if window.state is WindowState.ARCHIVED:
                windows[window.bot_id].add((window.from_date, window.to_date))
            elif window.state is not WindowState.SPLIT:  # a split window lives on as its halves
                bot.windows_not_archived.append(f"{window.from_date}..{window.to_date}: {window.state.value}")
    for bot_id in {*report.bots, *windows, *(forgotten or {})}:
        bot = report.bots.setdefault(bot_id, BotCoverage(bot_id))
        bot.days = sorted(set(bot.days))
        bot.first_day, bot.last_day = (bot.days[0], bot.days[-1]) if bot.days else (None, None)
        requested = {
            first + timedelta(days=n)
            for first, last in windows.get(bot_id, ())
            for n in range((last - first).days + 1)
        }
        emptied = (forgotten or {}).get(bot_id, set()) - set(bot.days)
        bot.days_forgotten = sorted(emptied)
        bot.days_without_rows = sorted(requested - set(bot.days) - emptied)
    report.bots = dict(sorted(report.bots.items()))


def _ranges(days: list[date]) -> list[str]:
    """Sorted days as compact ranges: ["2024-01-01..2024-01-03", "2024-01-05"]."""
    out: list[list[date]] = []
    for day in days:
        if out and day - out[-1][1] == timedelta(days=1):
            out[-1][1] = day
        else:
            out.append([day, day])
    return [f"{a}" if a == b else f"{a}..{b}" for a, b in out]


def to_json(report: VerifyReport) -> str:
    """The report as indented JSON text (``ingest verify --json``)."""
    bots = [
        {
            "bot_id": b.bot_id,
            "rows": b.rows,
            "first_day": b.first_day,
            "last_day": b.last_day,
            "days_with_rows": len(b.days),
            "covered": _ranges(b.days),
            "days_without_rows": b.days_without_rows,
            "days_erased_or_pruned": _ranges(b.days_forgotten),
            "windows_not_archived": b.windows_not_archived,
        }
        for b in report.bots.values()
    ]
    totals = {
        "files": report.files,
        "rows": report.rows,
        "raw_files": report.raw_files,
        "manifests": report.manifests,
    }
    tables = {name: {"version": version} for name, version in report.tables.items()}
    return json.dumps(
        {
            "root": str(report.root),
            "ok": report.ok,
            "totals": totals,
            "tables": tables,
            "bots": bots,
            "erasures": report.erasures,
            "audit": report.audit,
            "problems": report.problems,
        },
        indent=2,
        default=str,
    )


def render_text(report: VerifyReport) -> str:
    """A few lines per bot, then the problems, for a person."""
    lines = [
        f"archive {report.root}: {report.files} data files, {report.rows} rows, "
        f"{report.raw_files} raw files, {report.manifests} manifests"
    ]
    if report.tables:
        lines.append(
            "Delta tables: " + ", ".join(f"{name} v{version}" for name, version in report.tables.items())
        )
    for bot in report.bots.values():
        span = f"{bot.first_day}..{bot.last_day}" if bot.days else "no rows"
        lines.append(f"bot {bot.bot_id}: {span}, {len(bot.days)} days with rows, {bot.rows} rows")
        if bot.days_without_rows:
            lines.append(
                f"  days without rows inside archived windows ({len(bot.days_without_rows)}): "
                + ", ".join(_ranges(bot.days_without_rows))
            )
        if bot.days_forgotten:
            lines.append(
                f"  days emptied by an erasure or prune ({len(bot.days_forgotten)}): "
                + ", ".join(_ranges(bot.days_forgotten))
            )
        if bot.windows_not_archived:
            lines.append("  windows not archived: " + ", ".join(bot.windows_not_archived))
    lines.extend(f"erasure: {line}" for line in report.erasures)
    if report.audit:
        lines.append(
            f"audit log: {report.audit['records']} record(s), newest {report.audit['newest']} "
            f"sha256 {report.audit['newest_sha256']}"
        )
    lines.append(
        f"verify: {len(report.problems)} problem(s)"
        if report.problems
        else "verify: OK, every file matches its manifest"
    )
    # Folder and file names come from the archive as found: shown inert (no control characters).
    return "\n".join(
        inert(line, markup=False) for line in [*lines, *(f"  - {problem}" for problem in report.problems)]
    )
