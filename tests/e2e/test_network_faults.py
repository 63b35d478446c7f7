"""Network faults between the job and the Certainly API (a loopback TCP proxy in front of
the simulator): connections reset mid-answer, and a black hole that swallows requests.
The job retries within its limits and completes, exactly once. (Faults between the job
and Dovecot are in tests/integration/test_watcher_faults.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ingest.pipeline.passes import run_until_done
from ingest.request.requester import plan_backfill
from ingest.settings import Settings
from ingest.simulator import CertainlySimulator, EmbeddedImap, SimulatorConfig
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.job import job_settings
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BOT = "0e7f0e7f-0000-4000-8000-000000000001"
FIRST, LAST = date(2024, 10, 1), date(2024, 10, 20)


@pytest.fixture
def servers() -> Iterator[tuple[CertainlySimulator, EmbeddedImap]]:
    with EmbeddedImap() as imap:
        config = SimulatorConfig(delivery_delay=0.05, recipient=imap.username)
        with CertainlySimulator(config, deliver=imap.delivery()) as sim:
            yield sim, imap


def settings_via(proxy: TcpProxy, sim: CertainlySimulator, imap: EmbeddedImap, workdir: Path) -> Settings:
    return job_settings(
        sim,
        imap,
        workdir,
        certainly={"base_url": f"http://127.0.0.1:{proxy.port}/", "timeout": 1.0},
        requester={
            "via": "email",  # the emailed path, as before routing (issue 27)
            "window_days": 10,
            "poll_interval": 0.05,
            "retry_initial": 0.05,
            "retry_max": 0.2,
            "max_attempts": 8,
        },
    )


@pytest.mark.parametrize("fault", ["reset mid-answer", "black hole"])
def test_the_job_rides_out_api_network_faults(
    servers: tuple[CertainlySimulator, EmbeddedImap], workdir: Path, fault: str
) -> None:
    sim, imap = servers
    # The first three connections to the API fail; the job must retry past them.
    options = {"cut_after": 5} if fault == "reset mid-answer" else {"cut_after": 0, "stall": True}
    with TcpProxy(
        int(sim.base_url.rsplit(":", 1)[1].strip("/")), cut_connections={0, 1, 2}, **options
    ) as proxy:  # type: ignore[arg-type]
        settings = settings_via(proxy, sim, imap, workdir)
        with Store.open(settings.state.path) as store:
            plan_backfill(store, [BOT], FIRST, LAST, window_days=10)
            summary = run_until_done(settings, store, timeout=90)
            answers = [a for w in store.windows() for a in store.api_answers(w.id)]
            assert {w.state for w in store.windows()} == {WindowState.ARCHIVED}
        # A reset is counted by the proxy; a black hole swallows the answer after the
        # simulator acted on the request: the job may meet its own export "in progress".
        assert proxy.cuts >= 1 if fault == "reset mid-answer" else proxy.connections >= 2
    transient = [a for a in answers if a["outcome"] == "transient"]
    assert len(transient) >= 1 and all(a["status"] == 0 and a["body"] for a in transient)
    assert summary.failed == 0 and summary.balanced
    assert_archive_matches(workdir / "archive", expected_rows([BOT], FIRST, LAST))
