"""``ingest import``: archive report files that arrived some other way than by email (CSV,
.csv.gz, .zip, .eml), for one bot named by hand, each file its own unit.

Example::

    summary = RunSummary()
    import_files(Path("archive"), store, [Path("export.csv")], "bot-1", summary)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from ingest.archive.storage import Storage
from ingest.errors import ReportRejected, one_line, stops_the_run
from ingest.mail.attachments import (
    Inflater,
    ParsedEmail,
    ReportFile,
    parse_email,
    reports_in_file,
    safe_name,
    scratch,
)
from ingest.pipeline.intake import archive_report, email_provenance
from ingest.pipeline.summary import RunSummary
from ingest.report_types import MESSAGE_REPORT_ID
from ingest.settings import check_bot_id
from ingest.state.store import Store

log = logging.getLogger(__name__)


def import_files(
    root: Storage | Path,
    store: Store,
    paths: list[Path],
    bot_id: str,
    summary: RunSummary,
    on_rows: Callable[[str, int], None] | None = None,
    report_id: int = MESSAGE_REPORT_ID,
    *,
    max_inflated_bytes: int | None = None,
    temp_dir: Path | None = None,
) -> None:
    """Archive files that arrived some other way (CSV, .csv.gz, .zip, .eml) for one bot.

    No window is required: rows are taken whatever their dates, deduplicated as usual.
    ``report_id`` says which report type they are (1 Message Data, 2-4 the others).
    Each file is its own unit: one that cannot be read (corrupt, encrypted, a bomb ...)
    becomes one line in ``summary.problems`` and the next file is imported; only what
    stops the run (:func:`ingest.errors.stops_the_run`) is raised. A compressed file
    inflates into a scratch folder in ``temp_dir``, at most ``max_inflated_bytes`` in all.
    """
    check_bot_id(bot_id, "bot id")  # it becomes a folder name and an S3 key part
    for path in paths:
        try:
            with scratch(temp_dir, prefix="ingest-import-") as workdir:
                _import_file(
                    root,
                    store,
                    Path(path),
                    bot_id,
                    summary,
                    on_rows,
                    report_id,
                    Inflater(max_inflated_bytes, Path(workdir)),
                )
        except Exception as err:  # noqa: BLE001 - the file boundary: one bad file is one problem
            if stops_the_run(err):
                raise
            log.warning("import %s failed: %s", path, one_line(err), exc_info=log.isEnabledFor(logging.DEBUG))
            summary.problems.append(f"{Path(path).name}: {one_line(err)}")


def _import_file(
    root: Storage | Path,
    store: Store,
    path: Path,
    bot_id: str,
    summary: RunSummary,
    on_rows: Callable[[str, int], None] | None,
    report_id: int,
    inflater: Inflater,
) -> None:
    """One file of :func:`import_files`, read as a stream (a .eml whole: it is mail)."""
    if (
        path.name.lower().endswith(".csv") and report_id == MESSAGE_REPORT_ID
    ):  # any size: streamed, never held in memory
        no_email = email_provenance(ParsedEmail(None, None, None, None, []))
        report = ReportFile(safe_name(path.name), b"", path=path)
        archive_report(
            root,
            store,
            report,
            ParsedEmail(None, None, None, None, []),
            summary,
            bot_id=bot_id,
            provenance={"import": {"path": str(path)}, **no_email},
            on_rows=functools.partial(on_rows, path.name) if on_rows else None,
        )
        return
    if path.name.lower().endswith(".eml"):
        parsed = parse_email(path.read_bytes(), inflater)
        problems = [f"{path.name}: {problem}" for problem in parsed.problems]
    else:
        parsed = ParsedEmail(None, None, None, None, [])
        problems = []
        try:
            parsed.reports = reports_in_file(path.name, path, inflater)
        except ReportRejected as err:
            problems.append(f"{path.name}: {err}")
    provenance: dict[str, object] = {"import": {"path": str(path)}, **email_provenance(parsed)}
    summary.problems.extend(problems)
    if not parsed.reports and not problems:
        summary.problems.append(f"{path}: no CSV report found in it")
    for report in parsed.reports:
        archive_report(
            root, store, report, parsed, summary, bot_id=bot_id, provenance=provenance, report_id=report_id
        )
