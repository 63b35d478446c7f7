"""The IMAP side: connect securely, list new mail by UID, fetch it without touching
flags (BODY.PEEK), and move handled mail to the processed folder.

Progress is by UID within a UIDVALIDITY, never by \\Seen or by date (see the watcher
traps in the README). Every socket operation has a time-out.

Example::

    with Mailbox(settings.imap) as box:
        uidvalidity = box.select()
        for uid in box.new_uids(after=0):
            raw = box.fetch_message(uid)
"""

from __future__ import annotations

import logging
import socket
import ssl
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple

import requests

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from ingest.errors import ConfigError, MailboxAuthError, MailboxUnavailable
from ingest.settings import ImapSettings, require

log = logging.getLogger(__name__)

SCREEN_FIELDS = "BODY.PEEK[HEADER.FIELDS (FROM AUTHENTICATION-RESULTS)]"


class Screened(NamedTuple):
    """What the screening FETCH tells about one message."""

    header: bytes
    size: int
    received_at: float | None  # INTERNALDATE (epoch seconds): when the server received it


def _epoch(value: object) -> float | None:
    """INTERNALDATE as epoch seconds; imapclient gives a naive local time by default
    (``datetime.timestamp`` reads a naive value as local time) or an aware one."""
    return value.timestamp() if isinstance(value, datetime) else None



def ssl_context(settings: ImapSettings) -> ssl.SSLContext:
    """Certificate verification always on: the system's CAs plus an optional extra CA file."""
    try:
        context = ssl.create_default_context()
        if settings.ca_file:
            context.load_verify_locations(cafile=str(settings.ca_file))  # in addition to the system's
        return context
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"INGEST_IMAP__CA_FILE cannot be loaded: {err}") from None


class Mailbox:
    """One logged-in IMAP session on the configured folder."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.folder = settings.folder
        self._client: IMAPClient | None = None

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise MailboxUnavailable("not connected to the IMAP server")
        return self._client

    def connect(self) -> "Mailbox":
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
            client = IMAPClient(host, port=s.effective_port, ssl=s.security == "tls",
                                ssl_context=context, timeout=SocketTimeout(s.timeout, s.timeout))
            if s.security == "starttls":
                client.starttls(context)
        except ssl.SSLCertVerificationError as err:
            raise MailboxUnavailable(
                f"IMAP server {where}: certificate not trusted ({err.verify_message})",
                hint="INGEST_IMAP__CA_FILE",
            ) from None
        except (OSError, IMAPClientError) as err:
            raise MailboxUnavailable(f"cannot connect to IMAP server {where}: {_short(err)}",
                                     hint="INGEST_IMAP__HOST / INGEST_IMAP__PORT / INGEST_IMAP__SECURITY") from None
        try:
            self._authenticate(client, username, token)
        except LoginError:
            _quietly_close(client)
            hint = ("INGEST_IMAP__USERNAME / INGEST_IMAP__PASSWORD" if s.auth == "password" else
                    "INGEST_IMAP__OAUTH2_ACCESS_TOKEN / INGEST_IMAP__OAUTH2_REFRESH_TOKEN")
            raise MailboxAuthError(f"IMAP server {where} refused the login for {username}",
                                   hint=hint) from None
        except (OSError, IMAPClientError) as err:
            _quietly_close(client)
            raise MailboxUnavailable(f"IMAP login on {where} failed: {_short(err)}") from None
        self._client = client
        return self

    def _authenticate(self, client: IMAPClient, username: str, token: str | None) -> None:
        s = self.settings
        if s.auth == "password" or token is None:
            client.login(username, s.password.get_secret_value())  # type: ignore[union-attr]
            return
        if s.auth == "xoauth2":
            client.oauth2_login(username, token)
        else:
            client.oauthbearer_login(username, token)

    def close(self) -> None:
        if self._client is not None:
            _quietly_close(self._client)
            self._client = None

    def __enter__(self) -> "Mailbox":
        return self.connect()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def select(self) -> int:
        """Select the watched folder; returns its UIDVALIDITY."""
        try:
            info = self.client.select_folder(self.folder)
        except IMAPClientAbortError as err:  # the connection broke: not the folder's fault
            raise MailboxUnavailable(f"IMAP connection lost: {_short(err)}") from None
        except IMAPClientError as err:
            raise ConfigError(f"IMAP folder {self.folder!r} cannot be opened: {_short(err)}",
                              hint="INGEST_IMAP__FOLDER") from None
        except OSError as err:
            raise MailboxUnavailable(f"IMAP connection lost: {_short(err)}") from None
        return int(info[b"UIDVALIDITY"])

    def new_uids(self, after: int) -> list[int]:
        """UIDs greater than ``after``, ascending.

        ``UID SEARCH UID n:*`` returns the highest existing UID even when it is below n
        (RFC 3501 6.4.8), so the result is filtered here.
        """
        uids = self._call(self.client.search, ["UID", f"{after + 1}:*"])
        return sorted(uid for uid in uids if uid > after)

    def fetch_screening(self, uids: list[int]) -> dict[int, Screened]:
        """From and Authentication-Results headers, size and INTERNALDATE of each UID:
        cheap, and enough to decide whether a message is fetched whole (and, by when the
        server received it, which export it can answer). An expunged UID is absent."""
        if not uids:
            return {}
        data = self._call(self.client.fetch, uids, [SCREEN_FIELDS, "RFC822.SIZE", "INTERNALDATE"])
        return {uid: Screened(_item(fields, b"BODY[HEADER.FIELDS") or b"",
                              int(fields.get(b"RFC822.SIZE", 0)), _epoch(fields.get(b"INTERNALDATE")))
                for uid, fields in data.items()}

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

    def server_folder(self, name: str) -> str:
        """A configured folder name with ``/`` turned into the server's hierarchy separator
        (Dovecot's maildir uses ``.`` and refuses ``/``)."""
        if "/" not in name:
            return name
        listed = self._call(self.client.list_folders, "", "")  # LIST "" "" gives the separator
        separator = listed[0][1] if listed and listed[0][1] else b"/"
        if isinstance(separator, bytes):
            separator = separator.decode()
        return name.replace("/", separator)

    def capabilities(self) -> set[str]:
        """The server's capabilities after login, as upper-case strings."""
        return {c.decode().upper() if isinstance(c, bytes) else str(c).upper()
                for c in self._call(self.client.capabilities)}

    def move(self, uid: int, folder: str) -> None:
        """Move one message to ``folder`` (created when missing; ``/`` separates levels)."""
        client = self.client
        folder = self.server_folder(folder)
        if not self._call(client.folder_exists, folder):
            self._call(client.create_folder, folder)
        if client.has_capability("MOVE"):
            self._call(client.move, [uid], folder)
            return
        self._call(client.copy, [uid], folder)
        self._call(client.add_flags, [uid], [b"\\Deleted"])
        if client.has_capability("UIDPLUS"):
            self._call(client.uid_expunge, [uid])  # only this message, not others' \Deleted mail
        # Without UIDPLUS a bare EXPUNGE would also delete other clients' \Deleted mail:
        # leave our copy flagged; the processed copy is safe and the UID is recorded.

    def _call(self, method, *args):  # type: ignore[no-untyped-def]
        try:
            return method(*args)
        except (OSError, socket.timeout, IMAPClientError) as err:
            raise MailboxUnavailable(f"IMAP {getattr(method, '__name__', 'command')} failed: "
                                     f"{_short(err)}") from None


def _item(fields: dict[bytes, Any], prefix: bytes) -> bytes | None:
    """The fetched bytes whose key starts with ``prefix``. Servers echo keys their own
    way (pymap sorts a HEADER.FIELDS list; a partial fetch comes back as ``BODY[2]<0>``),
    so keys are matched by prefix, never looked up exactly."""
    for key, value in fields.items():
        if key.upper().startswith(prefix.upper()) and isinstance(value, bytes):
            return value
    return None


def oauth2_access_token(settings: ImapSettings) -> str:
    """The configured access token, or a fresh one from the refresh token."""
    if settings.oauth2_access_token is not None:
        return settings.oauth2_access_token.get_secret_value()
    refresh = require(settings.oauth2_refresh_token, "imap", "oauth2_refresh_token")
    url = require(settings.oauth2_token_url, "imap", "oauth2_token_url")
    form = {"grant_type": "refresh_token", "refresh_token": refresh.get_secret_value(),
            "client_id": settings.oauth2_client_id or ""}
    if settings.oauth2_client_secret is not None:
        form["client_secret"] = settings.oauth2_client_secret.get_secret_value()
    try:
        response = requests.post(url, data=form, timeout=settings.timeout)
    except requests.RequestException as err:
        raise MailboxUnavailable(f"OAuth2 token endpoint {url}: {type(err).__name__}") from None
    if response.status_code >= 400:
        raise MailboxAuthError(f"OAuth2 token endpoint {url} refused the refresh token "
                               f"({response.status_code})", hint="INGEST_IMAP__OAUTH2_REFRESH_TOKEN")
    try:
        return str(response.json()["access_token"])
    except (ValueError, KeyError, TypeError):
        raise MailboxAuthError(f"OAuth2 token endpoint {url} gave no access_token") from None


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:300] if text else type(err).__name__


def _quietly_close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail any way it likes
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass
