"""A full or read-only archive disk, or an S3 endpoint failing mid-upload: the job stops
with a one-line error and a non-zero
exit, leaves no temporary file and no half-recorded state, and the next run (with space
back) completes exactly once. The disk is a real tmpfs mounted by the test (we are root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from imapclient import IMAPClient

from ingest.simulator import CertainlySimulator, EmbeddedImap, SimulatorConfig
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.job import job_env, run_ingest
from tests.support.s3 import S3FaultProxy
from tests.support.seaweed import SeaweedS3

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BOT = "5b6c7d8e-0000-4000-8000-0000000000f1"
FIRST, LAST = date(2024, 9, 1), date(2024, 9, 10)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"cannot mount a tmpfs for the storage-fault test: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)


def remount(mountpoint: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mountpoint)], check=True, timeout=30)


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_output_disk_fault_stops_cleanly_and_the_next_run_completes(
    small_disk: Path, tmp_path: Path, fault: str
) -> None:
    if fault == "read-only":
        remount(small_disk, "ro,size=64m")
    with (
        EmbeddedImap() as imap,
        CertainlySimulator(
            SimulatorConfig(delivery_delay=0.05, recipient=imap.username), deliver=imap.delivery()
        ) as sim,
    ):
        env = job_env(
            sim, imap, tmp_path, INGEST_OUTPUT__ROOT=str(small_disk / "archive"), INGEST_LOG_FORMAT="text"
        )
        run_ingest("backfill", "--bot", BOT, "--from", str(FIRST), "--to", str(LAST), env=env, cwd=tmp_path)
        failed = run_ingest("run", "--until-done", "--timeout", "30", env=env, cwd=tmp_path)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        last_line = failed.stderr.strip().splitlines()[-1]
        assert last_line.startswith("error: cannot write") and "INGEST_OUTPUT__ROOT" in last_line
        assert "Traceback" not in failed.stderr
        assert not [p for p in small_disk.rglob("*") if p.name.startswith(".tmp-")]
        with Store.open(tmp_path / "state.sqlite") as store:
            assert [w.state for w in store.windows()] == [WindowState.ACCEPTED]
            assert store.attachment_totals()["attachments"] == 0

        remount(small_disk, "rw,size=64m")
        again = run_ingest("run", "--until-done", "--timeout", "30", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
    assert_archive_matches(small_disk / "archive", expected_rows([BOT], FIRST, LAST))


def test_s3_endpoint_failing_mid_upload_stops_cleanly_and_the_next_run_completes(
    seaweed: SeaweedS3, tmp_path: Path
) -> None:
    """The object store answers 500 from the third write on (the raw copy and a data file
    are up, the rest and the manifest are not): exit 3, nothing left in staging, no
    manifest, the window still waits and the email is not moved; once the store is back
    the next run archives every row exactly once and verify is clean."""
    s3 = seaweed  # a real S3 server: deltalake's own client goes through the proxy too
    with (
        S3FaultProxy(s3.port) as proxy,
        EmbeddedImap() as imap,
        CertainlySimulator(
            SimulatorConfig(delivery_delay=0.05, recipient=imap.username), deliver=imap.delivery()
        ) as sim,
    ):
        staging = tmp_path / "staging"
        env = job_env(
            sim,
            imap,
            tmp_path,
            INGEST_LOG_FORMAT="text",
            **s3.env("faults", staging, endpoint=proxy.endpoint),
        )
        run_ingest("backfill", "--bot", BOT, "--from", str(FIRST), "--to", str(LAST), env=env, cwd=tmp_path)
        proxy.fail_writes_after = 2
        failed = run_ingest("run", "--until-done", "--timeout", "60", env=env, cwd=tmp_path)
        assert failed.returncode == 3, failed.stdout + failed.stderr
        last_line = failed.stderr.strip().splitlines()[-1]
        assert "object store failed (InternalError)" in last_line, last_line
        assert "Traceback" not in failed.stderr
        assert proxy.failed >= 1
        assert not list(staging.glob(".tmp-*")), "temporary files left behind"
        assert not s3.keys("faults/manifests/"), "a manifest was written without its data"
        assert s3.keys("faults/"), "the fault should strike mid-upload, after the first objects"
        with Store.open(tmp_path / "state.sqlite") as store:
            assert [w.state for w in store.windows()] == [WindowState.ACCEPTED]
            assert store.attachment_totals()["attachments"] == 0
        assert inbox_count(imap) == 1, "the email must stay until its report is archived"

        proxy.fail_writes_after = None
        again = run_ingest("run", "--until-done", "--timeout", "60", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        checked = run_ingest("verify", env=env, cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        truth = expected_rows([BOT], FIRST, LAST)
        frame = s3.messages("faults")
        assert sorted(zip(frame["bot_id"], frame["id"], strict=True)) == sorted(truth)


def inbox_count(imap: EmbeddedImap) -> int:
    with IMAPClient(imap.host, port=imap.port, ssl=False, timeout=10) as client:
        client.login(imap.username, imap.password)
        client.select_folder("INBOX", readonly=True)
        return len(client.search())
