"""CSV cells a spreadsheet would run as formulas, made inert (CSV injection).

OWASP's guidance on CSV injection: a cell starting with ``=``, ``+``, ``-``, ``@``, a tab
(0x09) or a carriage return (0x0D) may be run as a formula by Excel, LibreOffice or Google
Sheets; prefix such a cell with a single quote (``'``) so it is shown as text, and quote
every field. Only text cells and the header's column names are changed (a number or a date
column cannot hold a formula; a column name is text whatever the column holds). The
bundle's Parquet and JSON Lines files keep the raw value: the quote exists only in CSV,
and ``manifest.json`` says so (``csv.neutralised``).

Example::

    neutralise("=HYPERLINK(\\"http://x\\")")   # "'=HYPERLINK(\\"http://x\\")"
    neutralise("-5 degrees")                # "'-5 degrees"
    neutralise("hello")                     # "hello"
    header_line(["id", "=cmd"])             # '"id","\'=cmd"\r\n'
"""

from __future__ import annotations

import polars as pl

#: What a cell may start with for a spreadsheet to read it as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: The prefix that makes such a cell text.
PREFIX = "'"
_PATTERN = "^[=+\\-@\t\r]"


def neutralise(cell: str | None) -> str | None:
    """One cell as written to CSV: prefixed with ``'`` when it starts like a formula."""
    if cell is not None and cell.startswith(FORMULA_STARTS):
        return PREFIX + cell
    return cell


def neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text column of ``frame`` through :func:`neutralise` (vectorised)."""
    exprs = [
        pl.when(pl.col(name).str.contains(_PATTERN))
        .then(pl.lit(PREFIX) + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name, dtype in frame.schema.items()
        if dtype == pl.String
    ]
    return frame.with_columns(exprs) if exprs else frame


def header_line(names: list[str]) -> str:
    """A CSV header of ``names``, each neutralised and quoted like every cell, CRLF-ended."""
    cells = (neutralise(name) or "" for name in names)
    return ",".join('"' + cell.replace('"', '""') + '"' for cell in cells) + "\r\n"
