"""Where the archive lives: a local folder or an S3-compatible bucket, behind one interface.

Everything in the archive is named by a *key*, a relative path with forward slashes
(``messages/bot_id=b/date=2024-01-01/part-<sha16>.parquet``). Files are produced under
temporary names in a local staging folder and then *published* under their key, once:

* :class:`LocalStorage`: the staging folder is ``<root>/.staging`` (same file system), and
  publishing is fsync, ``os.link`` (fails if the name exists: no overwrite, even in a race),
  fsync of the folder.
* :class:`S3Storage` (``s3://bucket/prefix``): S3 has no rename, so each key is unique
  (named after the source's hash) and written once with ``If-None-Match: *``; the object
  is read back (size, and the Parquet footer's row count) before the write counts as done.
  The staging folder is local (``INGEST_OUTPUT__STAGING_DIR``).

Callers commit in the order data -> manifest, so a manifest is only ever written after
every file it lists is published. Example::

    storage = open_storage("s3://archive/certainly", endpoint_url="http://127.0.0.1:9000")
    tmp = storage.temp("report.parquet")
    ...                                   # write tmp
    storage.publish(tmp, "messages/bot_id=b/date=2024-01-01/part-0123.parquet")
"""

from __future__ import annotations

import hashlib
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from pydantic import SecretStr

from ingest.archive.layout import STAGING
from ingest.errors import ConfigError
from ingest.settings import Settings

BLOCK = 1 << 20


@dataclass(frozen=True)
class StoredObject:
    """One published file: its key and size in bytes."""

    key: str
    size: int


class Storage(ABC):
    """The archive's root, local or remote. Keys are relative, with forward slashes."""

    #: A local folder for temporary files (created on first use).
    staging: Path

    @abstractmethod
    def describe(self, key: str = "") -> str:
        """The place a key is, for messages: a path or an ``s3://`` URL."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True when a file is published under ``key``."""

    @abstractmethod
    def publish(self, tmp: Path, key: str) -> bool:
        """Publish a finished temporary file under ``key``, durably, never replacing one.

        Returns False when ``key`` exists already (left alone). The temporary file is the
        caller's to remove. Raises OSError (local) or an :class:`ingest.errors.IngestError`.
        """

    @abstractmethod
    def objects(self, prefix: str) -> list[StoredObject]:
        """Every published file whose key starts with ``prefix``, sorted by key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a published file for good: on a versioned S3 bucket every version of it
        (an erasure leaves no older version behind). A file under an S3 Object Lock
        retention is removed only when :attr:`bypass_allowed`; else :class:`OutputError`."""

    #: Erasure may remove objects under an S3 Object Lock governance retention.
    bypass_allowed: bool = False

    def retained_until(self, key: str) -> datetime | None:
        """When an S3 Object Lock retention on ``key`` ends, if it has not yet; None for a
        local folder, an unlocked object or a lapsed retention."""
        return None

    def purge_old_versions(self, prefix: str) -> int:
        """Remove what a versioned bucket keeps of files no longer there (older versions and
        delete markers under ``prefix``: what a Delta vacuum's plain deletes leave behind).
        Returns how many; 0 for a local folder."""
        return 0

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The whole content of a (small) file: manifests, reasons."""

    @abstractmethod
    def sha256(self, key: str) -> str | None:
        """Hex sha256 of a file, streamed; None when it cannot be read."""

    @abstractmethod
    def parquet_rows(self, key: str) -> int:
        """Row count from a Parquet file's footer."""

    @abstractmethod
    def parquet_metadata(self, key: str) -> pq.FileMetaData:
        """A Parquet file's footer (row groups, column statistics)."""

    @abstractmethod
    def source(self, key: str) -> str:
        """What polars' ``scan_parquet`` is given for ``key`` (with :attr:`storage_options`)."""

    storage_options: dict[str, str] | None = None

    def scan(self, keys: list[str], **options: Any) -> pl.LazyFrame:
        """A lazy polars scan of Parquet files."""
        return pl.scan_parquet(
            [self.source(k) for k in keys], storage_options=self.storage_options, **options
        )

    def temp(self, name: str, tag: str = "") -> Path:
        """A fresh temporary path in the staging folder, for a file later published.

        Readers globbing the archive never see it; the next job sweeps it if this one is
        killed (:meth:`sweep_staging`).
        """
        try:
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # the caller's write fails and reports it
        return self.staging / f".tmp-{os.getpid()}-{tag}{uuid.uuid4().hex[:8]}-{name}"

    def sweep_staging(self) -> int:
        """Remove temporary files (and uploads) left by a killed job. Only safe while
        holding the job lock: no other writer can be alive. Returns how many."""
        return _remove_all(self.staging.glob(".tmp-*"))


class LocalStorage(Storage):
    """An archive in a local folder (or a mounted volume)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.staging = self.root / STAGING

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The local path of a key."""
        return self.root / key

    def describe(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def exists(self, key: str) -> bool:
        return (self.root / key).exists()

    def publish(self, tmp: Path, key: str) -> bool:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("rb+") as stream:
            os.fsync(stream.fileno())
        try:
            os.link(tmp, path)  # fails if the name exists: no overwrite, even in a race
        except FileExistsError:
            return False
        _fsync_dir(path.parent)
        return True

    def objects(self, prefix: str) -> list[StoredObject]:
        folder, _, start = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return []
        found = []
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix) and not key.startswith(STAGING) and path.is_file():
                found.append(StoredObject(key, path.stat().st_size))
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        path = self.root / key
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def read_bytes(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def sha256(self, key: str) -> str | None:
        try:
            with (self.root / key).open("rb") as stream:
                return sha256_stream(stream)
        except OSError:
            return None

    def parquet_rows(self, key: str) -> int:
        return int(pq.ParquetFile(self.root / key).metadata.num_rows)

    def parquet_metadata(self, key: str) -> pq.FileMetaData:
        return pq.read_metadata(self.root / key)

    def source(self, key: str) -> str:
        return str(self.root / key)

    def sweep_staging(self) -> int:
        removed = super().sweep_staging()
        for area in ("messages", "raw", "quarantine", "manifests"):  # before .staging existed
            removed += _remove_all((self.root / area).rglob(".tmp-*"))
        return removed


def local_copy(storage: Storage, key: str) -> tuple[Path, bool]:
    """A local path of a stored file (its own, for a local archive; else a temporary copy)."""
    if isinstance(storage, LocalStorage):
        return storage.path(key), False
    tmp = storage.temp(key.rsplit("/", 1)[-1])
    tmp.write_bytes(storage.read_bytes(key))
    return tmp, True


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a local file, read in blocks (:func:`hashlib.file_digest`): the one file
    hash of the archive and of export bundles."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def sha256_stream(stream: Any) -> str:
    """Hex sha256 of a binary stream (a file, an S3 body), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(BLOCK), b""):
        digest.update(block)
    return digest.hexdigest()


def _remove_all(paths: Iterable[Path]) -> int:
    """Unlink what can be unlinked; how many were."""
    removed = 0
    for leftover in list(paths):
        try:
            leftover.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_storage(root: str | Path, *, staging_dir: Path | None = None, **s3: Any) -> Storage:
    """The storage for an output root: ``s3://bucket/prefix`` or a local folder.

    ``staging_dir`` is used for S3 only: a local root stages in ``<root>/.staging``, on the
    same file system, so that publishing is an atomic link.

    ``s3`` takes ``endpoint_url``, ``region``, ``access_key_id``, ``secret_access_key``
    (plain strings), ``object_lock_days`` and ``bypass_allowed`` for
    :class:`ingest.archive.s3.S3Storage`.
    """
    text = str(root)
    if text.startswith("s3://"):
        from ingest.archive.s3 import (
            S3Storage,  # boto3 is imported only when S3 is used
        )

        bucket, _, prefix = text.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigError(
                f"output root {text!r} names no bucket; use s3://bucket/prefix", hint="INGEST_OUTPUT__ROOT"
            )
        if staging_dir is None:
            raise ConfigError(
                "an s3:// output root needs a local staging folder", hint="INGEST_OUTPUT__STAGING_DIR"
            )
        if s3.get("access_key_id") and not s3.get("secret_access_key"):
            raise ConfigError(
                "an S3 access key id is set without its secret key",
                hint="INGEST_OUTPUT__S3_SECRET_ACCESS_KEY",
            )
        return S3Storage(bucket, prefix.strip("/"), staging=staging_dir, **s3)
    if s3.get("object_lock_days"):
        raise ConfigError(
            "S3 Object Lock needs an s3:// output root (a local folder has no retention)",
            hint="INGEST_OUTPUT__OBJECT_LOCK_DAYS",
        )
    if "://" in text:
        raise ConfigError(
            f"output root {text!r}: only local folders and s3:// are supported", hint="INGEST_OUTPUT__ROOT"
        )
    return LocalStorage(Path(text))


def storage_for(settings: Settings) -> Storage:
    """The archive's storage as the settings describe it (built once, at the entry point)."""
    output = settings.output
    staging = output.staging_dir or Path(settings.state.path).parent / "staging"
    return open_storage(
        output.root,
        staging_dir=staging,
        endpoint_url=output.s3_endpoint_url,
        region=output.s3_region,
        access_key_id=_reveal(output.s3_access_key_id),
        secret_access_key=_reveal(output.s3_secret_access_key),
        object_lock_days=output.object_lock_days,
        bypass_allowed=output.object_lock_bypass,
    )


def _reveal(secret: SecretStr | None) -> str | None:
    """A secret's value, only to hand it to the S3 client (never logged)."""
    return secret.get_secret_value() if secret is not None else None


def as_storage(root: Storage | Path | str) -> Storage:
    """A :class:`Storage` as is, or a local folder as :class:`LocalStorage`."""
    return root if isinstance(root, Storage) else LocalStorage(Path(root))
