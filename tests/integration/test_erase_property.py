"""Erasure and retention on adversarial archives, for any subject (hypothesis): both halves.

An archive is built through the library (fast): Message Data reports whose bot user ids are
substrings of one another, of timestamps and of message text; ids written JSON-escaped; a
field over 131,072 characters; rows refused one by one (many in one quarantine file);
quarantined originals of any name (CSV or JSON content). Then ``ingest erase --apply`` (or
``ingest prune --apply``) runs as users run it, and the test proves:

* **nothing of the subject anywhere**: no row of theirs in a table, a raw copy, a rejected-row
  file or a quarantined original (each decoded by an independent reader: polars, json), and
  no byte of their words in any file of the archive or the state store (Parquet decoded);
* **every other record byte-identical**: raw copies and originals are the original bytes less
  exactly the subject's records (or gone, when every record was theirs); tables and rejected
  rows hold every other row with the same values; commit records are unchanged;
* ``ingest verify`` is clean.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.archive.rejects import quarantine_file
from ingest.archive.storage import as_storage
from ingest.simulator import generate_messages
from ingest.simulator.data import rows_to_csv
from tests.support.archive import read_archive
from tests.support.forget import files_holding
from tests.support.job import run_ingest
from tests.support.saving import archive_csv_file

pytestmark = pytest.mark.integration

#: Ids that are substrings of one another, of timestamps ("20", "2024", "01") and of text.
IDS = ["42", "4242", "424", "2024", "01", "7", "77a"]
LONG = 131_072 + 17


@dataclass
class Row:
    """One Message Data row of the archive and who it belongs to."""

    data: dict[str, Any]
    owner: str
    refused: bool = False  # a bad timestamp: refused one by one, into quarantine


@dataclass
class Built:
    """What the test put where, to compute what must be there afterwards."""

    reports: dict[str, list[Row]] = field(default_factory=dict)  # raw key -> its rows
    originals: dict[str, tuple[bytes, list[tuple[bytes, str]]]] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)  # owner -> words only they wrote


def _record(row: dict[str, Any]) -> bytes:
    """The CSV record of one row, as the emailed CSV has it (header cut off)."""
    header = rows_to_csv([])
    return rows_to_csv([row])[len(header) :]


def _owner_cell(owner: str, escaped: bool) -> str:
    if escaped:  # the id's characters JSON-escaped: its own bytes are nowhere in the file
        return '{"id":"' + "".join(f"\\u{ord(c):04x}" for c in owner) + '","created_date":"2023-12-01"}'
    return json.dumps({"id": int(owner) if owner.isdigit() and owner[0] != "0" else owner})


report_plans = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(IDS), st.booleans(), st.sampled_from(["plain", "long", "quotes", "refused"])
        ),
        min_size=1,
        max_size=8,
    ),
    min_size=1,
    max_size=3,
)


def _build(root: Path, plans: list[list[tuple[str, bool, str]]], first_day: date, step: int = 1) -> Built:
    built = Built(markers={who: f"words-of-{who}-only-xq" for who in IDS})
    storage = as_storage(root)
    for n, plan in enumerate(plans):
        bot = f"bot-{n % 2}"
        base = generate_messages(
            bot, first_day, first_day + timedelta(days=len(plan)), seed=n, min_per_day=1, max_per_day=2
        )
        rows = []
        for k, (owner, escaped, kind) in enumerate(plan):
            data = dict(base[k % len(base)])
            data["id"] = 10**9 * (n + 1) + k
            data["timestamp"] = (
                first_day + timedelta(days=k * step)
            ).isoformat() + f"T04:{20 + k:02d}:42.2024Z"
            data["botuser"] = _owner_cell(owner, escaped)
            # Other people's ids in the text: a substring search would take this row too.
            data["message"] = f"{built.markers[owner]} ask 4242 and 42 about 2024"
            if kind == "long":
                data["response"] = "x" * LONG
            elif kind == "quotes":
                data["response"] = 'he said "42",\r\nthen "4242"'
            rows.append(Row(data, owner, refused=kind == "refused"))
            if kind == "refused":
                data["timestamp"] = f"not a time {owner}"
        source = root.parent / f"report-{n}.csv"
        source.write_bytes(rows_to_csv([r.data for r in rows]))
        result = archive_csv_file(storage, source, bot_id=bot, raw_name=source.name, provenance={})
        sha = hashlib.sha256(source.read_bytes()).hexdigest()
        built.reports[f"raw/bot_id={bot}/{sha}.csv"] = rows
        assert result.rows_rejected == sum(r.refused for r in rows)
    # Quarantined originals of any name: CSV under ".json" and ".txt", JSON rows under ".csv".
    for n, (name, owners) in enumerate(
        (("report.json", ["42", "4242"]), ("weird name.txt", ["424"]), ("rows.csv", ["01", "42"]))
    ):
        sha = hashlib.sha256(f"original-{n}".encode()).hexdigest()
        records = [
            (_record({"id": 5 * 10**9 + i, "botuser": _owner_cell(o, False), "message": built.markers[o]}), o)
            for i, o in enumerate(owners)
        ]
        if name == "rows.csv":  # a GET answer's JSON, under a CSV's name
            elements = [
                json.dumps({"id": 6 * 10**9 + i, "botuser": {"id": o}, "message": built.markers[o]}).encode()
                for i, o in enumerate(owners)
            ]
            data = b"[\n  " + b",\n  ".join(elements) + b"\n]\n"
            built.originals[f"quarantine/{sha}/original-{name}"] = (
                b"",
                list(zip(elements, owners, strict=True)),
            )
        else:
            data = rows_to_csv([]) + b"".join(r for r, _ in records)
            built.originals[f"quarantine/{sha}/original-{name}"] = (rows_to_csv([]), records)
        quarantine_file(storage, sha, data, name, "quarantined: test", {})
    return built


def _archive_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _botuser_id(cell: str | None) -> str | None:
    try:
        value = json.loads(cell) if cell else None
    except ValueError:
        return None
    return str(value["id"]) if isinstance(value, dict) and "id" in value else None


def _table(root: Path) -> pl.DataFrame:
    return read_archive(root) if (root / "messages").exists() else pl.DataFrame({"id": [], "botuser": []})


def _rejected(root: Path) -> pl.DataFrame:
    files = sorted(root.glob("quarantine/*/rejected_rows.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=report_plans, subject=st.sampled_from(IDS))
def test_erase_leaves_nothing_of_the_subject_and_every_other_record_as_it_was(
    plans: list[list[tuple[str, bool, str]]], subject: str
) -> None:
    work = Path(tempfile.mkdtemp(prefix="ingest-prop-"))
    try:
        root = work / "archive"
        built = _build(root, plans, date(2024, 1, 1))
        env = {"INGEST_OUTPUT__ROOT": str(root), "INGEST_STATE__PATH": str(work / "state.sqlite")}
        before, table_before, rejected_before = _archive_bytes(root), _table(root), _rejected(root)

        done = run_ingest("erase", "--botuser", subject, "--reason", "DSR", "--apply", env=env, cwd=work)
        assert done.returncode == 0, done.stderr
        after = _archive_bytes(root)

        # Nothing of theirs: tables, raw copies, rejected rows, originals, decoded...
        table = _table(root)
        assert [_botuser_id(c) for c in table.get_column("botuser")].count(subject) == 0
        for key in [*built.reports, *built.originals]:
            if key in after:
                text = after[key]
                rows = (
                    json.loads(text)
                    if text.lstrip()[:1] == b"["
                    else pl.read_csv(text, infer_schema=False).to_dicts()
                )
                owners = [
                    _botuser_id(r["botuser"] if isinstance(r["botuser"], str) else json.dumps(r["botuser"]))
                    for r in rows
                ]
                assert subject not in owners, key
        rejected = _rejected(root)
        if rejected.height:
            assert subject not in [_botuser_id(c) for c in rejected.get_column("botuser")]
        # ... and not a byte of their words anywhere, the state store included.
        assert files_holding([root, *work.glob("state.sqlite*")], [built.markers[subject]]) == []

        # Every other record as it was.
        for key, rows in built.reports.items():
            header = rows_to_csv([])
            kept = [_record(r.data) for r in rows if r.owner != subject]
            assert after.get(key) == (header + b"".join(kept) if kept else None), key
        for key, (head, records) in built.originals.items():
            kept_records = [r for r, o in records if o != subject]
            if not kept_records:
                assert key not in after, key
            elif head:
                assert after[key] == head + b"".join(kept_records), key
            else:
                assert [json.loads(e) for e in kept_records] == json.loads(after[key]), key
                assert all(e in after[key] for e in kept_records)  # each row's bytes as written
        others = table_before.filter(
            pl.col("botuser").map_elements(_botuser_id, return_dtype=pl.String).fill_null("") != subject
        )
        assert table.sort("id").equals(others.sort("id"))
        if rejected_before.height:
            kept_rejected = rejected_before.filter(
                pl.col("botuser").map_elements(_botuser_id, return_dtype=pl.String).fill_null("") != subject
            )
            # Both empty first: a rejected file whose every row was theirs goes whole, and an
            # empty read has no columns to sort by.
            assert (rejected.height == kept_rejected.height == 0) or rejected.sort("_row", "reason").equals(
                kept_rejected.sort("_row", "reason")
            )
        assert {k: v for k, v in after.items() if k.startswith("manifests/") and "erasure-" not in k} == {
            k: v for k, v in before.items() if k.startswith("manifests/")
        }

        verify = run_ingest("verify", env=env, cwd=work)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=report_plans)
def test_prune_removes_every_expired_record_and_keeps_every_other_as_it_was(
    plans: list[list[tuple[str, bool, str]]],
) -> None:
    """Rows 5 days apart from 45 days ago, a retention of 30 days: each raw copy keeps
    exactly its unexpired (and unreadable-timestamp) records, a long field anywhere or not."""
    work = Path(tempfile.mkdtemp(prefix="ingest-prop-"))
    try:
        root = work / "archive"
        today = date.today()
        first_kept = today - timedelta(days=30)
        plans[0][0] = (plans[0][0][0], plans[0][0][1], "long")  # always a field over csv's limit
        built = _build(root, plans, today - timedelta(days=45), step=5)
        env = {
            "INGEST_OUTPUT__ROOT": str(root),
            "INGEST_STATE__PATH": str(work / "state.sqlite"),
            "INGEST_RETENTION__DAYS": "30",
        }
        before, table_before = _archive_bytes(root), _table(root)

        done = run_ingest("prune", "--apply", env=env, cwd=work)
        assert done.returncode == 0, done.stderr
        after = _archive_bytes(root)

        def kept(row: Row) -> bool:
            return row.refused or date.fromisoformat(row.data["timestamp"][:10]) >= first_kept

        for key, rows in built.reports.items():
            records = [_record(r.data) for r in rows if kept(r)]
            assert after.get(key) == (rows_to_csv([]) + b"".join(records) if records else None), key
        assert _table(root).sort("id").equals(table_before.filter(pl.col("date") >= first_kept).sort("id"))
        quarantine = {k: v for k, v in before.items() if k.startswith("quarantine/")}
        assert {k: v for k, v in after.items() if k.startswith("quarantine/")} == quarantine
        verify = run_ingest("verify", env=env, cwd=work)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)
