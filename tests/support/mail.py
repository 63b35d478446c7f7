"""Report emails, hostile or odd emails, and a look into a test mailbox.

Builders return RFC 5322 bytes ready for IMAP APPEND; every message gets a unique
Message-ID so that :func:`snapshot` can follow it from folder to folder. The mailbox
helpers talk to the test's own Dovecot on 127.0.0.1 with bounded time-outs.

Example::

    rep = report(BOT, date(2024, 1, 1), date(2024, 1, 5))
    raw = report_email(rep)
    deliver(dovecot, USER, PASSWORD, [raw, stranger_email("x@evil.test")])
    before = snapshot(dovecot, USER, PASSWORD)
    ... accept_windows(store, rep); run_once(watcher_settings(...), store) ...
    assert snapshot(dovecot, USER, PASSWORD) == moved(before, {message_id(raw): PROCESSED})
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import struct
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any

from imapclient import IMAPClient

from ingest.simulator import generate_messages, report_filename, rows_to_csv
from ingest.state.store import Store
from ingest.state.windows import WindowState

__all__ = [
    "AUTHSERV_ID",
    "FAILED",
    "PROCESSED",
    "RECIPIENT",
    "SENDER",
    "Report",
    "accept_windows",
    "attachment_rows",
    "corrupt_gzip",
    "damaged_base64_email",
    "deeply_nested_email",
    "deliver",
    "email_rows",
    "email_with",
    "encrypted_zip",
    "gzip_bomb",
    "imap",
    "message_id",
    "moved",
    "non_utf8_csv",
    "report",
    "report_email",
    "running_dovecot",
    "snapshot",
    "stranger_email",
    "truth_of",
    "two_reports_email",
    "unrelated_emails",
    "watcher_settings",
    "with_headers_on_top",
    "zip_bomb",
]

SENDER = "reports@certainly.example"
RECIPIENT = "owner@example.test"
AUTHSERV_ID = "mx.example.test"
PROCESSED = "certainly-ingest/processed"
FAILED = "certainly-ingest/failed"
IMAP_TIMEOUT_S = 30.0
_counter = itertools.count(1)


# -- reports ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """One simulated export: a bot, an inclusive window, its rows and CSV bytes."""

    bot_id: str
    start: date
    end: date
    rows: tuple[dict[str, Any], ...]
    csv: bytes

    @property
    def filename(self) -> str:
        return report_filename(self.bot_id, self.start, self.end)

    @property
    def subject(self) -> str:
        return f"Certainly message report {self.bot_id} {self.start.isoformat()} - {self.end.isoformat()}"


def report(bot_id: str, start: date, end: date, *, per_day: int | None = None) -> Report:
    """The simulator's rows for a window (``per_day`` fixes the rows per day: big reports)."""
    sizes = {} if per_day is None else {"min_per_day": per_day, "max_per_day": per_day}
    rows = generate_messages(bot_id, start, end, **sizes)
    return Report(bot_id, start, end, tuple(rows), rows_to_csv(rows))


def truth_of(*reports: Report) -> dict[tuple[str, int], dict[str, Any]]:
    """Ground truth keyed by (bot_id, id), as tests.support.archive expects it."""
    return {(r.bot_id, row["id"]): row for r in reports for row in r.rows}


def accept_windows(store: Store, *reports: Report) -> list[int]:
    """Put each report's window in the store as ``accepted`` (as if the export was asked for)."""
    ids = []
    for r in reports:
        store.plan_window(r.bot_id, 1, r.start, r.end)
        window = next(
            w for w in store.windows(bot_id=r.bot_id) if (w.from_date, w.to_date) == (r.start, r.end)
        )
        store.transition(window.id, WindowState.SUBMITTING, submitted_at=time.time())
        store.transition(window.id, WindowState.ACCEPTED, accepted_at=time.time())
        ids.append(window.id)
    return ids


# -- builders -----------------------------------------------------------------------------


def email_with(
    *,
    sender: str | None = SENDER,
    subject: str = "Certainly message report",
    body: str = "Your message report is attached.\n",
    attachments: Sequence[tuple[Any, bytes, str]] = (),
    recipient: str = RECIPIENT,
    cte: str = "base64",
) -> bytes:
    """A message with attachments given as (filename, bytes, "maintype/subtype"), in the
    transfer encoding ``cte`` (base64 or quoted-printable).

    ``sender`` is written to the From header verbatim (hostile values included); None
    leaves the From header out. A filename may be a (charset, language, value) tuple for
    RFC 2231 encoding.
    """
    msg = EmailMessage(policy=SMTP)
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Date"] = format_datetime(_now())
    msg["Message-ID"] = make_msgid(idstring=f"t{next(_counter)}", domain="test.invalid")
    msg.set_content(body)
    for filename, data, mime in attachments:
        maintype, subtype = mime.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename, cte=cte)
    raw = msg.as_bytes()
    # The From header goes in raw, so that values the email package would refuse or
    # re-quote reach the server exactly as an attacker wrote them.
    if sender is None:
        return raw
    return b"From: " + sender.encode("utf-8") + b"\r\n" + raw


def report_email(
    rep: Report,
    *,
    sender: str | None = SENDER,
    subject: str | None = None,
    filename: Any = None,
    data: bytes | None = None,
    mime: str = "text/csv",
    cte: str = "base64",
) -> bytes:
    """The vendor's report email for ``rep`` (its CSV, or ``data``, attached)."""
    return email_with(
        sender=sender,
        subject=rep.subject if subject is None else subject,
        cte=cte,
        attachments=[(filename or rep.filename, rep.csv if data is None else data, mime)],
    )


def two_reports_email(first: Report, second: Report, *, subject: str | None = None) -> bytes:
    """One email carrying two reports, each named after its own window."""
    return email_with(
        subject=first.subject if subject is None else subject,
        attachments=[(first.filename, first.csv, "text/csv"), (second.filename, second.csv, "text/csv")],
    )


def stranger_email(sender: str, *, subject: str = "Certainly message report", with_csv: bool = True) -> bytes:
    """A look-alike from someone not on the allow-list (optionally with a CSV)."""
    attachments = [("message_report.csv", b"id,timestamp\r\n1,2024-01-01T00:00:00Z\r\n", "text/csv")]
    return email_with(sender=sender, subject=subject, attachments=attachments if with_csv else ())


def with_headers_on_top(raw: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
    """Prepend header fields, first given = topmost, as receiving servers do (trace order)."""
    top = b"".join(f"{name}: {value}\r\n".encode() for name, value in headers)
    return top + raw


def zip_bomb(inner_name: str, inflated_bytes: int) -> bytes:
    """A small zip whose one CSV member inflates to ``inflated_bytes`` (a valid CSV header
    followed by filler that compresses about 1000:1)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open(inner_name, "w", force_zip64=True) as member:
            member.write(b"id,timestamp\r\n")
            chunk = b"0" * (1024 * 1024)
            written = 0
            while written < inflated_bytes:
                member.write(chunk)
                written += len(chunk)
    return buffer.getvalue()


def gzip_bomb(inflated_bytes: int) -> bytes:
    """A small .gz that inflates to ``inflated_bytes``."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as stream:
        stream.write(b"id,timestamp\r\n")
        chunk = b"0" * (1024 * 1024)
        for _ in range(max(1, inflated_bytes // len(chunk))):
            stream.write(chunk)
    return buffer.getvalue()


def corrupt_gzip(data: bytes) -> bytes:
    """A .gz with a valid gzip header whose deflate stream is broken: its first block
    header says block type 3, which does not exist, so zlib raises ("invalid block type")."""
    good = gzip.compress(data, mtime=0)
    return good[:10] + bytes([good[10] | 0b110]) + good[11:]


def encrypted_zip(member: str, data: bytes, password: bytes = b"secret") -> bytes:
    """A zip whose one member is encrypted with the traditional PKWARE cipher (ZipCrypto:
    what `zip -e` and Windows write); zipfile reads it back only with the password."""
    crc = zlib.crc32(data)
    secret = _zipcrypto(bytes(11) + bytes([crc >> 24]), data, password)
    name = member.encode("utf-8")
    # version needed 2.0, flags: bit 0 encrypted, bit 11 UTF-8 name; method 0 (stored)
    fields = struct.pack("<HHHHHIII", 20, 0x0801, 0, 0, 0x21, crc, len(secret), len(data))
    local = b"PK\x03\x04" + fields + struct.pack("<HH", len(name), 0) + name + secret
    central = (
        b"PK\x01\x02"
        + struct.pack("<H", 20)
        + fields
        + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0o100644 << 16, 0)
        + name
    )
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, len(central), len(local), 0)
    return local + central + end


def _zipcrypto(header: bytes, data: bytes, password: bytes) -> bytes:
    """Traditional PKWARE encryption (APPNOTE 6.1) of the 12-byte header and the data."""
    keys = [0x12345678, 0x23456789, 0x34567890]

    def crc_byte(crc: int, byte: int) -> int:  # one raw CRC-32 step, without zlib's inversions
        return ~zlib.crc32(bytes([byte]), ~crc & 0xFFFFFFFF) & 0xFFFFFFFF

    def update(byte: int) -> None:
        keys[0] = crc_byte(keys[0], byte)
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = crc_byte(keys[2], keys[1] >> 24)

    for byte in password:
        update(byte)
    out = bytearray()
    for byte in header + data:
        temp = (keys[2] | 2) & 0xFFFF
        out.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
        update(byte)
    return bytes(out)


def deeply_nested_email(rep: Report, depth: int) -> bytes:
    """The report's CSV at the bottom of ``depth`` nested multipart levels (a message
    that makes a recursive MIME parser overflow Python's stack at about 300)."""
    top = email_with(subject=rep.subject, body="nested\n")
    head = top[: top.index(b"\r\n\r\n") + 2]
    head = b"".join(
        line + b"\r\n"
        for line in head.split(b"\r\n")
        if line and not line.lower().startswith((b"content-", b"mime-version"))
    )
    body = b"MIME-Version: 1.0\r\n"
    for level in range(depth):
        body += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
    body += (
        b'Content-Type: text/csv\r\nContent-Disposition: attachment; filename="%s"\r\n'
        b"\r\n" % rep.filename.encode()
    ) + rep.csv.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    for level in reversed(range(depth)):
        body += b"\r\n--b%d--\r\n" % level
    return head + body


def damaged_base64_email(rep: Report, *, line: int = 3) -> bytes:
    """The report email with one line of its base64 attachment damaged (characters
    outside the alphabet and a cut): lenient decoders carry on, strict ones raise."""
    raw = report_email(rep)
    start = raw.index(b"\r\n\r\n", raw.index(b"Content-Disposition: attachment")) + 4
    lines = raw[start:].split(b"\r\n")
    lines[line] = lines[line][:20] + b"!*" + lines[line][25:]
    return raw[:start] + b"\r\n".join(lines)


def non_utf8_csv(rep: Report) -> bytes:
    """The report's CSV in Latin-1 (as a spreadsheet re-save produces): not UTF-8."""
    data = rep.csv.decode("utf-8").encode("latin-1", errors="replace")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    raise AssertionError("the report has no non-ASCII Latin-1 character; pick another window")


def unrelated_emails(count: int) -> list[bytes]:
    """Everyday mail that is not a report: newsletters, invoices, look-alikes, replies."""
    senders = [
        "news@shop.example.org",
        "billing@vendor.example.net",
        "colleague@example.test",
        "noreply@calendar.example.com",
        "reports@certainly.example.evil.test",
        "Certainly Reports <reports@evil.test>",
    ]
    messages = []
    for i in range(count):
        sender = senders[i % len(senders)]
        attachments: list[tuple[str | None, bytes, str]] = []
        if i % 7 == 0:
            attachments.append((f"invoice-{i}.pdf", b"%PDF-1.4\n% not a report\n", "application/pdf"))
        if i % 11 == 0:
            attachments.append((f"export-{i}.csv", b"a,b\r\n1,2\r\n", "text/csv"))
        messages.append(
            email_with(
                sender=sender,
                subject=f"Unrelated message {i}",
                body=f"Hello, this is message {i}.\n" * 5,
                attachments=attachments,
            )
        )
    return messages


def message_id(raw: bytes) -> str:
    """The Message-ID of a built message."""
    value = BytesHeaderParser().parsebytes(raw)["Message-ID"]
    assert value, "message has no Message-ID"
    return str(value).strip()


def _now() -> datetime:
    return datetime.now(UTC)


# -- the mailbox --------------------------------------------------------------------------


@contextlib.contextmanager
def imap(server: Any, user: str, password: str, *, port: int | None = None) -> Iterator[IMAPClient]:
    """A logged-in plain IMAP connection to the test's Dovecot (``server``)."""
    client = IMAPClient(server.host, port=port or server.port, ssl=False, timeout=IMAP_TIMEOUT_S)
    try:
        client.login(user, password)
        yield client
    finally:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - a broken test connection must not mask the failure
            with contextlib.suppress(Exception):
                client.shutdown()


def deliver(
    server: Any,
    user: str,
    password: str,
    messages: Iterable[bytes],
    *,
    folder: str = "INBOX",
    flags: Sequence[bytes] = (),
) -> None:
    """APPEND ``messages`` (MULTIAPPEND in batches) with ``flags``; creates ``folder``."""
    with imap(server, user, password) as client:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        batch: list[dict[str, Any]] = []
        for raw in messages:
            batch.append({"msg": raw, "flags": tuple(flags)})
            if sum(len(m["msg"]) for m in batch) > 8 * 1024 * 1024 or len(batch) >= 200:
                client.multiappend(folder, batch)
                batch = []
        if batch:
            client.multiappend(folder, batch)


Snapshot = dict[str, Counter[tuple[str, frozenset[str]]]]


def snapshot(server: Any, user: str, password: str) -> Snapshot:
    """Every non-empty folder (``/`` as separator) -> multiset of (Message-ID, flags).

    \\Recent is left out: it is a session property, not something a client sets.
    """
    result: Snapshot = {}
    with imap(server, user, password) as client:
        for folder_flags, separator, name in client.list_folders():
            if {b"\\Noselect", b"\\NonExistent"} & {f.title() for f in folder_flags}:
                continue  # a hierarchy level (certainly-ingest), not a folder with mail
            sep = separator.decode() if isinstance(separator, bytes) else (separator or "/")
            folder = name if isinstance(name, str) else name.decode()
            info = client.select_folder(folder, readonly=True)
            if not info[b"EXISTS"]:
                continue
            data = client.fetch(client.search("ALL"), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            items: Counter[tuple[str, frozenset[str]]] = Counter()
            for fields in data.values():
                header = next(v for k, v in fields.items() if k.startswith(b"BODY[HEADER"))
                mid = str(BytesHeaderParser().parsebytes(header)["Message-ID"] or "").strip()
                flags = frozenset(
                    f.decode() if isinstance(f, bytes) else str(f) for f in fields[b"FLAGS"]
                ) - {"\\Recent"}
                items[(mid, flags)] += 1
            result[folder.replace(sep, "/")] = items
            client.unselect_folder()
    return result


def moved(before: Snapshot, moves: Mapping[str, str], *, source: str = "INBOX") -> Snapshot:
    """``before`` with each Message-ID in ``moves`` taken out of ``source`` (every copy)
    and put, flags unchanged, into the folder it maps to."""
    after: Snapshot = {folder: Counter(items) for folder, items in before.items()}
    for mid, target in moves.items():
        found = [(key, n) for key, n in after.get(source, Counter()).items() if key[0] == mid]
        assert found, f"{mid} is not in {source} of the snapshot"
        for key, n in found:
            del after[source][key]
            after.setdefault(target, Counter())[key] += n
    return {folder: items for folder, items in after.items() if items}


# -- the job's side -------------------------------------------------------------------------


@contextlib.contextmanager
def running_dovecot(users: Mapping[str, str], **options: Any) -> Iterator[Any]:
    """A private Dovecot for a test module (see :func:`tests.support.dovecot.private_dovecot`)."""
    from tests.support.dovecot import private_dovecot

    with private_dovecot("ingest-watcher-dovecot-", users=users, **options) as server:
        yield server


def watcher_settings(server: Any, user: str, password: str, workdir: Any, **imap_fields: Any) -> Any:
    """Settings for a pass against the test's Dovecot (plain IMAP unless overridden).

    The Certainly section is a placeholder: with every window already ``accepted`` the
    requester tick has nothing to submit, so it never calls that URL.
    """
    from pathlib import Path

    from ingest.settings import explicit_settings

    imap_settings = {
        "host": server.host,
        "port": server.port,
        "security": "none",
        "username": user,
        "password": password,
        "timeout": 10,
        "allowed_senders": [SENDER],
        "reconnect_attempts": 3,
        **imap_fields,
    }
    return explicit_settings(
        certainly={
            "base_url": "http://127.0.0.1:9/",
            "token": "unused",
            "report_path": "unused",
            "timeout": 5,
            # The token owner the builders here address reports to; the owner's mail reaches
            # the test's mailbox as by a redirect (the original To kept).
            "account_email": [RECIPIENT],
        },
        requester={"max_in_flight": 1000, "poll_interval": 30, "via": "email"},
        imap=imap_settings,
        output={"root": str(Path(workdir) / "archive")},
        state={"path": Path(workdir) / "state.sqlite"},
    )


def email_rows(state_path: Any) -> list[dict[str, Any]]:
    """The state store's record of every email (read with plain sqlite3)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(state_path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM emails ORDER BY uidvalidity, uid")]


def attachment_rows(state_path: Any) -> list[dict[str, Any]]:
    """The state store's record of every attachment."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(state_path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM attachments ORDER BY at")]


class Mailboxes:
    """A test module's private Dovecot users, handed out one per test so that no test
    sees another's mail: ``ACCOUNTS = Mailboxes("vol", 5)`` then ``ACCOUNTS.take()``."""

    def __init__(self, prefix: str, count: int, password: str = "secret") -> None:
        self.prefix = prefix
        self.users = {f"{prefix}{i:02d}@example.test": password for i in range(1, count + 1)}
        self._free = itertools.count(1)

    def take(self) -> str:
        """A mailbox nobody else in this module has used."""
        name = f"{self.prefix}{next(self._free):02d}@example.test"
        assert name in self.users, f"raise the count of Mailboxes({self.prefix!r}, ...)"
        return name
