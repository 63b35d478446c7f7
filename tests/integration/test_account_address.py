"""Where the account's address comes from, as a careless operator meets it: `ingest doctor`
names it and its source, and warns when it cannot be known; a run without it says so in its
log; a bad entry is exit 2 naming the variable. Against the embedded IMAP server and the
simulator over HTTP, through the real CLI."""

from __future__ import annotations

from pathlib import Path

from ingest.simulator import CertainlySimulator, EmbeddedImap
from tests.support.job import job_env, run_ingest

PASSWORD = "pw-account-3c9e"


def test_doctor_names_the_account_address_and_where_it_came_from(
    imap: EmbeddedImap, sim: CertainlySimulator, tmp_path: Path
) -> None:
    env = job_env(sim, imap, tmp_path, COLUMNS="300", INGEST_CERTAINLY__ACCOUNT_EMAIL=None)
    by_login = run_ingest("doctor", env=env, cwd=tmp_path)
    configured = run_ingest(
        "doctor",
        env={**env, "INGEST_CERTAINLY__ACCOUNT_EMAIL": "Owner@Corp.test, alias@corp.test"},
        cwd=tmp_path,
    )
    assert by_login.returncode == 0, by_login.stdout
    assert f"{imap.username} (from INGEST_IMAP__USERNAME" in by_login.stdout
    assert configured.returncode == 0, configured.stdout
    assert "owner@corp.test, alias@corp.test (from INGEST_CERTAINLY__ACCOUNT_EMAIL)" in configured.stdout
    for done in (by_login, configured):
        assert PASSWORD not in done.stdout + done.stderr


def test_an_unknown_account_is_a_doctor_warning_and_a_logged_warning_on_every_run(
    imap: EmbeddedImap, sim: CertainlySimulator, tmp_path: Path
) -> None:
    # A login name that is no address, and no INGEST_CERTAINLY__ACCOUNT_EMAIL: not knowable.
    env = job_env(
        sim,
        imap,
        tmp_path,
        COLUMNS="300",
        INGEST_IMAP__USERNAME="demo",
        INGEST_LOG_FORMAT="text",
        INGEST_CERTAINLY__ACCOUNT_EMAIL=None,
    )
    doctor = run_ingest("doctor", env=env, cwd=tmp_path)
    assert "UNKNOWN" in doctor.stdout and "INGEST_CERTAINLY__ACCOUNT_EMAIL" in doctor.stdout, doctor.stdout
    run = run_ingest("run", env=env, cwd=tmp_path)
    assert "the account's address is not known" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_a_bad_account_address_is_exit_2_naming_the_variable(
    imap: EmbeddedImap, sim: CertainlySimulator, tmp_path: Path
) -> None:
    env = job_env(sim, imap, tmp_path, INGEST_CERTAINLY__ACCOUNT_EMAIL='["owner@corp.test", "ops at corp"]')
    done = run_ingest("run", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "INGEST_CERTAINLY__ACCOUNT_EMAIL" in done.stderr and "not an email address" in done.stderr
    assert "Traceback" not in done.stderr
