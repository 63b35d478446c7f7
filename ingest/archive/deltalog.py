"""Reading a Delta table's log entries directly: one commit's actions, and which version
carries an application transaction (exact where delta-rs's history labels racing writers'
commits wrongly).

Example::

    version = transaction_version(storage, "messages", app_id(sha), latest=table.version())
"""

from __future__ import annotations

import json
from typing import Any

from ingest.archive.layout import DELTA_LOG
from ingest.archive.storage import Storage


def transaction_version(storage: Storage, dataset: str, app: str, latest: int) -> int | None:
    """The version of the commit carrying application transaction ``app`` (a report's
    :func:`app_id`, an erasure's): its log entry, looked for from ``latest`` (and any newer
    entry) down; None if the log no longer has it (a checkpoint and log clean-up after it)."""
    newer = latest + 1
    while storage.exists(log_key(dataset, newer)):  # a stale ``latest``: the commit may be above it
        newer += 1
    for version in range(newer - 1, -1, -1):
        if not storage.exists(log_key(dataset, version)):
            return None
        if any(a.get("txn", {}).get("appId") == app for a in log_actions(storage, dataset, version)):
            return version
    return None


def log_key(dataset: str, version: int) -> str:
    """``<dataset>/_delta_log/<version, 20 digits>.json``: one commit's log entry."""
    return f"{dataset}/{DELTA_LOG}/{version:020d}.json"


def log_actions(storage: Storage, dataset: str, version: int) -> list[dict[str, Any]]:
    """The actions of one commit, from its log entry (:func:`log_key`)."""
    text = storage.read_bytes(log_key(dataset, version)).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
