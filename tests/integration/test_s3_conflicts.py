"""S3 conditional-write conflicts and multipart clean-up, against SeaweedFS behind a
loopback proxy that answers ``409 ConditionalRequestConflict`` as S3 does when two
conditional writes to one key race (the server itself seldom does).

A 409 is retried, then settled by reading the object back, never taken as "written"; and
the staging sweep aborts only the multipart uploads this job recorded, never another
writer's under the same prefix.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

import ingest.archive.s3 as s3_module
from ingest.archive.s3 import S3Storage
from ingest.errors import OutputError, StorageUnavailable
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.job import run_ingest
from tests.support.s3 import CREDENTIALS, S3FaultProxy
from tests.support.seaweed import SeaweedS3

pytestmark = pytest.mark.integration

BOT = "7e1c2d3f-0000-4000-8000-000000005409"
KEY = "raw/bot_id=x/object.bin"


@pytest.fixture(scope="module")
def s3(seaweed: SeaweedS3) -> SeaweedS3:
    """A real S3 server (SeaweedFS): the job's Delta commits go through the proxy too, and
    moto's server stalled on delta-rs's log listings."""
    return seaweed


@pytest.fixture
def proxy(s3: SeaweedS3) -> Iterator[S3FaultProxy]:
    with S3FaultProxy(s3.port) as running:
        yield running


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "CONFLICT_PAUSE", 0.01)


def s3_storage(s3: SeaweedS3, prefix: str, staging: Path, endpoint: str) -> S3Storage:
    return S3Storage(
        s3.bucket,
        prefix,
        staging=staging,
        endpoint_url=endpoint,
        access_key_id=CREDENTIALS["aws_access_key_id"],
        secret_access_key=CREDENTIALS["aws_secret_access_key"],
        max_attempts=2,
    )


def local_file(workdir: Path, data: bytes, name: str = "object.bin") -> Path:
    path = workdir / name
    path.write_bytes(data)
    return path


def test_a_409_is_retried_and_the_write_then_lands(s3: SeaweedS3, proxy: S3FaultProxy, workdir: Path) -> None:
    storage = s3_storage(s3, "retried", workdir / "staging", proxy.endpoint)
    proxy.conflicts_to_answer = 2

    assert storage.publish(local_file(workdir, b"our bytes"), KEY) is True

    assert proxy.conflicts == 2
    assert s3.client().get_object(Bucket=s3.bucket, Key=f"retried/{KEY}")["Body"].read() == b"our bytes"


def test_a_409_although_the_write_landed_is_settled_by_reading_it_back(
    s3: SeaweedS3, proxy: S3FaultProxy, workdir: Path
) -> None:
    storage = s3_storage(s3, "landed", workdir / "staging", proxy.endpoint)
    proxy.conflicts_to_answer = s3_module.CONFLICT_ATTEMPTS  # every attempt answered 409
    proxy.conflict_after_write = True

    assert storage.publish(local_file(workdir, b"our bytes, landed"), KEY) is True

    assert proxy.conflicts == s3_module.CONFLICT_ATTEMPTS
    assert storage.read_bytes(KEY) == b"our bytes, landed"


def test_a_409_with_nothing_written_is_transient_never_assumed_written(
    s3: SeaweedS3, proxy: S3FaultProxy, workdir: Path
) -> None:
    storage = s3_storage(s3, "absent", workdir / "staging", proxy.endpoint)
    proxy.conflicts_to_answer = s3_module.CONFLICT_ATTEMPTS

    with pytest.raises(StorageUnavailable, match="409 ConditionalRequestConflict"):
        storage.publish(local_file(workdir, b"our bytes"), KEY)

    assert s3.keys("absent/") == []


def test_a_409_over_other_bytes_is_an_error_and_they_are_left_alone(
    s3: SeaweedS3, proxy: S3FaultProxy, workdir: Path
) -> None:
    storage = s3_storage(s3, "other", workdir / "staging", proxy.endpoint)
    s3.client().put_object(Bucket=s3.bucket, Key=f"other/{KEY}", Body=b"another writer's bytes")
    proxy.conflicts_to_answer = s3_module.CONFLICT_ATTEMPTS

    with pytest.raises(OutputError, match="holds other bytes"):
        storage.publish(local_file(workdir, b"our bytes"), KEY)

    assert storage.read_bytes(KEY) == b"another writer's bytes"


def test_cli_import_through_endless_409s_is_exit_3_and_the_next_run_completes(
    s3: SeaweedS3, proxy: S3FaultProxy, workdir: Path
) -> None:
    csv = local_file(
        workdir, rows_to_csv(generate_messages(BOT, date(2024, 3, 1), date(2024, 3, 3))), "report.csv"
    )
    env = dict(
        s3.env("cli409", workdir / "staging", proxy.endpoint),
        INGEST_STATE__PATH=str(workdir / "state.sqlite"),
        INGEST_LOG_FORMAT="json",
    )
    proxy.conflicts_to_answer = 10**6

    refused = run_ingest("import", str(csv), "--bot", BOT, env=env, cwd=workdir)
    after_refusal = s3.keys("cli409/")
    proxy.conflicts_to_answer = 0
    done = run_ingest("import", str(csv), "--bot", BOT, env=env, cwd=workdir)
    verified = run_ingest("verify", env=env, cwd=workdir)

    assert refused.returncode == 3, refused.stderr
    assert "409 ConditionalRequestConflict" in refused.stderr.strip().splitlines()[-1]
    assert after_refusal == []  # not one object counted as written
    assert done.returncode == 0, done.stderr
    assert verified.returncode == 0, verified.stdout


def test_the_sweep_aborts_only_this_jobs_own_multipart_uploads(
    s3: SeaweedS3, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_module, "PART_BYTES", 5 << 20)  # S3's smallest part size
    client = s3.client()
    part = os.urandom(5 << 20)
    # Another writer, uploading under the same prefix right now.
    foreign = client.create_multipart_upload(Bucket=s3.bucket, Key="shared/raw/bot_id=y/theirs.bin")
    client.upload_part(
        Bucket=s3.bucket,
        Key="shared/raw/bot_id=y/theirs.bin",
        UploadId=foreign["UploadId"],
        PartNumber=1,
        Body=part,
    )
    # This job, killed between two parts of a big file: what _multipart leaves behind.
    killed = s3_storage(s3, "shared", workdir / "staging", s3.endpoint)
    ours = client.create_multipart_upload(Bucket=s3.bucket, Key="shared/raw/bot_id=x/ours.bin")
    record = killed._record_upload("raw/bot_id=x/ours.bin", ours["UploadId"])  # noqa: SLF001
    client.upload_part(
        Bucket=s3.bucket,
        Key="shared/raw/bot_id=x/ours.bin",
        UploadId=ours["UploadId"],
        PartNumber=1,
        Body=part,
    )
    # And a big file of this job that went up whole: no record is left for it.
    killed.publish(local_file(workdir, os.urandom(12 << 20), "big.bin"), "raw/bot_id=x/big.bin")

    next_job = s3_storage(s3, "shared", workdir / "staging", s3.endpoint)
    assert next_job.sweep_staging() == 1

    open_uploads = client.list_multipart_uploads(Bucket=s3.bucket, Prefix="shared/").get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in open_uploads] == [
        ("shared/raw/bot_id=y/theirs.bin", foreign["UploadId"])
    ]
    assert not record.exists()
    assert next_job.sweep_staging() == 0
    client.abort_multipart_upload(
        Bucket=s3.bucket, Key="shared/raw/bot_id=y/theirs.bin", UploadId=foreign["UploadId"]
    )
