"""Kill `ingest erase --apply` (SIGKILL, no clean-up) at each step of the erasure; the next
command finishes it (or undoes it, when nothing had changed yet, and the erasure runs again):
the subject is gone everywhere, every other row is there once, one audit record, verify clean."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import polars as pl
import pytest

from ingest.crashpoints import FORGET_POINTS
from tests.support.archive import read_archive
from tests.support.forget import SUBJECT, SUBJECT_TEXT, build_archive, files_holding
from tests.support.job import run_ingest

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.mark.parametrize("point", FORGET_POINTS)
def test_an_erasure_killed_at_any_step_ends_consistent_on_the_next_run(workdir: Path, point: str) -> None:
    env = {
        "INGEST_OUTPUT__ROOT": str(workdir / "archive"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
    }
    build_archive(workdir, env)
    before = read_archive(workdir / "archive").height
    args = ("erase", "--botuser", SUBJECT, "--reason", "DSR-9", "--apply")

    killed = run_ingest(*args, env={**env, "INGEST_CRASH_AT": point}, cwd=workdir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 1  # named as interrupted

    again = run_ingest(*args, env=env, cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "interrupted before: " in again.stderr

    after = read_archive(workdir / "archive")
    assert after.filter(pl.col("botuser").str.json_path_match("$.id") == SUBJECT).height == 0
    assert after.height == before - 6
    assert after.select("bot_id", "id").is_unique().all()
    state = list(workdir.glob("state.sqlite*"))
    assert files_holding([workdir / "archive", *state], [SUBJECT, SUBJECT_TEXT]) == []
    records = [json.loads(p.read_bytes()) for p in sorted((workdir / "archive" / "audit").glob("*.json"))]
    # One erasure that removed the rows; the re-run, when the erasure was finished for it,
    # is on record as a request that found nothing.
    assert [r["kind"] for r in records if r.get("found") != "nothing"] == ["erase"]
    assert len({tuple(r["subject_sha256"]) for r in records}) == 1
    verify = run_ingest("verify", env=env, cwd=workdir)
    assert verify.returncode == 0, verify.stdout
