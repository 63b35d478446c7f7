"""Make stored or remote text inert before a person sees it.

API messages, CSV header names, email subjects, folder names, file names found in the
archive and server errors are text an attacker may control. Shown as is, ``[/bold]``
crashes rich with a MarkupError, ``[link=https://evil]`` becomes a hyperlink, and an ESC
sequence in a terminal or a text log can rewrite what is on the screen. Every such text
goes through :func:`inert` on its way out (``status``, ``doctor``, ``verify``, the summary,
error lines, text-mode logs); nothing else in the package strips or escapes.

Example::

    table.add_row(inert(window.last_error))            # rich markup: escaped
    logging.Formatter -> inert(message, markup=False)   # plain text: controls only
"""

from __future__ import annotations

import re

from rich.markup import escape

#: C0 and C1 control characters and DEL, plus the Unicode controls that reorder or hide
#: text on screen (bidi embeddings, overrides and isolates; line and paragraph separators).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SPACES = {"\t": " ", "\n": " ", "\r": " "}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SPACES:
        return _SPACES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def inert(text: object, *, markup: bool = True) -> str:
    """``text`` as one harmless line: line breaks and tabs become spaces, every other
    control character is shown as a visible escape (``\\x1b``), and with ``markup`` (for
    rich output) rich markup is escaped so that it prints literally.

    >>> inert("[/bold] \\x1b[2J done")
    '\\\\[/bold] \\\\x1b[2J done'
    >>> inert("line\\none", markup=False)
    'line one'
    """
    cleaned = _CONTROL.sub(_visible, "" if text is None else str(text))
    return escape(cleaned) if markup else cleaned
