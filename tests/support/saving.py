"""One-call reading and saving, for tests: the production paths, composed.

``parse_csv`` is the in-memory reader the GET path uses (:func:`parse_frame`) fed with a
CSV; ``archive_csv_file`` stages and commits a CSV in one go, as ``ingest import`` does.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from ingest.archive.commit import SaveResult
from ingest.archive.rawcopy import Source
from ingest.archive.storage import Storage
from ingest.archive.stream import MEMORY_BUDGET, stage_csv
from ingest.parse.parser import ParsedReport, parse_frame, read_csv_text


def parse_csv(data: bytes, **kwargs: Any) -> ParsedReport:
    """Parse report CSV bytes in memory; see :func:`ingest.parse.parser.parse_frame`."""
    return parse_frame(read_csv_text(data), source_kind="csv", **kwargs)


def archive_csv_file(
    root: Storage | Path,
    source: Source,
    *,
    bot_id: str,
    raw_name: str,
    provenance: dict[str, Any],
    source_sha256: str | None = None,
    window: tuple[date, date] | None = None,
    memory_budget: int = MEMORY_BUDGET,
) -> SaveResult:
    """Stage and commit a report CSV in one go; see :func:`ingest.archive.stream.stage_csv`."""
    staged = stage_csv(
        root, source, bot_id=bot_id, source_sha256=source_sha256, window=window, memory_budget=memory_budget
    )
    return staged.commit(raw_name=raw_name, provenance=provenance)
