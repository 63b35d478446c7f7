"""Issue 12 as a user meets it, through the `ingest` command (a subprocess) against a real
Dovecot: poisoned emails before a valid report, `ingest run` exit codes, `status --json`,
`retry --failed` after a fix; `ingest import` of good and bad files; and the peak memory
of the whole process while a 1 MB email inflating to 700 MiB goes through the pipeline.
"""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import pytest

from ingest.state.store import Store
from tests.support.archive import assert_archive_matches
from tests.support.job import ingest_peak_rss, run_ingest
from tests.support.mail import (
    FAILED,
    PROCESSED,
    RECIPIENT,
    SENDER,
    Mailboxes,
    Report,
    accept_windows,
    corrupt_gzip,
    deeply_nested_email,
    deliver,
    encrypted_zip,
    gzip_bomb,
    message_id,
    moved,
    non_utf8_csv,
    report,
    report_email,
    snapshot,
    truth_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PASSWORD = "secret"
ACCOUNTS = Mailboxes("cli", 4, PASSWORD)
USERS = ACCOUNTS.users
BOT = "3f0c2a9e-4444-4c1a-9d4e-00000000000d"
#: What the whole `ingest run` process may peak at: the shipped CronJob's limit is 512Mi,
#: and this leaves it 128 MiB of headroom.
MEMORY_BUDGET_MIB = 384


def window(day: int) -> Report:
    return report(BOT, date(2024, 7, day), date(2024, 7, day + 2))


def job_env(dovecot, user: str, workdir: Path, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """`ingest run` against the test's Dovecot; the Certainly API is a placeholder, never
    called (every window is accepted already)."""
    return {
        "INGEST_CERTAINLY__BASE_URL": "http://127.0.0.1:9/",
        "INGEST_CERTAINLY__TOKEN": "unused",
        "INGEST_CERTAINLY__REPORT_PATH": "unused",
        "INGEST_REQUESTER__MAX_IN_FLIGHT": "1000",
        "INGEST_IMAP__HOST": dovecot.host,
        "INGEST_IMAP__PORT": str(dovecot.port),
        "INGEST_IMAP__SECURITY": "none",
        "INGEST_IMAP__USERNAME": user,
        "INGEST_IMAP__PASSWORD": PASSWORD,
        "INGEST_IMAP__ALLOWED_SENDERS": SENDER,
        "INGEST_CERTAINLY__ACCOUNT_EMAIL": RECIPIENT,  # the owner, redirected to this mailbox
        "INGEST_IMAP__TIMEOUT": "60",
        "INGEST_OUTPUT__ROOT": str(workdir / "archive"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
        "INGEST_OUTPUT__TEMP_DIR": str(workdir / "tmp"),
        "COLUMNS": "200",
        **extra,
    }


def accept(workdir: Path, *reports: Report) -> None:
    with Store.open(workdir / "state.sqlite") as store:
        accept_windows(store, *reports)


def test_run_sets_poison_aside_exits_1_and_retry_failed_archives_after_a_fix(dovecot, workdir) -> None:
    user = ACCOUNTS.take()
    gz, enc, deep, cjk, big, good = window(1), window(4), window(7), window(10), window(13), window(16)
    big = report(BOT, date(2024, 8, 1), date(2024, 8, 10), per_day=60)
    poisons = [
        report_email(gz, filename=gz.filename + ".gz", mime="application/gzip", data=corrupt_gzip(gz.csv)),
        report_email(
            enc, filename="export.zip", mime="application/zip", data=encrypted_zip(enc.filename, enc.csv)
        ),
        deeply_nested_email(deep, 1000),
        report_email(cjk, filename="月次メッセージ報告書" * 12 + ".csv", data=non_utf8_csv(cjk)),
        report_email(
            big, filename=big.filename + ".gz", mime="application/gzip", data=gzip.compress(big.csv)
        ),
    ]
    good_raw = report_email(good)
    deliver(dovecot, user, PASSWORD, [*poisons, good_raw])
    before = snapshot(dovecot, user, PASSWORD)
    accept(workdir, gz, enc, deep, cjk, big, good)
    small_limit = {"INGEST_OUTPUT__MAX_INFLATED_BYTES": str(len(big.csv) // 2)}
    env = job_env(dovecot, user, workdir, **small_limit)

    first = run_ingest("run", env=env, cwd=workdir, timeout=300)

    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr + first.stdout
    assert "emails: 6 seen, 1 archived" in first.stdout
    assert_archive_matches(workdir / "archive", truth_of(good))
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before, {**{message_id(p): FAILED for p in poisons}, message_id(good_raw): PROCESSED}
    )
    status = json.loads(run_ingest("status", "--json", env=env, cwd=workdir).stdout)
    reasons = {m["message_id"]: m["reason"] for m in status["failed_messages"]}
    assert list(reasons) == [message_id(p) for p in poisons]
    for raw, words in zip(
        poisons,
        [
            "corrupt gzip stream",
            "export.zip: zip member",
            "nested deeper than",
            "not UTF-8",
            "inflates beyond",
        ],
        strict=True,
    ):
        assert words in reasons[message_id(raw)] and "\n" not in reasons[message_id(raw)]
    text = run_ingest("status", env=env, cwd=workdir).stdout
    assert "failed emails (5; after a fix: ingest retry --failed)" in text

    second = run_ingest("run", env=env, cwd=workdir, timeout=300)

    assert second.returncode == 0, second.stderr
    assert "emails: 0 seen" in second.stdout
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before, {**{message_id(p): FAILED for p in poisons}, message_id(good_raw): PROCESSED}
    )

    retried = run_ingest("retry", "--failed", env=job_env(dovecot, user, workdir), cwd=workdir, timeout=300)

    assert retried.returncode == 1, retried.stderr  # four still fail
    assert f"{message_id(poisons[-1])}: archived" in retried.stdout
    assert "Traceback" not in retried.stderr + retried.stdout
    assert_archive_matches(workdir / "archive", truth_of(good, big))
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before,
        {
            **{message_id(p): FAILED for p in poisons[:-1]},
            message_id(poisons[-1]): PROCESSED,
            message_id(good_raw): PROCESSED,
        },
    )
    after = json.loads(run_ingest("status", "--json", env=env, cwd=workdir).stdout)["failed_messages"]
    assert [m["message_id"] for m in after] == [message_id(p) for p in poisons[:-1]]
    assert all(m["attempts"] == 2 for m in after)


def test_import_archives_the_good_files_and_gives_each_bad_one_a_line(workdir) -> None:
    good, deep = window(19), window(22)
    files = {
        "good.csv": good.csv,
        "enc.zip": encrypted_zip("inner.csv", good.csv),
        "corrupt.csv.gz": corrupt_gzip(good.csv),
        "bomb.csv.gz": gzip_bomb(4 * 1024 * 1024),
        "deep.eml": deeply_nested_email(deep, 1000),
        "not-a-zip.zip": b"PK\x03\x04 nothing more",
    }
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    env = {
        "INGEST_OUTPUT__ROOT": str(workdir / "archive"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
        "INGEST_OUTPUT__MAX_INFLATED_BYTES": str(1024 * 1024),
        "COLUMNS": "200",
    }

    result = run_ingest("import", *files, "--bot", BOT, env=env, cwd=workdir)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    attention = [line for line in result.stderr.splitlines() if line.startswith("attention:")]
    for name, words in [
        ("enc.zip", "is encrypted"),
        ("corrupt.csv.gz", "corrupt gzip stream"),
        ("bomb.csv.gz", "inflates beyond"),
        ("deep.eml", "nested deeper than"),
        ("not-a-zip.zip", "corrupt zip"),
    ]:
        assert [line for line in attention if name in line and words in line], (name, result.stderr)
    assert len(attention) == 5, result.stderr
    assert_archive_matches(workdir / "archive", truth_of(good))


def test_an_email_inflating_to_700_mib_stays_within_the_memory_budget(dovecot, workdir) -> None:
    """The issue's email: under 1 MB, its .csv.gz inflates to 700 MiB. The whole `ingest
    run` process (measured by the kernel: its ru_maxrss from wait4) stays within
    MEMORY_BUDGET_MIB; the email is set aside with its reason, the next report archived."""
    user = ACCOUNTS.take()
    bomb, good = window(25), window(28)
    bomb_raw = report_email(
        bomb, filename=bomb.filename + ".gz", mime="application/gzip", data=gzip_bomb(700 * 1024 * 1024)
    )
    assert len(bomb_raw) < 1024 * 1024
    good_raw = report_email(good)
    deliver(dovecot, user, PASSWORD, [bomb_raw, good_raw])
    before = snapshot(dovecot, user, PASSWORD)
    accept(workdir, bomb, good)

    done, peak_mib = ingest_peak_rss("run", env=job_env(dovecot, user, workdir), cwd=workdir)
    print(f"peak RSS of `ingest run`: {peak_mib:.0f} MiB")  # shown with -s; docs/RELIABILITY.md

    assert done.returncode == 1, done.stderr
    assert "inflates beyond" in done.stderr and "Traceback" not in done.stderr
    assert peak_mib < MEMORY_BUDGET_MIB
    assert snapshot(dovecot, user, PASSWORD) == moved(
        before, {message_id(bomb_raw): FAILED, message_id(good_raw): PROCESSED}
    )
    assert_archive_matches(workdir / "archive", truth_of(good))
    assert not any((workdir / "tmp").iterdir())  # the scratch folder is cleaned up
