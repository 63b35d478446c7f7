"""Every record the archive (and an export bundle) stores, defined once, with its version.

An archive is meant to outlive the tool that wrote it, so each JSON record it holds is one
pydantic model here, read and written only through :func:`load` and :func:`dump`::

    manifests/<sha256>.json              ReportManifest      a report's commit record
    manifests/compaction-<name>.json     CompactionRecord    what one compaction replaced
    manifests/erasure-<id>.json          ErasureRecord       what an erasure or prune removed
    forgetting/<id>/plan.json, ready.json  ErasurePlan       an erasure in progress
    holds/<id>.json                      HoldRecord          a legal hold
    holds/<id>.lifted.json               HoldLifting         its lifting
    audit/<seq>-<stamp>-<id>.json        AuditEntry          one record of the hash-chained log
    quarantine/<sha256>/reason.json      QuarantineReasons   why rows or a file were refused
    manifest.json (in an export bundle)  BundleManifest      what a bundle holds, signed

Each carries ``format_version``. A record written before the field existed reads as
version 1; a record of a newer version than :attr:`Record.FORMAT` is refused
(:class:`~ingest.errors.RecordTooNew`), never guessed at. Fields this tool does not know
are kept (``extra="allow"``), so a record read and written again loses nothing.

Bytes matter: audit records are chained by their sha256, a hold file is compared byte for
byte with the audit log's copy, a bundle manifest is signed. :func:`dump` writes what
``json.dumps(..., indent=2, ensure_ascii=False)`` wrote before, with the fields in the order
they always had, and only the fields that were set (a record read back dumps to the same
bytes: :func:`dump_as_read`).

Example::

    hold = load(HoldRecord, storage.read_bytes(hold_key(hold_id)), hold_key(hold_id))
    storage.write(key, dump(hold))
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from ingest.errors import RecordTooNew

#: Strict: a record's values are kept as they are (no "5" read as 5), so reading a record
#: and writing it again gives the same bytes; unknown fields are kept, not dropped.
#: Deferred: a model's validator is built on its first use, not at import (all of them at
#: import cost ~17 ms of every start-up, and a report import uses one or two).
_CONFIG = ConfigDict(extra="allow", strict=True, populate_by_name=True, defer_build=True)


class Part(BaseModel):
    """A piece of a record (a file entry, a window): no version of its own."""

    model_config = _CONFIG


class Record(BaseModel):
    """A top-level record: ``format_version`` first, then its own fields."""

    model_config = _CONFIG

    #: The record's name, for people (error messages, the docs page).
    NAME: ClassVar[str] = "record"
    #: The newest format this tool reads, and the one it writes.
    FORMAT: ClassVar[int] = 1
    #: Where it lives in the archive (the docs page), and what it is.
    KEY: ClassVar[str] = ""

    format_version: int = Field(1, ge=1, description="The record's format; absent in records made before: 1.")


R = TypeVar("R", bound=Record)


def load(model: type[R], data: bytes | str | dict[str, Any], where: str = "") -> R:
    """A record read from its bytes (or an already parsed JSON object, as the audit log
    holds a hold). A newer ``format_version`` than this tool reads raises
    :class:`RecordTooNew`; a record that does not fit its model raises pydantic's
    ``ValidationError`` (a ``ValueError``: callers report it as unreadable)."""
    try:
        record = model.model_validate(data) if isinstance(data, dict) else model.model_validate_json(data)
    except ValidationError:
        _refuse_newer(model, _version_of(data), where)
        raise
    _refuse_newer(model, record.format_version, where)
    return record


def first_problem(err: ValidationError) -> str:
    """A model's refusal in one line: the first field and what is wrong with it."""
    problems = err.errors()
    if not problems:
        return "invalid"
    where = ".".join(str(p) for p in problems[0]["loc"]) or "the record"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {problems[0]['msg']}{more}"


def _version_of(data: bytes | str | dict[str, Any]) -> object:
    """The ``format_version`` of a record its model refused (a newer one may look different)."""
    try:
        doc = data if isinstance(data, dict) else json.loads(data)
    except (ValueError, RecursionError):
        return None
    return doc.get("format_version") if isinstance(doc, dict) else None


def _refuse_newer(model: type[Record], version: object, where: str) -> None:
    if isinstance(version, int) and not isinstance(version, bool) and version > model.FORMAT:
        raise RecordTooNew(
            f"{where or model.NAME}: {model.NAME} format_version {version} is newer than this tool "
            f"reads (1..{model.FORMAT}); upgrade certainly-ingest to read it"
        )


def build(model: type[R], document: dict[str, Any]) -> R:
    """A record made by this tool from Python values (a tuple taken as a list): written
    with :func:`dump`, it is then read back strictly by :func:`load`."""
    return model.model_validate(document, strict=False)


def dump(record: Record) -> bytes:
    """A record's bytes as written now: stamped with this tool's ``format_version``, indented
    UTF-8 JSON, the fields set in their declared order (extra ones after), a final newline."""
    record.format_version = type(record).FORMAT
    return dump_as_read(record)


def dump_as_read(record: Record) -> bytes:
    """A record's bytes without stamping its version: a record read back gives the bytes it
    was read from (when they were written by :func:`dump` or, before it, by ``as_json``)."""
    return as_json(record.model_dump(mode="json", by_alias=True, exclude_unset=True))


def as_json(document: Any) -> bytes:
    """Indented UTF-8 JSON and a final newline: the one format of every record."""
    return json.dumps(document, indent=2, ensure_ascii=False, default=str).encode() + b"\n"


# ---------------------------------------------------------------- pieces


class Complete(Part):
    """A piece always written whole (every field, defaults too), however it was made: a plan
    read back after a crash finds each field it wrote."""

    def model_post_init(self, context: Any, /) -> None:
        self.__pydantic_fields_set__.update(type(self).model_fields)


class FileEntry(Part):
    """A data file a record lists: its key, rows and sha256 (None: not known, as a compaction
    records a replaced file no manifest listed)."""

    path: str
    rows: int | None = None
    sha256: str | None = None


class Window(Part):
    """The export window a report answered (the state store's id, bot, report type, days)."""

    id: int | str | None = None
    bot_id: str | None = None
    report_id: int | None = None
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    #: How it was matched: ``only_candidate``, ``named`` (the report named it) or ``person``.
    matched_by: str | None = None


class Attachment(Part):
    """The report file as received: its name, size and sha256."""

    name: str = ""
    size: int | None = None
    sha256: str


class DeltaCommit(Part):
    """The Delta commit that made a report's files visible."""

    table: str
    version: int | None = None


# ---------------------------------------------------------------- the records


class ReportManifest(Record):
    """A report's commit record: where it came from (email, GET or import), the files its
    rows were written to, and its counts. Written once, after every data file."""

    NAME: ClassVar[str] = "report manifest"
    KEY: ClassVar[str] = "manifests/<sha256>.json"

    source: str | None = None
    request: dict[str, Any] | None = None
    import_: dict[str, Any] | None = Field(None, alias="import")
    email: dict[str, Any] | None = None
    window: Window | None = None
    bot_id: str
    attachment: Attachment
    extra_columns: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    files: list[FileEntry] = Field(default_factory=list)
    delta: DeltaCommit | None = None
    written_at: str = ""


class CompactionBody(Part):
    """What one compaction (a Delta OPTIMIZE commit) did: files added and files replaced."""

    dataset: str | None = None
    version: int | None = None
    partitions: list[str] = Field(default_factory=list)
    files: list[FileEntry] | None = None
    #: Records of the compaction before Delta name one merged file instead of ``files``.
    file: FileEntry | None = None
    replaces: list[FileEntry] = Field(default_factory=list)

    def merged(self) -> list[FileEntry]:
        """The files that replaced the ``replaces`` ones."""
        if self.files is not None:
            return self.files
        return [self.file] if self.file is not None else []


class CompactionRecord(Record):
    """A compaction's record: the manifest walker puts its files in place of those replaced."""

    NAME: ClassVar[str] = "compaction record"
    KEY: ClassVar[str] = "manifests/compaction-<dataset>-v<version>.json"

    compaction: CompactionBody
    written_at: str = ""


class ErasureTable(Part):
    """One table's part of an erasure: its commit, files removed and their rewrites, days."""

    dataset: str
    version: int | None = None
    rows: int = 0
    replaces: list[FileEntry] = Field(default_factory=list)
    files: list[FileEntry] = Field(default_factory=list)
    #: ``<bot>/<YYYY-MM-DD>`` of every partition touched.
    days: list[str] = Field(default_factory=list)


class ErasedCopy(Part):
    """A raw copy or quarantined file an erasure rewrote (``new_sha256`` None: removed)."""

    key: str
    original_sha256: str = ""
    new_sha256: str | None = None
    size: int | None = None
    rows_removed: int = 0
    removed: bool = False


class ErasureBody(Part):
    """An erasure's or prune's facts (``seq`` orders them; records made before have none)."""

    id: str
    seq: int | None = None
    kind: str = "erase"
    at: str = ""
    tables: list[ErasureTable] = Field(default_factory=list)
    copies: list[ErasedCopy] = Field(default_factory=list)


class ErasureRecord(Record):
    """What an erasure or prune removed and rewrote: ``verify``'s evidence of it."""

    NAME: ClassVar[str] = "erasure record"
    KEY: ClassVar[str] = "manifests/erasure-<id>.json"

    erasure: ErasureBody


class PlannedFile(Complete):
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


class PlannedCopy(Complete):
    """A raw copy or quarantined file holding records to forget: rewritten without them
    (same key), or removed whole when every record in it is one to forget."""

    key: str
    original_sha256: str = ""
    new_sha256: str = ""
    size: int = 0
    rows_removed: int = 0
    #: Every record in it went: the file is removed whole.
    removed: bool = False
    #: Which records go (ids, row numbers or byte offsets; at most copies.MAX_LABELS).
    records: list[str] = Field(default_factory=list)


class ErasurePlan(Record):
    """What an erasure or prune does (the dry run prints it; ``plan.json`` then ``ready.json``
    once every replacement is written, so a killed run resumes without the subject's id)."""

    NAME: ClassVar[str] = "erasure plan"
    KEY: ClassVar[str] = "forgetting/<id>/plan.json, forgetting/<id>/ready.json"

    id: str
    kind: str
    files: list[PlannedFile] = Field(default_factory=list)
    copies: list[PlannedCopy] = Field(default_factory=list)
    #: Tables whose older log entries hold a needle: checkpointed and the entries removed.
    logs: list[str] = Field(default_factory=list)
    #: Datasets without a bot user column: nothing of a subject is in them.
    skipped: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    #: Quarantined files not searched: their bot is unknown and ``--bot`` limits the search.
    unsearched: list[str] = Field(default_factory=list)

    def rows_by_table(self) -> dict[str, int]:
        """Rows forgotten per dataset."""
        found: dict[str, int] = {}
        for change in self.files:
            found[change.dataset] = found.get(change.dataset, 0) + change.forgotten
        return found


class HoldRecord(Record):
    """A legal hold: a bot's data from ``from`` to ``to`` (inclusive; null: unbounded) that is
    never pruned or erased while the audit log does not lift it."""

    NAME: ClassVar[str] = "legal hold"
    KEY: ClassVar[str] = "holds/<id>.json"

    # In the order holds have always been written (main's Hold dataclass, days last): the
    # audit log's copy is dumped in this order and compared byte for byte with the file.
    id: str
    bot_id: str
    reason: str = ""
    placed_at: str = ""
    actor: str = ""
    from_: str | None = Field(None, alias="from")
    to: str | None = None


class HoldLifting(Record):
    """That a hold was lifted, by whom and why (the audit log's record is what lifts it)."""

    NAME: ClassVar[str] = "hold lifting"
    KEY: ClassVar[str] = "holds/<id>.lifted.json"

    id: str
    lifted_at: str = ""
    actor: str = ""
    reason: str = ""


class AuditEntry(Record):
    """One record of the append-only audit log (an erasure, prune, hold or resolution):
    ``previous`` is the sha256 of the record before it, so the log is a chain. The event's
    own fields (``hold``, ``record``, ``tables``, ``subjects`` ...) follow ``kind``."""

    NAME: ClassVar[str] = "audit record"
    KEY: ClassVar[str] = "audit/<seq>-<YYYYMMDDTHHMMSSZ>-<id>.json"

    id: str
    kind: str | None = None
    hold: HoldRecord | None = None
    #: HMAC-SHA256 of each subject id under the audit key, and which key (its id).
    subject_sha256: list[str] | None = None
    key_id: str | None = None
    at: str = ""
    actor: str = ""
    reason: str = ""
    previous: str | None = None

    @model_serializer(mode="wrap")
    def _event_first(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The event's own fields (declared or not) before when, who, why and the chain link,
        in the order audit records have always had."""
        data: dict[str, Any] = handler(self)
        tail: dict[str, Any] = {k: data.pop(k) for k in ("at", "actor", "reason", "previous") if k in data}
        return {**data, **tail}


class QuarantineReasons(Record):
    """Why a source's rows (``reasons``: how many per reason) or a whole file (``reason``
    and the report's provenance) were refused."""

    NAME: ClassVar[str] = "quarantine reasons"
    KEY: ClassVar[str] = "quarantine/<sha256>/reason.json"

    reasons: dict[str, int] | None = None
    reason: str | None = None
    source: str | None = None
    request: dict[str, Any] | None = None
    import_: dict[str, Any] | None = Field(None, alias="import")
    email: dict[str, Any] | None = None
    window: Window | None = None
    bot_id: str | None = None


class BundleManifest(Record):
    """An export bundle's ``manifest.json``: the question asked, the archive it came from, the
    rows per bot and day, each file with its sha256, each source report; signed by
    ``manifest.json.sig``. ``bundle_version`` is kept for readers made before
    ``format_version``."""

    NAME: ClassVar[str] = "bundle manifest"
    KEY: ClassVar[str] = "manifest.json (in an export bundle, not the archive)"

    bundle_version: int = 1
    created_at: str = ""
    tool: str = ""
    query: dict[str, Any] = Field(default_factory=dict)
    archive: Any = None
    archive_problems: list[str] = Field(default_factory=list)
    rows: int = 0
    totals: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, Any] = Field(default_factory=dict)
    files: list[dict[str, Any]]
    sources: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    copies: list[dict[str, Any]] | None = None
    csv: dict[str, str] | None = None
    signature: dict[str, str] | None = None


#: Every record, in the order the docs page shows them.
RECORDS: tuple[type[Record], ...] = (
    ReportManifest,
    CompactionRecord,
    ErasureRecord,
    ErasurePlan,
    HoldRecord,
    HoldLifting,
    AuditEntry,
    QuarantineReasons,
    BundleManifest,
)

__all__ = [
    "RECORDS",
    "Attachment",
    "AuditEntry",
    "BundleManifest",
    "CompactionBody",
    "CompactionRecord",
    "DeltaCommit",
    "ErasedCopy",
    "ErasureBody",
    "ErasurePlan",
    "ErasureRecord",
    "ErasureTable",
    "FileEntry",
    "HoldLifting",
    "HoldRecord",
    "PlannedCopy",
    "PlannedFile",
    "QuarantineReasons",
    "Record",
    "ReportManifest",
    "Window",
    "as_json",
    "build",
    "dump",
    "dump_as_read",
    "first_problem",
    "load",
]
