"""glibc's allocator, kept small for a job of many reports (docs/RELIABILITY.md, load test).

Each thread that allocates (the Parquet writer, merges, publishing, delta-rs's runtime,
polars' and Arrow's pools) otherwise gets a malloc arena of its own, up to 16 on 2 cores,
and the memory freed in them is never handed back. A job caps the arenas at two before
its threads start (:func:`cap_malloc_arenas`, from :func:`ingest.ops.job.open_job`: a
thread keeps the arena it first allocated in) and hands freed memory back after each
report (:func:`give_back_memory`). No-ops where glibc is not the C library (musl).
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["cap_malloc_arenas", "give_back_memory"]


@functools.cache
def _libc() -> Any:
    """glibc's allocator controls (None elsewhere: musl has neither call), the arenas capped
    at two the first time."""
    import ctypes  # here: only a command that archives needs it

    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    libc.mallopt(-8, 2)  # M_ARENA_MAX
    return libc


def give_back_memory() -> None:
    """Return the memory a report freed to the system (``malloc_trim``), so that a run of
    many reports peaks as its biggest report does, not as their sum: the load test's job
    grew about 6 MiB a report (docs/RELIABILITY.md)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def cap_malloc_arenas() -> None:
    """At most two malloc arenas from now on (once per process)."""
    _libc()
