"""Write what is generated from the code: the settings reference and the CLI reference of
the documentation site, and the example settings files ``config/example.env`` and
``config/example.toml``. The settings model (``ingest/settings/model.py``) is the one place
a setting's default, bounds, description and example live; everything here reads them.

The record formats page (``docs/reference/records.md``) comes from the models in
``ingest/records.py``. A test (tests/unit/test_docs_site.py) fails when a generated file is
not current. Regenerate after changing a setting, a command's help or a record::

    .venv/bin/python docs/generate.py
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

from ingest import records
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
    lines = [
        ENV_HEAD,
        "# ---- where the other settings come from (the real environment only: refused in .env)",
    ]
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
        DOCS / "reference" / "records.md": records_markdown(),
        ROOT / "config" / "example.env": example_env(),
        ROOT / "config" / "example.toml": example_toml(),
    }


RECORDS_INTRO = """# Record formats

Every JSON record the archive keeps (and an export bundle's manifest), generated from its
model in `ingest/records.py`, the one definition the tool reads and writes them through.
Each carries `format_version`; a record without one was written before the field existed
and reads as version 1. A record of a newer version than the tool reads is refused with a
one-line error naming it (exit 1): upgrade the tool, nothing is guessed. Fields a record
holds beyond those listed are kept as they are. Records are indented UTF-8 JSON with a final
newline, written once and never rewritten; `ingest verify` checks each against its model.

"""

SHA = "9f2c" * 16
#: One record of each kind, as the tool writes it (each is read through its model when the
#: page is generated, so an example that no longer fits fails here).
#: A hold, as its own record and inside the audit record of its placing.
HOLD_EXAMPLE: dict[str, Any] = {
    "format_version": 1,
    "id": "5e0c9d8b7a6f5e4d",
    "bot_id": "bot-1",
    "reason": "litigation 2024-17",
    "placed_at": "2024-03-05T09:00:00Z",
    "actor": "dpo",
    "from": "2024-01-01",
    "to": None,
}

EXAMPLES: dict[type[records.Record], dict[str, Any]] = {
    records.ReportManifest: {
        "format_version": 1,
        "email": {
            "message_id": "<report-17@certainly.io>",
            "from": "noreply@certainly.io",
            "date": "Fri, 01 Mar 2024 06:00:00 +0000",
            "subject": "Your message report",
            "received_at": 1709272800.0,
            "authentication_results": ["mx.example.com; dmarc=pass header.from=certainly.io"],
        },
        "window": {
            "id": 17,
            "bot_id": "bot-1",
            "report_id": 1,
            "from": "2024-02-15",
            "to": "2024-02-29",
            "matched_by": "only_candidate",
        },
        "bot_id": "bot-1",
        "attachment": {"name": "report.csv", "size": 48213, "sha256": SHA},
        "extra_columns": [],
        "counts": {"rows_read": 120, "rows_written": 118, "rows_duplicate": 2, "rows_rejected": 0},
        "files": [
            {
                "path": f"messages/bot_id=bot-1/date=2024-02-15/part-{SHA[:16]}.parquet",
                "rows": 118,
                "sha256": SHA,
            }
        ],
        "delta": {"table": "messages", "version": 12},
        "written_at": "2024-03-01T06:01:02Z",
    },
    records.CompactionRecord: {
        "format_version": 1,
        "compaction": {
            "dataset": "messages",
            "version": 13,
            "partitions": ["messages/bot_id=bot-1/date=2024-02-15"],
            "files": [
                {
                    "path": "messages/bot_id=bot-1/date=2024-02-15/compact-1.parquet",
                    "rows": 236,
                    "sha256": SHA,
                }
            ],
            "replaces": [
                {"path": "messages/bot_id=bot-1/date=2024-02-15/part-a.parquet", "rows": 118, "sha256": SHA},
                {"path": "messages/bot_id=bot-1/date=2024-02-15/part-b.parquet", "rows": 118, "sha256": SHA},
            ],
        },
        "written_at": "2024-03-02T03:00:00Z",
    },
    records.ErasureRecord: {
        "format_version": 1,
        "erasure": {
            "id": "3f1d2c4b5a697887",
            "seq": 1,
            "kind": "erase",
            "at": "2024-04-01T10:00:00Z",
            "tables": [
                {
                    "dataset": "messages",
                    "version": 14,
                    "rows": 3,
                    "replaces": [
                        {"path": "messages/bot_id=bot-1/date=2024-02-15/compact-1.parquet", "rows": 236}
                    ],
                    "files": [
                        {
                            "path": "messages/bot_id=bot-1/date=2024-02-15/part-e.parquet",
                            "rows": 233,
                            "sha256": SHA,
                        }
                    ],
                    "days": ["bot-1/2024-02-15"],
                }
            ],
            "copies": [
                {
                    "key": f"raw/bot_id=bot-1/{SHA}.csv",
                    "original_sha256": SHA,
                    "new_sha256": "07e1" * 16,
                    "size": 47990,
                    "rows_removed": 3,
                    "removed": False,
                }
            ],
        },
    },
    records.ErasurePlan: {
        "format_version": 1,
        "id": "3f1d2c4b5a697887",
        "kind": "erase",
        "files": [
            {
                "dataset": "messages",
                "key": "messages/bot_id=bot-1/date=2024-02-15/compact-1.parquet",
                "bot_id": "bot-1",
                "day": "2024-02-15",
                "rows": 236,
                "forgotten": 3,
                "new_key": "messages/bot_id=bot-1/date=2024-02-15/part-e.parquet",
                "new_rows": 233,
                "new_sha256": SHA,
            }
        ],
        "copies": [],
        "logs": [],
        "skipped": ["standard"],
        "meta": {"actor": "dpo", "reason": "request 2024-17"},
        "unsearched": [],
    },
    records.HoldRecord: HOLD_EXAMPLE,
    records.HoldLifting: {
        "format_version": 1,
        "id": "5e0c9d8b7a6f5e4d",
        "lifted_at": "2024-09-01T09:00:00Z",
        "actor": "dpo",
        "reason": "case closed",
    },
    records.AuditEntry: {
        "format_version": 1,
        "id": "5e0c9d8b7a6f5e4d",
        "kind": "hold-add",
        "hold": HOLD_EXAMPLE,  # the audit record of a hold holds the hold as written
        "at": "2024-03-05T09:00:00Z",
        "actor": "dpo",
        "reason": "litigation 2024-17",
        "previous": "b1c2" * 16,
    },
    records.QuarantineReasons: {
        "format_version": 1,
        "reasons": {"id: missing": 2, "timestamp: not a date": 1},
    },
    records.BundleManifest: {
        "format_version": 1,
        "bundle_version": 1,
        "created_at": "2024-05-01T12:00:00Z",
        "tool": "certainly-ingest 1.0",
        "query": {"bots": ["bot-1"], "from": "2024-02-01", "to": "2024-02-29", "format": "parquet"},
        "archive": {"messages": 14},
        "archive_problems": [],
        "rows": 233,
        "totals": {"messages": {"bot-1": 233}},
        "counts": {"messages": {"bot-1": {"2024-02-15": 233}}},
        "files": [{"path": "messages/bot-1.parquet", "sha256": SHA, "size": 20480, "dataset": "messages"}],
        "sources": [{"attachment_sha256": SHA, "rows": 233, "manifest": f"manifests/{SHA}.json"}],
        "notes": [],
        "csv": None,
        "signature": {
            "algorithm": "Ed25519",
            "file": "manifest.json.sig",
            "signs": "manifest.json",
            "public_key_sha256": "c0ff" * 16,
        },
    },
}


def records_markdown() -> str:
    """The record formats page: per record what it is, its key, its JSON Schema, an example."""
    parts = [RECORDS_INTRO]
    for model in records.RECORDS:
        example = records.dump(records.load(model, EXAMPLES[model])).decode()
        schema = json.dumps(model.model_json_schema(by_alias=True), indent=2, ensure_ascii=False)
        doc = " ".join((model.__doc__ or "").split())
        parts.append(
            f"## {model.NAME[0].upper()}{model.NAME[1:]}\n\n{doc}\n\n"
            f"Key: `{model.KEY}`. Newest format: {model.FORMAT}.\n\n"
            f"Example:\n\n```json\n{example}```\n\n"
            f"JSON Schema:\n\n```json\n{schema}\n```\n\n"
        )
    return "".join(parts).rstrip() + "\n"


def main() -> int:
    for path, text in pages().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
