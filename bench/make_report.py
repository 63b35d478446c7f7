"""Generate a large, realistic, deterministic Message Data CSV for the benchmarks.

The rows come from :func:`ingest.simulator.data.generate_messages` (the same generator the
tests and the demo use) and are rendered by :func:`ingest.simulator.data.rows_to_csv`, so
the file has the emailed export's shape: UTF-8, CRLF, minimal quoting, JSON cells, quoted
newlines, non-ASCII text. Days are generated one at a time (in parallel worker
processes, written in day order) and streamed to the file: memory stays at a few days'
rows whatever the target size.

Same arguments -> byte-identical file (the job count does not change the output).

Shapes (the vendor documents no row order or timestamp form, so each is normal input):
``--order time|random|reverse`` (random: a uniform shuffle of every row through
``--buckets`` temporary files, so memory stays at one bucket), ``--tz Z|+00:00|+02:00``
(the same instants written with that offset: a ``+02:00`` row just after midnight local
time belongs to the UTC day before), ``--no-fractions`` (seconds only), ``--bom``,
``--lf`` (LF line ends instead of the export's CRLF) and ``--newline-rows PCT`` (quoted
newlines in about PCT%% of the rows instead of the simulator's own share, about 13%%).

Example::

    .venv/bin/python bench/make_report.py --size 250MB --out /tmp/r250.csv
    .venv/bin/python bench/make_report.py --rows 100000 --days 30 --seed 7 --out /tmp/r.csv

A sidecar ``<out>.meta.json`` records rows, bytes, the date range and the arguments;
``bench/run.py`` reads it for the row count and the window.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import os
import random
import re
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.simulator.data import (  # noqa: E402
    ID_STRIDE,
    MESSAGE_DATA_COLUMNS,
    _cell,
    generate_messages,
    rows_to_csv,
)

BOT_ID = "bench-bot"
# generate_messages numbers ids day.toordinal() * ID_STRIDE + index, so at most
# ID_STRIDE - 1 rows per call. Denser days are generated in several chunks (different
# seeds), merged by timestamp and renumbered with this wider stride: ids stay unique
# in the file and increasing with time.
WIDE_STRIDE = 10_000_000
CHUNK = 5_000

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str) -> int:
    """'250MB' -> 250_000_000; decimal units (KB, MB, GB) and binary ones (KiB, MiB, GiB)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 250MB, 1GB, 512MiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def day_counts(total: int, days: int) -> list[int]:
    """Spread ``total`` rows over ``days`` days as evenly as possible (deterministic)."""
    base, extra = divmod(total, days)
    return [base + (1 if i < extra else 0) for i in range(days)]


@dataclass(frozen=True)
class Shape:
    """How rows are written: the parts of an export's form the vendor does not fix."""

    tz: str = "Z"  # "Z", "+00:00" or "+02:00"
    fractions: bool = True
    lf: bool = False
    newline_pct: float | None = None  # None: the simulator's own quoted newlines
    records: bool = False  # return each record apart (for reordering)


def _timestamp(text: str, shape: Shape) -> str:
    """The simulator's ``...T..:..:...ffffffZ`` in the wanted form, same instant."""
    if shape.tz == "Z" and shape.fractions:
        return text
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if shape.tz != "Z":
        sign = 1 if shape.tz[0] == "+" else -1
        hours, minutes = (int(x) for x in shape.tz[1:].split(":"))
        moment = moment + sign * timedelta(hours=hours, minutes=minutes)
    body = moment.strftime("%Y-%m-%dT%H:%M:%S.%f" if shape.fractions else "%Y-%m-%dT%H:%M:%S")
    return body + shape.tz


def _newlines(row: dict[str, Any], shape: Shape) -> None:
    """Quoted newlines in about ``newline_pct``%% of rows (by id: deterministic)."""
    if shape.newline_pct is None:
        return
    message = str(row.get("message") or "").replace("\n", " ")
    if (row["id"] * 2654435761) % 10_000 < shape.newline_pct * 100:
        message = (message or "hi") + '\nsecond line, "quoted"'
    row["message"] = message


def render_day(job: tuple[date, int, int, Shape]) -> tuple[bytes, int, list[int]]:
    """The CSV body (no header) of one day's ``count`` rows, the row count and, for a
    reordered file, the end offset of each record."""
    day, count, seed, shape = job
    if count == 0:
        return b"", 0, []
    if count < ID_STRIDE:
        rows = generate_messages(BOT_ID, day, day, seed=seed, min_per_day=count, max_per_day=count)
    else:
        rows: list[dict[str, Any]] = []
        for k, part in enumerate(day_counts(count, -(-count // CHUNK))):
            rows.extend(
                generate_messages(BOT_ID, day, day, seed=seed * 1000 + k, min_per_day=part, max_per_day=part)
            )
        rows.sort(key=lambda row: row["timestamp"])  # fixed-width ISO text: sorts as time
        base = day.toordinal() * WIDE_STRIDE
        for index, row in enumerate(rows):
            row["id"] = base + index
    if shape == Shape():
        body = rows_to_csv(rows)  # the export's own form, fast path
        return body[body.index(b"\r\n") + 2 :], len(rows), []
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\n" if shape.lf else "\r\n")
    ends: list[int] = []
    for row in rows:
        _newlines(row, shape)
        row["timestamp"] = _timestamp(row["timestamp"], shape)
        writer.writerow([_cell(row.get(column)) for column in MESSAGE_DATA_COLUMNS])
        if shape.records:
            ends.append(buffer.tell())  # in characters; bytes below
    text = buffer.getvalue()
    if not shape.records:
        return text.encode("utf-8"), len(rows), []
    # Offsets in characters -> bytes, one record at a time.
    body = bytearray()
    byte_ends: list[int] = []
    start = 0
    for end in ends:
        body += text[start:end].encode("utf-8")
        byte_ends.append(len(body))
        start = end
    return bytes(body), len(rows), byte_ends


def _records(body: bytes, ends: list[int]) -> list[bytes]:
    starts = [0, *ends[:-1]]
    return [body[a:b] for a, b in zip(starts, ends, strict=True)]


def bytes_per_row(start: date, days: int, seed: int, shape: Shape = Shape()) -> float:
    """Average rendered row size, from a sample of the days (calibrates --size)."""
    sample_days = [start + timedelta(days=i * days // 4) for i in range(4)]
    total = rows = 0
    for day in sample_days:
        body, n, _ = render_day((day, 1500, seed, shape))
        total, rows = total + len(body), rows + n
    return total / rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--size", type=parse_size, help="target file size, e.g. 250MB, 1GB")
    target.add_argument("--rows", type=int, help="exact number of data rows")
    parser.add_argument("--days", type=int, default=90, help="days covered (default 90)")
    parser.add_argument(
        "--start", type=date.fromisoformat, default=date(2024, 1, 1), help="first day (default 2024-01-01)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bom", action="store_true", help="prefix a UTF-8 byte-order mark")
    parser.add_argument(
        "--order",
        choices=("time", "random", "reverse"),
        default="time",
        help="row order: the export's (time), shuffled, or newest first",
    )
    parser.add_argument(
        "--tz",
        choices=("Z", "+00:00", "+02:00"),
        default="Z",
        help="timestamp suffix; the instant (and its UTC date) is unchanged",
    )
    parser.add_argument("--no-fractions", action="store_true", help="timestamps without microseconds")
    parser.add_argument("--lf", action="store_true", help="LF line ends (default CRLF, as exported)")
    parser.add_argument(
        "--newline-rows",
        type=float,
        metavar="PCT",
        help="quoted newlines in about PCT%% of rows (default: the simulator's, ~13%%)",
    )
    parser.add_argument(
        "--buckets", type=int, default=16, help="temporary files for --order random (memory: one bucket)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (output does not depend on it)",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")

    started = time.perf_counter()
    shape = Shape(
        tz=args.tz,
        fractions=not args.no_fractions,
        lf=args.lf,
        newline_pct=args.newline_rows,
        records=args.order != "time",
    )
    if args.rows is not None:
        total_rows = args.rows
    else:
        total_rows = max(1, round(args.size / bytes_per_row(args.start, args.days, args.seed, shape)))
    counts = day_counts(total_rows, args.days)
    jobs = [(args.start + timedelta(days=i), n, args.seed, shape) for i, n in enumerate(counts)]
    if args.order == "reverse":
        jobs.reverse()
    header = rows_to_csv([])
    if args.lf:
        header = header.replace(b"\r\n", b"\n")
    if args.bom:
        header = b"\xef\xbb\xbf" + header

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    written = rows = 0
    with tmp.open("wb") as out, multiprocessing.Pool(max(1, args.jobs)) as pool:
        out.write(header)
        written += len(header)
        days = pool.imap(render_day, jobs, chunksize=1)  # imap keeps day order
        if args.order == "random":
            written_rows = _shuffled(days, out, args.seed, max(1, args.buckets), args.out.parent)
            rows, written = written_rows[0], written + written_rows[1]
        else:
            for body, n, ends in days:
                if args.order == "reverse":
                    body = b"".join(reversed(_records(body, ends)))
                out.write(body)
                written += len(body)
                rows += n
    os.replace(tmp, args.out)
    end = args.start + timedelta(days=args.days - 1)
    meta = {
        "path": str(args.out),
        "rows": rows,
        "bytes": written,
        "bot_id": BOT_ID,
        "start": args.start.isoformat(),
        "end": end.isoformat(),
        "days": args.days,
        "seed": args.seed,
        "bom": args.bom,
        "order": args.order,
        "tz": args.tz,
        "fractions": not args.no_fractions,
        "lf": args.lf,
        "newline_rows": args.newline_rows,
    }
    Path(f"{args.out}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    elapsed = time.perf_counter() - started
    print(
        f"{args.out}: {rows} rows, {written} bytes ({written / 1e6:.1f} MB), "
        f"{args.start}..{end}, seed {args.seed}, order {args.order}, tz {args.tz}, in {elapsed:.1f} s"
    )
    return 0


def _shuffled(days: Any, out: Any, seed: int, buckets: int, near: Path) -> tuple[int, int]:
    """Write every record of ``days`` to ``out`` in a uniformly random order.

    Each record goes to one of ``buckets`` temporary files, chosen at random; each bucket
    is then shuffled in memory and written out. A uniform shuffle (every record's bucket
    and place are independent draws) with one bucket in memory at a time.
    Returns (rows, bytes).
    """
    rng = random.Random(f"shuffle:{seed}")
    rows = size = 0
    with tempfile.TemporaryDirectory(prefix=".shuffle-", dir=near) as folder:
        files = [open(Path(folder) / f"{i}.bin", "w+b") for i in range(buckets)]
        try:
            for body, n, ends in days:
                for record in _records(body, ends):
                    files[rng.randrange(buckets)].write(struct.pack("<I", len(record)) + record)
                rows += n
            for bucket in files:
                bucket.seek(0)
                data = bucket.read()
                records, at = [], 0
                while at < len(data):
                    (length,) = struct.unpack_from("<I", data, at)
                    records.append(data[at + 4 : at + 4 + length])
                    at += 4 + length
                rng.shuffle(records)
                chunk = b"".join(records)
                out.write(chunk)
                size += len(chunk)
        finally:
            for bucket in files:
                bucket.close()
    return rows, size


if __name__ == "__main__":
    raise SystemExit(main())
