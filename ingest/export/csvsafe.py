"""CSV cells a spreadsheet would run as formulas, made inert (CSV injection).

OWASP's guidance on CSV injection: a cell starting with ``=``, ``+``, ``-``, ``@``, a tab
(0x09) or a carriage return (0x0D) may be run as a formula by Excel, LibreOffice or Google
Sheets; prefix such a cell with a single quote (``'``) so it is shown as text, and quote
every field. A NUL first, or whitespace (or NULs) before one of ``=+-@``, is treated the
same: some importers strip those before they look. Only text cells (String, Categorical
and Enum columns) and the header's column names are changed (a number or a date column
cannot hold a formula; a column name is text whatever the column holds). The
bundle's Parquet and JSON Lines files keep the raw value: the quote exists only in CSV,
and ``manifest.json`` says so (``csv.neutralised``).

Example::

    neutralise("=HYPERLINK(\\"http://x\\")")   # "'=HYPERLINK(\\"http://x\\")"
    neutralise("-5 degrees")                # "'-5 degrees"
    neutralise("hello")                     # "hello"
    header_line(["id", "=cmd"])             # '"id","\'=cmd"\r\n'
"""

from __future__ import annotations

import re

import polars as pl

#: What a cell may start with for a spreadsheet to read it as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\x00")
#: The prefix that makes such a cell text.
PREFIX = "'"
#: Whitespace an importer may strip before it looks (ASCII, no-break and Unicode spaces,
#: the BOM), and NUL; as the characters themselves, so that Python's and polars' regular
#: expressions (whose ``\s`` differ) read the same class.
_SPACE = "\x00\t\n\x0b\x0c\r \x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"
#: A formula start, or whitespace and NULs before one of ``=+-@``.
_PATTERN = f"^(?:[\t\r\x00]|[{_SPACE}]*[=+\\-@])"
_FORMULA = re.compile(_PATTERN)
_TEXT = (pl.String, pl.Categorical, pl.Enum)


def neutralise(cell: str | None) -> str | None:
    """One cell as written to CSV: prefixed with ``'`` when it starts like a formula."""
    if cell is not None and _FORMULA.match(cell):
        return PREFIX + cell
    return cell


def neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text column of ``frame`` through :func:`neutralise` (vectorised)."""
    # By position, not pl.col(name): a column named "*" or "^a.*$" (a header is the
    # sender's text) would be a wildcard or a regex there.
    exprs = [
        pl.when(text.str.contains(_PATTERN)).then(pl.lit(PREFIX) + text).otherwise(text).alias(name)
        for index, (name, dtype) in enumerate(frame.schema.items())
        if isinstance(dtype, _TEXT) or dtype == pl.String
        for text in [pl.nth(index).cast(pl.String)]
    ]
    return frame.with_columns(exprs) if exprs else frame


def header_line(names: list[str]) -> str:
    """A CSV header of ``names``, each neutralised and quoted like every cell, CRLF-ended."""
    cells = (neutralise(name) or "" for name in names)
    return ",".join('"' + cell.replace('"', '""') + '"' for cell in cells) + "\r\n"
