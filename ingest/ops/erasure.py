"""``ingest erase``, ``ingest prune`` and ``ingest hold``: forgetting, provably, and legal holds.

Thin on top of :mod:`ingest.archive.forget` (the one engine), :mod:`ingest.archive.holds` and
:mod:`ingest.archive.audit`: who acts (``INGEST_AUDIT__ACTOR``, else the OS user), the hold
check (an erasure touching held data is refused with the hold's reason: a person decides),
and the retention's cut-off days.

Example::

    found = erase(storage, ["4242"], [], reason="GDPR request 17", actor="dpo", apply=False)
"""

from __future__ import annotations

import getpass
import json
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ingest.archive import audit, holds
from ingest.archive.forget import (
    ExpiredSelection,
    ForgetOutcome,
    Plan,
    SubjectSelection,
    forget,
    known_bots,
    plan,
)
from ingest.archive.layout import QUARANTINE, REASONS
from ingest.archive.manifests import read_manifests
from ingest.archive.storage import Storage
from ingest.errors import ConfigError, UnderLegalHold
from ingest.records import QuarantineReasons, build, dump, load
from ingest.report_types import DATASETS, MESSAGES
from ingest.settings import RetentionSettings, Settings
from ingest.state.store import Store


def actor_of(settings: Settings) -> str:
    """Who acts, for the audit log: the setting, else the OS user."""
    if settings.audit.actor:
        return settings.audit.actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def erase(
    storage: Storage,
    subjects: list[str],
    bots: list[str],
    *,
    reason: str,
    actor: str,
    apply: bool,
    salt: str | None = None,
    store: Store | None = None,
) -> Plan | ForgetOutcome:
    """Plan (``apply`` False: the dry run) or carry out the erasure of these bot users.
    Raises :class:`UnderLegalHold` when a hold covers a day holding their rows."""
    if not subjects or not all(s.strip() for s in subjects):
        raise ConfigError("name the subject: --botuser ID")
    if apply and not reason.strip():
        raise ConfigError("an erasure needs a --reason (it is kept in the audit log)")
    check_subject_ids(subjects)
    check_bots(storage, bots)
    selection = SubjectSelection(tuple(subjects), tuple(bots))
    found = plan(storage, selection, kind="erase")
    in_force = holds.active(storage)
    for change in found.files:
        covering = holds.covering(in_force, change.bot_id, date.fromisoformat(change.day))
        if covering:
            hold = covering[0]
            raise UnderLegalHold(
                f"refused: the subject's rows of bot {change.bot_id} on {change.day} are under legal hold "
                f"{hold.id} ({hold.span()}): {hold.reason}",
                hint="a person decides: lift it with `ingest hold remove` first, or keep the data",
            )
    _raw_under_hold(storage, found, in_force)
    quoting = reason_files_quoting(storage, subjects)
    recorded = store.reasons_quoting(subjects) if store is not None else 0
    if not apply:
        found.meta["reasons_quoting"] = len(quoting) + recorded
        return found
    found.meta["subject_sha256"] = [audit.subject_hash(storage, s, salt) for s in subjects]
    found.meta["key_id"] = audit.key_id(salt) if salt else None
    found.meta["bots"] = list(bots)
    done = forget(storage, selection, found, actor=actor, reason=reason)
    # After the records: a reason quoting one is withheld (it names the erasure, not the id).
    note = f"withheld by erasure {found.id}: it quoted a record of an erased bot user"
    withhold_reason_files(storage, quoting, subjects, note)
    withheld = store.withhold_reasons(subjects, note) if store is not None else 0
    done.plan.meta["reasons_quoting"] = len(quoting) + withheld
    return done


def check_subject_ids(subjects: list[str]) -> None:
    """An id with spaces around it is refused, not stripped: a bot user's id is matched
    exactly as written, and a pasted space would find nothing and say so."""
    for subject in subjects:
        if subject != subject.strip():
            raise ConfigError(f"--botuser {subject!r} has spaces around it: give the id exactly as written")


def check_bots(storage: Storage, bots: list[str]) -> None:
    """A ``--bot`` the archive does not know is a typo until shown otherwise: exit 2 naming
    it and the bots it knows, never "nothing of this subject" from a search of nothing."""
    unknown = sorted(set(bots) - (known := known_bots(storage)))
    if unknown:
        raise ConfigError(
            f"--bot {', '.join(unknown)}: no such bot in the archive "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )


def reason_files_quoting(storage: Storage, subjects: list[str]) -> list[str]:
    """Quarantined files' ``reason.json`` holding one of the ids (a refused file's reason
    quotes its first line: with no header, the subject's record), in any encoding's text."""
    found = []
    for obj in storage.objects(f"{QUARANTINE}/"):
        if obj.key.endswith(f"/{REASONS}"):
            text = storage.read_bytes(obj.key).decode("utf-8", errors="replace")
            if any(s in text or json.dumps(s)[1:-1] in text for s in subjects):
                found.append(obj.key)
    return found


def withhold_reason_files(storage: Storage, keys: list[str], subjects: list[str], note: str) -> None:
    """Rewrite each ``reason.json``: every text in it holding an id becomes ``note``."""
    for key in keys:
        try:  # a newer format than this tool reads is refused (RecordTooNew), not overwritten
            read = load(QuarantineReasons, storage.read_bytes(key), key)
            doc = read.model_dump(mode="json", by_alias=True, exclude_unset=True)
        except ValidationError:
            doc = {"reason": note}  # unreadable: only the note stays
        record = build(QuarantineReasons, _withheld(doc, subjects, note))
        with tempfile.TemporaryDirectory() as scratch:
            tmp = Path(scratch) / REASONS
            tmp.write_bytes(dump(record))
            storage.delete(key)  # a note, not data: lost to a crash here, it is no one's record
            storage.publish(tmp, key)


def _withheld(value: Any, subjects: list[str], note: str) -> Any:
    if isinstance(value, dict):
        return {k: _withheld(v, subjects, note) for k, v in value.items()}
    if isinstance(value, list):
        return [_withheld(v, subjects, note) for v in value]
    if isinstance(value, str) and any(s in value for s in subjects):
        return note
    return value


def _raw_under_hold(storage: Storage, found: Plan, in_force: list[holds.Hold]) -> None:
    """Refuse when a raw copy or quarantined file holding the subject covers a held day
    (every day of its report: :func:`ingest.archive.holds.copy_hold`; unknown days count
    as held): a record of theirs may be only there (a row that was a duplicate at intake,
    or refused), and held data is never erased."""
    if not in_force:
        return
    spans = holds.source_spans(read_manifests(storage))
    for copy in found.copies:
        hold = holds.copy_hold(storage, copy.key, in_force, spans)
        if hold:  # the plan holds only copies with a record of theirs, found by value
            raise UnderLegalHold(
                f"refused: the subject is in {copy.key}, a report of days under legal hold {hold.id} "
                f"({hold.span()}): {hold.reason}",
                hint="a person decides: lift it with `ingest hold remove` first, or keep the data",
            )


def first_kept_days(retention: RetentionSettings, today: date) -> dict[str, date]:
    """Each dataset's first day kept under the retention (datasets kept forever absent)."""
    found = {}
    for dataset in (MESSAGES, *DATASETS.values()):
        days = retention.days_for(dataset)
        if days is not None:
            found[dataset] = today - timedelta(days=days)
    return found


def prune(
    storage: Storage, retention: RetentionSettings, *, actor: str, apply: bool, today: date | None = None
) -> Plan | ForgetOutcome | None:
    """Plan or carry out the removal of rows older than the retention, except held ones;
    None when no retention is set."""
    first_kept = first_kept_days(retention, today or date.today())
    if not first_kept:
        return None
    in_force = holds.active(storage)
    selection = ExpiredSelection(first_kept, lambda bot, day: bool(holds.covering(in_force, bot, day)))
    found = plan(storage, selection, kind="prune")
    found.meta["first_kept"] = {k: v.isoformat() for k, v in first_kept.items()}
    if not apply or (not found.files and not found.copies):
        return found
    reason = "retention: " + ", ".join(f"{k} from {v}" for k, v in sorted(first_kept.items()))
    return forget(storage, selection, found, actor=actor, reason=reason)
