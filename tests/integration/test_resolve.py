"""``ingest resolve`` in process, on a real local archive (Delta tables) and state store: the
rules the end-to-end tests (tests/e2e/test_window_conflict.py) do not reach cheaply.

A report naming no bot closed the window; the vendor's report naming it came second and is
kept aside in conflict. Held rows are never removed; a crash after the removal is finished
by running the command again; the archive ends exactly the vendor's rows.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from ingest.archive import holds
from ingest.archive.storage import LocalStorage
from ingest.errors import ConfigError, UnderLegalHold
from ingest.mail.attachments import parse_email
from ingest.ops.resolve import resolve
from ingest.ops.verify import verify_archive
from ingest.pipeline.intake import archive_email
from ingest.pipeline.summary import RunSummary
from ingest.state.store import Store
from tests.support.archive import assert_archive_matches, read_archive
from tests.support.mail import RECIPIENT, accept_windows, email_with, report, report_email, truth_of

BOT = "4d2a0000-0000-4000-8000-0000000000c3"
START, END = date(2024, 9, 1), date(2024, 9, 4)
OURS = (RECIPIENT,)
ANONYMOUS_CSV = f"id,timestamp,message\r\n1,{START}T10:00:00Z,X\r\n".encode()


@pytest.fixture
def conflict(tmp_path: Path) -> tuple[Store, LocalStorage, dict[str, str]]:
    """A window closed by an anonymous report (one row, id 1), then the vendor's named one."""
    rep = report(BOT, START, END)
    store = Store.open(tmp_path / "state.sqlite")
    storage = LocalStorage(tmp_path / "archive")
    accept_windows(store, rep)
    anonymous = email_with(subject="Your report", attachments=[("export.csv", ANONYMOUS_CSV, "text/csv")])
    first = RunSummary()
    assert archive_email(storage, store, parse_email(anonymous), first, OURS) == "archived"
    second = RunSummary()
    assert archive_email(storage, store, parse_email(report_email(rep)), second, OURS) == "unmatched"
    assert any("conflict: window 1" in p for p in second.problems)
    shas = {a["filename"]: a["sha256"] for a in store.window_attachments(1)}
    return store, storage, {"anonymous": shas["export.csv"], "vendor": shas[rep.filename]}


def test_held_rows_are_never_removed_until_the_hold_is_lifted(
    conflict: tuple[Store, LocalStorage, dict[str, str]],
) -> None:
    store, out, sha = conflict
    hold = holds.place(out, BOT, START, END, reason="case 17", actor="t")
    with pytest.raises(UnderLegalHold, match="legal hold"):
        resolve(out, store, 1, sha["vendor"], reason="vendor's", actor="t", apply=True)
    assert {a["outcome"] for a in store.window_attachments(1)} == {"archived", "conflict"}  # unchanged
    holds.lift(out, hold.id, reason="case closed", actor="t")
    done = resolve(out, store, 1, sha["vendor"], reason="vendor's", actor="t", apply=True)
    assert done.applied and done.rows_removed == 1
    assert_archive_matches(out.root, truth_of(report(BOT, START, END)))
    assert verify_archive(out).ok
    assert store.window(1).rows_archived == len(report(BOT, START, END).rows)  # not the anonymous 1


def test_a_resolution_killed_after_the_removal_is_finished_by_running_it_again(
    conflict: tuple[Store, LocalStorage, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, out, sha = conflict
    import ingest.ops.resolve as module

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands for SIGKILL after the rows left the table

    monkeypatch.setattr(module, "_archive_kept", killed)
    with pytest.raises(KeyboardInterrupt):
        resolve(out, store, 1, sha["vendor"], reason="vendor's", actor="t", apply=True)
    monkeypatch.undo()
    # The anonymous report is settled; the vendor's is still in conflict: run it again.
    again = resolve(out, store, 1, sha["vendor"], reason="vendor's", actor="t", apply=True)
    assert again.applied
    assert_archive_matches(out.root, truth_of(report(BOT, START, END)))
    assert {a["outcome"] for a in store.window_attachments(1)} == {"archived", "removed"}


def test_keep_must_name_exactly_one_of_the_windows_reports(
    conflict: tuple[Store, LocalStorage, dict[str, str]],
) -> None:
    store, out, sha = conflict
    for keep in ("", "abc", sha["vendor"][:7], "0" * 64):
        with pytest.raises(ConfigError, match="--keep"):
            resolve(out, store, 1, keep, reason="x", actor="t", apply=False)
    with pytest.raises(ConfigError, match="--reason"):
        resolve(out, store, 1, sha["vendor"], reason=" ", actor="t", apply=True)
    with pytest.raises(ConfigError, match="--window 2"):
        resolve(out, store, 2, sha["vendor"], reason="x", actor="t", apply=True)


@pytest.mark.parametrize("keep", ["vendor", "anonymous"])
def test_a_rejected_report_arriving_again_is_never_archived_again(
    conflict: tuple[Store, LocalStorage, dict[str, str]], keep: str
) -> None:
    store, out, sha = conflict
    resolve(out, store, 1, sha[keep], reason="the genuine one", actor="t", apply=True)
    before = read_archive(out.root).sort("id")
    other = "anonymous" if keep == "vendor" else "vendor"
    rep = report(BOT, START, END)
    name, data = ("export.csv", ANONYMOUS_CSV) if other == "anonymous" else (rep.filename, rep.csv)
    again = email_with(attachments=[(name, data, "text/csv")])  # the same bytes, a new email
    summary = RunSummary()
    assert archive_email(out, store, parse_email(again), summary, OURS) == "archived"  # handled
    assert summary.reports_duplicate == 1 and summary.reports_archived == 0
    assert read_archive(out.root).sort("id").equals(before)
    settled = store.attachment(sha[other])
    assert settled is not None and settled["outcome"] in ("removed", "rejected")
