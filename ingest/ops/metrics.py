"""Prometheus metrics as a textfile (node_exporter's textfile collector picks it up).

Written atomically at the end of each `ingest run`, when INGEST_METRICS__TEXTFILE is set.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ingest.state.store import Store
from ingest.state.windows import WindowState


def render_metrics(
    store: Store,
    *,
    emails_processed: int,
    rows_written: int,
    duration: float,
    succeeded: bool,
    now: float | None = None,
) -> str:
    """The exposition-format text for one run."""
    now = time.time() if now is None else now
    counts = {state: 0 for state in WindowState}
    for window in store.windows():
        counts[window.state] += 1
    totals = store.attachment_totals()
    lines = [
        "# HELP ingest_windows Export windows by lifecycle state.",
        "# TYPE ingest_windows gauge",
        *(f'ingest_windows{{state="{state.value}"}} {n}' for state, n in counts.items()),
        "# HELP ingest_emails_processed Report emails handled by the last run.",
        "# TYPE ingest_emails_processed gauge",
        f"ingest_emails_processed {emails_processed}",
        "# HELP ingest_rows_written Rows written by the last run.",
        "# TYPE ingest_rows_written gauge",
        f"ingest_rows_written {rows_written}",
        "# HELP ingest_archive_rows Rows in the archive, from the state store.",
        "# TYPE ingest_archive_rows gauge",
        f"ingest_archive_rows {totals['rows_written']}",
        "# HELP ingest_run_duration_seconds Wall time of the last run.",
        "# TYPE ingest_run_duration_seconds gauge",
        f"ingest_run_duration_seconds {duration:.3f}",
    ]
    if succeeded:
        lines += [
            "# HELP ingest_last_success_timestamp_seconds End of the last run that needed no attention.",
            "# TYPE ingest_last_success_timestamp_seconds gauge",
            f"ingest_last_success_timestamp_seconds {now:.0f}",
        ]
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Replace the metrics file atomically (the collector never reads half a file).

    The temporary file is created exclusively (``O_EXCL``, an unpredictable name) in the
    metrics file's own folder, so that the final rename stays on one file system and
    nobody sharing that folder can plant a file or a symlink under a name we would write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o640)  # as every file the job writes (the collector reads by group)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
