"""A column named like a polars pattern (``*``, ``^...$``) is refused in one line, and an
export's header cells of any text are written as they are (neutralised), never expanded."""

from __future__ import annotations

import polars as pl
import pytest

from ingest.errors import ReportRejected
from ingest.export.csvsafe import neutralised
from ingest.parse.header import column_names
from ingest.parse.reports import check_header


@pytest.mark.parametrize("name", ["*", "^a.*$", "^$"])
def test_a_pattern_column_name_is_refused_by_both_header_readers(name: str) -> None:
    with pytest.raises(ReportRejected, match="read as patterns"):
        column_names(["id", "timestamp", name])
    with pytest.raises(ReportRejected, match="read as patterns"):
        check_header(f"id,timestamp,{name}\r\n1,2024-01-01T00:00:00Z,x\r\n".encode())


@pytest.mark.parametrize("name", ["a*", "^a", "a$", "$^", "x^y$z"])
def test_names_that_only_look_alike_are_kept(name: str) -> None:
    assert column_names(["id", name]) == ["id", name]


def test_neutralising_takes_each_column_by_position_not_as_a_pattern() -> None:
    frame = pl.DataFrame({"": ["=1"], "*": ["v1"], "^a.*$": ["@x"], "a": ["ok"]})

    done = neutralised(frame)

    assert done.columns == ["", "*", "^a.*$", "a"]
    assert done.row(0) == ("'=1", "v1", "'@x", "ok")
