"""Polite GETs: paced, throttled when the vendor says so, backed off when it fails.

The GET path (``INGEST_REQUESTER__VIA=auto`` or ``get``) may send hundreds of requests in a
backfill, so each goes through :class:`GetPacer`: at most ``INGEST_REQUESTER__GET_RATE``
requests per second; after a 429 none before its ``Retry-After`` has passed (seconds or an
HTTP date); after a 5xx, a time-out or a refused connection an exponential back-off with
jitter (the requester's ``retry_initial`` .. ``retry_max``). Requests go one at a time
(:data:`GET_AT_ONCE`): the job holds its lock, so one job, one GET in flight. The pacing is
kept in the state store (note ``get_pacing``) so that ``ingest status`` shows it and the
next run honours a ``Retry-After`` the last one was given.

Example::

    pacer = GetPacer(client, settings.requester, store)
    rows, body = pacer.fetch("bot-1", date(2024, 5, 1), date(2024, 5, 15), 1)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from ingest.errors import ApiUnavailable
from ingest.request.client import CertainlyClient
from ingest.request.requester import backoff_delay
from ingest.settings import RequesterSettings
from ingest.state.store import Store

log = logging.getLogger(__name__)

#: GET requests in flight at once (one job holds the lock; it sends them one by one).
GET_AT_ONCE = 1
PACING_NOTE = "get_pacing"
#: The longest Retry-After honoured as given: a server asking for more (a date years
#: ahead, by mistake or malice) gets a day, then is asked again.
RETRY_AFTER_CEILING = 86_400.0


class GetPacer:
    """Sends GETs no faster than the rate, never before a Retry-After or back-off ends."""

    def __init__(
        self,
        client: CertainlyClient,
        settings: RequesterSettings,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._settings = settings
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._failures = 0
        self.facts: dict[str, Any] = {
            "rate": settings.get_rate,
            "at_once": GET_AT_ONCE,
            "requests": 0,
            "throttled": 0,
            "throttled_in_a_row": 0,  # 429s since the last answer: the router's give-up count
            "failed": 0,
            "not_before": 0.0,
            "last_wait": None,
        }
        earlier = store.note(PACING_NOTE) or {}
        for key in ("requests", "throttled", "throttled_in_a_row", "failed", "not_before", "last_wait"):
            if key in earlier:
                self.facts[key] = earlier[key]
        self.facts["rate"] = settings.get_rate

    @property
    def throttled_in_a_row(self) -> int:
        """429s answered since the last successful GET (kept across runs)."""
        return int(self.facts["throttled_in_a_row"])

    def forgive_throttling(self) -> None:
        """Start the 429 count afresh (a window was handed over: the next gets its own)."""
        self.facts["throttled_in_a_row"] = 0
        self._store.set_note(PACING_NOTE, self.facts)

    @property
    def not_before(self) -> float:
        """When (epoch seconds) the next GET may go."""
        return float(self.facts["not_before"])

    def held_off(self) -> bool:
        """The next GET waits longer than the pace asks: a Retry-After or a back-off."""
        return self.wait_time() > 1.0 / self._settings.get_rate

    def wait_time(self) -> float:
        """Seconds until the next GET may go."""
        return max(0.0, float(self.facts["not_before"]) - self._clock())

    def fetch(
        self, bot_id: str, first: date, last: date, report_id: int
    ) -> tuple[list[dict[str, Any]], bytes]:
        """One GET, sent when its turn comes. Raises what the client raises; a transient
        failure first sets when the next GET may go."""
        wait = self.wait_time()
        if wait > 0:
            self._sleep(wait)
        self.facts["requests"] += 1
        try:
            answer = self._client.fetch_report(bot_id, first, last, report_id)
        except ApiUnavailable as err:
            self._failures += 1
            self._hold_off(err)
            raise
        finally:
            self._store.set_note(PACING_NOTE, self.facts)
        self._failures = 0
        self.facts["throttled_in_a_row"] = 0
        self.facts["not_before"] = self._clock() + 1.0 / self._settings.get_rate
        return answer

    def _hold_off(self, err: ApiUnavailable) -> None:
        """After a failure: the server's Retry-After when it gave one, else our back-off."""
        retry_after: float | None = getattr(err, "retry_after", None)
        status: int = getattr(err, "status", 0)
        if retry_after is not None:
            delay = min(retry_after, RETRY_AFTER_CEILING)  # seconds or a date, converted
        else:
            delay = backoff_delay(self._failures, self._settings)
        delay = max(delay, 1.0 / self._settings.get_rate)
        self.facts["throttled" if status == 429 else "failed"] += 1
        if status == 429:
            self.facts["throttled_in_a_row"] += 1
        self.facts["not_before"] = self._clock() + delay
        self.facts["last_wait"] = {
            "status": status,
            "seconds": round(delay, 3),
            "retry_after": retry_after,
            "at": self._clock(),
        }
        log.warning(
            "GET answered %s: next GET in %.1f s%s",
            status or "nothing",
            delay,
            " (Retry-After)" if retry_after is not None else "",
        )
