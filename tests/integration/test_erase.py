"""`ingest erase`, `ingest prune` and `ingest hold` on archives built by `ingest import` of
simulator CSVs: the subject's rows gone from every table, raw copy and quarantined file, other
rows untouched, nothing of them found in any byte of the archive or the state store, time
travel cannot bring them back, verify clean and listing the erasure, the audit record
without the id; holds refuse an erasure and keep rows a prune would remove."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from ingest.archive import audit
from ingest.archive.forget import Plan, SubjectSelection, forget
from ingest.archive.rejects import quarantine_file
from ingest.archive.storage import as_storage
from ingest.errors import OutputError
from ingest.ops.erasure import erase
from ingest.simulator import CertainlySimulator, EmbeddedImap, generate_messages
from ingest.simulator.data import rows_to_csv
from tests.support.archive import read_archive
from tests.support.forget import (
    BOT_A,
    BOT_B,
    OTHER,
    SUBJECT,
    SUBJECT_IP,
    SUBJECT_TEXT,
    build_archive,
    files_holding,
    subject_row,
)
from tests.support.job import job_env, run_ingest
from tests.support.seaweed import SeaweedS3

pytestmark = pytest.mark.integration


#: The audit key of the erasures this file makes in-process (the CLI's keeps its key file).
AUDIT_KEY = "test-audit-key-0123456789"


def _env(work: Path, **extra: str) -> dict[str, str]:
    return {
        "INGEST_OUTPUT__ROOT": str(work / "archive"),
        "INGEST_STATE__PATH": str(work / "state.sqlite"),
        "INGEST_AUDIT__ACTOR": "dpo@example.com",
        **extra,
    }


def _subject_rows(frame: pl.DataFrame, who: str = SUBJECT) -> pl.DataFrame:
    return frame.filter(pl.col("botuser").str.json_path_match("$.id") == who)


def _hashes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_erase_removes_the_subject_everywhere_and_proves_it(workdir: Path) -> None:
    env = _env(workdir)
    build_archive(workdir, env)
    archive = workdir / "archive"
    before = read_archive(archive)
    assert _subject_rows(before).height == 6  # 3 to A, 3 to B (the 4th was refused)
    assert files_holding([archive], [SUBJECT])  # the search does find them before
    version_before = DeltaTable(str(archive / "messages")).version()

    dry = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR-17", env=env, cwd=workdir)
    assert dry.returncode == 0, dry.stderr
    assert "messages: would remove 6 row(s)" in dry.stdout and "dry run" in dry.stdout
    assert files_holding([archive], [SUBJECT])  # nothing changed

    done = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR-17", "--apply", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "messages: removed 6 row(s)" in done.stdout

    after = read_archive(archive)
    assert _subject_rows(after).height == 0
    assert after.height == before.height - 6
    others = _subject_rows(before).select("bot_id", "id")
    kept = before.join(others, on=["bot_id", "id"], how="anti").sort("bot_id", "id")
    assert after.sort("bot_id", "id").select(kept.columns).equals(kept)  # others untouched
    assert _subject_rows(after, OTHER).height == 2

    # No byte of theirs anywhere: data, Delta logs and checkpoints, raw copies, quarantine,
    # manifests, the audit log, the state store.
    state = [p for p in workdir.glob("state.sqlite*")]
    assert files_holding([archive, *state], [SUBJECT, SUBJECT_TEXT, SUBJECT_IP]) == []
    # Time travel to before the erasure cannot return them: the old files are vacuumed.
    old = DeltaTable(str(archive / "messages"), version=version_before)
    with pytest.raises(Exception):  # noqa: B017 - deltalake's or arrow's "not found"
        subject = _subject_rows(pl.from_arrow(old.to_pyarrow_table()))  # type: ignore[arg-type]
        assert subject.height == 0
        raise FileNotFoundError("read back without the subject")

    verify = run_ingest("verify", env=env, cwd=workdir)
    assert verify.returncode == 0, verify.stdout
    assert (
        "erasure: erase" in verify.stdout
        and "6 row(s)" in verify.stdout
        and "dpo@example.com" in verify.stdout
    )
    assert "audit log: 1 record(s), newest audit/000001-" in verify.stdout

    records = [json.loads(p.read_bytes()) for p in sorted((archive / "audit").glob("*.json"))]
    assert [r["kind"] for r in records] == ["erase"]
    assert records[0]["reason"] == "DSR-17" and records[0]["actor"] == "dpo@example.com"
    assert len(records[0]["subject_sha256"][0]) == 64
    assert records[0]["tables"][0]["rows"] == 6
    # The raw copies keep their keys (named after the original sha256: a re-delivery is known).
    raw = sorted(p.name for p in (archive / "raw").rglob("*.csv"))
    assert len(raw) == 2
    erasure = json.loads(next((archive / "manifests").glob("erasure-*.json")).read_bytes())["erasure"]
    assert {c["key"].rsplit("/", 1)[-1] for c in erasure["copies"] if c["key"].startswith("raw/")} == set(raw)
    assert all(c["original_sha256"] != c["new_sha256"] for c in erasure["copies"])

    again = run_ingest("import", "b.csv", "--bot", BOT_B, env=env, cwd=workdir)
    assert "1 already had" in again.stdout or "0 archived" in again.stdout
    assert _subject_rows(read_archive(archive)).height == 0  # a re-delivery never resurrects them


def test_verify_catches_a_rewritten_raw_copy_changed_and_a_removed_audit_record(workdir: Path) -> None:
    env = _env(workdir)
    build_archive(workdir, env)
    assert (
        run_ingest(
            "hold", "add", "--bot", BOT_B, "--from", "2024-01-11", "--reason", "x", env=env, cwd=workdir
        ).returncode
        == 0
    )
    done = run_ingest(
        "erase", "--botuser", SUBJECT, "--bot", BOT_A, "--reason", "DSR", "--apply", env=env, cwd=workdir
    )
    assert done.returncode == 0, done.stderr
    raw = next((workdir / "archive" / "raw" / f"bot_id={BOT_A}").glob("*.csv"))
    raw.write_bytes(raw.read_bytes() + b"\r\n")
    first = sorted((workdir / "archive" / "audit").glob("*.json"))[0]
    first.unlink()
    verify = run_ingest("verify", env=env, cwd=workdir)
    assert verify.returncode == 1
    assert "raw file changed, its sha256 is not the one manifests/erasure-" in verify.stdout
    assert "audit chain broken" in verify.stdout


def test_erase_under_a_legal_hold_is_refused_with_its_reason(workdir: Path) -> None:
    env = _env(workdir)
    build_archive(workdir, env)
    placed = run_ingest(
        "hold", "add", "--bot", BOT_B, "--from", "2024-01-01", "--to", "2024-01-31",
        "--reason", "litigation 2026-17", env=env, cwd=workdir,
    )  # fmt: skip
    assert placed.returncode == 0, placed.stderr
    listed = run_ingest("hold", "list", env=env, cwd=workdir)
    assert "litigation 2026-17" in listed.stdout and BOT_B in listed.stdout
    before = _hashes(workdir / "archive")

    refused = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply", env=env, cwd=workdir)
    assert refused.returncode == 1
    assert "legal hold" in refused.stderr and "litigation 2026-17" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert _hashes(workdir / "archive") == before

    hold_id = listed.stdout.split()[0]
    lifted = run_ingest("hold", "remove", hold_id, "--reason", "case closed", env=env, cwd=workdir)
    assert lifted.returncode == 0, lifted.stderr
    done = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    kinds = [
        json.loads(p.read_bytes())["kind"] for p in sorted((workdir / "archive" / "audit").glob("*.json"))
    ]
    assert kinds == ["hold-add", "hold-remove", "erase"]
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 0


def test_retention_prunes_expired_rows_except_held_ones(workdir: Path) -> None:
    env = _env(workdir, INGEST_RETENTION__DAYS="30")
    build_archive(workdir, env)
    archive = workdir / "archive"
    before = read_archive(archive)
    placed = run_ingest("hold", "add", "--bot", BOT_B, "--reason", "audit 2026", env=env, cwd=workdir)
    assert placed.returncode == 0, placed.stderr

    dry = run_ingest("prune", env=env, cwd=workdir)
    assert dry.returncode == 0 and "would remove" in dry.stdout
    done = run_ingest("prune", "--apply", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    after = read_archive(archive)
    assert after.filter(pl.col("bot_id") == BOT_A).height == 0  # all of 2024: long expired
    assert after.filter(pl.col("bot_id") == BOT_B).height == before.filter(pl.col("bot_id") == BOT_B).height
    assert not list((archive / "raw" / f"bot_id={BOT_A}").glob("*.csv"))  # every record expired: gone whole
    assert len(list((archive / "raw" / f"bot_id={BOT_B}").glob("*.csv"))) == 1  # held: kept
    verify = run_ingest("verify", env=env, cwd=workdir)
    assert verify.returncode == 0, verify.stdout
    assert "erasure: prune" in verify.stdout and "days emptied by an erasure or prune" in verify.stdout
    page = run_ingest("report", "--html", "evidence.html", env=env, cwd=workdir)
    assert page.returncode == 0, page.stderr
    html = (workdir / "evidence.html").read_text()
    assert "Days emptied by an erasure or prune" in html and "2024-01-01 to 2024-01-08" in html
    assert "0 gap day(s)" in page.stdout
    # Run again: nothing more expired; no empty record.
    again = run_ingest("prune", "--apply", env=env, cwd=workdir)
    assert again.returncode == 0 and "no rows to prune" in again.stdout
    kinds = [json.loads(p.read_bytes())["kind"] for p in sorted((archive / "audit").glob("*.json"))]
    assert kinds == ["hold-add", "prune"]


def test_bad_arguments_exit_2(workdir: Path) -> None:
    env = _env(workdir)
    assert run_ingest("erase", "--reason", "x", env=env, cwd=workdir).returncode == 2
    assert (
        run_ingest("erase", "--botuser", "x", "--reason", " ", "--apply", env=env, cwd=workdir).returncode
        == 2
    )
    assert run_ingest("prune", env=env, cwd=workdir).returncode == 2
    assert run_ingest("hold", "add", "--bot", "../x", "--reason", "r", env=env, cwd=workdir).returncode == 2


def test_a_delta_log_holding_the_id_after_compaction_is_cut_back(workdir: Path) -> None:
    """delta-rs OPTIMIZE (`ingest compact`) writes string statistics into the log: a prefix of
    `botuser`. The erasure finds the id there, checkpoints and removes the older entries."""
    env = _env(workdir)
    build_archive(workdir, env)
    rows = generate_messages(BOT_A, date(2024, 1, 1), date(2024, 1, 8), seed=99)
    for row in rows:
        row["id"] += 10**9
    for row in rows[5:7]:
        subject_row(row)
    (workdir / "a2.csv").write_bytes(rows_to_csv(rows))
    assert run_ingest("import", "a2.csv", "--bot", BOT_A, env=env, cwd=workdir).returncode == 0
    assert run_ingest("compact", "--bot", BOT_A, env=env, cwd=workdir).returncode == 0
    log = workdir / "archive" / "messages" / "_delta_log"
    assert files_holding([log], [SUBJECT])  # the compaction's statistics hold it

    done = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "messages: removed 8 row(s)" in done.stdout
    assert files_holding([workdir / "archive", *workdir.glob("state.sqlite*")], [SUBJECT, SUBJECT_TEXT]) == []
    assert _subject_rows(read_archive(workdir / "archive")).height == 0
    verify = run_ingest("verify", env=env, cwd=workdir)
    assert verify.returncode == 0, verify.stdout


def test_erase_on_s3(seaweed: SeaweedS3, workdir: Path) -> None:
    env = {**_env(workdir), **seaweed.env("erase", workdir / "staging")}
    build_archive(workdir, env)
    before = seaweed.table("erase")
    done = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR-S3", "--apply", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    after = seaweed.table("erase")
    assert _subject_rows(after).height == 0 and after.height == before.height - 6
    copy = workdir / "bucket"
    client = seaweed.client()
    for key in seaweed.keys("erase/"):
        target = copy / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.get_object(Bucket=seaweed.bucket, Key=key)["Body"].read())
    assert files_holding([copy, *workdir.glob("state.sqlite*")], [SUBJECT, SUBJECT_TEXT, SUBJECT_IP]) == []
    assert not list((workdir / "staging").glob(".tmp-*"))
    verify = run_ingest("verify", env=env, cwd=workdir)
    assert verify.returncode == 0, verify.stdout
    assert "erasure: erase" in verify.stdout


def test_run_applies_the_retention_when_set(
    sim: CertainlySimulator, imap: EmbeddedImap, workdir: Path
) -> None:
    env = job_env(sim, imap, workdir, INGEST_RETENTION__DAYS="30", INGEST_AUDIT__ACTOR="cron")
    build_archive(workdir, env)  # rows of 2024: expired
    done = run_ingest("run", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "retention: pruned" in done.stdout
    assert read_archive(workdir / "archive").height == 0
    records = [json.loads(p.read_bytes()) for p in sorted((workdir / "archive" / "audit").glob("*.json"))]
    assert [(r["kind"], r["actor"]) for r in records] == [("prune", "cron")]
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 0


def test_a_second_erasure_of_a_rewritten_raw_copy_chains_its_hashes(workdir: Path) -> None:
    env = _env(workdir)
    build_archive(workdir, env)
    for who in (SUBJECT, OTHER):
        done = run_ingest("erase", "--botuser", who, "--reason", "DSR", "--apply", env=env, cwd=workdir)
        assert done.returncode == 0, done.stderr
    first, second = (
        {c["key"]: c for c in json.loads(p.read_bytes())["erasure"]["copies"]}
        for p in sorted(
            (workdir / "archive" / "manifests").glob("erasure-*.json"), key=lambda p: p.stat().st_mtime_ns
        )
    )
    raw_b = next(k for k in second if k.startswith(f"raw/bot_id={BOT_B}/"))
    assert second[raw_b]["original_sha256"] == first[raw_b]["new_sha256"]
    assert _subject_rows(read_archive(workdir / "archive"), OTHER).height == 0
    # Asked again: nothing found, and the request is on record all the same.
    again = run_ingest("erase", "--botuser", OTHER, "--reason", "DSR again", "--apply", env=env, cwd=workdir)
    assert again.returncode == 0 and "nothing of this subject in the archive" in again.stdout
    records = [json.loads(p.read_bytes()) for p in sorted((workdir / "archive" / "audit").glob("*.json"))]
    assert [r.get("found") for r in records] == [None, None, "nothing"]
    assert records[1]["subject_sha256"] == records[2]["subject_sha256"]  # the same person, provably
    verify = run_ingest("verify", env=env, cwd=workdir)
    assert verify.returncode == 0, verify.stdout
    assert verify.stdout.count("erasure: erase") == 2


def test_erasures_within_one_second_replay_in_the_order_they_were_made(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three erasures stamped with the same second, their random ids sorting against the
    order they were made (the CI flake, made certain): each rewrites raw copy B from the one
    before, and verify replays them by their sequence, clean after every one."""
    env = _env(workdir)
    build_archive(workdir, env)
    ids = iter(f"{n:016x}" for n in range(2**40, 0, -1))  # each sorts before the one before
    monkeypatch.setattr(audit, "new_id", lambda: next(ids))
    second = time.gmtime()
    monkeypatch.setattr(time, "gmtime", lambda *_: second)
    storage = as_storage(workdir / "archive")
    for who in (SUBJECT, OTHER, "never-there"):
        erase(storage, [who], [], reason="batch", actor="dpo", apply=True, salt=AUDIT_KEY)
        verify = run_ingest("verify", env=env, cwd=workdir)
        assert verify.returncode == 0, verify.stdout
    records = [
        json.loads(p.read_bytes())["erasure"] for p in (workdir / "archive" / "manifests").glob("erasure-*")
    ]
    assert [r["seq"] for r in sorted(records, key=lambda r: r["id"], reverse=True)] == [1, 2]
    assert len({r["at"] for r in records}) == 1


def test_a_raw_copy_of_held_days_holding_the_subject_refuses_the_erasure(workdir: Path) -> None:
    """The subject's rows are archived on days no hold covers, but a second report (whose
    rows of theirs were duplicates at intake) spans held days: its raw copy is held data."""
    env = _env(workdir)
    build_archive(workdir, env)
    rows = generate_messages(BOT_A, date(2024, 2, 1), date(2024, 2, 3), seed=5)
    again = [r for r in generate_messages(BOT_A, date(2024, 1, 1), date(2024, 1, 8))[10:13]]
    for row in again:
        subject_row(row)
    (workdir / "a3.csv").write_bytes(rows_to_csv(again + rows))
    imported = run_ingest("import", "a3.csv", "--bot", BOT_A, env=env, cwd=workdir)
    assert imported.returncode == 0 and "3 duplicates" in imported.stdout, imported.stdout
    placed = run_ingest(
        "hold", "add", "--bot", BOT_A, "--from", "2024-02-01", "--reason", "tax audit", env=env, cwd=workdir
    )
    assert placed.returncode == 0, placed.stderr
    refused = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", env=env, cwd=workdir)
    assert refused.returncode == 1
    assert "a report of days under legal hold" in refused.stderr and "tax audit" in refused.stderr


def test_a_raw_copy_holding_the_id_outside_their_records_loses_only_their_record(workdir: Path) -> None:
    """Another user quoted the subject's id in a message: that record is someone else's and
    stays, byte for byte; only the subject's own record (matched by value) goes."""
    env = _env(workdir)
    rows = generate_messages(BOT_A, date(2024, 2, 1), date(2024, 2, 3))
    subject_row(rows[3])
    rows[5]["message"] = f"please forget user {SUBJECT}"  # someone else's row naming them
    (workdir / "quoted.csv").write_bytes(rows_to_csv(rows))
    imported = run_ingest("import", "quoted.csv", "--bot", BOT_A, env=env, cwd=workdir)
    assert imported.returncode == 0, imported.stderr
    done = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR-q", "--apply", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "(file removed)" not in done.stdout and f"1 record(s): id {rows[3]['id']}" in done.stdout
    raw = next((workdir / "archive" / "raw").rglob("*.csv")).read_bytes()
    assert raw == rows_to_csv([r for n, r in enumerate(rows) if n != 3])  # every other byte as it was
    verify = run_ingest("verify", env=env, cwd=workdir)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _changed(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    """Files changed or removed, and files added outside the audit log."""
    changed = [k for k, v in before.items() if after.get(k) != v]
    return changed + [k for k in after if k not in before and not k.startswith("audit/")]


@pytest.mark.parametrize("needle", ["4242", "2024", "00"])
def test_an_id_found_only_as_a_substring_changes_no_byte_of_the_archive(workdir: Path, needle: str) -> None:
    """ "4242" is inside the subject's id, "2024" in every timestamp, "00" in ids, times and
    text: none is a bot user's id. The request is on record; nothing else moves."""
    env = _env(workdir)
    build_archive(workdir, env)
    archive = workdir / "archive"
    assert files_holding([archive], [needle])
    before = _hashes(archive)
    dry = run_ingest("erase", "--botuser", needle, "--reason", "DSR", env=env, cwd=workdir)
    assert dry.returncode == 0 and "raw and quarantined files to rewrite: 0" in dry.stdout, dry.stdout
    done = run_ingest("erase", "--botuser", needle, "--reason", "DSR", "--apply", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "nothing of this subject in the archive" in done.stdout
    after = _hashes(archive)
    assert _changed(before, after) == []
    records = [json.loads(p.read_bytes()) for p in sorted((archive / "audit").glob("*.json"))]
    assert [(r["kind"], r["found"]) for r in records] == [("erase", "nothing")]
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 0


def test_the_dry_run_names_each_files_records_and_bot_limits_the_quarantine_too(workdir: Path) -> None:
    env = _env(workdir)
    build_archive(workdir, env)
    archive = workdir / "archive"
    dry = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", env=env, cwd=workdir)
    assert dry.returncode == 0, dry.stderr
    # B's raw copy (4 records of theirs, one refused) and its rejected rows; A's raw copy.
    said = " ".join(dry.stdout.split())  # the console wraps long lines
    assert "raw and quarantined files to rewrite: 3" in said, said
    assert "rejected_rows.parquet: 1 record(s) (the whole file: every record in it is theirs): row 24" in said
    assert f"raw/bot_id={BOT_B}/" in said and ": 4 record(s): id " in said

    only_a = run_ingest(
        "erase", "--botuser", SUBJECT, "--bot", BOT_A, "--reason", "DSR", "--apply", env=env, cwd=workdir
    )
    assert only_a.returncode == 0, only_a.stderr
    assert "quarantine/" not in only_a.stdout and f"raw/bot_id={BOT_B}" not in only_a.stdout
    assert files_holding([archive / "raw" / f"bot_id={BOT_A}"], [SUBJECT_TEXT]) == []
    assert files_holding([archive / "quarantine"], [SUBJECT])  # bot B's: not asked for
    assert files_holding([archive / "raw" / f"bot_id={BOT_B}"], [SUBJECT])
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 0


def test_a_copy_that_cannot_be_read_fails_the_erasure_naming_it_and_nothing_changes(workdir: Path) -> None:
    env = _env(workdir)
    build_archive(workdir, env)
    archive = workdir / "archive"
    rejected = next(archive.glob("quarantine/*/rejected_rows.parquet"))
    rejected.write_bytes(rejected.read_bytes()[: len(rejected.read_bytes()) // 2])  # truncated
    before = _hashes(archive)
    failed = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply", env=env, cwd=workdir)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert str(rejected.relative_to(archive)) in failed.stderr and "Traceback" not in failed.stderr
    assert _changed(before, _hashes(archive)) == []
    assert not list((archive / "audit").glob("*.json"))  # no record of an erasure that did not happen


def test_a_copy_reading_otherwise_than_planned_is_undone_without_a_record(workdir: Path) -> None:
    """The rewrite finds other than the plan said (the file changed, or a plan removing a
    file whole that holds someone else's record): what was written is undone, nothing else
    moved, no erasure or audit record."""
    env = _env(workdir)
    build_archive(workdir, env)
    archive = workdir / "archive"
    storage = as_storage(archive)
    before = _hashes(archive)
    for spoil in ("count", "whole"):
        found = erase(storage, [SUBJECT], [], reason="DSR", actor="dpo", apply=False)
        assert isinstance(found, Plan) and found.files and found.copies
        copy = next(c for c in found.copies if c.key.startswith("raw/"))
        if spoil == "count":
            copy.rows_removed += 1
        else:
            copy.removed = True
        with pytest.raises(OutputError, match=copy.key):
            forget(storage, SubjectSelection((SUBJECT,)), found, actor="dpo", reason="DSR")
        assert _changed(before, _hashes(archive)) == []
        assert not (archive / "forgetting").exists() or not list((archive / "forgetting").rglob("*.*"))
        assert not list((archive / "audit").glob("*.json"))
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 0


def test_subject_access_finds_in_raw_copies_and_quarantine_what_erasure_removes(workdir: Path) -> None:
    env = _env(workdir, INGEST_EXPORT__SIGNING_KEY_FILE=str(workdir / "signer.key"))
    build_archive(workdir, env)
    assert run_ingest("keygen", "--out", "signer.key", env=env, cwd=workdir).returncode == 0
    done = run_ingest(
        "export", "--botuser", SUBJECT, "--format", "jsonl", "--out", "dsr", env=env, cwd=workdir
    )
    assert done.returncode == 0, done.stderr
    bundle = workdir / "dsr"
    checked = run_ingest("verify-export", str(bundle), "--public-key", "signer.key.pub", env=env, cwd=workdir)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = {
        store: [json.loads(line) for line in (bundle / "copies" / f"{store}.jsonl").read_text().splitlines()]
        for store in ("raw", "quarantine")
    }
    assert all(json.loads(r["record"]["botuser"])["id"] == SUBJECT for v in lines.values() for r in v)
    told = sorted((r["key"], r["record"]["id"]) for r in lines["raw"])
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    assert {c["path"]: c["records"] for c in manifest["copies"]} == {
        "copies/raw.jsonl": 7,
        "copies/quarantine.jsonl": 1,
    }
    assert "copies/raw.jsonl: 7 record(s)" in (bundle / "SUMMARY.txt").read_text()

    dry = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", env=env, cwd=workdir)
    to_erase = sorted(
        (line.split(":")[0].strip(), record.strip().removeprefix("id "))
        for line in dry.stdout.splitlines()
        if line.startswith("  raw/")
        for record in line.split(": ", 2)[2].split(",")
    )
    assert told == [(k, str(i)) for k, i in to_erase]  # what they are told is what goes

    erased = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply", env=env, cwd=workdir)
    assert erased.returncode == 0, erased.stderr
    again = run_ingest(
        "export", "--botuser", SUBJECT, "--format", "jsonl", "--out", "dsr2", env=env, cwd=workdir
    )
    assert again.returncode == 0, again.stderr
    assert not (workdir / "dsr2" / "copies").exists()
    assert "- none found." in (workdir / "dsr2" / "SUMMARY.txt").read_text()


def test_a_quarantined_file_of_an_unknown_bot_is_said_unsearched_under_bot_and_erased_without(
    workdir: Path,
) -> None:
    env = _env(workdir, INGEST_EXPORT__SIGNING_KEY_FILE=str(workdir / "signer.key"))
    build_archive(workdir, env)
    rows = generate_messages(BOT_A, date(2024, 3, 1), date(2024, 3, 1))
    subject_row(rows[0])
    sha = "ab" * 32  # a report matched to no window: no raw copy, no commit record, no bot
    quarantine_file(workdir / "archive", sha, rows_to_csv(rows), "mystery.csv", "unmatched: no window", {})
    key = f"quarantine/{sha}/original-mystery.csv"
    assert run_ingest("keygen", "--out", "signer.key", env=env, cwd=workdir).returncode == 0

    exported = run_ingest(
        "export",
        "--botuser",
        SUBJECT,
        "--bot",
        BOT_A,
        "--format",
        "jsonl",
        "--out",
        "dsr",
        env=env,
        cwd=workdir,
    )
    assert exported.returncode == 0, exported.stderr
    assert f"{key}: not searched" in (workdir / "dsr" / "SUMMARY.txt").read_text()
    limited = run_ingest(
        "erase", "--botuser", SUBJECT, "--bot", BOT_A, "--reason", "DSR", "--apply", env=env, cwd=workdir
    )
    assert limited.returncode == 0, limited.stderr
    assert f"not searched (its bot is unknown, and --bot limits the search): {key}" in limited.stdout
    assert files_holding([workdir / "archive" / key], [SUBJECT_TEXT])

    everywhere = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply", env=env, cwd=workdir)
    assert everywhere.returncode == 0, everywhere.stderr
    assert (workdir / "archive" / key).read_bytes() == rows_to_csv(
        rows[1:]
    )  # theirs gone, others as they were
    assert files_holding([workdir / "archive", *workdir.glob("state.sqlite*")], [SUBJECT_TEXT]) == []
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 0


def test_a_refused_file_quoting_their_record_fails_loudly_then_its_reasons_are_withheld(
    workdir: Path,
) -> None:
    """A headerless report is refused whole; its reason (reason.json and the state store)
    quotes its first line: the subject's record. The erasure fails naming the original (it
    cannot be read as records), never says "nothing found"; once a person removed it, the
    erasure withholds every reason quoting the id."""
    env = _env(workdir)
    rows = generate_messages(BOT_A, date(2024, 1, 1), date(2024, 1, 1))
    subject_row(rows[0])
    (workdir / "nohdr.csv").write_bytes(rows_to_csv(rows).split(b"\r\n", 1)[1])
    run_ingest("import", "nohdr.csv", "--bot", BOT_A, env=env, cwd=workdir)
    archive = workdir / "archive"
    assert files_holding([archive, workdir / "state.sqlite"], [SUBJECT])

    refused = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR-17", "--apply", env=env, cwd=workdir)
    assert refused.returncode == 1 and "original-nohdr.csv holds this id" in refused.stderr
    assert "Traceback" not in refused.stderr and "nothing of this subject" not in refused.stdout

    next(archive.rglob("original-nohdr.csv")).unlink()  # the person's decision
    dry = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR-17", env=env, cwd=workdir)
    assert "recorded reasons (reason.json, state store) to withhold (they quote this id): 2" in dry.stdout
    done = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR-17", "--apply", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "recorded reasons (reason.json, state store) withheld: 2" in done.stdout
    assert "nothing of this subject" not in done.stdout
    state = [p for p in workdir.glob("state.sqlite*") if p.is_file()]
    assert files_holding([archive, *state], [SUBJECT, SUBJECT_TEXT]) == []
    assert "withheld by erasure" in json.loads(next(archive.rglob("reason.json")).read_text())["reason"]


def test_an_unknown_bot_or_a_spaced_id_is_exit_2_never_nothing_found(workdir: Path) -> None:
    """A typo in --bot searched nothing and said "nothing of this subject": now exit 2 naming
    it and the bots the archive knows. An id with spaces around it is refused, not stripped."""
    env = _env(workdir)
    build_archive(workdir, env)
    for extra in ([], ["--apply"]):
        typo = run_ingest(
            "erase",
            "--botuser",
            SUBJECT,
            "--bot",
            "bot-typo",
            "--reason",
            "DSR",
            *extra,
            env=env,
            cwd=workdir,
        )
        assert typo.returncode == 2 and "--bot bot-typo: no such bot in the archive" in typo.stderr
        assert BOT_A in typo.stderr and BOT_B in typo.stderr and "Traceback" not in typo.stderr
        spaced = run_ingest(
            "erase", "--botuser", f" {SUBJECT}", "--reason", "DSR", *extra, env=env, cwd=workdir
        )
        assert spaced.returncode == 2 and "has spaces around it" in spaced.stderr
    assert files_holding([workdir / "archive"], [SUBJECT])  # nothing changed


def test_a_dry_run_leaves_an_interrupted_erasure_pending_and_says_so(workdir: Path) -> None:
    """A dry run changes nothing, not even finishing a killed erasure: it says the erasure is
    pending and that the next --apply finishes it; the --apply then does."""
    env = _env(workdir)
    build_archive(workdir, env)
    archive = workdir / "archive"
    killed = run_ingest(
        "erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply",
        env={**env, "INGEST_CRASH_AT": "forget_in_swap"}, cwd=workdir,
    )  # fmt: skip
    assert killed.returncode != 0
    before = _hashes(archive)
    dry = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", env=env, cwd=workdir)
    assert dry.returncode == 0, dry.stderr
    assert "was interrupted and is pending: the next --apply" in dry.stdout and "dry run" in dry.stdout
    assert _hashes(archive) == before
    done = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply", env=env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert files_holding([archive], [SUBJECT, SUBJECT_TEXT]) == []
    assert run_ingest("verify", env=env, cwd=workdir).returncode == 0


def test_a_file_refused_whole_at_import_is_of_the_bot_named_and_erased_under_its_bot(workdir: Path) -> None:
    """`ingest import --bot A` of a file refused whole (`;` separated): its reason.json and
    the state store name bot A, so `erase --bot A` searches it (not "unknown bot")."""
    env = _env(workdir)
    rows = generate_messages(BOT_A, date(2024, 1, 1), date(2024, 1, 1))
    subject_row(rows[2])
    records = list(csv.reader(io.StringIO(rows_to_csv(rows).decode(), newline="")))
    semi = io.StringIO(newline="")
    csv.writer(semi, delimiter=";", lineterminator="\r\n").writerows(records)
    (workdir / "semi.csv").write_text(semi.getvalue(), newline="")
    run_ingest("import", "semi.csv", "--bot", BOT_A, env=env, cwd=workdir)
    reason = json.loads(next((workdir / "archive").rglob("reason.json")).read_text())
    assert reason["bot_id"] == BOT_A
    dry = run_ingest("erase", "--botuser", SUBJECT, "--bot", BOT_A, "--reason", "DSR", env=env, cwd=workdir)
    assert dry.returncode == 0, dry.stderr
    assert "not searched" not in dry.stdout and "original-semi.csv: 1 record(s)" in dry.stdout
    done = run_ingest(
        "erase", "--botuser", SUBJECT, "--bot", BOT_A, "--reason", "DSR", "--apply", env=env, cwd=workdir
    )
    assert done.returncode == 0, done.stderr
    assert files_holding([workdir / "archive"], [SUBJECT, SUBJECT_TEXT]) == []


def test_subject_access_under_an_unknown_bot_is_exit_2(workdir: Path) -> None:
    env = _env(workdir, INGEST_EXPORT__SIGNING_KEY_FILE=str(workdir / "signer.key"))
    build_archive(workdir, env)
    assert run_ingest("keygen", "--out", "signer.key", env=env, cwd=workdir).returncode == 0
    typo = run_ingest(
        "export", "--botuser", SUBJECT, "--bot", "bot-typo", "--out", "dsr", env=env, cwd=workdir
    )  # fmt: skip
    assert typo.returncode == 2 and "--bot bot-typo: no such bot in the archive" in typo.stderr
    assert not (workdir / "dsr").exists()
