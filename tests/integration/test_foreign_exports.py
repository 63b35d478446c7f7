"""Exports this project did not write: the same report re-exported by DuckDB (as text, and
typed: its own timestamp form), by polars (shuffled, CRLF) and by Python's csv module
(every field quoted, reverse order, a BOM). Whatever wrote the file, ``ingest import``
archives the same rows with the same values."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ingest.simulator import generate_messages, rows_to_csv
from tests.support.job import run_ingest

pytestmark = pytest.mark.integration

BOT = "f0e1e000-0000-4000-8000-000000000001"
#: Columns a report's rows carry; provenance columns differ by file and are left out.
PROVENANCE = ("source_sha256", "row_number", "ingested_at")


def duckdb_text(src: Path, dst: Path) -> None:
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{src}', all_varchar=true)) TO '{dst}' (HEADER)")


def duckdb_typed(src: Path, dst: Path) -> None:
    """DuckDB infers types and writes its own forms: ``2024-01-01 00:50:42.960629+00``."""
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{src}')) TO '{dst}' (HEADER)")


def polars_shuffled_crlf(src: Path, dst: Path) -> None:
    frame = pl.read_csv(src, infer_schema=False)
    frame.sample(fraction=1.0, shuffle=True, seed=7).write_csv(dst, line_terminator="\r\n")


def csv_quote_all_reversed_bom(src: Path, dst: Path) -> None:
    rows = list(csv.reader(io.StringIO(src.read_bytes().decode("utf-8-sig"), newline="")))
    out = io.StringIO(newline="")
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(rows[0])
    writer.writerows(reversed(rows[1:]))
    dst.write_bytes(codecs.BOM_UTF8 + out.getvalue().encode())


WRITERS: dict[str, Callable[[Path, Path], None]] = {
    "duckdb-text": duckdb_text,
    "duckdb-typed": duckdb_typed,
    "polars-shuffled-crlf": polars_shuffled_crlf,
    "csv-quote-all-reversed-bom": csv_quote_all_reversed_bom,
}


def archive(report: Path, workdir: Path, name: str) -> pl.DataFrame:
    """``ingest import`` the file into a fresh archive; its rows, as polars reads the table."""
    env = {"INGEST_OUTPUT__ROOT": str(workdir / name), "INGEST_STATE__PATH": str(workdir / f"{name}.sqlite")}
    done = run_ingest("import", str(report), "--bot", BOT, env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    frame = pl.read_delta(str(workdir / name / "messages"))
    return frame.drop([c for c in PROVENANCE if c in frame.columns]).sort("id")


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_report_re_exported_by_another_tool_archives_the_same_rows(workdir: Path, writer: str) -> None:
    original = workdir / "original.csv"
    rows = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 10))
    original.write_bytes(rows_to_csv(rows))
    foreign = workdir / f"{writer}.csv"
    WRITERS[writer](original, foreign)
    assert foreign.read_bytes() != original.read_bytes()  # another tool's bytes
    expected = archive(original, workdir, "original")
    assert expected.height == len(rows)
    assert_frame_equal(archive(foreign, workdir, writer), expected)


def test_the_shuffle_really_shuffles(workdir: Path) -> None:
    """The polars variant is not in time order (else it would not test the order)."""
    original = workdir / "original.csv"
    original.write_bytes(rows_to_csv(generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 10))))
    polars_shuffled_crlf(original, workdir / "s.csv")
    stamps = pl.read_csv(workdir / "s.csv", infer_schema=False)["timestamp"].to_list()
    assert stamps != sorted(stamps)
