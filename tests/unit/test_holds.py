"""Legal holds on a real local archive: a raw copy or quarantined file is held on every day of
its report (its window too, not only the days it archived rows on), an unknown bot or day
counts as held; hold files are write-once and match the audit log, and a hold whose file
was deleted by hand still holds."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.archive import audit
from ingest.archive.holds import (
    Hold,
    active,
    check_against_audit,
    copy_hold,
    covering,
    lift,
    lifted_key,
    place,
    source_spans,
)
from ingest.archive.layout import hold_key, manifest_key, reasons_key
from ingest.archive.manifests import read_manifests
from ingest.archive.storage import LocalStorage
from ingest.errors import ConfigError, OutputError
from ingest.records import as_json

BOT = "bot-a"
SHA = "ab" * 32
RAW = f"raw/bot_id={BOT}/{SHA}.csv"
#: A report of ten days whose rows (after duplicates) landed on its first and last day only.
WINDOW = (date(2024, 3, 1), date(2024, 3, 10))


def _archive(tmp_path: Path, window: bool = True) -> LocalStorage:
    storage = LocalStorage(tmp_path / "archive")
    doc = {
        "bot_id": BOT,
        "attachment": {"sha256": SHA, "name": "r.csv"},
        "files": [{"path": f"messages/bot_id={BOT}/date={day.isoformat()}/part-x.parquet"} for day in WINDOW],
        **(
            {"window": {"bot_id": BOT, "from": WINDOW[0].isoformat(), "to": WINDOW[1].isoformat()}}
            if window
            else {}
        ),
    }
    path = storage.path(manifest_key(SHA))
    path.parent.mkdir(parents=True)
    path.write_bytes(as_json(doc))
    return storage


def _hold(day_from: date | None, day_to: date | None, bot: str = BOT) -> Hold:
    return Hold("h1", bot, day_from, day_to, "case 17")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(-20, 30), length=st.integers(0, 3))
def test_a_raw_copy_is_held_on_every_day_of_its_window(tmp_path: Path, offset: int, length: int) -> None:
    storage = _archive(tmp_path / str(offset * 10 + length))
    first = WINDOW[0] + timedelta(days=offset)
    last = first + timedelta(days=length)
    spans = source_spans(read_manifests(storage))

    held = copy_hold(storage, RAW, [_hold(first, last)], spans)

    assert (held is not None) == (last >= WINDOW[0] and first <= WINDOW[1])
    assert copy_hold(storage, RAW, [_hold(first, last, bot="bot-b")], spans) is None


def test_a_middle_day_of_the_window_holds_the_copy_though_no_row_was_archived_on_it(tmp_path: Path) -> None:
    storage = _archive(tmp_path)
    middle = date(2024, 3, 5)

    assert copy_hold(storage, RAW, [_hold(middle, middle)], source_spans(read_manifests(storage))) is not None


def test_a_quarantined_file_is_held_by_its_sources_days(tmp_path: Path) -> None:
    storage = _archive(tmp_path)
    spans = source_spans(read_manifests(storage))
    rejected = f"quarantine/{SHA}/rejected_rows.parquet"

    assert copy_hold(storage, rejected, [_hold(date(2024, 3, 4), None)], spans) is not None
    assert copy_hold(storage, rejected, [_hold(date(2024, 4, 1), None)], spans) is None
    assert copy_hold(storage, rejected, [_hold(None, None, bot="bot-b")], spans) is None


def test_a_whole_refused_file_is_held_by_its_window_or_when_nothing_is_known(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "archive")
    matched, unmatched = "cd" * 32, "ef" * 32
    for sha, doc in (
        (matched, {"reason": "bad", "window": {"bot_id": BOT, "from": "2024-03-01", "to": "2024-03-10"}}),
        (unmatched, {"reason": "unmatched: no window"}),
    ):
        path = storage.path(reasons_key(sha))
        path.parent.mkdir(parents=True)
        path.write_bytes(as_json(doc))
    elsewhere = [_hold(date(2025, 1, 1), None, bot="bot-b")]

    assert copy_hold(storage, f"quarantine/{matched}/original-x.csv", [_hold(date(2024, 3, 9), None)], {})
    assert copy_hold(storage, f"quarantine/{matched}/original-x.csv", elsewhere, {}) is None
    # Nobody knows whose or which days: any hold keeps it (never destroyed on a guess).
    assert copy_hold(storage, f"quarantine/{unmatched}/original-x.json", elsewhere, {}) is not None


def test_hold_files_are_the_audit_logs_and_a_deleted_one_still_holds(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "archive")
    kept = place(storage, BOT, date(2024, 1, 1), None, reason="case 17", actor="dpo")
    gone = place(storage, "bot-b", None, None, reason="case 18", actor="dpo")
    assert check_against_audit(storage, audit.records(storage)) == []

    storage.path(hold_key(gone.id)).unlink()  # by hand, not `ingest hold remove`
    changed = json.loads(storage.path(hold_key(kept.id)).read_bytes())
    changed["to"] = "2024-01-02"
    storage.path(hold_key(kept.id)).write_bytes(as_json(changed))

    assert sorted(check_against_audit(storage, audit.records(storage))) == sorted(
        [
            f"holds/{kept.id}.json: differs from the audit log's record of this hold (changed)",
            f"holds/{gone.id}.json: missing, but the audit log places this hold and never lifts it",
        ]
    )
    assert gone.id in {h.id for h in active(storage)}  # the audit log still places it


def test_a_hold_file_the_audit_log_does_not_record_is_named(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "archive")
    forged = storage.path(hold_key("f00df00df00df00d"))
    forged.parent.mkdir(parents=True)
    forged.write_bytes(as_json(_hold(None, None).as_json() | {"id": "f00df00df00df00d"}))

    assert check_against_audit(storage, audit.records(storage)) == [
        "holds/f00df00df00df00d.json: a hold the audit log does not record (not by `ingest hold add`)"
    ]


def test_lifting_keeps_the_hold_file_and_writes_its_lifting_once(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "archive")
    hold = place(storage, BOT, None, None, reason="case 17", actor="dpo")
    placed = storage.path(hold_key(hold.id)).read_bytes()

    lift(storage, hold.id, reason="closed", actor="dpo")

    assert storage.path(hold_key(hold.id)).read_bytes() == placed  # write-once: never changed
    assert json.loads(storage.path(lifted_key(hold.id)).read_bytes())["reason"] == "closed"
    assert active(storage) == []
    assert check_against_audit(storage, audit.records(storage)) == []
    with pytest.raises(ConfigError, match="no legal hold"):
        lift(storage, hold.id, reason="again", actor="dpo")


def test_a_lifting_killed_after_its_audit_record_is_finished_by_lifting_again(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "archive")
    hold = place(storage, BOT, None, None, reason="case 17", actor="dpo")
    lift(storage, hold.id, reason="closed", actor="dpo")
    storage.path(lifted_key(hold.id)).unlink()  # as if killed between the record and the file

    assert "hold remove" in " ".join(check_against_audit(storage, audit.records(storage)))
    assert active(storage) == []  # the audit log lifts it: not in force

    lift(storage, hold.id, reason="closed", actor="dpo")  # as the verify line says: finishes it

    assert storage.path(lifted_key(hold.id)).exists()
    assert check_against_audit(storage, audit.records(storage)) == []
    assert [r.entry.kind for r in audit.records(storage)] == ["hold-add", "hold-remove"]


@pytest.mark.parametrize("reason", ["", "   ", "\t\n"])
def test_lifting_a_hold_needs_a_reason(tmp_path: Path, reason: str) -> None:
    storage = LocalStorage(tmp_path / "archive")
    hold = place(storage, BOT, None, None, reason="case 17", actor="dpo")

    with pytest.raises(ConfigError, match="needs a --reason"):
        lift(storage, hold.id, reason=reason, actor="dpo")

    assert [h.id for h in active(storage)] == [hold.id]


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"id": "x"}'])
def test_an_unreadable_hold_file_stops_an_erasure_or_prune_in_one_line(
    tmp_path: Path, content: bytes
) -> None:
    storage = LocalStorage(tmp_path / "archive")
    broken = storage.path(hold_key("b0rken"))
    broken.parent.mkdir(parents=True)
    broken.write_bytes(content)

    with pytest.raises(
        OutputError, match=r"holds/b0rken.json: unreadable legal hold .* nothing is pruned or erased"
    ):
        active(storage)


def test_a_hold_file_narrowed_by_hand_still_holds_every_day_its_record_holds(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "archive")
    hold = place(storage, BOT, date(2024, 1, 1), None, reason="case 17", actor="dpo")
    narrowed = json.loads(storage.path(hold_key(hold.id)).read_bytes()) | {
        "from": "2029-01-01",
        "bot_id": "bot-z",
    }
    storage.path(hold_key(hold.id)).write_bytes(as_json(narrowed))

    in_force = active(storage)

    assert covering(in_force, BOT, date(2024, 3, 1))  # the record's days
    assert covering(in_force, "bot-z", date(2029, 3, 1))  # and the file's: the union
    assert len(check_against_audit(storage, audit.records(storage))) == 1


def test_a_forged_lifting_file_lifts_nothing_and_a_real_lifting_still_works(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "archive")
    hold = place(storage, BOT, None, None, reason="case 17", actor="dpo")
    storage.path(lifted_key(hold.id)).write_bytes(as_json({"id": hold.id, "reason": "forged"}))

    assert [h.id for h in active(storage)] == [hold.id]  # no hold-remove record: still in force
    assert check_against_audit(storage, audit.records(storage)) == [
        f"holds/{hold.id}.lifted.json: a lifting the audit log does not record (not by `ingest hold remove`)"
    ]

    lift(storage, hold.id, reason="case closed", actor="dpo")

    assert active(storage) == []
    assert [r.entry.kind for r in audit.records(storage)] == ["hold-add", "hold-remove"]


@pytest.mark.parametrize("hold_id", ["../../pwned", "0123456789abcdef/../../x", "ABCDEF0123456789", ""])
def test_lifting_a_hold_id_not_of_the_hold_id_form_is_refused_and_writes_nothing(
    tmp_path: Path, hold_id: str
) -> None:
    storage = LocalStorage(tmp_path / "archive")
    place(storage, BOT, None, None, reason="case 17", actor="dpo")
    before = sorted(p for p in tmp_path.rglob("*"))

    with pytest.raises(ConfigError, match="is not a hold id"):
        lift(storage, hold_id, reason="closed", actor="dpo")

    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_a_hold_whose_id_could_leave_holds_stops_an_erasure_or_prune(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "archive")
    forged = storage.path(hold_key("0123456789abcdef"))
    forged.parent.mkdir(parents=True)
    forged.write_bytes(as_json(_hold(None, None).as_json() | {"id": "../../pwned"}))
    audit.append(
        storage, {"kind": "hold-add", "hold": {"id": "../../pwned", "bot_id": BOT}}, actor="x", reason="x"
    )

    with pytest.raises(OutputError, match="is not 16 hex digits"):
        active(storage)
    with pytest.raises(ConfigError, match="is not a hold id"):
        lift(storage, "../../pwned", reason="closed", actor="dpo")
    assert not (tmp_path / "pwned.lifted.json").exists()
    assert not list(tmp_path.parent.glob("pwned*"))
