"""Subject access beyond the tables: the person's records in raw copies and in quarantine.

What a person is told and what an erasure removes must be the same set, so this reads the
stores ``ingest erase`` reads with the same selection and the same search
(:class:`ingest.archive.forget.SubjectSelection`, :func:`ingest.archive.forget.scan_copy`):
every raw copy of a report as delivered, and every quarantined file (rows refused at intake,
whole files set aside), each record matched by value. They go in the bundle as JSON Lines,
one file per store, each line the archive file's key and the record's cells by column name::

    copies/raw.jsonl          {"store": "raw", "key": "raw/bot_id=b/<sha>.csv", "record": {...}}
    copies/quarantine.jsonl   {"store": "quarantine", "key": "quarantine/<sha>/...", "record": {...}}

A raw copy repeats rows the tables hold (it is the report as it came); a quarantined record
is one the archive refused (its reason is in the record's ``reason`` when it has one).

Example::

    found = subject_copies(storage, ["4242"], bots=[], work=Path("bundle"))   # [(path, store, records)]
"""

from __future__ import annotations

import json
from pathlib import Path

from ingest.archive.forget import SubjectSelection, candidate_copies, scan_copy, unsearched_quarantine
from ingest.archive.layout import QUARANTINE, RAW
from ingest.archive.storage import Storage

#: The bundle folder holding them.
COPIES = "copies"


def subject_copies(
    storage: Storage, ids: list[str], bots: list[str], work: Path, notes: list[str]
) -> list[tuple[str, str, int]]:
    """Write the subject's records found in raw copies and quarantined files under
    ``work/copies/``; returns (bundle path, store, records) for each file written. What was
    not searched is added to ``notes``."""
    selection = SubjectSelection(tuple(ids), tuple(bots))
    lines: dict[str, list[str]] = {RAW: [], QUARANTINE: []}
    for key, _ in candidate_copies(storage, selection):
        found = scan_copy(storage, key, selection, collect=True)
        store = RAW if key.startswith(f"{RAW}/") else QUARANTINE
        lines[store] += [
            json.dumps({"store": store, "key": key, "record": record}, ensure_ascii=False)
            for record in found.records
        ]
    written = []
    for key in unsearched_quarantine(storage, selection):
        notes.append(
            f"{key}: not searched (refused at intake for an unknown bot, and --bot limits the search)"
        )
    for store, found_lines in lines.items():
        if not found_lines:
            continue
        path = f"{COPIES}/{store}.jsonl"
        (work / COPIES).mkdir(exist_ok=True)
        (work / path).write_text("".join(f"{line}\n" for line in found_lines), encoding="utf-8")
        written.append((path, store, len(found_lines)))
    return written
