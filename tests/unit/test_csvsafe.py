"""CSV neutralisation (OWASP CSV injection): formula-looking text cells get a leading quote
in CSV, nothing else changes, and a CSV reader gets back exactly that."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.export.bundle import _Writer
from ingest.export.csvsafe import FORMULA_STARTS, neutralise, neutralised

#: Text biased towards the characters that matter: formula starts, quotes, separators, newlines.
cells = st.one_of(
    st.text(),
    st.builds(
        lambda start, rest: start + rest,
        st.sampled_from(
            ["=", "+", "-", "@", "\t", "\r", "\x00", " =", "\n+", " \x00-", "\u00a0@", "\ufeff=", "'", '"']
        ),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    ),
)


#: What a spreadsheet may read as a formula, said independently of the code: a formula
#: start (OWASP: = + - @ tab CR; and NUL), or whitespace or NULs an importer strips first.
_STRIPPED = "\x00\t\n\x0b\x0c\r \x1c\x1d\x1e\x1f\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff" + "".join(
    chr(c) for c in range(0x2000, 0x200C)
)


def _formula_like(value: str) -> bool:
    return value.startswith(FORMULA_STARTS) or value.lstrip(_STRIPPED).startswith(("=", "+", "-", "@"))


@given(st.lists(st.one_of(st.none(), cells), min_size=1, max_size=20))
def test_written_csv_reads_back_neutral_and_otherwise_unchanged(values: list[str | None]) -> None:
    frame = neutralised(
        pl.DataFrame(
            {"cell": values, "n": list(range(len(values)))}, schema={"cell": pl.String, "n": pl.Int64}
        )
    )
    buffer = io.StringIO()
    frame.write_csv(buffer, quote_style="always", line_terminator="\r\n")

    back = list(csv.DictReader(io.StringIO(buffer.getvalue(), newline="")))

    assert len(back) == len(values)
    for row, value in zip(back, values, strict=True):
        if value is None:
            assert row["cell"] == ""
        elif _formula_like(value):
            assert row["cell"] == "'" + value
        else:
            assert row["cell"] == value
        assert not _formula_like(row["cell"])


@given(cells)
def test_the_vectorised_and_the_scalar_forms_agree(value: str) -> None:
    assert neutralised(pl.DataFrame({"c": [value]}))["c"][0] == neutralise(value)


def test_numbers_and_dates_are_left_alone() -> None:
    frame = pl.DataFrame({"n": [-5, 3], "x": [-1.5, 2.0], "t": ["-5", "=1"]})

    done = neutralised(frame)

    assert done["n"].to_list() == [-5, 3] and done["x"].to_list() == [-1.5, 2.0]
    assert done["t"].to_list() == ["'-5", "'=1"]


@settings(deadline=None)  # a file per example: the machine's load, not the code, sets the pace
@given(st.lists(cells, min_size=1, max_size=8, unique=True))
def test_header_cells_are_neutralised_like_text_cells(names: list[str]) -> None:
    frame = pl.DataFrame({name: [f"v{i}"] for i, name in enumerate(names)})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.csv"
        writer = _Writer(path, "csv")
        writer.write(frame)
        writer.write(frame)  # a second batch adds rows, never a second header
        writer.close()
        text = path.read_bytes().decode("utf-8-sig")

    header, *rows = list(csv.reader(io.StringIO(text, newline="")))

    assert header == [neutralise(name) for name in names]
    assert not any(_formula_like(cell) for cell in header)
    assert rows == [[f"v{i}" for i in range(len(names))]] * 2


@pytest.mark.parametrize("dtype", [pl.Categorical, pl.Enum(["=cmd|' /C calc'!A0", " @SUM(1)", "ok"])])
def test_categorical_and_enum_cells_are_neutralised_like_text(dtype: pl.DataType) -> None:
    frame = pl.DataFrame({"c": ["=cmd|' /C calc'!A0", " @SUM(1)", "ok"]}, schema={"c": dtype})

    assert neutralised(frame)["c"].to_list() == ["'=cmd|' /C calc'!A0", "' @SUM(1)", "ok"]


def test_a_nul_or_whitespace_before_a_formula_is_neutralised() -> None:
    assert [neutralise(v) for v in ["\x00=1", "  =1+1", "\n@x", " plain", "a-b"]] == [
        "'\x00=1",
        "'  =1+1",
        "'\n@x",
        " plain",
        "a-b",
    ]
