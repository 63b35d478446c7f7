"""The simulator's "report email" and its delivery into a mailbox over IMAP APPEND.

Delivery uses APPEND rather than SMTP because tests and the demo only need the message to
appear in a mailbox, and both Dovecot and pymap accept APPEND without any MTA.
"""

from __future__ import annotations

import contextlib
import email.policy
import logging
import ssl as ssl_module
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from imapclient import IMAPClient

log = logging.getLogger(__name__)


def report_filename(bot_id: str, from_date: date, to_date: date) -> str:
    """The simulator's attachment name: ``message_report_<bot>_<from>_<to>.csv``."""
    return f"message_report_{bot_id}_{from_date.isoformat()}_{to_date.isoformat()}.csv"


def build_report_email(
    *,
    csv_bytes: bytes,
    bot_id: str,
    from_date: date,
    to_date: date,
    sender: str = "reports@certainly.example",
    recipient: str = "owner@example.test",
    message_id_domain: str = "certainly.example",
    sent_at: datetime | None = None,
    hints: bool = True,
) -> bytes:
    """Build the RFC 5322 report email with the CSV attached (base64); CRLF line ends.

    ``sent_at`` fixes the Date header (default: now, UTC). ``hints=False`` leaves the bot id
    and dates out of the subject, text and file name (a vendor that names nothing).
    """
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = (
        f"Certainly message report {bot_id} {from_date.isoformat()} - {to_date.isoformat()}"
        if hints
        else "Your Certainly message report"
    )
    msg["Date"] = format_datetime(sent_at or datetime.now(UTC))
    msg["Message-ID"] = make_msgid(idstring="report", domain=message_id_domain)
    scope = f" for bot {bot_id} from {from_date.isoformat()} to {to_date.isoformat()}" if hints else ""
    msg.set_content(
        f"Hello,\n\nYour message report{scope} is attached as a CSV file.\n\nThe Certainly team (simulated)\n"
    )
    msg.add_attachment(
        csv_bytes,
        maintype="text",
        subtype="csv",
        filename=report_filename(bot_id, from_date, to_date) if hints else "message_report.csv",
        cte="base64",  # keep the CSV bytes exact, whatever line ends or charset they use
    )
    return msg.as_bytes()


class ImapDelivery:
    """Deliver a message by IMAP APPEND; one fresh connection per delivery."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        folder: str = "INBOX",
        ssl: bool = False,
        ssl_context: ssl_module.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._password = password  # private so it never shows up in repr() or logs
        self.folder = folder
        self.ssl = ssl
        self.ssl_context = ssl_context
        self.timeout = timeout

    def __repr__(self) -> str:
        return (
            f"ImapDelivery(host={self.host!r}, port={self.port}, "
            f"username={self.username!r}, folder={self.folder!r}, ssl={self.ssl})"
        )

    def deliver(self, message_bytes: bytes) -> None:
        """APPEND ``message_bytes`` to the folder (created if missing), unflagged."""
        client = IMAPClient(
            self.host,
            port=self.port,
            ssl=self.ssl,
            ssl_context=self.ssl_context,
            timeout=self.timeout,
        )
        try:
            client.login(self.username, self._password)
            if not client.folder_exists(self.folder):
                client.create_folder(self.folder)
            client.append(self.folder, message_bytes, flags=())
            log.debug(
                "appended %d bytes to %s on %s:%s", len(message_bytes), self.folder, self.host, self.port
            )
        finally:
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - a logout failure must not mask the real error
                with contextlib.suppress(Exception):
                    client.shutdown()

    __call__ = deliver
