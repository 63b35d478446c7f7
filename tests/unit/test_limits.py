"""One budget for every path (issue 12): inflation streams to disk under one total per
email, names fit the file system in bytes, big type 2-4 reports are refused unread, what
ends a run is told from what ends one message, and the shipped CronJob agrees with the
defaults."""

from __future__ import annotations

import errno
import gzip
import io
import re
import zipfile
from pathlib import Path

import pytest

import ingest.pipeline.intake
from ingest.errors import (
    MailboxUnavailable,
    OutputError,
    ReportRejected,
    StorageUnavailable,
    one_line,
    stops_the_run,
)
from ingest.mail.attachments import (
    Inflater,
    ParsedEmail,
    ReportFile,
    parse_email,
    safe_name,
)
from ingest.pipeline.file_import import import_files
from ingest.pipeline.intake import archive_report
from ingest.pipeline.summary import RunSummary
from ingest.settings import ImapSettings, OutputSettings
from ingest.state.store import Store
from tests.support.mail import email_with

ROOT = Path(__file__).resolve().parents[2]
BOT = "f0f0f0f0-0000-4000-8000-000000000002"
CSV = b"id,timestamp\r\n1,2024-01-01T00:00:00Z\r\n"


def _mib(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * (1024 if unit == "Gi" else 1)


def test_the_cronjob_has_room_for_one_email_at_the_default_limits() -> None:
    manifest = (ROOT / "config" / "kubernetes-cronjob.yaml").read_text()
    temp = _mib(re.search(r"emptyDir: \{sizeLimit: (\w+)\}", manifest).group(1))  # type: ignore[union-attr]
    memory = _mib(re.search(r"limits: \{memory: (\w+)\}", manifest).group(1))  # type: ignore[union-attr]
    one_email = (ImapSettings().max_message_bytes + OutputSettings().max_inflated_bytes) / 2**20

    assert temp >= one_email * 1.25  # headroom: the emptyDir is the process's whole /tmp
    assert not re.search(
        r"^\s*medium: Memory", manifest, re.M
    )  # a RAM-backed /tmp would count against the memory limit
    from tests.e2e.test_watcher_poison_cli import MEMORY_BUDGET_MIB

    assert memory >= MEMORY_BUDGET_MIB + 128


def test_inflating_streams_to_disk_under_one_total_per_email(tmp_path: Path) -> None:
    first, second = b"id,timestamp\r\n" + b"1" * 600_000, b"id,timestamp\r\n" + b"2" * 600_000
    raw = email_with(
        attachments=[
            ("a.csv.gz", gzip.compress(first), "application/gzip"),
            ("b.csv.gz", gzip.compress(second), "application/gzip"),
        ]
    )

    parsed = parse_email(raw, Inflater(1_000_000, tmp_path))

    [kept] = parsed.reports
    assert kept.path is not None and kept.path.parent == tmp_path and kept.data == b""
    assert kept.path.read_bytes() == first
    assert parsed.problems == [
        "attachment b.csv.gz: gzip inflates beyond 1000000 bytes (with the other "
        "attachments of the email), the limit INGEST_OUTPUT__MAX_INFLATED_BYTES"
    ]
    assert len(list(tmp_path.iterdir())) == 1  # the refused one left nothing behind


def test_a_zip_whose_sizes_add_up_past_the_budget_is_refused_before_inflating() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.csv", CSV + b"0" * 5000)
    with pytest.raises(ReportRejected, match="inflates beyond 1024 bytes"):
        from ingest.mail.attachments import reports_in_file

        reports_in_file("r.zip", buffer.getvalue(), Inflater(1024))


@pytest.mark.parametrize(
    "name", ["月次メッセージ報告書" * 12 + ".csv", "é" * 300 + ".csv.gz", "a" * 400, "\udce9t\udcc3.csv"]
)
def test_names_fit_a_file_system_in_bytes_and_keep_their_extension(name: str) -> None:
    safe = safe_name(name)
    assert len(safe.encode("utf-8")) <= 200
    assert len(f"original-{safe}".encode()) <= 255
    for ext in (".csv.gz", ".csv"):
        if name.endswith(ext):
            assert safe.endswith(ext)
            break


def test_a_big_type_2_report_is_quarantined_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest.pipeline.intake, "MAX_WHOLE_REPORT_BYTES", 1000)
    path = tmp_path / "standard.csv"
    path.write_bytes(b"date,channel,sessions\r\n" + b"2024-01-01,web,3\r\n" * 100)
    summary = RunSummary()
    with Store.open(tmp_path / "state.sqlite") as store:
        outcome = archive_report(
            tmp_path / "archive",
            store,
            ReportFile("standard.csv", b"", path=path),
            ParsedEmail(None, None, None, None, []),
            summary,
            bot_id=BOT,
            report_id=2,
        )
    assert outcome == "quarantined"
    assert summary.set_aside == [
        f"attachment standard.csv: a type 2 report of {path.stat().st_size} bytes "
        "is over the 1000 bytes such reports may have (they are read whole)"
    ]


def test_import_gives_each_bad_file_one_line_and_goes_on(tmp_path: Path) -> None:
    (tmp_path / "enc.zip").write_bytes(b"PK\x03\x04 not a zip")
    (tmp_path / "good.csv").write_bytes(CSV)
    summary = RunSummary()
    with Store.open(tmp_path / "state.sqlite") as store:
        import_files(
            tmp_path / "archive",
            store,
            [tmp_path / "enc.zip", tmp_path / "good.csv"],
            BOT,
            summary,
            temp_dir=tmp_path / "scratch",
        )
    assert summary.rows_written == 1
    assert len(summary.problems) == 1 and summary.problems[0].startswith("enc.zip: corrupt zip")
    assert list((tmp_path / "scratch").iterdir()) == []


def _output_error(code: int) -> OutputError:
    try:
        try:
            raise OSError(code, "boom")
        except OSError as err:
            raise OutputError(f"cannot write x: {err.strerror}") from None
    except OutputError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    ("error", "run_level"),
    [
        (MailboxUnavailable("dropped"), True),
        (StorageUnavailable("503"), True),
        (_output_error(errno.ENOSPC), True),
        (_output_error(errno.EROFS), True),
        (_output_error(errno.ENAMETOOLONG), False),
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.ENAMETOOLONG, "File name too long"), False),
        (ReportRejected("bad"), False),
        (RecursionError("maximum recursion depth exceeded"), False),
        (RuntimeError("File 'x' is encrypted"), False),
    ],
)
def test_what_stops_a_run_and_what_stops_one_message(error: BaseException, run_level: bool) -> None:
    assert stops_the_run(error) is run_level
    assert "\n" not in one_line(error) and len(one_line(error)) <= 400


def test_doctor_checks_free_temp_space_against_the_limits(tmp_path: Path) -> None:
    from ingest.ops.doctor import check_temp
    from ingest.settings import explicit_settings

    fits = check_temp(explicit_settings(output={"temp_dir": tmp_path / "t"}))
    too_big = check_temp(explicit_settings(output={"temp_dir": tmp_path / "t", "max_inflated_bytes": 2**60}))

    assert fits.ok and "MiB free, one email may need 640 MiB" in fits.detail
    assert not too_big.ok and "INGEST_OUTPUT__MAX_INFLATED_BYTES" in too_big.detail
