"""Named points where the crash tests kill the job, to prove it recovers anywhere.

``INGEST_CRASH_AT=<name>`` makes the process SIGKILL itself on reaching that point (no
clean-up, no flush, exactly like a power cut or an OOM kill). Unset, a point costs one
dictionary lookup. The names are listed in :data:`POINTS` (the pipeline's: docs/RELIABILITY.md
and tests/e2e/test_crash_points.py go through all of them), :data:`GET_POINTS` (routing's GET
path: tests/e2e/test_routing_crash.py) and :data:`FORGET_POINTS` (an erasure's or prune's:
tests/e2e/test_erase_crash.py).
"""

from __future__ import annotations

import os
import signal

POINTS: tuple[str, ...] = (
    "before_post",  # window marked submitting, POST not sent
    "after_post",  # POST answered, answer not yet stored
    "after_accept",  # window recorded accepted
    "after_screening",  # new UIDs screened, message not fetched
    "after_fetch",  # message fetched, nothing written
    "after_raw",  # raw attachment bytes written
    "after_data",  # data files written, not committed to the Delta table
    "after_commit",  # Delta commit made, manifest not written
    "after_manifest",  # manifest written, state not updated
    "after_state",  # attachment and window recorded, email not moved
    "after_move",  # email moved, position not advanced
)
#: Points of the GET path of routing (ingest.pipeline.route): tests/e2e/test_routing_crash.py
#: kills there and at every point of :data:`POINTS` under INGEST_REQUESTER__VIA=auto.
GET_POINTS: tuple[str, ...] = (
    "after_get",  # a GET span answered, nothing written
    "after_get_span",  # a span's rows archived and the span marked done
)
#: Points inside an erasure or prune (ingest.archive.forget); tests/e2e/test_erase_crash.py.
FORGET_POINTS: tuple[str, ...] = (
    "forget_after_plan",  # erasure/prune planned (pending record), replacement files not all written
    "forget_after_delta",  # rows deleted from the Delta tables, raw copies not rewritten
    "forget_in_swap",  # an original raw copy deleted, its rewritten copy not yet in its place
    "forget_after_raw",  # raw copies and quarantine rewritten, superseded files not vacuumed
    "forget_before_audit",  # vacuumed and erasure record written, audit record not appended
)

#: Points inside an export (ingest.export.bundle); tests/integration/test_export_tamper.py.
EXPORT_POINTS: tuple[str, ...] = (
    "export_before_publish",  # the bundle's temporary folder complete, not yet renamed or zipped
    "export_in_zip",  # the temporary zip half-written
)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash_point(name: str) -> None:
    """Die here, at once, when the crash tests ask for it.

    In-process tests (the model-based test) replace ``_die`` with a function that raises,
    so that the "crash" stops the pass at the same point without killing pytest.
    """
    if os.environ.get("INGEST_CRASH_AT") == name:
        _die()
