"""Commands that check and look after the archive: verify, compact, migrate, vacuum. Each
parses its arguments, calls one library function (ingest.ops.job, ingest.ops.upkeep) and
renders what it returns.

Library modules are imported inside each command: ``ingest --help`` and every other
command load only what they use (start-up time is part of the promise).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ingest.cli.application import app, attention_code
from ingest.cli.options import AsJson, bot_ids, load_settings
from ingest.cli.render import print_compacted, print_migrated, print_vacuumed


@app.command(short_help="Prove the archive against its manifests.")
def verify(
    as_json: AsJson = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Check the tables' snapshot at this version (a number) or time (RFC 3339)."
        ),
    ] = None,
) -> None:
    """Re-hash the archive against its manifests; check each Delta table's snapshot against
    them, (bot_id, id) uniqueness, partitions and counts; list per bot the days covered and
    the gaps. Exit 1 on any problem. The outcome is kept in the state store (when there is
    one) for `ingest report`.

    Example: ingest verify --json > verify.json; ingest verify --as-of 12
    """
    from ingest.ops.job import verify_and_record
    from ingest.ops.verify import render_text, to_json

    report = verify_and_record(load_settings(), as_of=as_of)
    typer.echo(to_json(report) if as_json else render_text(report))
    raise typer.Exit(attention_code(not report.ok))


@app.command(short_help="Merge each partition's small files into one.")
def compact(
    bot: Annotated[
        list[str] | None, typer.Option("--bot", help="Only this bot (repeatable).", callback=bot_ids)
    ] = None,
    dataset: Annotated[
        str, typer.Option(help="messages, standard, advanced or content_management.")
    ] = "messages",
    min_files: Annotated[
        int, typer.Option(min=2, help="Merge partitions with at least this many files.")
    ] = 2,
) -> None:
    """Merge each partition's small files into one (sorted by timestamp), recorded in a
    compaction manifest; `ingest verify` stays clean. Existing files are otherwise never
    rewritten: run this when many small deliveries have piled up.

    Example: ingest compact --bot 0f9c...-uuid --min-files 4
    """
    from ingest.ops.upkeep import compact as compact_partitions

    print_compacted(compact_partitions(load_settings(), dataset=dataset, bots=bot, min_files=min_files))


@app.command(short_help="Turn a plain Parquet archive into Delta tables.")
def migrate() -> None:
    """Turn an archive of plain hive-partitioned Parquet (with manifests) into Delta tables, in
    place: every file the manifests list is committed as it is (no data file rewritten), one
    commit per report. An archive's old audit salt moves out of it, beside the state store.
    Safe to re-run, and after a crash; verify runs afterwards (exit 1 on any problem).

    Example: ingest migrate
    """
    from ingest.ops.upkeep import migrate as migrate_to_delta

    migrated = migrate_to_delta(load_settings())
    print_migrated(migrated)
    raise typer.Exit(attention_code(not migrated.report.ok))


@app.command(short_help="Remove data files no table version reads any more.")
def vacuum(
    retention_hours: Annotated[
        int,
        typer.Option(
            min=0,
            help="Keep files older versions within this many hours still read (Delta's default: 7 days).",
        ),
    ] = 7 * 24,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
) -> None:
    """Remove data files no table version within the retention reads (replaced by `ingest
    compact`) and files never committed (a crash before a Delta commit); then list what is
    still on disk outside the current snapshots. Time travel (`verify --as-of`) reaches back
    only as far as the retention.

    Example: ingest vacuum --retention-hours 168
    """
    from ingest.ops.upkeep import vacuum as vacuum_tables

    done = vacuum_tables(load_settings(), retention_hours=retention_hours, dry_run=dry_run)
    print_vacuumed(done, dry_run=dry_run)
