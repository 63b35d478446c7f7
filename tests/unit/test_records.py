"""Every archive record is read and written through its model (ingest.records): what the
model writes, plain ``json`` reads as the same object; what plain ``json`` wrote, the model
reads; records made before ``format_version`` read as version 1, newer ones are refused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import IngestError, RecordTooNew
from ingest.records import (
    RECORDS,
    AuditEntry,
    CompactionRecord,
    ErasurePlan,
    ErasureRecord,
    HoldRecord,
    ReportManifest,
    dump,
    dump_as_read,
    load,
)

ROOT = Path(__file__).resolve().parents[2]
SHA = "ab" * 32
#: One record of each kind as this tool wrote it before format_version existed.
OLD: dict[type, dict[str, Any]] = {
    ReportManifest: {
        "email": {"message_id": "<m@x>", "from": "a@b", "received_at": 1.5, "authentication_results": []},
        "window": {"id": 3, "bot_id": "bot-1", "report_id": 1, "from": "2024-03-01", "to": "2024-03-15"},
        "bot_id": "bot-1",
        "attachment": {"name": "r.csv", "size": 10, "sha256": SHA},
        "extra_columns": [],
        "counts": {"rows_read": 2, "rows_written": 2, "rows_duplicate": 0, "rows_rejected": 0},
        "files": [{"path": "messages/bot_id=bot-1/date=2024-03-01/part-x.parquet", "rows": 2, "sha256": SHA}],
        "delta": {"table": "messages", "version": 4},
        "written_at": "2026-01-01T00:00:00Z",
    },
    CompactionRecord: {
        "compaction": {
            "dataset": "messages",
            "version": 5,
            "partitions": ["messages/bot_id=b/date=2024-03-01"],
            "files": [{"path": "messages/bot_id=b/date=2024-03-01/c.parquet", "rows": 3, "sha256": SHA}],
            "replaces": [
                {"path": "messages/bot_id=b/date=2024-03-01/p.parquet", "rows": None, "sha256": None}
            ],
        },
        "written_at": "2026-01-01T00:00:00Z",
    },
    ErasureRecord: {
        "erasure": {
            "id": "0123456789abcdef",
            "kind": "erase",
            "at": "2026-01-01T00:00:00Z",
            "tables": [],
            "copies": [{"key": "raw/x.csv", "original_sha256": SHA, "new_sha256": None, "removed": True}],
        }
    },
    HoldRecord: {
        "id": "0123456789abcdef",
        "bot_id": "bot-1",
        "reason": "case 1",
        "placed_at": "2026-01-01T00:00:00Z",
        "actor": "dpo",
        "from": "2024-01-01",
        "to": None,
    },
    AuditEntry: {
        "id": "0123456789abcdef",
        "kind": "erase",
        "subject_sha256": ["00" * 32],
        "record": "manifests/erasure-0123456789abcdef.json",
        "at": "2026-01-01T00:00:00Z",
        "actor": "dpo",
        "reason": "asked",
        "previous": None,
    },
}


def _plain(document: dict[str, Any]) -> bytes:
    """How the tool wrote records before the models: indented, UTF-8, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"


@pytest.mark.parametrize("model", list(OLD), ids=lambda m: m.__name__)
def test_an_old_record_reads_as_version_1_and_gives_back_its_own_bytes(model: type) -> None:
    data = _plain(OLD[model])
    record = load(model, data)
    assert record.format_version == 1
    assert dump_as_read(record) == data  # a hold file is compared byte for byte with the audit log


@pytest.mark.parametrize("model", list(OLD), ids=lambda m: m.__name__)
def test_a_record_the_model_writes_is_plain_json_with_its_version_and_every_field(model: type) -> None:
    written = dump(load(model, _plain(OLD[model])))
    assert json.loads(written) == {"format_version": 1, **OLD[model]}
    assert written.startswith(b'{\n  "format_version": 1,\n')


@pytest.mark.parametrize("model", RECORDS, ids=lambda m: m.__name__)
def test_a_newer_format_is_refused_in_one_line_naming_the_record(model: type) -> None:
    doc = {**OLD.get(model, {}), "format_version": model.FORMAT + 1}
    with pytest.raises(RecordTooNew) as refused:
        load(model, _plain(doc), "manifests/x.json")
    message = str(refused.value)
    assert isinstance(refused.value, IngestError) and "\n" not in message
    assert (
        model.NAME in message
        and f"format_version {model.FORMAT + 1}" in message
        and "manifests/x.json" in message
    )


def test_a_record_that_does_not_fit_its_model_is_refused() -> None:
    broken = {**OLD[ReportManifest], "files": [{"rows": 2}]}  # a file without its path
    with pytest.raises(ValueError):
        load(ReportManifest, _plain(broken))
    with pytest.raises(ValueError):
        load(HoldRecord, _plain({**OLD[HoldRecord], "bot_id": 7}))  # strict: no number for a text


texts = st.text(max_size=12)
counts = st.integers(min_value=0, max_value=10**12)


@settings(max_examples=60, deadline=None)
@given(
    bot=texts,
    name=texts,
    rows=st.lists(st.tuples(texts, counts), max_size=4),
    subject=st.text(max_size=8),
    to=st.one_of(st.none(), texts),
)
def test_plain_json_and_the_models_agree_both_ways(
    bot: str, name: str, rows: list[tuple[str, int]], subject: str, to: str | None
) -> None:
    manifest = {
        **OLD[ReportManifest],
        "bot_id": bot,
        "attachment": {"name": name, "size": len(rows), "sha256": SHA},
        "files": [{"path": path, "rows": n, "sha256": SHA} for path, n in rows],
    }
    plan = {
        "id": "0123456789abcdef",
        "kind": "erase",
        "files": [
            {
                "dataset": "messages",
                "key": path,
                "bot_id": bot,
                "day": "2024-03-01",
                "rows": n,
                "forgotten": n,
                "new_key": None,
                "new_rows": 0,
                "new_sha256": "",
            }
            for path, n in rows
        ],
        "copies": [],
        "logs": [],
        "skipped": [],
        "meta": {"actor": subject},
        "unsearched": [],
    }
    hold = {**OLD[HoldRecord], "bot_id": bot, "to": to, "reason": subject}
    for model, doc in ((ReportManifest, manifest), (ErasurePlan, plan), (HoldRecord, hold)):
        record = load(model, _plain(doc))  # plain json -> model
        assert json.loads(dump(record)) == {"format_version": 1, **doc}  # model -> plain json
        assert load(model, dump(record)) == record


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    return generate


@pytest.mark.parametrize("model", RECORDS, ids=lambda m: m.__name__)
def test_every_record_written_by_its_model_is_the_plain_json_object_and_back(model: type) -> None:
    example = _generator().EXAMPLES[model]  # the docs page's example, as the tool writes it
    record = load(model, _plain(example))  # plain json -> model
    written = dump(record)
    assert json.loads(written) == example  # model -> plain json: the same object
    assert written == _plain(example)  # and the same bytes (a bundle manifest is signed)
    assert load(model, written) == record


def test_the_record_formats_page_shows_every_record_with_its_key_schema_and_an_example() -> None:
    root = ROOT
    generate = _generator()
    page = (root / "docs" / "reference" / "records.md").read_text(encoding="utf-8")
    assert page == generate.records_markdown(), "run .venv/bin/python docs/generate.py"
    for model in RECORDS:
        section = page.split(f"## {model.NAME[0].upper()}{model.NAME[1:]}\n", 1)[1].split("\n## ", 1)[0]
        assert f"Key: `{model.KEY}`" in section
        example, schema = (block.split("\n```", 1)[0] for block in section.split("```json\n")[1:3])
        assert load(model, example).format_version == model.FORMAT  # the example is a valid record
        assert json.loads(schema) == model.model_json_schema(by_alias=True)
