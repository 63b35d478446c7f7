"""The compliance jobs: erasure (GDPR Art. 17), retention prune, legal holds, settling a
window in conflict, proving an erasure, signed export bundles and the evidence report.
Each function is what its command does, lock and all (ingest.ops.job.open_job), so a
Python caller gets the same records and refusals::

    from ingest.ops.compliance import erase_subjects
    found = erase_subjects(load_settings(), ["4242"], [], reason="DSR-2026-017", apply=False)
    found.done.rows_by_table()  # the dry run's plan: rows per table that would go

Heavy modules are imported inside the functions: the command line imports this module only
for the command it runs.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from ingest import __version__
from ingest.errors import ConfigError
from ingest.ops.job import keep_verify, open_job
from ingest.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from ingest.archive.audit import AuditRecord
    from ingest.archive.forget import ForgetOutcome, Plan
    from ingest.archive.holds import Hold
    from ingest.export.bundle import Cut, Query
    from ingest.ops.auditkey import Key
    from ingest.ops.evidence import Evidence
    from ingest.ops.resolve import Resolution


@dataclass
class Forgetting:
    """An erasure's or prune's plan (a dry run) or outcome (applied), and the interrupted
    ones a dry run left pending (a dry run changes nothing, so it finishes none)."""

    done: Plan | ForgetOutcome
    pending: list[str]


def erase_subjects(
    settings: Settings, botusers: list[str], bots: list[str], *, reason: str, apply: bool
) -> Forgetting:
    """`ingest erase`: plan (``apply`` False) or carry out the erasure of these bot users;
    refused (:class:`ingest.errors.UnderLegalHold`) when a legal hold covers their data."""
    from ingest.archive.forget import pending
    from ingest.ops.auditkey import audit_key
    from ingest.ops.erasure import actor_of, erase

    with open_job(settings, finish_forgetting=apply) as (store, storage):  # a dry run changes nothing
        left = [] if apply else pending(storage)
        done = erase(
            storage,
            botusers,
            bots,
            reason=reason,
            actor=actor_of(settings),
            apply=apply,
            salt=audit_key(settings, storage) if apply else None,  # a dry run hashes nothing
            store=store,
        )
    return Forgetting(done, left)


def prune_expired(settings: Settings, *, apply: bool) -> Forgetting:
    """`ingest prune`: plan or carry out the removal of rows older than the retention,
    except what a legal hold keeps. A :class:`ConfigError` when no retention is set."""
    from ingest.archive.forget import pending
    from ingest.ops.erasure import actor_of, prune

    with open_job(settings, finish_forgetting=apply) as (_, storage):  # a dry run changes nothing
        left = [] if apply else pending(storage)
        done = prune(storage, settings.retention, actor=actor_of(settings), apply=apply)
    if done is None:
        raise ConfigError("no retention is set", hint="INGEST_RETENTION__DAYS or INGEST_RETENTION__DATASETS")
    return Forgetting(done, left)


def place_hold(settings: Settings, bot: str, first: date | None, last: date | None, *, reason: str) -> Hold:
    """`ingest hold add`: a legal hold, kept in the archive and recorded in its audit log."""
    from ingest.archive.holds import place
    from ingest.ops.erasure import actor_of

    with open_job(settings) as (_, storage):
        return place(storage, bot, first, last, reason=reason, actor=actor_of(settings))


def holds_in_force(settings: Settings) -> list[Hold]:
    """`ingest hold list`: the legal holds in force."""
    from ingest.archive.holds import active
    from ingest.archive.storage import storage_for

    return active(storage_for(settings))


def lift_hold(settings: Settings, hold_id: str, *, reason: str) -> Hold:
    """`ingest hold remove`: lift a legal hold; the audit log keeps that it was there."""
    from ingest.archive.holds import lift
    from ingest.ops.erasure import actor_of

    with open_job(settings) as (_, storage):
        return lift(storage, hold_id, reason=reason, actor=actor_of(settings))


def settle_conflict(settings: Settings, window: int, keep: str, *, reason: str, apply: bool) -> Resolution:
    """`ingest resolve`: keep one of the reports a window in conflict holds; every other
    one's rows leave the tables, recorded like an erasure (dry run unless ``apply``)."""
    from ingest.ops.erasure import actor_of
    from ingest.ops.resolve import resolve

    with open_job(settings) as (store, storage):
        return resolve(storage, store, window, keep, reason=reason, actor=actor_of(settings), apply=apply)


@dataclass
class Proof:
    """The audit records naming a bot user under the keys held, and how many records are
    hashed under keys not held (they cannot be checked)."""

    found: list[tuple[AuditRecord, Key]]
    unprovable: int


def prove_erasure(settings: Settings, botuser: str) -> Proof:
    """`ingest audit prove`: the audit records of this bot user's erasure."""
    from ingest.archive.storage import storage_for
    from ingest.ops.auditkey import prove, unprovable

    storage = storage_for(settings)
    return Proof(prove(settings, storage, botuser), unprovable(settings, storage))


def export_bundle(
    settings: Settings,
    query: Query,
    out: Path,
    *,
    on_rows: Callable[[str, int, int | None], None] | None = None,
) -> Cut:
    """`ingest export`: cut a bundle of archived rows, signed with the export signing key."""
    from ingest.archive.storage import storage_for
    from ingest.export.bundle import cut_bundle
    from ingest.export.signing import load_private_key

    key = load_private_key(signing_key_pem(settings))
    return cut_bundle(
        storage_for(settings), query, out, key=key, tool=f"certainly-ingest {__version__}", on_rows=on_rows
    )


def signing_key_pem(settings: Settings) -> bytes:
    """The export signing key's PEM (a file, or a secret's text); never printed."""
    conf = settings.export
    if conf.signing_key_file is not None:
        try:
            return Path(conf.signing_key_file).read_bytes()
        except OSError as err:
            raise ConfigError(
                f"INGEST_EXPORT__SIGNING_KEY_FILE: cannot read it ({err.strerror or err})"
            ) from None
    if conf.signing_key is not None:
        return conf.signing_key.get_secret_value().encode()
    raise ConfigError(
        "INGEST_EXPORT__SIGNING_KEY_FILE is not set: exports are signed",
        hint="make a key with `ingest keygen --out PATH`",
    )


def evidence_report(settings: Settings, html_out: Path, *, run_verify: bool) -> Evidence:
    """`ingest report`: write the self-contained HTML evidence report (after a fresh
    verify, kept in the state store, when ``run_verify``); what it shows."""
    from ingest.archive.storage import storage_for
    from ingest.ops.evidence import collect_evidence, render_html
    from ingest.ops.verify import verify_archive
    from ingest.state.store import Store

    state = Path(settings.state.path)
    storage = storage_for(settings)
    # Only read a state store that exists: opening one would create it.
    with Store.open(state) if state.exists() else nullcontext() as store:
        if run_verify:
            checked = verify_archive(storage, store)
            if store is not None:
                keep_verify(store, checked)
        evidence = collect_evidence(storage, store, version=__version__)
    html_out.write_text(render_html(evidence), encoding="utf-8")
    return evidence
