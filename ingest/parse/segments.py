"""Parse a big CSV file on both cores: segments cut at guessed record ends, each checked.

pyarrow's streaming reader parses in one thread, and parsing is the critical path of a
big import (bench/README.md). Here the file is cut into segments of a few MiB, each
parsed whole by ``pyarrow.csv.read_csv`` (which releases the GIL) in one of two
threads, and handed on in file order.

A cut is a guess: the last line feed of the segment that an even number of quotes
precedes (counted from the segment's start, which is a record start). The export
(csv.writer-style, minimal quoting) quotes every field holding a quote or a line
break, so the guess is right on its files. It is never trusted: each segment is parsed
with a sentinel record appended (:data:`_MARKER` then empty fields). The sentinel comes
back as a row of its own, exactly, only if the parser stood at a record start at the
cut; inside a quoted field it is swallowed into that field (at least the cut's line
feed comes before it), and a record cut in two fails on its field count. As the first
segment starts at the file's start, every cut is proven in turn, in order.

Anything unexpected (a cut not proven, a segment pyarrow refuses, a header read
differently, no cut in a whole segment: a record longer than a segment) makes the
caller read the file again with the single streaming reader, skipping the rows already
handed on: the same rows and the same error message as before, on every file.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

#: Bytes per segment: also the size of the tables handed on (polars' per-call overhead
#: wants thousands of rows, memory wants them small).
SEGMENT_BYTES = 4 << 20
#: Segments read and parsed ahead of the consumer (memory: each about 2.5 times its bytes).
PARSE_AHEAD = 3
#: Threads parsing segments: the machine's two cores.
PARSE_THREADS = 2
#: The first cell of the sentinel record: control characters no export writes.
_MARKER = "\x01ingest-segment-end\x01"


class Unproven(Exception):
    """A segment could not be parsed or its cut not proven: read sequentially instead."""


def _sentinel(raw_names: list[str]) -> bytes:
    return (_MARKER + "," * (len(raw_names) - 1) + "\n").encode()


def parse_segment(
    data: pa.Buffer,
    raw_names: list[str],
    *,
    first: bool,
    sentinel: bool,
    convert: pacsv.ConvertOptions,
    parse: pacsv.ParseOptions,
) -> pa.Table:
    """Parse one segment (all text); raise :class:`Unproven` if it is not what it seems.

    The first segment holds the header (checked against ``raw_names``). With
    ``sentinel``, ``data`` ends with the sentinel record, which must come back as the
    last row, exactly (it is not returned).
    """
    options = pacsv.ReadOptions(
        block_size=data.size + 1,  # one block: no block edge can split a CRLF
        use_threads=False,
        column_names=None if first else raw_names,
    )
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data), read_options=options, parse_options=parse, convert_options=convert
        )
    except pa.ArrowInvalid as err:
        raise Unproven(str(err)) from None
    if table.column_names != raw_names:
        raise Unproven("header")
    if not sentinel:
        return table
    end = table.num_rows - 1
    if end < 0 or table.column(0)[end].as_py() != _MARKER:
        raise Unproven("cut inside a record")
    if any(table.column(i)[end].is_valid for i in range(1, table.num_columns)):
        raise Unproven("cut inside a record")
    return table.slice(0, end)


def segment_tables(
    path: Path,
    raw_names: list[str],
    *,
    segment_bytes: int,
    convert: pacsv.ConvertOptions,
    parse: pacsv.ParseOptions,
) -> Iterator[pa.Table]:
    """Yield the file's rows as all-text tables, in file order, parsed in two threads.

    Raises :class:`Unproven` (after the rows proven so far) when the caller must read on
    with the single streaming reader. Each segment is read into one of a few reused
    buffers (fresh memory costs more than the copy on this kind of machine), its
    sentinel written over the bytes after the cut, which the next segment reads again.
    """
    sentinel = _sentinel(raw_names)
    slots = [bytearray(segment_bytes + len(sentinel)) for _ in range(PARSE_AHEAD)]
    pending: deque[Future[pa.Table]] = deque()
    submitted = 0
    with (
        ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="csv-parse") as pool,
        open(path, "rb", buffering=0) as f,
    ):
        size = os.fstat(f.fileno()).st_size
        offset = 0
        try:
            while offset < size or pending:
                while offset < size and len(pending) < PARSE_AHEAD:
                    slot = slots[submitted % PARSE_AHEAD]  # its last parse is over
                    got = os.preadv(f.fileno(), [memoryview(slot)[:segment_bytes]], offset)
                    last = offset + got >= size
                    length = got
                    if not last:
                        cut = _cut(slot, got)
                        if cut is None:  # a record longer than a segment
                            pending.append(_failed("no record end in a segment"))
                            offset = size
                            break
                        slot[cut : cut + len(sentinel)] = sentinel
                        length = cut + len(sentinel)
                        got = cut
                    data = pa.py_buffer(slot).slice(0, length)
                    pending.append(
                        pool.submit(
                            parse_segment,
                            data,
                            raw_names,
                            first=offset == 0,
                            sentinel=not last,
                            convert=convert,
                            parse=parse,
                        )
                    )
                    offset += got
                    submitted += 1
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _cut(data: bytearray, length: int) -> int | None:
    """:func:`find_cut` on ``data[:length]``, without copying it."""
    quotes = data.count(b'"', 0, length)
    end = length
    while True:
        lf = data.rfind(b"\n", 0, end)
        if lf < 0:
            return None
        quotes -= data.count(b'"', lf + 1, end)
        if quotes % 2 == 0:
            return lf + 1
        end = lf


def _failed(reason: str) -> Future[pa.Table]:
    future: Future[pa.Table] = Future()
    future.set_exception(Unproven(reason))
    return future
