"""Write the documentation pages generated from the code: the settings table and the CLI
reference. A test (tests/unit/test_docs_site.py) fails when a page is not current.

Regenerate after changing a setting or a command's help::

    .venv/bin/python docs/generate.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer.main
from typer.cli import get_docs_for_click

from ingest.cli import app
from ingest.settings import reference_markdown

DOCS = Path(__file__).resolve().parent

SETTINGS_INTRO = """# Settings reference

Every setting, generated from the settings model. Names are `INGEST_<SECTION>__<FIELD>`
in the environment, in a `.env` file and as secret files (lower-case, in
`INGEST_SECRETS_DIR`), and `[section] field` in the TOML file named by `INGEST_CONFIG`.
Precedence, highest first: arguments, environment, secret files, `.env`, TOML, defaults.
A name meant as a setting that names none (`INGEST_IMAP__REQUIRE_AUTHENTICATON`) is
refused with exit 2, naming the closest setting. `config/example.env` and
`config/example.toml` in the repository list every setting with its default.

"""


def pages() -> dict[Path, str]:
    """Each generated page and its text."""
    command = typer.main.get_command(app)
    cli = get_docs_for_click(obj=command, ctx=typer.Context(command), name="ingest", title="CLI reference")
    return {
        DOCS / "reference" / "settings.md": SETTINGS_INTRO + reference_markdown() + "\n",
        DOCS / "reference" / "cli.md": cli.strip() + "\n",
    }


def main() -> int:
    for path, text in pages().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(DOCS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
