"""Fixtures of the integration tier: the embedded IMAP server and the simulated Certainly API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ingest.simulator import CertainlySimulator, EmbeddedImap, SimulatorConfig


@pytest.fixture
def imap(request: pytest.FixtureRequest) -> Iterator[EmbeddedImap]:
    """An embedded IMAP server for one test; its password is the module's ``PASSWORD``
    where the module sets one (a test may look for it in the job's output)."""
    with EmbeddedImap(password=getattr(request.module, "PASSWORD", "pw-embedded")) as server:
        yield server


@pytest.fixture
def sim(request: pytest.FixtureRequest, imap: EmbeddedImap) -> Iterator[CertainlySimulator]:
    """The simulated Certainly API, delivering its reports to :func:`imap` after 0.05 s;
    a module's ``SIMULATOR`` (a dict of SimulatorConfig fields) changes what it needs."""
    options = {"delivery_delay": 0.05, **getattr(request.module, "SIMULATOR", {})}
    with CertainlySimulator(
        SimulatorConfig(recipient=imap.username, **options), deliver=imap.delivery()
    ) as server:
        yield server
