"""Pick report files out of an email: CSV attachments, plain or inside .gz / .zip.

Attachment names are only ever used as labels (and to guess the type), never as paths.
Decompression streams (1 MiB at a time) into files of a scratch folder, and all the
compressed attachments of one email (or one imported file) together may inflate to at
most ``INGEST_OUTPUT__MAX_INFLATED_BYTES``: a 1 MB email that inflates to gigabytes costs
neither memory nor more than that much disk. Whatever is wrong with one attachment (a
corrupt gzip or zip, an encrypted member, a bomb, a MIME tree nested too deep) becomes a
one-line problem of that email, never an exception: ``parse_email`` raises nothing but
what the run itself cannot go on after (``OutputError`` when the scratch folder cannot be
written).

Example::

    with scratch(settings.output.temp_dir) as workdir:
        email = parse_email(raw_bytes, Inflater(settings.output.max_inflated_bytes, Path(workdir)))
        for report in email.reports:
            report.filename, report.size      # report.path: the inflated file
"""

from __future__ import annotations

import binascii
import email
import email.policy
import gzip
import io
import lzma
import os
import quopri
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from pathlib import Path
from typing import IO

from ingest.errors import OutputError, ReportRejected, described
from ingest.mail.recipients import Addressing

CSV_TYPES = {"text/csv", "application/csv", "text/comma-separated-values", "application/vnd.ms-excel"}
GENERIC_TYPES = {"application/octet-stream", "text/plain", "application/x-csv"}
ARCHIVE_TYPES = {"application/zip", "application/x-zip-compressed", "application/gzip", "application/x-gzip"}
#: Default of INGEST_OUTPUT__MAX_INFLATED_BYTES: what all the compressed attachments of
#: one email (or one imported file) may inflate to together (zip and gzip bombs).
MAX_INFLATED_BYTES = 512 * 1024**2
#: MIME trees nested deeper than this (multipart levels plus attached messages) are
#: refused before the email package parses them: it recurses per level, and about 300
#: levels exhaust Python's stack. Real report emails have 2 or 3.
MAX_MIME_DEPTH = 50
#: Longest attachment name kept, in UTF-8 bytes: ``original-<name>`` in quarantine must
#: stay under the 255 bytes a file name may have (120 CJK characters are 360 bytes).
MAX_NAME_BYTES = 200
#: Bytes inflated per read: memory for decompression is this, whatever the ratio.
CHUNK = 1024 * 1024
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
    #: Its To, Cc and Date headers, read strictly: whose report it is, and when it was sent.
    addressing: Addressing = field(default_factory=Addressing)


def safe_name(name: str | None, fallback: str = "attachment") -> str:
    """A label for an attachment name: no folders, no control characters, valid UTF-8,
    and at most :data:`MAX_NAME_BYTES` bytes (not characters: file systems count bytes),
    cut in the middle so that the extension that makes it a report survives.

    >>> safe_name("../../etc/passwd")
    'passwd'
    >>> len(safe_name("報" * 120 + ".csv").encode()), safe_name("報" * 120 + ".csv")[-4:]
    (199, '.csv')
    """
    base = re.split(r"[\\/]", name or "")[-1]
    base = base.encode("utf-8", "replace").decode("utf-8")  # lone surrogates from bad charsets
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip().lstrip(".")
    if len(base.encode("utf-8")) > MAX_NAME_BYTES:
        kept = re.search(r"(\.[A-Za-z0-9]{1,8}){0,2}$", base)  # matches always, maybe empty
        suffix = kept.group(0) if kept else ""
        stem = base[: len(base) - len(suffix)].encode("utf-8")[: MAX_NAME_BYTES - len(suffix)]
        base = stem.decode("utf-8", "ignore") + suffix
    return base or fallback


class Inflater:
    """Where the inflated attachments of one email (or one imported file) go, and how many
    bytes they may take together.

    With a ``workdir`` each inflated file is written there (bounded memory, whatever the
    ratio); without one it is kept in memory (small inputs and tests). ``limit`` None
    means :data:`MAX_INFLATED_BYTES`, read when the Inflater is made.
    """

    def __init__(self, limit: int | None = None, workdir: Path | None = None) -> None:
        self.limit = MAX_INFLATED_BYTES if limit is None else limit
        self.workdir = workdir
        self.used = 0

    def inflate(self, name: str, stream: IO[bytes], what: str) -> ReportFile:
        """Copy the decompressing ``stream`` into a file (or bytes) named ``name``.

        Raises :class:`ReportRejected` naming ``what`` when the stream is corrupt or the
        email's total goes over the limit (nothing is left behind), :class:`OutputError`
        when the scratch folder cannot be written (the run's problem, not the email's).
        """
        sink: IO[bytes]
        if self.workdir is None:
            sink = io.BytesIO()
        else:
            try:
                fd, tmp = tempfile.mkstemp(prefix="inflated-", dir=self.workdir)
            except OSError as err:
                raise _scratch_error(self.workdir, err) from None
            sink = os.fdopen(fd, "wb")
        try:
            with sink:
                while chunk := _read(stream, what):
                    self.used += len(chunk)
                    if self.used > self.limit:
                        raise ReportRejected(
                            f"{what} inflates beyond {self.limit} bytes (with the other "
                            "attachments of the email), the limit INGEST_OUTPUT__MAX_INFLATED_BYTES"
                        )
                    try:
                        sink.write(chunk)
                    except OSError as err:
                        raise _scratch_error(self.workdir or Path("."), err) from None
                if isinstance(sink, io.BytesIO):
                    return ReportFile(name, sink.getvalue())
        except BaseException:
            if self.workdir is not None:
                Path(tmp).unlink(missing_ok=True)
            raise
        return ReportFile(name, b"", path=Path(tmp))


def _read(stream: IO[bytes], what: str) -> bytes:
    """One chunk of a decompressing stream; every way a compressed stream can be broken
    (zlib, lzma and bz2 errors, a cut-off end, a bad CRC) is one ReportRejected."""
    try:
        return stream.read(CHUNK)
    except (
        OSError,
        EOFError,
        zlib.error,
        lzma.LZMAError,
        zipfile.BadZipFile,
        ValueError,
        RuntimeError,
        NotImplementedError,
    ) as err:
        raise ReportRejected(f"corrupt {what} stream ({described(err)})") from None


def _scratch_error(folder: Path, err: OSError) -> OutputError:
    return OutputError(
        f"cannot write the temporary folder {folder}: {err.strerror or err}", hint="INGEST_OUTPUT__TEMP_DIR"
    )


def scratch(temp_dir: Path | None, prefix: str = "ingest-mail-") -> tempfile.TemporaryDirectory[str]:
    """A fresh scratch folder for one email or import file, in ``temp_dir`` (created if
    missing; None: the system's), removed when the ``with`` block ends."""
    if temp_dir is not None:
        try:
            Path(temp_dir).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _scratch_error(Path(temp_dir), err) from None
    try:
        return tempfile.TemporaryDirectory(prefix=prefix, dir=temp_dir)
    except OSError as err:
        raise _scratch_error(Path(temp_dir or tempfile.gettempdir()), err) from None


_MIME_EVENT = re.compile(
    rb"^(?:content-type:[ \t]*(multipart/|message/rfc822)((?:[^\r\n]|\r?\n[ \t])*)|--([^\r\n]*))",
    re.IGNORECASE | re.MULTILINE,
)
_BOUNDARY = re.compile(rb'boundary[ \t]*=[ \t]*(?:"([^"\r\n]*)"|([^\s;]+))', re.IGNORECASE)


def mime_depth(raw: bytes, limit: int = MAX_MIME_DEPTH) -> int:
    """How deeply the MIME tree of ``raw`` nests (multipart levels plus attached
    messages), found without parsing it, so without recursion; stops counting past
    ``limit``. Each multipart header opens a level that its parent's next delimiter
    line closes; an attached message opens one that its parent's delimiter closes.

    >>> mime_depth(b"Content-Type: multipart/mixed; boundary=a\\r\\n\\r\\n--a\\r\\nx\\r\\n--a--\\r\\n")
    1
    """
    stack: list[bytes | None] = []
    deepest = 0
    for match in _MIME_EVENT.finditer(raw):
        kind, params, delimiter = match.groups()
        if delimiter is not None:
            text = delimiter.rstrip()
            closing = text.endswith(b"--") and text[:-2] in stack
            name = text[:-2] if closing else text
            if name in stack:
                index = len(stack) - 1 - stack[::-1].index(name)
                del stack[index + (0 if closing else 1) :]
            continue
        boundary = _BOUNDARY.search(params or b"") if kind.lower() == b"multipart/" else None
        if kind.lower() == b"multipart/" and boundary is None:
            continue  # a multipart without a boundary is one opaque part to the parser
        stack.append(
            (boundary.group(1) if boundary.group(1) is not None else boundary.group(2)) if boundary else None
        )
        deepest = max(deepest, len(stack))
        if deepest > limit:
            break
    return deepest


_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
#: Every byte outside the alphabet and ``=``: line ends and damage, deleted by
#: ``bytes.translate`` (about ten times faster than a regular expression's ``sub``).
_NOT_BASE64 = bytes(byte for byte in range(256) if byte not in _BASE64_ALPHABET)


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
            data = self._left + chunk.translate(None, _NOT_BASE64)
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


def parse_email(raw: bytes, inflater: Inflater | None = None) -> ParsedEmail:
    """Parse an RFC 5322 message and extract every report file it carries.

    Never raises for what the email holds: each attachment that cannot be read is a
    problem of the email (``parsed.problems``), and a MIME tree nested deeper than
    :data:`MAX_MIME_DEPTH` is refused whole. Only :class:`OutputError` (the scratch
    folder cannot be written) escapes.
    """
    inflater = inflater or Inflater()
    depth = mime_depth(raw)
    if depth > MAX_MIME_DEPTH:
        headers = email.message_from_bytes(_header_block(raw), policy=email.policy.default)
        parsed = _parsed(headers, _header_block(raw))
        parsed.problems.append(f"MIME structure nested deeper than {MAX_MIME_DEPTH} levels: refused unparsed")
        return parsed
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    parsed = _parsed(message, _header_block(raw))
    for part in message.walk():
        if part.is_multipart():
            continue
        try:
            filename = part.get_filename()
            content_type = part.get_content_type()
        except (ValueError, IndexError, TypeError, LookupError) as err:
            parsed.problems.append(f"attachment with unreadable headers: {described(err)}")
            continue
        if filename is None and content_type not in CSV_TYPES:
            if content_type == "text/plain" and not parsed.body_text:
                parsed.body_text = _text(part)
            continue  # the body text, not an attachment
        name = safe_name(filename, fallback="report.csv")
        try:
            payload = _payload(part)
            parsed.reports.extend(_reports_in(name, content_type, payload, inflater))
        except ReportRejected as err:
            parsed.problems.append(f"attachment {name}: {err}")
    return parsed


def _payload(part: EmailMessage) -> bytes:
    """A leaf part's decoded bytes. base64 goes through :class:`Decoder`, as on the
    part-by-part path, so that a damaged line costs its own bytes on both paths (the
    email package would hand back the still-encoded text instead)."""
    if str(part.get("Content-Transfer-Encoding", "")).strip().lower() != "base64":
        decoded = part.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else b""
    encoded = part.get_payload(decode=False)
    data = (
        encoded.encode("ascii", "replace")
        if isinstance(encoded, str)
        else encoded
        if isinstance(encoded, bytes)
        else b""
    )
    decoder, out = Decoder("base64", text=False), io.BytesIO()
    decoder.feed(data, out)
    decoder.finish(out)
    return out.getvalue()


def _parsed(message: EmailMessage, header_block: bytes = b"") -> ParsedEmail:
    return ParsedEmail(
        message_id=_header(message, "Message-ID"),
        sender=_header(message, "From"),
        date=_header(message, "Date"),
        subject=_header(message, "Subject"),
        authentication_results=[str(v) for v in message.get_all("Authentication-Results", [])],
        addressing=Addressing.of(message, header_block),
    )


def _header_block(raw: bytes) -> bytes:
    """The message's own header fields (up to the first empty line)."""
    end = re.search(rb"\r?\n\r?\n", raw)
    return raw[: end.end()] if end else raw


def _text(part: Message) -> str:
    """A text part's content, bounded; "" when it cannot be decoded."""
    try:
        payload = part.get_payload(decode=True)
        charset = part.get_content_charset() or "utf-8"
        return bytes(payload or b"")[:MAX_BODY_BYTES].decode(charset, errors="replace")
    except (LookupError, ValueError, TypeError):
        return ""


def reports_in_file(name: str, data: bytes | Path, inflater: Inflater | None = None) -> list[ReportFile]:
    """Report files in a file given by hand (bytes, or a path read as a stream): a CSV,
    a .csv.gz or a .zip of CSVs."""
    guessed = "application/zip" if name.lower().endswith(".zip") else "text/csv"
    return _reports_in(safe_name(name), guessed, data, inflater or Inflater())


def _header(message: EmailMessage, name: str) -> str | None:
    try:
        value = message.get(name)
    except (ValueError, IndexError):  # malformed header: keep going without it
        return None
    return " ".join(str(value).split()) if value is not None else None


def _reports_in(name: str, content_type: str, payload: bytes | Path, inflater: Inflater) -> list[ReportFile]:
    lower = name.lower()
    if lower.endswith(".zip") or content_type in {"application/zip", "application/x-zip-compressed"}:
        return _unzip(name, payload, inflater)
    if lower.endswith(".gz") or content_type in {"application/gzip", "application/x-gzip"}:
        inner = safe_name(name[:-3] if lower.endswith(".gz") else name)
        if not (inner.lower().endswith(".csv") or content_type in {"application/gzip", "application/x-gzip"}):
            return []
        return [_gunzip(inner, payload, inflater)]
    if lower.endswith(".csv") or content_type in CSV_TYPES:
        return [
            ReportFile(name, b"", path=payload) if isinstance(payload, Path) else ReportFile(name, payload)
        ]
    return []  # a logo, a PDF, a signature: not a report


def _gunzip(inner: str, payload: bytes | Path, inflater: Inflater) -> ReportFile:
    source = payload.open("rb") if isinstance(payload, Path) else io.BytesIO(payload)
    with source, gzip.GzipFile(fileobj=source) as stream:
        return inflater.inflate(inner, stream, "gzip")  # type: ignore[arg-type]  # GzipFile is a binary stream; typeshed types it apart from IO[bytes]


def _unzip(name: str, payload: bytes | Path, inflater: Inflater) -> list[ReportFile]:
    try:
        archive = zipfile.ZipFile(payload if isinstance(payload, Path) else io.BytesIO(payload))
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        OSError,
        ValueError,
        EOFError,
        RuntimeError,
    ) as err:
        raise ReportRejected(f"corrupt zip ({described(err)})") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and m.filename.lower().endswith(".csv")]
        if sum(m.file_size for m in members) > inflater.limit - inflater.used:
            raise ReportRejected(
                f"zip inflates beyond {inflater.limit} bytes (its members' sizes "
                "add up to more), the limit INGEST_OUTPUT__MAX_INFLATED_BYTES"
            )
        files = []
        for member in members:
            label = safe_name(member.filename)
            if member.flag_bits & 0x1:
                raise ReportRejected(
                    f"zip member {label} is encrypted: it cannot be read without "
                    "its password; ask for the export unencrypted"
                )
            try:
                stream = archive.open(member)
            except (
                zipfile.BadZipFile,
                NotImplementedError,
                RuntimeError,
                OSError,
                ValueError,
                EOFError,
                zlib.error,
                lzma.LZMAError,
            ) as err:
                raise ReportRejected(f"zip member {label} cannot be read ({described(err)})") from None
            with stream:  # the header's size may lie: the inflater counts what comes out
                files.append(inflater.inflate(label, stream, f"zip member {label}"))
        return files
