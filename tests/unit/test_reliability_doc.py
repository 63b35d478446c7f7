"""docs/RELIABILITY.md stays true: every test it names exists, and the figures that can
be counted from the code are the current ones."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.crashpoints import POINTS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "RELIABILITY.md").read_text()


def test_every_named_test_exists() -> None:
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", DOC)
    assert len(named) >= 20
    for path, name in named:
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} is named but does not exist"


def test_kill_point_count_is_current() -> None:
    assert f"**{len(POINTS)} kill points**" in DOC
    for point in POINTS:
        assert f"`{point}`" in DOC, f"kill point {point} is not listed"
