"""The archive's append-only audit log: erasures, prunes and legal holds, one record each.

::

    audit/<seq>-<YYYYMMDDTHHMMSSZ>-<id>.json   one immutable JSON object per event, written once

Each record carries ``previous``, the sha256 of the record before it (None for the first),
so a record removed or edited in the middle breaks the chain and ``ingest verify`` names it
(:func:`check_chain`). A subject is never named: records carry :func:`subject_hash`, an
HMAC-SHA256 of the id under a secret key, so the log proves *that* a subject was erased,
and the key's holder can check *which* (``ingest audit prove``), without the log keeping
the id.

The key never lives under the archive root (someone reading the archive could test guesses
of ids against the hashes): :mod:`ingest.ops.auditkey` gives it (the setting
``INGEST_AUDIT__SALT``, else a key file beside the state store). Archives made before kept
a salt at ``audit/salt``; it is moved out (``ingest migrate``, or the next erasure).

Example::

    append(storage, {"kind": "hold-add", "hold": {...}}, actor="dpo", reason="case 12")
    check_chain(storage)     # [] when intact
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ingest.archive.commit import write_bytes_once
from ingest.archive.layout import AUDIT, audit_key
from ingest.archive.storage import Storage, sha256_bytes
from ingest.errors import ConfigError, OutputError, RecordTooNew, first_line
from ingest.records import AuditEntry, build, dump, load


@dataclass(frozen=True)
class AuditRecord:
    """One record of the log: its key, bytes' sha256 and entry (an empty one, and ``error``,
    when it cannot be read as an :class:`~ingest.records.AuditEntry`)."""

    key: str
    sha256: str
    entry: AuditEntry
    error: str | None = None


def new_id() -> str:
    """A fresh record (or erasure, or hold) id: 16 hex digits."""
    return uuid.uuid4().hex[:16]


def salt(storage: Storage, setting: str | None = None) -> bytes:
    """The key of subject hashes, as given (:func:`ingest.ops.auditkey.audit_key`): never
    read from, nor made in, the archive."""
    if not setting:
        raise ConfigError(
            "no audit key given: subject hashes need one kept outside the archive",
            hint="ingest.ops.auditkey.audit_key(settings, storage) gives it",
        )
    return setting.encode()


def subject_hash(storage: Storage, subject_id: str, setting: str | None = None) -> str:
    """HMAC-SHA256 of a bot user id under the audit key: what the log says instead of the id."""
    return hmac.new(salt(storage, setting), subject_id.encode(), hashlib.sha256).hexdigest()


def key_id(secret: str) -> str:
    """Which key hashed a record, for its holder: HMAC of a fixed text under the key (it
    tells nothing of the key, or of any id), so ``ingest audit prove`` can say how many
    records are hashed under keys it does not hold."""
    return hmac.new(secret.encode(), b"certainly-ingest audit key id", hashlib.sha256).hexdigest()[:16]


def records(storage: Storage) -> list[AuditRecord]:
    """Every audit record, in the order written (their keys sort by sequence number)."""
    found = []
    for obj in storage.objects(f"{AUDIT}/"):
        if not obj.key.endswith(".json"):
            continue
        data = storage.read_bytes(obj.key)
        try:
            found.append(AuditRecord(obj.key, sha256_bytes(data), load(AuditEntry, data, obj.key)))
        except RecordTooNew as err:
            found.append(
                AuditRecord(obj.key, sha256_bytes(data), AuditEntry.model_construct(id=""), str(err))
            )
        except ValueError as err:
            why = f"not an audit record ({first_line(err)})"
            found.append(AuditRecord(obj.key, sha256_bytes(data), AuditEntry.model_construct(id=""), why))
    return found


def append(
    storage: Storage, body: dict[str, Any], *, actor: str, reason: str, record_id: str | None = None
) -> str:
    """Append a record (``body`` plus when, who, why and the previous record's sha256);
    returns its key. A record of ``record_id`` already there is not written again."""
    record_id = record_id or new_id()
    existing = records(storage)
    for record in existing:
        if record.entry.id == record_id:
            return record.key
    entry = build(
        AuditEntry,
        {
            "id": record_id,
            **body,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "actor": actor,
            "reason": reason,
            "previous": existing[-1].sha256 if existing else None,
        },
    )
    key = audit_key(len(existing) + 1, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), record_id)
    if not write_bytes_once(storage, key, dump(entry)):
        raise OutputError(f"cannot append to the audit log: {storage.describe(key)} exists")
    return key


def check_chain(found: list[AuditRecord]) -> list[str]:
    """Problems of the log: a record whose ``previous`` is not the sha256 of the one before
    (one removed, edited or inserted), or unreadable."""
    problems = []
    before: AuditRecord | None = None
    for record in found:
        if record.error is not None:
            problems.append(f"{record.key}: unreadable audit record ({record.error})")
        expected = before.sha256 if before else None
        if record.entry.previous != expected:
            problems.append(
                f"{record.key}: audit chain broken (previous record "
                + (f"{before.key} changed or a record removed)" if before else "missing: records removed)")
            )
        before = record
    return problems
