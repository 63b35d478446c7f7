"""Generate a large, realistic, deterministic Message Data CSV for the benchmarks.

The rows come from :func:`ingest.simulator.data.generate_messages` (the same generator the
tests and the demo use) and are rendered by :func:`ingest.simulator.data.rows_to_csv`, so
the file has the emailed export's shape: UTF-8, CRLF, minimal quoting, JSON cells, quoted
newlines, non-ASCII text. Days are generated one at a time (in parallel worker
processes, written in day order) and streamed to the file: memory stays at a few days'
rows whatever the target size.

Same arguments -> byte-identical file (the job count does not change the output).

Example::

    .venv/bin/python bench/make_report.py --size 250MB --out /tmp/r250.csv
    .venv/bin/python bench/make_report.py --rows 100000 --days 30 --seed 7 --out /tmp/r.csv

A sidecar ``<out>.meta.json`` records rows, bytes, the date range and the arguments;
``bench/run.py`` reads it for the row count and the window.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.simulator.data import ID_STRIDE, generate_messages, rows_to_csv  # noqa: E402

BOT_ID = "bench-bot"
# generate_messages numbers ids day.toordinal() * ID_STRIDE + index, so at most
# ID_STRIDE - 1 rows per call. Denser days are generated in several chunks (different
# seeds), merged by timestamp and renumbered with this wider stride: ids stay unique
# in the file and increasing with time.
WIDE_STRIDE = 10_000_000
CHUNK = 5_000

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


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


def render_day(job: tuple[date, int, int]) -> tuple[bytes, int]:
    """The CSV body (no header) of one day's ``count`` rows, and the row count."""
    day, count, seed = job
    if count == 0:
        return b"", 0
    if count < ID_STRIDE:
        rows = generate_messages(BOT_ID, day, day, seed=seed, min_per_day=count, max_per_day=count)
    else:
        rows: list[dict[str, Any]] = []
        for k, part in enumerate(day_counts(count, -(-count // CHUNK))):
            rows.extend(generate_messages(BOT_ID, day, day, seed=seed * 1000 + k,
                                          min_per_day=part, max_per_day=part))
        rows.sort(key=lambda row: row["timestamp"])  # fixed-width ISO text: sorts as time
        base = day.toordinal() * WIDE_STRIDE
        for index, row in enumerate(rows):
            row["id"] = base + index
    body = rows_to_csv(rows)
    return body[body.index(b"\r\n") + 2:], len(rows)  # drop the header line


def bytes_per_row(start: date, days: int, seed: int) -> float:
    """Average rendered row size, from a sample of the days (calibrates --size)."""
    sample_days = [start + timedelta(days=i * days // 4) for i in range(4)]
    total = rows = 0
    for day in sample_days:
        body, n = render_day((day, 1500, seed))
        total, rows = total + len(body), rows + n
    return total / rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--size", type=parse_size, help="target file size, e.g. 250MB, 1GB")
    target.add_argument("--rows", type=int, help="exact number of data rows")
    parser.add_argument("--days", type=int, default=90, help="days covered (default 90)")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 1),
                        help="first day (default 2024-01-01)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bom", action="store_true", help="prefix a UTF-8 byte-order mark")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="worker processes (output does not depend on it)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")

    started = time.perf_counter()
    if args.rows is not None:
        total_rows = args.rows
    else:
        total_rows = max(1, round(args.size / bytes_per_row(args.start, args.days, args.seed)))
    counts = day_counts(total_rows, args.days)
    jobs = [(args.start + timedelta(days=i), n, args.seed) for i, n in enumerate(counts)]
    header = rows_to_csv([])
    if args.bom:
        header = b"\xef\xbb\xbf" + header

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    written = rows = 0
    with tmp.open("wb") as out, multiprocessing.Pool(max(1, args.jobs)) as pool:
        out.write(header)
        written += len(header)
        for body, n in pool.imap(render_day, jobs, chunksize=1):  # imap keeps day order
            out.write(body)
            written += len(body)
            rows += n
    os.replace(tmp, args.out)
    end = args.start + timedelta(days=args.days - 1)
    meta = {"path": str(args.out), "rows": rows, "bytes": written, "bot_id": BOT_ID,
            "start": args.start.isoformat(), "end": end.isoformat(), "days": args.days,
            "seed": args.seed, "bom": args.bom}
    Path(f"{args.out}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    elapsed = time.perf_counter() - started
    print(f"{args.out}: {rows} rows, {written} bytes ({written / 1e6:.1f} MB), "
          f"{args.start}..{end}, seed {args.seed}, in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
