"""One job at a time per state store."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ingest.errors import LockHeld, StateError


@contextmanager
def exclusive_lock(state_path: Path) -> Iterator[None]:
    """Hold ``<state>.lock`` for the life of a job; raise LockHeld at once if taken.

    ``flock`` is released by the kernel when the process dies, even by SIGKILL, so a
    crashed job never leaves a stale lock behind.
    """
    lock_path = Path(f"{state_path}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a+")
    except OSError as err:
        raise StateError(
            f"cannot create lock file {lock_path}: {err.strerror}", hint="INGEST_STATE__PATH"
        ) from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(f"another run holds the lock on {state_path}; nothing to do") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
