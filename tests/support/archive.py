"""Read an archive back as an analyst would, and compare it with the simulator's truth."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from deltalake import DeltaTable

from ingest.simulator import generate_messages


def read_archive(root: Path, dataset: str = "messages") -> pl.DataFrame:
    """Every archived row of a dataset, with its partition columns bot_id and date: the
    Delta table's current snapshot, as an analyst's polars reads it (``scan_delta``)."""
    return pl.scan_delta(str(Path(root) / dataset)).collect()


def snapshot_uris(root: Path | str, dataset: str = "messages",
                  storage_options: dict[str, str] | None = None) -> list[str]:
    """The files of a dataset's current snapshot: what a Parquet-only reader (DuckDB without
    its delta extension, Spark without the Delta connector) must be given instead of a glob."""
    return DeltaTable(f"{root}/{dataset}", storage_options=storage_options).file_uris()


def duckdb_snapshot(root: Path | str, dataset: str = "messages") -> str:
    """A DuckDB ``read_parquet`` over a table's snapshot files, with the hive partition columns."""
    files = ", ".join(f"'{uri}'" for uri in snapshot_uris(root, dataset))
    return f"read_parquet([{files}], hive_partitioning = true, union_by_name = true)"


def expected_rows(bot_ids: list[str], start: date, end: date) -> dict[tuple[str, int], dict[str, Any]]:
    """The simulator's ground truth, keyed by (bot_id, id)."""
    return {(bot, row["id"]): row for bot in bot_ids for row in generate_messages(bot, start, end)}


def assert_archive_matches(root: Path, truth: dict[tuple[str, int], dict[str, Any]]) -> pl.DataFrame:
    """The archive holds exactly the truth's rows, once each, in the right partitions."""
    frame = read_archive(root)
    keys = list(zip(frame["bot_id"].to_list(), frame["id"].to_list()))
    assert len(keys) == len(set(keys)), "duplicate (bot_id, id) in the archive"
    assert set(keys) == set(truth), (
        f"missing {len(set(truth) - set(keys))}, unexpected {len(set(keys) - set(truth))}")
    # Every row sits in the partition of its UTC date.
    assert frame.filter(pl.col("timestamp").dt.date() != pl.col("date")).height == 0
    # Content survives: text with commas, quotes, newlines and non-ASCII; JSON cells.
    for bot, row_id, message, bot_module in frame.select(
            "bot_id", "id", "message", "bot_module").iter_rows():
        want = truth[(bot, row_id)]
        assert message == (want["message"] or None)
        assert json.loads(bot_module) == want["bot_module"]
    # A second, independent reader sees the same table (the snapshot's files, as Parquet).
    with duckdb.connect() as con:
        count = con.execute(
            f"SELECT count(*), count(DISTINCT (bot_id, id)) FROM {duckdb_snapshot(root)}"
        ).fetchall()
    assert count == [(len(truth), len(truth))]
    return frame


def archive_files(root: Path) -> dict[str, float]:
    """Data files and their modification times (to prove nothing was rewritten)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for p in (Path(root) / "messages").rglob("*.parquet") if "_delta_log" not in p.parts}


def typed_truth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Generated report rows (types 2-4) as the reader should type them: ISO text to
    date / datetime, everything else as generated."""
    def typed(value: Any) -> Any:
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return date.fromisoformat(value)
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}T[\d:.]+Z", value):
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value
    return [{k: typed(v) for k, v in row.items()} for row in rows]
