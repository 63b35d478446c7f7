"""Fixtures shared by every tier of tests (Dovecot: the integration and end-to-end tiers)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dovecot import Dovecot, private_dovecot
from tests.support.imapservers import ImapServer, private_imap_server
from tests.support.mail import Mailboxes
from tests.support.seaweed import SeaweedS3, seaweed_s3


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A fresh folder outside pytest's tmp_path (which other sessions may lock to 0700):
    for archives and state stores that a Dovecot-side check may need to reach."""
    path = Path(tempfile.mkdtemp(prefix="ingest-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def dovecot_options() -> dict[str, Any]:
    """Extra keyword arguments for the module's Dovecot (TLS, OAuth, ...): none unless a
    module overrides this fixture."""
    return {}


@pytest.fixture(scope="module")
def dovecot(request: pytest.FixtureRequest, dovecot_options: dict[str, Any]) -> Iterator[Dovecot]:
    """A private Dovecot for the test module, with the accounts the module names in its
    ``USERS`` (address -> password); give each test its own account (see :func:`user`)."""
    users = getattr(request.module, "USERS", None)
    assert users, f"{request.module.__name__} uses the dovecot fixture but sets no USERS"
    with private_dovecot(users=users, **dovecot_options) as server:
        yield server


@pytest.fixture
def fresh_dovecot(request: pytest.FixtureRequest) -> Iterator[Dovecot]:
    """Like :func:`dovecot`, but a new server for every test: for a module whose tests all
    use the same account and each need an empty mailbox."""
    users = getattr(request.module, "USERS", None)
    assert users, f"{request.module.__name__} uses the fresh_dovecot fixture but sets no USERS"
    with private_dovecot(users=users) as server:
        yield server


@pytest.fixture
def imap_server(request: pytest.FixtureRequest) -> Iterator[ImapServer]:
    """A fresh server of the kind the test is parametrized with (``indirect=True``, one of
    :data:`SERVER_KINDS`; Dovecot when not parametrized), with the module's ``USERS``."""
    users = getattr(request.module, "USERS", None)
    assert users, f"{request.module.__name__} uses the imap_server fixture but sets no USERS"
    with private_imap_server(getattr(request, "param", "dovecot"), users) as server:
        yield server


@pytest.fixture
def user(request: pytest.FixtureRequest) -> str:
    """A Dovecot account no other test of the module has used (from the module's ``ACCOUNTS``)."""
    accounts: Mailboxes = request.module.ACCOUNTS
    return accounts.take()


@pytest.fixture(scope="module")
def seaweed() -> Iterator[SeaweedS3]:
    """A real S3-compatible server (SeaweedFS ``weed mini``) for the test module, on loopback
    and free ports, with a fresh bucket; give each test its own prefix."""
    folder = Path(tempfile.mkdtemp(prefix="ingest-seaweed-"))
    try:
        with seaweed_s3(folder) as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)
