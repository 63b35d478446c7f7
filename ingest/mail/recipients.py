"""Whose report is it: the account's addresses against the email's To, and when it
says it was sent (its Date header).

The vendor mails a POST export "to the email account linked to the authentication token".
Anyone with an account of their own can have a genuine report mailed to themselves and
forward it here unchanged: its DKIM signature (which covers From, To, Date and Subject)
still passes, so sender authentication cannot tell it from ours. Its To can: a report is
ours only when its To names one of the account's addresses
(``INGEST_CERTAINLY__ACCOUNT_EMAIL``, else the IMAP login when that is an address).
Cc never counts: signers commonly sign only the headers present, so a Cc added on the way
(the vendor mails none) is covered by nothing, and would make anybody's report ours.

A header block with a bare CR, or with bare LF line ends among CRLF ones, is refused: the
mail parser starts a new header there, a DKIM verifier does not (a header smuggled inside
another one's value, unsigned).

Read as strictly as the From header (:mod:`ingest.mail.senders`): a second To or Date
header is refused, never resolved (a DKIM verifier checks the bottom one, a mail program
shows the top one), and so is a To the standard parser and the stdlib's
``getaddresses`` read differently. Addresses are compared on their addr-spec alone (a
display name, a comment or an RFC 2047 encoded word never counts), without regard to case
(no mail provider tells ``Owner@`` from ``owner@``), the domain in its IDNA (``xn--``) form.

Example::

    addressing = Addressing.of(message)
    addressing.refusal(("owner@example.com",))   # None: addressed to us
"""

from __future__ import annotations

import email.policy
import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message

from ingest.settings import Settings, address_problem

#: Headers whose addresses say who a report was sent to: To only, the one header every DKIM
#: signer covers (an added Cc is unsigned).
RECIPIENT_HEADERS = ("To",)
_BARE_CR = re.compile(rb"\r(?!\n)")
_BARE_LF = re.compile(rb"(?<!\r)\n")
#: Addresses named in a refusal (a list of hundreds is cut short).
SHOWN = 3
#: Longest To value read (the vendor's names one address; the stdlib's address parsers
#: take seconds on a few hundred KB, and recurse once per nested comment).
MAX_CHARS = 8192
#: Zone names RFC 5322 (4.3) gives an offset; any other name is an unknown zone.
KNOWN_ZONES = frozenset({"UT", "UTC", "GMT", "Z", "EST", "EDT", "CST", "CDT", "MST", "MDT", "PST", "PDT"})
_NUMERIC_ZONE = re.compile(r"[+-]\d{4}")
#: Deepest comment nesting read, ``((...))``.
MAX_NESTING = 8


def account_addresses(settings: Settings) -> tuple[str, ...]:
    """The account's addresses, normalised: ``INGEST_CERTAINLY__ACCOUNT_EMAIL``, else the
    IMAP login name when it is an address; empty when neither says (the check is off)."""
    configured = settings.certainly.account_email
    if not configured and settings.imap.username and address_problem(settings.imap.username) is None:
        configured = [settings.imap.username]
    found = [normalised(a) for a in configured]
    return tuple(dict.fromkeys(a for a in found if a))


def normalised(address: str) -> str | None:
    """``local@domain`` lower-cased with the domain in IDNA form; None if not an address.

    >>> normalised("Owner@Example.COM")
    'owner@example.com'
    >>> normalised("owner@bücher.example")
    'owner@xn--bcher-kva.example'
    >>> normalised("=?utf-8?q?owner=40example.com?=") is None
    True
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return None
    try:
        domain = domain.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        return None
    found = f"{local}@{domain}".lower()
    return found if address_problem(found) is None else None


@dataclass(frozen=True)
class Addressing:
    """Who an email says it was sent to and when, or why that cannot be read."""

    recipients: tuple[str, ...] = ()  # normalised addr-specs of To
    sent_at: float | None = None  # the Date header, epoch seconds (None: absent or unreadable)
    problem: str | None = None  # To or Date present more than once, or read two ways

    @classmethod
    def of(cls, message: Message, header_block: bytes = b"") -> Addressing:
        """Read the To and Date headers as received (no RFC 2047 decoding first);
        ``header_block``: the raw header bytes, checked for line ends that hide a header."""
        if _BARE_CR.search(header_block) or (b"\r\n" in header_block and _BARE_LF.search(header_block)):
            return cls(
                problem="its header block has a bare CR or LF line end: a header may be hidden inside "
                "another one, unsigned"
            )
        values = {name: _raw_values(message, name) for name in (*RECIPIENT_HEADERS, "Date")}
        twice = [f"{len(v)} {name} headers" for name, v in values.items() if len(v) > 1]
        if twice:
            return cls(
                problem=f"it carries {', '.join(twice)}: which one its signature covers is not certain"
            )
        found: list[str] = []
        for name in RECIPIENT_HEADERS:
            for value in values[name]:
                addresses, problem = _addresses(name, value)
                if problem:
                    return cls(problem=problem)
                found += addresses
        return cls(tuple(dict.fromkeys(found)), _sent_at(values["Date"]))

    def refusal(self, account: Sequence[str]) -> str | None:
        """Why this is not a report sent to ``account`` (normalised addresses); None when
        its To names one of them, or when the account is not known (check off)."""
        if not account:
            return None
        if self.problem:
            return f"{self.problem}; not taken as addressed to this account"
        if set(self.recipients) & set(account):
            return None
        if not self.recipients:
            return "it names no address in To, so not this account"
        shown = ", ".join(self.recipients[:SHOWN]) + (" ..." if len(self.recipients) > SHOWN else "")
        return f"addressed to {shown}, not to this account ({', '.join(account)})"


def _raw_values(message: Message, name: str) -> list[str]:
    """Every value of header ``name`` as received, unfolded; raw UTF-8 (RFC 6532, which the
    parser keeps as surrogate escapes) decoded, bytes that are not UTF-8 left escaped (the
    address parsers then refuse them)."""
    return [
        re.sub(r"\r?\n(?=[ \t])", "", _utf8(str(value))).strip()
        for key, value in message.raw_items()
        if key.lower() == name.lower()
    ]


def _utf8(value: str) -> str:
    """``value`` with the raw bytes the parser escaped read as UTF-8, when they are."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return value


def _addresses(name: str, value: str) -> tuple[list[str], str | None]:
    """The addr-specs of one To value, or why it is refused: read by the stdlib's
    ``getaddresses`` and by the standard header parser, which must agree."""
    if len(value) > MAX_CHARS or _nesting(value) > MAX_NESTING:
        return [], f"its {name} header is too long or too deeply nested to read"
    try:
        listed = [addr for _, addr in email.utils.getaddresses([value]) if addr]
        header = email.policy.default.header_factory(name, value)
        parsed = [a.addr_spec for a in getattr(header, "addresses", ()) if a.username or a.domain]
        defects = getattr(header, "defects", None)
    except Exception:  # noqa: BLE001 - the stdlib's parsers fail in many ways on odd text
        # (AttributeError on ":;a@b", "b@[bb", ".<a@b>"): whatever it is, it is unreadable.
        return [], f"its {name} header is malformed: it cannot be read"
    found = [normalised(a) for a in listed]
    if defects or sorted(a.lower() for a in listed) != sorted(a.lower() for a in parsed) or None in found:
        return [], f"its {name} header is malformed or reads two ways"
    return [a for a in found if a], None


def _nesting(value: str) -> int:
    """The deepest parenthesis nesting in ``value`` (quoting ignored: an upper bound)."""
    depth = deepest = 0
    for char in value:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(0, depth - 1)
    return deepest


def _sent_at(values: list[str]) -> float | None:
    """The Date header's moment (epoch seconds), None when absent, unreadable, or in a zone
    that does not say its offset.

    RFC 5322 section 4.3 (obsolete forms): a 3-digit year is 1900 plus it; the US zone names
    (EST, EDT, CST, CDT, MST, MDT, PST, PDT) and UT/GMT/Z have their offsets; any other name
    (CET, HST, a military letter) or none at all is to be taken as ``-0000``, a local time
    in an unknown zone: no moment to check, so None (the Date check is skipped, as for a
    missing header). ``-0000`` itself states UTC and is read as UTC.
    """
    if not values:
        return None
    text = values[0]
    zone = (re.sub(r"\([^()]*\)", " ", text).split() or [""])[-1]
    if not _NUMERIC_ZONE.fullmatch(zone) and zone.upper() not in KNOWN_ZONES:
        return None
    parsed = email.utils.parsedate_tz(text)
    if parsed is None:
        return None
    year = parsed[0] + 1900 if 100 <= parsed[0] < 1000 else parsed[0]
    try:
        moment = datetime(year, *parsed[1:6], tzinfo=UTC) - timedelta(seconds=parsed[9] or 0)
        return moment.timestamp()
    except (TypeError, ValueError, OverflowError, OSError):  # year 0, offset +9999 ...
        return None
