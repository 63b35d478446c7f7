"""`ingest hold` and what it keeps, as an operator runs it: a quarantined file is held data, a
hold file deleted or changed by hand is a `verify` failure and still holds, lifting needs a
reason and never rewrites the hold's file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from tests.integration.test_object_lock import locked, retention
from tests.support.archive import read_archive
from tests.support.forget import BOT_A, BOT_B, SUBJECT, build_archive, files_holding
from tests.support.job import run_ingest
from tests.support.seaweed import SeaweedS3

pytestmark = pytest.mark.integration
__all__ = ["locked"]  # the Object Lock bucket fixture, shared with test_object_lock


def _env(work: Path, **extra: str) -> dict[str, str]:
    return {
        "INGEST_OUTPUT__ROOT": str(work / "archive"),
        "INGEST_STATE__PATH": str(work / "state.sqlite"),
        "INGEST_AUDIT__ACTOR": "dpo@example.com",
        **extra,
    }


def _hold(work: Path, env: dict[str, str], *args: str) -> str:
    placed = run_ingest("hold", "add", *args, env=env, cwd=work)
    assert placed.returncode == 0, placed.stderr
    return placed.stdout.split()[1]  # "hold <id> placed on ..."


def test_a_quarantined_file_of_unknown_bot_and_days_is_held_data(workdir: Path) -> None:
    """A whole file refused at intake names no bot or day: any hold in force keeps it, so an
    erasure that would rewrite it is refused (before, quarantine was never checked)."""
    env = _env(workdir)
    build_archive(workdir, env)
    (workdir / "bad.csv").write_text(f'foo,botuser\n1,"{{""id"": ""{SUBJECT}""}}"\n')
    assert run_ingest("import", "bad.csv", "--bot", BOT_A, env=env, cwd=workdir).returncode == 1
    (original,) = (workdir / "archive" / "quarantine").glob("*/original-bad.csv")
    _hold(workdir, env, "--bot", BOT_B, "--from", "2030-01-01", "--reason", "case 2026-17")

    refused = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply", env=env, cwd=workdir)

    assert refused.returncode == 1
    assert "quarantine/" in refused.stderr and "case 2026-17" in refused.stderr
    assert files_holding([original], [SUBJECT]) == [str(original)]


def test_a_hold_file_deleted_by_hand_fails_verify_and_still_keeps_the_data(workdir: Path) -> None:
    env = _env(workdir)
    build_archive(workdir, env)
    hold_id = _hold(workdir, env, "--bot", BOT_B, "--reason", "audit 2026")
    (workdir / "archive" / "holds" / f"{hold_id}.json").unlink()

    verify = run_ingest("verify", env=env, cwd=workdir)
    pruned = run_ingest("prune", "--apply", env={**env, "INGEST_RETENTION__DAYS": "30"}, cwd=workdir)

    assert verify.returncode == 1
    assert f"holds/{hold_id}.json: missing, but the audit log places this hold and never lifts it" in (
        verify.stdout
    )
    assert pruned.returncode == 0, pruned.stderr
    rows = read_archive(workdir / "archive")
    assert rows.filter(pl.col("bot_id") == BOT_B).height > 0  # the audit log's hold still holds
    assert rows.filter(pl.col("bot_id") == BOT_A).height == 0
    listed = run_ingest("hold", "list", env=env, cwd=workdir)
    assert hold_id in listed.stdout


def test_a_hold_file_changed_by_hand_fails_verify(workdir: Path) -> None:
    env = _env(workdir)
    build_archive(workdir, env)
    hold_id = _hold(workdir, env, "--bot", BOT_B, "--from", "2024-01-01", "--reason", "audit 2026")
    path = workdir / "archive" / "holds" / f"{hold_id}.json"
    path.write_text(path.read_text().replace('"2024-01-01"', '"2029-01-01"'))

    verify = run_ingest("verify", env=env, cwd=workdir)

    assert verify.returncode == 1
    assert (
        f"holds/{hold_id}.json: differs from the audit log's record of this hold (changed)" in verify.stdout
    )


@pytest.mark.parametrize("reason", [[], ["--reason", ""], ["--reason", "   "]])
def test_lifting_a_hold_without_a_reason_is_exit_2_and_keeps_it(workdir: Path, reason: list[str]) -> None:
    env = _env(workdir)
    hold_id = _hold(workdir, env, "--bot", BOT_A, "--reason", "case 9")

    lifted = run_ingest("hold", "remove", hold_id, *reason, env=env, cwd=workdir)

    assert lifted.returncode == 2
    assert "reason" in lifted.stderr.lower() and "Traceback" not in lifted.stderr
    assert hold_id in run_ingest("hold", "list", env=env, cwd=workdir).stdout


def test_lifting_keeps_the_hold_file_and_verify_stays_clean(workdir: Path) -> None:
    env = _env(workdir)
    build_archive(workdir, env)
    hold_id = _hold(workdir, env, "--bot", BOT_A, "--reason", "case 9")
    placed = (workdir / "archive" / "holds" / f"{hold_id}.json").read_bytes()

    lifted = run_ingest("hold", "remove", hold_id, "--reason", "case closed", env=env, cwd=workdir)
    verify = run_ingest("verify", env=env, cwd=workdir)

    assert lifted.returncode == 0, lifted.stderr
    assert (workdir / "archive" / "holds" / f"{hold_id}.json").read_bytes() == placed
    assert (workdir / "archive" / "holds" / f"{hold_id}.lifted.json").exists()
    assert "no legal holds in force" in run_ingest("hold", "list", env=env, cwd=workdir).stdout
    assert verify.returncode == 0, verify.stdout


def test_on_a_locked_bucket_a_hold_and_its_lifting_are_locked_and_lifting_needs_no_bypass(
    locked: SeaweedS3, workdir: Path
) -> None:
    """Holds are evidence: written under the Object Lock retention, never deleted (lifting
    writes a second locked file), so `hold remove` works without any bypass permission."""
    env = {
        **locked.env("a", workdir / "staging"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
        "INGEST_OUTPUT__OBJECT_LOCK_DAYS": "2",
    }
    hold_id = _hold(workdir, env, "--bot", BOT_A, "--reason", "case 9")

    lifted = run_ingest("hold", "remove", hold_id, "--reason", "case closed", env=env, cwd=workdir)

    assert lifted.returncode == 0, lifted.stderr
    for key in (f"holds/{hold_id}.json", f"holds/{hold_id}.lifted.json"):
        held = retention(locked, key)
        assert held is not None and held[0] == "GOVERNANCE", key
    assert "no legal holds in force" in run_ingest("hold", "list", env=env, cwd=workdir).stdout


def _narrowed(path: Path) -> None:
    path.write_text(path.read_text().replace('"2024-01-01"', '"2099-01-01"'))


def _lifted_by_a_forged_file(path: Path) -> None:
    hold_id = path.name.removesuffix(".json")
    path.with_name(f"{hold_id}.lifted.json").write_text(f'{{"id": "{hold_id}", "reason": "forged"}}\n')


@pytest.mark.parametrize("forge", [_narrowed, _lifted_by_a_forged_file], ids=["narrowed", "lifted"])
def test_a_hold_narrowed_or_lifted_by_hand_still_keeps_its_data_from_prune(
    workdir: Path, forge: Callable[[Path], None]
) -> None:
    """Only `ingest hold add` and `hold remove` (the audit log) change what a hold keeps: a
    hold file edited by hand, or a lifting file written by hand, keeps every day the log's
    record keeps."""
    env = _env(workdir)
    build_archive(workdir, env)
    hold_id = _hold(workdir, env, "--bot", BOT_B, "--from", "2024-01-01", "--reason", "audit 2026")
    forge(workdir / "archive" / "holds" / f"{hold_id}.json")

    verify = run_ingest("verify", env=env, cwd=workdir)
    pruned = run_ingest("prune", "--apply", env={**env, "INGEST_RETENTION__DAYS": "30"}, cwd=workdir)

    assert verify.returncode == 1 and f"holds/{hold_id}" in verify.stdout
    assert pruned.returncode == 0, pruned.stderr
    rows = read_archive(workdir / "archive")
    assert rows.filter(pl.col("bot_id") == BOT_B).height > 0  # the held bot's rows are all still there
    assert rows.filter(pl.col("bot_id") == BOT_A).height == 0  # the rest was pruned
    assert hold_id in run_ingest("hold", "list", env=env, cwd=workdir).stdout


def test_removing_a_hold_id_that_would_leave_holds_is_exit_2_and_writes_nothing(workdir: Path) -> None:
    env = _env(workdir)
    _hold(workdir, env, "--bot", BOT_A, "--reason", "case 9")
    before = sorted(p for p in workdir.rglob("*"))

    removed = run_ingest("hold", "remove", "../../pwned", "--reason", "x", env=env, cwd=workdir)

    assert removed.returncode == 2
    assert "is not a hold id" in removed.stderr and "Traceback" not in removed.stderr
    assert sorted(p for p in workdir.rglob("*")) == before
