"""Fetch a large message part by part, straight to disk, never whole into memory.

Only the tree shape is taken from BODYSTRUCTURE (servers format its details
differently); each part's own MIME headers (``BODY.PEEK[n.MIME]``) are parsed by the
email package, which knows RFC 2231 and encoded-word file names. A part that looks like a
report is fetched in ranges (``BODY.PEEK[n]<offset.length>``) into a file and decoded
from there (base64 or quoted-printable) into another.

Example::

    header, parts = fetch_parts_to_disk(box, uid, Path("/tmp/work"))
    for part in parts:
        part.filename, part.path.stat().st_size
"""

from __future__ import annotations

import base64
import email
import email.policy
import quopri
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.attachments import ARCHIVE_TYPES, CSV_TYPES, GENERIC_TYPES, safe_name
from ingest.mailbox import Mailbox

CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class PartOnDisk:
    """One decoded attachment part, in a file."""

    filename: str
    content_type: str
    path: Path


def part_numbers(structure: Any, prefix: str = "") -> list[str]:
    """IMAP part numbers ("1", "2", "2.1" ...) of the leaves of a BODYSTRUCTURE."""
    if isinstance(structure[0], list):  # multipart: (children, subtype, ...)
        numbers: list[str] = []
        for index, child in enumerate(structure[0], start=1):
            numbers += part_numbers(child, f"{prefix}{index}.")
        return numbers
    return [prefix.rstrip(".") or "1"]


def _looks_like_report(filename: str | None, content_type: str) -> bool:
    lower = (filename or "").lower()
    if lower.endswith((".csv", ".gz", ".zip")):
        return True
    return filename is None and content_type in CSV_TYPES or (
        filename is not None and content_type in CSV_TYPES | ARCHIVE_TYPES) or (
        content_type in GENERIC_TYPES and lower.endswith(".csv"))


def fetch_parts_to_disk(box: Mailbox, uid: int, workdir: Path) -> tuple[bytes, list[PartOnDisk]]:
    """The message's header block and its report-like parts, each decoded into a file."""
    header = box.fetch_section(uid, "HEADER")
    structure = box.fetch_structure(uid)
    if header is None or structure is None:
        return b"", []  # expunged since the search
    parts: list[PartOnDisk] = []
    for number in part_numbers(structure):
        mime_bytes = box.fetch_section(uid, f"{number}.MIME") or b""
        headers = email.message_from_bytes(mime_bytes + b"\r\n", policy=email.policy.default)
        filename = headers.get_filename()
        content_type = headers.get_content_type()
        if not _looks_like_report(filename, content_type):
            continue
        encoded = workdir / f"{uid}-{number}.encoded"
        _fetch_body(box, uid, number, encoded)
        decoded = workdir / f"{uid}-{number}.part"
        _decode(encoded, decoded, str(headers.get("Content-Transfer-Encoding", "7bit")).lower(),
                text=headers.get_content_maintype() == "text")
        encoded.unlink()
        parts.append(PartOnDisk(safe_name(filename, fallback="report.csv"), content_type, decoded))
    return header, parts


def _fetch_body(box: Mailbox, uid: int, number: str, target: Path) -> None:
    offset = 0
    with target.open("wb") as sink:
        while True:
            chunk = box.fetch_section(uid, number, partial=(offset, CHUNK)) or b""
            sink.write(chunk)
            offset += len(chunk)
            if len(chunk) < CHUNK:
                return


def _decode(source: Path, target: Path, encoding: str, *, text: bool) -> None:
    """Undo the transfer encoding, line by line (bounded memory). Like the email package,
    a text part that is not base64 gets its CRLF line ends back as LF, so both fetch paths
    give the same bytes."""
    with source.open("rb") as raw, target.open("wb") as out:
        if encoding == "base64":
            base64.decode(raw, out)
            return
        if encoding == "quoted-printable":
            decoded = target.with_suffix(".qp")
            with decoded.open("wb") as middle:
                quopri.decode(raw, middle)
            raw = decoded.open("rb")
        with raw:
            for line in raw:
                out.write(line[:-2] + b"\n" if text and line.endswith(b"\r\n") else line)
        if encoding == "quoted-printable":
            target.with_suffix(".qp").unlink()
