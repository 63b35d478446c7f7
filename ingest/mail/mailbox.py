"""The IMAP side: connect securely, list new mail by UID, fetch it without touching
flags (BODY.PEEK), and move handled mail to the processed folder.

Progress is by UID within a UIDVALIDITY, never by \\Seen (another client may read the
mail) or by date (servers disagree on INTERNALDATE); docs/RELIABILITY.md lists each such
case with its test. Every socket operation has a time-out.

Mailboxes of any size: new mail is listed and screened one bounded UID range at a time
(``UID SEARCH UID lo:hi``, then ``UID FETCH lo:hi``), never as one comma list of every new
UID: 12,000 UIDs in one FETCH make an 84 KB command line, over Dovecot's default
``imap_max_line_length`` (64 KiB), and an unbounded SEARCH answer can pass imaplib's
1 MB line limit.

Example::

    with Mailbox(settings.imap) as box:
        uidvalidity = box.select()
        for uid, (headers, size, received_at) in box.screen_new(after=0):
            raw = box.fetch_message(uid)
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from imapclient.response_parser import parse_fetch_response

from ingest.crashpoints import crash_point
from ingest.errors import ConfigError, MailboxAuthError, MailboxUnavailable, described
from ingest.mail.folders import Layout, check_folders_on_server, configured_targets, layout_of
from ingest.mail.login import oauth2_access_token, ssl_context
from ingest.settings import ImapSettings, require

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SCREEN_FIELDS = "BODY.PEEK[HEADER.FIELDS (FROM AUTHENTICATION-RESULTS)]"
#: UIDs one ``UID SEARCH UID lo:hi`` spans: its answer lists at most this many UIDs
#: (about 80 KB), far under imaplib's 1 MB line limit.
SEARCH_SPAN = 10_000
#: Messages one ``UID FETCH lo:hi`` screens: a few hundred KB of headers per answer.
FETCH_BATCH = 1_000


class Screened(NamedTuple):
    """What the screening FETCH tells about one message."""

    header: bytes
    size: int
    received_at: float | None  # INTERNALDATE (epoch seconds): when the server received it


def _epoch(value: object) -> float | None:
    """INTERNALDATE as epoch seconds; imapclient gives a naive local time by default
    (``datetime.timestamp`` reads a naive value as local time) or an aware one."""
    return value.timestamp() if isinstance(value, datetime) else None


class Mailbox:
    """One logged-in IMAP session on the configured folder."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.folder = settings.folder
        self._client: IMAPClient | None = None
        self._uidnext: int | None = None  # from the last SELECT, when the server says
        self._layout: Layout | None = None  # the server's folder naming, once asked
        self._folders_checked = False  # check_folders ran on this connection

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise MailboxUnavailable("not connected to the IMAP server")
        return self._client

    def connect(self) -> Mailbox:
        """Connect and log in; errors become MailboxUnavailable / MailboxAuthError."""
        s = self.settings
        host = require(s.host, "imap", "host")
        username = require(s.username, "imap", "username")
        if s.auth == "password":
            require(s.password, "imap", "password")
        where = f"{host}:{s.effective_port}"
        context = ssl_context(s) if s.security != "none" else None
        # The OAuth2 token first: a refused refresh token must not leave a connection open.
        token = oauth2_access_token(s) if s.auth != "password" else None
        try:
            client = IMAPClient(
                host,
                port=s.effective_port,
                ssl=s.security == "tls",
                ssl_context=context,
                timeout=SocketTimeout(s.timeout, s.timeout),
            )
            if s.security == "starttls":
                client.starttls(context)
        except ssl.SSLCertVerificationError as err:
            raise MailboxUnavailable(
                f"IMAP server {where}: certificate not trusted ({err.verify_message})",
                hint="INGEST_IMAP__CA_FILE",
            ) from None
        except (OSError, IMAPClientError) as err:
            raise MailboxUnavailable(
                f"cannot connect to IMAP server {where}: {described(err)}",
                hint="INGEST_IMAP__HOST / INGEST_IMAP__PORT / INGEST_IMAP__SECURITY",
            ) from None
        try:
            self._authenticate(client, username, token)
        except LoginError:
            _quietly_close(client)
            hint = (
                "INGEST_IMAP__USERNAME / INGEST_IMAP__PASSWORD"
                if s.auth == "password"
                else "INGEST_IMAP__OAUTH2_ACCESS_TOKEN / INGEST_IMAP__OAUTH2_REFRESH_TOKEN"
            )
            raise MailboxAuthError(
                f"IMAP server {where} refused the login for {username}", hint=hint
            ) from None
        except (OSError, IMAPClientError) as err:
            _quietly_close(client)
            raise MailboxUnavailable(f"IMAP login on {where} failed: {described(err)}") from None
        self._client = client
        return self

    def _authenticate(self, client: IMAPClient, username: str, token: str | None) -> None:
        s = self.settings
        if s.auth == "password" or token is None:
            client.login(username, require(s.password, "imap", "password").get_secret_value())
            return
        if s.auth == "xoauth2":
            client.oauth2_login(username, token)
        else:
            client.oauthbearer_login(username, token)

    def close(self) -> None:
        if self._client is not None:
            _quietly_close(self._client)
            self._client = None

    def __enter__(self) -> Mailbox:
        return self.connect()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def select(self) -> int:
        """Select the watched folder; returns its UIDVALIDITY."""
        try:
            info = self.client.select_folder(self.folder)
        except IMAPClientAbortError as err:  # the connection broke: not the folder's fault
            raise MailboxUnavailable(f"IMAP connection lost: {described(err)}") from None
        except IMAPClientError as err:
            raise ConfigError(
                f"IMAP folder {self.folder!r} cannot be opened: {described(err)}", hint="INGEST_IMAP__FOLDER"
            ) from None
        except OSError as err:
            raise MailboxUnavailable(f"IMAP connection lost: {described(err)}") from None
        uidnext = info.get(b"UIDNEXT")
        self._uidnext = int(uidnext) if uidnext else None
        return int(info[b"UIDVALIDITY"])

    def highest_uid(self) -> int:
        """The highest UID in the selected folder (0 when it is empty), without listing it:
        UIDNEXT from the SELECT, else ``UID SEARCH UID *`` (one UID in the answer)."""
        if self._uidnext is not None:
            return self._uidnext - 1
        found = self._call(self.client.search, ["UID", "*"])
        return max(found, default=0)

    def uid_batches(
        self, after: int, *, span: int = SEARCH_SPAN, batch: int = FETCH_BATCH
    ) -> Iterator[list[int]]:
        """The UIDs above ``after`` that exist now, ascending, at most ``batch`` at a time.

        Each ``UID SEARCH UID lo:hi`` covers ``span`` UIDs, so no command and no answer
        grows with the folder. Mail arriving during the pass (above the highest UID at the
        start) waits for the next pass. ``UID SEARCH UID n:m`` may name the highest UID
        even outside the range (RFC 3501 6.4.8), so answers are filtered here.
        """
        top = self.highest_uid()
        lo = after + 1
        while lo <= top:
            hi = min(lo + span - 1, top)
            found = sorted(u for u in self._call(self.client.search, ["UID", f"{lo}:{hi}"]) if lo <= u <= hi)
            for start in range(0, len(found), batch):
                yield found[start : start + batch]
            lo = hi + 1

    def count(self, criteria: list[str], *, span: int = SEARCH_SPAN) -> int:
        """How many messages of the selected folder match ``criteria`` (``["FROM", x]``),
        searched one bounded UID range at a time, so no answer grows with the folder."""
        top, lo, found = self.highest_uid(), 1, 0
        while lo <= top:
            hi = min(lo + span - 1, top)
            uids: list[int] = self._call(self.client.search, ["UID", f"{lo}:{hi}", *criteria])
            found += sum(1 for u in uids if lo <= u <= hi)
            lo = hi + 1
        return found

    def new_uids(self, after: int) -> list[int]:
        """Every UID greater than ``after``, ascending (searched in bounded ranges)."""
        return [uid for chunk in self.uid_batches(after) for uid in chunk]

    def screen_new(
        self, after: int, *, span: int = SEARCH_SPAN, batch: int = FETCH_BATCH
    ) -> Iterator[tuple[int, Screened]]:
        """(UID, its :class:`Screened` headers, size and INTERNALDATE) of each message above
        ``after``, ascending: cheap, and enough to decide whether a message is fetched
        whole. Screened one bounded range at a time; a UID expunged meanwhile is skipped."""
        for uids in self.uid_batches(after, span=span, batch=batch):
            screening = self.fetch_screening(uids)
            crash_point("after_screening")
            for uid in uids:
                if uid in screening:
                    yield uid, screening[uid]

    def fetch_screening(self, uids: list[int]) -> dict[int, Screened]:
        """From and Authentication-Results headers, size and INTERNALDATE of each UID:
        cheap, and enough to decide whether a message is fetched whole (and, by when the
        server received it, which export it can answer). Fetched as the one range
        ``UID FETCH min:max`` (callers pass a bounded batch). An expunged UID is absent;
        so is any message in the range not asked for."""
        if not uids:
            return {}
        wanted = set(uids)
        data = self._call(
            self._fetch_range, min(uids), max(uids), [SCREEN_FIELDS, "RFC822.SIZE", "INTERNALDATE"]
        )
        return {
            uid: Screened(
                _item(fields, b"BODY[HEADER.FIELDS") or b"",
                int(fields[b"RFC822.SIZE"]),
                _epoch(fields.get(b"INTERNALDATE")),
            )
            for uid, fields in data.items()
            if uid in wanted and b"RFC822.SIZE" in fields
        }

    def _fetch_range(self, lo: int, hi: int, items: list[str]) -> dict[int, dict[bytes, Any]]:
        """``UID FETCH lo:hi (items)``. IMAPClient.fetch cannot send a range: it joins a
        list with commas and drops every answer whose UID its argument does not list, so
        this sends the command through IMAPClient's own raw-command path and parses the
        answer with its parser (unsolicited FETCH answers are filtered by the caller)."""
        data = self.client._raw_command_untagged(  # noqa: SLF001 - see the docstring
            b"FETCH", [f"{lo}:{hi}".encode(), ("(" + " ".join(items) + ")").encode()], uid=True
        )
        parsed: dict[int, dict[bytes, Any]] = parse_fetch_response(data, self.client.normalise_times, True)
        return parsed

    def fetch_message(self, uid: int) -> bytes | None:
        """The whole message, without setting \\Seen; None if it was expunged meanwhile."""
        return self.fetch_section(uid, "")

    def fetch_section(self, uid: int, section: str, partial: tuple[int, int] | None = None) -> bytes | None:
        """``BODY.PEEK[section]`` (optionally ``<offset.length>``), without setting \\Seen;
        None if the message was expunged meanwhile."""
        item = f"BODY.PEEK[{section}]" + (f"<{partial[0]}.{partial[1]}>" if partial else "")
        data = self._call(self.client.fetch, [uid], [item])
        return _item(data[uid], f"BODY[{section}]".encode()) if uid in data else None

    def fetch_structure(self, uid: int) -> Any | None:
        """The BODYSTRUCTURE of a message, or None if it was expunged meanwhile."""
        data = self._call(self.client.fetch, [uid], ["BODYSTRUCTURE"])
        return data[uid].get(b"BODYSTRUCTURE") if uid in data else None

    def layout(self) -> Layout:
        """How this server names folders (namespace prefix, separator), asked once per
        connection."""
        if self._layout is None:
            self._layout = self._call(layout_of, self.client)
        return self._layout

    def server_folder(self, name: str) -> str:
        """A configured folder name (``/`` between levels) as this server names it: inside
        the personal namespace, with the server's separator (see :mod:`ingest.mail.folders`)."""
        return self.layout().server_name(name)

    def check_folders(self) -> None:
        """Refuse (ConfigError, exit 2) a processed/failed/rejected folder the server flags
        as special-use, before any mail is moved; once per connection."""
        if not self._folders_checked:
            check_folders_on_server(self.settings, self.layout(), self.folder_flags)
            self._folders_checked = True

    def folder_flags(self, server_name: str) -> list[bytes]:
        """The LIST attributes of one folder (server spelling), special-use ones included;
        none when it does not exist."""
        client = self.client
        extended = client.has_capability("SPECIAL-USE") and client.has_capability("LIST-EXTENDED")
        # RETURN (SPECIAL-USE): a server need not show \\Trash etc. in a plain LIST.
        return self._listed(server_name, _list_special_use if extended else _list_plain) or []

    def folder_attributes(self, server_name: str) -> list[bytes] | None:
        """The plain LIST attributes of one folder (server spelling), or None when LIST
        does not name it."""
        return self._listed(server_name, _list_plain)

    def _listed(
        self, server_name: str, lister: Callable[..., list[tuple[Any, Any, str]]]
    ) -> list[bytes] | None:
        # The answer is matched as the server matches names: INBOX in any case.
        layout = self.layout()
        listed = self._call(lister, self.client, server_name)
        for flags, _, name in listed:
            if layout.same_folder(_text_of(name), server_name):
                return list(flags)
        if len(listed) == 1 and not _WILDCARDS.search(server_name):
            # A pattern without wildcards names one folder: the server's one answer is it, by
            # the server's own rules (Exchange ignores the case of every name).
            return list(listed[0][0])
        return None

    def my_rights(self, server_name: str) -> str:
        """This login's ACL rights on a folder (``MYRIGHTS``, RFC 4314), e.g. ``lrswipkxtea``."""
        return self._call(self._myrights, server_name)

    def _myrights(self, server_name: str) -> str:
        client = self.client
        typ, data = client._imap._simple_command("MYRIGHTS", client._normalise_folder(server_name))  # noqa: SLF001
        client._checkok("MYRIGHTS", typ, data)  # noqa: SLF001
        typ, data = client._imap._untagged_response(typ, data, "MYRIGHTS")  # noqa: SLF001
        answer = data[0] if data and data[0] else b""
        return _text_of(answer).rsplit(" ", 1)[-1]

    def capabilities(self) -> set[str]:
        """The server's capabilities after login, as upper-case strings."""
        return {
            c.decode().upper() if isinstance(c, bytes) else str(c).upper()
            for c in self._call(self.client.capabilities)
        }

    def move(self, uid: int, folder: str) -> None:
        """Move one message to ``folder`` (created when missing; ``/`` separates levels)."""
        client = self.client
        folder = self.server_folder(folder)
        attributes = self.folder_attributes(folder)
        if attributes is None:
            self._call(client.create_folder, folder)
        elif not selectable(attributes):
            self._make_parent_a_folder(folder)
        if client.has_capability("MOVE"):
            self._call(client.move, [uid], folder)
            return
        self._call(client.copy, [uid], folder)
        self._call(client.add_flags, [uid], [b"\\Deleted"])
        if client.has_capability("UIDPLUS"):
            self._call(client.uid_expunge, [uid])  # only this message, not others' \Deleted mail
        # Without UIDPLUS a bare EXPUNGE would also delete other clients' \Deleted mail:
        # leave our copy flagged; the processed copy is safe and the UID is recorded.

    def _make_parent_a_folder(self, folder: str) -> None:
        """CREATE a folder LIST shows only as a parent (\\Noselect: maildir Dovecot shows
        'Reports' so once 'Reports.failed' exists), which makes it one mail can enter. A
        server that will not (mbox: a folder holds mail or folders, never both) is a
        setting to change: ConfigError naming it, not an outage to retry forever."""
        try:
            self.client.create_folder(folder)
        except IMAPClientAbortError as err:
            raise MailboxUnavailable(f"IMAP create_folder failed: {described(err)}") from None
        except IMAPClientError as err:
            settings = [
                f"INGEST_IMAP__{setting.upper()}={name!r}"
                for setting, name in configured_targets(self.settings)
                if self.server_folder(name) == folder
            ]
            raise ConfigError(
                f"{' and '.join(settings) or repr(folder)} is {folder!r} on this server, only a parent of "
                f"other folders (\\Noselect), and the server will not make it a folder ({described(err)}): "
                "choose another folder"
            ) from None
        except (TimeoutError, OSError) as err:
            raise MailboxUnavailable(f"IMAP create_folder failed: {described(err)}") from None

    def flag(self, uid: int, flag: bytes = b"\\Flagged") -> None:
        """Add a flag to one message of the selected folder (a failed email the server
        would not move is left where it is, flagged for a person)."""
        self._call(self.client.add_flags, [uid], [flag])

    def folder_exists(self, name: str) -> bool:
        """Whether a folder (server spelling, see :meth:`server_folder`) exists and can
        hold mail (not a mere \\Noselect parent)."""
        return selectable(self.folder_attributes(name))

    def search_message_id(self, message_id: str) -> list[int]:
        """UIDs in the selected folder whose Message-ID header is ``message_id``, ascending."""
        return sorted(self._call(self.client.search, ["HEADER", "Message-ID", message_id]))

    def search_without_message_id(self) -> list[int]:
        """UIDs in the selected folder of messages that have no Message-ID header."""
        return sorted(self._call(self.client.search, ["NOT", "HEADER", "Message-ID", ""]))

    def _call(self, method: Callable[..., _T], *args: Any) -> _T:
        try:
            return method(*args)
        except (TimeoutError, OSError, IMAPClientError) as err:
            raise MailboxUnavailable(
                f"IMAP {getattr(method, '__name__', 'command')} failed: {described(err)}"
            ) from None


_WILDCARDS = re.compile(r"[*%]")
#: LIST attributes of a name that cannot hold mail (RFC 3501 \\Noselect, RFC 5258 \\NonExistent).
UNSELECTABLE = frozenset({b"\\NOSELECT", b"\\NONEXISTENT"})


def selectable(attributes: list[bytes] | None) -> bool:
    """Whether a folder LIST answered with ``attributes`` (None: not listed) holds mail."""
    if attributes is None:
        return False
    return not any(_text_of(flag).upper().encode() in UNSELECTABLE for flag in attributes)


def _text_of(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _list_plain(client: IMAPClient, server_name: str) -> list[tuple[Any, Any, str]]:
    listed: list[tuple[Any, Any, str]] = client.list_folders("", server_name)
    return listed


def _list_special_use(client: IMAPClient, server_name: str) -> list[tuple[Any, Any, str]]:
    """``LIST "" name RETURN (SPECIAL-USE)`` (RFC 6154), which imapclient cannot send:
    sent and parsed the way imapclient's own ``list_folders`` does."""
    imap = client._imap  # noqa: SLF001 - imapclient's connection, as its list_folders uses it
    typ, data = imap._simple_command(  # noqa: SLF001
        "LIST",
        client._normalise_folder(""),
        client._normalise_folder(server_name),
        "RETURN (SPECIAL-USE)",
    )
    client._checkok("LIST", typ, data)  # noqa: SLF001
    typ, data = imap._untagged_response(typ, data, "LIST")  # noqa: SLF001
    listed: list[tuple[Any, Any, str]] = client._proc_folder_list(data)  # noqa: SLF001
    return listed


def _item(fields: dict[bytes, Any], prefix: bytes) -> bytes | None:
    """The fetched bytes whose key starts with ``prefix``. Servers echo keys their own
    way (pymap sorts a HEADER.FIELDS list; a partial fetch comes back as ``BODY[2]<0>``),
    so keys are matched by prefix, never looked up exactly."""
    for key, value in fields.items():
        if key.upper().startswith(prefix.upper()) and isinstance(value, bytes):
            return value
    return None


def _quietly_close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail any way it likes
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001 - nor may the socket's shutdown; the connection is gone
            pass
