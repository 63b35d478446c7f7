"""Compliance commands: report, keygen, export, verify-export, erase, prune, hold add |
list | remove, resolve, audit prove. Each parses its arguments, calls one library
function (ingest.ops.compliance, ingest.export) and renders what it returns.

Library modules are imported inside each command: ``ingest --help`` and every other
command load only what they use (start-up time is part of the promise).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from ingest.cli.application import EXIT_ATTENTION, EXIT_OK, app, attention_code
from ingest.cli.options import Apply, bot_ids, day, load_settings
from ingest.cli.render import (
    export_progress,
    out,
    print_bundle_check,
    print_cut,
    print_erasure,
    print_evidence,
    print_holds,
    print_proof,
    print_prune,
    print_resolution,
)
from ingest.inert import inert


@app.command(short_help="Write an HTML evidence report a person can read.")
def report(
    html_out: Annotated[Path, typer.Option("--html", help="Where the HTML page goes.")],
    run_verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Run `ingest verify` first (and keep its outcome), rather than show the last one.",
        ),
    ] = False,
) -> None:
    """Write a self-contained HTML evidence report a person can read without running a
    command: per bot a calendar of rows per day with the gaps marked, export windows by
    state, the last `ingest verify` (outcome, version, time), conflicts, quarantined
    reports, failed emails, totals and how to check it. No script, no network.

    Example: ingest report --html evidence.html
    """
    from ingest.ops.compliance import evidence_report

    print_evidence(evidence_report(load_settings(), html_out, run_verify=run_verify), html_out)


@app.command(short_help="Make an Ed25519 key pair for signing export bundles.")
def keygen(
    out_path: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Where the private key goes (mode 0600); the public key is written beside it as PATH.pub.",
        ),
    ],
) -> None:
    """Make an Ed25519 key pair for signing export bundles. Give PATH.pub to recipients;
    name PATH in INGEST_EXPORT__SIGNING_KEY_FILE (or a secret file). Never overwrites.

    Example: ingest keygen --out /run/secrets/export.key
    """
    from ingest.export.signing import write_keypair

    public = write_keypair(out_path)
    out.print(inert(f"private key {out_path} (mode 0600, keep it secret); public key {public}"))


@app.command(short_help="Cut a signed bundle of archived rows.")
def export(
    out_path: Annotated[Path, typer.Option("--out", help="BUNDLE.zip, or a new (or empty) folder.")],
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or jsonl.")] = "csv",
    bot: Annotated[
        list[str] | None,
        typer.Option(
            "--bot", help="Bot id (repeatable); default with --botuser: every bot.", callback=bot_ids
        ),
    ] = None,
    from_: Annotated[
        datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="First day (UTC), YYYY-MM-DD.")
    ] = None,
    to: Annotated[
        datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day (UTC), YYYY-MM-DD.")
    ] = None,
    conversation: Annotated[
        list[str] | None, typer.Option("--conversation", help="Only these conversation ids (repeatable).")
    ] = None,
    botuser: Annotated[
        list[str] | None,
        typer.Option(
            "--botuser",
            help="Subject access: every row of this bot user (repeatable), across bots and datasets.",
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            help="messages, standard, advanced or content_management (repeatable; default "
            "messages, or every dataset with --botuser).",
        ),
    ] = None,
) -> None:
    """Cut a signed bundle of archived rows: one file per bot and dataset, manifest.json
    (query, archive version, counts per bot and day, sha256 of each file, provenance),
    its Ed25519 signature (INGEST_EXPORT__SIGNING_KEY_FILE), SHA256SUMS and SUMMARY.txt.
    Streams: memory stays bounded whatever the size. See docs/COMPLIANCE.md.

    Example: ingest export --bot 0f9c...-uuid --from 2024-01-01 --to 2024-03-31 --format csv --out q1.zip
    """
    from ingest.export.bundle import Query
    from ingest.ops.compliance import export_bundle

    query = Query(
        bots=list(bot or []),
        first=day(from_),
        last=day(to),
        conversations=list(conversation or []),
        botusers=list(botuser or []),
        datasets=list(dataset or []),
        fmt=fmt,
    )
    settings = load_settings()
    with export_progress() as on_rows:
        cut = export_bundle(settings, query, out_path, on_rows=on_rows)
    print_cut(cut)
    # Records the bundle's provenance could not use (a newer format, unreadable): the bundle
    # is made and names them, and the exit code says a person should look.
    raise typer.Exit(EXIT_ATTENTION if cut.manifest.get("archive_problems") else EXIT_OK)


@app.command("verify-export", short_help="Check an export bundle's signature, files and counts.")
def verify_export(
    bundle: Annotated[Path, typer.Argument(help="The bundle: a .zip or its folder.")],
    public_key: Annotated[
        Path,
        typer.Option(
            "--public-key",
            help="The signer's public key (PEM), as received from them.",
            exists=True,
            dir_okay=False,
        ),
    ],
) -> None:
    """Check an export bundle: the manifest's signature under PUBLIC_KEY, that it holds
    exactly the files the manifest signs (plus manifest.json, its .sig and SHA256SUMS),
    every file's sha256 (SHA256SUMS and the manifest), and the rows per bot and day. A zip
    is bounded (members, sizes, ratio). Exit 1 naming each difference.

    Example: ingest verify-export q1.zip --public-key export.key.pub
    """
    from ingest.export.check import check_bundle

    problems = check_bundle(bundle, public_key.read_bytes())
    print_bundle_check(problems)
    raise typer.Exit(attention_code(bool(problems)))


@app.command(short_help="Erase a bot user's data everywhere (GDPR Art. 17).")
def erase(
    botuser: Annotated[list[str], typer.Option("--botuser", help="The bot user's id (repeatable).")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept in the audit log), e.g. the request's reference.")
    ],
    bot: Annotated[
        list[str] | None,
        typer.Option("--bot", help="Only this bot (repeatable; default every bot).", callback=bot_ids),
    ] = None,
    apply: Apply = False,
) -> None:
    """Erase a bot user (GDPR Art. 17): their rows from every table, raw copy and quarantined
    file, superseded files vacuumed at once, and an audit record with a salted hash of the id
    (never the id). Dry run unless --apply; refused (exit 1) when a legal hold covers their data.

    Example: ingest erase --botuser 4242 --reason "DSR-2026-017" --apply
    """
    from ingest.ops.compliance import erase_subjects

    found = erase_subjects(load_settings(), list(botuser), list(bot or []), reason=reason, apply=apply)
    print_erasure(found)


@app.command(short_help="Remove rows older than the retention period.")
def prune(apply: Apply = False) -> None:
    """Remove rows older than the retention (INGEST_RETENTION__DAYS, per dataset
    INGEST_RETENTION__DATASETS) from the tables and raw copies, except what a legal hold
    keeps; recorded like an erasure. Dry run unless --apply. `ingest run` applies it when set.

    Example: INGEST_RETENTION__DAYS=730 ingest prune --apply
    """
    from ingest.ops.compliance import prune_expired

    print_prune(prune_expired(load_settings(), apply=apply))


hold_app = typer.Typer(
    help="Legal holds: a bot's data (between two days, or all of it) never pruned or erased.\n\n"
    'Example: ingest hold add --bot 0f9c...-uuid --from 2024-01-01 --reason "case 2026-17"',
    no_args_is_help=True,
)
app.add_typer(hold_app, name="hold", short_help="Legal holds: data never pruned or erased.")


@hold_app.command("add")
def hold_add(
    bot: Annotated[str, typer.Option("--bot", help="The bot held.", callback=bot_ids)],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown when an erasure is refused).")],
    from_: Annotated[
        datetime | None,
        typer.Option("--from", formats=["%Y-%m-%d"], help="First day held (default: all before)."),
    ] = None,
    to: Annotated[
        datetime | None,
        typer.Option("--to", formats=["%Y-%m-%d"], help="Last day held (default: all after)."),
    ] = None,
) -> None:
    """Place a legal hold, kept in the archive and recorded in its audit log.

    Example: ingest hold add --bot 0f9c...-uuid --from 2024-01-01 --to 2024-06-30 --reason "case 2026-17"
    """
    from ingest.ops.compliance import place_hold

    hold = place_hold(load_settings(), bot, day(from_), day(to), reason=reason)
    out.print(inert(f"hold {hold.id} placed on bot {hold.bot_id}, {hold.span()}: {hold.reason}"))


@hold_app.command("list")
def hold_list() -> None:
    """List the legal holds in force.

    Example: ingest hold list
    """
    from ingest.ops.compliance import holds_in_force

    print_holds(holds_in_force(load_settings()))


@hold_app.command("remove")
def hold_remove(
    hold_id: Annotated[str, typer.Argument(help="The hold's id (see `ingest hold list`).")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is lifted (kept in the audit log).")],
) -> None:
    """Lift a legal hold; the audit log keeps that it was there, and who lifted it, why.

    Example: ingest hold remove 3f2a9c0d1e4b5a69 --reason "case closed"
    """
    from ingest.ops.compliance import lift_hold

    hold = lift_hold(load_settings(), hold_id, reason=reason)
    out.print(inert(f"hold {hold.id} on bot {hold.bot_id} lifted"))


@app.command(short_help="Settle a window two reports claim: keep the right one.")
def resolve(
    window: Annotated[int, typer.Option("--window", help="The window in conflict (see `ingest status`).")],
    keep: Annotated[
        str, typer.Option("--keep", help="The right report: its sha256, or 8+ characters of it.")
    ],
    reason: Annotated[
        str, typer.Option("--reason", help="Why it is the right one (kept in the audit log).")
    ] = "",
    apply: Annotated[
        bool, typer.Option("--apply", help="Act; without it, only show what would happen.")
    ] = False,
) -> None:
    """Settle a window whose reports are in conflict (a report naming no bot closed it, and
    another came for it): keep one; every other one's rows leave the tables, recorded like an
    erasure, with an audit record. Dry run unless --apply.

    Example: ingest resolve --window 7 --keep 3fa2c1d0 --reason "vendor ticket 881" --apply
    """
    from ingest.ops.compliance import settle_conflict

    print_resolution(settle_conflict(load_settings(), window, keep, reason=reason, apply=apply))


audit_app = typer.Typer(
    help="The audit log of erasures, prunes and holds.\n\nExample: ingest audit prove --botuser 4242",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit", short_help="The audit log: prove a person's erasure.")


@audit_app.command("prove")
def audit_prove(
    botuser: Annotated[str, typer.Option("--botuser", help="The bot user's id.")],
) -> None:
    """Show the audit records of this bot user's erasure: their hash in the log is the id's
    HMAC under the audit key this operator holds (the setting, or the key file beside the
    state store); the archive alone cannot tell. Exit 1 when no record names them.

    Example: ingest audit prove --botuser 4242
    """
    from ingest.ops.compliance import prove_erasure

    proof = prove_erasure(load_settings(), botuser)
    print_proof(proof)
    if not proof.found:
        raise typer.Exit(EXIT_ATTENTION)
