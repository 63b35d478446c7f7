"""The real IMAP servers the pipeline is tested against, by name, for parametrized tests:
Dovecot as most set it up, Dovecot with cPanel's ``INBOX.`` namespace, and Cyrus IMAP in
its default and its ``INBOX.`` namespace (an independent implementation, with its own
capabilities and answer forms).

Example::

    @pytest.mark.parametrize("imap_server", SERVER_KINDS, indirect=True)
    def test_x(imap_server: ImapServer) -> None: ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Protocol

from tests.support.cyrus import private_cyrus
from tests.support.dovecot import private_dovecot

__all__ = ["SERVER_KINDS", "ImapServer", "private_imap_server", "server_name"]

SERVER_KINDS = ("dovecot", "dovecot-inbox-prefix", "cyrus", "cyrus-inbox-prefix")


class ImapServer(Protocol):
    """What a test needs of a running server, and how it names folders."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def personal_prefix(self) -> str: ...
    @property
    def separator(self) -> str: ...


@contextlib.contextmanager
def private_imap_server(kind: str, users: Mapping[str, str]) -> Iterator[ImapServer]:
    """A fresh server of ``kind`` (one of :data:`SERVER_KINDS`) with ``users``."""
    if kind == "dovecot":
        with private_dovecot(users=users) as dovecot:
            yield dovecot
    elif kind == "dovecot-inbox-prefix":
        with private_dovecot(users=users, personal_prefix="INBOX.") as dovecot:
            yield dovecot
    elif kind in ("cyrus", "cyrus-inbox-prefix"):
        with private_cyrus(users=users, altnamespace=kind == "cyrus") as cyrus:
            yield cyrus
    else:
        raise ValueError(f"unknown IMAP server kind {kind!r}; one of {SERVER_KINDS}")


def server_name(server: ImapServer, folder: str) -> str:
    """A folder the settings name with ``/`` as this server must name it: inside its
    personal namespace, with its separator (worked out here independently of the job)."""
    return server.personal_prefix + folder.replace("/", server.separator)
