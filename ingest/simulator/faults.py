"""Scripted faults for the simulator: a test decides what the next requests get.

Each HTTP method has a queue of :class:`Fault`; a request to the report path (GET or
POST) takes the next fault of its method, if any, *before* the normal behaviour::

    sim.script_post(
        Fault(status=429, body='{"detail": "Request was throttled."}', headers={"Retry-After": "2"}),
        Fault(delay=5),     # a slow server: waits 5 s, then answers normally
        Fault(drop=True),   # closes the connection without answering
    )

A fault with a ``status`` replaces the answer; one without only delays (and/or drops).
Delays are cut short when the simulator stops, and the connection is then dropped, so a
test's teardown never waits for a scripted delay. Every request that reaches the report
path is also logged on arrival (before any delay), so a test can wait until a request
*was sent* even while its answer is still pending: :meth:`FaultScript.wait_for_arrivals`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, NamedTuple

__all__ = ["Arrival", "DropConnection", "Fault", "FaultScript"]


@dataclass(frozen=True)
class Fault:
    """One scripted answer.

    ``status``: the status code to answer with (None: the normal answer, after ``delay``).
    ``body``: str or bytes sent as they are, anything else as JSON; default
    ``{"detail": <reason phrase>}``. ``headers``: extra response headers (a
    ``Content-Type`` here replaces ``application/json``). ``delay``: seconds to wait
    before answering. ``drop``: close the connection without answering (after ``delay``).
    """

    status: int | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError("Fault.delay must not be negative")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"Fault.status must be an HTTP status code, not {self.status}")
        if self.drop and (self.status is not None or self.body is not None or self.headers):
            raise ValueError("a dropped connection has no status, body or headers")
        if self.status is None and (self.body is not None or self.headers):
            raise ValueError("a body or headers need a status")

    def payload(self) -> bytes:
        """The response body bytes."""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        body = self.body
        if body is None:
            assert self.status is not None
            try:
                body = {"detail": HTTPStatus(self.status).phrase}
            except ValueError:
                body = {"detail": f"Status {self.status}."}
        return json.dumps(body, ensure_ascii=False).encode("utf-8")


class Arrival(NamedTuple):
    """A request as it arrived, before any scripted delay: method, raw parameters and the
    moment (``time.monotonic()``), so a test can see how a client spaced its requests."""

    method: str
    params: Any
    at: float = 0.0


class DropConnection(Exception):
    """Raised inside the handler: close the connection without sending anything."""

    def __init__(self, params: Any = None) -> None:
        super().__init__("connection dropped on purpose")
        self.params = params


class FaultScript:
    """Thread-safe fault queues per method, the arrivals log, and the stop signal."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, deque[Fault]] = {}
        self._arrivals: list[Arrival] = []
        self._stopped = threading.Event()

    def script(self, method: str, *faults: Fault) -> None:
        """Queue ``faults`` for the next requests with ``method`` (after those queued already)."""
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {type(fault).__name__}")
        with self._cond:
            self._queues.setdefault(method.upper(), deque()).extend(faults)

    def take(self, method: str) -> Fault | None:
        """The next scripted fault for ``method``, removed from its queue, or None."""
        with self._cond:
            queue = self._queues.get(method.upper())
            return queue.popleft() if queue else None

    def pending(self, method: str | None = None) -> int:
        """How many scripted faults are still queued (for one method, or in all)."""
        with self._cond:
            if method is not None:
                return len(self._queues.get(method.upper(), ()))
            return sum(len(queue) for queue in self._queues.values())

    def clear(self) -> None:
        """Forget every queued fault."""
        with self._cond:
            self._queues.clear()

    def arrived(self, method: str, params: Any) -> None:
        """Log a request on arrival and wake anyone waiting for it."""
        with self._cond:
            self._arrivals.append(Arrival(method.upper(), params, time.monotonic()))
            self._cond.notify_all()

    @property
    def arrivals(self) -> list[Arrival]:
        """A snapshot of every request logged on arrival, oldest first."""
        with self._cond:
            return list(self._arrivals)

    def wait_for_arrivals(self, method: str, count: int = 1, timeout: float = 10.0) -> bool:
        """Wait until ``count`` requests with ``method`` have arrived; False on time-out."""
        method = method.upper()
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(1 for a in self._arrivals if a.method == method) >= count, timeout
            )

    def pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the simulator stops first; True when it is stopping."""
        return self._stopped.wait(seconds) if seconds > 0 else self._stopped.is_set()

    def stop(self) -> None:
        """Cut every pending and future delay short."""
        self._stopped.set()
