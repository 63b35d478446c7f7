"""Does one report cost the same in year five as on day one? Whole `ingest import` commands.

Two benchmarks (issue 25), every figure a cold command timed by this parent (fork to
exit; CPU and peak RSS from ``wait4``, :func:`bench.run.time_command`):

``one``: a 2,000-row daily report (``make_report.py --rows 2000 --days 1``, a new day each
round) imported into an **empty** archive, and into a bot that already holds ``--rows``
(10 million) rows. The big archive is written directly in the project's layout and schema
(narrow rows: ``id``, ``timestamp``, provenance; the other columns null), one file per day
with the simulator's ids (``day.toordinal() * 10000 + n``, growing with time), and committed
to the Delta table as the project commits (``ensure_table``, ``add_action`` statistics from
the footers, one commit). Rounds alternate empty / big; the big archive keeps growing by a
report a round. Goal: big / empty <= 1.5 in wall, peak RSS <= 512 MiB.

``daily``: ``--bots`` x ``--days`` daily reports of ``--report-rows`` rows (simulator rows),
imported ``--per-command`` days per command, bot after bot, and, command by command in the
same run, the same reports appended by a plain ``deltalake.write_deltalake`` per report
(``python -c``: polars ``read_csv``, UTC date, append partitioned by bot and date) to a
table of its own. Per report = command wall / reports in it. Goal: the last 60 reports cost
at most 1.25x the first 60, per report.

Example::

    .venv/bin/python bench/scale.py one --rows 10000000 --repeat 3 --json /tmp/one.json
    .venv/bin/python bench/scale.py daily --json /tmp/daily.json

No timing is asserted anywhere: these are figures to read, not tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import time_command  # noqa: E402 - after the sys.path line above

BOT = "bench-bot"
PLAIN_APPEND = (
    "import sys, polars as pl; from deltalake import write_deltalake\n"
    "table, bot = sys.argv[1], sys.argv[2]\n"
    "stamp = pl.col('timestamp').str.to_datetime(time_zone='UTC', time_unit='us')\n"
    "for path in sys.argv[3:]:\n"
    "    frame = pl.read_csv(path, infer_schema=False).with_columns(\n"
    "        stamp.alias('timestamp'), stamp.dt.date().alias('date'), pl.lit(bot).alias('bot_id'))\n"
    "    write_deltalake(table, frame.to_arrow(), mode='append', partition_by=['bot_id', 'date'])\n"
)


# --------------------------------------------------------------------------- one report


def build_big_archive(archive: Path, rows: int, first: date, per_day: int = 10_000) -> date:
    """Write ``rows`` narrow rows of :data:`BOT` into ``archive``'s messages table, one file
    per day from ``first`` (``per_day`` rows each), committed in one Delta commit as the
    project commits its files. Returns the day after the last."""
    keys = build_narrow_archive(archive, BOT, rows, first, per_day, tag="bench-big", id_step=10_000)
    return first + timedelta(days=len(keys))


def build_narrow_archive(
    archive: Path,
    bot: str,
    rows: int,
    first: date,
    per_day: int,
    *,
    tag: str,
    id_step: int,
    shape: Callable[[int, Any], Any] | None = None,
) -> list[tuple[str, int, str]]:
    """``rows`` narrow rows of ``bot`` in the project's layout and schema, one file a day from
    ``first`` (``per_day`` rows each: ids ``day.toordinal() * id_step + n``, growing with time,
    one a second from midnight; the other columns null), committed in one Delta commit as
    the project commits its files (``ensure_table``, ``add_action`` statistics). ``shape(n,
    frame)`` may add or change columns of day ``n``'s frame. Returns (key, rows, day) a file."""
    import polars as pl

    from ingest.archive.delta import add_action, app_id, commit_actions, ensure_table
    from ingest.archive.layout import data_key
    from ingest.archive.storage import LocalStorage
    from ingest.parse.arrowrows import FILE_SCHEMA
    from ingest.parse.schema import DATASET, file_schema

    storage = LocalStorage(archive)
    schema = file_schema()
    keys: list[tuple[str, int, str]] = []
    for n in range(-(-rows // per_day)):
        day = first + timedelta(days=n)
        count = min(per_day, rows - n * per_day)
        sha = hashlib.sha256(f"{tag}-{day}".encode()).hexdigest()
        start = datetime.combine(day, time(), UTC)
        frame = pl.DataFrame(
            {
                "id": pl.int_range(0, count, eager=True, dtype=pl.Int64) + day.toordinal() * id_step,
                "timestamp": pl.datetime_range(
                    start,
                    start + timedelta(seconds=count - 1),
                    "1s",
                    eager=True,
                    time_unit="us",
                    time_zone="UTC",
                ),
                "source_sha256": pl.repeat(sha, count, eager=True),
                "source_kind": pl.repeat("csv", count, eager=True),
            }
        )
        if shape is not None:
            frame = shape(n, frame)
        frame = frame.with_columns(
            [pl.lit(None, dtype).alias(name) for name, dtype in schema.items() if name not in frame.columns]
        ).select(list(schema))
        key = data_key(bot, day, sha, DATASET)
        (archive / key).parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(archive / key, compression="zstd", statistics=True)
        keys.append((key, count, str(day)))
    table = ensure_table(storage, DATASET, FILE_SCHEMA)
    actions = [add_action(storage, DATASET, key, count, bot_id=bot, day=day) for key, count, day in keys]
    commit_actions(storage, DATASET, table, list(actions), app=app_id(tag), metadata={})
    return keys


def make_day_report(day: date, rows: int, path: Path) -> Path:
    """A one-day report of ``rows`` simulator rows (bench/make_report.py)."""
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "make_report.py"), "--rows", str(rows), "--days", "1"]
        + ["--start", day.isoformat(), "--out", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return path


def import_command(
    archive: Path, state: Path, files: list[Path], bot: str
) -> tuple[list[str], dict[str, str]]:
    env = {"INGEST_OUTPUT__ROOT": str(archive), "INGEST_STATE__PATH": str(state)}
    return [sys.executable, "-m", "ingest", "import", *map(str, files), "--bot", bot], env


def bench_one(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    big = tmp / "big"
    print(f"building the big archive: {args.rows:,} rows ...", flush=True)
    next_day = build_big_archive(big / "archive", args.rows, date(2022, 1, 1))
    runs: list[dict[str, Any]] = []
    codes = [ROOT, *args.baseline]
    reports: dict[tuple[int, Path], Path] = {}
    for n in range(args.repeat):
        for code in codes:
            day = next_day + timedelta(days=len(reports))
            reports[(n, code)] = make_day_report(day, args.report_rows, tmp / f"day-{day}.csv")
    for n in range(args.repeat):
        for kind, code in [(k, c) for c in codes for k in ("empty", "big")]:
            where = tmp / f"{kind}-{n}-{code.name}"
            where.mkdir()
            archive = big / "archive" if kind == "big" else where / "archive"
            # The big archive's own day: each run adds a new one (the same report twice would be duplicates).
            report = reports[(n, code)] if kind == "big" else reports[(n, codes[0])]
            command, env = import_command(archive, where / "state.sqlite", [report], BOT)
            label = kind if code == ROOT else f"{kind} ({code.name})"
            facts = {"kind": label, "round": n, **time_command(command, env, where, code)}
            runs.append(facts)
            print(json.dumps(facts), flush=True)
    return {"rows": args.rows, "report_rows": args.report_rows, "runs": runs}


def summarise_one(result: dict[str, Any]) -> str:
    runs = result["runs"]
    kinds = list(dict.fromkeys(r["kind"] for r in runs))
    by = {kind: [r for r in runs if r["kind"] == kind and "wall" in r] for kind in kinds}
    ratio_rows = []
    for kind in kinds:
        if not kind.startswith("big"):
            continue
        empty, full = by[kind.replace("big", "empty")], by[kind]
        walls = [b["wall"] / e["wall"] for e, b in zip(empty, full, strict=False)]
        cpus = [b["cpu"] / e["cpu"] for e, b in zip(empty, full, strict=False)]
        code = kind.removeprefix("big")
        ratio_rows.append(
            f"| **big / empty{code}, round by round** | wall {fmt_ratios(walls)}; CPU {fmt_ratios(cpus)} |"
        )

    def cell(kind: str) -> str:
        rows = by[kind]
        if not rows:
            return "failed"
        return (
            f"{statistics.median(r['wall'] for r in rows):.2f} s wall, "
            f"{statistics.median(r['cpu'] for r in rows):.2f} CPU s, "
            f"{max(r['peak_rss_mib'] for r in rows):.0f} MiB peak (medians; RSS the largest)"
        )

    big = f"{result['rows']:,} rows"
    return "\n".join(
        [
            f"| archive | one {result['report_rows']:,}-row report, `ingest import` (cold) |",
            "|---|---:|",
            *[f"| {kind.replace('big', big)} | {cell(kind)} |" for kind in kinds],
            *ratio_rows,
        ]
    )


# --------------------------------------------------------------------------- daily reports


def make_daily_reports(
    folder: Path, bots: list[str], first: date, days: int, rows: int
) -> dict[str, list[Path]]:
    """One CSV per bot and day, ``rows`` simulator rows each."""
    from ingest.simulator import generate_messages, rows_to_csv

    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[Path]] = {}
    for n, bot in enumerate(bots):
        for k in range(days):
            day = first + timedelta(days=k)
            path = folder / f"{bot}-{day}.csv"
            messages = generate_messages(bot, day, day, seed=n, min_per_day=rows, max_per_day=rows)
            path.write_bytes(rows_to_csv(messages))
            made.setdefault(bot, []).append(path)
    return made


def bench_daily(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    bots = [f"bench-bot-{n + 1}" for n in range(args.bots)]
    print(f"writing {args.bots} x {args.days} reports of {args.report_rows} rows ...", flush=True)
    reports = make_daily_reports(tmp / "reports", bots, date(2024, 1, 1), args.days, args.report_rows)
    ingest, plain = tmp / "ingest", tmp / "plain"
    ingest.mkdir()
    plain.mkdir()
    runs: list[dict[str, Any]] = []
    for start in range(0, args.days, args.per_command):
        for bot in bots:
            files = reports[bot][start : start + args.per_command]
            command, env = import_command(ingest / "archive", ingest / "state.sqlite", files, bot)
            runs.append(
                {"who": "ingest", "bot": bot, "reports": len(files), **time_command(command, env, ingest)}
            )
            command = [sys.executable, "-c", PLAIN_APPEND, str(plain / "messages"), bot, *map(str, files)]
            runs.append(
                {"who": "plain", "bot": bot, "reports": len(files), **time_command(command, {}, plain)}
            )
            print(json.dumps(runs[-2]), json.dumps(runs[-1]), flush=True)
    return {
        "bots": args.bots,
        "days": args.days,
        "report_rows": args.report_rows,
        "per_command": args.per_command,
        "runs": runs,
        "rows": {
            "ingest": count_rows(ingest / "archive" / "messages"),
            "plain": count_rows(plain / "messages"),
        },
    }


def count_rows(table: Path) -> int:
    import pyarrow as pa
    from deltalake import DeltaTable

    actions = pa.RecordBatchReader.from_stream(
        DeltaTable(str(table)).get_add_actions(flatten=True)
    ).read_all()
    return int(sum(actions.column("num_records").to_pylist()))


def per_report(
    runs: list[dict[str, Any]], who: str, window: int, measure: str = "wall"
) -> tuple[float, float, list[float]]:
    """Seconds (``wall`` or ``cpu``) per report over the first and the last ``window``
    reports, and each command's per-report figure (in order)."""
    mine = [r for r in runs if r["who"] == who]
    each = [r[measure] / r["reports"] for r in mine if measure in r]

    def over(chosen: list[dict[str, Any]]) -> float:
        taken, seconds = 0, 0.0
        for r in chosen:
            if taken >= window:
                break
            seconds += r[measure]
            taken += r["reports"]
        return seconds / taken

    return over(mine), over(mine[::-1]), each


def summarise_daily(result: dict[str, Any], window: int = 60) -> str:
    runs = result["runs"]
    lines = [
        f"| {result['bots']} bots x {result['days']} days, {result['report_rows']}-row reports, "
        f"{result['per_command']} days a command | first {window} reports, s per report | "
        f"last {window} | **last / first** | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for measure in ("wall", "cpu"):
        for who, label in (
            ("ingest", "`ingest import`"),
            ("plain", "plain `write_deltalake` append per report"),
        ):
            first, last, _ = per_report(runs, who, window, measure)
            peak = max(r["peak_rss_mib"] for r in runs if r["who"] == who)
            lines.append(
                f"| {label}, {measure} | {first:.3f} | {last:.3f} | **{last / first:.2f}** | {peak:.0f} MiB |"
            )
        first_i, last_i, _ = per_report(runs, "ingest", window, measure)
        first_p, last_p, _ = per_report(runs, "plain", window, measure)
        lines.append(
            f"| ingest / plain, {measure} per report | {first_i / first_p:.2f} | {last_i / last_p:.2f} | | |"
        )
    lines.append(f"\nRows in each table at the end: {result['rows']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- start-up


def import_seconds(stderr: str) -> float:
    """Total import time from ``python -X importtime``: the top-level imports' cumulative
    microseconds added up (nested ones are inside them)."""
    total = 0
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if not name.startswith("  ") and cumulative.strip().isdigit():
                total += int(cumulative)
    return total / 1e6


def bench_startup(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``ingest import`` of a five-row file into a fresh archive, cold, alternating codes:
    whole command (wall, CPU, RSS), and its imports alone (``-X importtime``)."""
    tiny = make_day_report(date(2024, 5, 1), 5, tmp / "tiny.csv")
    codes = [ROOT, *args.baseline]
    runs: list[dict[str, Any]] = []
    floor = tmp / "floor"
    floor.mkdir()
    for n in range(args.repeat):
        runs.append({"code": "python -c pass", **time_command([sys.executable, "-c", "pass"], {}, floor)})
        for code in codes:
            where = tmp / f"{n}-{code.name}"
            where.mkdir()
            command, env = import_command(where / "archive", where / "state.sqlite", [tiny], BOT)
            facts = {"code": code.name if code != ROOT else "this", **time_command(command, env, where, code)}
            again = tmp / f"{n}-{code.name}-importtime"
            again.mkdir()
            command, env = import_command(again / "archive", again / "state.sqlite", [tiny], BOT)
            time_command([command[0], "-X", "importtime", *command[1:]], env, again, code)
            facts["imports"] = import_seconds((again / "stderr.txt").read_text())
            runs.append(facts)
            print(json.dumps(facts), flush=True)
    return {"runs": runs}


def summarise_startup(result: dict[str, Any]) -> str:
    runs = result["runs"]
    lines = [
        "| code | `ingest import` of a 5-row file: wall, CPU, peak RSS (medians) "
        "| of which imports (`-X importtime`) |",
        "|---|---:|---:|",
    ]
    for code in dict.fromkeys(r["code"] for r in runs):
        mine = [r for r in runs if r["code"] == code and "wall" in r]
        imports = [r["imports"] for r in mine if "imports" in r]
        lines.append(
            f"| {code} | {statistics.median(r['wall'] for r in mine):.2f} s, "
            f"{statistics.median(r['cpu'] for r in mine):.2f} CPU s, "
            f"{statistics.median(r['peak_rss_mib'] for r in mine):.0f} MiB | "
            + (f"{statistics.median(imports):.2f} s |" if imports else "- |")
        )
    return "\n".join(lines)


SUMMARIES = {
    "one": lambda r: summarise_one(r),
    "daily": lambda r: summarise_daily(r),
    "startup": lambda r: summarise_startup(r),
}


# --------------------------------------------------------------------------- main


def fmt_ratios(values: list[float]) -> str:
    if not values:
        return "-"
    return f"**{statistics.median(values):.2f}** ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["one", "daily", "startup"])
    parser.add_argument("--rows", type=int, default=10_000_000, help="one: rows the big archive holds")
    parser.add_argument("--report-rows", type=int, help="rows per report (one: 2000, daily: 400)")
    parser.add_argument("--repeat", type=int, default=3, help="one, startup: rounds")
    parser.add_argument("--bots", type=int, default=2, help="daily: bots")
    parser.add_argument("--days", type=int, default=360, help="daily: days per bot")
    parser.add_argument("--per-command", type=int, default=10, help="daily: days a command imports")
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="one, startup: also run this copy of the project (e.g. a `git archive` of an older commit)",
    )
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path, help="save every run")
    parser.add_argument("--render", type=Path, help="print the table of a saved --json file again")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        print(SUMMARIES[args.which](saved))
        return 0
    for code in args.baseline:
        if not (code / "ingest" / "__init__.py").is_file():
            parser.error(f"--baseline {code}: no copy of the project there (no ingest/__init__.py)")
    args.report_rows = args.report_rows or (2000 if args.which == "one" else 400)
    tmp = Path(tempfile.mkdtemp(prefix=f"scale-{args.which}-", dir=args.tmp))
    try:
        bench = {"one": bench_one, "daily": bench_daily, "startup": bench_startup}[args.which]
        result = bench(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(SUMMARIES[args.which](result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
