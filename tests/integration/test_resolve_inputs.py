"""``ingest resolve`` checks its inputs before it changes anything, and a run killed halfway
is finished truthfully by the next (issue 23). The real CLI (``python -m ingest``, killed by
``INGEST_CRASH_AT``) on a real local archive and state store; the conflict is built in
process as in tests/integration/test_resolve.py.

* the kept report's quarantined original missing, or changed: one line, exit 1, nothing
  changed (also in a dry run);
* rewritten by an erasure (named in its erasure record): archived as rewritten, the erased
  rows never come back;
* a kept report that cannot be archived for the window: refused before the other's rows go;
* killed after the commit or after the removal: the next run counts the window's rows and
  names the rejected report in its audit record.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from ingest.archive.storage import LocalStorage
from ingest.mail.attachments import parse_email
from ingest.ops.verify import verify_archive
from ingest.pipeline.intake import archive_email
from ingest.pipeline.summary import RunSummary
from ingest.state.store import Store
from tests.support.archive import assert_archive_matches, read_archive
from tests.support.job import run_ingest
from tests.support.mail import RECIPIENT, accept_windows, email_with, report, report_email, truth_of

BOT = "4d2a0000-0000-4000-8000-0000000000c4"
START, END = date(2024, 9, 1), date(2024, 9, 4)
ANONYMOUS_CSV = f"id,timestamp,message\r\n1,{START}T10:00:00Z,X\r\n".encode()


class Rig:
    """A window closed by an anonymous report, the vendor's report aside in conflict."""

    def __init__(self, workdir: Path, kept_csv: bytes | None = None) -> None:
        self.workdir = workdir
        self.report = report(BOT, START, END)
        store = Store.open(workdir / "state.sqlite")
        storage = LocalStorage(workdir / "archive")
        accept_windows(store, self.report)
        anonymous = email_with(subject="Your report", attachments=[("export.csv", ANONYMOUS_CSV, "text/csv")])
        assert archive_email(storage, store, parse_email(anonymous), RunSummary(), (RECIPIENT,)) == "archived"
        second = (
            report_email(self.report)
            if kept_csv is None
            else email_with(attachments=[(self.report.filename, kept_csv, "text/csv")])
        )
        assert archive_email(storage, store, parse_email(second), RunSummary(), (RECIPIENT,)) == "unmatched"
        [self.kept] = [a["sha256"] for a in store.window_attachments(1) if a["outcome"] == "conflict"]
        store.close()

    def cli(self, *args: str, crash: str | None = None) -> tuple[int, str]:
        env = {
            "INGEST_OUTPUT__ROOT": str(self.workdir / "archive"),
            "INGEST_STATE__PATH": str(self.workdir / "state.sqlite"),
            "INGEST_LOG_FORMAT": "text",
            "COLUMNS": "300",
            "INGEST_CRASH_AT": crash,
        }
        done = run_ingest(*args, env=env, cwd=self.workdir)
        return done.returncode, done.stdout + done.stderr

    def resolve(self, *extra: str, crash: str | None = None) -> tuple[int, str]:
        return self.cli("resolve", "--window", "1", "--keep", self.kept[:12], *extra, crash=crash)

    def outcomes(self) -> dict[str, str]:
        store = Store.open(self.workdir / "state.sqlite")
        try:
            return {str(a["sha256"]): str(a["outcome"]) for a in store.window_attachments(1)}
        finally:
            store.close()

    def original(self) -> Path:
        [found] = (self.workdir / "archive" / "quarantine" / self.kept).glob("original-*")
        return found


@pytest.mark.parametrize("damage", ["missing", "changed"])
def test_a_missing_or_changed_quarantined_original_is_refused_in_one_line_and_nothing_changes(
    tmp_path: Path, damage: str
) -> None:
    rig = Rig(tmp_path)
    original = rig.original()
    if damage == "missing":
        original.unlink()
    else:
        original.write_bytes(original.read_bytes() + b"99,2024-09-02T10:00:00Z,added\r\n")
    before, rows = rig.outcomes(), read_archive(tmp_path / "archive").height
    for args in ((), ("--reason", "vendor's", "--apply")):
        code, said = rig.resolve(*args)
        assert code == 1, said
        assert "Traceback" not in said
        assert f"quarantine/{rig.kept}/original-" in said and "nothing changed" in said
    assert rig.outcomes() == before
    assert read_archive(tmp_path / "archive").height == rows


def test_a_kept_report_an_erasure_rewrote_is_archived_as_rewritten_and_the_erased_rows_stay_gone(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    botuser = str(next(r["botuser"]["id"] for r in rig.report.rows if r.get("botuser")))
    code, said = rig.cli("erase", "--botuser", botuser, "--reason", "gdpr", "--apply")
    assert code == 0, said
    code, said = rig.resolve("--reason", "vendor's", "--apply")
    assert code == 0, said
    kept_rows = {
        k: r for k, r in truth_of(rig.report).items() if str((r.get("botuser") or {}).get("id")) != botuser
    }
    assert len(kept_rows) < len(rig.report.rows)
    assert_archive_matches(tmp_path / "archive", kept_rows)
    outcomes = rig.outcomes()
    assert outcomes[rig.kept] == "rejected"  # the recorded bytes held the erased rows
    assert sorted(outcomes.values()) == ["archived", "rejected", "removed"]
    assert verify_archive(LocalStorage(tmp_path / "archive")).ok
    code, said = rig.resolve("--reason", "again", "--apply")
    assert code == 2 and "no reports in conflict" in said and "Traceback" not in said


def test_a_kept_report_that_cannot_be_archived_for_the_window_is_refused_before_anything_goes(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, kept_csv=b"id,timestamp,message\r\n9,2023-01-01T10:00:00Z,OUT\r\n")
    before = rig.outcomes()
    code, said = rig.resolve("--reason", "vendor's", "--apply")
    assert code == 1 and "cannot be archived for window 1" in said and "Traceback" not in said
    assert rig.outcomes() == before
    assert read_archive(tmp_path / "archive")["id"].cast(str).to_list() == ["1"]  # the other stays


@pytest.mark.parametrize("crash", ["after_manifest", "after_raw", "forget_before_audit"])
def test_a_resolution_killed_halfway_is_finished_truthfully_by_the_next_run(
    tmp_path: Path, crash: str
) -> None:
    rig = Rig(tmp_path)
    code, _ = rig.resolve("--reason", "vendor's", "--apply", crash=crash)
    assert code != 0
    code, said = rig.resolve("--reason", "vendor's", "--apply")
    assert code == 0, said
    assert_archive_matches(tmp_path / "archive", truth_of(rig.report))
    store = Store.open(tmp_path / "state.sqlite")
    assert store.window(1).rows_archived == len(rig.report.rows)
    store.close()
    audits = [json.loads(p.read_text()) for p in sorted((tmp_path / "archive" / "audit").rglob("*.json"))]
    last = [a for a in audits if a.get("kind") == "resolve"][-1]
    assert [r["filename"] for r in last["rejected"]] == ["export.csv"]
    assert verify_archive(LocalStorage(tmp_path / "archive")).ok
