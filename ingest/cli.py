"""The ``ingest`` command: parse arguments, build settings once, call the library.

Exit codes (one place, :func:`exit_code_for`): 0 done; 1 finished but something needs a
person (failed window, quarantined or unmatched report, token or login refused);
2 usage or configuration error; 3 a server was unreachable, try again later.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from typer.core import TyperOption

from ingest import __version__
from ingest.errors import ConfigError, IngestError, LockHeld, TransientError
from ingest.inert import inert
from ingest.logs import json_wanted, setup_logging
from ingest.settings import Settings, load_settings

if TYPE_CHECKING:
    from ingest.archive.forget import Plan
    from ingest.archive.storage import Storage
    from ingest.ops.verify import VerifyReport
    from ingest.pipeline.summary import RunSummary
    from ingest.state.store import Store

app = typer.Typer(
    help="Archive Certainly chatbot message reports: request exports, pick the emailed CSVs "
    "out of an IMAP mailbox, and keep a validated Parquet archive.\n\n"
    "Example: ingest backfill --bot BOT_ID --from 2024-01-01 --to 2024-12-31 && ingest run --until-done",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)
out = Console()


def _flag_shows_no_type(display_type_rich: Callable[..., str | None]) -> Callable[..., str | None]:
    """typer 0.2x prints ``<bool>`` beside every flag in --help, as if it took a value; a
    flag takes none, so it gets no type column (other options keep theirs)."""

    def shown(self: TyperOption, ctx: typer.Context) -> str | None:
        return None if self.is_flag else display_type_rich(self, ctx)

    return shown


TyperOption.display_type_rich = _flag_shows_no_type(TyperOption.display_type_rich)  # type: ignore[method-assign]

EXIT_OK, EXIT_ATTENTION, EXIT_CONFIG, EXIT_TRANSIENT = 0, 1, 2, 3
#: The job's umask: files 0640, folders 0750.
JOB_UMASK = 0o027
_VERBOSE = False  # set once by the --verbose option
#: main() turns the cyclic garbage collector off while the libraries are imported.
_GC_HELD = False


def exit_code_for(error: IngestError) -> int:
    """The documented exit code for an error."""
    if isinstance(error, LockHeld):
        return EXIT_OK
    if isinstance(error, ConfigError):
        return EXIT_CONFIG
    if isinstance(error, TransientError):
        return EXIT_TRANSIENT
    return EXIT_ATTENTION


def _settle_gc() -> None:
    """After the imports: keep what they made out of every later collection, and collect
    again. Importing polars, pyarrow, pydantic and the package leaves about 120,000
    objects for the collector to track, and its collections walked them again and again,
    during the imports and during the run (bench/README.md: 0.1 s and more of CPU)."""
    global _GC_HELD
    if _GC_HELD:
        _GC_HELD = False
        gc.freeze()
        gc.enable()


def _version(value: bool) -> None:
    if value:
        out.print(f"certainly-ingest {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    global _VERBOSE
    _VERBOSE = verbose
    # Archive, state and metrics files 0640, folders 0750: reports are personal data, and
    # nobody outside the job's user and group should read them (see the README).
    os.umask(JOB_UMASK)
    setup_logging(verbose)
    if ctx.invoked_subcommand != "import":  # import settles it after its own imports
        _settle_gc()


@app.command(short_help="Try the whole pipeline offline, on a simulator.")
def demo(
    bots: Annotated[int, typer.Option(min=1, max=20, help="How many simulated bots.")] = 2,
    days: Annotated[int, typer.Option(min=1, max=730, help="Days of history per bot.")] = 60,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the archive and state (default: a new temporary folder)."),
    ] = None,
) -> None:
    """Run the whole pipeline against the built-in simulator and an embedded IMAP server.

    No credentials and no network beyond 127.0.0.1. Needs the demo extra (the embedded
    IMAP server): pip install 'certainly-ingest[demo]'.

    Example: ingest demo --bots 2 --days 60
    """
    import logging

    from ingest.ops.demo import (
        run_demo,  # the simulator is only imported when asked for
    )

    if not _VERBOSE:
        logging.getLogger().setLevel(logging.WARNING)  # the demo prints its own summary

    summary = run_demo(bots=bots, days=days, out_dir=out_dir, console=out)
    raise typer.Exit(EXIT_ATTENTION if summary.needs_attention else EXIT_OK)


def _bot_ids(values: list[str] | str | None) -> list[str] | str | None:
    """Every ``--bot`` value must be a safe bot id (ingest.settings.BOT_ID_PATTERN): it
    becomes a folder name and an S3 key part. Anything else is exit 2 naming ``--bot``."""
    from ingest.settings import check_bot_id

    for value in [values] if isinstance(values, str) else values or []:
        check_bot_id(value, "--bot")
    return values


# The options backfill and fetch share.
Bots = Annotated[
    list[str],
    typer.Option(
        "--bot",
        help="Bot id (repeatable): letters, digits, '-' and '_', like the vendor's UUIDs.",
        callback=_bot_ids,
    ),
]
FirstDay = Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First day, YYYY-MM-DD.")]
LastDay = Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day, YYYY-MM-DD.")]
ReportType = Annotated[
    int | None,
    typer.Option(
        "--report-type",
        min=1,
        max=4,
        help="1 Message Data, 2 Standard, 3 Advanced, 4 Content "
        "Management (default: INGEST_CERTAINLY__REPORT_ID).",
    ),
]


@app.command(short_help="Plan export windows for a date range.")
def backfill(
    bot: Bots,
    from_: FirstDay,
    to: LastDay,
    report_type: ReportType = None,
) -> None:
    """Plan export windows for a date range; `ingest run` then submits them.

    Re-running it, or giving an overlapping range, plans only the days not planned yet.

    Example: ingest backfill --bot 0f9c...-uuid --from 2024-01-01 --to 2024-12-31
    """
    from ingest.request.requester import plan_backfill
    from ingest.state.store import Store

    first, last = _date_range(from_, to)
    settings = load_settings()
    with Store.open(settings.state.path) as store:
        planned = plan_backfill(
            store,
            bot,
            first,
            last,
            window_days=settings.requester.window_days,
            report_id=report_type or settings.certainly.report_id,
        )
    out.print(f"planned {len(planned)} new window(s) for {len(bot)} bot(s); run `ingest run` to submit them")


@app.command(short_help="One pass: submit an export, read mail, archive reports.")
def run(
    until_done: Annotated[
        bool, typer.Option("--until-done", help="Repeat passes until every window is archived or failed.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --until-done: give up after this many seconds.")
    ] = None,
) -> None:
    """One pass of the job: submit the next export, read the mailbox, archive reports.

    This is the container's default command (a Kubernetes CronJob, a cron'd docker run).

    Example: ingest run --until-done --timeout 3600
    """
    from ingest.ops.metrics import render_metrics, write_textfile
    from ingest.pipeline.passes import run_once, run_until_done

    settings = load_settings()
    started = time.monotonic()
    with job(settings) as (store, storage):
        if until_done:
            with progress_bar(store, settings) as on_pass:
                summary = run_until_done(settings, store, timeout=timeout, on_pass=on_pass, out=storage)
        else:
            summary = run_once(settings, store, out=storage)
        _apply_retention(settings, storage)
        if settings.metrics.textfile:
            write_textfile(
                settings.metrics.textfile,
                render_metrics(
                    store,
                    emails_processed=summary.emails_archived,
                    rows_written=summary.rows_written,
                    duration=time.monotonic() - started,
                    succeeded=not summary.needs_attention,
                ),
            )
    print_summary(summary)
    raise typer.Exit(run_exit_code(summary))


def _apply_retention(settings: Settings, storage: Storage) -> None:
    """`ingest run` prunes what the retention (INGEST_RETENTION__*) lets go, when one is set."""
    if settings.retention.days is None and not settings.retention.datasets:
        return  # none set: nothing to import or read
    from ingest.archive.forget import Outcome
    from ingest.ops.erasure import actor_of, prune

    done = prune(storage, settings.retention, actor=actor_of(settings), apply=True)
    if isinstance(done, Outcome) and done.record:
        rows = sum(done.plan.rows_by_table().values())
        out.print(
            f"retention: pruned {rows} row(s), {len(done.plan.copies)} raw file(s) rewritten ({done.record})"
        )


@contextmanager
def row_counter() -> Iterator[Callable[[str, int], None] | None]:
    """A live count of rows read per file on a terminal; nothing in JSON-log mode."""
    if json_wanted() or not out.is_terminal:
        yield None
        return
    from rich.progress import Progress, TaskID, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=out,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def count(name: str, rows: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"reading {name}", total=None)
            bar.advance(tasks[name], rows)

        yield count


@contextmanager
def export_progress() -> Iterator[Callable[[str, int, int | None], None] | None]:
    """A bar per bundle file on a terminal (rows written of those expected, when known);
    nothing in JSON-log mode or when piped."""
    if json_wanted() or not out.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("exporting {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=out,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(name: str, rows: int, expected: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=expected)
            bar.advance(tasks[name], rows)

        yield advance


def _pace(store: Store, settings: Settings | None) -> str:
    """The GET pacing for the progress bar: rate, GETs sent, 429s honoured, a wait."""
    from ingest.request.pacing import PACING_NOTE

    if settings is None or settings.requester.via == "email":
        return ""
    note = store.note(PACING_NOTE) or {}
    wait = max(0.0, float(note.get("not_before", 0.0)) - time.time())
    return (
        f"GET <= {settings.requester.get_rate:g}/s: {note.get('requests', 0)} sent, "
        f"{note.get('throttled', 0)} x 429" + (f", waiting {wait:.0f} s" if wait >= 1 else "")
    )


@contextmanager
def progress_bar(store: Store, settings: Settings | None = None) -> Iterator[Callable[[RunSummary], None]]:
    """A bar of windows done on a terminal, with the GET pacing (routing auto or get);
    nothing in JSON-log mode or when piped."""
    from ingest.state.store import FINAL

    if json_wanted() or not out.is_terminal:
        yield lambda summary: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("archiving"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        TextColumn("{task.fields[rows]} rows"),
        TextColumn("{task.fields[pace]}"),
        TimeElapsedColumn(),
        console=out,
    ) as bar:
        task = bar.add_task("windows", total=len(store.windows()), rows=0, pace=_pace(store, settings))

        def update(summary: RunSummary) -> None:
            windows = store.windows()
            bar.update(
                task,
                total=len(windows),
                rows=summary.rows_written,
                completed=sum(w.state in FINAL for w in windows),
                pace=_pace(store, settings),
            )

        yield update


@app.command(short_help="Long-running: wait for report emails with IMAP IDLE.")
def watch() -> None:
    """Long-running: wait for report emails with IMAP IDLE, with requester ticks between.

    Stops cleanly within seconds on SIGTERM or Ctrl-C, never in the middle of an email.

    Example: ingest watch
    """
    import signal
    import threading

    from ingest.pipeline.passes import watch as watch_mailbox

    settings = load_settings()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with job(settings) as (store, storage):
        summary = watch_mailbox(settings, store, stop, out=storage)
    print_summary(summary)
    raise typer.Exit(EXIT_ATTENTION if summary.needs_attention else EXIT_OK)


@app.command("import", short_help="Archive report files that arrived some other way.")
def import_(
    paths: Annotated[
        list[Path],
        typer.Argument(help="CSV, .csv.gz, .zip or .eml files.", exists=True, dir_okay=False, readable=True),
    ],
    bot: Annotated[str, typer.Option("--bot", help="The bot these reports belong to.", callback=_bot_ids)],
    report_type: ReportType = None,
) -> None:
    """Archive report files that arrived some other way, with the same checks and dedup.

    Example: ingest import ~/Downloads/message_report.csv --bot 0f9c...-uuid
    """
    import ingest.archive.stream  # noqa: F401  (imported by import_files anyway: before settling)
    from ingest.pipeline.intake import import_files
    from ingest.pipeline.summary import RunSummary

    _settle_gc()
    settings = load_settings()
    summary = RunSummary()
    with job(settings) as (store, storage), row_counter() as on_rows:
        import_files(
            storage,
            store,
            paths,
            bot,
            summary,
            on_rows=on_rows,
            report_id=report_type or settings.certainly.report_id,
            max_inflated_bytes=settings.output.max_inflated_bytes,
            temp_dir=settings.output.temp_dir,
        )
    print_summary(summary)
    raise typer.Exit(EXIT_ATTENTION if summary.needs_attention else EXIT_OK)


@app.command(short_help="Fetch a date range by the synchronous GET API.")
def fetch(
    bot: Bots,
    from_: FirstDay,
    to: LastDay,
    report_type: ReportType = None,
) -> None:
    """Fetch a range with the synchronous GET API, straight into the archive.

    Windows of at most 15 days; a truncated answer (500 rows) is bisected, and a day that
    still hits the cap is planned as an emailed export for `ingest run`.

    Example: ingest fetch --bot 0f9c...-uuid --from 2024-06-01 --to 2024-06-30
    """
    from ingest.pipeline.get import fetch_range
    from ingest.request.client import client_from

    first, last = _date_range(from_, to)
    settings = load_settings()
    client = client_from(settings.certainly)
    problems: list[str] = []
    with job(settings) as (store, storage):
        for bot_id in bot:
            done = fetch_range(
                storage,
                store,
                client,
                bot_id,
                first,
                last,
                report_id=report_type or settings.certainly.report_id,
            )
            out.print(
                inert(
                    f"{bot_id}: {done.requests} GET(s), {done.windows_archived} window(s) archived, "
                    f"rows {done.rows_read} read = {done.rows_written} written + {done.rows_duplicate} "
                    f"duplicates + {done.rows_rejected} rejected"
                    + (
                        f"; {len(done.fallback_days)} day(s) over 500 rows planned for email"
                        if done.fallback_days
                        else ""
                    )
                )
            )
            problems.extend(done.problems)
    print_problems(problems)  # conflicts, as `ingest import` shows them: exit 1
    raise typer.Exit(EXIT_ATTENTION if problems else EXIT_OK)


@app.command(short_help="Windows per bot, rows archived and the last error.")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Windows per bot and their states, rows archived and the last error.

    Example: ingest status --json | jq .
    """
    from ingest.archive.compact import ALL_DATASETS
    from ingest.archive.delta import table_versions
    from ingest.archive.storage import storage_for
    from ingest.ops.status import collect_status, render_status
    from ingest.state.store import Store

    settings = load_settings()
    with Store.open(settings.state.path) as store:
        report = collect_status(store, settings.requester)
    try:  # the state store is what status is about: an unreachable archive is one line
        report["tables"] = table_versions(storage_for(settings), ALL_DATASETS)
    except IngestError as error:
        report["tables"], report["tables_error"] = {}, str(error)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    render_status(report, out, err_console)
    for name, table in report["tables"].items():
        out.print(
            inert(
                f"Delta table {name}: version {table['version']}, {table['files']} files, "
                f"last commit {table['last_commit']}"
            )
        )
    if report.get("tables_error"):
        err_console.print(inert(f"Delta tables: {report['tables_error']}"))


@app.command(short_help="Re-attempt emails set aside as failed, after a fix.")
def retry(
    failed: Annotated[
        bool, typer.Option("--failed", help="Re-attempt every email `ingest status` lists as failed.")
    ] = False,
) -> None:
    """Re-attempt the emails set aside as failed (see `ingest status`), after a fix.

    Each is found in the failed folder by its Message-ID (else where it failed, by its
    recorded UID) and handled as `ingest run` would: archived ones move to the processed
    folder; one failing again stays failed with its new reason (exit 1).

    Example: ingest retry --failed
    """
    from ingest.pipeline.summary import RunSummary
    from ingest.pipeline.watch import retry_failed

    if not failed:
        raise ConfigError("say what to retry: ingest retry --failed")
    settings = load_settings()
    summary = RunSummary()
    with job(settings) as (store, storage):
        retried = retry_failed(settings, store, storage, summary)
    for one in retried:
        label = one.record["message_id"] or f"uid {one.record['uid']}"
        out.print(inert(f"{label}: {one.outcome}" + (f" ({one.reason})" if one.reason else "")))
    if not retried:
        out.print("no failed emails to retry")
    print_summary(summary)
    raise typer.Exit(
        EXIT_ATTENTION
        if summary.needs_attention or any(r.outcome != "archived" for r in retried)
        else EXIT_OK
    )


@app.command(short_help="Prove the archive against its manifests.")
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
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
    from ingest.archive.storage import storage_for
    from ingest.ops.verify import render_text, to_json, verify_archive
    from ingest.state.store import Store

    settings = load_settings()
    state = Path(settings.state.path)
    # Only read a state store that exists: opening one would create it.
    with Store.open(state) if state.exists() else nullcontext() as store:
        report = verify_archive(storage_for(settings), store, as_of=as_of)
        if store is not None:  # the evidence report (`ingest report`) shows the last outcome
            _keep_verify(store, report)
    typer.echo(to_json(report) if as_json else render_text(report))
    raise typer.Exit(EXIT_OK if report.ok else EXIT_ATTENTION)


def _keep_verify(store: Store, report: VerifyReport) -> None:
    """Keep a verify outcome in the state store; a store that cannot be written (mounted
    read-only, say) costs the record, never the verification."""
    import logging
    import sqlite3

    try:
        store.record_verify(
            version=__version__,
            root=report.root,
            ok=report.ok,
            problems=report.problems,
            files=report.files,
            rows=report.rows,
        )
    except sqlite3.Error as err:
        logging.getLogger(__name__).warning("verify outcome not kept in the state store: %s", err)


@app.command(short_help="Merge each partition's small files into one.")
def compact(
    bot: Annotated[
        list[str] | None, typer.Option("--bot", help="Only this bot (repeatable).", callback=_bot_ids)
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
    from ingest.archive.compact import compact_archive

    settings = load_settings()
    with job(settings) as (_, storage):
        done = compact_archive(storage, dataset=dataset, bots=bot, min_files=min_files)
    out.print(
        f"compacted {done.partitions} partition(s): {done.files_before} files -> "
        f"{done.files_after}, {done.rows} rows"
        + (f"; finished {done.finished} interrupted compaction(s)" if done.finished else "")
    )


@app.command(short_help="Turn a plain Parquet archive into Delta tables.")
def migrate() -> None:
    """Turn an archive of plain hive-partitioned Parquet (with manifests) into Delta tables, in
    place: every file the manifests list is committed as it is (no data file rewritten), one
    commit per report. An archive's old audit salt moves out of it, beside the state store.
    Safe to re-run, and after a crash; verify runs afterwards (exit 1 on any problem).

    Example: ingest migrate
    """
    from ingest.archive.migrate import migrate_archive
    from ingest.ops.auditkey import move_archive_salt
    from ingest.ops.verify import render_text, verify_archive

    settings = load_settings()
    with job(settings) as (_, storage):
        done = migrate_archive(storage)
        move_archive_salt(settings, storage)  # the audit salt out of the archive, kept beside the state
        report = verify_archive(storage)
    out.print(
        f"migrated: {done.commits} commit(s), {done.files} file(s), {done.rows} rows"
        + (f"; {done.already} committed by an earlier run" if done.already else "")
        + "".join(f"; {name} at version {version}" for name, version in done.tables.items())
        + f"; subject index: {done.indexed} data file(s) read into it"
    )
    typer.echo(render_text(report))
    raise typer.Exit(EXIT_OK if report.ok else EXIT_ATTENTION)


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
    from ingest.archive.compact import vacuum_archive

    settings = load_settings()
    with job(settings) as (_, storage):
        done = vacuum_archive(storage, retention_hours=retention_hours, dry_run=dry_run)
    for dataset, removed in done.removed.items():
        left = done.left.get(dataset, [])
        out.print(
            f"{dataset}: {'would remove' if dry_run else 'removed'} {len(removed)} file(s); "
            f"{len(left)} data file(s) outside the current snapshot left"
        )
        for key in left:
            out.print(inert(f"  left: {key}"))


@app.command(short_help="Check settings, API token, mailbox, output and state.")
def doctor() -> None:
    """Check settings, API token, IMAP login and folders, output and state store.

    Requests no export, creates no mail folder and moves no mail.
    Exit 1 when any check fails.

    Example: ingest doctor
    """
    from ingest.ops.doctor import run_checks

    checks = run_checks(load_settings())
    from rich.table import Table

    table = Table("check", "", "detail")
    for check in checks:
        verdict = (
            "[red]FAIL[/]" if not check.ok else "[bold yellow]WARN[/]" if check.warning else "[green]pass[/]"
        )
        table.add_row(inert(check.name), verdict, inert(check.detail))  # detail: shown inert
    out.print(table)
    raise typer.Exit(EXIT_OK if all(c.ok for c in checks) else EXIT_ATTENTION)


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
    from ingest.archive.storage import storage_for
    from ingest.ops.evidence import collect_evidence, render_html
    from ingest.ops.verify import verify_archive
    from ingest.state.store import Store

    settings = load_settings()
    state = Path(settings.state.path)
    storage = storage_for(settings)
    with Store.open(state) if state.exists() else nullcontext() as store:
        if run_verify:
            checked = verify_archive(storage, store)
            if store is not None:
                _keep_verify(store, checked)
        evidence = collect_evidence(storage, store, version=__version__)
    html_out.write_text(render_html(evidence), encoding="utf-8")
    rows = sum(b.rows for b in evidence.bots.values())
    gaps = sum(len(b.gaps) for b in evidence.bots.values())
    out.print(inert(f"wrote {html_out}: {len(evidence.bots)} bot(s), {rows} message rows, {gaps} gap day(s)"))


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
            "--bot", help="Bot id (repeatable); default with --botuser: every bot.", callback=_bot_ids
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
    from ingest.archive.storage import storage_for
    from ingest.export.bundle import Query, cut_bundle
    from ingest.export.signing import load_private_key

    settings = load_settings()
    key = load_private_key(_signing_key_pem(settings))
    query = Query(
        bots=list(bot or []),
        first=from_.date() if from_ else None,
        last=to.date() if to else None,
        conversations=list(conversation or []),
        botusers=list(botuser or []),
        datasets=list(dataset or []),
        fmt=fmt,
    )
    with export_progress() as on_rows:
        cut = cut_bundle(
            storage_for(settings),
            query,
            out_path,
            key=key,
            tool=f"certainly-ingest {__version__}",
            on_rows=on_rows,
        )
    out.print(
        inert(
            f"exported {cut.rows} row(s) in {sum(1 for f in cut.files if f.rows)} file(s) to "
            f"{cut.out}; signed by key sha256 "
            f"{cut.manifest['signature']['public_key_sha256'][:16]}..."
        ),
        soft_wrap=True,  # one line, piped or not: a long path stays whole
    )
    if query.botusers:  # the subject index chose what to read
        out.print(f"  data files read: {cut.files_read} of {cut.files_total}")
    for note in cut.notes:
        out.print(inert(f"  note: {note}"), soft_wrap=True)


def _signing_key_pem(settings: Settings) -> bytes:
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
    for problem in problems:  # one line each, never wrapped: a name stays greppable
        out.print(inert(f"  - {problem}", markup=False), markup=False, highlight=False, soft_wrap=True)
    if problems:
        out.print(f"verify-export: {len(problems)} problem(s)", soft_wrap=True)
        raise typer.Exit(EXIT_ATTENTION)
    out.print(  # one line, piped or not (a script greps it)
        "verify-export: OK, signature, files (exactly those signed), checksums and counts match",
        soft_wrap=True,
    )


def _print_plan(found: Plan, *, applied: bool) -> None:
    """What an erasure or prune touches (or touched): per table rows and files, raw copies."""
    verb = "removed" if applied else "would remove"
    tables = found.rows_by_table()
    for dataset, rows in sorted(tables.items()):
        files = [f for f in found.files if f.dataset == dataset]
        rewritten = sum(1 for f in files if f.forgotten < f.rows)
        out.print(
            f"{dataset}: {verb} {rows} row(s) in {len(files)} file(s) ({rewritten} rewritten without them)"
        )
    for dataset in found.skipped:
        out.print(f"{dataset}: no bot user column, nothing of a subject in it (0 rows)")
    if "data_files" in found.meta:  # the subject index chose what to read
        out.print(f"data files read: {found.meta['data_files_read']} of {found.meta['data_files']}")
    if not tables:
        out.print(f"no rows to {found.kind}")
    _print_copies(found, applied=applied)


def _print_copies(found: Plan, *, applied: bool) -> None:
    """Per raw or quarantined file, the records that go (ids or positions, never their
    content) and whether the file goes whole (every record in it is one to forget)."""
    verb = "rewritten" if applied else "to rewrite"
    out.print(f"raw and quarantined files {verb}: {len(found.copies)}")
    for copy in found.copies:
        shown = ", ".join(copy.records[:20]) + (", ..." if len(copy.records) > 20 else "")
        whole = " (file removed)" if applied else " (the whole file: every record in it is theirs)"
        line = f"  {copy.key}: {copy.rows_removed} record(s){whole if copy.removed else ''}: {shown}"
        out.print(inert(line), soft_wrap=True)  # one line a file: a script can read it
    for key in found.unsearched:
        line = f"  not searched (its bot is unknown, and --bot limits the search): {key}"
        out.print(inert(line), soft_wrap=True)
    if not applied:
        out.print("dry run: nothing changed; add --apply to act")


def _say_pending(storage: Storage, apply: bool) -> None:
    """A dry run leaves an interrupted erasure or prune as it is, and says so."""
    from ingest.archive.forget import pending

    for forget_id in [] if apply else pending(storage):
        out.print(
            inert(
                f"erasure {forget_id} was interrupted and is pending: the next --apply (or any command "
                "that writes) finishes it; this dry run shows the archive as it is now"
            )
        )


@app.command(short_help="Erase a bot user's data everywhere (GDPR Art. 17).")
def erase(
    botuser: Annotated[list[str], typer.Option("--botuser", help="The bot user's id (repeatable).")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept in the audit log), e.g. the request's reference.")
    ],
    bot: Annotated[
        list[str] | None,
        typer.Option("--bot", help="Only this bot (repeatable; default every bot).", callback=_bot_ids),
    ] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Act; without it, only show what would go.")] = False,
) -> None:
    """Erase a bot user (GDPR Art. 17): their rows from every table, raw copy and quarantined
    file, superseded files vacuumed at once, and an audit record with a salted hash of the id
    (never the id). Dry run unless --apply; refused (exit 1) when a legal hold covers their data.

    Example: ingest erase --botuser 4242 --reason "DSR-2026-017" --apply
    """
    from ingest.archive.forget import Outcome
    from ingest.ops.auditkey import audit_key
    from ingest.ops.erasure import actor_of
    from ingest.ops.erasure import erase as erase_subject

    settings = load_settings()
    with job(settings, finish_forgetting=apply) as (store, storage):  # a dry run changes nothing
        _say_pending(storage, apply)
        done = erase_subject(
            storage,
            list(botuser),
            list(bot or []),
            reason=reason,
            actor=actor_of(settings),
            apply=apply,
            salt=audit_key(settings, storage) if apply else None,  # a dry run hashes nothing
            store=store,
        )
    quoting = (done.plan if isinstance(done, Outcome) else done).meta.get("reasons_quoting", 0)
    if quoting:  # a refused file's reason quoted its first line: their record
        verb = "withheld" if isinstance(done, Outcome) else "to withhold (they quote this id)"
        out.print(f"recorded reasons (reason.json, state store) {verb}: {quoting}")
    if isinstance(done, Outcome):
        _print_plan(done.plan, applied=True)
        if done.record:
            out.print(inert(f"erasure {done.plan.id}: record {done.record}, audit {done.audit}"))
        else:
            kept = (
                "no record of this subject in the tables or copies" if quoting else "nothing of this subject"
            )
            out.print(inert(f"{kept} in the archive; the request is on record: {done.audit}"))
    else:
        _print_plan(done, applied=False)


@app.command(short_help="Remove rows older than the retention period.")
def prune(
    apply: Annotated[bool, typer.Option("--apply", help="Act; without it, only show what would go.")] = False,
) -> None:
    """Remove rows older than the retention (INGEST_RETENTION__DAYS, per dataset
    INGEST_RETENTION__DATASETS) from the tables and raw copies, except what a legal hold
    keeps; recorded like an erasure. Dry run unless --apply. `ingest run` applies it when set.

    Example: INGEST_RETENTION__DAYS=730 ingest prune --apply
    """
    from ingest.archive.forget import Outcome
    from ingest.ops.erasure import actor_of
    from ingest.ops.erasure import prune as prune_expired

    settings = load_settings()
    with job(settings, finish_forgetting=apply) as (_, storage):  # a dry run changes nothing
        _say_pending(storage, apply)
        done = prune_expired(storage, settings.retention, actor=actor_of(settings), apply=apply)
    if done is None:
        raise ConfigError("no retention is set", hint="INGEST_RETENTION__DAYS or INGEST_RETENTION__DATASETS")
    if isinstance(done, Outcome):
        _print_plan(done.plan, applied=True)
        if done.record:
            out.print(inert(f"prune {done.plan.id}: record {done.record}, audit {done.audit}"))
    else:
        _print_plan(done, applied=False)


hold_app = typer.Typer(
    help="Legal holds: a bot's data (between two days, or all of it) never pruned or erased.\n\n"
    'Example: ingest hold add --bot 0f9c...-uuid --from 2024-01-01 --reason "case 2026-17"',
    no_args_is_help=True,
)
app.add_typer(hold_app, name="hold", short_help="Legal holds: data never pruned or erased.")


@hold_app.command("add")
def hold_add(
    bot: Annotated[str, typer.Option("--bot", help="The bot held.", callback=_bot_ids)],
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
    from ingest.archive.holds import place
    from ingest.ops.erasure import actor_of

    settings = load_settings()
    with job(settings) as (_, storage):
        hold = place(
            storage,
            bot,
            from_.date() if from_ else None,
            to.date() if to else None,
            reason=reason,
            actor=actor_of(settings),
        )
    out.print(inert(f"hold {hold.id} placed on bot {hold.bot_id}, {hold.span()}: {hold.reason}"))


@hold_app.command("list")
def hold_list() -> None:
    """List the legal holds in force.

    Example: ingest hold list
    """
    from ingest.archive.holds import active
    from ingest.archive.storage import storage_for

    found = active(storage_for(load_settings()))
    for hold in found:
        out.print(
            inert(
                f"{hold.id}  bot {hold.bot_id}  {hold.span()}  placed {hold.placed_at} "
                f"by {hold.actor}: {hold.reason}"
            )
        )
    if not found:
        out.print("no legal holds in force")


@hold_app.command("remove")
def hold_remove(
    hold_id: Annotated[str, typer.Argument(help="The hold's id (see `ingest hold list`).")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is lifted (kept in the audit log).")],
) -> None:
    """Lift a legal hold; the audit log keeps that it was there, and who lifted it, why.

    Example: ingest hold remove 3f2a9c0d1e4b5a69 --reason "case closed"
    """
    from ingest.archive.holds import lift
    from ingest.ops.erasure import actor_of

    settings = load_settings()
    with job(settings) as (_, storage):
        hold = lift(storage, hold_id, reason=reason, actor=actor_of(settings))
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
    from ingest.ops.erasure import actor_of
    from ingest.ops.resolve import resolve as settle

    settings = load_settings()
    with job(settings) as (store, storage):
        done = settle(storage, store, window, keep, reason=reason, actor=actor_of(settings), apply=apply)
    w = done.window
    verb = "keeps" if done.applied else "would keep"
    out.print(
        inert(
            f"window {w.id} ({w.bot_id} {w.from_date}..{w.to_date}) {verb} "
            f"{done.kept['filename']} (sha256 {str(done.kept['sha256'])[:16]})"
        )
    )
    for other in done.rejected:
        gone = "its rows leave the tables" if other["outcome"] == "archived" else "it stays in quarantine"
        out.print(inert(f"  rejected: {other['filename']} (sha256 {str(other['sha256'])[:16]}): {gone}"))
    out.print(f"rows {'removed' if done.applied else 'to remove'}: {done.rows_removed}")
    if done.applied:
        out.print(inert(f"audit: {done.audit}" + "".join(f"; erasure record {e}" for e in done.erasures)))
        print_problems(done.summary.problems)
    else:
        out.print("dry run: nothing changed; add --reason TEXT --apply to act")


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
    from ingest.archive.storage import storage_for
    from ingest.ops.auditkey import prove, unprovable

    settings = load_settings()
    storage = storage_for(settings)
    found = prove(settings, storage, botuser)
    foreign = unprovable(settings, storage)
    if foreign:
        out.print(f"{foreign} records are hashed under keys you do not hold (they cannot be checked)")
    for record, key in found:
        doc = record.doc
        out.print(
            inert(
                f"{record.key}: {doc.get('kind')} at {doc.get('at')} by {doc.get('actor')}: "
                f"{doc.get('reason')} (hash under {key.label})"
            ),
            soft_wrap=True,
        )
    if not found:
        out.print("no audit record names this bot user under the keys held")
        raise typer.Exit(EXIT_ATTENTION)


@contextmanager
def job(settings: Settings, *, finish_forgetting: bool = True) -> Iterator[tuple[Store, Storage]]:
    """What every command that writes does first: hold the job lock, open the state store,
    build the archive's storage once, and remove a killed job's temporary files (safe only
    while holding the lock). Yields the store and the storage."""
    from ingest.archive.layout import FORGETTING
    from ingest.archive.storage import storage_for
    from ingest.state.lock import exclusive_lock
    from ingest.state.store import Store

    with exclusive_lock(settings.state.path), Store.open(settings.state.path) as store:
        storage = storage_for(settings)
        storage.sweep_staging()
        if finish_forgetting and storage.objects(f"{FORGETTING}/"):  # an erasure or prune a killed run left
            from ingest.archive.forget import resume  # only then: it is no import's start-up cost

            for forget_id, outcome in resume(storage):
                err_console.print(f"erasure {forget_id} interrupted before: {outcome}")
        yield store, storage


def _date_range(from_: datetime, to: datetime) -> tuple[date, date]:
    if to.date() < from_.date():
        raise ConfigError(f"--to {to.date()} is before --from {from_.date()}")
    return from_.date(), to.date()


def _utc_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_exit_code(summary: RunSummary) -> int:
    """1 when a person should look; 3 when the API only said "slow down" (run again later)."""
    if summary.needs_attention:
        return EXIT_ATTENTION
    return EXIT_TRANSIENT if summary.only_throttled else EXIT_OK


def print_summary(summary: RunSummary) -> None:
    """One short block a person (or a log collector) can read."""
    out.print(
        f"windows: {summary.submitted} submitted, {summary.accepted} accepted, "
        f"{summary.deferred} deferred, {summary.lost} lost, {summary.failed} failed\n"
        f"emails: {summary.emails_seen} seen, {summary.emails_archived} archived, "
        f"{summary.emails_ignored} ignored (sender not allowed)"
        + (f", {summary.emails_failed} failed (see ingest status)" if summary.emails_failed else "")
        + "\n"
        f"reports: {summary.reports_archived} archived, {summary.reports_duplicate} already had, "
        f"{summary.reports_unmatched} unmatched, {summary.reports_quarantined} with rejects\n"
        f"rows: {summary.rows_read} read = {summary.rows_written} written + "
        f"{summary.rows_duplicate} duplicates + {summary.rows_rejected} rejected; "
        f"{summary.files_written} files"
        + (
            f"\nGET: throttled (429) {summary.get_throttled} time(s); the API asks us to slow down"
            if summary.get_throttled
            else ""
        )
        + (
            f"\nGET: waiting until {_utc_text(summary.get_waiting_until)}"
            if summary.get_waiting_until
            else ""
        )
    )
    print_problems(summary.problems)


def print_problems(problems: list[str]) -> None:
    """One ``attention:`` line on stderr per problem a person should look at."""
    for problem in problems:
        err_console.print(f"attention: {inert(problem, markup=False)}", markup=False, highlight=False)


def main() -> None:
    """Entry point: run the app, mapping package errors to one line and an exit code.

    Usage errors are click's own (exit 2); everything this package raises on purpose is
    an :class:`IngestError` and ends here as ``error: <message> (<hint>)``.
    """
    global _GC_HELD
    gc.disable()  # off until the command's imports are done (see _settle_gc)
    _GC_HELD = True
    try:
        app()
    except IngestError as error:
        message = f"error: {error}"
        if error.hint:
            message += f" ({error.hint})"
        if isinstance(error, LockHeld):
            message = str(error)
        err_console.print(inert(message, markup=False), markup=False, highlight=False, soft_wrap=True)
        sys.exit(exit_code_for(error))
    except KeyboardInterrupt:
        err_console.print("aborted")
        sys.exit(130)
