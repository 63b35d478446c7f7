"""Write what is generated from the code: the settings reference and the CLI reference of
the documentation site, and the example settings files ``config/example.env`` and
``config/example.toml``. The settings model (``ingest/settings/model.py``) is the one place
a setting's default, bounds, description and example live; everything here reads them.

A test (tests/unit/test_docs_site.py) fails when a generated file is not current.
Regenerate after changing a setting or a command's help::

    .venv/bin/python docs/generate.py

The record formats page (``docs/reference/records.md``) is written by a ``records_markdown()``
generator over the archive's record models, added to :func:`pages` beside the others.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, NamedTuple, get_args, get_origin

import typer.main
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from typer.cli import get_docs_for_click

from ingest.cli import app
from ingest.settings import Settings, env_name
from ingest.unknown_settings import PROCESS_VARIABLES

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

SETTINGS_INTRO = """# Settings reference

Every setting, generated from the settings model. Names are `INGEST_<SECTION>__<FIELD>`
in the environment, in a `.env` file and as secret files (lower-case, in
`INGEST_SECRETS_DIR`), and `[section] field` in the TOML file named by `INGEST_CONFIG`.
Precedence, highest first: arguments, environment, secret files, `.env`, TOML, defaults.
A name meant as a setting that names none (`INGEST_IMAP__REQUIRE_AUTHENTICATON`) is
refused with exit 2, naming the closest setting. `config/example.env` and
`config/example.toml` in the repository list every setting with its default; they are
generated from the same model. How values are written (lists, retention per dataset) is
on the [configuration](../configuration.md) page.

"""

#: Variables read from the process environment only, not settings of a section.
PROCESS_VARIABLE_NOTES = {
    "INGEST_SECRETS_DIR": (
        "/run/secrets",
        "A folder of secret files named like the variables, lower-case (ingest_certainly__token, "
        "ingest_imap__password). Default: /run/secrets when it exists.",
    ),
    "INGEST_CONFIG": (
        "/etc/certainly-ingest/ingest.toml",
        "An optional TOML file with the same settings (see config/example.toml).",
    ),
    "INGEST_LOG_FORMAT": (
        "json",
        "Log lines as json or text (default: json when stderr is not a terminal).",
    ),
}

#: What a new installation fills in first: written out with an example value (the rest at
#: its default, or commented out). Together they are the minimal real-account setup.
FILL_IN = {
    ("certainly", "bots"),
    ("imap", "host"),
    ("imap", "username"),
    ("imap", "allowed_senders"),
    ("imap", "require_authentication"),
    ("imap", "authserv_id"),
}

ENV_HEAD = """\
# certainly-ingest settings as environment variables (or a `.env` file in the working folder).
# Generated from the settings model by docs/generate.py: edit the model, not this file.
# Copy to `.env` and fill in. Names: INGEST_<SECTION>__<FIELD>; lists are comma-separated
# (a,b) or JSON (["a","b"]), every entry checked.
# Precedence, highest first: arguments, environment, secret files, .env, TOML, defaults.
# Every value below is a placeholder or the default. Never commit a filled-in copy.
"""

TOML_HEAD = """\
# certainly-ingest settings as TOML: point INGEST_CONFIG at a copy of this file.
# Generated from the settings model by docs/generate.py: edit the model, not this file.
# The lowest-priority source: environment variables, secret files and .env override it.
# Lists are TOML arrays (or a comma-separated string); every entry is checked.
# Keep secrets out of this file: put them in secret files (INGEST_SECRETS_DIR, e.g.
# /run/secrets/ingest_certainly__token) or in the environment.
# Every value below is a placeholder or the default.
"""


class Setting(NamedTuple):
    """One field of one section, as the generated files show it."""

    section: str
    name: str
    info: FieldInfo

    @property
    def env(self) -> str:
        return env_name(self.section, self.name)

    @property
    def secret(self) -> bool:
        return SecretStr in (self.info.annotation, *get_args(self.info.annotation))

    @property
    def default(self) -> Any:
        if self.info.default_factory is not None:
            return self.info.default_factory()  # type: ignore[call-arg]  # ours take no argument
        return self.info.default

    @property
    def example(self) -> Any:
        """The value shown: the model's example for a setting to fill in or one without a
        default, else the default; a placeholder for a secret."""
        if self.secret:
            return f"<{self.name.replace('_', '-')}>"
        examples = self.info.examples or []
        if examples and ((self.section, self.name) in FILL_IN or _unset(self.default)):
            return examples[0]
        return self.default

    @property
    def active(self) -> bool:
        """Written as a value (not commented out): a default, or an example to fill in."""
        if self.secret:
            return False
        return (self.section, self.name) in FILL_IN or not _unset(self.default)

    @property
    def note(self) -> str:
        """The description, and for a secret where it is better kept."""
        text = self.info.description or ""
        if self.secret:
            text += f" Better as the secret file {self.env.lower()}."
        return text


def _unset(value: Any) -> bool:
    return value is None or value == [] or value == {}


def sections() -> Iterator[tuple[str, type[BaseModel]]]:
    """Each settings section and its model, in the model's order."""
    for section, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        yield section, model


def settings_of(model: type[BaseModel], section: str) -> list[Setting]:
    return [Setting(section, name, info) for name, info in model.model_fields.items()]


def _comment(text: str, width: int = 92) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, width - 2)]


def _summary(model: type[BaseModel]) -> str:
    return (model.__doc__ or "").strip().splitlines()[0]


# -- the settings reference ---------------------------------------------------------------


def reference_markdown() -> str:
    """The settings table of docs/reference/settings.md."""
    lines = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for section, model in sections():
        for setting in settings_of(model, section):
            default = "-" if _unset(setting.default) else _env_value(setting.default)
            lines.append(
                f"| `{setting.env}` | {_type_name(setting.info.annotation)} | `{default}` | "
                f"{(setting.info.description or '').replace('|', '/')} |"
            )
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    """A reader's name for a field type: ``SecretStr | None`` -> ``secret``."""
    names = {
        "SecretStr": "secret",
        "str": "text",
        "int": "integer",
        "float": "number",
        "bool": "true/false",
        "date": "YYYY-MM-DD",
        "Path": "path",
        "list": "list (a,b or JSON)",
    }
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Annotated:
        return _type_name(args[0])
    if get_origin(annotation) is dict:
        return "dataset=days list (a=1,b=2 or JSON)"
    if get_origin(annotation) is Literal:
        return " / ".join(map(str, get_args(annotation)))
    if get_origin(annotation) is not None and args and get_origin(annotation) is not list:
        return _type_name(args[0]) if len(args) == 1 else " or ".join(map(_type_name, args))
    origin = get_origin(annotation) or annotation
    return names.get(getattr(origin, "__name__", str(origin)), str(origin))


# -- config/example.env and config/example.toml -------------------------------------------


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{key}={days}" for key, days in value.items())
    return str(value)


def example_env() -> str:
    """config/example.env: every setting, described, at its default or an example."""
    assert set(PROCESS_VARIABLE_NOTES) <= set(PROCESS_VARIABLES)
    lines = [ENV_HEAD, "# ---- where the other settings come from (read from the real environment only)"]
    for name, (example, note) in PROCESS_VARIABLE_NOTES.items():
        lines += [*_comment(note), f"# {name}={example}"]
    for section, model in sections():
        lines += ["", f"# ---- [{section}] {_summary(model)}"]
        for setting in settings_of(model, section):
            line = f"{setting.env}={_env_value(setting.example)}"
            lines += [*_comment(setting.note), line if setting.active else f"# {line}"]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, date)):
        return value.isoformat() if isinstance(value, date) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml_value(days)}" for key, days in value.items()) + " }"
    if isinstance(value, PurePath):
        value = str(value)
    return json.dumps(value)


def example_toml() -> str:
    """config/example.toml: every setting, described, at its default or an example."""
    lines = [TOML_HEAD.rstrip("\n")]
    for section, model in sections():
        lines += ["", f"[{section}]", f"# {_summary(model)}"]
        for setting in settings_of(model, section):
            line = f"{setting.name} = {_toml_value(setting.example)}"
            lines += [*_comment(setting.note), line if setting.active else f"# {line}"]
    return "\n".join(lines) + "\n"


# -- the pages ----------------------------------------------------------------------------


def cli_markdown() -> str:
    """The CLI reference, from the commands' own help."""
    command = typer.main.get_command(app)
    cli = get_docs_for_click(obj=command, ctx=typer.Context(command), name="ingest", title="CLI reference")
    return cli.strip() + "\n"


def pages() -> dict[Path, str]:
    """Each generated file and its text."""
    return {
        DOCS / "reference" / "settings.md": SETTINGS_INTRO + reference_markdown() + "\n",
        DOCS / "reference" / "cli.md": cli_markdown(),
        ROOT / "config" / "example.env": example_env(),
        ROOT / "config" / "example.toml": example_toml(),
        # docs/reference/records.md joins here once records_markdown() is written: until
        # then the page is a hand-written placeholder.
    }


def main() -> int:
    for path, text in pages().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
