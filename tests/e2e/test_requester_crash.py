"""SIGKILL the job right after its POST is sent and before the answer is stored; run again.

The first ``python -m ingest run`` sends the export request, the simulator holds the answer
(a scripted delay), and the test kills the process as soon as the request has arrived: the
state store must show the window ``submitting``. The delayed request is still carried out by
the simulator after the client died (as a real server would), so the re-submission of the
second run may get "already in progress" for what is in fact our own export. Either way the
window must end ``archived`` exactly once, with the simulator's rows, no duplicates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from ingest.request.requester import plan_backfill
from ingest.simulator import CertainlySimulator, EmbeddedImap, Fault, SimulatorConfig
from ingest.simulator.api import IN_PROGRESS_DETAIL
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.job import start_ingest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

S = WindowState
BOT = "3f2b8c1e-0000-4000-8000-0000000000c1"
TOKEN = "crash-token"
START, END = date(2024, 3, 1), date(2024, 3, 10)
WAIT = 30.0  # seconds: upper bound of every wait on a server or a child process


@dataclass
class Rig:
    sim: CertainlySimulator
    imap: EmbeddedImap
    workdir: Path
    gate: threading.Event  # report emails are held back until it is set

    @property
    def state_path(self) -> Path:
        return self.workdir / "state.sqlite"

    @property
    def archive(self) -> Path:
        return self.workdir / "archive"

    def env(self) -> dict[str, str]:
        """The job's variables: the test's servers only (run with no other INGEST_* variable)."""
        secrets = self.workdir / "no-secrets"
        secrets.mkdir(exist_ok=True)
        return {
            "INGEST_CERTAINLY__BASE_URL": self.sim.base_url,
            "INGEST_CERTAINLY__TOKEN": TOKEN,
            "INGEST_CERTAINLY__REPORT_PATH": self.sim.config.report_path,
            "INGEST_REQUESTER__VIA": "email",  # the emailed path, as before routing
            "INGEST_IMAP__HOST": self.imap.host,
            "INGEST_IMAP__PORT": str(self.imap.port),
            "INGEST_IMAP__SECURITY": "none",
            "INGEST_IMAP__USERNAME": self.imap.username,
            "INGEST_IMAP__PASSWORD": self.imap.password,
            "INGEST_IMAP__ALLOWED_SENDERS": "@certainly.example",
            "INGEST_IMAP__TIMEOUT": "10",
            "INGEST_OUTPUT__ROOT": str(self.archive),
            "INGEST_STATE__PATH": str(self.state_path),
            "INGEST_REQUESTER__POLL_INTERVAL": "0.1",
            "INGEST_REQUESTER__RETRY_INITIAL": "0.2",
            "INGEST_REQUESTER__RETRY_MAX": "1",
            "INGEST_SECRETS_DIR": str(secrets),  # never read a machine's /run/secrets
        }

    def start_job(self, *args: str, name: str, **env: str) -> subprocess.Popen[bytes]:
        """``python -m ingest <args>`` in the workdir (so no stray .env is read)."""
        with open(self.workdir / f"{name}.out", "wb") as out, open(self.workdir / f"{name}.err", "wb") as err:
            return start_ingest(
                *args, env={**self.env(), **env}, cwd=self.workdir, stdout=out, stderr=err, text=False
            )

    def finish(self, proc: subprocess.Popen[bytes], name: str) -> int:
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            pytest.fail(f"`ingest {name}` did not finish in time:\n{self.output(name)}")
        return code

    def output(self, name: str) -> str:
        return "\n".join(
            (self.workdir / f"{name}.{kind}").read_text(errors="replace")
            for kind in ("out", "err")
            if (self.workdir / f"{name}.{kind}").exists()
        )


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    """The simulator mailing into pymap; ``indirect`` parameters are SimulatorConfig knobs."""
    gate = threading.Event()
    with EmbeddedImap(username="owner@example.test", password="crash-password") as imap:
        delivery = imap.delivery()

        def deliver(message: bytes) -> None:
            if not gate.wait(WAIT):  # hold the export "in progress" until the test says so
                raise RuntimeError("report email held back for too long")
            delivery.deliver(message)

        config = SimulatorConfig(
            token=TOKEN, delivery_delay=0.2, recipient=imap.username, **getattr(request, "param", {})
        )
        sim = CertainlySimulator(config, deliver=deliver).start()
        try:
            yield Rig(sim, imap, tmp_path, gate)
        finally:
            gate.set()  # let a held delivery finish, so stop() does not wait for it
            sim.stop(timeout=10.0)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)


def crash_after_post(rig: Rig, delay: float) -> None:
    """Plan the window, start `ingest run`, SIGKILL it once its POST has arrived."""
    with Store.open(rig.state_path) as store:
        plan_backfill(store, [BOT], START, END, window_days=30)
    rig.sim.script_post(Fault(delay=delay))  # the answer hangs: the client is mid-call
    job = rig.start_job("run", name="first")
    try:
        if not rig.sim.faults.wait_for_arrivals("POST", 1, timeout=WAIT):
            pytest.fail(f"the job never sent its POST:\n{rig.output('first')}")
        os.kill(job.pid, signal.SIGKILL)
        assert job.wait(timeout=WAIT) == -signal.SIGKILL
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(WAIT)
    with Store.open(rig.state_path) as store:
        [window] = store.windows()
        assert window.state is S.SUBMITTING, "the POST was sent: the window must say so"
        assert store.api_answers(window.id) == []  # killed before the answer was stored


def final_checks(rig: Rig) -> None:
    """Archived once: the simulator's rows, no duplicates, one archived report."""
    with Store.open(rig.state_path) as store:
        [window] = store.windows()
        assert (window.state, window.from_date, window.to_date) == (S.ARCHIVED, START, END)
        truth = expected_rows([BOT], START, END)
        assert window.rows_archived == len(truth)
        totals = store.attachment_totals()
        assert (totals["attachments"], totals["rows_written"]) == (1, len(truth))
        assert set(store.email_counts()) <= {"archived"}
    assert_archive_matches(rig.archive, truth)
    assert len(list((rig.archive / "manifests").glob("*.json"))) == 1


@pytest.mark.parametrize(
    "rig",
    [pytest.param({}, id="named-report"), pytest.param({"email_hints": False}, id="anonymous-report")],
    indirect=True,
)
def test_resubmission_after_crash_meets_our_own_export_in_progress(rig: Rig) -> None:
    """With an anonymous report (no bot id or dates in subject or file name) only the
    requester's knowledge can match it: "in progress" after a crash in ``submitting`` must
    be understood as possibly our own export (issue 4), not leave the report unmatched."""
    crash_after_post(rig, delay=2.0)
    # The server goes on with the request of the dead client: that export is now running.
    wait_until(lambda: len(rig.sim.exports) == 1, "the delayed POST was accepted")

    # A production-like back-off (the default is 60 s): the report arrives while the window
    # waits for its retry, so it is matched on what the requester knows, not on a re-submission.
    job = rig.start_job(
        "run",
        "--until-done",
        "--timeout",
        "60",
        name="second",
        INGEST_REQUESTER__RETRY_INITIAL="30",
        INGEST_REQUESTER__RETRY_MAX="30",
    )
    try:
        wait_until(
            lambda: len([r for r in rig.sim.requests if r.method == "POST"]) >= 2,
            "the second run re-submitted the window",
        )
    finally:
        rig.gate.set()  # now let the report email of the first request arrive
    code = rig.finish(job, "second")

    resubmission = [r for r in rig.sim.requests if r.method == "POST"][1]
    assert resubmission.status == int(rig.sim.config.in_progress_style)
    with Store.open(rig.state_path) as store:
        [window] = store.windows()
        answers = store.api_answers(window.id)
        assert answers[0]["outcome"] == "in_progress" and IN_PROGRESS_DETAIL in answers[0]["body"]
    assert code == 0, rig.output("second")
    assert len(rig.sim.exports) == 1, "the export of the dead client was ours: no need to ask again"
    assert rig.sim.wait_idle(WAIT)
    assert rig.finish(rig.start_job("run", name="third"), "third") == 0, rig.output("third")
    final_checks(rig)


def test_resubmission_after_crash_before_the_server_answered(rig: Rig) -> None:
    rig.gate.set()  # reports are mailed as soon as they are generated
    crash_after_post(rig, delay=5.0)

    # Restart at once: the dead client's request is still being held by the server.
    code = rig.finish(rig.start_job("run", "--until-done", "--timeout", "60", name="second"), "second")
    assert code == 0, rig.output("second")

    # The held request is then carried out too: a second export and a second, identical email.
    wait_until(lambda: len(rig.sim.requests) == len(rig.sim.faults.arrivals), "every request was answered")
    assert rig.sim.wait_idle(WAIT)
    assert rig.finish(rig.start_job("run", name="third"), "third") == 0, rig.output("third")
    final_checks(rig)
