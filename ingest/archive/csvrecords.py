"""A CSV's records, byte-exactly: the splitting :mod:`ingest.archive.copies` reads raw copies
and quarantined files by. Quoted line ends stay inside a record; CRLF, LF or a lone CR end
one; a BOM stays with the header. Each record's cells are read by Python's ``csv`` with no
field size limit (the intake reads fields of any size).

Example::

    for record in csv_records(stream):      # bytes, line end included
        row = cells(record)                   # its cells
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Iterator
from typing import BinaryIO

from ingest.errors import ReportRejected
from ingest.parse.header import BOM, column_names

_TERMINATOR = re.compile(rb"\r\n|\r|\n")
#: Bytes read at a time.
BLOCK = 4 << 20


def csv_records(stream: BinaryIO, block: int = BLOCK) -> Iterator[bytes]:
    """Each CSV record's bytes exactly as in the file, its line end included (a BOM stays
    with the first). A record ends at CRLF, LF or a lone CR outside quotes, as Python's
    ``csv`` reads it; quoted line ends stay inside. Memory: a block and one record.
    One pass: the quote parity is carried, so a field of many line ends costs linear time."""
    buf = b""
    pos = 0  # scanned up to here; ``quotes`` counts the quotes of the open record before it
    quotes = 0
    for chunk in iter(lambda: stream.read(block), b""):
        buf += chunk
        start = 0
        for found in _TERMINATOR.finditer(buf, pos):
            if found.end() == len(buf) and buf.endswith(b"\r"):
                break  # a CR at the block's end may be the first half of a CRLF
            quotes += buf.count(b'"', pos, found.start())
            pos = found.end()
            if quotes % 2:
                continue  # inside a quoted field
            yield buf[start : found.end()]
            start, quotes = found.end(), 0
        buf, pos = buf[start:], max(pos - start, 0)
    if buf:
        yield buf


def cells(record: bytes, delimiter: str = ",") -> list[str]:
    """A CSV record's cells, whatever their size (``csv`` refuses fields over 131,072
    characters unless told otherwise: the intake reads them)."""
    text = record.removeprefix(BOM).decode("utf-8", errors="replace")
    previous = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        return next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
    finally:
        csv.field_size_limit(previous)


def _one_record(record: bytes, offset: int, delimiter: str = ",") -> list[str]:
    """The cells of one record; ValueError when the CSV reader reads more than one record
    in it (an unpaired quote inside an unquoted field: where one record ends is then not
    certain, and guessing could drop another person's record or keep the subject's)."""
    text = record.removeprefix(BOM).decode("utf-8", errors="replace")
    previous = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    finally:
        csv.field_size_limit(previous)
    if len(rows) > 1:
        raise ValueError(f"the record at byte {offset} reads as {len(rows)} records (an unpaired quote?)")
    return rows[0] if rows else []


def record_rows(record: bytes, offset: int, delimiter: str) -> list[tuple[bytes, list[str] | None]]:
    """The record and its cells; when the quote-parity split glued several records (a quote
    inside an unquoted field, ``my 5" screen``: literal to the intake's reader and to Python's
    ``csv``), each record of it split as those readers split, with its cells."""
    try:
        return [(record, _one_record(record, offset, delimiter))]
    except ValueError:
        pieces = exact_records(record, delimiter)
        rows: list[tuple[bytes, list[str] | None]] = []
        for piece in pieces:
            rows.append((piece, _one_record(piece, offset, delimiter)))  # still several: refused
            offset += len(piece)
        return rows


def exact_records(data: bytes, delimiter: str = ",") -> list[bytes]:
    """``data`` split into records as Python's ``csv`` (not strict) and pyarrow read them: a
    quote opens a quoted field only as a field's first character; in one, ``""`` is a quote;
    after its closing quote the rest up to the separator is literal. Slow (a regex a record):
    only for the rare stretch the quote-parity split got wrong."""
    d = re.escape(delimiter.encode())
    field = rb'(?:"(?:[^"]++|"")*+(?:"[^' + d + rb"\r\n]*)?|[^" + d + rb'\r\n"][^' + d + rb"\r\n]*|)"
    record = re.compile(field + rb"(?:" + d + field + rb")*(?:\r\n|\r|\n|\Z)")
    pieces, at = [], 0
    while at < len(data):
        found = record.match(data, at)
        assert found is not None and found.end() > at  # every byte string matches, at least a line end
        pieces.append(data[at : found.end()])
        at = found.end()
    return pieces


def record_names(raw: list[str]) -> list[str]:
    """The header's names as the intake's reader calls them (a duplicate suffixed: its value
    is not the column's), else stripped."""
    try:
        names = column_names(raw)
    except ReportRejected:
        names = [name.strip() for name in raw]
    return [name.lower() for name in names]  # a refused original's BOTUSER is still theirs


def single_records(records: Iterator[bytes]) -> Iterator[tuple[bytes, bool]]:
    for record in records:
        yield record, False


def record_runs(
    source: BinaryIO, needles: list[bytes] | tuple[bytes, ...], block: int
) -> Iterator[tuple[bytes, bool]]:
    """The header record, then runs of whole records: a run holding no needle as one piece
    (``True``: not to be parsed), one holding a needle record by record."""
    buf = b""
    header = True
    for chunk in iter(lambda: source.read(block), b""):
        buf += chunk
        cut = _last_boundary(buf)
        if cut <= 0:
            continue  # one record longer than what is read so far
        run, buf = buf[:cut], buf[cut:]
        if header or any(n in run for n in needles):
            yield from single_records(csv_records(io.BytesIO(run), block))
            header = False
        else:
            yield run, True
    if buf:
        yield from single_records(csv_records(io.BytesIO(buf), block))


def _last_boundary(buf: bytes) -> int:
    """Where the last whole record of ``buf`` (which starts with a record) ends: after its
    last line end outside quotes; 0 when there is none. Linear: each byte's quotes are
    counted once, and each kind of line end is searched for backwards once."""
    total = buf.count(b'"')
    after = 0  # quotes in buf[end:]
    end = len(buf)
    lf, cr = buf.rfind(b"\n"), buf.rfind(b"\r")
    while end > 0:
        lf = lf if lf < end else buf.rfind(b"\n", 0, end)
        cr = cr if cr < end else buf.rfind(b"\r", 0, end)
        at = max(lf, cr)
        if at < 0:
            return 0
        if buf[at : at + 1] == b"\r" and at == len(buf) - 1:
            end = at  # a CR at the very end may be the first half of a CRLF
            continue
        start = at - 1 if buf[at : at + 1] == b"\n" and at > 0 and buf[at - 1 : at] == b"\r" else at
        after += buf.count(b'"', start, end)
        if (total - after) % 2 == 0:
            return at + 1
        end = start
    return 0


# ---------------------------------------------------------------- JSON rows, byte-exact
