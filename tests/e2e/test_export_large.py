"""A million-row export streams: the whole `ingest export` process stays within the archive's
memory budget (peak RSS measured by the kernel, never timed), and the bundle verifies."""

from __future__ import annotations

import json
import zipfile
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from ingest.simulator import generate_messages
from ingest.simulator.data import ID_STRIDE, rows_to_csv
from tests.support.job import ingest_peak_rss, run_ingest

pytestmark = [pytest.mark.slow]

BOT = "big-bot"
ROWS_PER_DAY, DAYS = 5_000, 200
#: The archive's memory budget (docs/performance.md: whole-process peak RSS).
BUDGET_MIB = 512
FIRST = date(2024, 1, 1)


def write_million_row_csv(path: Path) -> int:
    """A simulator day of ROWS_PER_DAY rows, repeated over DAYS days with each day's ids and
    timestamps (so rows are unique and in their UTC date): the emailed export's dialect."""
    template = pl.read_csv(
        rows_to_csv(generate_messages(BOT, FIRST, FIRST, min_per_day=ROWS_PER_DAY, max_per_day=ROWS_PER_DAY)),
        infer_schema=False,
    )
    base = pl.col("id").cast(pl.Int64) - FIRST.toordinal() * ID_STRIDE
    with path.open("wb") as handle:
        for offset in range(DAYS):
            day = FIRST + timedelta(days=offset)
            template.with_columns(
                (base + day.toordinal() * ID_STRIDE).cast(pl.String).alias("id"),
                pl.col("timestamp").str.replace(r"^\d{4}-\d{2}-\d{2}", day.isoformat()),
            ).write_csv(handle, include_header=offset == 0, line_terminator="\r\n")
    return ROWS_PER_DAY * DAYS


def test_a_million_rows_export_within_the_memory_budget(workdir: Path) -> None:
    rows = write_million_row_csv(workdir / "big.csv")
    env = {
        "INGEST_OUTPUT__ROOT": str(workdir / "archive"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
        "INGEST_EXPORT__SIGNING_KEY_FILE": str(workdir / "signer.key"),
    }
    for args in (("import", "big.csv", "--bot", BOT), ("keygen", "--out", "signer.key")):
        done = run_ingest(*args, env=env, cwd=workdir, timeout=900)
        assert done.returncode == 0, done.stderr
    (workdir / "big.csv").unlink()

    done, peak_mib = ingest_peak_rss(
        "export", "--bot", BOT, "--format", "csv", "--out", "big.zip", env=env, cwd=workdir, timeout=1800
    )

    assert done.returncode == 0, done.stderr
    assert peak_mib <= BUDGET_MIB, f"peak RSS {peak_mib:.0f} MiB over the {BUDGET_MIB} MiB budget"
    with zipfile.ZipFile(workdir / "big.zip") as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
    assert manifest["rows"] == rows
    assert len(manifest["counts"]["messages"][BOT]) == DAYS
    assert set(manifest["counts"]["messages"][BOT].values()) == {ROWS_PER_DAY}
    checked, check_mib = ingest_peak_rss(
        "verify-export", "big.zip", "--public-key", "signer.key.pub", cwd=workdir, timeout=1800
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert check_mib <= BUDGET_MIB, f"verify-export peak RSS {check_mib:.0f} MiB"
