"""Read a report CSV as a stream of all-text Arrow tables, in bounded memory.

pyarrow's streaming CSV reader parses in a thread of its own (pyarrow releases the
GIL), a block at a time, with ``newlines_in_values`` so quoted newlines stay inside
their cell; a bounded queue hands tables to the consumer. A file bigger than a segment
is parsed on both cores instead (:mod:`ingest.parse.segments`), with the same rows and
the same refusals.
It already refuses what must reject the whole file: a record with more or fewer fields
than the header, and bytes that are not UTF-8. Two things it lets through are checked
here: a quote left open at the end of the file (a cut-off file), and a header we could
not read the same way Python's ``csv`` module does.

Known differences from :func:`ingest.parse.parser.read_csv_text` (the strict, in-memory reader),
both on files the vendor's export (csv.writer-style: CRLF, minimal quoting) never makes:

* a quoted field followed by more text before the separator (``"ab"cd``) is read as
  ``abcd`` here, where Python's ``csv`` in strict mode refuses the file. Catching it
  needs a byte-level pass over the quotes that costs more than the whole parse (2.8 s
  per GB with numpy, 5.6 s with ``re``);
* a carriage return outside quotes ends the record here, as in Python's ``csv``; the
  in-memory reader refuses such a file (polars does not end the record there).

Example::

    header = read_header(first_mib)   # column_names(header): what polars would call them
    with CsvBatches(path, header) as batches:
        for table in batches:   # pyarrow Table, every column string, names stripped
            ...
"""

from __future__ import annotations

import io
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

import pyarrow as pa
import pyarrow.csv as pacsv

from ingest.errors import ReportRejected, first_line
from ingest.parse.header import column_names
from ingest.parse.segments import SEGMENT_BYTES, Unproven, segment_tables

#: pyarrow's block: also the longest record it accepts ("straddling object").
BLOCK_BYTES = 1 << 20
#: A record longer than BLOCK_BYTES is retried with this block (then refused).
MAX_RECORD_BYTES = 16 << 20
#: Input bytes handed to the consumer at once: polars' per-call overhead wants
#: tables of thousands of rows, memory wants them small.
CHUNK_BYTES = 4 << 20
#: Tables waiting between the reader thread and the consumer.
QUEUE_FRAMES = 2


class RecordTooLong(ReportRejected):
    """A record is longer than the block size: retry with a bigger one."""


class CsvBatches:
    """Parse a CSV (a path or bytes) in a background thread; iterate all-text tables.

    Use as a context manager: leaving it (also on an error) stops the thread.
    After a complete iteration, the file is known not to end inside an open quote.
    """

    def __init__(
        self,
        source: Path | bytes,
        raw_names: list[str],
        *,
        block_bytes: int | None = None,
        chunk_bytes: int | None = None,
        segment_bytes: int | None = None,
    ) -> None:
        self.source = source
        self.raw_names = raw_names
        self.names = column_names(raw_names)
        self.block_bytes = block_bytes or BLOCK_BYTES
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES
        self.segment_bytes = segment_bytes or SEGMENT_BYTES
        self.rows = 0  # handed to the consumer
        self._produced = 0  # parsed by the reader thread
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_FRAMES)  # bounded: memory
        self._stop = threading.Event()
        self._last_cell: str | None = None
        self._stream: pa.NativeFile | None = None
        self._thread = threading.Thread(target=self._run, name="csv-reader", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def __iter__(self) -> Iterator[pa.Table]:
        while True:
            item = self._queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, pa.Table)
            self.rows += item.num_rows
            yield item
        self._check_closed_quote()

    # ---------------------------------------------------------------- reader thread
    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for frame in self._frames():
                if not self._put(frame):
                    return
            self._put(None)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(err)
        finally:
            if self._stream is not None:
                self._stream.close()

    def _frames(self) -> Iterator[pa.Table]:
        """A file bigger than a segment is parsed on both cores (:mod:`ingest.parse.segments`);
        whatever that cannot prove is read again by the one streaming reader, from the
        start (so row numbers and messages are the same), skipping the rows handed on."""
        handed = 0
        if isinstance(self.source, Path) and self.source.stat().st_size > self.segment_bytes:
            try:
                for table in segment_tables(
                    self.source,
                    self.raw_names,
                    segment_bytes=self.segment_bytes,
                    convert=_convert_options(self.raw_names),
                    parse=_PARSE,
                ):
                    if self._stop.is_set():
                        return
                    self._produced += table.num_rows
                    handed += table.num_rows
                    if table.num_rows:
                        yield self._frame(table.to_batches())
                return
            except Unproven:
                self._produced = 0
        yield from self._sequential(skip=handed)

    def _sequential(self, skip: int) -> Iterator[pa.Table]:
        reader = self._open()
        if reader is None:
            return
        pending: list[pa.RecordBatch] = []
        size = 0
        while not self._stop.is_set():
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as err:
                raise _rejection(err, self._produced) from None
            self._produced += batch.num_rows
            if skip:  # rows already handed on by the segment reader
                if batch.num_rows <= skip:
                    skip -= batch.num_rows
                    continue
                batch, skip = batch.slice(skip), 0
            pending.append(batch)
            size += batch.get_total_buffer_size()  # nbytes walks the offsets
            if size >= self.chunk_bytes:
                yield self._frame(pending)
                pending, size = [], 0
        if pending:
            yield self._frame(pending)

    def _open(self) -> pacsv.CSVStreamingReader | None:
        block = safe_block_size(self.source, self.block_bytes)
        if block is not None:  # no block edge splits a CRLF: pyarrow reads the file itself
            stream = self._stream = (
                pa.BufferReader(self.source)
                if isinstance(self.source, bytes)
                else pa.OSFile(str(self.source))
            )
        else:  # rare: a Python stream holds back a trailing CR (slower: it takes the GIL)
            block = self.block_bytes
            raw = (
                io.BytesIO(self.source)
                if isinstance(self.source, bytes)
                else open(self.source, "rb", buffering=0)
            )
            stream = self._stream = pa.PythonFile(WholeLineEnds(raw), mode="r")
        try:
            reader = pacsv.open_csv(
                stream,
                # This thread is the reader: pyarrow's own pool would only add hand-offs.
                read_options=pacsv.ReadOptions(block_size=block, use_threads=False),
                parse_options=_PARSE,
                convert_options=_convert_options(self.raw_names),
            )
        except pa.ArrowInvalid as err:
            if "Empty CSV file" in str(err):
                return None  # a header and nothing else (no line end): no rows
            raise _rejection(err, 0) from None
        if reader.schema.names != self.raw_names:
            raise ReportRejected(
                "the header reads differently with two CSV readers: "
                f"{reader.schema.names[:5]} vs {self.raw_names[:5]}"
            )
        return reader

    def _frame(self, batches: list[pa.RecordBatch]) -> pa.Table:
        for last in reversed(batches):
            if last.num_rows:  # remembered for the end-of-file check
                self._last_cell = last.column(last.num_columns - 1)[last.num_rows - 1].as_py()
                break
        return pa.Table.from_batches(batches).rename_columns(self.names)

    # ----------------------------------------------------------------- end-of-file check
    def _check_closed_quote(self) -> None:
        """Refuse a file that ends inside a quoted field (a cut-off file).

        pyarrow ends such a field at the end of the file without a word. Then, and only
        then, the file ends with a separator, a quote and the last cell with its quotes
        doubled: the cell ran to the end of the file with no closing quote.
        """
        if not self._produced:
            return
        # An empty cell, quoted or not, reads as null.
        tail = b'"' + (self._last_cell or "").encode("utf-8").replace(b'"', b'""')
        end = _tail(self.source, len(tail) + 1)
        if end[1:] == tail and (len(end) == len(tail) or end[:1] in (b",", b"\n", b"\r")):
            raise ReportRejected(
                f"unreadable CSV: the file ends inside a quoted field (record {self.rows}): "
                "refusing a cut-off file"
            )


_PARSE = pacsv.ParseOptions(newlines_in_values=True)


def _convert_options(raw_names: list[str]) -> pacsv.ConvertOptions:
    """Every column as text, cast strictly later. An empty cell, quoted or not, is null
    (what blank_to_null does for the in-memory reader)."""
    return pacsv.ConvertOptions(
        column_types={name: pa.string() for name in raw_names},
        strings_can_be_null=True,
        null_values=[""],
        quoted_strings_can_be_null=True,
    )


#: Block sizes tried (the given one, then a little larger) before falling back to WholeLineEnds.
BLOCK_CANDIDATES = 16


def safe_block_size(source: Path | bytes, block: int) -> int | None:
    """A block size near ``block`` none of whose edges falls between a CR and an LF, or None.

    pyarrow reads a file in blocks of exactly this size, so its edges are the multiples of
    it; with none splitting a CRLF, the LF-dropping bug (see :class:`WholeLineEnds`) cannot
    strike. Costs two bytes read per block edge and candidate.
    """
    if isinstance(source, bytes):
        return _first_safe(lambda offset: source[offset - 1 : offset + 1], len(source), block)
    with open(source, "rb", buffering=0) as stream:
        fd = stream.fileno()
        return _first_safe(lambda offset: os.pread(fd, 2, offset - 1), os.fstat(fd).st_size, block)


def _first_safe(pair: Callable[[int], bytes], size: int, block: int) -> int | None:
    """The first candidate block size whose edges ``pair(edge)`` never reads as CRLF."""
    for candidate in range(block, block + BLOCK_CANDIDATES):
        if all(pair(edge) != b"\r\n" for edge in range(candidate, size, candidate)):
            return candidate
    return None


class WholeLineEnds(io.RawIOBase):
    """A binary stream whose reads never end between a CR and the LF after it.

    pyarrow's streaming CSV reader makes a block of each read; when a block ends with the
    CR of a CRLF inside a quoted field, it drops the LF at the start of the next block
    (``"q\r\nz"`` reads as ``q\rz``): a silently changed cell. Holding a trailing CR
    back for the next read keeps every CRLF inside one block. Found by a property test;
    ``tests/unit/test_stream.py`` checks every split position. Used only when no block
    size near the wanted one avoids every CRLF (:func:`safe_block_size`), because a Python
    stream makes pyarrow's reader thread take the GIL for each block.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._carry = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        want = -1 if size is None or size < 0 else max(size - len(self._carry), 1)
        data = self._raw.read(want)
        if self._carry:
            data, self._carry = self._carry + data, b""
        if len(data) > 1 and data.endswith(b"\r"):
            data, self._carry = data[:-1], b"\r"
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


def _tail(source: Path | bytes, size: int) -> bytes:
    if isinstance(source, bytes):
        return source[-size:]
    with open(source, "rb") as stream:
        stream.seek(0, io.SEEK_END)
        stream.seek(max(0, stream.tell() - size))
        return stream.read()


def _rejection(err: pa.ArrowInvalid, rows_before: int) -> ReportRejected:
    """Translate a pyarrow error into the reason the whole file is refused."""
    message = first_line(err)
    if "straddl" in message:
        return RecordTooLong(
            "a record is longer than the reader's block (an unterminated quote?): refusing the file"
        )
    if "UTF8" in message or "UTF-8" in message:
        return ReportRejected(
            f"not UTF-8 ({message}, after record {rows_before}): refusing to guess the encoding"
        )
    if "Expected" in message and "columns" in message:
        return ReportRejected(
            f"a record after record {rows_before} has the wrong number of "
            f"fields ({message}): refusing a ragged or cut-off file"
        )
    return ReportRejected(f"unreadable CSV: {message}")
