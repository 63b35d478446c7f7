"""Exactly once over a whole bot, and loud conflicts.

A row's identity is ``(bot_id, id)``, whatever its date. When a report brings an id the
bot's archive already holds (on any day), or that an earlier row of the same report had,
the two rows' *content* decides: equal -> a plain duplicate (nothing written); different
-> a **conflict**: the new row is quarantined with its reason, recorded in the state store
and the run exits 1. A forged report archived first can no longer shadow the genuine one
in silence, and the same id arriving with a timestamp on another day is never written a
second time.

Content is every schema column except provenance (``source_sha256``, ``source_kind``)
and the partition keys (``bot_id``, ``date``): :data:`CONTENT_COLUMNS`, compared through
:func:`content_hashes` (sha256 of a canonical text form, stable across versions: it is
stored).

Cost on the usual path (no id seen before): flat, whatever the archive's size. The bot's
files are listed from the table's snapshot with their ``id`` range (Delta statistics), and
only the files whose range can hold one of a batch's ids are read (the ``id`` column, once
each, 12 bytes an id with its file's index); vendor ids grow with time, so a new day's
report reads none. An id archived on any day is still found: its file's range holds it. A
report whose ids span the archive's whole range reads every file of the bot, as every
report did before (then 1.1 GiB at 10 million rows, with a path string per row; a new day's
report there now peaks near 240 MiB, bench/README.md). Each batch is looked up in the ids
read (a sorted search); only colliding rows are hashed, kept aside (:class:`Collisions`, a
temporary Parquet file) and resolved once the whole report is read.

A report held in memory (the GET path, :func:`ingest.archive.writer.save_report`) goes
through the same classes in one call, :func:`against_archive`.

Example::

    archived = ArchivedIds.load(storage, "bot-1")
    hit = archived.contains(ids)                 # numpy bool per id
    collisions.add(rows_frame, hashes, in_file)  # ... then, once the file is read:
    verdict = collisions.resolve(archived, storage, staged_files)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from ingest.archive.delta import current_table
from ingest.archive.layout import bot_prefix
from ingest.archive.snapshot import snapshot_files
from ingest.archive.storage import Storage
from ingest.parse.identity import CONTENT_COLUMNS, IN_FILE_REASON, content_hashes
from ingest.parse.schema import DATASET


@dataclass
class ArchivedIds:
    """The ids a bot's messages dataset holds (every date), read only where they can be.

    The table's snapshot gives each of the bot's data files with its ``id`` range (Delta
    statistics, exact for integers: :func:`ingest.archive.delta.file_stats`). A lookup reads
    the ``id`` column of the files whose range can hold one of the ids asked about (and of
    any file without statistics), once each, and keeps them sorted. Vendor ids grow with
    time, so a new day's report overlaps no archived file and reads none: the cost of a
    report follows the report, not the archive. An id archived on any day is still found,
    out of time order too: the file holding it has it inside its range, so it is read."""

    files: list[str] = field(default_factory=list)
    low: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # per file; unknown: any
    high: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    ranged: np.ndarray = field(default_factory=lambda: np.empty(0, bool))  # per file: has an id range
    read: np.ndarray = field(default_factory=lambda: np.empty(0, bool))  # per file: its ids are loaded
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # loaded ids, sorted
    where: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))  # index in files
    #: The messages table as read (None when there is none yet): the report's commit brings
    #: it up to date instead of opening it again (:func:`ingest.archive.delta.ensure_table`).
    table: DeltaTable | None = None
    storage: Storage | None = None

    @classmethod
    def load(cls, storage: Storage, bot_id: str) -> ArchivedIds:
        """The bot's files in the table's snapshot with their id ranges; no data read yet
        (a file a killed run published but never committed is not archived data)."""
        table = current_table(storage, DATASET)
        prefix = bot_prefix(bot_id)
        files = [f for f in snapshot_files(table, DATASET, bot_id) if f.key.startswith(prefix)]
        ranged = np.array([f.id_low is not None and f.id_high is not None for f in files], dtype=bool)
        return cls(
            files=[f.key for f in files],
            low=np.array([f.id_low if f.id_low is not None else 0 for f in files], dtype=np.int64),
            high=np.array([f.id_high if f.id_high is not None else 0 for f in files], dtype=np.int64),
            ranged=ranged,
            read=np.zeros(len(files), dtype=bool),
            table=table,
            storage=storage,
        )

    def __bool__(self) -> bool:
        """True when the bot has archived files (an id may be archived)."""
        return bool(self.files)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """True where an id is archived already (reading the files that can hold one)."""
        if not self.files or not len(ids):
            return np.zeros(len(ids), dtype=bool)
        self._read(self._candidates(ids))
        if not len(self.ids):
            return np.zeros(len(ids), dtype=bool)
        at = np.searchsorted(self.ids, ids)
        found: np.ndarray = self.ids[np.minimum(at, len(self.ids) - 1)] == ids
        return found

    def file_of(self, ids: np.ndarray) -> list[str]:
        """The archived file holding each id (all of them found by :meth:`contains`)."""
        at = np.searchsorted(self.ids, ids)
        return [self.files[i] for i in self.where[at]]

    def _candidates(self, ids: np.ndarray) -> np.ndarray:
        """Indices of the files not read yet that can hold one of ``ids``: an id inside their
        range, or no range known."""
        wanted = np.unique(ids)
        inside = np.searchsorted(wanted, self.high, "right") > np.searchsorted(wanted, self.low, "left")
        return np.flatnonzero(~self.read & (inside | ~self.ranged))

    def _read(self, chosen: np.ndarray) -> None:
        """Load the ``id`` column of the files at ``chosen`` into the sorted ids (each file's
        index alongside, 4 bytes a row: no path string per row, so even a report whose ids
        span the whole archive holds 12 bytes per archived id)."""
        if not len(chosen) or self.storage is None:
            return
        storage = self.storage
        frame = pl.concat(
            [
                storage.scan([self.files[n]]).select(pl.col("id"), pl.lit(int(n), pl.Int32).alias("_where"))
                for n in chosen
            ]
        ).collect()
        ids = np.concatenate([self.ids, frame.get_column("id").to_numpy()])
        where = np.concatenate([self.where, frame.get_column("_where").to_numpy()])
        order = np.argsort(ids, kind="stable")
        self.ids, self.where = ids[order], where[order]
        self.read[chosen] = True


@dataclass(frozen=True)
class Conflict:
    """One row refused because its id is archived (or earlier in the report) with other content."""

    bot_id: str
    id: int
    row: int  # row number in the new report
    existing_hash: str
    new_hash: str
    existing_source: str  # sha256 of the source of the row kept (or "this report")
    existing_file: str  # where the kept row is ("" when earlier in the same report)
    reason: str


@dataclass
class Resolution:
    """What the collisions turned out to be."""

    duplicates: int = 0
    conflicts: list[Conflict] = field(default_factory=list)


class Collisions:
    """Rows whose id collided (with the archive or an earlier row), kept aside in a
    temporary Parquet file (``_row``, ``id``, ``_hash``, ``_in_file`` and the raw text a
    rejected row keeps) until the whole report is read."""

    def __init__(self, storage: Storage, bot_id: str) -> None:
        self.storage = storage
        self.bot_id = bot_id
        self.rows = 0
        self._path = storage.temp("collisions.parquet", f"{uuid.uuid4().hex[:8]}-")
        self._writer: pq.ParquetWriter | None = None

    def add(self, raw: pl.DataFrame, ids: pl.Series, hashes: list[str], in_file: np.ndarray) -> None:
        """Keep colliding rows: ``raw`` is their ``_row`` and raw text (rejected-row form)."""
        if raw.height == 0:
            return
        frame = raw.with_columns(
            ids.alias("_id"),
            pl.Series("_hash", hashes, pl.String),
            pl.Series("_in_file", in_file, pl.Boolean),
        )
        table = frame.to_arrow()
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, table.schema, compression="zstd")
        self._writer.write_table(table.cast(self._writer.schema))
        self.rows += raw.height

    def resolve(self, archived: ArchivedIds, staged: list[Path]) -> Iterator[tuple[pl.DataFrame, Resolution]]:
        """Compare every kept row with the row it collided with; yields, batch by batch,
        the conflicting rows (rejected-row form, ``reason`` filled) and the counts."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        source = pq.ParquetFile(self._path)
        refs = self._references(archived, staged, source)
        for batch in source.iter_batches(batch_size=65_536):
            frame = pl.from_arrow(pa.Table.from_batches([batch]))
            assert isinstance(frame, pl.DataFrame)
            yield self._judge(frame, refs, archived)

    def _references(
        self, archived: ArchivedIds, staged: list[Path], source: pq.ParquetFile
    ) -> dict[int, tuple[str, str, str]]:
        """id -> (content hash, source sha256, file) of the row each collision is compared
        with: the archived row, or the first row of this report (in its staged files)."""
        keys = pl.from_arrow(source.read(columns=["_id", "_in_file"]))
        assert isinstance(keys, pl.DataFrame)
        refs: dict[int, tuple[str, str, str]] = {}
        hit = keys.filter(~pl.col("_in_file")).get_column("_id").unique().sort().to_numpy()
        if len(hit):
            by_file: dict[str, list[int]] = {}
            for key, value in zip(archived.file_of(hit), hit.tolist(), strict=True):
                by_file.setdefault(key, []).append(value)
            for key, values in by_file.items():
                rows = (
                    self.storage.scan([key])
                    .filter(pl.col("id").is_in(pl.Series(values, dtype=pl.Int64).implode()))
                    .select(*CONTENT_COLUMNS, "source_sha256")
                    .collect()
                )
                for value, digest, sha in zip(
                    rows.get_column("id").to_list(),
                    content_hashes(rows),
                    rows.get_column("source_sha256").to_list(),
                    strict=True,
                ):
                    refs.setdefault(value, (digest, sha or "", key))
        earlier = keys.filter(pl.col("_in_file")).get_column("_id").unique()
        if earlier.len() and staged:
            rows = (
                pl.scan_parquet(staged)
                .filter(pl.col("id").is_in(earlier.implode()))
                .select(*CONTENT_COLUMNS)
                .collect()
            )
            for value, digest in zip(rows.get_column("id").to_list(), content_hashes(rows), strict=True):
                refs.setdefault(value, (digest, "this report", ""))
        return refs

    def _judge(
        self, frame: pl.DataFrame, refs: dict[int, tuple[str, str, str]], archived: ArchivedIds
    ) -> tuple[pl.DataFrame, Resolution]:
        done = Resolution()
        reasons: list[str | None] = []
        for row, value, digest in zip(
            frame.get_column("_row").to_list(),
            frame.get_column("_id").to_list(),
            frame.get_column("_hash").to_list(),
            strict=True,
        ):
            ref = refs.get(value)
            if ref is None or ref[0] == digest:  # no reference left: the first row was rejected
                done.duplicates += 1
                reasons.append(None)
                continue
            existing_hash, sha, key = ref
            reason = (
                f"conflict: id {value} is archived with different content ({key}, source {sha[:16]})"
                if key
                else IN_FILE_REASON.format(value)
            )
            reasons.append(reason)
            done.conflicts.append(Conflict(self.bot_id, value, row, existing_hash, digest, sha, key, reason))
        bad = frame.with_columns(pl.Series("reason", reasons, pl.String)).filter(
            pl.col("reason").is_not_null()
        )
        columns = [c for c in frame.columns if c not in ("_row", "_id", "_hash", "_in_file")]
        return bad.select("_row", "reason", *columns), done

    def discard(self) -> None:
        """Remove the temporary file."""
        if self._writer is not None:
            with suppress(OSError):
                self._writer.close()
            self._writer = None
        with suppress(OSError):
            self._path.unlink(missing_ok=True)


def against_archive(
    storage: Storage,
    bot_id: str,
    archived: ArchivedIds,
    rows: pl.DataFrame,
    row_numbers: pl.Series,
    text_of: Callable[[pl.Series], pl.DataFrame],
) -> tuple[pl.Series, pl.DataFrame | None, Resolution]:
    """A report held in memory (typed ``rows``, one per id, ``row_numbers`` their numbers
    in the report) against every id the bot's archive holds, on any day (``archived``).

    Rows whose id is archived are compared as the stream compares them (:class:`Collisions`):
    same content, a duplicate; other content, a conflict. ``text_of(numbers)`` gives those
    rows' rejected-row form. Returns the rows to write (a mask over ``rows``), the
    conflicting rows in rejected-row form with their reason (None when there are none),
    and the duplicates and conflicts found."""
    hit = archived.contains(rows.get_column("id").to_numpy())
    found = Resolution()
    if not hit.any():
        return pl.Series(~hit), None, found
    colliding = rows.with_columns(row_numbers.alias("_row")).filter(pl.Series(hit))
    raw = text_of(colliding.get_column("_row"))
    colliding = raw.select("_row").join(colliding, on="_row", how="left", maintain_order="left")
    collisions = Collisions(storage, bot_id)
    refused: list[pl.DataFrame] = []
    try:
        collisions.add(raw, colliding.get_column("id"), content_hashes(colliding), np.zeros(raw.height, bool))
        for conflicting, resolution in collisions.resolve(archived, []):
            found.duplicates += resolution.duplicates
            found.conflicts.extend(resolution.conflicts)
            refused.append(conflicting)
    finally:
        collisions.discard()
    rejected = pl.concat(refused) if refused else None
    return pl.Series(~hit), rejected if rejected is not None and rejected.height else None, found


def in_report_conflicts(bot_id: str, clashes: pl.DataFrame) -> list[Conflict]:
    """The conflicts inside one report held in memory (found by
    :func:`ingest.parse.identity.in_file_conflicts`), as the stream records them."""
    if clashes.height == 0:
        return []
    return [
        Conflict(bot_id, value, row, first, digest, "this report", "", reason)
        for row, reason, value, digest, first in clashes.select(
            "_row", "reason", "id", "_hash", "_first"
        ).iter_rows()
    ]


def conflict_record(conflict: Conflict, new_source: str) -> dict[str, Any]:
    """The state store's row for a conflict (the new source's sha256 known at commit)."""
    return {
        "bot_id": conflict.bot_id,
        "row_id": conflict.id,
        "row": conflict.row,
        "existing_hash": conflict.existing_hash,
        "new_hash": conflict.new_hash,
        "existing_source": conflict.existing_source,
        "new_source": new_source,
        "existing_file": conflict.existing_file,
        "reason": conflict.reason,
    }
