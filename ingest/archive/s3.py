"""The archive in an S3-compatible bucket (AWS S3, MinIO, Ceph, moto ...).

S3 has no rename and no atomic "create if absent" except conditional writes, so every
object is written once under a unique final name with ``If-None-Match: *`` (a second
writer gets 412 and leaves the first object alone), then read back (``HEAD`` size, and for
Parquet the footer's row count) before the write counts as done. Big files go up in parts
(bounded memory) and are completed with the same condition; a failed upload is aborted,
and the next job aborts uploads a killed one left (:meth:`S3Storage.sweep_staging`): only
its own, each recorded in the local staging folder (``.uploads/``) from the moment S3 names
it, never another writer's under the same prefix.

A ``409 ConditionalRequestConflict`` (another conditional write to the same key was in
flight) says nothing about what the bucket holds: it is retried, then settled by reading
the object back (size and sha256 against the local file), never assumed written.

With ``object_lock_days`` set, the evidence (:data:`ingest.archive.layout.LOCKED`: raw
copies, manifests) is written under an S3 Object Lock retention in GOVERNANCE mode: nobody
without ``s3:BypassGovernanceRetention`` can delete or overwrite it before the date. An
erasure must still remove a subject's bytes: :meth:`S3Storage.delete` removes every version
of a key, bypassing the retention only when ``bypass_allowed`` (the setting
``INGEST_OUTPUT__OBJECT_LOCK_BYPASS``); else it stops with an error naming that setting.
COMPLIANCE mode is never used: it cannot be bypassed, so it would make erasure impossible.

Errors: a store that cannot be reached or answers 5xx after botocore's retries raises
:class:`ingest.errors.StorageUnavailable` (transient, exit 3); refused credentials or a
missing bucket raise :class:`ingest.errors.OutputError` naming the setting.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ingest.archive.layout import LOCKED
from ingest.archive.storage import Storage, StoredObject, sha256_stream
from ingest.errors import OutputError, StorageUnavailable

#: Files above this go up as a multipart upload, one part in memory at a time.
PART_BYTES = 16 << 20
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_EXISTS = {"412", "PreconditionFailed"}
#: Another conditional write to the key was in flight: what the bucket holds is unknown.
_CONFLICT = {"409", "ConditionalRequestConflict"}
#: No retention on the object, or no Object Lock on the bucket.
_NO_RETENTION = {"NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError", "InvalidRequest"}
#: The one mode used: a governance retention can be bypassed by erasure, when allowed.
LOCK_MODE = "GOVERNANCE"
#: Writes tried on 409 before settling by reading back, and the first pause (doubling).
CONFLICT_ATTEMPTS = 4
CONFLICT_PAUSE = 0.2
#: Folder of the staging area recording this job's open multipart uploads.
UPLOADS = ".uploads"
_REFUSED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "AllAccessDisabled",
    "403",
    "InvalidBucketName",
}


class S3Storage(Storage):
    """An archive under ``s3://bucket/prefix``."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        staging: Path,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_attempts: int = 4,
        timeout: float = 30.0,
        object_lock_days: int | None = None,
        bypass_allowed: bool = False,
    ) -> None:
        self.bucket, self.prefix, self.staging = bucket, prefix.strip("/"), Path(staging)
        self.object_lock_days, self.bypass_allowed = object_lock_days, bypass_allowed
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=timeout,
                read_timeout=timeout,
                s3={"addressing_style": "path"} if endpoint_url else {},
            ),
        )
        # The same store for polars (object_store) when verify scans the data files.
        options = {"aws_region": region}
        if endpoint_url:
            options |= {
                "aws_endpoint_url": endpoint_url,
                "aws_allow_http": str(endpoint_url.startswith("http://")).lower(),
            }
        if access_key_id and secret_access_key:
            options |= {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
        self.storage_options = options

    def __repr__(self) -> str:  # no credentials
        return f"S3Storage({self.describe()!r})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def describe(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}".rstrip("/")

    def exists(self, key: str) -> bool:
        with self._errors(key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as err:
                if _code(err) in _NOT_FOUND:
                    return False
                raise
        return True

    def publish(self, tmp: Path, key: str) -> bool:
        size = tmp.stat().st_size
        with self._errors(key):
            for attempt in range(CONFLICT_ATTEMPTS):
                try:
                    self._put(tmp, key, size)
                except ClientError as err:
                    if _code(err) in _EXISTS:
                        return False  # published before (a re-run, or a race): left alone
                    if _code(err) not in _CONFLICT:
                        raise
                    if attempt + 1 < CONFLICT_ATTEMPTS:
                        time.sleep(CONFLICT_PAUSE * 2**attempt)
                    continue
                self._read_back(tmp, key, size)
                return True
            self._settle_conflict(tmp, key, size)
        return True

    def _put(self, tmp: Path, key: str, size: int) -> None:
        """One conditional write (``If-None-Match: *``), whole or in parts."""
        try:
            if size <= PART_BYTES:
                with tmp.open("rb") as body:
                    self.client.put_object(
                        Bucket=self.bucket, Key=self._key(key), Body=body, IfNoneMatch="*", **self._lock(key)
                    )
            else:
                self._multipart(tmp, key)
        except ClientError as err:
            if self._lock(key) and _code(err) in _NO_RETENTION:
                raise OutputError(
                    f"{self.describe(key)}: the bucket refused an Object Lock retention "
                    f"({_code(err)}): is Object Lock enabled on it?",
                    hint="INGEST_OUTPUT__OBJECT_LOCK_DAYS",
                ) from None
            raise

    def _lock(self, key: str) -> dict[str, Any]:
        """The Object Lock arguments of a write: a governance retention for the evidence."""
        if not self.object_lock_days or not key.startswith(tuple(f"{folder}/" for folder in LOCKED)):
            return {}
        until = datetime.now(UTC) + timedelta(days=self.object_lock_days)
        return {"ObjectLockMode": LOCK_MODE, "ObjectLockRetainUntilDate": until}

    def _settle_conflict(self, tmp: Path, key: str, size: int) -> None:
        """After repeated 409s: the write counts only if the object is there with our exact
        bytes (size, then sha256). Absent: transient, try again later. Other bytes: a person
        must look; nothing is ever assumed written."""
        where = self.describe(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _code(err) in _NOT_FOUND:
                raise StorageUnavailable(
                    f"{where}: the object store kept answering 409 "
                    "ConditionalRequestConflict and holds no such object; "
                    "nothing was recorded, run again later"
                ) from None
            raise
        with tmp.open("rb") as local:
            ours = sha256_stream(local)
        if head["ContentLength"] == size and self.sha256(key) == ours:
            self._read_back(tmp, key, size)
            return
        raise OutputError(
            f"{where}: after 409 ConditionalRequestConflict the object store holds "
            f"other bytes ({head['ContentLength']} bytes) than this job wrote ({size})",
            hint="INGEST_OUTPUT__ROOT",
        )

    def _multipart(self, tmp: Path, key: str) -> None:
        upload = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=self._key(key), **self._lock(key)
        )
        upload_id = upload["UploadId"]
        record = self._record_upload(key, upload_id)  # from now on, the sweep may abort it
        try:
            parts = []
            with tmp.open("rb") as stream:
                for number, chunk in enumerate(iter(lambda: stream.read(PART_BYTES), b""), 1):
                    answer = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=self._key(key),
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    )
                    parts.append({"ETag": answer["ETag"], "PartNumber": number})
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(key), UploadId=upload_id)
            except (BotoCoreError, ClientError):
                pass  # the record stays: the next job's sweep aborts it
            else:
                record.unlink(missing_ok=True)
            raise
        record.unlink(missing_ok=True)

    def _record_upload(self, key: str, upload_id: str) -> Path:
        """Write down (durably) that this job opened ``upload_id``: the sweep aborts only
        uploads recorded here, never another writer's under the same prefix."""
        folder = self.staging / UPLOADS
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha256(upload_id.encode()).hexdigest()[:32]}.json"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as stream:
            json.dump({"key": self._key(key), "upload_id": upload_id}, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
        return path

    def _read_back(self, tmp: Path, key: str, size: int) -> None:
        """Check what the store holds now is what was sent: size, and the Parquet footer."""
        head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        if head["ContentLength"] != size:
            raise OutputError(
                f"{self.describe(key)}: read back {head['ContentLength']} bytes, wrote {size}",
                hint="INGEST_OUTPUT__ROOT",
            )
        if key.endswith(".parquet"):
            stored, local = self.parquet_rows(key), pq.ParquetFile(tmp).metadata.num_rows
            if stored != local:
                raise OutputError(
                    f"{self.describe(key)}: read back {stored} rows, wrote {local}",
                    hint="INGEST_OUTPUT__ROOT",
                )

    def objects(self, prefix: str) -> list[StoredObject]:
        found = []
        strip = len(self._key(""))
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(StoredObject(item["Key"][strip:], item["Size"]))
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        with self._errors(key):
            versions = [v for v in self._versions(key) if v[0] == self._key(key)]
            if not versions:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
            for full, version_id, _ in sorted(versions, key=lambda v: v[2] == "marker"):  # markers last
                self._delete_version(full, version_id)

    def purge_old_versions(self, prefix: str) -> int:
        with self._errors(prefix):
            old = [v for v in self._versions(prefix) if v[2] != "latest"]
            # Older versions first, then delete markers: removing a marker first would make
            # the version under it current again.
            for full, version_id, _ in sorted(old, key=lambda v: v[2] == "marker"):
                self._delete_version(full, version_id)
        return len(old)

    def _versions(self, prefix: str) -> list[tuple[str, str, str]]:
        """``(full key, version id, "latest" | "old" | "marker")`` under ``prefix``: every
        version a versioned bucket keeps (an unversioned one answers version ``null``)."""
        found: list[tuple[str, str, str]] = []
        pages = self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        for page in pages:
            for item in page.get("Versions", []):
                found.append((item["Key"], item["VersionId"], "latest" if item.get("IsLatest") else "old"))
            for item in page.get("DeleteMarkers", []):
                found.append((item["Key"], item["VersionId"], "marker"))
        return found

    def _delete_version(self, full: str, version_id: str) -> None:
        """Remove one version; one under a retention only when bypass is allowed."""
        bypass = {"BypassGovernanceRetention": True} if self.bypass_allowed else {}
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full, VersionId=version_id, **bypass)
        except ClientError as err:
            key = full[len(self._key("")) :]
            until = self.retained_until(key) if _code(err) in _REFUSED else None
            if until is None:
                raise
            raise OutputError(
                f"{self.describe(key)} is under an S3 Object Lock retention until "
                f"{until:%Y-%m-%d %H:%M} UTC and bypassing it is not allowed",
                hint="INGEST_OUTPUT__OBJECT_LOCK_BYPASS",
            ) from None

    def retained_until(self, key: str) -> datetime | None:
        try:
            answer = self.client.get_object_retention(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _code(err) in _NO_RETENTION | _NOT_FOUND:
                return None
            raise
        until = answer.get("Retention", {}).get("RetainUntilDate")
        return until if isinstance(until, datetime) and until > datetime.now(UTC) else None

    def read_bytes(self, key: str) -> bytes:
        with self._errors(key):
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        return body

    def sha256(self, key: str) -> str | None:
        try:
            with self._errors(key):
                return sha256_stream(self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"])
        except OutputError:
            return None

    def parquet_rows(self, key: str) -> int:
        """Rows from the footer, fetched with two ranged GETs (not the whole file)."""
        return int(self.parquet_metadata(key).num_rows)

    def parquet_metadata(self, key: str) -> pq.FileMetaData:
        """The footer, fetched with two ranged GETs (not the whole file)."""
        with self._errors(key):
            end = self._range(key, "bytes=-8")
            if len(end) != 8 or end[4:] != b"PAR1":
                raise OutputError(f"{self.describe(key)}: not a Parquet file (no footer)")
            tail = self._range(key, f"bytes=-{8 + int.from_bytes(end[:4], 'little')}")
            # The footer alone, behind the magic bytes, is a file pyarrow can read metadata from.
            return pq.read_metadata(pa.BufferReader(b"PAR1" + tail))

    def _range(self, key: str, byte_range: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=byte_range)[
            "Body"
        ].read()
        return body

    def source(self, key: str) -> str:
        return self.describe(key)

    def sweep_staging(self) -> int:
        """Local leftovers, and the multipart uploads a killed job of ours left open (those
        recorded in ``<staging>/.uploads``; another writer's uploads are not ours to abort)."""
        removed = super().sweep_staging()
        folder = self.staging / UPLOADS
        if not folder.is_dir():
            return removed
        for record in sorted(folder.glob("*.json")):
            try:
                upload = json.loads(record.read_text(encoding="utf-8"))
                key, upload_id = str(upload["key"]), str(upload["upload_id"])
            except (OSError, ValueError, KeyError, TypeError):
                record.unlink(missing_ok=True)  # a record cut short: its upload never got parts
                continue
            with self._errors(key):
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                    removed += 1
                except ClientError as err:
                    if _code(err) not in _NOT_FOUND | {"NoSuchUpload"}:
                        raise
            record.unlink(missing_ok=True)
        for leftover in folder.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        return removed

    def check_bucket(self) -> None:
        """Raise unless the bucket exists and these credentials may list it (doctor)."""
        with self._errors(""):
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(""), MaxKeys=1)

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Map botocore's errors to the package's: transient or needing a person."""
        try:
            yield
        except ClientError as err:
            code = _code(err)
            where = self.describe(key)
            if code in _REFUSED:
                raise OutputError(
                    f"{where}: the object store refused access ({code})",
                    hint="INGEST_OUTPUT__ROOT, INGEST_OUTPUT__S3_ACCESS_KEY_ID",
                ) from None
            if code in _NOT_FOUND:
                raise OutputError(f"{where}: not found", hint="INGEST_OUTPUT__ROOT") from None
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or code in {"SlowDown", "RequestTimeout", "InternalError"}:
                raise StorageUnavailable(f"{where}: the object store failed ({code}) after retries") from None
            raise OutputError(
                f"{where}: the object store answered {code}", hint="INGEST_OUTPUT__ROOT"
            ) from None
        except BotoCoreError as err:
            raise StorageUnavailable(
                f"{self.describe(key)}: cannot reach the object store ({type(err).__name__})",
                hint="INGEST_OUTPUT__S3_ENDPOINT_URL",
            ) from None


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))
