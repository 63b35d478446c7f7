"""Folders as each real server names them: `ingest doctor` shows the namespace, the
separator and the exact folder names, and whether they may be created; a special-use
folder is refused with exit 2 naming the setting (Dovecot and Cyrus IMAP)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from ingest.simulator import CertainlySimulator, EmbeddedImap, SimulatorConfig
from ingest.state.store import Store
from tests.support.archive import assert_archive_matches
from tests.support.cyrus import private_cyrus
from tests.support.dovecot import private_dovecot
from tests.support.imapservers import SERVER_KINDS, ImapServer, server_name
from tests.support.job import job_env, run_ingest
from tests.support.mail import (
    SENDER,
    accept_windows,
    corrupt_gzip,
    deliver,
    message_id,
    report,
    report_email,
    truth_of,
)

pytestmark = pytest.mark.integration

USER, PASSWORD = "owner@example.test", "secret"
USERS = {USER: PASSWORD}
PROCESSED, FAILED = "certainly-ingest/processed", "certainly-ingest/failed"
BOT = "3f0c2a9e-5555-4c1a-9d4e-00000000000f"


@dataclass(frozen=True)
class Account:
    host: str
    port: int
    username: str = USER
    password: str = PASSWORD


@pytest.fixture(scope="module")
def sim() -> Iterator[CertainlySimulator]:
    """The API the doctor checks the token against (no export is requested)."""
    with CertainlySimulator(SimulatorConfig()) as simulator:
        yield simulator


def env_for(sim: CertainlySimulator, host: str, port: int, workdir: Path, **extra: str) -> dict[str, str]:
    return job_env(sim, Account(host, port), workdir, COLUMNS="250", **extra)


def doctor_row(stdout: str, check: str) -> tuple[str, str]:
    """(status, detail) of one check in the doctor's table."""
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 3 and cells[0] == check:
            return cells[1], cells[2]
    raise AssertionError(f"no {check!r} row in:\n{stdout}")


def folders_of(server: ImapServer) -> set[str]:
    with IMAPClient(server.host, port=server.port, ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        return {name for _, _, name in client.list_folders()}


@pytest.mark.parametrize("imap_server", SERVER_KINDS, indirect=True)
def test_doctor_shows_the_namespace_and_the_exact_folder_names_and_creates_nothing(
    imap_server: ImapServer, sim: CertainlySimulator, workdir: Path
) -> None:
    before = folders_of(imap_server)
    result = run_ingest("doctor", env=env_for(sim, imap_server.host, imap_server.port, workdir), cwd=workdir)
    namespace = f"personal namespace {imap_server.personal_prefix!r}, separator {imap_server.separator!r}"
    assert doctor_row(result.stdout, "imap namespace") == ("pass", namespace + " (NAMESPACE)")
    status, folders = doctor_row(result.stdout, "imap folders")
    assert status == "pass", result.stdout
    assert f"processed {server_name(imap_server, PROCESSED)!r} (will be created" in folders
    assert f"failed {server_name(imap_server, FAILED)!r} (will be created" in folders
    assert folders_of(imap_server) == before  # the doctor creates nothing


@pytest.mark.parametrize("altnamespace", [False, True], ids=["inbox-prefix", "default"])
def test_doctor_fails_when_the_login_may_not_create_the_folders(
    altnamespace: bool, sim: CertainlySimulator, workdir: Path
) -> None:
    """Cyrus has ACLs: without the create right ('k') on INBOX nothing can go under INBOX,
    nor beside it at the top level (the rights an owner always has are narrowed to 'l'
    for this, as an admin may). The job's own attempt is refused the same way."""
    with private_cyrus(users=USERS, altnamespace=altnamespace, owner_rights="l") as cyrus:
        with cyrus.admin() as admin:
            admin.setacl(cyrus.user_mailbox(USER), USER, "lrswite")
        result = run_ingest("doctor", env=env_for(sim, cyrus.host, cyrus.port, workdir), cwd=workdir)
        with IMAPClient(cyrus.host, port=cyrus.port, ssl=False, timeout=10) as client:
            client.login(USER, PASSWORD)
            with pytest.raises(IMAPClientError):
                client.create_folder(server_name(cyrus, PROCESSED))
    status, folders = doctor_row(result.stdout, "imap folders")
    assert result.returncode == 1
    assert status == "FAIL", result.stdout
    processed = server_name(cyrus, PROCESSED)
    assert f"{processed!r} (cannot be created: no create right on 'INBOX'" in folders


def _create_special_use(server: ImapServer, name: str, flag: str) -> None:
    """CREATE name (USE (flag)) (RFC 6154 CREATE-SPECIAL-USE), as a mail program does."""
    with IMAPClient(server.host, port=server.port, ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        typ, data = client._imap._simple_command("CREATE", f'"{name}"', f"(USE ({flag}))")  # noqa: SLF001
        assert typ == "OK", data


@pytest.mark.parametrize("kind", ["dovecot-inbox-prefix", "cyrus"])
def test_a_folder_the_server_flags_special_use_is_refused_with_exit_2(
    kind: str, sim: CertainlySimulator, workdir: Path
) -> None:
    """Named 'Kept' (no usual special-use name), flagged \\Archive on the server: `run`
    refuses it, and a folder inside it, before moving anything; allowed explicitly, it runs."""
    server_cm = (
        private_cyrus(users=USERS)
        if kind == "cyrus"
        else private_dovecot(users=USERS, personal_prefix="INBOX.", special_use={"Kept": "\\Archive"})
    )
    with server_cm as server:
        if kind == "cyrus":
            _create_special_use(server, "Kept", "\\Archive")
        env = env_for(sim, server.host, server.port, workdir, INGEST_IMAP__PROCESSED_FOLDER="Kept")
        refused = run_ingest("run", env=env, cwd=workdir)
        inside = run_ingest("run", env={**env, "INGEST_IMAP__PROCESSED_FOLDER": "Kept/reports"}, cwd=workdir)
        doctor = run_ingest("doctor", env=env, cwd=workdir)
        allowed = run_ingest("run", env={**env, "INGEST_IMAP__ALLOW_SPECIAL_USE_FOLDER": "true"}, cwd=workdir)
    kept = server_name(server, "Kept")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith(
        "error: INGEST_IMAP__PROCESSED_FOLDER='Kept' is a special-use folder "
        f"(the server marks {kept!r} as \\ARCHIVE)"
    )
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) <= 2
    assert inside.returncode == 2 and f"{server_name(server, 'Kept/reports')!r} is inside it" in inside.stderr
    assert doctor.returncode == 1 and doctor_row(doctor.stdout, "imap folders")[0] == "FAIL"
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INGEST_IMAP__PROCESSED_FOLDER", "Trash"),
        ("INGEST_IMAP__FAILED_FOLDER", "[Gmail]/All Mail"),
        ("INGEST_IMAP__REJECTED_FOLDER", "INBOX"),
        ("INGEST_IMAP__FAILED_FOLDER", "certainly//failed"),
    ],
)
def test_an_unfit_folder_setting_stops_the_job_with_exit_2_naming_it(
    variable: str, value: str, sim: CertainlySimulator, workdir: Path
) -> None:
    """Refused before any connection: the server given does not even listen."""
    env = env_for(sim, "127.0.0.1", 9, workdir, **{variable: value})
    result = run_ingest("run", env=env, cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {variable}={value!r}")
    assert "Traceback" not in result.stderr


def count_in(server: ImapServer, folder: str) -> int:
    """Messages in a folder named as the server names it (0 when it does not exist)."""
    with IMAPClient(server.host, port=server.port, ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        if not client.folder_exists(folder):
            return 0
        return int(client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])


@pytest.mark.parametrize("imap_server", ["dovecot-inbox-prefix", "cyrus-inbox-prefix"], indirect=True)
def test_on_an_inbox_prefixed_server_a_bad_report_goes_to_its_failed_folder_and_retry_finds_it(
    imap_server: ImapServer, sim: CertainlySimulator, workdir: Path
) -> None:
    """The failed folder is placed as the processed one is, and `retry --failed` looks
    for the email there, by the same server name."""
    good, bad = (
        report(BOT, date(2024, 7, 1), date(2024, 7, 3)),
        report(BOT, date(2024, 7, 4), date(2024, 7, 6)),
    )
    with Store.open(workdir / "state.sqlite") as store:
        accept_windows(store, good, bad)
    poisoned = report_email(
        bad, filename=bad.filename + ".gz", mime="application/gzip", data=corrupt_gzip(bad.csv)
    )
    deliver(imap_server, USER, PASSWORD, [poisoned, report_email(good)])
    env = {
        **env_for(sim, imap_server.host, imap_server.port, workdir),
        "INGEST_IMAP__ALLOWED_SENDERS": SENDER,
        "INGEST_REQUESTER__MAX_IN_FLIGHT": "1000",
    }

    ran = run_ingest("run", env=env, cwd=workdir)
    retried = run_ingest("retry", "--failed", env=env, cwd=workdir)

    assert ran.returncode == 1, ran.stderr  # one email set aside
    assert_archive_matches(workdir / "archive", truth_of(good))
    assert count_in(imap_server, server_name(imap_server, PROCESSED)) == 1
    assert count_in(imap_server, server_name(imap_server, FAILED)) == 1
    assert count_in(imap_server, "INBOX") == 0
    assert retried.returncode == 1  # still corrupt: found, tried, still failing
    assert f"{message_id(poisoned)}: " in retried.stdout and "not found" not in retried.stdout
    assert count_in(imap_server, server_name(imap_server, FAILED)) == 1
    status = run_ingest("status", env=env, cwd=workdir)
    assert server_name(imap_server, FAILED) in status.stdout, status.stdout  # where it really is


def test_a_server_without_namespace_keeps_the_configured_names(
    sim: CertainlySimulator, workdir: Path
) -> None:
    """pymap answers no NAMESPACE: the names stay as before (``/`` is its separator)."""
    with EmbeddedImap(USER, PASSWORD) as pymap:
        result = run_ingest("doctor", env=env_for(sim, pymap.host, pymap.port, workdir), cwd=workdir)
    status, detail = doctor_row(result.stdout, "imap namespace")
    assert (status, detail) == (
        "pass",
        "personal namespace '', separator '/' (no NAMESPACE; separator from LIST \"\" \"\")",
    )
    status, folders = doctor_row(result.stdout, "imap folders")
    assert status == "pass"
    assert (
        f"processed {PROCESSED!r} (will be created" in folders
        and f"failed {FAILED!r} (will be created" in folders
    )


def _archive_run(server: ImapServer, sim: CertainlySimulator, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a run that archives what is delivered to ``server``."""
    return {
        **env_for(sim, server.host, server.port, workdir, **extra),
        "INGEST_IMAP__ALLOWED_SENDERS": SENDER,
        "INGEST_REQUESTER__MAX_IN_FLIGHT": "1000",
    }


def test_a_lower_case_inbox_level_is_the_servers_inbox_run_after_run(
    sim: CertainlySimulator, workdir: Path
) -> None:
    """Cyrus (default namespace) creates 'INBOX/reports' for 'inbox/reports' and LISTs only
    that spelling: the second run must find the folder the first one created."""
    first, second = (
        report(BOT, date(2024, 8, 1), date(2024, 8, 3)),
        report(BOT, date(2024, 8, 4), date(2024, 8, 6)),
    )
    with Store.open(workdir / "state.sqlite") as store:
        accept_windows(store, first, second)
    with private_cyrus(users=USERS, altnamespace=True) as cyrus:
        env = _archive_run(cyrus, sim, workdir, INGEST_IMAP__PROCESSED_FOLDER="inbox/reports")
        deliver(cyrus, USER, PASSWORD, [report_email(first)])
        once = run_ingest("run", env=env, cwd=workdir)
        deliver(cyrus, USER, PASSWORD, [report_email(second)])
        again = run_ingest("run", env=env, cwd=workdir)
        doctor = run_ingest("doctor", env=env, cwd=workdir)
        assert (once.returncode, again.returncode) == (0, 0), again.stderr
        assert count_in(cyrus, "INBOX/reports") == 2 and count_in(cyrus, "INBOX") == 0
    assert_archive_matches(workdir / "archive", truth_of(first, second))
    assert "processed 'INBOX/reports' (exists" in doctor_row(doctor.stdout, "imap folders")[1]


def test_a_special_use_folder_spelled_with_a_lower_case_inbox_is_refused(
    sim: CertainlySimulator, workdir: Path
) -> None:
    """Dovecot flags 'INBOX.Kept' \\Archive; 'inbox/Kept' is that folder, refused alike."""
    with private_dovecot(users=USERS, special_use={"INBOX.Kept": "\\Archive"}) as dovecot:
        env = env_for(sim, dovecot.host, dovecot.port, workdir, INGEST_IMAP__PROCESSED_FOLDER="inbox/Kept")
        refused = run_ingest("run", env=env, cwd=workdir)
    assert refused.returncode == 2, refused.stderr
    assert "(the server marks 'INBOX.Kept' as \\ARCHIVE)" in refused.stderr


@pytest.mark.parametrize("imap_server", ["dovecot-inbox-prefix"], indirect=True)
def test_an_empty_level_by_the_servers_separator_is_refused_before_anything_moves(
    imap_server: ImapServer, sim: CertainlySimulator, workdir: Path
) -> None:
    """Fine by '/', empty by the server's '.': refused with exit 2, nothing created or moved."""
    good = report(BOT, date(2024, 9, 1), date(2024, 9, 3))
    with Store.open(workdir / "state.sqlite") as store:
        accept_windows(store, good)
    deliver(imap_server, USER, PASSWORD, [report_email(good)])
    before = folders_of(imap_server)
    for name in (".Reports", "Reports.", "INBOX..Reports"):
        env = _archive_run(imap_server, sim, workdir, INGEST_IMAP__PROCESSED_FOLDER=name)
        refused = run_ingest("run", env=env, cwd=workdir)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith(f"error: INGEST_IMAP__PROCESSED_FOLDER={name!r} has an empty level")
    doctor = run_ingest("doctor", env=env, cwd=workdir)
    assert folders_of(imap_server) == before and count_in(imap_server, "INBOX") == 1
    assert doctor.returncode == 1 and doctor_row(doctor.stdout, "imap folders")[0] == "FAIL"


def test_a_folder_that_is_only_a_parent_is_made_a_folder_and_mail_goes_into_it(
    sim: CertainlySimulator, workdir: Path
) -> None:
    """On maildir Dovecot 'Reports.failed' makes 'Reports' a \\Noselect parent, which LIST
    names but no mail can enter: the job CREATEs it before moving, run after run."""
    good = report(BOT, date(2024, 10, 1), date(2024, 10, 3))
    with Store.open(workdir / "state.sqlite") as store:
        accept_windows(store, good)
    with private_dovecot(users=USERS) as dovecot:
        with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
            client.login(USER, PASSWORD)
            client.create_folder("Reports.failed")
            assert b"\\Noselect" in client.list_folders("", "Reports")[0][0]
        deliver(dovecot, USER, PASSWORD, [report_email(good)])
        env = _archive_run(
            dovecot,
            sim,
            workdir,
            INGEST_IMAP__PROCESSED_FOLDER="Reports",
            INGEST_IMAP__FAILED_FOLDER="Reports/failed",
        )
        doctor = run_ingest("doctor", env=env, cwd=workdir)
        ran = run_ingest("run", env=env, cwd=workdir)
        assert ran.returncode == 0, ran.stderr
        assert count_in(dovecot, "Reports") == 1 and count_in(dovecot, "INBOX") == 0
    assert_archive_matches(workdir / "archive", truth_of(good))
    status, folders = doctor_row(doctor.stdout, "imap folders")
    assert (
        status == "pass" and "processed 'Reports' (a parent only (\\Noselect), will be created if" in folders
    )


def test_a_parent_only_folder_the_server_will_not_make_a_folder_stops_the_run_naming_the_setting(
    sim: CertainlySimulator, workdir: Path
) -> None:
    """mbox Dovecot: a folder holds mail or folders, never both, so CREATE 'Reports' beside
    'Reports/failed' is refused. Exit 2 naming the setting, not exit 3 run after run; once
    the setting is changed the email is moved and its rows are archived once."""
    good = report(BOT, date(2024, 11, 1), date(2024, 11, 3))
    with Store.open(workdir / "state.sqlite") as store:
        accept_windows(store, good)
    with private_dovecot(users=USERS, mail_format="mbox") as dovecot:
        with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
            client.login(USER, PASSWORD)
            client.create_folder("Reports/failed")
        deliver(dovecot, USER, PASSWORD, [report_email(good)])
        env = _archive_run(
            dovecot,
            sim,
            workdir,
            INGEST_IMAP__PROCESSED_FOLDER="Reports",
            INGEST_IMAP__FAILED_FOLDER="Reports/failed",
        )
        refused = run_ingest("run", env=env, cwd=workdir)
        assert refused.returncode == 2, refused.stderr
        assert (
            refused.stderr.strip()
            .splitlines()[-1]
            .startswith(  # after the run's log lines
                "error: INGEST_IMAP__PROCESSED_FOLDER='Reports' is 'Reports' on this server, only a parent"
            )
        )
        assert "Traceback" not in refused.stderr and count_in(dovecot, "INBOX") == 1
        fixed = run_ingest("run", env={**env, "INGEST_IMAP__PROCESSED_FOLDER": "Archived"}, cwd=workdir)
        assert fixed.returncode == 0, fixed.stderr
        assert count_in(dovecot, "Archived") == 1 and count_in(dovecot, "INBOX") == 0
    assert_archive_matches(workdir / "archive", truth_of(good))


def test_doctor_fails_an_existing_folder_the_login_may_not_move_mail_into(
    sim: CertainlySimulator, workdir: Path
) -> None:
    """Cyrus: the processed folder exists but grants only 'lr' (no 'i'); the job's MOVE
    would be refused, so the doctor fails it, naming the folder."""
    with private_cyrus(users=USERS, altnamespace=True) as cyrus:
        processed = server_name(cyrus, PROCESSED)
        with IMAPClient(cyrus.host, port=cyrus.port, ssl=False, timeout=10) as client:
            client.login(USER, PASSWORD)
            client.create_folder(processed)
        local, domain = USER.split("@")
        with cyrus.admin() as admin:  # the admin's name (virtual domains): user/NAME/FOLDER@DOMAIN
            admin.setacl(f"user/{local}/{processed}@{domain}", USER, "lr")
        result = run_ingest("doctor", env=env_for(sim, cyrus.host, cyrus.port, workdir), cwd=workdir)
    status, folders = doctor_row(result.stdout, "imap folders")
    assert result.returncode == 1 and status == "FAIL", result.stdout
    assert f"processed {processed!r} (exists, but no insert right ('i')" in folders
