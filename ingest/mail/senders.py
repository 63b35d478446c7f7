"""Whose mail is ours: the sender's one From address, the allow-list, and the receiving
server's Authentication-Results, read from the headers alone, before any body is fetched.

A refusal never depends on something the sender alone controls: a second From header is
refused (mail programs show one, DKIM verifiers check another), and only the topmost
Authentication-Results of our own server (``authserv_id``) counts.

Example::

    address, refusal = screen(settings.imap, header_bytes)   # refusal None: ours, fetch it
"""

from __future__ import annotations

import email
import email.policy
import re
from email.headerregistry import Address
from email.message import Message

from ingest.errors import ConfigError
from ingest.mail.authresults import authenticated
from ingest.mail.folders import check_folder_settings
from ingest.settings import ImapSettings, require


def check_watch_settings(imap: ImapSettings) -> None:
    """Refuse settings under which the watcher would ingest nothing, or anybody's mail."""
    if not imap.allowed_senders:
        raise ConfigError(
            "INGEST_IMAP__ALLOWED_SENDERS is empty, so no email would ever be "
            "ingested; set it to the address (or @domain) reports come from"
        )
    if imap.require_authentication:
        require(imap.authserv_id, "imap", "authserv_id")
    check_folder_settings(imap)


def screen(imap: ImapSettings, header_bytes: bytes) -> tuple[str | None, str | None]:
    """(sender address, reason to refuse or None) from the From and A-R headers.

    More than one From header is refused, never resolved: mail programs show one, DKIM
    verifiers check another. Authentication-Results are read as the server wrote them.
    """
    headers = email.message_from_bytes(header_bytes, policy=email.policy.default)
    try:
        from_values = headers.get_all("From") or []
    except (ValueError, IndexError):
        from_values = []
    # The parsed header itself, not its text: str() would drop the parser's defects.
    address = sender_address(from_values[0]) if len(from_values) == 1 else None
    if not sender_allowed(address, imap.allowed_senders):
        return address, "sender not allowed"
    if imap.require_authentication:
        results = raw_header_values(headers, "Authentication-Results")
        if not authentication_passed(results, imap.authserv_id or "", address or ""):
            return address, "Authentication-Results missing or not passing"
    return address, None


def sender_address(from_header: object) -> str | None:
    """The single address of a From header, lower-cased; None when absent, ambiguous or
    malformed. Any parser defect refuses the header: never guess which address counts.

    >>> sender_address("Certainly <reports@certainly.io>")
    'reports@certainly.io'
    >>> sender_address("reports@certainly.io <attacker@evil.test>") is None
    True
    """
    if not from_header:
        return None
    header = from_header
    if not hasattr(header, "defects"):  # text, not a header already parsed by email.policy
        try:
            header = email.policy.default.header_factory("From", str(from_header))
        except (ValueError, IndexError, TypeError):
            return None
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    if getattr(header, "defects", None) or len(addresses) != 1:
        return None
    address = addresses[0]
    if not address.username or not address.domain or "@" in address.username:
        return None
    return str(address.addr_spec).lower()


def sender_allowed(address: str | None, allowed: list[str]) -> bool:
    """Exact address or ``@domain`` / ``domain`` match against the allow-list.

    >>> sender_allowed("reports@certainly.io", ["@certainly.io"])
    True
    >>> sender_allowed("x@evil-certainly.io", ["certainly.io"])
    False
    """
    if not address:
        return False
    domain = address.rsplit("@", 1)[1]
    for entry in allowed:
        entry = entry.strip().lower()
        if "@" in entry.lstrip("@"):
            if address == entry:
                return True
        elif domain == entry.lstrip("@"):
            return True
    return False


def authentication_passed(results_headers: list[str], authserv_id: str, sender: str) -> bool:
    """Whether the topmost Authentication-Results header written by our own receiving
    server (``authserv_id``) says DMARC passed for the sender's domain, or DKIM passed for
    a domain of the sender's organization (RFC 8601, read by its grammar: see
    :mod:`ingest.mail.authresults`). Headers below ours may have been written by the sender.

    >>> authentication_passed(["mx.example.com; dkim=pass header.d=certainly.io"],
    ...                       "mx.example.com", "reports@certainly.io")
    True
    >>> authentication_passed(["mx.example.com; x-dkim=pass header.d=certainly.io"],
    ...                       "mx.example.com", "reports@certainly.io")
    False
    """
    return authenticated(results_headers, authserv_id, sender)


def raw_header_values(message: Message, name: str) -> list[str]:
    """Every value of header ``name`` as received (unfolded, no RFC 2047 decoding), top first.
    Structured headers are parsed from what the server wrote, not from a decoded rendering."""
    return [
        re.sub(r"\r?\n(?=[ \t])", "", str(value)).strip()
        for key, value in message.raw_items()
        if key.lower() == name.lower()
    ]
