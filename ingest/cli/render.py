"""Everything the ``ingest`` command prints, in one place: run summaries and problems,
progress bars, erasure plans and each command's report. Stored or received text (file
names, API messages, reasons) is printed inert (ingest.inert): never markup, never a
control character. rich's progress and table modules are imported where used: they are no
part of a command's start-up that does not show them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from ingest.inert import inert
from ingest.logs import json_wanted

if TYPE_CHECKING:
    from ingest.archive.compact import CompactSummary, VacuumSummary
    from ingest.archive.forget import ForgetOutcome, Plan
    from ingest.archive.holds import Hold
    from ingest.export.bundle import Cut
    from ingest.ops.compliance import Forgetting, Proof
    from ingest.ops.doctor import Check
    from ingest.ops.evidence import Evidence
    from ingest.ops.resolve import Resolution
    from ingest.ops.upkeep import Migrated
    from ingest.pipeline.failed_emails import Retried
    from ingest.pipeline.summary import FetchSummary, RunSummary
    from ingest.settings import Settings
    from ingest.state.store import Store

# No emoji codes: a report's text shown back (a bot name, a file name) keeps its ":x:" as
# typed, and start-up skips loading rich's table of 3,600 emoji names.
err_console = Console(stderr=True, emoji=False)
out = Console(emoji=False)


def _utc_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _live() -> bool:
    """Bars only for a person at a terminal: not in JSON-log mode, not when piped."""
    return not json_wanted() and out.is_terminal


@contextmanager
def row_counter() -> Iterator[Callable[[str, int], None] | None]:
    """A live count of rows read per file on a terminal; nothing in JSON-log mode."""
    if not _live():
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
    if not _live():
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
    from ingest.state.windows import FINAL

    if not _live():
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


def print_retention(done: ForgetOutcome) -> None:
    """What `ingest run`'s retention pruned (an erasure's outcome with a record)."""
    rows = sum(done.plan.rows_by_table().values())
    out.print(
        f"retention: pruned {rows} row(s), {len(done.plan.copies)} raw file(s) rewritten ({done.record})"
    )


def print_backfill(planned: list[Any], bots: list[str]) -> None:
    """What `ingest backfill` planned."""
    out.print(f"planned {len(planned)} new window(s) for {len(bots)} bot(s); run `ingest run` to submit them")


def print_fetched(bot_id: str, done: FetchSummary) -> None:
    """One line per bot `ingest fetch` fetched."""
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


def print_retried(retried: list[Retried]) -> None:
    """What became of each email `ingest retry --failed` took up again."""
    for one in retried:
        label = one.record["message_id"] or f"uid {one.record['uid']}"
        out.print(inert(f"{label}: {one.outcome}" + (f" ({one.reason})" if one.reason else "")))
    if not retried:
        out.print("no failed emails to retry")


def print_status(report: dict[str, Any]) -> None:
    """`ingest status` for a person: the state store's view, then the Delta tables."""
    from ingest.ops.status import render_status

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


def print_compacted(done: CompactSummary) -> None:
    out.print(
        f"compacted {done.partitions} partition(s): {done.files_before} files -> "
        f"{done.files_after}, {done.rows} rows"
        + (f"; finished {done.finished} interrupted compaction(s)" if done.finished else "")
    )


def print_migrated(migrated: Migrated) -> None:
    from ingest.ops.verify import render_text

    done = migrated.done
    out.print(
        f"migrated: {done.commits} commit(s), {done.files} file(s), {done.rows} rows"
        + (f"; {done.already} committed by an earlier run" if done.already else "")
        + "".join(f"; {name} at version {version}" for name, version in done.tables.items())
        + f"; subject index: {done.indexed} data file(s) read into it"
    )
    typer.echo(render_text(migrated.report))


def print_vacuumed(done: VacuumSummary, *, dry_run: bool) -> None:
    for dataset, removed in done.removed.items():
        left = done.left.get(dataset, [])
        out.print(
            f"{dataset}: {'would remove' if dry_run else 'removed'} {len(removed)} file(s); "
            f"{len(left)} data file(s) outside the current snapshot left"
        )
        for key in left:
            out.print(inert(f"  left: {key}"))


def print_checks(checks: list[Check]) -> None:
    """`ingest doctor`'s table: check, verdict, detail (shown inert)."""
    from rich.table import Table

    table = Table("check", "", "detail")
    for check in checks:
        verdict = (
            "[red]FAIL[/]" if not check.ok else "[bold yellow]WARN[/]" if check.warning else "[green]pass[/]"
        )
        table.add_row(inert(check.name), verdict, inert(check.detail))
    out.print(table)


def print_evidence(evidence: Evidence, html_out: object) -> None:
    rows = sum(b.rows for b in evidence.bots.values())
    gaps = sum(len(b.gaps) for b in evidence.bots.values())
    out.print(inert(f"wrote {html_out}: {len(evidence.bots)} bot(s), {rows} message rows, {gaps} gap day(s)"))


def print_cut(cut: Cut) -> None:
    out.print(
        inert(
            f"exported {cut.rows} row(s) in {sum(1 for f in cut.files if f.rows)} file(s) to "
            f"{cut.out}; signed by key sha256 "
            f"{cut.manifest['signature']['public_key_sha256'][:16]}..."
        ),
        soft_wrap=True,  # one line, piped or not: a long path stays whole
    )
    if cut.files_total:  # a subject access: the subject index chose what to read
        out.print(f"  data files read: {cut.files_read} of {cut.files_total}")
    for note in cut.notes:
        out.print(inert(f"  note: {note}"), soft_wrap=True)
    for problem in cut.manifest.get("archive_problems") or []:  # named in the bundle too
        out.print(inert(f"  archive problem: {problem}"), soft_wrap=True)


def print_bundle_check(problems: list[str]) -> None:
    for problem in problems:  # one line each, never wrapped: a name stays greppable
        out.print(inert(f"  - {problem}", markup=False), markup=False, highlight=False, soft_wrap=True)
    if problems:
        out.print(f"verify-export: {len(problems)} problem(s)", soft_wrap=True)
        return
    out.print(  # one line, piped or not (a script greps it)
        "verify-export: OK, signature, files (exactly those signed), checksums and counts match",
        soft_wrap=True,
    )


def print_plan(found: Plan, *, applied: bool) -> None:
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


def _print_pending(pending: list[str]) -> None:
    """A dry run leaves an interrupted erasure or prune as it is, and says so."""
    for forget_id in pending:
        out.print(
            inert(
                f"erasure {forget_id} was interrupted and is pending: the next --apply (or any command "
                "that writes) finishes it; this dry run shows the archive as it is now"
            )
        )


def print_erasure(found: Forgetting) -> None:
    """`ingest erase`: the plan (dry run) or what was erased, and its records."""
    from ingest.archive.forget import ForgetOutcome

    _print_pending(found.pending)
    done = found.done
    quoting = (done.plan if isinstance(done, ForgetOutcome) else done).meta.get("reasons_quoting", 0)
    if quoting:  # a refused file's reason quoted its first line: their record
        verb = "withheld" if isinstance(done, ForgetOutcome) else "to withhold (they quote this id)"
        out.print(f"recorded reasons (reason.json, state store) {verb}: {quoting}")
    if not isinstance(done, ForgetOutcome):
        print_plan(done, applied=False)
        return
    print_plan(done.plan, applied=True)
    if done.record:
        out.print(inert(f"erasure {done.plan.id}: record {done.record}, audit {done.audit}"))
    else:
        kept = "no record of this subject in the tables or copies" if quoting else "nothing of this subject"
        out.print(inert(f"{kept} in the archive; the request is on record: {done.audit}"))


def print_prune(found: Forgetting) -> None:
    """`ingest prune`: the plan (dry run) or what was pruned, and its records."""
    from ingest.archive.forget import ForgetOutcome

    _print_pending(found.pending)
    done = found.done
    if not isinstance(done, ForgetOutcome):
        print_plan(done, applied=False)
        return
    print_plan(done.plan, applied=True)
    if done.record:
        out.print(inert(f"prune {done.plan.id}: record {done.record}, audit {done.audit}"))


def print_holds(found: list[Hold]) -> None:
    for hold in found:
        out.print(
            inert(
                f"{hold.id}  bot {hold.bot_id}  {hold.span()}  placed {hold.placed_at} "
                f"by {hold.actor}: {hold.reason}"
            )
        )
    if not found:
        out.print("no legal holds in force")


def print_resolution(done: Resolution) -> None:
    """`ingest resolve`: the report kept, those rejected and what it cost (or would)."""
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


def print_proof(proof: Proof) -> None:
    """`ingest audit prove`: each record naming the bot user, and the key it is under."""
    if proof.unprovable:
        out.print(
            f"{proof.unprovable} records are hashed under keys you do not hold (they cannot be checked)"
        )
    for record, key in proof.found:
        entry = record.entry
        out.print(
            inert(
                f"{record.key}: {entry.kind} at {entry.at} by {entry.actor}: "
                f"{entry.reason} (hash under {key.label})"
            ),
            soft_wrap=True,
        )
    if not proof.found:
        out.print("no audit record names this bot user under the keys held")
