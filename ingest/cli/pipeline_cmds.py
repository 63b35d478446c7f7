"""Commands that bring reports into the archive, and the state of that work: backfill,
run, watch, import, fetch, status, retry. Each parses its arguments, calls one library
function (ingest.ops.job, ingest.ops.upkeep) and renders what it returns.

Library modules are imported inside each command: ``ingest --help`` and `ingest import`
load only what they use (start-up time is part of the promise).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ingest.cli.application import app, attention_code, run_exit_code, settle_gc
from ingest.cli.options import AsJson, Bots, FirstDay, LastDay, ReportType, bot_ids, date_range, load_settings
from ingest.cli.render import (
    print_backfill,
    print_fetched,
    print_problems,
    print_retention,
    print_retried,
    print_status,
    print_summary,
    progress_bar,
    row_counter,
)
from ingest.errors import ConfigError


@app.command(short_help="Plan export windows for a date range.")
def backfill(bot: Bots, from_: FirstDay, to: LastDay, report_type: ReportType = None) -> None:
    """Plan export windows for a date range; `ingest run` then submits them.

    Re-running it, or giving an overlapping range, plans only the days not planned yet.

    Example: ingest backfill --bot 0f9c...-uuid --from 2024-01-01 --to 2024-12-31
    """
    from ingest.ops.job import plan_windows

    first, last = date_range(from_, to)
    planned = plan_windows(load_settings(), bot, first, last, report_id=report_type)
    print_backfill(planned, bot)


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
    from ingest.ops.job import run_job

    settings = load_settings()
    summary = run_job(
        settings,
        until_done=until_done,
        timeout=timeout,
        progress=lambda store: progress_bar(store, settings),
        on_retention=print_retention,
    )
    print_summary(summary)
    raise typer.Exit(run_exit_code(summary))


@app.command(short_help="Long-running: wait for report emails with IMAP IDLE.")
def watch() -> None:
    """Long-running: wait for report emails with IMAP IDLE, with requester ticks between.

    Stops cleanly within seconds on SIGTERM or Ctrl-C, never in the middle of an email.

    Example: ingest watch
    """
    import signal
    import threading

    from ingest.ops.job import watch_job

    settings = load_settings()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    summary = watch_job(settings, stop)
    print_summary(summary)
    raise typer.Exit(attention_code(summary.needs_attention))


@app.command("import", short_help="Archive report files that arrived some other way.")
def import_(
    paths: Annotated[
        list[Path],
        typer.Argument(help="CSV, .csv.gz, .zip or .eml files.", exists=True, dir_okay=False, readable=True),
    ],
    bot: Annotated[str, typer.Option("--bot", help="The bot these reports belong to.", callback=bot_ids)],
    report_type: ReportType = None,
) -> None:
    """Archive report files that arrived some other way, with the same checks and dedup.

    Example: ingest import ~/Downloads/message_report.csv --bot 0f9c...-uuid
    """
    import ingest.archive.stream  # noqa: F401  (imported by import_files anyway: before settling)
    import ingest.pipeline.intake  # noqa: F401  (likewise)
    from ingest.ops.job import import_reports

    settle_gc()
    settings = load_settings()
    with row_counter() as on_rows:
        summary = import_reports(settings, paths, bot, report_id=report_type, on_rows=on_rows)
    print_summary(summary)
    raise typer.Exit(attention_code(summary.needs_attention))


@app.command(short_help="Fetch a date range by the synchronous GET API.")
def fetch(bot: Bots, from_: FirstDay, to: LastDay, report_type: ReportType = None) -> None:
    """Fetch a range with the synchronous GET API, straight into the archive.

    Windows of at most 15 days; a truncated answer (500 rows) is bisected, and a day that
    still hits the cap is planned as an emailed export for `ingest run`.

    Example: ingest fetch --bot 0f9c...-uuid --from 2024-06-01 --to 2024-06-30
    """
    from ingest.ops.job import fetch_reports

    first, last = date_range(from_, to)
    fetched = fetch_reports(
        load_settings(), bot, first, last, report_id=report_type, on_fetched=print_fetched
    )
    problems = [problem for _, done in fetched for problem in done.problems]
    print_problems(problems)  # conflicts, as `ingest import` shows them: exit 1
    raise typer.Exit(attention_code(bool(problems)))


@app.command(short_help="Windows per bot, rows archived and the last error.")
def status(as_json: AsJson = False) -> None:
    """Windows per bot and their states, rows archived and the last error.

    Example: ingest status --json | jq .
    """
    from ingest.ops.upkeep import status as collect

    report = collect(load_settings())
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        print_status(report)


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
    from ingest.ops.job import retry_failed_emails

    if not failed:
        raise ConfigError("say what to retry: ingest retry --failed")
    summary, retried = retry_failed_emails(load_settings())
    print_retried(retried)
    print_summary(summary)
    attention = summary.needs_attention or any(r.outcome != "archived" for r in retried)
    raise typer.Exit(attention_code(attention))
