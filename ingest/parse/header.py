"""The one CSV header reader: BOM, UTF-8, width, and the names as each reader sees them.

Every way a report enters (the streaming reader, the in-memory reader of GET answers
and tests, typed reports 2-4) reads its header here, so a file is refused for the same
reason, in the same words, whichever path it takes.

Example::

    names = read_header(first_mib)     # as written (BOM removed); refuses a bad header
    column_names(names)                # what polars calls them: duplicates suffixed, stripped
"""

from __future__ import annotations

import codecs
import csv
import io

from ingest.errors import ReportRejected

BOM = b"\xef\xbb\xbf"
#: Bytes read to find the header record (the in-memory reader's limit too).
HEADER_BYTES = 1 << 20
#: A Message Data report has about 22 columns; far more is an attack or a wrong file.
MAX_COLUMNS = 1000


def check_header_width(data: bytes) -> None:
    """Reject a header wider than MAX_COLUMNS before any parser allocates for it."""
    end = data.find(b"\n", 0, HEADER_BYTES)
    header = data[: end if end >= 0 else HEADER_BYTES]
    # Commas inside quoted names can only over-count, and only on an absurd header.
    if header.count(b",") + 1 > MAX_COLUMNS or (end < 0 and len(data) > HEADER_BYTES):
        raise ReportRejected(f"header has more than {MAX_COLUMNS} columns: not a message report")


def decode_utf8(data: bytes, *, final: bool = True) -> str:
    """Text of UTF-8 bytes; ``final=False`` for a head that may end mid-character."""
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError as err:
        raise ReportRejected(f"not UTF-8 (byte {err.start}): refusing to guess the encoding") from None


def read_header(head: bytes) -> list[str]:
    """The column names of a report, as written, from its first bytes (BOM removed).

    Raises :class:`ReportRejected` for an empty file, a header that is not UTF-8 or is
    wider than :data:`MAX_COLUMNS`, or an empty first line.
    """
    check_header_width(head)
    body = head.removeprefix(BOM)
    whole = len(head) <= HEADER_BYTES  # the head is the whole file
    if not body.strip() and whole:
        raise ReportRejected("empty file")
    text = decode_utf8(body, final=whole)
    try:
        names = next(csv.reader(io.StringIO(text, newline=""), strict=True))
    except (csv.Error, StopIteration) as err:
        raise ReportRejected(f"unreadable CSV header: {err or 'no header'}") from None
    if not names:
        raise ReportRejected("empty header: the first line names no columns")
    return names


def column_names(raw: list[str]) -> list[str]:
    """The names polars' reader gives a header: duplicates suffixed, then stripped."""
    seen: dict[str, int] = {}
    named = []
    for name in raw:
        if name in seen:
            named.append(f"{name}_duplicated_{seen[name]}")
            seen[name] += 1
        else:
            named.append(name)
            seen[name] = 0
    stripped = [name.strip() for name in named]
    if len(set(stripped)) != len(stripped):
        raise ReportRejected(
            "column names collide once spaces are stripped: "
            f"{', '.join(sorted({n for n in stripped if stripped.count(n) > 1}))}"
        )
    refuse_pattern_names(stripped)
    return stripped


def refuse_pattern_names(names: list[str]) -> None:
    """Refuse a column name polars reads as a pattern, not a name: ``*`` (every column) or
    ``^...$`` (a regular expression). ``pl.col(name)`` would select other columns than the
    one named, so such a file is refused in one line rather than archived wrong."""
    patterns = [name for name in names if name == "*" or (name.startswith("^") and name.endswith("$"))]
    if patterns:
        raise ReportRejected(f"column name(s) {', '.join(patterns)} cannot be archived (read as patterns)")
