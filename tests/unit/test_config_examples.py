"""config/example.env and config/example.toml name every setting, and nothing else.

An operator copies one of them to start: a setting missing there is a setting nobody
finds, and a name there that is no setting is now refused at start (exit 2).
"""

from __future__ import annotations

import re
from pathlib import Path

from ingest.settings import section_fields
from ingest.unknown_settings import PROCESS_VARIABLES

CONFIG = Path(__file__).resolve().parents[2] / "config"


def _every_setting() -> set[str]:
    return {
        f"INGEST_{section.upper()}__{field.upper()}"
        for section, fields in section_fields().items()
        for field in fields
    }


def test_example_env_names_every_setting_and_nothing_else() -> None:
    text = (CONFIG / "example.env").read_text()
    named = set(re.findall(r"^#? ?(INGEST_[A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert _every_setting() - named == set(), "missing from config/example.env"
    assert named - _every_setting() - set(PROCESS_VARIABLES) == set(), "not settings"


def test_example_toml_names_every_setting_and_nothing_else() -> None:
    named: set[str] = set()
    section = ""
    for line in (CONFIG / "example.toml").read_text().splitlines():
        if heading := re.fullmatch(r"\[(\w+)\]\s*(#.*)?", line):
            section = heading.group(1)
        elif key := re.match(r"#? ?(\w+) = ", line):
            if section:
                named.add(f"INGEST_{section.upper()}__{key.group(1).upper()}")
    assert _every_setting() - named == set(), "missing from config/example.toml"
    assert named - _every_setting() == set(), "not settings"


def test_every_setting_shows_a_value_to_copy() -> None:
    """An operator uncomments a line and edits it: a setting without a default is shown with
    an example or a placeholder, never as an empty ``NAME=`` that reads as 'set to nothing'."""
    for example, pattern in (
        ("example.env", r"#? ?(INGEST_[A-Z0-9_]+)=(.*)"),
        ("example.toml", r"#? ?(\w+) = (.*)"),
    ):
        for line in (CONFIG / example).read_text().splitlines():
            if found := re.fullmatch(pattern, line):
                value = found.group(2).strip()
                assert value and value not in ('""', "None", "[]", "{}"), f"{example}: {line}"
