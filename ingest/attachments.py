"""Pick report files out of an email: CSV attachments, plain or inside .gz / .zip.

Attachment names are only ever used as labels (and to guess the type), never as paths.
Decompression is bounded so that a hostile archive cannot exhaust memory.

Example::

    email = parse_email(raw_bytes)
    for report in email.reports:
        report.filename, len(report.data)
"""

from __future__ import annotations

import email
import email.policy
import gzip
import io
import re
import zipfile
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from pathlib import Path

from ingest.authresults import authenticated
from ingest.errors import ReportRejected

CSV_TYPES = {"text/csv", "application/csv", "text/comma-separated-values", "application/vnd.ms-excel"}
GENERIC_TYPES = {"application/octet-stream", "text/plain", "application/x-csv"}
ARCHIVE_TYPES = {"application/zip", "application/x-zip-compressed", "application/gzip",
                 "application/x-gzip"}
#: Refuse to inflate an attachment beyond this (zip bombs).
MAX_INFLATED_BYTES = 2 * 1024**3
#: Only so much of the body text is kept (as evidence of which export it answers).
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class ReportFile:
    """One report file: its (sanitised) name and its decoded, decompressed bytes, or the
    file they were written to when too large to hold (a large message fetched to disk)."""

    filename: str
    data: bytes
    path: Path | None = None

    @property
    def source(self) -> bytes | Path:
        """What to read the report from."""
        return self.path if self.path is not None else self.data

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.data)


@dataclass
class ParsedEmail:
    """The headers that matter for provenance, and the report files found."""

    message_id: str | None
    sender: str | None
    date: str | None
    subject: str | None
    authentication_results: list[str]
    reports: list[ReportFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: The first plain-text body (bounded): the vendor's text may name the bot and dates.
    body_text: str = ""
    #: When the mail server received it (IMAP INTERNALDATE, epoch seconds), if known.
    received_at: float | None = None


def safe_name(name: str | None, fallback: str = "attachment") -> str:
    """A label for an attachment name: no folders, no control characters, bounded length.

    >>> safe_name("../../etc/passwd")
    'passwd'
    """
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip().lstrip(".")
    return base[:200] or fallback


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
    addresses = getattr(header, "addresses", ())
    if getattr(header, "defects", None) or len(addresses) != 1:
        return None
    address = addresses[0]
    if not address.username or not address.domain or "@" in address.username:
        return None
    return address.addr_spec.lower()


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
    :mod:`ingest.authresults`). Headers below ours may have been written by the sender.

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
    return [re.sub(r"\r?\n(?=[ \t])", "", str(value)).strip()
            for key, value in message.raw_items() if key.lower() == name.lower()]


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse an RFC 5322 message and extract every report file it carries."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    parsed = ParsedEmail(
        message_id=_header(message, "Message-ID"),
        sender=_header(message, "From"),
        date=_header(message, "Date"),
        subject=_header(message, "Subject"),
        authentication_results=[str(v) for v in message.get_all("Authentication-Results", [])],
    )
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        content_type = part.get_content_type()
        if filename is None and content_type not in CSV_TYPES:
            if content_type == "text/plain" and not parsed.body_text:
                parsed.body_text = _text(part)
            continue  # the body text, not an attachment
        name = safe_name(filename, fallback="report.csv")
        try:
            payload = part.get_payload(decode=True) or b""
            parsed.reports.extend(_reports_in(name, content_type, payload))
        except ReportRejected as err:
            parsed.problems.append(f"{name}: {err}")
    return parsed


def _text(part: Message) -> str:
    """A text part's content, bounded; "" when it cannot be decoded."""
    try:
        payload = part.get_payload(decode=True)
        charset = part.get_content_charset() or "utf-8"
        return bytes(payload or b"")[:MAX_BODY_BYTES].decode(charset, errors="replace")
    except (LookupError, ValueError, TypeError):
        return ""


def reports_in_file(name: str, data: bytes) -> list[ReportFile]:
    """Report files in a file given by hand: a CSV, a .csv.gz or a .zip of CSVs."""
    guessed = "application/zip" if name.lower().endswith(".zip") else "text/csv"
    return _reports_in(safe_name(name), guessed, data)


def _header(message: EmailMessage, name: str) -> str | None:
    try:
        value = message.get(name)
    except (ValueError, IndexError):  # malformed header: keep going without it
        return None
    return " ".join(str(value).split()) if value is not None else None


def _reports_in(name: str, content_type: str, payload: bytes) -> list[ReportFile]:
    lower = name.lower()
    if lower.endswith(".zip") or content_type in {"application/zip", "application/x-zip-compressed"}:
        return _unzip(name, payload)
    if lower.endswith(".gz") or content_type in {"application/gzip", "application/x-gzip"}:
        inner = safe_name(name[:-3] if lower.endswith(".gz") else name)
        return [ReportFile(inner, _gunzip(payload))] if inner.lower().endswith(".csv") or \
            content_type in {"application/gzip", "application/x-gzip"} else []
    if lower.endswith(".csv") or content_type in CSV_TYPES:
        return [ReportFile(name, payload)]
    return []  # a logo, a PDF, a signature: not a report


def _gunzip(payload: bytes) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(payload)) as stream:
            data = stream.read(MAX_INFLATED_BYTES + 1)
    except (OSError, EOFError) as err:
        raise ReportRejected(f"corrupt gzip: {err}") from None
    if len(data) > MAX_INFLATED_BYTES:
        raise ReportRejected(f"gzip inflates beyond {MAX_INFLATED_BYTES} bytes")
    return data


def _unzip(name: str, payload: bytes) -> list[ReportFile]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
        members = [m for m in archive.infolist() if not m.is_dir() and m.filename.lower().endswith(".csv")]
        if sum(m.file_size for m in members) > MAX_INFLATED_BYTES:
            raise ReportRejected(f"zip inflates beyond {MAX_INFLATED_BYTES} bytes")
        files = []
        for member in members:
            with archive.open(member) as stream:
                data = stream.read(MAX_INFLATED_BYTES + 1)  # the header's size may lie
            if len(data) > MAX_INFLATED_BYTES:
                raise ReportRejected(f"zip member inflates beyond {MAX_INFLATED_BYTES} bytes")
            files.append(ReportFile(safe_name(member.filename), data))
        return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError) as err:
        raise ReportRejected(f"corrupt zip {name}: {err}") from None
