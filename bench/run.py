"""Benchmark this project's CSV -> Parquet archive against DuckDB and polars, as users run them.

By default (``ingest_cli,duckdb_cli,polars_cli,project``) every contender is a whole
command, started cold in a fresh process, timed from fork to exit by this (small)
parent, with its peak RSS and CPU from ``wait4``:

* ``ingest_cli``  - ``ingest import FILE --bot bench-bot`` with a fresh archive and state
* ``duckdb_cli``  - DuckDB's ``COPY (SELECT *, CAST(CAST(timestamp AS TIMESTAMPTZ) AT TIME
  ZONE 'UTC' AS DATE) AS date FROM read_csv(FILE)) TO DIR (FORMAT parquet, COMPRESSION
  zstd, PARTITION_BY (date))`` in a fresh ``python -c``
* ``polars_cli``  - ``pl.read_csv(FILE, infer_schema=False)`` in a fresh ``python -c``:
  the parse floor, nothing written
* ``sink_cli``    - the least work that makes DuckDB's output, in the fastest engine here:
  polars ``scan_csv -> UTC date -> sink_parquet(PartitionBy("date"))``, streaming, in a
  fresh ``python -c``; no validation, no hashing, no raw copy, no commit. ``DuckDB / sink``
  bounds what any pipeline doing more can reach on this machine (``--only`` adds it)
* ``project``     - the old in-process figure (``stage_csv`` + commit, timed after the
  imports), kept as a second column, labelled "(in)"

Within a round the contenders run one after the other on the same file; rounds repeat
(``--repeat``). It prints each contender's fastest run, ``DuckDB / ingest`` (the goal is
>= 1.5) and ``ingest / polars`` (the goal is <= 2.5), fastest and round by round.
``--markdown FILE`` appends a table row per file; ``--json FILE`` keeps every run;
``--render`` prints the rows of saved JSON files again.

Example::

    .venv/bin/python bench/make_report.py --size 250MB --order random --tz +02:00 --bom --out /tmp/r.csv
    .venv/bin/python bench/run.py /tmp/r.csv --repeat 3 --markdown /tmp/table.md
    .venv/bin/python bench/run.py /tmp/r.csv --only floor,polars_read,project,duckdb,pandas  # the older set

No timing is asserted anywhere: these are figures to read, not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BOT_ID = "bench-bot"
RESULT_TAG = "BENCH_RESULT "

DEFAULT = ("ingest_cli", "duckdb_cli", "polars_cli", "project")
EXTRA = (
    "floor",
    "polars_read",
    "duckdb",
    "pandas",
    "project_inmemory",
    "duckdb_typed",
    "pandas_c",
    "polars_sink",
    "pyarrow_dataset",
)
#: Contenders timed as whole commands (cold: interpreter start and imports included),
#: as a user runs them; the others are timed inside a child, after its imports.
COMMANDS = ("ingest_cli", "duckdb_cli", "polars_cli", "sink_cli")
DESCRIPTIONS = {
    "ingest_cli": "`ingest import FILE --bot bench-bot` as a subprocess: fresh archive and state, cold",
    "duckdb_cli": "COPY (SELECT *, CAST(CAST(timestamp AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS DATE) AS date"
    " FROM read_csv(FILE)) TO DIR (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date))"
    " in a fresh python process (import duckdb included)",
    "polars_cli": "pl.read_csv(FILE, infer_schema=False) in a fresh python process: the parse floor",
    "sink_cli": "pl.scan_csv(FILE) -> UTC date -> sink_parquet(pl.PartitionBy('date')) in a fresh python"
    " process: the least work that makes DuckDB's output (no validation, hash, raw copy or commit)",
    "floor": "read the file in 8 MiB blocks, discard",
    "polars_read": "pl.read_csv, every column as text; nothing written",
    "project": "ingest.archive.stream.stage_csv + commit: streaming parse, validate, write by date",
    "project_inmemory": (
        "ingest.parse.parser.read_csv_text + parse_frame + ingest.archive.writer.save_report "
        "(whole file in memory)"
    ),
    "duckdb": "COPY read_csv(all_varchar) + timestamp::TIMESTAMPTZ -> Parquet PARTITION_BY date",
    "pandas": "pyarrow.csv.read_csv (= pd.read_csv engine=pyarrow, + newlines_in_values) -> pandas"
    " -> to_datetime -> to_parquet(partition_cols=['date'])",
    "pandas_c": "as pandas, but pd.read_csv(dtype=str) with the default C engine",
    "duckdb_typed": "as duckdb, plus every column cast to the project's schema types",
    "polars_sink": "scan_csv(text) -> sink_parquet(pl.PartitionBy('date')), streaming",
    "pyarrow_dataset": "pyarrow.csv.open_csv batches -> pyarrow.dataset.write_dataset by date",
}


# --------------------------------------------------------------------------- children
# Each returns a dict of facts (rows seen, sub-timings); the harness times the call.


def run_floor(path: Path, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    buffer = bytearray(8 << 20)
    view = memoryview(buffer)
    total = 0
    with path.open("rb", buffering=0) as stream:
        while n := stream.readinto(view):
            total += n
    return {"bytes_read": total}


def run_polars_read(path: Path, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    import polars as pl

    frame = pl.read_csv(path, infer_schema=False)
    return {"rows": frame.height}


def run_project(path: Path, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    # What `ingest import FILE.csv` does (ingest.archive.stream): stage the file (hash and raw copy
    # in a thread, pyarrow parse in a thread, validate, per-date Parquet in a thread),
    # then commit (link raw, data, quarantine into place; manifest last).
    from ingest.archive.stream import stage_csv

    steps: dict[str, float] = {}
    t = time.perf_counter()
    staged = stage_csv(out, path, bot_id=BOT_ID, window=ctx["window"])
    steps["stage"] = time.perf_counter() - t
    t = time.perf_counter()
    result = staged.commit(raw_name=path.name, provenance={"source": "bench"})
    steps["commit"] = time.perf_counter() - t
    return _saved(result, steps)


def _saved(result: Any, steps: dict[str, float]) -> dict[str, Any]:
    """The facts of a project contender: what its commit counted, and its steps' seconds."""
    return {
        "rows": result.rows_read,
        "written": result.rows_written,
        "duplicates": result.rows_duplicate,
        "rejected": result.rows_rejected,
        "files": len(result.files),
        "steps": steps,
        "dataset": "messages",
    }


def run_project_inmemory(path: Path, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    # The in-memory path (emails, small files): read_bytes, sha256, parse_csv, save_report.
    from ingest.archive.storage import sha256_bytes
    from ingest.archive.writer import save_report
    from ingest.parse.parser import parse_frame, read_csv_text

    steps: dict[str, float] = {}
    t = time.perf_counter()
    data = path.read_bytes()
    steps["read"] = time.perf_counter() - t
    t = time.perf_counter()
    sha = sha256_bytes(data)
    steps["sha256"] = time.perf_counter() - t
    t = time.perf_counter()
    parsed = parse_frame(
        read_csv_text(data), bot_id=BOT_ID, source_sha256=sha, window=ctx["window"], source_kind="csv"
    )
    steps["parse_csv"] = time.perf_counter() - t
    t = time.perf_counter()
    result = save_report(
        out,
        parsed,
        bot_id=BOT_ID,
        source_sha256=sha,
        raw=data,
        raw_name=path.name,
        provenance={"source": "bench"},
    )
    steps["save_report"] = time.perf_counter() - t
    return _saved(result, steps)


def _duckdb_copy(path: Path, out: Path, select: str) -> int:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    source = str(path).replace("'", "''")
    target = str(out / "messages").replace("'", "''")
    (written,) = con.execute(
        f"COPY (SELECT {select} FROM read_csv('{source}', header = true, all_varchar = true)) "
        f"TO '{target}' (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)"
    ).fetchone()
    con.close()
    return int(written)


def run_duckdb(path: Path, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    ts = 'CAST("timestamp" AS TIMESTAMPTZ)'
    rows = _duckdb_copy(path, out, f'* REPLACE ({ts} AS "timestamp"), CAST({ts} AS DATE) AS date')
    return {"rows": rows, "written": rows, "dataset": "messages"}


def run_duckdb_typed(path: Path, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    from ingest.parse.schema import MESSAGE_COLUMNS

    sql_type = {"int": "BIGINT", "bool": "BOOLEAN", "timestamp": "TIMESTAMPTZ"}
    columns = []
    for column in MESSAGE_COLUMNS:
        cell = f"NULLIF(\"{column.name}\", '')"
        if column.kind in sql_type:
            cell = f"CAST({cell} AS {sql_type[column.kind]})"
        columns.append(f'{cell} AS "{column.name}"')
    columns.append("CAST(CAST(NULLIF(\"timestamp\", '') AS TIMESTAMPTZ) AS DATE) AS date")
    rows = _duckdb_copy(path, out, ", ".join(columns))
    return {"rows": rows, "written": rows, "dataset": "messages"}


def run_pandas(path: Path, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    # pd.read_csv(path, dtype=str, engine="pyarrow") cannot read this file: pandas does not
    # pass pyarrow's newlines_in_values, so a quoted newline fails with "Expected 22
    # columns, got 20". This is what that engine does, plus that one option.
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20)).schema.names
    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
    )
    frame = table.to_pandas()
    del table
    return _pandas_write(pd, frame, out)


def run_pandas_c(path: Path, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # the default C engine
    return _pandas_write(pd, frame, out)


def _pandas_write(pd: Any, frame: Any, out: Path) -> dict[str, Any]:
    stamps = pd.to_datetime(frame["timestamp"], format="ISO8601", utc=True)
    frame["timestamp"] = stamps
    frame["date"] = stamps.dt.date
    frame.to_parquet(
        out / "messages", engine="pyarrow", partition_cols=["date"], compression="zstd", index=False
    )
    return {"rows": len(frame), "written": len(frame), "dataset": "messages"}


def run_polars_sink(path: Path, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    import polars as pl

    stamps = pl.col("timestamp").str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC")
    (
        pl.scan_csv(path, infer_schema=False)
        .with_columns(stamps.alias("timestamp"))
        .with_columns(pl.col("timestamp").dt.date().alias("date"))
        .sink_parquet(
            pl.PartitionBy(out / "messages", key="date", include_key=False), compression="zstd", mkdir=True
        )
    )
    return {"dataset": "messages"}


def run_pyarrow_dataset(path: Path, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    # The header alone, through the CSV reader (names may be quoted).
    names = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20)).schema.names
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=16 << 20),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=True
        ),
    )
    rows = 0

    def batches():
        nonlocal rows
        for batch in reader:
            stamps = pc.cast(batch.column("timestamp"), pa.timestamp("us", tz="UTC"))
            day = pc.cast(stamps, pa.date32())
            arrays = [stamps if n == "timestamp" else batch.column(n) for n in names]
            table = pa.RecordBatch.from_arrays(arrays + [day], names=[*names, "date"])
            rows += table.num_rows
            yield table

    schema = pa.schema(
        [(n, pa.timestamp("us", tz="UTC") if n == "timestamp" else pa.string()) for n in names]
        + [("date", pa.date32())]
    )
    ds.write_dataset(
        batches(),
        out / "messages",
        schema=schema,
        format="parquet",
        partitioning=["date"],
        partitioning_flavor="hive",
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
        max_open_files=1024,
        existing_data_behavior="overwrite_or_ignore",
    )
    return {"rows": rows, "written": rows, "dataset": "messages"}


CONTENDERS: dict[str, Callable[[Path, Path, dict[str, Any]], dict[str, Any]]] = {
    "floor": run_floor,
    "polars_read": run_polars_read,
    "project": run_project,
    "project_inmemory": run_project_inmemory,
    "duckdb": run_duckdb,
    "pandas": run_pandas,
    "pandas_c": run_pandas_c,
    "duckdb_typed": run_duckdb_typed,
    "polars_sink": run_polars_sink,
    "pyarrow_dataset": run_pyarrow_dataset,
}
# What each child imports before the clock starts (import time is not the work).
PRELOAD = {
    "polars_read": ["polars"],
    "project": ["ingest.archive.stream"],
    "project_inmemory": ["ingest.parse.parser", "ingest.archive.writer"],
    "duckdb": ["duckdb"],
    "duckdb_typed": ["duckdb", "ingest.parse.schema"],
    "pandas": ["pandas", "pyarrow.csv", "pyarrow.parquet"],
    "pandas_c": ["pandas", "pyarrow.parquet"],
    "polars_sink": ["polars"],
    "pyarrow_dataset": ["pyarrow.csv", "pyarrow.dataset"],
}


def child(name: str, path: Path, out: Path, window: tuple[date, date]) -> int:
    import importlib
    import resource

    for module in PRELOAD.get(name, []):
        importlib.import_module(module)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    facts = CONTENDERS[name](path, out, {"window": window})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    facts.update(wall=wall, cpu=cpu, rss_before_mib=before.ru_maxrss / 1024, vmhwm_mib=_vmhwm_mib())
    print(RESULT_TAG + json.dumps(facts), flush=True)
    return 0


def _vmhwm_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- commands

DUCKDB_COPY = (
    'import duckdb, sys; duckdb.sql("COPY (SELECT *, CAST(CAST(timestamp AS TIMESTAMPTZ) '
    "AT TIME ZONE 'UTC' AS DATE) AS date FROM read_csv('\" + sys.argv[1] + \"')) TO '\""
    ' + sys.argv[2] + "\' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date))")'
)
POLARS_READ = "import polars as pl, sys; print(pl.read_csv(sys.argv[1], infer_schema=False).height)"
POLARS_SINK = (
    "import polars as pl, sys; stamp = pl.col('timestamp').str.to_datetime(time_zone='UTC', time_unit='us');"
    " pl.scan_csv(sys.argv[1], infer_schema=False).with_columns(stamp.dt.date().alias('date'))"
    ".sink_parquet(pl.PartitionBy(sys.argv[2], key='date'), compression='zstd', mkdir=True)"
)


def command_for(name: str, path: Path, out: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a whole-process contender."""
    if name == "ingest_cli":
        env = {"INGEST_OUTPUT__ROOT": str(out / "archive"), "INGEST_STATE__PATH": str(out / "state.sqlite")}
        return [sys.executable, "-m", "ingest", "import", str(path), "--bot", BOT_ID], env
    if name == "duckdb_cli":
        return [sys.executable, "-c", DUCKDB_COPY, str(path), str(out / "messages")], {}
    if name == "polars_cli":
        return [sys.executable, "-c", POLARS_READ, str(path)], {}
    if name == "sink_cli":
        return [sys.executable, "-c", POLARS_SINK, str(path), str(out / "messages")], {}
    raise ValueError(name)


def spawn_command(name: str, path: Path, out: Path) -> dict[str, Any]:
    """Run a whole command, cold; wall from fork to exit, CPU and peak RSS from wait4."""
    command, extra = command_for(name, path, out)
    facts: dict[str, Any] = {
        "name": name,
        **time_command(command, extra, out),
        "dataset": "archive/messages" if name == "ingest_cli" else "messages",
    }
    if name == "polars_cli":
        del facts["dataset"]
    return facts


def time_command(command: list[str], extra: dict[str, str], out: Path, code: Path = ROOT) -> dict[str, Any]:
    """Run ``command`` cold in ``out`` (no INGEST_* variable but ``extra``, the project's
    ``code`` first on PYTHONPATH): ``wall`` from fork to exit, ``cpu`` (user + sys) and
    ``peak_rss_mib`` from wait4; ``error`` (and no wall) when it failed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(extra, PYTHONPATH=str(code) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = out / "stderr.txt"
    with log.open("wb") as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env=env, cwd=out)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    stderr = log.read_bytes()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    facts: dict[str, Any] = {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }
    if proc.returncode != 0:
        facts["error"] = f"exit {proc.returncode}: {stderr.decode(errors='replace').strip()[-300:]}"
        del facts["wall"]
    return facts


# --------------------------------------------------------------------------- parent


def spawn(name: str, path: Path, out: Path, window: tuple[date, date]) -> dict[str, Any]:
    """Run one contender in a fresh interpreter; its own rusage comes from wait4."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        name,
        str(path),
        "--out",
        str(out),
        "--window",
        f"{window[0]}:{window[1]}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    stdout = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    total = time.perf_counter() - started
    facts: dict[str, Any] = {}
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith(RESULT_TAG):
            facts = json.loads(line[len(RESULT_TAG) :])
    if proc.returncode != 0 or not facts:
        return {
            "name": name,
            "error": f"exit {proc.returncode}",
            "process_wall": total,
            "peak_rss_mib": usage.ru_maxrss / 1024,
        }
    return {
        "name": name,
        **facts,
        "process_wall": total,
        "process_cpu": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }


def count_parquet_rows(folder: Path) -> tuple[int, int]:
    """(rows, files) over every Parquet file under ``folder``, from the footers.

    Counted in a throwaway child: importing pyarrow here would grow this process, and a
    vfork()ed child's ru_maxrss starts at its parent's high-water mark.
    """
    script = (
        "import sys, json, pathlib, pyarrow.parquet as pq;"
        "fs = [p for p in pathlib.Path(sys.argv[1]).rglob('*.parquet')"
        " if not p.name.startswith('.')];"
        "print(json.dumps([sum(pq.ParquetFile(p).metadata.num_rows for p in fs), len(fs)]))"
    )
    rows, files = json.loads(subprocess.check_output([sys.executable, "-c", script, str(folder)]))
    return rows, files


def file_meta(path: Path) -> dict[str, Any]:
    """Rows and date range, from make_report's sidecar, else by reading the file."""
    sidecar = Path(f"{path}.meta.json")
    if sidecar.exists():
        meta = json.loads(sidecar.read_text())
        if meta.get("bytes") == path.stat().st_size:
            return meta
    script = (
        "import polars as pl, sys, json;"
        "f = pl.scan_csv(sys.argv[1], infer_schema=False).select("
        "pl.len().alias('rows'), pl.col('timestamp').str.slice(0, 10).min().alias('start'),"
        "pl.col('timestamp').str.slice(0, 10).max().alias('end')).collect();"
        "print(json.dumps(f.row(0, named=True)))"
    )
    found = json.loads(subprocess.check_output([sys.executable, "-c", script, str(path)], cwd=ROOT))
    return {"rows": found["rows"], "start": found["start"], "end": found["end"]}


def fmt_table(results: list[dict[str, Any]], size: int, rows: int) -> str:
    duck = _wall(results, "duckdb_cli") or _wall(results, "duckdb")
    header = (
        f"{'contender':<18}{'wall s':>8}{'CPU s':>8}{'peak MiB':>10}{'MB/s':>8}{'rows/s':>11}{'/DuckDB':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['name']:<18}  failed: {r['error']} (peak {r['peak_rss_mib']:.0f} MiB)")
            continue
        ratio = f"{r['wall'] / duck:>9.2f}" if duck else f"{'-':>9}"
        label = r["name"] + ("" if r["name"] in COMMANDS else " (in)")
        lines.append(
            f"{label:<18}{r['wall']:>8.2f}{r['cpu']:>8.2f}{r['peak_rss_mib']:>10.0f}"
            f"{size / 1e6 / r['wall']:>8.0f}{rows / r['wall']:>11,.0f}{ratio}"
        )
    return "\n".join(lines)


def _wall(results: list[dict[str, Any]], name: str) -> float | None:
    return next((r["wall"] for r in results if r["name"] == name and "wall" in r), None)


def paired_ratios(runs: list[dict[str, Any]], top: str, bottom: str) -> list[float]:
    """``top`` wall / ``bottom`` wall, round by round (the two ran minutes apart at most)."""
    by_round: dict[int, dict[str, float]] = {}
    for r in runs:
        if "wall" in r:
            by_round.setdefault(r["attempt"], {})[r["name"]] = r["wall"]
    return [w[top] / w[bottom] for w in by_round.values() if top in w and bottom in w]


def bench_file(path: Path, names: list[str], repeat: int, tmp: Path) -> dict[str, Any]:
    """Every contender ``repeat`` times on one file, interleaved; the fastest of each."""
    size = path.stat().st_size
    meta = file_meta(path)
    rows = int(meta["rows"])
    window = (date.fromisoformat(meta["start"]), date.fromisoformat(meta["end"]))
    shape = ", ".join(
        f"{k} {meta[k]}" for k in ("order", "tz", "fractions", "bom", "lf", "newline_rows") if k in meta
    )
    print(
        f"{path}: {size / 1e6:.1f} MB, {rows:,} rows, {window[0]}..{window[1]}; {shape or 'shape unknown'}; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    with path.open("rb") as stream:  # warm the page cache so the first contender is not penalised
        while stream.read(8 << 20):
            pass
    runs: list[dict[str, Any]] = []
    for attempt in range(repeat):
        for name in names:
            out = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=tmp))
            try:
                result = (
                    spawn_command(name, path, out) if name in COMMANDS else spawn(name, path, out, window)
                )
                if "dataset" in result and "error" not in result:
                    result["out_rows"], result["out_files"] = count_parquet_rows(out / result["dataset"])
            finally:
                shutil.rmtree(out, ignore_errors=True)
            result["attempt"] = attempt + 1
            runs.append(result)
            shown = f"{result['wall']:.2f} s" if "wall" in result else result["error"]
            print(
                f"  run {attempt + 1} {name:<16} {shown}, peak {result['peak_rss_mib']:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
    best: list[dict[str, Any]] = []
    for name in names:
        mine = [r for r in runs if r["name"] == name]
        ok = [r for r in mine if "wall" in r]
        best.append(min(ok, key=lambda r: r["wall"]) if ok else mine[-1])
    print()
    print(fmt_table(best, size, rows))
    print()
    for r in best:
        if r.get("steps"):
            print(f"{r['name']} steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["steps"].items()))
    for r in best:
        if "out_rows" in r:
            print(
                f"{r['name']}: {r['out_rows']:,} rows in {r['out_files']} Parquet files"
                + (
                    f" (read {r['rows']:,}, rejected {r['rejected']}, duplicates {r['duplicates']})"
                    if "rejected" in r
                    else ""
                )
            )
    by_name = {r["name"]: r for r in best}
    ours = next((n for n in ("ingest_cli", "project") if "out_rows" in by_name.get(n, {})), None)
    theirs = next((n for n in ("duckdb_cli", "duckdb") if "out_rows" in by_name.get(n, {})), None)
    if ours and theirs:
        same = by_name[ours]["out_rows"] == by_name[theirs]["out_rows"] == rows
        print(
            f"check: {ours} archive rows {by_name[ours]['out_rows']:,} "
            f"{'==' if same else '!='} {theirs} rows {by_name[theirs]['out_rows']:,} (file: {rows:,})"
            f"{'' if same else '  <-- MISMATCH'}"
        )
    ratios = {}
    for top, bottom, label in (
        ("duckdb_cli", "ingest_cli", "DuckDB / ingest"),
        ("ingest_cli", "polars_cli", "ingest / polars"),
        ("duckdb_cli", "sink_cli", "DuckDB / sink"),
    ):
        paired = paired_ratios(runs, top, bottom)
        if paired and _wall(best, top) and _wall(best, bottom):
            ratios[label] = {
                "best": _wall(best, top) / _wall(best, bottom),  # type: ignore[operator]
                "runs": paired,
            }
            print(
                f"{label}: {ratios[label]['best']:.2f} (fastest runs); round by round "
                + ", ".join(f"{x:.2f}" for x in paired)
            )
    return {
        "file": str(path),
        "bytes": size,
        "rows": rows,
        "meta": meta,
        "best": best,
        "runs": runs,
        "ratios": ratios,
    }


TABLE_HEADER = (
    "| shape | size | **ingest import** wall (CPU), peak RSS | DuckDB COPY wall (CPU), peak RSS "
    "| **DuckDB / ingest** wall, fastest (rounds) | CPU s: DuckDB / ingest, median (rounds) "
    "| polars read_csv (the parse floor) wall (CPU), peak RSS | ingest / polars wall, fastest (rounds) |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|"
)


def markdown_row(result: dict[str, Any], label: str) -> str:
    """One table row for bench/README.md: ingest and DuckDB side by side, then the floor."""
    by_name = {r["name"]: r for r in result["best"]}

    def cell(name: str) -> str:
        r = by_name.get(name)
        if r is None or "wall" not in r:
            return "-"
        return f"{r['wall']:.2f} s ({r['cpu']:.1f} CPU s), {r['peak_rss_mib']:.0f} MiB"

    ratio = result["ratios"]

    def fmt(key: str) -> str:
        if key not in ratio:
            return "-"
        return f"{ratio[key]['best']:.2f} ({min(ratio[key]['runs']):.2f}-{max(ratio[key]['runs']):.2f})"

    return (
        f"| {label} | {result['bytes'] / 1e6:.0f} MB | **{cell('ingest_cli')}** | {cell('duckdb_cli')} "
        f"| **{fmt('DuckDB / ingest')}** | {cpu_ratio(result['runs'], 'duckdb_cli', 'ingest_cli')} "
        f"| {cell('polars_cli')} | {fmt('ingest / polars')} |"
    )


def cpu_ratio(runs: list[dict[str, Any]], top: str, bottom: str) -> str:
    """CPU seconds of ``top`` over ``bottom``, round by round: median (min-max). Steadier
    than wall times on a shared machine (a waiting process spends no CPU)."""
    by_round: dict[int, dict[str, float]] = {}
    for r in runs:
        if "cpu" in r:
            by_round.setdefault(r.get("attempt", 0), {})[r["name"]] = r["cpu"]
    ratios = sorted(got[top] / got[bottom] for got in by_round.values() if top in got and got.get(bottom))
    if not ratios:
        return "-"
    middle = (
        ratios[len(ratios) // 2]
        if len(ratios) % 2
        else (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2
    )
    return f"{middle:.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def shape_label(meta: dict[str, Any]) -> str:
    """``random, +02:00, BOM, CRLF, newlines 3%``: a file's shape, from its sidecar."""
    return (
        f"{meta.get('order', '?')}, {meta.get('tz', '?')}"
        + ("" if meta.get("fractions", True) else ", no fractions")
        + (", BOM" if meta.get("bom") else "")
        + (", LF" if meta.get("lf") else ", CRLF")
        + (f", newlines {meta['newline_rows']:g}%" if meta.get("newline_rows") is not None else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="contenders: " + "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()),
    )
    parser.add_argument("csv", type=Path, nargs="+", help="one or more report files (one table each)")
    parser.add_argument(
        "--only", help=f"comma-separated subset (default {','.join(DEFAULT)}; extras: {','.join(EXTRA)})"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds; contenders alternate within a round; the table shows the fastest",
    )
    parser.add_argument("--json", type=Path, help="save every run's figures here")
    parser.add_argument("--markdown", type=Path, help="append one table row per file here")
    parser.add_argument(
        "--render",
        action="store_true",
        help="print the table rows of saved --json files (given instead of CSVs)",
    )
    parser.add_argument(
        "--tmp",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the contenders' output folders go (default /tmp)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--window", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        first, last = (date.fromisoformat(d) for d in args.window.split(":"))
        return child(args.child, args.csv[0], args.out, (first, last))

    names = list(dict.fromkeys(n.strip() for n in args.only.split(","))) if args.only else list(DEFAULT)
    unknown = [n for n in names if n not in CONTENDERS and n not in COMMANDS]
    if unknown:
        parser.error(
            f"unknown contender(s) {', '.join(unknown)}; known: {', '.join([*COMMANDS, *CONTENDERS])}"
        )
    if args.render:  # table rows again from saved --json files (the csv arguments are those files)
        print(TABLE_HEADER)
        for saved in args.csv:
            for result in json.loads(saved.read_text())["files"]:
                print(markdown_row(result, shape_label(result["meta"])))
        return 0
    results = []
    for csv_path in args.csv:
        result = bench_file(csv_path.resolve(), names, args.repeat, args.tmp)
        results.append(result)
        if args.markdown:
            meta = result["meta"]
            with args.markdown.open("a") as table:
                table.write(markdown_row(result, shape_label(meta)) + "\n")
        print()
    if args.json:
        document = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": _versions(),
            "files": results,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"saved {args.json}")
    return 1 if any("error" in r for result in results for r in result["best"]) else 0


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("polars", "duckdb", "pyarrow", "pandas"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    raise SystemExit(main())
