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

import email
import email.policy
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ingest.attachments import ARCHIVE_TYPES, CSV_TYPES, GENERIC_TYPES, MAX_MIME_DEPTH, Decoder, safe_name
from ingest.errors import ReportRejected
from ingest.mailbox import Mailbox

#: Bytes asked for per range: one range is decoded while the next is fetched, so about
#: two are in memory at once.
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
            _fetch_ranges(box, uid, number, decoder, sink, digest)
        parts.append(PartOnDisk(safe_name(filename, fallback="report.csv"), content_type, decoded))
    return header, parts


def _fetch_ranges(box: Mailbox, uid: int, number: str, decoder: Decoder, sink: IO[bytes],
                  digest: Digest | None) -> None:
    """Fetch part ``number`` range by range into ``decoder`` and ``sink``.

    One range is hashed, decoded and written in a helper thread while this thread fetches
    the next (the IMAP session stays on this thread): the server sends, and this process
    waits on the socket, while the last range is decoded. Ranges are handed over in order
    and at most one waits, so the digest sees the bytes in order and memory stays at
    about two ranges.
    """
    def absorb(chunk: bytes) -> None:
        if digest is not None:
            digest.update(chunk)
        decoder.feed(chunk, sink)

    pending: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="partfetch") as helper:
        try:
            offset = 0
            while True:
                chunk = box.fetch_section(uid, number, partial=(offset, CHUNK)) or b""
                if pending is not None:
                    pending.result()  # the previous range is in: raise what it met
                pending = helper.submit(absorb, chunk)
                offset += len(chunk)
                if len(chunk) < CHUNK:
                    break
            pending.result()
            pending = None
        finally:
            if pending is not None:
                pending.cancel()
    decoder.finish(sink)
