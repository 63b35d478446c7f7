"""Keep a report's raw bytes: hash and copy them under raw/, in a thread.

Used by :mod:`ingest.archive.stream`: the hash and the durable copy are needed by the commit
(data rows carry a stand-in for ``source_sha256`` until then), which links the copy
into place as ``raw/bot_id=<bot>/<sha256>.<ext>``.

Example::

    raw = RawCopy(root, "bot-1", Path("report.csv"), None)
    readable = raw.start()   # what to parse
    raw.sha256()             # as soon as hashed (and copied)
    raw.wait()               # once the copy is durable
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import mmap
import os
import shutil
import threading
import uuid
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, cast

from ingest.archive.storage import Storage, as_storage
from ingest.errors import OutputError

_COPY_BLOCK = 1 << 20
#: The raw copy's block: read, hashed and written at once (a multiple of _ALIGN).
_DIRECT_BLOCK = 4 << 20
#: O_DIRECT wants buffer, offsets and lengths aligned to the device's block.
_ALIGN = 4096

#: What can be archived: a file, bytes in memory, or a binary stream (gzip, zip member).
Source = Path | bytes | BinaryIO


class RawCopy:
    """Hash the source and copy it to a temporary file under raw/, in a thread.

    A file is hashed and copied in one pass (each block read once); the data files only
    need the hash at commit (they carry a stand-in until then), the copy and its fsync
    too. A
    file object (a gzip stream, a zip member) is copied and hashed in one pass before
    parsing starts, and the copy is what gets parsed: memory stays bounded.
    """

    def __init__(self, root: Storage | Path, bot_id: str, source: Source, sha256: str | None) -> None:
        storage = as_storage(root)
        self.folder = storage.staging  # published later under raw/bot_id=<bot>/ by the commit
        self.tmp = storage.temp(f"raw-{bot_id}", f"{uuid.uuid4().hex[:8]}-")
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
                    self._sha, self.size = _hash_and_copy(self.source, self.tmp)
                else:
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
        assert not isinstance(self.source, (bytes, Path)), "paths and bytes are copied in _run"
        # typing.BinaryIO has no readinto; every binary file object (buffered or raw) has.
        reader = cast(io.BufferedIOBase, self.source)
        digest = hashlib.sha256()
        buffer = bytearray(_COPY_BLOCK)
        view = memoryview(buffer)
        with self.tmp.open("wb") as out:
            while n := reader.readinto(view):
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


def _hash_and_copy(source: Path, target: Path) -> tuple[str, int]:
    """Hash ``source`` and copy it to ``target`` in one pass; (sha256, size).

    Each block is read once, hashed, and written with ``O_DIRECT`` where the file system
    allows it: the copy goes from this buffer to the disk without filling the page cache
    with a second gigabyte, which costs more CPU than the copy itself (pages zeroed, and
    reclaimed later). The caller fsyncs ``target``. Elsewhere (tmpfs...), plain writes.
    """
    digest = hashlib.sha256()
    buffer = mmap.mmap(-1, _DIRECT_BLOCK)  # page-aligned, as O_DIRECT wants
    view = memoryview(buffer)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    direct = getattr(os, "O_DIRECT", 0)
    try:
        out = os.open(target, flags | direct, 0o666)
    except OSError as err:
        if not direct or err.errno != errno.EINVAL:
            raise
        direct = 0
        out = os.open(target, flags, 0o666)
    size = 0
    try:
        with source.open("rb", buffering=0) as stream:
            while n := _read_full(stream, view):
                digest.update(view[:n])  # hashlib releases the GIL on big buffers
                # The last block is padded to the alignment, then cut back by ftruncate.
                length = n if not direct or n % _ALIGN == 0 else n + _ALIGN - n % _ALIGN
                direct = _write_all(out, view[:length], direct)
                size += n
                if n < len(view):
                    break
        os.ftruncate(out, size)
    finally:
        os.close(out)
        view.release()
        buffer.close()
    return digest.hexdigest(), size


def _read_full(stream: io.RawIOBase, view: memoryview) -> int:
    """Fill ``view`` from ``stream`` (short only at the end of the file)."""
    total = 0
    while total < len(view):
        n = stream.readinto(view[total:])
        if not n:
            break
        total += n
    return total


def _write_all(fd: int, data: memoryview, direct: int) -> int:
    """Write all of ``data``; returns whether ``O_DIRECT`` is still on (0 or the flag)."""
    written = 0
    while written < len(data):
        try:
            written += os.write(fd, data[written:])
        except OSError as err:
            if not direct or err.errno != errno.EINVAL:
                raise
            # The file system took the open but refuses direct writes: go on buffered.
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~direct)
            direct = 0
    return direct


def _output_error(path: Path, err: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {err.strerror or err}", hint="INGEST_OUTPUT__ROOT")
