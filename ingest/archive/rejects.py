"""The quarantine: what of a source could not be archived, with the reasons.

Rows refused one by one (a streamed report's go to a temporary Parquet file, reasons
counted) are published as ``quarantine/<sha256>/rejected_rows.parquet`` and
``reason.json``, the same files :func:`ingest.archive.writer.save_report` writes for an
in-memory report. A whole file refused is kept by :func:`quarantine_file`.

Example::

    rejected = RejectedRows(root)
    rejected.add(rejected_rows(frame, plan, verdict))   # _row, reason, raw text
    rejected.publish(sha)
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from ingest.archive.commit import write_bytes_once, write_once, write_reasons
from ingest.archive.layout import REJECTED_ROWS, original_key, quarantine_dir, reasons_key, rejected_rows_key
from ingest.archive.storage import Storage, as_storage
from ingest.records import QuarantineReasons, build, dump


class RejectedRows:
    """Rejected rows, streamed to a temporary Parquet file, and their reasons counted."""

    def __init__(self, root: Storage | Path) -> None:
        self.storage = as_storage(root)
        self.rows = 0
        self.reasons: Counter[str] = Counter()
        self._path = self.storage.temp(REJECTED_ROWS, f"{uuid.uuid4().hex[:8]}-")
        self._writer: pq.ParquetWriter | None = None

    def add(self, rejected: pl.DataFrame) -> None:
        """Keep one batch of rejected rows (``_row``, ``reason``, raw text)."""
        if rejected.height == 0:
            return
        self.reasons.update(dict(rejected.group_by("reason").len().iter_rows()))
        self.rows += rejected.height
        table = rejected.to_arrow()
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, table.schema, compression="zstd")
        self._writer.write_table(table.cast(self._writer.schema))

    def publish(self, sha: str) -> None:
        """quarantine/<sha>/rejected_rows.parquet and reason.json."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        self.storage.publish(self._path, rejected_rows_key(sha))
        write_reasons(self.storage, sha, dict(self.reasons))
        self.discard()

    def discard(self) -> None:
        """Remove the temporary file."""
        if self._writer is not None:
            with suppress(OSError):
                self._writer.close()
            self._writer = None
        with suppress(OSError):  # cleaning up must not hide the error that got us here
            os.unlink(self._path)


def quarantine_file(
    root: Storage | Path,
    source_sha256: str,
    raw: bytes | Path,
    raw_name: str,
    reason: str,
    provenance: dict[str, Any],
) -> str:
    """Keep a whole file that could not be archived, with its reason. Returns the folder.

    ``raw`` is the bytes, or the path of a file too big to hold (copied, not loaded).
    """
    storage = as_storage(root)
    if isinstance(raw, Path):
        write_once(storage, original_key(source_sha256, raw_name), lambda tmp: shutil.copyfile(raw, tmp))
    else:
        write_bytes_once(storage, original_key(source_sha256, raw_name), raw)
    record = build(QuarantineReasons, {"reason": reason, **provenance})
    write_bytes_once(storage, reasons_key(source_sha256), dump(record))
    return quarantine_dir(source_sha256)
