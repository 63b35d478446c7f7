"""Keep a report's raw bytes: hash them, then copy them under raw/, in a thread.

Used by :mod:`ingest.stream`: the hash is needed early (every data row carries
``source_sha256``), the durable copy only by the commit, which links it into place as
``raw/bot_id=<bot>/<sha256>.<ext>``.

Example::

    raw = RawCopy(root, "bot-1", Path("report.csv"), None)
    readable = raw.start()   # what to parse
    raw.sha256()             # as soon as hashed
    raw.wait()               # once the copy is durable
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from ingest.errors import OutputError
from ingest.storage import Storage, as_storage

_COPY_BLOCK = 1 << 20

#: What can be archived: a file, bytes in memory, or a binary stream (gzip, zip member).
Source = Path | bytes | BinaryIO


class RawCopy:
    """Hash the source, then copy it to a temporary file under raw/, in a thread.

    The hash comes first, on its own, because the data files need it (every row carries
    ``source_sha256``); the copy and its fsync only need to be done by the commit. A
    file object (a gzip stream, a zip member) is copied and hashed in one pass before
    parsing starts, and the copy is what gets parsed: memory stays bounded.
    """

    def __init__(self, root: Storage | Path, bot_id: str, source: Source, sha256: str | None) -> None:
        out = as_storage(root)
        self.folder = out.staging  # published later under raw/bot_id=<bot>/ by the commit
        self.tmp = out.temp(f"raw-{bot_id}", f"{uuid.uuid4().hex[:8]}-")
        self.source = source
        self.size = 0
        self._sha = sha256
        self._hashed = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="raw-copy", daemon=True)

    def start(self) -> Path | bytes:
        """Start hashing and copying; returns what to parse (the copy, for a file object)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _output_error(self.folder, err) from None
        if isinstance(self.source, (bytes, Path)):
            self._thread.start()
            return self.source
        self._run()
        self.wait()
        return self.tmp

    def _run(self) -> None:
        try:
            if isinstance(self.source, Path):
                if self._sha is None:
                    self._sha = _hash_file(self.source)
                self._hashed.set()
                shutil.copyfile(self.source, self.tmp)  # sendfile: no copy through Python
                self.size = self.tmp.stat().st_size
            elif isinstance(self.source, bytes):
                if self._sha is None:
                    self._sha = hashlib.sha256(self.source).hexdigest()
                self._hashed.set()
                self.tmp.write_bytes(self.source)
                self.size = len(self.source)
            else:
                self._copy_stream()
            with self.tmp.open("rb+") as out:
                os.fsync(out.fileno())  # here, so the disk writes overlap with parsing
        except BaseException as err:  # noqa: BLE001 - raised in the consumer by wait()
            self._error = err
        finally:
            self._hashed.set()

    def _copy_stream(self) -> None:
        digest = hashlib.sha256()
        buffer = bytearray(_COPY_BLOCK)
        view = memoryview(buffer)
        with self.tmp.open("wb") as out:
            while n := self.source.readinto(view):  # type: ignore[union-attr]
                digest.update(view[:n])
                out.write(view[:n])
                self.size += n
        self._sha = self._sha or digest.hexdigest()

    def sha256(self) -> str:
        """The source's sha256, as soon as it is known."""
        self._hashed.wait()
        self._raise()
        assert self._sha is not None
        return self._sha

    def wait(self) -> str:
        """The source's sha256, once the copy is durable; raises what the copy met."""
        if self._thread.ident is not None:
            self._thread.join()
        return self.sha256()

    def _raise(self) -> None:
        if self._error is not None:
            if isinstance(self._error, OSError):
                raise _output_error(self.tmp, self._error) from None
            raise self._error

    def discard(self) -> None:
        """Wait for the thread and remove the temporary copy."""
        if self._thread.ident is not None:
            self._thread.join()
        with suppress(OSError):  # cleaning up must not hide the error that got us here
            self.tmp.unlink(missing_ok=True)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_COPY_BLOCK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as stream:
        while n := stream.readinto(view):
            digest.update(view[:n])  # hashlib releases the GIL on big buffers
    return digest.hexdigest()


def _output_error(path: Path, err: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {err.strerror or err}", hint="INGEST_OUTPUT__ROOT")
