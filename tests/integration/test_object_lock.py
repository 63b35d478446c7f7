"""S3 Object Lock on a real S3-compatible server (SeaweedFS): the evidence (raw copies,
manifests) is written under a governance retention, erasure removes a locked object only
when bypass is allowed, and nothing a versioned bucket keeps of a removed file survives."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from ingest.archive.layout import MANIFESTS, RAW
from ingest.archive.s3 import S3Storage
from ingest.errors import OutputError
from ingest.simulator import generate_messages, rows_to_csv
from tests.support.forget import SUBJECT, SUBJECT_IP, SUBJECT_TEXT, build_archive, files_holding
from tests.support.job import run_ingest
from tests.support.seaweed import CREDENTIALS, SeaweedS3

pytestmark = pytest.mark.integration

BOT = "0b7ec7ed-0000-4000-8000-000000000001"
FIRST, LAST = date(2024, 5, 1), date(2024, 5, 3)


@pytest.fixture
def locked(seaweed: SeaweedS3) -> SeaweedS3:
    """A fresh bucket with Object Lock enabled (and so versioning), on the module's server."""
    bucket = f"locked-{uuid.uuid4().hex[:8]}"
    seaweed.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return SeaweedS3(seaweed.port, bucket)


def s3_storage(s3: SeaweedS3, staging: Path, *, days: int | None = 2, bypass: bool = False) -> S3Storage:
    return S3Storage(
        s3.bucket,
        "a",
        staging=staging,
        endpoint_url=s3.endpoint,
        access_key_id=CREDENTIALS["aws_access_key_id"],
        secret_access_key=CREDENTIALS["aws_secret_access_key"],
        object_lock_days=days,
        bypass_allowed=bypass,
    )


def import_report(s3: SeaweedS3, workdir: Path, **extra: str) -> tuple[int, str]:
    """``ingest import`` of one simulator report into s3://bucket/a; (exit code, stderr)."""
    report = workdir / "report.csv"
    report.write_bytes(rows_to_csv(generate_messages(BOT, FIRST, LAST)))
    env = {**s3.env("a", workdir / "staging"), "INGEST_STATE__PATH": str(workdir / "state.sqlite"), **extra}
    done = run_ingest("import", str(report), "--bot", BOT, env=env, cwd=workdir)
    return done.returncode, done.stderr


def versions(s3: SeaweedS3, prefix: str) -> list[str]:
    """Every version and delete marker the bucket keeps under ``a/<prefix>``."""
    answer = s3.client().list_object_versions(Bucket=s3.bucket, Prefix=f"a/{prefix}")
    return [v["Key"] for v in answer.get("Versions", []) + answer.get("DeleteMarkers", [])]


def retention(s3: SeaweedS3, key: str) -> tuple[str, datetime] | None:
    try:
        got = s3.client().get_object_retention(Bucket=s3.bucket, Key=f"a/{key}")["Retention"]
    except ClientError:
        return None
    return got["Mode"], got["RetainUntilDate"]


def test_raw_copies_and_manifests_are_locked_and_data_files_are_not(locked: SeaweedS3, workdir: Path) -> None:
    code, stderr = import_report(locked, workdir, INGEST_OUTPUT__OBJECT_LOCK_DAYS="2")
    assert code == 0, stderr
    keys = [k.removeprefix("a/") for k in locked.keys("a/")]
    evidence = [k for k in keys if k.startswith((f"{RAW}/", f"{MANIFESTS}/"))]
    data = [k for k in keys if k.startswith("messages/") and k.endswith(".parquet")]
    assert evidence and data
    soon, later = datetime.now(UTC) + timedelta(days=1), datetime.now(UTC) + timedelta(days=3)
    for key in evidence:
        mode, until = retention(locked, key) or ("none", datetime.min.replace(tzinfo=UTC))
        assert mode == "GOVERNANCE" and soon < until < later, key
    assert all(retention(locked, k) is None for k in data)
    verify = run_ingest(
        "verify",
        env={**locked.env("a", workdir / "staging"), "INGEST_STATE__PATH": str(workdir / "state.sqlite")},
        cwd=workdir,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_locked_raw_copy_is_not_removed_without_bypass(locked: SeaweedS3, workdir: Path) -> None:
    code, stderr = import_report(locked, workdir, INGEST_OUTPUT__OBJECT_LOCK_DAYS="2")
    assert code == 0, stderr
    storage = s3_storage(locked, workdir / "staging")
    raw = next(o.key for o in storage.objects(f"{RAW}/"))
    body = storage.read_bytes(raw)
    assert storage.retained_until(raw) is not None
    with pytest.raises(OutputError) as refused:
        storage.delete(raw)
    message = str(refused.value)
    assert "\n" not in message and "Object Lock retention until" in message
    assert refused.value.hint == "INGEST_OUTPUT__OBJECT_LOCK_BYPASS"
    assert storage.read_bytes(raw) == body  # the object is still there, whole


def test_with_bypass_allowed_a_locked_object_goes_with_every_version(
    locked: SeaweedS3, workdir: Path
) -> None:
    code, stderr = import_report(locked, workdir, INGEST_OUTPUT__OBJECT_LOCK_DAYS="2")
    assert code == 0, stderr
    storage = s3_storage(locked, workdir / "staging", bypass=True)
    raw = next(o.key for o in storage.objects(f"{RAW}/"))
    storage.delete(raw)
    assert versions(locked, raw) == []  # no older version, no delete marker: the bytes are gone
    assert not storage.exists(raw)
    assert storage.objects(f"{MANIFESTS}/")  # the rest untouched


def test_old_versions_left_by_plain_deletes_are_purged(locked: SeaweedS3, workdir: Path) -> None:
    """A Delta vacuum deletes files with plain DELETEs: a versioned bucket keeps their bytes
    as older versions. ``purge_old_versions`` removes those, never a current file."""
    code, stderr = import_report(locked, workdir)
    assert code == 0, stderr
    storage = s3_storage(locked, workdir / "staging", days=None)
    files = [o.key for o in storage.objects("messages/") if o.key.endswith(".parquet")]
    gone, kept = files[0], files[1:]
    locked.client().delete_object(Bucket=locked.bucket, Key=f"a/{gone}")  # as vacuum does
    assert len(versions(locked, gone)) == 2  # the old version and the delete marker
    assert storage.purge_old_versions("messages/") == 2
    assert versions(locked, gone) == []
    assert [o.key for o in storage.objects("messages/") if o.key.endswith(".parquet")] == kept


def test_object_lock_on_a_bucket_without_it_is_one_clear_line(seaweed: SeaweedS3, workdir: Path) -> None:
    code, stderr = import_report(seaweed, workdir, INGEST_OUTPUT__OBJECT_LOCK_DAYS="2")
    assert code == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert any("INGEST_OUTPUT__OBJECT_LOCK_DAYS" in line for line in lines), stderr


@pytest.mark.parametrize("value", ["0", "ten", "-1"])
def test_a_bad_lock_setting_or_a_local_root_is_exit_2(workdir: Path, value: str) -> None:
    report = workdir / "report.csv"
    report.write_bytes(rows_to_csv(generate_messages(BOT, FIRST, FIRST)))
    env = {"INGEST_OUTPUT__ROOT": str(workdir / "archive"), "INGEST_STATE__PATH": str(workdir / "s.sqlite")}
    bad = run_ingest(
        "import",
        str(report),
        "--bot",
        BOT,
        env={**env, "INGEST_OUTPUT__OBJECT_LOCK_DAYS": value},
        cwd=workdir,
    )
    assert bad.returncode == 2 and "INGEST_OUTPUT__OBJECT_LOCK_DAYS" in bad.stderr, bad.stderr
    local = run_ingest(
        "import", str(report), "--bot", BOT, env={**env, "INGEST_OUTPUT__OBJECT_LOCK_DAYS": "3"}, cwd=workdir
    )
    assert local.returncode == 2 and "INGEST_OUTPUT__OBJECT_LOCK_DAYS" in local.stderr, local.stderr
    assert "s3://" in local.stderr


def all_versions(s3: SeaweedS3, prefix: str, into: Path) -> Path:
    """Every version the bucket keeps under ``prefix`` (older ones too), as local files."""
    client = s3.client()
    pages = client.get_paginator("list_object_versions").paginate(Bucket=s3.bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Versions", []):
            body = client.get_object(Bucket=s3.bucket, Key=item["Key"], VersionId=item["VersionId"])
            target = into / item["Key"] / item["VersionId"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body["Body"].read())
    return into


def test_erasure_on_a_locked_bucket_asks_for_bypass_then_leaves_no_version(
    locked: SeaweedS3, workdir: Path
) -> None:
    """Evidence under a governance retention: without bypass the erasure changes nothing and
    names the setting (exit 1); with it, the subject is gone from every version of every
    object the versioned bucket keeps, and the rewritten raw copies are locked again."""
    env = {
        **locked.env("a", workdir / "staging"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
        "INGEST_OUTPUT__OBJECT_LOCK_DAYS": "2",
    }
    build_archive(workdir, env)
    # Only the copies an erasure would change are refused: an id in no copy goes through
    # (every raw copy is locked), and --bot A names A's copy alone.
    nobody = run_ingest("erase", "--botuser", "4242", "--reason", "DSR-0", "--apply", env=env, cwd=workdir)
    assert nobody.returncode == 0 and "nothing of this subject" in nobody.stdout, nobody.stderr
    only_a = run_ingest(
        "erase", "--botuser", SUBJECT, "--bot", "bot-a", "--reason", "DSR-a", "--apply", env=env, cwd=workdir
    )
    assert only_a.returncode == 1 and "1 file(s)" in only_a.stderr and "bot_id=bot-a" in only_a.stderr
    keys_before = locked.keys("a/")
    erase = ("erase", "--botuser", SUBJECT, "--reason", "DSR-locked", "--apply")
    refused = run_ingest(*erase, env=env, cwd=workdir)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "INGEST_OUTPUT__OBJECT_LOCK_BYPASS" in refused.stderr and "Traceback" not in refused.stderr
    after = locked.keys("a/")
    # Nothing changed; only the archive's audit salt may have been made, on first use.
    assert set(after) == set(keys_before), after
    done = run_ingest(*erase, env={**env, "INGEST_OUTPUT__OBJECT_LOCK_BYPASS": "true"}, cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    copies = all_versions(locked, "a/", workdir / "versions")
    assert files_holding([copies, *workdir.glob("state.sqlite*")], [SUBJECT, SUBJECT_TEXT, SUBJECT_IP]) == []
    storage = s3_storage(locked, workdir / "staging")
    assert all(storage.retained_until(o.key) is not None for o in storage.objects(f"{RAW}/"))
    verify = run_ingest("verify", env=env, cwd=workdir)
    assert verify.returncode == 0, verify.stdout + verify.stderr
