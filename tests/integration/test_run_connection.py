"""``run --until-done`` logs in to IMAP once for all its passes, and again only when the
connection broke (issue 25: the load test logged in 812 times, a seventh of its time).

A loopback proxy in front of the IMAP server counts the connections the job opens and
cuts them on demand; the archive must come out complete either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ingest.pipeline.passes import RunSummary, run_until_done
from ingest.request.requester import plan_backfill
from ingest.simulator import CertainlySimulator, EmbeddedImap, SimulatorConfig
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.job import job_settings
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.integration]

BOTS = ["0e7f0e7f-0000-4000-8000-000000000001", "0e7f0e7f-0000-4000-8000-000000000002"]
FIRST, LAST = date(2024, 10, 1), date(2024, 10, 20)


@pytest.fixture
def servers() -> Iterator[tuple[CertainlySimulator, EmbeddedImap, TcpProxy]]:
    with EmbeddedImap() as imap:
        config = SimulatorConfig(delivery_delay=0.05, recipient=imap.username)
        with CertainlySimulator(config, deliver=imap.delivery()) as sim, TcpProxy(imap.port) as proxy:
            yield sim, imap, proxy


def run_job(
    servers: tuple[CertainlySimulator, EmbeddedImap, TcpProxy], workdir: Path, *, cut_after_pass: int = 0
) -> tuple[RunSummary, int]:
    """Backfill both bots in 10-day windows through the proxy; with ``cut_after_pass`` the
    proxy resets the job's connections after that pass. Returns the summary and the passes."""
    sim, imap, proxy = servers
    settings = job_settings(
        sim,
        imap,
        workdir,
        requester={"via": "email", "window_days": 10, "poll_interval": 0.05},
        imap_options={"port": proxy.port},
    )
    passes = 0

    def after_pass(_: RunSummary) -> None:
        nonlocal passes
        passes += 1
        if passes == cut_after_pass:
            proxy.cut_all()

    with Store.open(settings.state.path) as store:
        plan_backfill(store, BOTS, FIRST, LAST, window_days=10)
        summary = run_until_done(settings, store, timeout=90, on_pass=after_pass)
        assert {w.state for w in store.windows()} == {WindowState.ARCHIVED}
    assert summary.failed == 0 and summary.balanced
    assert_archive_matches(workdir / "archive", expected_rows(BOTS, FIRST, LAST))
    return summary, passes


def test_all_passes_share_one_login(
    servers: tuple[CertainlySimulator, EmbeddedImap, TcpProxy], tmp_path: Path
) -> None:
    _, passes = run_job(servers, tmp_path)
    assert passes >= 2  # the reports arrive over several passes, not all in the first
    assert servers[2].connections == 1


def test_a_connection_lost_between_passes_is_opened_again(
    servers: tuple[CertainlySimulator, EmbeddedImap, TcpProxy], tmp_path: Path
) -> None:
    _, passes = run_job(servers, tmp_path, cut_after_pass=1)
    assert passes >= 2
    assert servers[2].cuts == 1
    assert servers[2].connections == 2  # the broken one, then one for every later pass
