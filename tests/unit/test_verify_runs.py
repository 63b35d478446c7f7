"""The state store keeps each `ingest verify` outcome; the evidence report shows the last."""

from __future__ import annotations

from pathlib import Path

from ingest.state.store import Store


def test_no_verify_yet_then_the_latest_outcome(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state.sqlite") as store:
        assert store.last_verify() is None
        store.record_verify(version="0.1.0", root="/a", ok=True, problems=[], files=3, rows=30)
        store.record_verify(
            version="0.2.0", root="/a", ok=False, problems=[f"p{i}" for i in range(60)], files=4, rows=40
        )

        last = store.last_verify()

    assert last is not None
    assert (last["version"], last["ok"], last["problems"], last["files"], last["rows"]) == (
        "0.2.0",
        False,
        60,
        4,
        40,
    )
    assert last["problem_list"] == [f"p{i}" for i in range(50)]  # the first 50 in full
    assert last["at"] > 0
