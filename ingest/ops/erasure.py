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
from datetime import date, timedelta

from ingest.archive import audit, holds
from ingest.archive.forget import (
    ExpiredSelection,
    Outcome,
    Plan,
    SubjectSelection,
    forget,
    plan,
)
from ingest.archive.manifests import read_manifests
from ingest.archive.storage import Storage
from ingest.errors import ConfigError, UnderLegalHold
from ingest.report_types import DATASETS, MESSAGES
from ingest.settings import RetentionSettings, Settings


def actor_of(settings: Settings) -> str:
    """Who acts, for the audit log: the setting, else the OS user."""
    if settings.audit.actor:
        return settings.audit.actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def salt_setting(settings: Settings) -> str | None:
    """The subject-hash salt of the settings, if any."""
    return settings.audit.salt.get_secret_value() if settings.audit.salt is not None else None


def erase(
    out: Storage,
    subjects: list[str],
    bots: list[str],
    *,
    reason: str,
    actor: str,
    apply: bool,
    salt: str | None = None,
) -> Plan | Outcome:
    """Plan (``apply`` False: the dry run) or carry out the erasure of these bot users.
    Raises :class:`UnderLegalHold` when a hold covers a day holding their rows."""
    if not subjects or not all(s.strip() for s in subjects):
        raise ConfigError("name the subject: --botuser ID")
    if apply and not reason.strip():
        raise ConfigError("an erasure needs a --reason (it is kept in the audit log)")
    selection = SubjectSelection(tuple(subjects), tuple(bots))
    found = plan(out, selection, kind="erase")
    in_force = holds.active(out)
    for change in found.files:
        covering = holds.covering(in_force, change.bot_id, date.fromisoformat(change.day))
        if covering:
            hold = covering[0]
            raise UnderLegalHold(
                f"refused: the subject's rows of bot {change.bot_id} on {change.day} are under legal hold "
                f"{hold.id} ({hold.span()}): {hold.reason}",
                hint="a person decides: lift it with `ingest hold remove` first, or keep the data",
            )
    _raw_under_hold(out, found, in_force)
    if not apply:
        return found
    found.meta["subject_sha256"] = [audit.subject_hash(out, s, salt) for s in subjects]
    found.meta["key_id"] = audit.key_id(salt) if salt else None
    found.meta["bots"] = list(bots)
    return forget(out, selection, found, actor=actor, reason=reason)


def _raw_under_hold(out: Storage, found: Plan, in_force: list[holds.Hold]) -> None:
    """Refuse when a raw copy or quarantined file holding the subject covers a held day
    (every day of its report: :func:`ingest.archive.holds.copy_hold`; unknown days count
    as held): a record of theirs may be only there (a row that was a duplicate at intake,
    or refused), and held data is never erased."""
    if not in_force:
        return
    spans = holds.source_spans(read_manifests(out))
    for copy in found.copies:
        hold = holds.copy_hold(out, copy.key, in_force, spans)
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
    out: Storage, retention: RetentionSettings, *, actor: str, apply: bool, today: date | None = None
) -> Plan | Outcome | None:
    """Plan or carry out the removal of rows older than the retention, except held ones;
    None when no retention is set."""
    first_kept = first_kept_days(retention, today or date.today())
    if not first_kept:
        return None
    in_force = holds.active(out)
    selection = ExpiredSelection(first_kept, lambda bot, day: bool(holds.covering(in_force, bot, day)))
    found = plan(out, selection, kind="prune")
    found.meta["first_kept"] = {k: v.isoformat() for k, v in first_kept.items()}
    if not apply or (not found.files and not found.copies):
        return found
    reason = "retention: " + ", ".join(f"{k} from {v}" for k, v in sorted(first_kept.items()))
    return forget(out, selection, found, actor=actor, reason=reason)
