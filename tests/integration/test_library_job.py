"""The library behaves as the command: `ingest.ops.job.run_job` called from Python gives
the same archive, state store and metrics as `ingest run` on the same input, retention
included (two identical worlds, a simulated API and an embedded IMAP server each, on
loopback: one driven through the command, one through the Python API in this process);
and a job called from Python does the preamble every writing command does."""

from __future__ import annotations

import logging
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ingest.archive.forget import ForgetOutcome
from ingest.archive.layout import STAGING
from ingest.ops.job import plan_windows, run_job
from ingest.ops.upkeep import compact
from ingest.settings import load_settings
from ingest.simulator import CertainlySimulator, EmbeddedImap, SimulatorConfig
from ingest.state.store import Store
from tests.support.archive import read_archive
from tests.support.forget import SUBJECT, build_archive
from tests.support.job import job_env, run_ingest

pytestmark = pytest.mark.integration

BOT = "7d1c0b9a-0000-4000-8000-0000000000b1"
RETENTION_DAYS = 730
#: Days straddling the retention's edge, so that both runs prune some and keep some.
TODAY = datetime.now(UTC).date()
FIRST, LAST = TODAY - timedelta(days=RETENTION_DAYS + 4), TODAY - timedelta(days=RETENTION_DAYS - 4)
#: Metrics of time (when, how long) differ between any two runs; the rest must not.
TIMED = ("ingest_run_duration_seconds ", "ingest_last_success_timestamp_seconds ")


def _world(imap: EmbeddedImap) -> CertainlySimulator:
    return CertainlySimulator(
        SimulatorConfig(recipient=imap.username, delivery_delay=0.05), deliver=imap.delivery()
    )


def _env(sim: CertainlySimulator, imap: EmbeddedImap, workdir: Path) -> dict[str, str]:
    return job_env(
        sim,
        imap,
        workdir,
        INGEST_METRICS__TEXTFILE=str(workdir / "metrics" / "ingest.prom"),
        INGEST_RETENTION__DAYS=str(RETENTION_DAYS),
    )


def _outcome(workdir: Path) -> dict[str, Any]:
    """What a user keeps of a run: the archive's rows, the state store's windows and
    totals, and the metrics (bar their times)."""
    rows = read_archive(workdir / "archive").sort("bot_id", "id")
    with Store.open(workdir / "state.sqlite") as store:
        windows = [(w.bot_id, w.from_date, w.to_date, w.state.value) for w in store.windows()]
        totals = store.attachment_totals()
    metrics = (workdir / "metrics" / "ingest.prom").read_text(encoding="utf-8").splitlines()
    return {
        "rows": rows,
        "windows": windows,
        "totals": totals,
        "metrics": [line for line in metrics if not line.startswith(TIMED)],
        "timed": [line.split()[0] for line in metrics if line.startswith(TIMED)],
    }


def test_run_job_from_python_gives_what_ingest_run_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_cli, by_api = tmp_path / "cli", tmp_path / "api"
    by_cli.mkdir()
    by_api.mkdir()
    span = ("--from", FIRST.isoformat(), "--to", LAST.isoformat())
    with EmbeddedImap() as imap, _world(imap) as sim:
        env = _env(sim, imap, by_cli)
        assert run_ingest("backfill", "--bot", BOT, *span, env=env, cwd=by_cli).returncode == 0
        ran = run_ingest("run", "--until-done", "--timeout", "60", env=env, cwd=by_cli)
    assert ran.returncode == 0, ran.stderr
    assert "retention: pruned" in ran.stdout

    pruned: list[ForgetOutcome] = []
    with EmbeddedImap() as imap, _world(imap) as sim:
        for name in [n for n in os.environ if n.upper().startswith(("INGEST_", "AWS_"))]:
            monkeypatch.delenv(name)
        for name, value in _env(sim, imap, by_api).items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(by_api)
        settings = load_settings()
        plan_windows(settings, [BOT], FIRST, LAST)
        summary = run_job(settings, until_done=True, timeout=60, on_retention=pruned.append)
    assert not summary.needs_attention, summary.problems
    assert len(pruned) == 1 and pruned[0].record

    cli, api = _outcome(by_cli), _outcome(by_api)
    assert cli["rows"].height > 0
    assert cli["rows"]["date"].min() >= TODAY - timedelta(days=RETENTION_DAYS)  # pruned, and kept
    assert api["rows"].equals(cli["rows"])
    assert api["windows"] == cli["windows"] and {w[3] for w in cli["windows"]} == {"archived"}
    assert api["totals"] == cli["totals"]
    assert api["metrics"] == cli["metrics"]
    assert (
        api["timed"]
        == cli["timed"]
        == ["ingest_run_duration_seconds", "ingest_last_success_timestamp_seconds"]
    )


def test_a_python_job_finishes_a_killed_erasure_and_sweeps_staging_first(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The preamble is the library's: any job called from Python (here a compaction)
    finishes the erasure a killed `ingest erase --apply` left, and removes a killed job's
    temporary files, as every writing command does."""
    env = {
        "INGEST_OUTPUT__ROOT": str(workdir / "archive"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
    }
    build_archive(workdir, env)
    args = ("erase", "--botuser", SUBJECT, "--reason", "DSR-9", "--apply")
    killed = run_ingest(*args, env={**env, "INGEST_CRASH_AT": "forget_after_delta"}, cwd=workdir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    leftover = workdir / "archive" / STAGING / ".tmp-killed-job"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a file")

    for name in [n for n in os.environ if n.upper().startswith(("INGEST_", "AWS_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="ingest.ops.job"):
        compact(load_settings(), dataset="messages", bots=None, min_files=2)

    assert any("interrupted before: " in r.getMessage() for r in caplog.records)
    assert not leftover.exists()
    assert (
        read_archive(workdir / "archive")
        .filter(pl.col("botuser").str.json_path_match("$.id") == SUBJECT)
        .is_empty()
    )
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 0
