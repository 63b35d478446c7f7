"""`ingest import` (the CLI, as a subprocess) of a .csv, a .csv.gz, a .zip of two CSVs and an
.eml archives exactly the rows the email path archives for the same reports, and a second
import adds nothing.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from ingest.pipeline.passes import run_once
from ingest.state.store import Store
from tests.support.archive import archive_files, assert_archive_matches, read_archive
from tests.support.job import run_ingest
from tests.support.mail import (
    PROCESSED,
    Report,
    accept_windows,
    deliver,
    email_with,
    message_id,
    moved,
    report,
    report_email,
    snapshot,
    truth_of,
    watcher_settings,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PASSWORD = "secret"
USER = "import@example.test"
USERS = {USER: PASSWORD}
BOT = "3f0c2a9e-7777-4c1a-9d4e-000000000010"


def reports() -> list[Report]:
    return [report(BOT, date(2024, 11, d), date(2024, 11, d + 4)) for d in (1, 6, 11, 16, 21)]


def zipped(*reps: Report) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rep in reps:
            archive.writestr(rep.filename, rep.csv)
    return buffer.getvalue()


def import_env(root: Path) -> dict[str, str]:
    return {
        "INGEST_OUTPUT__ROOT": str(root / "archive"),
        "INGEST_STATE__PATH": str(root / "state.sqlite"),
        "COLUMNS": "200",
    }


def sorted_rows(root: Path) -> pl.DataFrame:
    frame = read_archive(root)
    return frame.select(sorted(frame.columns)).sort("bot_id", "id")


def test_import_archives_the_same_rows_as_the_email_path_and_dedups(dovecot, workdir) -> None:
    a, b, c, d, e = reports()
    files = workdir / "downloads"
    files.mkdir()
    (files / "a.csv").write_bytes(a.csv)
    (files / "b.csv.gz").write_bytes(gzip.compress(b.csv))
    (files / "cd.zip").write_bytes(zipped(c, d))
    (files / "e.eml").write_bytes(report_email(e))
    paths = [str(files / name) for name in ("a.csv", "b.csv.gz", "cd.zip", "e.eml")]

    # The email path: the same reports as the vendor would mail them.
    mails = [
        report_email(a),
        report_email(b, filename=b.filename + ".gz", mime="application/gzip", data=gzip.compress(b.csv)),
        email_with(
            subject="Your Certainly message reports",
            attachments=[("reports.zip", zipped(c, d), "application/zip")],
        ),
        report_email(e),
    ]
    deliver(dovecot, USER, PASSWORD, mails)
    before = snapshot(dovecot, USER, PASSWORD)
    mailed = workdir / "mailed"
    settings = watcher_settings(dovecot, USER, PASSWORD, mailed)
    with Store.open(settings.state.path) as store:
        accept_windows(store, a, b, c, d, e)
        by_mail = run_once(settings, store)
    assert (by_mail.reports_archived, by_mail.emails_archived) == (5, 4)
    assert snapshot(dovecot, USER, PASSWORD) == moved(before, {message_id(m): PROCESSED for m in mails})

    imported = workdir / "imported"
    first = run_ingest("import", *paths, "--bot", BOT, env=import_env(imported), cwd=workdir)
    assert first.returncode == 0, first.stderr
    assert "5 archived" in first.stdout, first.stdout

    truth = truth_of(a, b, c, d, e)
    assert_archive_matches(imported / "archive", truth)
    assert_archive_matches(mailed / "archive", truth)
    assert sorted_rows(imported / "archive").equals(sorted_rows(mailed / "archive"))

    files_before = archive_files(imported / "archive")
    again = run_ingest("import", *paths, "--bot", BOT, env=import_env(imported), cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "0 archived, 5 already had" in again.stdout, again.stdout
    assert "0 written" in again.stdout
    assert archive_files(imported / "archive") == files_before
    assert_archive_matches(imported / "archive", truth)

    # Importing into the archive the email path filled also adds nothing.
    cross = run_ingest("import", *paths, "--bot", BOT, env=import_env(mailed), cwd=workdir)
    assert cross.returncode == 0, cross.stderr
    assert "5 already had" in cross.stdout and "0 written" in cross.stdout, cross.stdout
