"""`ingest demo` end to end: simulator + embedded IMAP (pymap) + parse + Parquet."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from ingest.ops.demo import demo_bot_ids
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.job import run_ingest

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_demo_archives_every_generated_row_once(tmp_path: Path) -> None:
    done = run_ingest(
        "demo", "--bots", "2", "--days", "60", "--out", str(tmp_path), cwd=tmp_path, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    first, last = re.search(r"\((\d{4}-\d\d-\d\d)\.\.(\d{4}-\d\d-\d\d)\)", done.stdout).groups()  # type: ignore[union-attr]
    truth = expected_rows(demo_bot_ids(2), date.fromisoformat(first), date.fromisoformat(last))
    frame = assert_archive_matches(tmp_path / "archive", truth)
    assert f"archive holds {frame.height}" in done.stdout
    assert "1 ignored (sender not allowed)" in done.stdout
    assert "pl.scan_delta(" in done.stdout  # the one-line query (of the Delta table) is printed
    verified = run_ingest(
        "verify",
        env={
            "INGEST_OUTPUT__ROOT": str(tmp_path / "archive"),
            "INGEST_STATE__PATH": str(tmp_path / "state.sqlite"),
        },
        cwd=tmp_path,
    )
    assert verified.returncode == 0, verified.stdout
    assert f"{frame.height} rows" in verified.stdout


def test_demo_walks_the_emailed_path_and_shows_the_get_path_beside_it(tmp_path: Path) -> None:
    done = run_ingest(
        "demo", "--bots", "2", "--days", "10", "--out", str(tmp_path), cwd=tmp_path, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = demo_bot_ids(2)
    lines = done.stdout.splitlines()
    assert any(
        line.strip().startswith(first) and line.endswith("archived: POST -> email -> IMAP") for line in lines
    )
    assert any(
        line.strip().startswith(second) and line.endswith("archived: GET (synchronous)") for line in lines
    )
    assert "paths: 1 GET request(s) beside 1 emailed report(s)" in done.stdout
    assert "emails: 2 seen, 1 archived, 1 ignored (sender not allowed)" in done.stdout
