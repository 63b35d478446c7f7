"""Hostile report contents: each has a documented outcome, and nothing is evaluated,
executed or written outside the archive."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import polars as pl
import pytest

from ingest.archive.storage import sha256_bytes
from ingest.archive.writer import save_report
from ingest.errors import ReportRejected
from ingest.mail.attachments import parse_email
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.saving import parse_csv

BOT = "0badc0de-0000-4000-8000-000000000001"
DAY = date(2024, 2, 2)


def test_formula_looking_cells_are_stored_as_plain_text(tmp_path: Path) -> None:
    rows = generate_messages(BOT, DAY, DAY)[:3]
    formulas = ['=cmd|" /C calc"!A0', "+SUM(1,2)", "-2+3", '@HYPERLINK("http://x")']
    for row, formula in zip(rows, formulas, strict=False):
        row["message"] = formula
    data = rows_to_csv(rows)
    parsed = parse_csv(data, bot_id=BOT, source_sha256=sha256_bytes(data))
    save_report(
        tmp_path,
        parsed,
        bot_id=BOT,
        source_sha256=sha256_bytes(data),
        raw=data,
        raw_name="r.csv",
        provenance={},
    )
    stored = pl.read_parquet(next((tmp_path / "messages").rglob("*.parquet")))["message"].to_list()
    assert sorted(stored) == sorted(formulas[:3])


def test_a_header_of_ten_million_columns_is_rejected_quickly() -> None:
    header = ",".join(f"c{n}" for n in range(10_000_000)).encode()
    with pytest.raises(ReportRejected, match="columns"):
        parse_csv(header + b"\n", bot_id=BOT, source_sha256="x")


def test_nested_archives_are_not_unpacked() -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("report.csv", rows_to_csv(generate_messages(BOT, DAY, DAY)))
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as archive:
        archive.writestr("inner.zip", inner.getvalue())
    msg = EmailMessage()
    msg["From"] = "reports@certainly.example"
    msg.add_attachment(outer.getvalue(), maintype="application", subtype="zip", filename="outer.zip")
    parsed = parse_email(msg.as_bytes())
    # Documented outcome: only CSV members of the attached zip count; a zip inside it is ignored.
    assert parsed.reports == [] and parsed.problems == []
