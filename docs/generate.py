"""Write the documentation pages generated from the code: the settings table, the CLI
reference and the record formats. A test (tests/unit/test_docs_site.py) fails when a page is not current.

Regenerate after changing a setting or a command's help::

    .venv/bin/python docs/generate.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer.main
from typer.cli import get_docs_for_click

from ingest import records
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
        DOCS / "reference" / "records.md": records_markdown(),
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
    records.HoldRecord: {
        "format_version": 1,
        "id": "5e0c9d8b7a6f5e4d",
        "bot_id": "bot-1",
        "from": "2024-01-01",
        "to": None,
        "reason": "litigation 2024-17",
        "placed_at": "2024-03-05T09:00:00Z",
        "actor": "dpo",
    },
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
        "hold": {
            "format_version": 1,
            "id": "5e0c9d8b7a6f5e4d",
            "bot_id": "bot-1",
            "from": "2024-01-01",
            "to": None,
            "reason": "litigation 2024-17",
            "placed_at": "2024-03-05T09:00:00Z",
            "actor": "dpo",
        },
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
        print(f"wrote {path.relative_to(DOCS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
