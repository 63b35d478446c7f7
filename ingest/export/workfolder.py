"""Where an export is made: a working folder beside its output (same disk: the bundle is
published by rename), marked and locked while in use, and the sweep of those a killed
export left; the zip a bundle may be published as.

Example::

    with export_folder(Path("out/bundle")) as work:
        ...                               # write the bundle under work, then rename it
    sweep_killed_exports(Path("out"))     # what killed exports left
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ingest.crashpoints import crash_point

#: An export works in ``.<bundle name>.tmp-<random>`` beside its output (same disk: the
#: bundle is published by rename). The folder holds :data:`MARKER`, locked (``flock``)
#: while the export runs: a later export removes a folder only when it holds that marker
#: and its lock can be taken (its exporter is gone, whatever process ids say across
#: containers), never any other file or folder.
WORK_TAG = ".tmp-"
MARKER = ".certainly-ingest-export"


@contextmanager
def export_folder(out: Path) -> Iterator[Path]:
    """A fresh working folder for the export to ``out``, marked and locked while in use,
    removed after (the bundle was published from it, or the export failed)."""
    work = out.parent / f".{out.name}{WORK_TAG}{secrets.token_hex(6)}"
    work.mkdir(mode=0o700)
    try:
        fd = os.open(work / f"{MARKER}.new", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        # Locked before it carries the marker's name: a sweep never sees it unlocked.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"certainly-ingest export to {out.name}, pid {os.getpid()}\n".encode())
        os.rename(work / f"{MARKER}.new", work / MARKER)
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)  # before the lock goes: no sweep races it
        os.close(fd)


def sweep_killed_exports(folder: Path) -> int:
    """Remove what killed exports left in ``folder``: each working folder that carries the
    marker and whose lock can be taken (no export holds it). A running export (exports take
    no job lock) keeps its own; a folder of a similar name without the marker is never
    touched. Returns how many went."""
    removed = 0
    for leftover in folder.glob(f".*{WORK_TAG}*"):
        if leftover.is_symlink() or not leftover.is_dir():
            continue
        try:
            fd = os.open(leftover / MARKER, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO never blocks
        except OSError:
            continue  # no marker (or not ours to open): not an export's folder
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # locked: an export is running there
        else:
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
        finally:
            os.close(fd)
    return removed


def zip_bundle(files: Path, tmp: Path, out: Path) -> None:
    """The bundle folder as a zip (deflated, zip64 when large), written to ``tmp`` in the
    export's working folder and published by rename."""
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for path in sorted(p for p in files.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(files).as_posix())
            crash_point("export_in_zip")
    tmp.rename(out)
