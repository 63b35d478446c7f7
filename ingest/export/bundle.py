"""``ingest export``: cut a signed bundle of archived rows, streamed in bounded memory.

A bundle (a folder, or the same inside a ``.zip``)::

    data/<dataset>/<bot_id>.<csv|parquet|jsonl>   the rows, one file per bot and dataset
    SUMMARY.txt                                   what was asked and found, in plain words
    manifest.json                                 query, archive version, counts per bot and
                                                  day, each file's sha256 and size, sources
    manifest.json.sig                             Ed25519 signature of manifest.json (64 bytes)
    SHA256SUMS                                    `sha256sum -c SHA256SUMS` checks every file

Rows are read through :mod:`ingest.export.source` (the archive's one reading seam) and
written batch by batch (``collect_batches``): memory stays at a batch whatever the size.
CSV is UTF-8 with a BOM, every field quoted, formula-looking text cells neutralised
(:mod:`ingest.export.csvsafe`); Parquet and JSON Lines keep the raw values.

Subject access (``botusers``): every row whose ``botuser`` JSON has that ``id`` (Message
Data); report types 2-4 are searched in a ``botuser`` JSON column or a ``botuser_id`` /
``user_id`` column when they have one, and otherwise said to hold no per-person rows.

``on_rows(file, rows, expected)`` is told of each batch written (``expected``: the rows the
archive's records list for that file when no row filter applies, else None).

Example::

    cut_bundle(storage, Query(bots=["b1"], fmt="csv"), Path("out.zip"), key=private_key)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO, Literal

import polars as pl
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingest.archive.forget import known_bots, subject_expr
from ingest.archive.storage import Storage, sha256_file
from ingest.crashpoints import crash_point
from ingest.errors import ConfigError
from ingest.export.csvsafe import FORMULA_STARTS, PREFIX, header_line, neutralised
from ingest.export.signing import fingerprint, sign
from ingest.export.source import ALL_DATASETS, Snapshot, narrow_snapshot, open_snapshot
from ingest.export.subject import subject_copies
from ingest.export.workfolder import export_folder, sweep_killed_exports, zip_bundle
from ingest.records import BundleManifest, build, dump
from ingest.report_types import MESSAGES
from ingest.settings import bot_id_problem

Format = Literal["csv", "parquet", "jsonl"]
FORMATS: tuple[str, ...] = ("csv", "parquet", "jsonl")
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
SUMS = "SHA256SUMS"
SUMMARY = "SUMMARY.txt"
DATA = "data"
#: Rows per batch read from the archive and written to the bundle.
BATCH_ROWS = 50_000
CONVERSATION = "conversation_id"
BUNDLE_VERSION = 1


@dataclass(frozen=True)
class Query:
    """What an export asks for; empty lists mean "no restriction" (bots: every bot)."""

    bots: list[str] = field(default_factory=list)
    first: date | None = None
    last: date | None = None
    conversations: list[str] = field(default_factory=list)
    botusers: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    fmt: str = "csv"

    def chosen_datasets(self) -> list[str]:
        """The datasets asked for; by default Message Data, or every dataset for a subject."""
        if self.datasets:
            return list(dict.fromkeys(self.datasets))
        return list(ALL_DATASETS) if self.botusers else [MESSAGES]

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["format"] = body.pop("fmt")
        body["datasets"] = self.chosen_datasets()
        body["first"] = self.first.isoformat() if self.first else None
        body["last"] = self.last.isoformat() if self.last else None
        return body


@dataclass
class BundleFile:
    """One file of the bundle (path relative to the bundle, forward slashes)."""

    path: str
    sha256: str
    size: int
    rows: int | None = None
    dataset: str | None = None
    bot_id: str | None = None


@dataclass
class Cut:
    """What :func:`cut_bundle` wrote."""

    out: Path
    rows: int = 0
    files: list[BundleFile] = field(default_factory=list)
    #: dataset -> bot -> day -> rows
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    #: What was not searched and why (e.g. a dataset without a bot user column).
    notes: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    #: Subject access: their records in raw copies and quarantine (ingest.export.subject).
    copies: list[dict[str, Any]] = field(default_factory=list)
    #: Subject access: data files read, of those in the tables (the subject index chose them).
    files_read: int = 0
    files_total: int = 0


def cut_bundle(
    storage: Storage,
    query: Query,
    out: Path,
    *,
    key: Ed25519PrivateKey,
    tool: str,
    on_rows: Callable[[str, int, int | None], None] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Cut:
    """Write the bundle for ``query`` to ``out`` (a folder, or a ``.zip`` file), signed
    with ``key``. Nothing is left at ``out`` unless the whole bundle was written."""
    _check_query(query)
    if query.botusers and query.bots:  # subject access under a mistyped --bot found nothing, said nothing
        unknown = sorted(set(query.bots) - (known := known_bots(storage)))
        if unknown:
            raise ConfigError(
                f"--bot {', '.join(unknown)}: no such bot in the archive "
                f"(known: {', '.join(sorted(known)) or 'none'})"
            )
    zipped = out.suffix.lower() == ".zip"
    if out.exists() and (zipped or not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists: an export never overwrites (name a new file or an empty folder)")
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_killed_exports(out.parent)
    with export_folder(out) as work:
        files = work / "bundle"
        files.mkdir(mode=0o700)
        cut = Cut(out)
        snap = open_snapshot(storage)
        if query.botusers:  # only the files the subject index says may hold them
            cut.files_read, cut.files_total, emptied = narrow_snapshot(snap, query.botusers)
            for dataset, sample in emptied.items():  # no file to read: still say if none could hold them
                if dataset in query.chosen_datasets():
                    _filtered(storage.scan([sample], hive_partitioning=False), query, dataset, cut)
        source_rows: Counter[str] = Counter()
        for dataset in query.chosen_datasets():
            bots = query.bots or snap.bots(dataset)
            for bot in bots:
                _export_one(snap, query, dataset, bot, files, cut, source_rows, on_rows, batch_rows)
        if query.botusers:  # the stores an erasure searches, searched the same way
            for path, store, records in subject_copies(storage, query.botusers, query.bots, files, cut.notes):
                cut.files.append(_described(files, path))
                cut.copies.append({"path": path, "store": store, "records": records})
        summary = files / SUMMARY
        summary.write_text(summary_text(query, cut, snap), encoding="utf-8")
        cut.files.append(_described(files, SUMMARY))
        record = build(BundleManifest, _manifest(query, cut, snap, source_rows, key, tool))
        (files / MANIFEST).write_bytes(dump(record))  # the bytes signed next
        cut.manifest = record.model_dump(mode="json", by_alias=True, exclude_unset=True)
        (files / SIGNATURE).write_bytes(sign(key, (files / MANIFEST).read_bytes()))
        listed = [*(f.path for f in cut.files), MANIFEST, SIGNATURE]
        sums = "".join(f"{sha256_file(files / name)}  {name}\n" for name in sorted(listed))
        (files / SUMS).write_text(sums, encoding="utf-8")
        crash_point("export_before_publish")
        if zipped:
            zip_bundle(files, work / "bundle.zip", out)
        else:
            if out.exists():
                out.rmdir()  # empty, checked above
            files.rename(out)
        return cut


#: A manifest lists each data file and each source report (about 700 bytes a report):
#: 64 MiB is some 90,000 reports (ten years of daily reports of all four datasets for two
#: bots); ``verify-export`` reads no larger one, so the exporter writes none.
MAX_MANIFEST_BYTES = 64 << 20


def _check_query(query: Query) -> None:
    if query.fmt not in FORMATS:
        raise ConfigError(f"--format {query.fmt!r}: one of {', '.join(FORMATS)}")
    for dataset in query.datasets:
        if dataset not in ALL_DATASETS:
            raise ConfigError(f"--dataset {dataset!r}: one of {', '.join(ALL_DATASETS)}")
    if query.first and query.last and query.last < query.first:
        raise ConfigError(f"--to {query.last} is before --from {query.first}")
    if not query.bots and not query.botusers:
        raise ConfigError("name what to export: --bot ID (repeatable), or --botuser ID for subject access")


def _filtered(frame: pl.LazyFrame, query: Query, dataset: str, cut: Cut) -> pl.LazyFrame | None:
    """``frame`` restricted to the query; None when the dataset cannot hold what is asked."""
    columns = frame.collect_schema()
    if query.first:
        frame = frame.filter(pl.col("date") >= query.first)
    if query.last:
        frame = frame.filter(pl.col("date") <= query.last)
    if query.conversations:
        if CONVERSATION not in columns:
            _note(
                cut, f"{dataset}: no {CONVERSATION} column, so no rows of a conversation (aggregate report)"
            )
            return None
        frame = frame.filter(pl.col(CONVERSATION).is_in(query.conversations))
    if query.botusers:
        subject = subject_expr(columns.names(), [str(b) for b in query.botusers])
        if subject is None:
            _note(
                cut,
                f"{dataset}: no bot user column (botuser, botuser_id, user_id): it holds "
                "aggregate counts, not rows about one person, so nothing of the subject is in it",
            )
            return None
        frame = frame.filter(subject)
    return frame


def _note(cut: Cut, note: str) -> None:
    if note not in cut.notes:
        cut.notes.append(note)


def _export_one(
    snap: Snapshot,
    query: Query,
    dataset: str,
    bot: str,
    work: Path,
    cut: Cut,
    source_rows: Counter[str],
    on_rows: Callable[[str, int, int | None], None] | None,
    batch_rows: int,
) -> None:
    """Stream one bot's rows of one dataset into ``data/<dataset>/<bot>.<fmt>``."""
    if bot_id_problem(bot):  # a folder found in the archive becomes a file name here
        _note(cut, f"{dataset}: skipped a folder whose bot id is not safe ({bot_id_problem(bot)})")
        return
    scanned = snap.scan(dataset, [bot])
    if scanned is None:
        return
    frame = _filtered(scanned, query, dataset, cut)
    if frame is None:
        return
    name = f"{DATA}/{dataset}/{bot}.{query.fmt}"
    # Without row filters the records say how many rows will come: a bar with an end.
    filtered = query.conversations or query.botusers
    expected = None if filtered else snap.listed_rows(dataset, bot, query.first, query.last)
    if on_rows is not None:
        on_rows(f"{dataset}/{bot}", 0, expected)
    path = work / name
    days: Counter[str] = Counter()
    rows = 0
    writer: _Writer | None = None
    try:
        for batch in frame.collect_batches(chunk_size=batch_rows):
            if batch.height == 0:
                continue
            if writer is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = _Writer(path, query.fmt)
            writer.write(batch)
            rows += batch.height
            for day, n in batch.group_by("date").len().iter_rows():
                days[str(day)] += n
            if "source_sha256" in batch.columns:
                for sha, n in batch.group_by("source_sha256").len().iter_rows():
                    source_rows[str(sha)] += n
            if on_rows is not None:
                on_rows(f"{dataset}/{bot}", batch.height, expected)
    finally:
        if writer is not None:
            writer.close()
    if rows:
        described = _described(work, name)
        described.rows, described.dataset, described.bot_id = rows, dataset, bot
        cut.files.append(described)
        cut.counts.setdefault(dataset, {})[bot] = dict(sorted(days.items()))
        cut.rows += rows


class _Writer:
    """Appends batches to one bundle file in its format."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.fmt = fmt
        self.path = path
        self.parquet: pq.ParquetWriter | None = None
        self.handle: BinaryIO | None = None
        self.header = True
        if fmt != "parquet":
            self.handle = path.open("wb")
            if fmt == "csv":
                self.handle.write("\ufeff".encode())  # UTF-8 BOM: Excel reads the file as UTF-8

    def write(self, batch: pl.DataFrame) -> None:
        if self.fmt == "parquet":
            table = batch.to_arrow()
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self.parquet.write_table(table)
        elif self.fmt == "csv":
            assert self.handle is not None
            if self.header:  # written here: column names are cells too, neutralised the same
                self.handle.write(header_line(batch.columns).encode())
            neutralised(batch).write_csv(
                self.handle,
                include_header=False,
                quote_style="always",
                datetime_format="%Y-%m-%dT%H:%M:%S%.6fZ",
                line_terminator="\r\n",
            )
            self.header = False
        else:
            assert self.handle is not None
            batch.write_ndjson(self.handle)

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        if self.handle is not None:
            self.handle.close()


def _described(work: Path, name: str) -> BundleFile:
    path = work / name
    return BundleFile(name, sha256_file(path), path.stat().st_size)


def _manifest(
    query: Query, cut: Cut, snap: Snapshot, source_rows: Counter[str], key: Ed25519PrivateKey, tool: str
) -> dict[str, Any]:
    sources = []
    for sha, rows in sorted(source_rows.items()):
        record = snap.sources.get(sha)
        sources.append(
            {
                "attachment_sha256": sha,
                "rows": rows,
                **(
                    {
                        "manifest": record.manifest,
                        "bot_id": record.bot_id,
                        "dataset": record.dataset,
                        "kind": record.kind,
                        "attachment_name": record.attachment_name,
                        "email_message_id": record.email_message_id,
                        "window": record.window,
                    }
                    if record
                    else {"manifest": None}
                ),
            }
        )
    totals = {
        dataset: {bot: sum(days.values()) for bot, days in bots.items()}
        for dataset, bots in cut.counts.items()
    }
    return {
        "bundle_version": BUNDLE_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tool": tool,
        "query": query.as_json(),
        "archive": snap.version,
        "archive_problems": snap.problems,
        "rows": cut.rows,
        "totals": totals,
        "counts": cut.counts,
        "files": [{k: v for k, v in asdict(f).items() if v is not None} for f in cut.files],
        "sources": sources,
        "notes": cut.notes,
        **({"copies": cut.copies} if query.botusers else {}),
        "csv": {
            "encoding": "UTF-8 with BOM",
            "quoting": "every field",
            "neutralised": f"text cells starting with {', '.join(map(repr, FORMULA_STARTS))}, "
            "or with whitespace or NULs before '=', '+', '-' or '@', "
            f"are prefixed with {PREFIX!r} (OWASP CSV injection); Parquet and "
            "JSON Lines keep the raw value",
        }
        if query.fmt == "csv"
        else None,
        "signature": {
            "algorithm": "Ed25519",
            "file": SIGNATURE,
            "signs": MANIFEST,
            "public_key_sha256": fingerprint(key.public_key()),
        },
    }


def summary_text(query: Query, cut: Cut, snap: Snapshot) -> str:
    """The bundle's plain-language page."""
    subject = bool(query.botusers)
    lines = ["Subject access export" if subject else "Export", "=" * 21 if subject else "=" * 6, ""]
    if subject:
        who = ", ".join(query.botusers)
        lines += [
            f"This bundle holds every archived row about the chatbot user(s) {who}, across "
            f"{'the bots ' + ', '.join(query.bots) if query.bots else 'every bot in the archive'} "
            "and the datasets listed below.",
            "A chatbot user is recognised by the 'id' inside the 'botuser' column of Message Data.",
            "",
        ]
    else:
        lines += [f"This bundle holds the archived rows of {', '.join(query.bots)}.", ""]
    span = f"from {query.first or 'the first archived day'} to {query.last or 'the last archived day'}"
    lines.append(f"Period: {span}.")
    if query.conversations:
        lines.append(f"Only the conversations {', '.join(query.conversations)}.")
    lines += ["", f"In all: {cut.rows} row(s) in {sum(1 for f in cut.files if f.rows)} file(s).", ""]
    for dataset in query.chosen_datasets():
        bots = cut.counts.get(dataset, {})
        if not bots:
            lines.append(f"- {dataset}: no rows.")
        for bot, days in bots.items():
            ordered = sorted(days)
            lines.append(
                f"- {dataset}, bot {bot}: {sum(days.values())} row(s) on {len(days)} day(s), "
                f"{ordered[0]} to {ordered[-1]}, in {DATA}/{dataset}/{bot}.{query.fmt}"
            )
    if subject:
        lines += [
            "",
            "Also searched: the reports as delivered (raw copies, which repeat the rows above) and",
            "what the archive refused at intake (quarantine), in copies/, one JSON line a record:",
        ]
        lines += [f"- {c['path']}: {c['records']} record(s)" for c in cut.copies] or ["- none found."]
        if query.first or query.last:
            lines.append("(These are searched whole, whatever the period asked.)")
    if subject:
        read = f"Data files read: {cut.files_read} of {cut.files_total}"
        lines += ["", f"{read} (the subject index: the others cannot hold them)."]
    if cut.notes:
        lines += ["", "Not searched, and why:"] + [f"- {note}" for note in cut.notes]
    lines += [
        "",
        "How to read it",
        "--------------",
        f"The rows are in the folder {DATA}/, one {query.fmt.upper()} file per bot and dataset.",
    ]
    if query.fmt == "csv":
        lines.append(
            "CSV files open in a spreadsheet. A text cell that starts with = + - @ or a tab "
            "is shown with a leading ' so the spreadsheet never runs it as a formula; "
            "the ' is not part of the original value."
        )
    lines += [
        "",
        "How to check it",
        "---------------",
        "SHA256SUMS lists a fingerprint (sha256) of every file: `sha256sum -c SHA256SUMS` in this "
        "folder says OK for each file that is unchanged.",
        "manifest.json describes the export (the question asked, the archive it came from, the rows "
        "per bot and day, where each row came from) and manifest.json.sig is its Ed25519 signature. "
        "With the sender's public key: `ingest verify-export BUNDLE --public-key KEY.pub`, or "
        "`openssl pkeyutl -verify -pubin -inkey KEY.pub -rawin -in manifest.json "
        "-sigfile manifest.json.sig`.",
        "",
        f"Archive: {snap.version.get('root')}, cut from Delta table version(s) "
        f"{snap.version.get('tables')}: {snap.version.get('files')} data file(s), "
        f"{snap.version.get('records')} source record(s), "
        f"listing sha256 {snap.version.get('listing_sha256')}.",
    ]
    return "\n".join(lines) + "\n"
