"""The archive on S3-compatible storage (SeaweedFS on loopback): the same rows, the
same manifests and the same verify as on a local disk; every object written once."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

import ingest.archive.s3 as s3_module
from ingest.archive.s3 import S3Storage
from ingest.archive.storage import LocalStorage
from ingest.errors import OutputError, StorageUnavailable
from ingest.ops.verify import verify_archive
from ingest.simulator import generate_messages, rows_to_csv
from ingest.state.store import Store
from tests.support.archive import expected_rows
from tests.support.job import run_ingest
from tests.support.s3 import CREDENTIALS
from tests.support.saving import archive_csv_file
from tests.support.seaweed import SeaweedS3

pytestmark = pytest.mark.integration

BOT = "7e1c2d3f-0000-4000-8000-000000005301"
FIRST, LAST = date(2024, 3, 1), date(2024, 3, 10)


@pytest.fixture(scope="module")
def s3(seaweed: SeaweedS3) -> SeaweedS3:
    """A real S3 server (SeaweedFS): deltalake's client talks to it over HTTP. moto's server
    stalled on delta-rs's log listings (a request that never got an answer)."""
    return seaweed


def s3_storage(s3: SeaweedS3, prefix: str, staging: Path, endpoint: str | None = None) -> S3Storage:
    return S3Storage(
        s3.bucket,
        prefix,
        staging=staging,
        endpoint_url=endpoint or s3.endpoint,
        access_key_id=CREDENTIALS["aws_access_key_id"],
        secret_access_key=CREDENTIALS["aws_secret_access_key"],
        max_attempts=2,
    )


def report(workdir: Path, first: date, last: date, name: str = "report.csv") -> Path:
    path = workdir / name
    path.write_bytes(rows_to_csv(generate_messages(BOT, first, last)))
    return path


def pyarrow_rows(s3: SeaweedS3, prefix: str) -> int:
    """A second, independent reader: pyarrow's own S3 file system and dataset."""
    fs = pafs.S3FileSystem(
        endpoint_override=s3.endpoint,
        scheme="http",
        region="us-east-1",
        access_key=CREDENTIALS["aws_access_key_id"],
        secret_key=CREDENTIALS["aws_secret_access_key"],
    )
    dataset = ds.dataset(
        f"{s3.bucket}/{prefix}/messages", filesystem=fs, format="parquet", partitioning="hive"
    )
    return dataset.count_rows()


def test_a_report_archived_to_s3_reads_back_exactly(s3: SeaweedS3, workdir: Path) -> None:
    storage = s3_storage(s3, "exact", workdir / "staging")
    result = archive_csv_file(
        storage,
        report(workdir, FIRST, LAST),
        bot_id=BOT,
        raw_name="report.csv",
        provenance={"import": {"path": "report.csv"}},
        window=(FIRST, LAST),
    )
    truth = expected_rows([BOT], FIRST, LAST)
    assert result.rows_read == result.rows_written == len(truth)

    frame = s3.messages("exact")
    assert sorted(zip(frame["bot_id"], frame["id"], strict=True)) == sorted(truth)
    assert frame.filter(pl.col("timestamp").dt.date() != pl.col("date")).height == 0
    for row_id, message in frame.select("id", "message").iter_rows():
        assert message == (truth[(BOT, row_id)]["message"] or None)
    assert pyarrow_rows(s3, "exact") == len(truth)

    keys = s3.keys("exact/")
    sha = result.manifest.removeprefix("manifests/").removesuffix(".json")
    assert f"exact/raw/bot_id={BOT}/{sha}.csv" in keys
    manifest = json.loads(storage.read_bytes(result.manifest))
    assert manifest["counts"]["rows_written"] == len(truth)
    assert {f["path"] for f in manifest["files"]} == {
        k.removeprefix("exact/") for k in keys if k.endswith(".parquet")
    }
    assert verify_archive(storage).ok, verify_archive(storage).problems
    assert not list((workdir / "staging").iterdir()), "temporary files left behind"


def test_redelivery_and_overlap_add_only_new_rows_and_rewrite_nothing(s3: SeaweedS3, workdir: Path) -> None:
    storage = s3_storage(s3, "overlap", workdir / "staging")
    first = report(workdir, FIRST, LAST, "a.csv")
    archive_csv_file(storage, first, bot_id=BOT, raw_name="a.csv", provenance={})
    client = s3.client()
    etags = {k: client.head_object(Bucket=s3.bucket, Key=k)["ETag"] for k in s3.keys("overlap/")}

    again = archive_csv_file(storage, first, bot_id=BOT, raw_name="a.csv", provenance={})
    assert again.rows_written == 0 and again.rows_duplicate == again.rows_read
    later = date(2024, 3, 6), date(2024, 3, 15)
    overlap = archive_csv_file(
        storage, report(workdir, *later, "b.csv"), bot_id=BOT, raw_name="b.csv", provenance={}
    )
    new_days = len(generate_messages(BOT, date(2024, 3, 11), later[1]))
    assert overlap.rows_written == new_days
    assert overlap.rows_duplicate == overlap.rows_read - new_days

    assert {k: client.head_object(Bucket=s3.bucket, Key=k)["ETag"] for k in etags} == etags
    frame = s3.messages("overlap")
    assert frame.height == len(expected_rows([BOT], FIRST, later[1]))
    assert frame["id"].n_unique() == frame.height
    assert verify_archive(storage).ok


def test_an_object_is_written_once_even_when_asked_twice(s3: SeaweedS3, workdir: Path) -> None:
    storage = s3_storage(s3, "once", workdir / "staging")
    first, second = workdir / "first.bin", workdir / "second.bin"
    first.write_bytes(b"first version")
    second.write_bytes(b"another version, not to be written")
    assert storage.publish(first, "raw/bot_id=x/abc.bin") is True
    assert storage.publish(second, "raw/bot_id=x/abc.bin") is False  # If-None-Match: * -> 412
    assert storage.read_bytes("raw/bot_id=x/abc.bin") == b"first version"


def test_big_files_go_up_in_parts_and_are_still_written_once(
    s3: SeaweedS3, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_module, "PART_BYTES", 5 << 20)  # S3's smallest part size
    storage = s3_storage(s3, "multipart", workdir / "staging")
    big = workdir / "big.bin"
    big.write_bytes(os.urandom(12 << 20))
    assert storage.publish(big, "raw/bot_id=x/big.bin") is True
    assert storage.sha256("raw/bot_id=x/big.bin") == LocalStorage(workdir).sha256("big.bin")
    assert storage.publish(big, "raw/bot_id=x/big.bin") is False
    uploads = s3.client().list_multipart_uploads(Bucket=s3.bucket, Prefix="multipart/")
    assert not uploads.get("Uploads"), "an upload was left open"


def test_refused_credentials_and_a_missing_bucket_name_the_setting(s3: SeaweedS3, workdir: Path) -> None:
    # A real server checks the credentials before the bucket: each refusal on its own.
    missing = S3Storage(
        "no-such-bucket",
        "p",
        staging=workdir / "staging",
        endpoint_url=s3.endpoint,
        access_key_id=CREDENTIALS["aws_access_key_id"],
        secret_access_key=CREDENTIALS["aws_secret_access_key"],
    )
    with pytest.raises(OutputError) as caught:
        missing.check_bucket()
    assert "NoSuchBucket" in str(caught.value) and "INGEST_OUTPUT__ROOT" in str(caught.value.hint)
    wrong = S3Storage(
        s3.bucket,
        "p",
        staging=workdir / "staging",
        endpoint_url=s3.endpoint,
        access_key_id="k",
        secret_access_key="s",
    )
    with pytest.raises(OutputError) as caught:
        wrong.check_bucket()
    assert "InvalidAccessKeyId" in str(caught.value) and "INGEST_OUTPUT__ROOT" in str(caught.value.hint)
    assert "s" not in caught.value.hint.split(", ")  # no secret in the hint


def test_an_unreachable_endpoint_is_transient(workdir: Path) -> None:
    dead = S3Storage(
        "b",
        "p",
        staging=workdir / "staging",
        endpoint_url="http://127.0.0.1:9",
        access_key_id="k",
        secret_access_key="s",
        max_attempts=1,
        timeout=2,
    )
    with pytest.raises(StorageUnavailable, match="cannot reach the object store"):
        dead.exists("manifests/x.json")


def _env(s3: SeaweedS3, workdir: Path, prefix: str, **extra: str) -> dict[str, str]:
    env = {
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
        "INGEST_LOG_FORMAT": "text",
        **s3.env(prefix, workdir / "staging"),
        **extra,
    }
    return env


def test_cli_import_and_verify_against_s3_and_tampering_is_named(s3: SeaweedS3, workdir: Path) -> None:
    env = _env(s3, workdir, "cli")
    csv = report(workdir, FIRST, LAST)
    done = run_ingest("import", str(csv), "--bot", BOT, env=env, cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    checked = run_ingest("verify", "--json", env=env, cwd=workdir)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    doc = json.loads(checked.stdout)
    assert doc["ok"] and doc["root"] == f"s3://{s3.bucket}/cli"
    assert doc["totals"]["rows"] == len(expected_rows([BOT], FIRST, LAST))
    assert run_ingest("doctor", env=env, cwd=workdir).stdout.count("is listable") == 1

    victim = next(k for k in s3.keys("cli/messages/") if k.endswith(".parquet") and "/_delta_log/" not in k)
    body = s3.client().get_object(Bucket=s3.bucket, Key=victim)["Body"].read()
    s3.client().put_object(Bucket=s3.bucket, Key=victim, Body=body[:-9] + b"X" + body[-8:])
    tampered = run_ingest("verify", env=env, cwd=workdir)
    assert tampered.returncode == 1
    assert victim.removeprefix("cli/") in tampered.stdout


def test_cli_errors_are_one_line_with_the_setting(s3: SeaweedS3, workdir: Path) -> None:
    csv = report(workdir, FIRST, LAST)
    refused = run_ingest(
        "import",
        str(csv),
        "--bot",
        BOT,
        cwd=workdir,
        env=_env(s3, workdir, "refused", INGEST_OUTPUT__ROOT="s3://no-such-bucket/x"),
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("error: s3://no-such-bucket/x")
    assert "INGEST_OUTPUT__ROOT" in refused.stderr and "Traceback" not in refused.stderr
    assert CREDENTIALS["aws_secret_access_key"] not in refused.stderr + refused.stdout

    unreachable = run_ingest(
        "import",
        str(csv),
        "--bot",
        BOT,
        cwd=workdir,
        env=_env(s3, workdir, "down", INGEST_OUTPUT__S3_ENDPOINT_URL="http://127.0.0.1:9"),
    )
    assert unreachable.returncode == 3, unreachable.stderr
    assert "cannot reach the object store" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    with Store.open(workdir / "state.sqlite") as store:
        assert store.attachment_totals()["attachments"] == 0

    no_secret = run_ingest(
        "import",
        str(csv),
        "--bot",
        BOT,
        cwd=workdir,
        env=_env(s3, workdir, "half", INGEST_OUTPUT__S3_SECRET_ACCESS_KEY=""),
    )
    assert no_secret.returncode == 2 and "INGEST_OUTPUT__S3_SECRET_ACCESS_KEY" in no_secret.stderr
