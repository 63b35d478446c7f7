"""The records of a raw copy or a quarantined file, read by value: the one search under
``ingest erase``, ``ingest prune`` and subject access (``ingest export --botuser``).

A stored copy is one of three shapes, told by its name and first bytes:

* a CSV (the emailed report; a quarantined original of any name that is not the others):
  split into records byte-exactly (:func:`csv_records`: quoted line ends stay inside, CRLF,
  LF or a lone CR end one, a BOM stays with the header) and each record's cells read by
  Python's ``csv`` with no field size limit (the intake reads fields of any size);
* a JSON document (a GET answer, ``.json``): a list of row objects, or an object holding
  one; each row's bytes are found by the JSON decoder itself, so the others stay as written;
* Parquet (``rejected_rows.parquet``, or any file starting ``PAR1``): rows decoded (a byte
  search of compressed pages finds nothing), the kept ones written again.

``match(header, cells)`` decides, by value, which records go; nothing is decided by a byte
search. ``candidate(record)`` may skip parsing a record that cannot match (an erasure's id,
or a backslash that may escape it, absent); with ``needles``, runs of records holding none are
copied in one piece. A file that cannot be read in its shape raises :class:`Unreadable`
(naming it): the caller fails loudly rather than keep or destroy what it cannot read.

Example::

    found = scan_file(path, "raw/bot_id=b/abc.csv", match, candidate, needles, target=None)
    found.removed, found.kept, found.labels     # what a rewrite would drop, and whether any stays
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
import pyarrow as pa

from ingest.archive.csvrecords import (
    BLOCK,
    cells,
    csv_records,
    record_names,
    record_rows,
    record_runs,
    single_records,
)
from ingest.archive.layout import QUARANTINE, REJECTED_ROWS
from ingest.errors import OutputError
from ingest.parse.header import BOM

#: Records named in a plan (the dry run shows them): enough to check, never the whole file.
MAX_LABELS = 1000

#: A JSON document is read whole: one larger (a quarantined original, never a GET answer)
#: is read only when it may hold the subject, and then refused rather than risk the memory.
MAX_JSON_BYTES = 64 << 20

#: ``match(header names, cells)``: whether a record is one to drop.
Match = Callable[[list[str], list[str]], bool]


class Elsewhere(Exception):
    """A JSON document holding a matching record outside the list of rows it rewrites."""


class Unreadable(OutputError):
    """A copy that cannot be read as the shape its name says: nothing can be decided about it."""


@dataclass
class Found:
    """What a scan found: records to drop (how many, and which: ids or positions), whether
    any other record is in the file, and (when collected) the dropped records' values."""

    removed: int = 0
    kept: bool = False
    labels: list[str] = field(default_factory=list)
    records: list[dict[str, str]] = field(default_factory=list)
    #: A CSV's column names as read (None: not a CSV, or no header found).
    header: list[str] | None = None

    def add(self, label: str, header: list[str], cells: list[str], collect: bool) -> None:
        self.removed += 1
        if len(self.labels) < MAX_LABELS:
            self.labels.append(label)
        if collect:
            self.records.append(dict(zip(header, cells, strict=False)))


def shape(name: str, head: bytes, *, json_by_name: bool = True) -> str:
    """``parquet``, ``json`` or ``csv``: how a stored file is read, by its first bytes (in
    UTF-8, -16 or -32) or a ``.json`` name (``json_by_name``: not for a quarantined original,
    which keeps whatever name it came with). A ``json`` file that does not parse as JSON is
    unreadable (never read as CSV: its rows would be missed as one odd record)."""
    if name == REJECTED_ROWS or head.startswith(b"PAR1"):
        return "parquet"
    encoding, bom = json_encoding(head)
    text = head[len(bom) :].decode(encoding, errors="ignore")
    if (json_by_name and name.lower().endswith(".json")) or text.lstrip()[:1] in ("[", "{"):
        return "json"
    return "csv"


def scan_file(
    source: Path,
    name: str,
    match: Match,
    candidate: Callable[[bytes], bool],
    needles: list[bytes],
    *,
    target: Path | None = None,
    collect: bool = False,
) -> Found:
    """Find (and, with ``target``, write the file without) the records ``match`` names.
    Raises :class:`Unreadable` naming ``name`` when the file cannot be read as its shape."""
    with source.open("rb") as stream:
        head = stream.read(64)
    # A raw copy's name is ours (a GET answer is stored as .json); a quarantined original
    # keeps whatever name it came with, and only its content says what it is.
    kind = shape(name.rsplit("/", 1)[-1], head, json_by_name=not name.startswith(f"{QUARANTINE}/"))
    try:
        if kind == "parquet":
            return _parquet(source, match, target, collect)
        if kind == "json" and source.stat().st_size > MAX_JSON_BYTES:
            wide = [
                n.decode("utf-8", errors="replace").encode(e)
                for n in needles
                for e in ("utf-16-le", "utf-16-be")
            ]
            if needles and not _holds(source, [*needles, *wide]):
                return Found()  # not a byte of the id or its escapes: nothing of theirs in it
            raise Elsewhere(f"{source.stat().st_size >> 20} MiB is too large to read as JSON in memory")
        if kind == "json":
            return _json(source, match, target, collect)
        return _csv(source, match, candidate, needles, target=target, collect=collect)
    except (Elsewhere, ValueError, csv.Error, pl.exceptions.PolarsError, pa.ArrowException) as err:
        raise Unreadable(
            f"cannot read {name} as {kind} ({type(err).__name__}: {str(err)[:200]}): nothing was changed",
            hint="a person decides: repair or remove the file by hand, then run the command again",
        ) from err


def _csv(
    source: Path,
    match: Match,
    candidate: Callable[[bytes], bool],
    needles: list[bytes],
    *,
    target: Path | None,
    collect: bool,
) -> Found:
    """A CSV read the ways the intake tries: UTF-8 (a BOM or not) as it is, UTF-16 through
    a UTF-8 copy (written back in its own encoding), its separator sniffed from the header
    (a refused original may be ``;`` or tab separated)."""
    with source.open("rb") as stream:
        head = stream.read(HEAD_BYTES)
    encoding = text_encoding(head)
    if encoding == "utf-8":
        delimiter = sniff_delimiter(head.decode("utf-8", errors="replace"))
        with source.open("rb") as src, _sink(target) as dst:
            return rewrite_csv(
                src, dst, match, candidate, needles=needles, collect=collect, delimiter=delimiter
            )
    with tempfile.TemporaryDirectory() as scratch:
        utf8, rewritten = Path(scratch) / "utf8.csv", Path(scratch) / "rewritten.csv"
        _transcode(source, encoding, utf8, "utf-8")
        delimiter = sniff_delimiter(utf8.read_bytes()[:HEAD_BYTES].decode("utf-8", errors="replace"))
        with utf8.open("rb") as src, _sink(rewritten if target else None) as dst:
            found = rewrite_csv(
                src, dst, match, candidate, needles=needles, collect=collect, delimiter=delimiter
            )
        if target is not None:
            _transcode(rewritten, "utf-8", target, encoding)
        return found


#: Bytes read to tell a file's encoding and separator.
HEAD_BYTES = 64 << 10
_UTF16_BOMS = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}


def text_encoding(head: bytes) -> str:
    """``utf-8``, ``utf-16-le`` or ``utf-16-be`` (the BOM kept as a character: written
    back as it was): a UTF-16 BOM, or NUL bytes at every other place, say UTF-16."""
    for bom, name in _UTF16_BOMS.items():
        if head.startswith(bom):
            return name
    if head and head.count(0) * 3 >= len(head):  # ASCII text in UTF-16: half its bytes NUL
        return "utf-16-le" if head[1::2].count(0) > head[0::2].count(0) else "utf-16-be"
    return "utf-8"


def holds_text(path: Path, texts: list[str]) -> bool:
    """Whether a file holds one of ``texts`` in UTF-8 or UTF-16 (either byte order), read a
    block at a time: a search of a file that cannot be read as records."""
    return _holds(path, [t.encode(e) for t in texts for e in ("utf-8", "utf-16-le", "utf-16-be")])


def sniff_delimiter(text: str) -> str:
    """The separator of the header (its first line that is not blank): a comma unless the
    line has none and has semicolons or tabs (a spreadsheet's export)."""
    line = next((line for line in text.removeprefix("\ufeff").splitlines() if line.strip()), "")
    if "," in line:
        return ","
    return max((";", "\t"), key=line.count) if (";" in line or "\t" in line) else ","


def _transcode(source: Path, encoding: str, target: Path, into: str) -> None:
    with (
        source.open("r", encoding=encoding, errors="strict", newline="") as src,
        target.open("w", encoding=into, newline="") as dst,
    ):
        for text in iter(lambda: src.read(BLOCK), ""):
            dst.write(text)


def _holds(path: Path, needles: list[bytes]) -> bool:
    """Whether a file holds one of ``needles`` (blocks overlapping by the longest)."""
    overlap = max(len(n) for n in needles)
    tail = b""
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(BLOCK), b""):
            data = tail + block
            if any(n in data for n in needles):
                return True
            tail = data[-overlap:]
    return False


@contextmanager
def _sink(target: Path | None) -> Iterator[BinaryIO | None]:
    if target is None:
        yield None
        return
    with target.open("wb") as stream:
        yield stream


# ---------------------------------------------------------------- CSV records, byte-exact
def rewrite_csv(
    source: BinaryIO,
    target: BinaryIO | None,
    match: Match,
    candidate: Callable[[bytes], bool],
    *,
    needles: list[bytes] | tuple[bytes, ...] = (),
    block: int = BLOCK,
    collect: bool = False,
    delimiter: str = ",",
) -> Found:
    """Copy a CSV (to ``target``, when given) without the records ``match(header, cells)``
    names. Every other byte is copied as it is; ``candidate(record)`` False skips parsing
    it. With ``needles``, a run of whole records holding none is copied at once: only the
    records around a needle are split and parsed (20 s -> a few s per GB)."""
    found = Found()
    records = record_runs(source, needles, block) if needles else single_records(csv_records(source, block))
    first = next(records, None)
    if first is None:
        return found
    offset = 0
    while not first[0].removeprefix(BOM).strip(b"\r\n \t"):  # blank lines before the header
        offset += len(first[0])
        if target is not None:
            target.write(first[0])
        first = next(records, None)
        if first is None:
            return found
    offset += len(first[0])
    if target is not None:
        target.write(first[0])
    header = record_names(cells(first[0], delimiter))
    found.header = header
    id_at = header.index("id") if "id" in header else -1
    for run, whole in records:
        for record, row in (
            [(run, None)] if whole or not candidate(run) else record_rows(run, offset, delimiter)
        ):
            if row and candidate(record) and match(header, row):
                label = f"id {row[id_at]}" if 0 <= id_at < len(row) else f"the record at byte {offset}"
                found.add(label, header, row, collect)
                offset += len(record)
                continue
            found.kept = found.kept or bool(record.strip(b"\r\n"))
            offset += len(record)
            if target is not None:
                target.write(record)
    return found


def _json(source: Path, match: Match, target: Path | None, collect: bool) -> Found:
    """A GET answer's copy: a list of row objects (or an object holding one). Rows to drop
    are cut out with their separator; every other byte stays."""
    data = source.read_bytes()
    encoding, bom = json_encoding(data)
    text = data[len(bom) :].decode(encoding)
    start, spans, end = json_rows(text)
    found = Found()
    kept: list[tuple[int, int, int]] = []
    for number, (lead, first, last) in enumerate(spans, start=1):
        row = json.loads(text[first:last])
        header, row_cells = _json_cells(row)
        if match(header, row_cells):
            row_id = row.get("id") if isinstance(row, dict) else None
            found.add(f"id {row_id}" if row_id is not None else f"row {number}", header, row_cells, collect)
        else:
            kept.append((lead, first, last))
    found.kept = bool(kept)
    outside = _rows_outside(json.loads(text), text[start:end] if spans else None)
    if any(match(*_json_cells(row)) for row in outside):
        raise Elsewhere("a record of theirs is outside the list of rows")
    if target is not None:
        pieces = [text[:start]]
        for n, (lead, first, last) in enumerate(kept):
            # Separators are not records: the first kept row gets the space after "[", each
            # other a comma and its own leading space; each row's own bytes are kept as written.
            pieces.append(
                text[start : spans[0][1]] if n == 0 else "," + text[_after_comma(text, lead) : first]
            )
            pieces.append(text[first:last])
        pieces.append(text[spans[-1][2] : end] if spans else text[start:end])
        pieces.append(text[end:])
        target.write_bytes(bom + "".join(pieces).encode(encoding))  # in its own encoding, as it was
    return found


_JSON_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def json_encoding(data: bytes) -> tuple[str, bytes]:
    """A JSON document's encoding and BOM, as ``json.loads`` on bytes tells them (the intake
    reads a GET answer so): a BOM says it, else the NUL bytes of its first characters."""
    for bom, name in _JSON_BOMS:
        if data.startswith(bom):
            return name, bom
    return json.detect_encoding(data), b""


def _rows_outside(doc: Any, rows_text: str | None) -> list[dict[str, Any]]:
    """Every JSON object in ``doc`` but the rows of the list :func:`json_rows` found (an
    object holding its rows under another key, or nested, is searched too)."""
    handled = json.loads(f"[{rows_text}]") if rows_text is not None else []
    found: list[dict[str, Any]] = []
    stack = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            if handled and value == handled:
                handled = []  # that list once: its rows are the ones rewritten
                continue
            stack.extend(value)
        elif isinstance(value, dict):
            found.append(value)
            stack.extend(value.values())
    return found


def _after_comma(text: str, lead: int) -> int:
    """Where a row's own leading whitespace starts (``lead`` is at its separating comma)."""
    return lead + 1 if text[lead : lead + 1] == "," else lead


def _json_cells(row: Any) -> tuple[list[str], list[str]]:
    """A JSON row's names and cells as the CSV export writes them (nested values as JSON)."""
    if not isinstance(row, dict):
        return [], []
    values = [
        json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else "" if v is None else str(v)
        for v in row.values()
    ]
    return list(row), values


_SPACE = re.compile(r"[ \t\n\r]*")


def json_rows(text: str) -> tuple[int, list[tuple[int, int, int]], int]:
    """The rows of a GET answer's JSON: ``(inside, rows, closing)`` where ``inside`` is just
    after the list's ``[``, ``closing`` at its ``]``, and each row is ``(lead, start, end)``:
    ``lead`` at the comma before it (or ``inside`` for the first), ``start:end`` its bytes."""
    decoder = json.JSONDecoder()
    doc = json.loads(text)  # the whole must be JSON: a truncated file is refused here
    at = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    if isinstance(doc, dict):
        key = next((k for k, v in doc.items() if isinstance(v, list)), None)
        if key is None:
            return 0, [], 0
        at = _value_of(text, at, key, decoder)
    if text[at : at + 1] != "[":
        return 0, [], 0
    inside = at + 1
    rows: list[tuple[int, int, int]] = []
    at = inside
    while True:
        lead = at
        at = _SPACE.match(text, at).end()  # type: ignore[union-attr]
        if text[at : at + 1] == "]":
            return inside, rows, at
        if rows:
            if text[at : at + 1] != ",":
                raise ValueError(f"expected ',' at {at}")
            lead = at
            at = _SPACE.match(text, at + 1).end()  # type: ignore[union-attr]
        _, end = decoder.raw_decode(text, at)
        rows.append((lead, at, end))
        at = end


def _value_of(text: str, at: int, key: str, decoder: json.JSONDecoder) -> int:
    """Where the value of the top-level ``key`` starts in an object starting at ``at``."""
    at += 1  # past "{"
    while True:
        at = _SPACE.match(text, at).end()  # type: ignore[union-attr]
        name, at = decoder.raw_decode(text, at)
        at = _SPACE.match(text, at).end()  # type: ignore[union-attr]
        at = _SPACE.match(text, at + 1).end()  # type: ignore[union-attr]  # past ":"
        if name == key:
            return at
        _, at = decoder.raw_decode(text, at)
        at = _SPACE.match(text, at).end() + 1  # type: ignore[union-attr]  # past ","


# ---------------------------------------------------------------- Parquet rows, decoded
def _parquet(source: Path, match: Match, target: Path | None, collect: bool) -> Found:
    """Rejected rows (all text, with their row number): each row's cells read by value."""
    frame = pl.read_parquet(source)
    header = frame.columns
    drop = []
    found = Found()
    for number, row in enumerate(frame.iter_rows(), start=1):
        row_cells = ["" if v is None else str(v) for v in row]
        hit = match(header, row_cells)
        drop.append(hit)
        if hit:
            at = row_cells[header.index("_row")] if "_row" in header else str(number)
            found.add(f"row {at}", header, row_cells, collect)
    found.kept = found.removed < frame.height
    if target is not None:
        frame.filter(~pl.Series(drop, dtype=pl.Boolean)).write_parquet(
            target, compression="zstd", statistics=False
        )
    return found
