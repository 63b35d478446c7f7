"""Fetch a large message part by part, straight to disk, never whole into memory.

Only the tree shape is taken from BODYSTRUCTURE (servers format its details
differently); each part's own MIME headers (``BODY.PEEK[n.MIME]``) are parsed by the
email package, which knows RFC 2231 and encoded-word file names. A part that looks like a
report is fetched in ranges (``BODY.PEEK[n]<offset.length>``) and decoded as it comes
(base64 or quoted-printable) into one file: only the decoded copy is ever on disk. Like
the email package on the in-memory path, the decoder tolerates a damaged line (stray
characters, bad padding) instead of failing the whole message.

Example::

    header, parts = fetch_parts_to_disk(box, uid, Path("/tmp/work"))
    for part in parts:
        part.filename, part.path.stat().st_size
"""

from __future__ import annotations

import binascii
import email
import email.policy
import quopri
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ingest.attachments import ARCHIVE_TYPES, CSV_TYPES, GENERIC_TYPES, MAX_MIME_DEPTH, safe_name
from ingest.errors import ReportRejected
from ingest.mailbox import Mailbox

CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class PartOnDisk:
    """One decoded attachment part, in a file."""

    filename: str
    content_type: str
    path: Path


class Digest(Protocol):
    """What :func:`fetch_parts_to_disk` feeds every fetched byte to (a hashlib object)."""

    def update(self, data: bytes, /) -> None: ...


def part_numbers(structure: Any) -> list[str]:
    """IMAP part numbers ("1", "2", "2.1" ...) of the leaves of a BODYSTRUCTURE, in order.

    Walked with a stack, not recursion; a tree nested deeper than
    :data:`~ingest.attachments.MAX_MIME_DEPTH` is refused (ReportRejected).
    """
    numbers: list[str] = []
    pending: list[tuple[Any, str, int]] = [(structure, "", 0)]
    while pending:
        node, prefix, depth = pending.pop()
        if depth > MAX_MIME_DEPTH:
            raise ReportRejected(f"MIME structure nested deeper than {MAX_MIME_DEPTH} levels: refused")
        if isinstance(node[0], list):  # multipart: (children, subtype, ...)
            children = [(child, f"{prefix}{index}.", depth + 1)
                        for index, child in enumerate(node[0], start=1)]
            pending.extend(reversed(children))
        else:
            numbers.append(prefix.rstrip(".") or "1")
    return numbers


def _looks_like_report(filename: str | None, content_type: str) -> bool:
    lower = (filename or "").lower()
    if lower.endswith((".csv", ".gz", ".zip")):
        return True
    return filename is None and content_type in CSV_TYPES or (
        filename is not None and content_type in CSV_TYPES | ARCHIVE_TYPES) or (
        content_type in GENERIC_TYPES and lower.endswith(".csv"))


def fetch_parts_to_disk(box: Mailbox, uid: int, workdir: Path,
                        digest: Digest | None = None) -> tuple[bytes, list[PartOnDisk]]:
    """The message's header block and its report-like parts, each decoded into a file.
    Every byte fetched (header, part headers, bodies) is fed to ``digest``."""
    header = box.fetch_section(uid, "HEADER")
    structure = box.fetch_structure(uid)
    if header is None or structure is None:
        return b"", []  # expunged since the search
    if digest is not None:
        digest.update(header)
    parts: list[PartOnDisk] = []
    for number in part_numbers(structure):
        mime_bytes = box.fetch_section(uid, f"{number}.MIME") or b""
        if digest is not None:
            digest.update(mime_bytes)
        headers = email.message_from_bytes(mime_bytes + b"\r\n", policy=email.policy.default)
        filename = headers.get_filename()
        content_type = headers.get_content_type()
        if not _looks_like_report(filename, content_type):
            continue
        decoded = workdir / f"{uid}-{number}.part"
        decoder = Decoder(str(headers.get("Content-Transfer-Encoding", "7bit")).strip().lower(),
                          text=headers.get_content_maintype() == "text")
        with decoded.open("wb") as sink:
            offset = 0
            while True:
                chunk = box.fetch_section(uid, number, partial=(offset, CHUNK)) or b""
                if digest is not None:
                    digest.update(chunk)
                decoder.feed(chunk, sink)
                offset += len(chunk)
                if len(chunk) < CHUNK:
                    break
            decoder.finish(sink)
        parts.append(PartOnDisk(safe_name(filename, fallback="report.csv"), content_type, decoded))
    return header, parts


_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")


class Decoder:
    """Undo a transfer encoding chunk by chunk, as the body arrives (bounded memory).

    base64: characters outside the alphabet are skipped and a short last group is padded,
    as the email package does, so one damaged line costs its own bytes, not the message.
    quoted-printable and the identity encodings are decoded a line at a time; like the
    email package, a text part that is not base64 gets its CRLF line ends back as LF, so
    both fetch paths give the same bytes.
    """

    def __init__(self, encoding: str, *, text: bool) -> None:
        self.encoding = encoding
        self.text = text
        self._left = b""  # base64: characters short of a group of 4; else: a partial line
        self._ended = False  # base64: padding seen, the rest is ignored

    def feed(self, chunk: bytes, sink: IO[bytes]) -> None:
        """Decode what ``chunk`` completes; keep the rest for the next one."""
        if self.encoding == "base64":
            if self._ended:
                return
            data = self._left + _NOT_BASE64.sub(b"", chunk)
            whole = len(data) - len(data) % 4
            pad = data.find(b"=", 0, whole)
            if pad >= 0:  # padding ends the data, as for the email package's decoder
                whole, self._ended = pad - pad % 4 + 4, True
            self._left = b"" if self._ended else data[whole:]
            sink.write(_b64(data[:whole]))
            return
        data = self._left + chunk
        cut = data.rfind(b"\n") + 1
        self._left = data[cut:]
        self._lines(data[:cut], sink)

    def finish(self, sink: IO[bytes]) -> None:
        """Decode what is left at the end of the body."""
        left, self._left = self._left, b""
        if self.encoding == "base64":
            if len(left) % 4 != 1 and not self._ended:  # one lone character decodes to nothing
                sink.write(_b64(left + b"=" * (-len(left) % 4)))
            return
        self._lines(left, sink)

    def _lines(self, data: bytes, sink: IO[bytes]) -> None:
        if self.encoding == "quoted-printable":
            data = quopri.decodestring(data)
        if self.text:
            data = data.replace(b"\r\n", b"\n")
        sink.write(data)


def _b64(data: bytes) -> bytes:
    """Groups of 4 base64 characters (the last one perhaps padded) to bytes; a group the
    decoder still refuses (``A===``) is dropped rather than failing the message."""
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        good = len(data) - 4
        return binascii.a2b_base64(data[:good]) if good > 0 else b""
