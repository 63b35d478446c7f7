"""The subject index: which data files hold a bot user, so subject access and erasure read
only those files, not the whole archive.

::

    subjects/<dataset>/bot_id=<bot>/covered/<tag>.parquet       ``file``, ``size``, ``buckets`` written
    subjects/<dataset>/bot_id=<bot>/bucket=<NN>/<tag>.parquet   columns ``subject``, ``file``

A data file's key never changes content (files are published once; an erasure or a
compaction writes new keys), so an entry "subject S is in file F" stays true for as long
as F is in the table. Every reader therefore trusts the index only for what it covers and
reads the rest directly (:func:`files_to_read`): the files to read for a subject are those
of the table's snapshot the index names for them, plus every snapshot file the index does
not cover. A file is covered only as the index saw it: at the size indexed (the same key
in another archive of the same reports holds other rows) and with the bucket parts its
covered part wrote present (:func:`_trusted`); an incomplete or foreign index is read
around. Entries of a file no longer in the snapshot (compacted, erased, pruned) are
ignored. A crash between the data commit and the index write, a compaction, an erasure
rewrite, a prune or a ``resolve`` can only make a search slower, never miss a row; an
unreadable index part makes it read everything.

Written after each report's Delta commit (:func:`index_files`, named after what it covers:
a replay writes the same parts), brought up to date and merged into one part per bucket by
compaction, erasure, prune and ``ingest migrate`` (:func:`refresh`): a refresh drops the
entries of files that left the table, which is how an erased subject's id leaves the index.
A subject is any value :func:`ingest.archive.forget.subject_expr` can match: the ``id`` of
a ``botuser`` JSON object (every ``"id"`` written in it), a ``botuser_id`` / ``user_id``
cell, the same inside ``extra``; a superset is harmless (a file read for nothing).

Example::

    read = files_to_read(storage, "messages", "bot-1", snapshot_keys, ["4242"])
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.archive.layout import subjects_bucket_key, subjects_covered_key, subjects_prefix
from ingest.archive.storage import Storage
from ingest.errors import OutputError


class Held(Protocol):
    """A snapshot file as the erasure plan lists them: its key, bot and size."""

    @property
    def key(self) -> str: ...

    @property
    def bot_id(self) -> str: ...

    @property
    def size(self) -> int: ...


T = TypeVar("T", bound=Held)

#: Hash buckets of the subject ids per bot and dataset: a lookup reads one.
BUCKETS = 16
#: A bot's index is merged into one part per bucket once it has more parts than this
#: (one a report): a lookup then lists and reads a bounded number of small files.
MERGE_AFTER = 64
_VALUE = "_subject"
_PATTERN = r'"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*)'


def bucket(subject: str) -> int:
    """The bucket of a subject id (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(subject.encode()).digest()[:4], "big") % BUCKETS


def _values(names: Iterable[str]) -> list[pl.Expr]:
    """Expressions giving each row's candidate subject ids, as lists of strings (JSON
    string tokens still quoted: decoded in :func:`_decode`)."""
    from ingest.archive.forget_selection import EXTRA, EXTRA_BOTUSERS, SUBJECT_ID, is_subject_json

    names = set(names)
    found: list[pl.Expr] = []
    for column in sorted(c for c in names if is_subject_json(c)):
        found.append(pl.concat_list(pl.col(column).str.json_path_match("$.id")))
        # fill_null: an all-null list column breaks concat_list (a polars panic, 1.x).
        tokens = pl.col(column).fill_null("").str.extract_all(_PATTERN)
        found.append(tokens.list.eval(pl.element().str.replace(r'^"id"\s*:\s*', "")))
    found += [pl.concat_list(pl.col(c).cast(pl.String)) for c in SUBJECT_ID if c in names]
    if EXTRA in names:
        extra = pl.col(EXTRA)
        found += [pl.concat_list(extra.str.json_path_match(f"$.{c}")) for c in SUBJECT_ID]
        found += [
            pl.concat_list(extra.str.json_path_match(f"$.botuser_duplicated_{n}").str.json_path_match("$.id"))
            for n in range(EXTRA_BOTUSERS)
        ]
    return found


def _decode(value: str) -> list[str]:
    """A candidate as the ids it can match: a quoted JSON string token decoded (and kept as
    written: a superset is harmless), anything else as it is."""
    if value.startswith('"'):
        try:
            decoded = json.loads(value)
        except ValueError:
            return [value]
        return [decoded, value] if isinstance(decoded, str) else [value]
    return [value]


def storage_scan(storage: Storage, key: str) -> pl.LazyFrame:
    """One data file, lazily (no partition columns from its path)."""
    return storage.scan([key], hive_partitioning=False)


def pairs_in(storage: Storage, dataset: str, keys: list[str]) -> pl.DataFrame:
    """The (``subject``, ``file``) pairs of these files, once each. Read a file at a time:
    memory is one file's pairs (a 1 GB report's 90 files in one query held every row's
    candidates with its path: +140 MiB), and a typed dataset's files may differ by a column."""
    frames = [_EMPTY]
    for key in keys:
        frame = storage_scan(storage, key)
        values = _values(frame.collect_schema().names())
        if not values:
            continue
        value = pl.col(_VALUE)
        # A quoted token without escapes is its text between the quotes: decoded here, in
        # bulk; the few with escapes are decoded by json below (:func:`_decode`).
        plain = value.str.starts_with('"') & ~value.str.contains("\\", literal=True)
        found = (
            frame.select(pl.concat_list(values).alias(_VALUE))
            .collect()  # one file: its candidate lists, in memory
            .get_column(_VALUE)
            .explode()
            .drop_nulls()
            .unique()
            .to_frame()
            .select(pl.when(plain).then(value.str.slice(1, value.str.len_chars() - 2)).otherwise(value))
            .get_column(_VALUE)
            .unique()
        )
        pairs = pl.DataFrame(
            {"subject": found, "file": pl.repeat(key, len(found), eager=True, dtype=pl.String)}
        )
        escaped = found.filter(found.str.starts_with('"')).to_list()
        decoded = [(d, key) for s in escaped for d in _decode(s)]
        frames += [pairs, pl.DataFrame(decoded, schema=_EMPTY.schema, orient="row")]
    return pl.concat(frames).unique()


_EMPTY = pl.DataFrame(schema={"subject": pl.String, "file": pl.String})


def subjects_in(storage: Storage, dataset: str, keys: list[str]) -> dict[str, set[str]]:
    """Each file's subject ids (file key -> ids; a file without any maps to an empty set)."""
    found: dict[str, set[str]] = {key: set() for key in keys}
    for subject, key in pairs_in(storage, dataset, keys).iter_rows():
        found.setdefault(key, set()).add(subject)
    return found


def _tag(keys: Iterable[str], kind: str) -> str:
    """A part's name: the hash of the files it covers (a replay writes the same name)."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    return f"{kind}-{digest}"


def _write_part(storage: Storage, key: str, table: pa.Table) -> None:
    """Publish a small Parquet part once (an existing one, named after the same content, stays)."""
    if storage.exists(key):
        return
    tmp = storage.temp(key.rsplit("/", 1)[-1])
    try:
        pq.write_table(table, tmp, compression="zstd")
        storage.publish(tmp, key)
    except OSError as err:
        raise OutputError(
            f"cannot write {storage.describe(key)}: {err.strerror or err}", hint="INGEST_OUTPUT__ROOT"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _bucketed(pairs: pl.DataFrame) -> pl.DataFrame:
    """``pairs`` with each subject's :func:`bucket` (hashed once per distinct subject)."""
    subjects = pairs.get_column("subject").unique()
    numbers = pl.DataFrame(
        {"subject": subjects, "bucket": [bucket(s) for s in subjects.to_list()]},
        schema={"subject": pl.String, "bucket": pl.Int64},
    )
    return pairs.join(numbers, on="subject", how="left")


def _write(
    storage: Storage, dataset: str, bot_id: str, pairs: pl.DataFrame, covered: Mapping[str, int], tag: str
) -> list[str]:
    """Write the entries ``pairs`` (bucket parts first), then the ``covered`` part: a file is
    covered only once its entries are durable. The covered part records what it relies on:
    each file's size (a file of the same key but other content, as in another archive of the
    same reports, is then not covered) and the buckets whose parts it wrote (a lost bucket
    part uncovers its files). Returns the keys written."""
    written, numbers = [], []
    for (number,), part in sorted(_bucketed(pairs).partition_by("bucket", as_dict=True).items()):
        key = subjects_bucket_key(dataset, bot_id, int(number), tag)
        _write_part(storage, key, part.select("subject", "file").sort("subject", "file").to_arrow())
        written.append(key)
        numbers.append(int(number))
    key = subjects_covered_key(dataset, bot_id, tag)
    files = sorted(covered)
    # Through polars: pyarrow converting a Python list imports pandas (0.3-0.7 s of an import).
    record = pl.DataFrame(
        {"file": files, "size": [covered[f] for f in files], "buckets": [numbers] * len(files)},
        schema=_COVERED,
    )
    _write_part(storage, key, record.to_arrow())
    return [*written, key]


_COVERED = pl.Schema([("file", pl.String), ("size", pl.Int64), ("buckets", pl.List(pl.Int64))])


def _stored_sizes(storage: Storage, keys: list[str]) -> dict[str, int]:
    """The sizes of these just-published files, as stored (one listing per folder)."""
    sizes: dict[str, int] = {}
    for folder in sorted({k.rsplit("/", 1)[0] + "/" for k in keys}):
        sizes.update((o.key, o.size) for o in storage.objects(folder))
    return {k: sizes[k] for k in keys if k in sizes}


def _sizes(
    storage: Storage, dataset: str, bot_id: str, snapshot: list[str] | Mapping[str, int]
) -> dict[str, int]:
    """``snapshot`` as data file key -> size: given, or (keys only) the table's add actions'
    sizes now (a key the table no longer lists gets -1: never covered, read directly)."""
    if isinstance(snapshot, Mapping):
        return dict(snapshot)
    from ingest.archive.delta import open_table
    from ingest.archive.snapshot import snapshot_files

    now = {f.key: f.size for f in snapshot_files(open_table(storage, dataset), dataset, bot_id)}
    return {k: now.get(k, -1) for k in snapshot}


def index_files(storage: Storage, dataset: str, bot_id: str, keys: list[str]) -> None:
    """Index a report's data files, just committed (idempotent: the part is named after
    them); merge the bot's index when it has grown many parts."""
    if not keys:
        return
    _write(
        storage,
        dataset,
        bot_id,
        pairs_in(storage, dataset, keys),
        _stored_sizes(storage, keys),
        _tag(keys, "r"),
    )
    if len(storage.objects(subjects_prefix(dataset, bot_id) + "covered/")) > MERGE_AFTER:
        refresh(storage, dataset, bot_id, None)


def _parts(storage: Storage, dataset: str, bot_id: str, kind: str) -> list[str]:
    return [o.key for o in storage.objects(f"{subjects_prefix(dataset, bot_id)}{kind}/")]


def _coverage(storage: Storage, dataset: str, bot_id: str) -> pl.DataFrame:
    """Every covered part's rows: ``file``, ``size``, ``buckets`` and the part's ``tag``.
    Raises what reading a part raises (one made before sizes were recorded among them)."""
    parts = _parts(storage, dataset, bot_id, "covered")
    if not parts:
        return pl.DataFrame(schema=pl.Schema([*_COVERED.items(), ("tag", pl.String)]))
    frame = storage.scan(parts, include_file_paths="_part").select(*_COVERED, "_part").collect()
    tags = {storage.source(k): k.rsplit("/", 1)[-1].removesuffix(".parquet") for k in parts}
    return frame.with_columns(pl.col("_part").replace_strict(tags, default=None).alias("tag")).drop("_part")


def covered_files(storage: Storage, dataset: str, bot_id: str) -> set[str]:
    """The data files the bot's index lists as covered (whatever their size). Raises what
    reading a part raises."""
    return set(_coverage(storage, dataset, bot_id)["file"].to_list())


def _trusted(
    storage: Storage, dataset: str, bot_id: str, sizes: Mapping[str, int], numbers: Iterable[int]
) -> tuple[set[str], list[str]]:
    """The files of ``sizes`` the index covers for a lookup of these buckets, and why others
    it lists are not: a file is covered only when its size is the one indexed (else it is
    another file under the same key: a foreign or stale index) and every bucket part of
    ``numbers`` its covered part says it wrote is present (else that part was lost)."""
    cover = _coverage(storage, dataset, bot_id)
    numbers = set(numbers)
    present = {k for n in numbers for k in _parts(storage, dataset, bot_id, f"bucket={n:02d}")}
    trusted: set[str] = set()
    problems: list[str] = []
    lost: dict[str, str] = {}
    for key, size, written, tag in cover.iter_rows():
        if key not in sizes:
            continue
        if size != sizes[key]:
            problems.append(f"{key}: its size differs from the one the subject index covers")
            continue
        if tag not in lost:
            gone = [
                n
                for n in written
                if n in numbers and subjects_bucket_key(dataset, bot_id, n, tag) not in present
            ]
            lost[tag] = subjects_bucket_key(dataset, bot_id, gone[0], tag) if gone else ""
        if lost[tag]:
            problems.append(f"{key}: covered by a subject index part whose {lost[tag]} is missing")
            continue
        trusted.add(key)
    return trusted, problems


def entries(storage: Storage, dataset: str, bot_id: str, ids: list[str] | None = None) -> pl.DataFrame:
    """The index's (subject, file) entries of these subjects (None: every one). Raises what
    reading a part raises."""
    numbers = range(BUCKETS) if ids is None else sorted({bucket(i) for i in ids})
    parts = [k for n in numbers for k in _parts(storage, dataset, bot_id, f"bucket={n:02d}")]
    if not parts:
        return _EMPTY
    frame = storage.scan(parts).select("subject", "file")
    return (frame if ids is None else frame.filter(pl.col("subject").is_in(ids))).collect()


def files_to_read(
    storage: Storage, dataset: str, bot_id: str, snapshot: list[str] | Mapping[str, int], ids: list[str]
) -> list[str]:
    """The files of ``snapshot`` (one bot's data files as the table lists them now: keys, or
    key -> size) that may hold rows of these subjects: those the index names for them, and
    every file it does not cover (:func:`_trusted`). An index that cannot be read gives every
    file: slower, never wrong."""
    try:
        sizes = _sizes(storage, dataset, bot_id, snapshot)
        covered, _ = _trusted(storage, dataset, bot_id, sizes, {bucket(i) for i in ids})
        named = set(entries(storage, dataset, bot_id, list(ids))["file"].to_list())
    except Exception:  # noqa: BLE001 - any failure of the index: read every file instead
        return list(snapshot)
    return [key for key in snapshot if key not in covered or key in named]


def refresh(
    storage: Storage,
    dataset: str,
    bot_id: str,
    snapshot: list[str] | Mapping[str, int] | None,
    *,
    rebuild: bool = False,
) -> int:
    """Bring a bot's index up to date with ``snapshot`` (its data files now, keys or key ->
    size; None: read from the table) in one part per bucket: entries of files that left the
    table dropped, files not yet covered (:func:`_trusted`) read and indexed; the old parts
    removed after the new ones are durable. Bucket by bucket: kept entries are in their
    bucket already (only new ones are hashed), and memory holds one bucket. Returns how many
    data files were read. Safe to run again at any point; an unreadable part is rebuilt from
    the data, and ``rebuild`` (``ingest migrate`` after :func:`check` found a problem)
    rebuilds every entry from the data, under new part names."""
    if snapshot is None:
        from ingest.archive.delta import open_table
        from ingest.archive.snapshot import snapshot_files

        snapshot = {f.key: f.size for f in snapshot_files(open_table(storage, dataset), dataset, bot_id)}
    sizes = _sizes(storage, dataset, bot_id, snapshot)
    keep = sorted(sizes)
    old = [o.key for o in storage.objects(subjects_prefix(dataset, bot_id))]
    try:
        if rebuild:
            raise ValueError("rebuild")
        still = sorted(_trusted(storage, dataset, bot_id, sizes, range(BUCKETS))[0])
        for number in range(BUCKETS):  # every part readable, or none trusted
            parts = _parts(storage, dataset, bot_id, f"bucket={number:02d}")
            if parts:
                storage.scan(parts).select("subject", "file").head(0).collect()
    except Exception:  # noqa: BLE001 - an unreadable part: every file read again
        still = []
        # Named after the parts it replaces too: a damaged part named after these same files
        # (an earlier merge's) would otherwise be taken as written and kept, unreadable.
        keep_tag = [*keep, *old]
    else:
        keep_tag = keep
    missing = sorted(set(keep) - set(still))
    new = _bucketed(pairs_in(storage, dataset, missing))
    written, numbers = [], []
    tag = _tag(keep_tag, "m")
    for number in range(BUCKETS) if keep else []:
        parts = _parts(storage, dataset, bot_id, f"bucket={number:02d}") if still else []
        frames = [new.filter(pl.col("bucket") == number).select("subject", "file")]
        if parts:
            frames.append(
                storage.scan(parts).select("subject", "file").filter(pl.col("file").is_in(still)).collect()
            )
        pairs = pl.concat(frames).unique()
        if pairs.height:
            key = subjects_bucket_key(dataset, bot_id, number, tag)
            _write_part(storage, key, pairs.sort("subject", "file").to_arrow())
            written.append(key)
            numbers.append(number)
    if keep:
        written.append(subjects_covered_key(dataset, bot_id, tag))
        record = {"file": keep, "size": [sizes[k] for k in keep], "buckets": [numbers] * len(keep)}
        _write_part(storage, written[-1], pl.DataFrame(record, schema=_COVERED).to_arrow())
    for key in old:
        if key not in written:
            storage.delete(key)
    storage.purge_old_versions(subjects_prefix(dataset, bot_id))
    return len(missing)


def check(storage: Storage, dataset: str, bot_id: str, snapshot: list[str] | Mapping[str, int]) -> list[str]:
    """``verify``'s check of a bot's index: every part readable, every covered file of the
    snapshot the one indexed (its size) with its bucket parts present, and every subject of
    it indexed (a file not covered is read directly by every search: not a problem). Entries
    of files no longer in the table are tolerated (readers ignore them; the next compaction,
    erasure or migrate drops them)."""
    fix = "`ingest migrate` rebuilds it"
    try:
        sizes = _sizes(storage, dataset, bot_id, snapshot)
        covered, problems = _trusted(storage, dataset, bot_id, sizes, range(BUCKETS))
        indexed = entries(storage, dataset, bot_id)
    except Exception as err:  # noqa: BLE001 - named, not raised: verify lists every problem
        where = subjects_prefix(dataset, bot_id)
        return [f"{where}: unreadable subject index ({type(err).__name__}): {fix}"]
    absent = _readable_pairs(storage, dataset, sorted(covered)).join(
        indexed, on=["subject", "file"], how="anti"
    )
    return [f"{p} ({fix})" for p in problems] + [
        f"{key}: {n} bot user(s) in it missing from the subject index ({fix})"
        for key, n in sorted(absent.group_by("file").len().iter_rows())
    ]


def _readable_pairs(storage: Storage, dataset: str, keys: list[str]) -> pl.DataFrame:
    """:func:`pairs_in`, leaving out a file that cannot be read (verify names it already)."""
    try:
        return pairs_in(storage, dataset, keys)
    except Exception:  # noqa: BLE001 - one damaged file: the others are still checked
        frames = [_EMPTY]
        for key in keys:
            try:
                frames.append(pairs_in(storage, dataset, [key]))
            except Exception:  # noqa: BLE001, S112 - unreadable: named by verify's own checks
                continue
        return pl.concat(frames)


def narrow(
    storage: Storage, dataset: str, files: list[T], selection: object, meta: dict[str, Any]
) -> list[T]:
    """An erasure's candidate files (snapshot files, with ``key`` and ``bot_id``) narrowed by
    the index to those that may hold its subjects; ``meta`` counts the data files read and
    in all (``data_files_read``, ``data_files``: what the plan shows). A selection that is
    not of subjects (a prune) reads every file it chose."""
    ids = getattr(selection, "ids", None)
    if not ids:
        return files
    by_bot: dict[str, list[T]] = {}
    for f in files:
        by_bot.setdefault(f.bot_id, []).append(f)
    chosen: list[T] = []
    for bot_id, held in sorted(by_bot.items()):
        read = set(files_to_read(storage, dataset, bot_id, {f.key: f.size for f in held}, list(ids)))
        chosen += [f for f in held if f.key in read]
    meta["data_files_read"] = int(meta.get("data_files_read", 0)) + len(chosen)
    meta["data_files"] = int(meta.get("data_files", 0)) + len(files)
    return chosen


def after_forget(storage: Storage, touched: Iterable[tuple[str, str]]) -> None:
    """After an erasure's or prune's commit: each touched bot's index refreshed, so the
    entries of the files it removed (an erased subject's id among them) leave the index."""
    for dataset, bot_id in sorted(set(touched)):
        refresh(storage, dataset, bot_id, None)


def check_archive(storage: Storage, data: list[str]) -> list[str]:
    """:func:`check` for every bot of every dataset of these data file keys (the tables'
    files now): verify's problems, each naming a file."""
    by_bot: dict[tuple[str, str], list[str]] = {}
    for key in data:
        dataset, folder = key.split("/", 2)[:2]
        by_bot.setdefault((dataset, folder.removeprefix("bot_id=")), []).append(key)
    problems = []
    for (dataset, bot_id), keys in sorted(by_bot.items()):
        problems += check(storage, dataset, bot_id, keys)
    return problems
