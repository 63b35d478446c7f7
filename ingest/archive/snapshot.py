"""What a Delta table's loaded snapshot holds: its data files, with their rows and ``id``
ranges (from the statistics our commits write), listed once per table version.

Example::

    files = snapshot_files(table, "messages", "bot-1")   # that bot's files, sorted by key
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
from deltalake import DeltaTable

from ingest.parse.arrowrows import text_scalar


@dataclass(frozen=True)
class SnapshotFile:
    """A data file of a table's snapshot: its key (relative to the archive root), size, rows,
    and the range of its ``id`` column when its statistics give one."""

    key: str
    size: int
    rows: int | None
    bot_id: str
    day: str
    id_low: int | None = None
    id_high: int | None = None


#: :func:`snapshot_files`' answers per table object (by ``id``: a DeltaTable cannot be a dict
#: key; the entry leaves with the table, ``weakref.finalize``), for the version it had loaded:
#: a report asks three times (the exactly-once check, adopting a killed attempt's files, the
#: commit) and the answer only changes when the table moves to another version.
_LISTED: dict[int, tuple[int, dict[tuple[str, str | None], list[SnapshotFile]]]] = {}


def snapshot_files(table: DeltaTable | None, dataset: str, bot_id: str | None = None) -> list[SnapshotFile]:
    """Every file of the table's loaded snapshot (of one bot's partitions when ``bot_id`` is
    given: chosen in Arrow, so a report pays for its bot's files, not for every bot's), sorted
    by key. Remembered per table object and version."""
    if table is None:
        return []
    version = table.version()
    seen = _LISTED.get(id(table))
    if seen is None:
        weakref.finalize(table, _LISTED.pop, id(table), None)
    if seen is None or seen[0] != version:
        seen = _LISTED[id(table)] = (version, {})
    found = seen[1].get((dataset, bot_id))
    if found is None:
        found = seen[1][(dataset, bot_id)] = _list_snapshot(table, dataset, bot_id)
    return list(found)  # a copy: the remembered list stays as listed


def _list_snapshot(table: DeltaTable, dataset: str, bot_id: str | None) -> list[SnapshotFile]:
    """:func:`snapshot_files` itself: the loaded snapshot's add actions, read through Arrow."""
    # Through the Arrow stream: pa.table() asks pandas whether this is a DataFrame, importing
    # it (0.3-0.6 CPU s of every `ingest import`).
    actions = pa.RecordBatchReader.from_stream(table.get_add_actions(flatten=True)).read_all()
    if bot_id is not None:
        import pyarrow.compute as pc  # here: the commands that never write need not import it

        # Not the str itself: pyarrow's conversion of a Python object imports pandas.
        actions = actions.filter(pc.equal(actions.column("partition.bot_id"), text_scalar(bot_id)))
    columns = actions.column_names
    paths = actions.column("path").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    rows = actions.column("num_records").to_pylist() if "num_records" in columns else [None] * len(paths)
    bots = actions.column("partition.bot_id").to_pylist()
    days = actions.column("partition.date").to_pylist()
    lows = actions.column("min.id").to_pylist() if "min.id" in columns else [None] * len(paths)
    highs = actions.column("max.id").to_pylist() if "max.id" in columns else [None] * len(paths)
    found = [
        SnapshotFile(f"{dataset}/{unquote(path)}", size, count, bot, str(day), _integer(low), _integer(high))
        for path, size, count, bot, day, low, high in zip(
            paths, sizes, rows, bots, days, lows, highs, strict=True
        )
    ]
    return sorted(found, key=lambda f: f.key)


def _integer(value: Any) -> int | None:
    """An ``id`` statistic as an int (None when the file has none, or not an integer)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
