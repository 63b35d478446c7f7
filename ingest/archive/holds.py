"""Legal holds: data of a bot (between two days, or all of it) that is never pruned or erased.

::

    holds/<id>.json           a hold: {"id", "bot_id", "from", "to", "reason", "placed_at", "actor"}
    holds/<id>.lifted.json    its lifting: {"id", "lifted_at", "actor", "reason"}

A hold lives in the archive (not only in the state store: whoever reads the archive sees
it), and placing or lifting one is an audit record (:mod:`ingest.archive.audit`). Both
files are written once and never changed or removed (under an S3 Object Lock retention
when one is configured: ``holds/`` is evidence, :data:`ingest.archive.layout.LOCKED`): a
hold is in force while it has no lifting. ``ingest verify`` checks every hold file
against the audit log's hold records (:func:`check_against_audit`), so a hold removed or
changed by anything but ``ingest hold remove`` is named.

A hold keeps every day of the data it covers, wherever it is: a table's rows, a raw copy
(each day of its report: its data files' days and every day of its window), a quarantined
file (its source's days, or its window; a file whose bot or days are unknown counts as
held by any hold: :func:`copy_hold`).

Example::

    hold = place(storage, "bot-1", date(2024, 1, 1), None, reason="litigation 2026-17", actor="dpo")
    covering(active(storage), "bot-1", date(2024, 3, 1))     # [hold]
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from ingest.archive.audit import AuditRecord, append, new_id
from ingest.archive.audit import records as audit_records
from ingest.archive.commit import write_bytes_once
from ingest.archive.layout import HOLDS, QUARANTINE, hold_key, is_raw, raw_source, reasons_key
from ingest.archive.manifests import Record
from ingest.archive.storage import Storage, sha256_bytes
from ingest.errors import ConfigError, OutputError, RecordTooNew, first_line
from ingest.records import HoldLifting, HoldRecord, QuarantineReasons, build, dump, dump_as_read, load

#: A span of days (inclusive; None: unbounded on that side).
Span = tuple[date | None, date | None]
LIFTED = ".lifted.json"


@dataclass(frozen=True)
class Hold:
    """A legal hold: a bot's data from ``first`` to ``last`` (inclusive; None: unbounded)."""

    id: str
    bot_id: str
    first: date | None
    last: date | None
    reason: str
    placed_at: str = ""
    actor: str = ""

    def covers(self, bot_id: str, day: date) -> bool:
        """Whether this hold keeps the bot's data of that day."""
        return (
            bot_id == self.bot_id
            and (self.first is None or day >= self.first)
            and (self.last is None or day <= self.last)
        )

    def overlaps(self, bot_id: str | None, first: date | None, last: date | None) -> bool:
        """Whether this hold keeps any day from ``first`` to ``last`` of the bot (None: a
        bot or a bound unknown, so it may be this one)."""
        return (
            (bot_id is None or bot_id == self.bot_id)
            and (self.first is None or last is None or last >= self.first)
            and (self.last is None or first is None or first <= self.last)
        )

    def span(self) -> str:
        """The days held, for people: ``2024-01-01..2024-12-31``, ``..2024-12-31``, ``all``."""
        if self.first is None and self.last is None:
            return "all days"
        return f"{self.first or ''}..{self.last or ''}"

    def as_json(self) -> dict[str, Any]:
        """The hold as its file holds it (and its audit record: the same JSON object)."""
        return _as_written(self.record())

    def record(self) -> HoldRecord:
        """The hold as its file and its audit record say it (:class:`~ingest.records.HoldRecord`)."""
        return build(
            HoldRecord,
            {
                "id": self.id,
                "bot_id": self.bot_id,
                "from": self.first.isoformat() if self.first else None,
                "to": self.last.isoformat() if self.last else None,
                "reason": self.reason,
                "placed_at": self.placed_at,
                "actor": self.actor,
            },
        )


#: What :func:`ingest.archive.audit.new_id` makes: a hold id read from a file, a record or
#: the command line is one, or it is refused (it names files: ``../x`` would leave ``holds/``).
HOLD_ID = re.compile(r"^[0-9a-f]{16}$")


def _from_record(record: HoldRecord) -> Hold:
    def day(value: str | None) -> date | None:
        return date.fromisoformat(value) if value else None

    if not HOLD_ID.match(record.id):
        raise ValueError(f"id {record.id[:40]!r} is not 16 hex digits")
    return Hold(
        record.id,
        record.bot_id,
        day(record.from_),
        day(record.to),
        record.reason,
        record.placed_at,
        record.actor,
    )


def lifted_key(hold_id: str) -> str:
    """``holds/<id>.lifted.json``: that the hold was lifted, by whom and why."""
    return f"{HOLDS}/{hold_id}{LIFTED}"


def active(storage: Storage) -> list[Hold]:
    """Every hold in force, oldest first: placed (a hold file, or a hold-add audit record)
    and not lifted by the audit log (a hold-remove record: a lifting file alone, which
    anyone who can write the archive could forge, lifts nothing). A hold file deleted by
    hand still holds; one changed by hand holds both as its file and as its record says
    (the union of their days: a narrowed file keeps nothing the record keeps from prune)."""
    found, lifted, _ = _placed(storage)
    return [h for h in found if h.id not in lifted]


def _placed(storage: Storage) -> tuple[list[Hold], set[str], set[str]]:
    """Every hold ever placed, oldest first (one whose file differs from its audit record
    twice, as each says), the ids the audit log lifts, and the ids with a lifting file."""
    keys = {obj.key for obj in storage.objects(f"{HOLDS}/")}
    placed, lifted = _audited(audit_records(storage))
    found: list[Hold] = []
    liftings: set[str] = set()
    for key in sorted(k for k in keys if k.endswith(".json")):
        hold_id = key.removeprefix(f"{HOLDS}/").removesuffix(".json").removesuffix(".lifted")
        if key.endswith(LIFTED):
            liftings.add(hold_id)
            continue
        hold = _readable(key, storage.read_bytes(key))
        if hold.id != hold_id:
            raise _unreadable(key, f"it names hold {hold.id}, its file name {hold_id[:40]!r}")
        found.append(hold)
    for hold_id, record in placed.items():
        hold = _readable(f"the audit log's hold {hold_id[:40]!r}", record)
        if hold not in found:
            found.append(hold)
    return sorted(found, key=lambda h: (h.placed_at, h.id)), lifted, liftings


def _readable(where: str, content: bytes | HoldRecord) -> Hold:
    """A hold read from a file or a record; one that cannot be read stops whatever asked
    (an erasure, a prune): held data is never destroyed on a guess."""
    try:
        return _from_record(load(HoldRecord, content, where) if isinstance(content, bytes) else content)
    except (ValueError, RecordTooNew) as err:
        raise _unreadable(where, f"{type(err).__name__}: {first_line(err, 120)}") from None


def _unreadable(where: str, why: str) -> OutputError:
    return OutputError(
        f"{where}: unreadable legal hold ({why}); nothing is pruned or erased until it is "
        "restored (`ingest verify` compares holds with the audit log)"
    )


def _audited(log: list[AuditRecord]) -> tuple[dict[str, HoldRecord], set[str]]:
    """The holds the audit log places (id -> the hold as recorded) and the ids it lifts."""
    placed: dict[str, HoldRecord] = {}
    lifted: set[str] = set()
    for record in log:
        hold = record.entry.hold
        if hold is None or not hold.id:
            continue
        if record.entry.kind == "hold-add":
            placed[hold.id] = hold
        elif record.entry.kind == "hold-remove":
            lifted.add(hold.id)
    return placed, lifted


def covering(holds: list[Hold], bot_id: str, day: date) -> list[Hold]:
    """The holds that keep the bot's data of that day."""
    return [h for h in holds if h.covers(bot_id, day)]


def place(
    storage: Storage, bot_id: str, first: date | None, last: date | None, *, reason: str, actor: str
) -> Hold:
    """Place a hold (an object under ``holds/`` and an audit record)."""
    if first and last and last < first:
        raise ConfigError(f"--to {last} is before --from {first}")
    _need_reason(reason, "a legal hold needs a --reason")
    hold = Hold(
        new_id(), bot_id, first, last, reason, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), actor
    )
    record = hold.record()
    write_bytes_once(
        storage, hold_key(hold.id), dump(record)
    )  # the audit record holds the same bytes' object
    append(storage, {"kind": "hold-add", "hold": _as_written(record)}, actor=actor, reason=reason)
    return hold


def lift(storage: Storage, hold_id: str, *, reason: str, actor: str) -> Hold:
    """Lift a hold: the audit record first (what was lifted, by whom, why), then its
    lifting file beside it (the hold's own file stays, write-once). Killed between the two,
    lifting it again finishes: the audit record is not written twice."""
    _need_reason(reason, "lifting a legal hold needs a --reason (it is kept in the audit log)")
    if not HOLD_ID.match(hold_id):
        raise ConfigError(f"{hold_id[:40]!r} is not a hold id (16 hex digits: see `ingest hold list`)")
    placed, lifted, liftings = _placed(storage)
    # In force, or lifted by the log with its lifting file missing (killed halfway).
    found = {h.id: h for h in placed if h.id not in lifted or h.id not in liftings}
    if hold_id not in found:
        raise ConfigError(f"no legal hold {hold_id!r} in force (see `ingest hold list`)")
    hold = found[hold_id]
    append(
        storage,
        {"kind": "hold-remove", "hold": _as_written(hold.record())},
        actor=actor,
        reason=reason,
        record_id=f"lift-{hold_id}",
    )
    lifting = HoldLifting(
        id=hold_id, lifted_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), actor=actor, reason=reason
    )
    # A lifting file already there (forged: it lifted nothing) stays; the record decides.
    if hold_id not in liftings and not write_bytes_once(storage, lifted_key(hold_id), dump(lifting)):
        raise OutputError(f"cannot lift hold {hold_id}: {storage.describe(lifted_key(hold_id))} exists")
    return hold


def _as_written(record: HoldRecord) -> dict[str, Any]:
    """A hold as :func:`ingest.records.dump` writes it, for the audit record: ``verify``
    compares the two byte for byte (:func:`check_against_audit`)."""
    record.format_version = HoldRecord.FORMAT
    return record.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _need_reason(reason: str, message: str) -> None:
    if not reason.strip():
        raise ConfigError(message, hint='e.g. --reason "case 2026-17 closed"')


# ---------------------------------------------------------------- what a hold keeps
def source_spans(records: Iterable[Record]) -> dict[str, tuple[str | None, list[Span]]]:
    """Each source's bot and the spans of days its report holds (each data file's day and
    its whole window), from the commit records (:func:`ingest.archive.manifests.read_manifests`)."""
    found: dict[str, tuple[str | None, list[Span]]] = {}
    for record in records:
        manifest = record.report
        if manifest is None:
            continue
        spans: list[Span] = []
        for entry in manifest.files:
            day = _day(entry.path.split("/date=")[-1][:10])
            spans.append((day, day))
        if manifest.window is not None:
            spans.append((_day(manifest.window.from_), _day(manifest.window.to)))
        found[manifest.attachment.sha256] = (manifest.bot_id or None, spans or [(None, None)])
    return found


def copy_hold(
    storage: Storage, key: str, in_force: list[Hold], spans: dict[str, tuple[str | None, list[Span]]]
) -> Hold | None:
    """The hold that keeps a raw copy or quarantined file (``key``), or None. Its days are
    its report's, every one of them (:func:`source_spans`); a quarantined file without a
    commit record has its ``reason.json``'s window; what is unknown (a bot, a day) counts
    as held: held data is never destroyed on a guess."""
    if not in_force:
        return None
    bot, days = copy_source(storage, key, spans)
    for hold in in_force:
        if any(hold.overlaps(bot, first, last) for first, last in days):
            return hold
    return None


def copy_source(
    storage: Storage, key: str, spans: dict[str, tuple[str | None, list[Span]]]
) -> tuple[str | None, list[Span]]:
    """The bot and the spans of days of a raw copy or quarantined file (None, or a span of
    None bounds: unknown)."""
    if is_raw(key):
        named, sha = raw_source(key)  # the key names the bot; the record, the days
        return named, spans.get(sha, (None, [(None, None)]))[1]
    if key.startswith(f"{QUARANTINE}/"):
        sha = key.split("/")[1] if key.count("/") >= 2 else ""
        return spans.get(sha) or _quarantine_window(storage, sha)
    return None, [(None, None)]


def _quarantine_window(storage: Storage, sha: str) -> tuple[str | None, list[Span]]:
    """A whole refused file's bot and window from its ``reason.json`` (unknown: None)."""
    try:
        window = load(QuarantineReasons, storage.read_bytes(reasons_key(sha)), reasons_key(sha)).window
    except (OSError, ValueError, RecordTooNew):
        return None, [(None, None)]
    if window is None or window.bot_id is None:
        return None, [(None, None)]
    return window.bot_id, [(_day(window.from_), _day(window.to))]


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


# ---------------------------------------------------------------- holds and the audit log
def check_against_audit(storage: Storage, log: list[AuditRecord]) -> list[str]:
    """Every hold file matches the audit log: a hold placed has its file, byte for byte the
    record's hold; a hold lifted has its lifting; no hold file or lifting the log does not
    record. A hold removed or changed by anything but ``ingest hold remove`` is named."""
    placed, lifted = _audited(log)
    keys = {obj.key for obj in storage.objects(f"{HOLDS}/")}
    problems = []
    for hold_id, hold in sorted(placed.items()):
        key = hold_key(hold_id)
        if key not in keys:
            if hold_id not in lifted:
                problems.append(f"{key}: missing, but the audit log places this hold and never lifts it")
            continue  # lifted before holds were write-once: the file went with it
        if sha256_bytes(storage.read_bytes(key)) != sha256_bytes(dump_as_read(hold)):
            problems.append(f"{key}: differs from the audit log's record of this hold (changed)")
        if hold_id in lifted and lifted_key(hold_id) not in keys:
            problems.append(
                f"{key}: the audit log lifts this hold but {lifted_key(hold_id)} is missing "
                f"(run `ingest hold remove {hold_id}` again to finish)"
            )
    for key in sorted(keys):
        hold_id = key.removeprefix(f"{HOLDS}/").removesuffix(".json").removesuffix(".lifted")
        if key.endswith(".json") and not HOLD_ID.match(hold_id):
            problems.append(f"{key}: not a hold's file (its name is no hold id: 16 hex digits)")
        elif key.endswith(LIFTED) and hold_id not in lifted:
            problems.append(f"{key}: a lifting the audit log does not record (not by `ingest hold remove`)")
        elif not key.endswith(LIFTED) and hold_id not in placed:
            problems.append(f"{key}: a hold the audit log does not record (not by `ingest hold add`)")
    return problems


__all__ = ["HOLDS", "Hold", "active", "check_against_audit", "copy_hold", "covering", "lift", "place"]
