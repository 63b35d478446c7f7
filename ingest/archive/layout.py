"""Every key of the archive, in one place: the layout users query and verify checks.

::

    <dataset>/bot_id=<bot>/date=<YYYY-MM-DD>/part-<sha256[:16]>.parquet   data, one file per source and date
    <dataset>/bot_id=<bot>/date=<YYYY-MM-DD>/compact-<sha16>.parquet      data, merged by ``ingest compact``
    raw/bot_id=<bot>/<sha256>.<ext>                                       the attachment's bytes
    quarantine/<sha256>/rejected_rows.parquet, reason.json                rows refused one by one
    quarantine/<sha256>/original-<name>, reason.json                      a whole file refused
    manifests/<sha256>.json                                               a source's commit record
    manifests/compaction-<sha16>.json                                     a compaction's record
    manifests/erasure-<id>.json                                           an erasure's or prune's record
    audit/<seq:06d>-<YYYYMMDDTHHMMSSZ>-<id>.json                          the append-only audit log
    audit/salt                                 an old archive's subject-hash salt, moved out by migrate
    holds/<id>.json, holds/<id>.lifted.json                               a legal hold, its lifting
    forgetting/<id>/plan.json, ready.json, raw/...                        an erasure in progress
    subjects/<dataset>/bot_id=<bot>/covered/<tag>.parquet                 the subject index: files it covers
    subjects/<dataset>/bot_id=<bot>/bucket=<NN>/<tag>.parquet             its entries (subject, file)

``<dataset>`` is ``messages`` (Message Data) or a typed report's dataset
(:data:`ingest.parse.reports.DATASETS`). Keys are relative to the archive root (a folder or
an S3 prefix), with forward slashes.

Example::

    data_key("bot-1", date(2024, 3, 1), sha)   # messages/bot_id=bot-1/date=2024-03-01/part-<sha16>.parquet
"""

from __future__ import annotations

from typing import Any

from ingest.parse.schema import DATASET

RAW = "raw"
MANIFESTS = "manifests"
QUARANTINE = "quarantine"
STAGING = ".staging"
AUDIT = "audit"
HOLDS = "holds"
#: An erasure or prune in progress: its plan, and rewritten copies waiting to replace originals.
FORGETTING = "forgetting"
#: The subject index (:mod:`ingest.archive.subjects`): which data files hold a bot user.
SUBJECTS = "subjects"
#: An erasure's (or prune's) record's name starts with this, after ``manifests/``.
ERASURE = "erasure-"
#: A dataset's Delta log folder (``<dataset>/_delta_log/``).
DELTA_LOG = "_delta_log"
#: Top-level folders that are not datasets.
NOT_DATASETS = frozenset({RAW, MANIFESTS, QUARANTINE, STAGING, AUDIT, HOLDS, FORGETTING, SUBJECTS})
#: Folders written under an S3 Object Lock retention when one is configured: the evidence.
LOCKED = (RAW, MANIFESTS, AUDIT, HOLDS)
#: A compaction record's name starts with this, after ``manifests/``.
COMPACTION = "compaction-"
REJECTED_ROWS = "rejected_rows.parquet"
REASONS = "reason.json"


def bot_prefix(bot_id: str, dataset: str = DATASET) -> str:
    """``<dataset>/bot_id=<bot>/``: every partition of one bot."""
    return f"{dataset}/bot_id={bot_id}/"


def partition_key(bot_id: str, day: Any, dataset: str = DATASET) -> str:
    """``<dataset>/bot_id=<bot>/date=<YYYY-MM-DD>``: a partition's folder, as a key prefix."""
    return f"{dataset}/bot_id={bot_id}/date={day}"


def part_name(source_sha256: str) -> str:
    """``part-<sha16>.parquet``: a source's data file in each partition it touches."""
    return f"part-{source_sha256[:16]}.parquet"


def data_key(bot_id: str, day: Any, source_sha256: str, dataset: str = DATASET) -> str:
    """A source's data file for one date."""
    return f"{partition_key(bot_id, day, dataset)}/{part_name(source_sha256)}"


def compact_key(folder: str, name: str) -> str:
    """A partition's merged file, ``name`` the hash of what it merged."""
    return f"{folder}/compact-{name}.parquet"


def subjects_prefix(dataset: str, bot_id: str) -> str:
    """``subjects/<dataset>/bot_id=<bot>/``: one bot's subject index for one dataset."""
    return f"{SUBJECTS}/{dataset}/bot_id={bot_id}/"


def subjects_bucket_key(dataset: str, bot_id: str, number: int, tag: str) -> str:
    """A part of the subject index's entries: one hash bucket of the bot user ids."""
    return f"{subjects_prefix(dataset, bot_id)}bucket={number:02d}/{tag}.parquet"


def subjects_covered_key(dataset: str, bot_id: str, tag: str) -> str:
    """A part of the subject index listing the data files it covers."""
    return f"{subjects_prefix(dataset, bot_id)}covered/{tag}.parquet"


def raw_key(bot_id: str, source_sha256: str, raw_name: str) -> str:
    """``raw/bot_id=<bot>/<sha256>.<ext>``: where the attachment's bytes are kept."""
    ext = raw_name.rsplit(".", 1)[-1].lower() if "." in raw_name else "bin"
    return f"{RAW}/bot_id={bot_id}/{source_sha256}.{ext}"


def raw_source(key: str) -> tuple[str, str]:
    """``(bot_id, sha256)`` of a raw copy's key (:func:`raw_key` read back). The sha256 is the
    original bytes' (an erasure rewrites a copy under the same key)."""
    folder, _, name = key.rpartition("/")
    return folder.rsplit("/", 1)[-1].removeprefix("bot_id="), name.split(".")[0]


def is_raw(key: str) -> bool:
    """A raw copy's key (``raw/bot_id=<bot>/<sha256>.<ext>``)."""
    return key.startswith(f"{RAW}/")


def manifest_key(source_sha256: str) -> str:
    """``manifests/<sha256>.json``: a source's commit record."""
    return f"{MANIFESTS}/{source_sha256}.json"


def compaction_key(name: str) -> str:
    """``manifests/compaction-<sha16>.json``: a compaction's record."""
    return f"{MANIFESTS}/{COMPACTION}{name}.json"


def erasure_key(erasure_id: str) -> str:
    """``manifests/erasure-<id>.json``: what an erasure or prune removed and rewrote."""
    return f"{MANIFESTS}/{ERASURE}{erasure_id}.json"


def is_erasure(key: str) -> bool:
    """An erasure's or prune's record."""
    return key.startswith(f"{MANIFESTS}/{ERASURE}")


def audit_key(sequence: int, stamp: str, record_id: str) -> str:
    """``audit/<seq>-<stamp>-<id>.json``: one audit record; keys sort in the order written
    (the sequence number: two records of one second keep their order)."""
    return f"{AUDIT}/{sequence:06d}-{stamp}-{record_id}.json"


def salt_key() -> str:
    """``audit/salt``: where archives made before kept the subject hashes' salt (beside the
    hashes: :mod:`ingest.ops.auditkey` moves it out)."""
    return f"{AUDIT}/salt"


def hold_key(hold_id: str) -> str:
    """``holds/<id>.json``: a legal hold (in force until ``holds/<id>.lifted.json``)."""
    return f"{HOLDS}/{hold_id}.json"


def forgetting_dir(erasure_id: str) -> str:
    """``forgetting/<id>``: an erasure in progress."""
    return f"{FORGETTING}/{erasure_id}"


def is_manifest(key: str) -> bool:
    """A commit or compaction record (directly under ``manifests/``)."""
    return key.startswith(f"{MANIFESTS}/") and key.count("/") == 1 and key.endswith(".json")


def is_compaction(key: str) -> bool:
    """A compaction record."""
    return key.startswith(f"{MANIFESTS}/{COMPACTION}")


def quarantine_dir(source_sha256: str) -> str:
    """``quarantine/<sha256>``: what was refused of one source."""
    return f"{QUARANTINE}/{source_sha256}"


def rejected_rows_key(source_sha256: str) -> str:
    """The Parquet file of a source's rejected rows."""
    return f"{quarantine_dir(source_sha256)}/{REJECTED_ROWS}"


def reasons_key(source_sha256: str) -> str:
    """A quarantine's ``reason.json``."""
    return f"{quarantine_dir(source_sha256)}/{REASONS}"


def original_key(source_sha256: str, raw_name: str) -> str:
    """A whole refused file's bytes, kept under its own name."""
    return f"{quarantine_dir(source_sha256)}/original-{raw_name}"


def is_reasons(key: str) -> bool:
    """A quarantine's ``reason.json``."""
    return key.startswith(f"{QUARANTINE}/") and key.endswith(f"/{REASONS}")


def is_data_file(key: str) -> bool:
    """A Parquet file of some dataset (not raw, manifests, quarantine, staging, or a Delta
    log's checkpoint): on disk, whether or not its table's snapshot has it."""
    return (
        key.split("/", 1)[0] not in NOT_DATASETS and key.endswith(".parquet") and f"/{DELTA_LOG}/" not in key
    )
