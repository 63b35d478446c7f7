"""Breakers on S3 (SeaweedFS, loopback): an import killed after its Delta commit, an erasure of a
person in it, then the import's retry: no object under the archive's prefix holds the person
afterwards (data, subject index, raw copy, manifests), and verify is clean."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.simulator import generate_messages, rows_to_csv
from tests.support.job import run_ingest
from tests.support.seaweed import SeaweedS3

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BOT = "3f2b8c1e-0000-4000-8000-0000000000d1"
WHO = "p-8c2e51b0a4-erased-s3"


def _holding(s3: SeaweedS3, prefix: str, needle: str) -> list[str]:
    found = []
    client = s3.client()
    for key in s3.keys(prefix):
        data = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
        texts = [data]
        if data[:4] == b"PAR1":
            texts.append(json.dumps(pq.read_table(io.BytesIO(data)).to_pylist(), default=str).encode())
        if any(needle.encode() in t for t in texts):
            found.append(key)
    return found


def test_s3_a_retried_import_after_an_erasure_brings_nothing_back(seaweed: SeaweedS3, tmp_path: Path) -> None:
    env = {
        "INGEST_STATE__PATH": str(tmp_path / "state.sqlite"),
        "INGEST_AUDIT__ACTOR": "dpo@example.com",
        **seaweed.env("retry", tmp_path / "staging"),
    }
    rows = generate_messages(BOT, date(2025, 2, 2), date(2025, 2, 3))
    rows[3] = dict(rows[3], botuser={"id": WHO, "created_date": "2023-12-01T00:00:00.000000Z"})
    (tmp_path / "late.csv").write_bytes(rows_to_csv(rows))
    killed = run_ingest(
        "import", "late.csv", "--bot", BOT, env={**env, "INGEST_CRASH_AT": "after_commit"}, cwd=tmp_path
    )
    assert killed.returncode != 0
    done = run_ingest("erase", "--botuser", WHO, "--reason", "DSR", "--apply", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _holding(seaweed, "retry/", WHO) == []
    again = run_ingest("import", "late.csv", "--bot", BOT, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _holding(seaweed, "retry/", WHO) == []
    verify = run_ingest("verify", env=env, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
