"""The job as a library: what `ingest run` and every command that writes do around the
pipeline, so that a Python caller (a scheduler, a notebook, a test) gets the same
behaviour as the command line.

Around the work itself a job holds the job lock (one job at a time), opens the state
store, builds the archive's storage once, sweeps a killed job's staging files, and finishes
an erasure or prune a killed job left half done. `ingest run` then applies the retention
(when one is set) and writes the metrics textfile (when one is configured).

The Python API, equal to ``ingest backfill ...`` then ``ingest run --until-done``::

    from datetime import date
    from ingest.ops.job import plan_windows, run_job
    from ingest.settings import load_settings

    settings = load_settings()  # INGEST_* variables, a TOML file, secret files
    plan_windows(settings, ["0f9c...-uuid"], date(2024, 1, 1), date(2024, 1, 31))
    summary = run_job(settings, until_done=True, timeout=3600)
    summary.rows_written, summary.needs_attention

Errors are :class:`ingest.errors.IngestError` subclasses, as the command maps them to exit
codes; :class:`ingest.errors.LockHeld` means another job holds the lock.

Only what `ingest import` needs is imported at module level: the command's start-up time
is part of its promise, so the run's own machinery (IMAP, HTTP, metrics, erasure) is
imported inside the functions that use it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from ingest import __version__
from ingest.archive.layout import FORGETTING
from ingest.archive.storage import Storage, storage_for
from ingest.pipeline.summary import FetchSummary, RunSummary
from ingest.settings import Settings
from ingest.state.lock import exclusive_lock
from ingest.state.store import Store

if TYPE_CHECKING:
    from ingest.archive.forget import ForgetOutcome
    from ingest.ops.verify import VerifyReport
    from ingest.pipeline.failed_emails import Retried

log = logging.getLogger(__name__)

#: Called once the job has opened its store: returns a context whose value is called after
#: each pass of ``run_job(until_done=True)`` (the command line's progress bar).
Progress = Callable[[Store], AbstractContextManager[Callable[[RunSummary], None]]]


@contextmanager
def open_job(settings: Settings, *, finish_forgetting: bool = True) -> Iterator[tuple[Store, Storage]]:
    """What every job that writes does first: hold the job lock, open the state store,
    build the archive's storage once, remove a killed job's temporary files (safe only
    while holding the lock) and, unless ``finish_forgetting`` is False (a dry run changes
    nothing), finish an erasure or prune a killed job left. Yields the store and storage."""
    with exclusive_lock(settings.state.path), Store.open(settings.state.path) as store:
        storage = storage_for(settings)
        storage.sweep_staging()
        if finish_forgetting and storage.objects(f"{FORGETTING}/"):  # a killed run left one
            from ingest.archive.forget import resume  # only then: it is no import's start-up cost

            for forget_id, outcome in resume(storage):
                log.warning("erasure %s interrupted before: %s", forget_id, outcome)
        yield store, storage


def run_job(
    settings: Settings,
    *,
    until_done: bool = False,
    timeout: float | None = None,
    progress: Progress | None = None,
    on_retention: Callable[[ForgetOutcome], None] | None = None,
) -> RunSummary:
    """`ingest run`: one pass (or, ``until_done``, passes until every window is archived or
    failed, at most ``timeout`` seconds), then the retention, then the metrics textfile.

    ``on_retention`` hears of a retention prune that removed something; ``progress`` is
    described at :data:`Progress`.
    """
    from ingest.pipeline.passes import run_once, run_until_done

    started = time.monotonic()
    with open_job(settings) as (store, storage):
        if until_done:
            with progress(store) if progress else nullcontext(None) as on_pass:
                summary = run_until_done(settings, store, timeout=timeout, on_pass=on_pass, storage=storage)
        else:
            summary = run_once(settings, store, storage=storage)
        done = apply_retention(settings, storage)
        if done is not None and on_retention is not None:
            on_retention(done)
        write_metrics(settings, store, summary, duration=time.monotonic() - started)
    return summary


def apply_retention(settings: Settings, storage: Storage) -> ForgetOutcome | None:
    """Prune what the retention (INGEST_RETENTION__*) lets go, when one is set; the outcome
    when something was removed (and recorded), else None."""
    if settings.retention.days is None and not settings.retention.datasets:
        return None  # none set: nothing to import or read
    from ingest.archive.forget import ForgetOutcome
    from ingest.ops.erasure import actor_of, prune

    done = prune(storage, settings.retention, actor=actor_of(settings), apply=True)
    return done if isinstance(done, ForgetOutcome) and done.record else None


def write_metrics(settings: Settings, store: Store, summary: RunSummary, *, duration: float) -> None:
    """The Prometheus textfile of this run, when INGEST_METRICS__TEXTFILE is set."""
    if not settings.metrics.textfile:
        return
    from ingest.ops.metrics import render_metrics, write_textfile

    write_textfile(
        settings.metrics.textfile,
        render_metrics(
            store,
            emails_processed=summary.emails_archived,
            rows_written=summary.rows_written,
            duration=duration,
            succeeded=not summary.needs_attention,
        ),
    )


def watch_job(settings: Settings, stop: threading.Event) -> RunSummary:
    """`ingest watch`: IMAP IDLE with requester ticks between, until ``stop`` is set
    (returns within about a second, never in the middle of an email)."""
    from ingest.pipeline.watch import watch

    with open_job(settings) as (store, storage):
        return watch(settings, store, stop, storage=storage)


def plan_windows(
    settings: Settings, bots: list[str], first: date, last: date, *, report_id: int | None = None
) -> list[tuple[str, date, date]]:
    """`ingest backfill`: plan export windows for these bots and days (only the days not
    planned yet); `run_job` then submits them. The new windows: (bot, first day, last day)."""
    from ingest.request.requester import plan_backfill

    with Store.open(settings.state.path) as store:
        return plan_backfill(
            store,
            bots,
            first,
            last,
            window_days=settings.requester.window_days,
            report_id=report_id or settings.certainly.report_id,
        )


def import_reports(
    settings: Settings,
    paths: list[Path],
    bot: str,
    *,
    report_id: int | None = None,
    on_rows: Callable[[str, int], None] | None = None,
) -> RunSummary:
    """`ingest import`: archive report files (CSV, .csv.gz, .zip, .eml) that arrived some
    other way, with the same checks and dedup as the emailed ones."""
    from ingest.pipeline.file_import import import_files

    summary = RunSummary()
    with open_job(settings) as (store, storage):
        import_files(
            storage,
            store,
            paths,
            bot,
            summary,
            on_rows=on_rows,
            report_id=report_id or settings.certainly.report_id,
            max_inflated_bytes=settings.output.max_inflated_bytes,
            temp_dir=settings.output.temp_dir,
        )
    return summary


def fetch_reports(
    settings: Settings,
    bots: list[str],
    first: date,
    last: date,
    *,
    report_id: int | None = None,
    on_fetched: Callable[[str, FetchSummary], None] | None = None,
) -> list[tuple[str, FetchSummary]]:
    """`ingest fetch`: each bot's days by the synchronous GET API, straight into the
    archive; ``on_fetched`` hears of each bot as it is done."""
    from ingest.pipeline.get import fetch_range
    from ingest.request.client import client_from

    client = client_from(settings.certainly)
    fetched: list[tuple[str, FetchSummary]] = []
    with open_job(settings) as (store, storage):
        for bot in bots:
            done = fetch_range(
                storage, store, client, bot, first, last, report_id=report_id or settings.certainly.report_id
            )
            fetched.append((bot, done))
            if on_fetched is not None:
                on_fetched(bot, done)
    return fetched


def retry_failed_emails(settings: Settings) -> tuple[RunSummary, list[Retried]]:
    """`ingest retry --failed`: every email set aside as failed, handled again as a pass
    would; the summary and what became of each."""
    from ingest.pipeline.failed_emails import retry_failed

    summary = RunSummary()
    with open_job(settings) as (store, storage):
        retried = retry_failed(settings, store, storage, summary)
    return summary, retried


def verify_and_record(settings: Settings, *, as_of: str | None = None) -> VerifyReport:
    """`ingest verify`: the archive against its manifests (see ingest.ops.verify), the
    outcome kept in the state store (when there is one) for the evidence report."""
    from ingest.ops.verify import verify_archive

    state = Path(settings.state.path)
    # Only read a state store that exists: opening one would create it.
    with Store.open(state) if state.exists() else nullcontext() as store:
        report = verify_archive(storage_for(settings), store, as_of=as_of)
        if store is not None:
            keep_verify(store, report)
    return report


def keep_verify(store: Store, report: VerifyReport) -> None:
    """Keep a verify outcome in the state store; a store that cannot be written (mounted
    read-only, say) costs the record, never the verification."""
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
        log.warning("verify outcome not kept in the state store: %s", err)
