"""Breakers for erasure and subject access through the real CLI (issue 25): odd bot user
ids, the same id in two bots (a number in one, a string in the other), an id only in a
``user_id`` column, after a compaction and with a stale index (an import killed between its
Delta commit and its index update). ``export --botuser`` returns exactly the person's rows;
``erase --apply`` leaves nothing of them in any file of the archive and every other row as
it was; ``verify`` stays clean."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ingest.simulator import generate_messages, rows_to_csv
from tests.support.archive import read_archive
from tests.support.forget import files_holding
from tests.support.job import run_ingest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BOT_A = "3f2b8c1e-0000-4000-8000-0000000000c1"
BOT_B = "3f2b8c1e-0000-4000-8000-0000000000c2"
NUMBER = "918273645"
ODD = ["../x", "inner spaced id", "q\"uo'te", "Ω" * 300, "🙂 0x7"]
USER_COLUMN_ONLY = "uc-5c3f9d1e-only-user-id"


def _env(work: Path, **extra: str) -> dict[str, str]:
    return {
        "INGEST_OUTPUT__ROOT": str(work / "archive"),
        "INGEST_STATE__PATH": str(work / "state.sqlite"),
        "INGEST_AUDIT__ACTOR": "dpo@example.com",
        "INGEST_EXPORT__SIGNING_KEY_FILE": str(work / "signer.key"),
        **extra,
    }


def _owned(row: dict[str, Any], who: Any) -> dict[str, Any]:
    return dict(row, botuser={"id": who, "created_date": "2023-12-01T00:00:00.000000Z"})


def _with_user_id(data: bytes, values: dict[int, str]) -> bytes:
    """The CSV with a ``user_id`` column (row number -> value; empty elsewhere)."""
    records = list(csv.reader(io.StringIO(data.decode(), newline="")))
    records[0].append("user_id")
    for n, record in enumerate(records[1:]):
        record.append(values.get(n, ""))
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\r\n").writerows(records)
    return text.getvalue().encode()


def _write(work: Path, name: str, rows: list[dict[str, Any]], user_ids: dict[int, str] | None = None) -> str:
    data = rows_to_csv(rows)
    (work / name).write_bytes(_with_user_id(data, user_ids) if user_ids else data)
    return name


def _theirs(frame: pl.DataFrame, who: str) -> pl.DataFrame:
    botuser = frame.get_column("botuser").str.json_path_match("$.id") == who
    extra = (
        pl.col("extra").str.json_path_match("$.user_id") == who if "extra" in frame.columns else pl.lit(False)
    )
    user = pl.col("user_id").cast(pl.String) == who if "user_id" in frame.columns else pl.lit(False)
    return frame.filter(pl.any_horizontal(botuser, extra, user).fill_null(False))


def _exported_rows(work: Path, env: dict[str, str], who: str, name: str) -> int:
    out = work / name
    done = run_ingest("export", "--botuser", who, "--format", "jsonl", "--out", str(out), env=env, cwd=work)
    # Exit 1 only for what the bundle names as archive problems (a report killed after its
    # commit has no record yet): the rows are still exported.
    assert done.returncode == 0 or (done.returncode == 1 and "archive problem:" in done.stdout), done.stderr
    count = 0
    for path in sorted((out / "data").rglob("*.jsonl")):  # copies/: the raw copies, apart
        count += sum(1 for line in path.read_text().splitlines() if line.strip())
    return count


def test_odd_ids_stale_index_compaction_two_bots(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert run_ingest("keygen", "--out", "signer.key", env=env, cwd=tmp_path).returncode == 0
    rows_a = generate_messages(BOT_A, date(2023, 1, 2), date(2023, 1, 6))
    rows_b = generate_messages(BOT_B, date(2024, 6, 2), date(2024, 6, 6))
    for n, who in enumerate(ODD):
        rows_a[3 + n] = _owned(rows_a[3 + n], who)
        rows_b[5 + n] = _owned(rows_b[5 + n], who)
    rows_a[20] = _owned(rows_a[20], int(NUMBER))  # a JSON number in one bot...
    rows_b[20] = _owned(rows_b[20], NUMBER)  # ... a string in the other
    imports = [
        (_write(tmp_path, "a.csv", rows_a, {30: USER_COLUMN_ONLY}), BOT_A),
        (_write(tmp_path, "b.csv", rows_b), BOT_B),
        # A second report of A's days: compaction merges the partitions' files.
        (
            _write(
                tmp_path,
                "a2.csv",
                [
                    _owned(r, ODD[0]) if n == 2 else r
                    for n, r in enumerate(
                        # ids of their own: the simulator's ids of these days, negated
                        dict(row, id=-row["id"])
                        for row in generate_messages(BOT_A, date(2023, 1, 2), date(2023, 1, 3), seed=5)
                    )
                ],
            ),
            BOT_A,
        ),
    ]
    for name, bot in imports:
        done = run_ingest("import", name, "--bot", bot, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    done = run_ingest("compact", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # Killed between its commit and its index update: the index does not cover these files.
    late = generate_messages(BOT_B, date(2025, 2, 2), date(2025, 2, 3))
    late = [_owned(r, ODD[n % len(ODD)]) if n < len(ODD) else r for n, r in enumerate(late)]
    late[9] = _owned(late[9], int(NUMBER))
    name = _write(tmp_path, "late.csv", late, {12: USER_COLUMN_ONLY})
    killed = run_ingest(
        "import", name, "--bot", BOT_B, env={**env, "INGEST_CRASH_AT": "after_commit"}, cwd=tmp_path
    )
    assert killed.returncode != 0
    archive = tmp_path / "archive"
    before = read_archive(archive)
    gone = pl.DataFrame(schema={"bot_id": pl.String, "id": pl.Int64})
    for n, who in enumerate([*ODD, NUMBER, USER_COLUMN_ONLY]):
        truth = _theirs(before, who)
        assert truth.height > 0, who
        assert _exported_rows(tmp_path, env, who, f"export-{n}") == truth.height, who
        done = run_ingest("erase", "--botuser", who, "--reason", "DSR", "--apply", env=env, cwd=tmp_path)
        assert done.returncode == 0, (who, done.stdout, done.stderr)
        after = read_archive(archive)
        assert _theirs(after, who).height == 0, who
        gone = pl.concat([gone, truth.select("bot_id", "id").cast({"id": pl.Int64})])
        kept = before.join(gone, on=["bot_id", "id"], how="anti").sort("bot_id", "id")
        assert after.sort("bot_id", "id").select(kept.columns).equals(kept), who
    distinctive = [w for w in [*ODD, NUMBER, USER_COLUMN_ONLY] if len(w.strip()) > 5]
    assert files_holding([archive, *tmp_path.glob("state.sqlite*")], distinctive) == []
    # (verify is not asked here: the killed import's record is missing until its retry,
    # which test_a_retried_import_after_an_erasure_brings_nothing_back covers.)


def test_an_id_archived_with_spaces_around_it_can_be_erased(tmp_path: Path) -> None:
    """The archive keeps a bot user id as the vendor wrote it, spaces included, and
    ``export --botuser`` finds it so; ``erase --botuser`` refuses that very id ("has spaces
    around it: give the id exactly as written"), so that person can be shown but never erased."""
    env = _env(tmp_path)
    assert run_ingest("keygen", "--out", "signer.key", env=env, cwd=tmp_path).returncode == 0
    who = "  7f3e spaced  "
    rows = generate_messages(BOT_A, date(2023, 1, 2), date(2023, 1, 3))
    rows[4] = _owned(rows[4], who)
    done = run_ingest("import", _write(tmp_path, "a.csv", rows), "--bot", BOT_A, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    archive = tmp_path / "archive"
    assert _theirs(read_archive(archive), who).height == 1
    assert _exported_rows(tmp_path, env, who, "export") == 1  # subject access finds them
    done = run_ingest("erase", "--botuser", who, "--reason", "DSR", "--apply", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _theirs(read_archive(archive), who).height == 0


def test_a_retried_import_after_an_erasure_brings_nothing_back(tmp_path: Path) -> None:
    """An import killed after its Delta commit (before its record and index), then an
    erasure of a person in it, then the import's retry (the next scheduled run, as the
    CronJob does): nothing of the person may come back, in any file (the retry must not
    publish the report's original data file again, nor index it)."""
    env = _env(tmp_path)
    who = "p-2b7d41c9e8-erased"
    rows = generate_messages(BOT_B, date(2025, 2, 2), date(2025, 2, 3))
    rows[3] = _owned(rows[3], who)
    name = _write(tmp_path, "late.csv", rows)
    killed = run_ingest(
        "import", name, "--bot", BOT_B, env={**env, "INGEST_CRASH_AT": "after_commit"}, cwd=tmp_path
    )
    assert killed.returncode != 0
    done = run_ingest("erase", "--botuser", who, "--reason", "DSR", "--apply", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    archive = tmp_path / "archive"
    assert files_holding([archive], [who]) == []  # erased everywhere
    again = run_ingest("import", name, "--bot", BOT_B, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _theirs(read_archive(archive), who).height == 0
    assert files_holding([archive, *tmp_path.glob("state.sqlite*")], [who]) == []
    verify = run_ingest("verify", env=env, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_redelivered_report_after_an_erasure_brings_nothing_back(tmp_path: Path) -> None:
    """The same report imported again after an erasure (a re-delivered email, an operator
    re-running an import): the erased person's rows are not archived again."""
    env = _env(tmp_path)
    who = "p-5e1a90c3d7-erased"
    rows = generate_messages(BOT_B, date(2025, 2, 2), date(2025, 2, 3))
    rows[3] = _owned(rows[3], who)
    name = _write(tmp_path, "r.csv", rows)
    assert run_ingest("import", name, "--bot", BOT_B, env=env, cwd=tmp_path).returncode == 0
    done = run_ingest("erase", "--botuser", who, "--reason", "DSR", "--apply", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    again = run_ingest("import", name, "--bot", BOT_B, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    archive = tmp_path / "archive"
    assert _theirs(read_archive(archive), who).height == 0
    assert files_holding([archive, *tmp_path.glob("state.sqlite*")], [who]) == []
