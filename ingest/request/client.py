"""Client for the Certainly Message Report endpoint (GET synchronous, POST by email).

The vendor documents neither the status codes nor the wording of "accepted" and "a
previous request is already in progress", nor the report path. So every answer goes
through :func:`classify_answer`, which looks at the status code *and* the message text,
and the report path is a setting.

Every request is bounded: each read waits at most ``timeout`` seconds, the whole request
(connect, headers, body) at most ``deadline`` seconds, and a body larger than
``max_response_bytes`` is cut off and not read (INGEST_CERTAINLY__TIMEOUT, __DEADLINE,
__MAX_RESPONSE_BYTES): a server that drips or floods cannot hold the job or its memory.

Example::

    client = CertainlyClient("https://app.certainly.io/api/", token, "v1/message-report/")
    answer = client.request_export("bot-uuid", date(2024, 1, 1), date(2024, 1, 31))
    answer.outcome  # Outcome.ACCEPTED, IN_PROGRESS, REJECTED, TOKEN_REJECTED or TRANSIENT
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, date
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

import requests
from pydantic import SecretStr
from urllib3.exceptions import HTTPError, ReadTimeoutError

from ingest import __version__
from ingest.errors import ApiRefused, ApiUnavailable, TokenRejected
from ingest.report_types import MESSAGE_REPORT_ID
from ingest.settings import CertainlySettings, require

log = logging.getLogger(__name__)

#: Defaults of INGEST_CERTAINLY__MAX_RESPONSE_BYTES and INGEST_CERTAINLY__DEADLINE.
MAX_RESPONSE_BYTES = 64 << 20
DEADLINE = 300.0
_CHUNK = 64 << 10

#: Wording that means "one export at a time, and one is running" whatever the status.
_BUSY_STRONG = re.compile(
    r"in progress|already (been |being )?(requested|running|generat\w*|process\w*|queued|pending)"
    r"|previous (request|export|report)|another (request|export|report)|wait until",
    re.IGNORECASE,
)
#: Weaker wording that means busy only on a refusal (a 2xx "is being generated" is an accept).
_BUSY_WEAK = re.compile(r"being (generated|processed|prepared)|currently running|still running", re.I)
_ERRORISH = re.compile(r"\b(error|invalid|failed|not allowed|forbidden|denied)\b", re.IGNORECASE)


class Outcome(StrEnum):
    """What an answer means for the window that was asked for."""

    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"  # the account already has an export running
    REJECTED = "rejected"  # permanent for this request (400/422 ...): needs a person
    TOKEN_REJECTED = "token_rejected"  # 401/403: stop everything
    TRANSIENT = "transient"  # 429/5xx/time-out/refused: retry later


@dataclass(frozen=True)
class ApiAnswer:
    """A classified answer. ``body`` is the raw text (truncated), kept for audit."""

    outcome: Outcome
    status: int  # 0 when no HTTP answer came back
    message: str
    body: str
    retry_after: float | None = None


def _message_of(body: str) -> str:
    """The human message of a DRF-style body (``detail``, ``message``, ``error``), or the text."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return " ".join(body.split())[:300]
    if isinstance(parsed, dict):
        for key in ("detail", "message", "error", "non_field_errors", "status"):
            if key in parsed:
                value = parsed[key]
                return " ".join(map(str, value)) if isinstance(value, list) else str(value)
        return json.dumps(parsed, ensure_ascii=False)[:300]
    if isinstance(parsed, list) and parsed and all(isinstance(v, str) for v in parsed):
        return " ".join(parsed)[:300]
    return json.dumps(parsed, ensure_ascii=False)[:300]


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: ignore, our own back-off applies


_DELTA_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds to wait: delta-seconds or an HTTP date (RFC 9110).

    >>> retry_after_seconds("7")
    7.0
    >>> retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    >>> retry_after_seconds("soon") is None
    True
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):  # digits only: never "inf", "nan" or "-1"
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # an HTTP date is GMT even when it fails to say so
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class GetUnavailable(ApiUnavailable):
    """A GET answered 429 or 5xx (or not at all): try again, no sooner than ``retry_after``
    seconds when the server said so (``Retry-After``, seconds or an HTTP date)."""

    def __init__(self, message: str, *, status: int, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def classify_answer(status: int, body: str, headers: Any = None) -> ApiAnswer:
    """Classify an answer to a POST export request by status code and message text.

    >>> classify_answer(409, '{"detail": "A previous request is already in progress"}').outcome
    <Outcome.IN_PROGRESS: 'in_progress'>
    >>> classify_answer(200, '{"detail": "Your report will be sent by email"}').outcome
    <Outcome.ACCEPTED: 'accepted'>
    """
    message = _message_of(body)
    retry_after = _retry_after(headers)
    content_type = (headers or {}).get("Content-Type", "") if headers else ""

    def answer(outcome: Outcome) -> ApiAnswer:
        return ApiAnswer(outcome, status, message, body[:65536], retry_after)

    if status in (401, 403):
        return answer(Outcome.TOKEN_REJECTED)
    if 200 <= status < 300:
        if "html" in content_type.lower() or body.lstrip().lower().startswith(("<!doctype", "<html")):
            return answer(Outcome.TRANSIENT)  # a proxy or maintenance page, not the API
        if _BUSY_STRONG.search(message):
            return answer(Outcome.IN_PROGRESS)
        if _ERRORISH.search(message):
            return answer(Outcome.REJECTED)
        return answer(Outcome.ACCEPTED)
    if status in (400, 409, 423, 429) and (_BUSY_STRONG.search(message) or _BUSY_WEAK.search(message)):
        return answer(Outcome.IN_PROGRESS)
    if status == 429 or status == 408 or status >= 500:
        return answer(Outcome.TRANSIENT)
    return answer(Outcome.REJECTED)


class _Unbounded(requests.RequestException):
    """An answer over the size cap or past the deadline (never leaves this module)."""


@dataclass(frozen=True)
class _Reply:
    """A bounded answer: status, headers and the whole body as received."""

    status_code: int
    headers: Any
    content: bytes
    encoding: str | None

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding or "utf-8", errors="replace")


def client_from(settings: CertainlySettings) -> CertainlyClient:
    """The API client the settings describe; a ConfigError names any missing variable."""
    return CertainlyClient(
        settings.base_url,
        require(settings.token, "certainly", "token"),
        require(settings.report_path, "certainly", "report_path"),
        timeout=settings.timeout,
        deadline=settings.deadline,
        max_response_bytes=settings.max_response_bytes,
    )


class CertainlyClient:
    """The Message Report endpoint. Every call is bounded in time and size; the token is
    never logged."""

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        report_path: str,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        deadline: float = DEADLINE,
    ) -> None:
        self.url = base_url.rstrip("/") + "/" + report_path.lstrip("/")
        self._token = token
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._deadline = deadline
        self._session = session or requests.Session()

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"JWT {self._token.get_secret_value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"certainly-ingest/{__version__}",
        }

    @staticmethod
    def _params(bot_id: str, from_date: date, to_date: date, report_id: int) -> dict[str, Any]:
        return {
            "fromDate": from_date.isoformat(),
            "toDate": to_date.isoformat(),
            "reportId": report_id,
            "botId": bot_id,
        }

    def _send(self, method: str, **kwargs: Any) -> _Reply:
        """One request, bounded: no read waits longer than the time-out or past the
        deadline, and the body is read only up to the size cap (:class:`_Unbounded`
        otherwise). Redirects are not followed: the token is never sent elsewhere."""
        ends = time.monotonic() + self._deadline

        def wait() -> float:
            left = ends - time.monotonic()
            if left <= 0:
                raise _Unbounded(
                    f"no complete answer within {self._deadline:g} s (INGEST_CERTAINLY__DEADLINE)"
                )
            return min(self._timeout, left)

        response = self._session.request(
            method,
            self.url,
            headers=self._headers(),
            stream=True,
            timeout=(wait(), wait()),
            allow_redirects=False,
            **kwargs,
        )
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self._max_bytes:
                raise _Unbounded(self._too_large(int(declared)))
            chunks, size = [], 0
            while True:
                wait()  # the deadline, between reads of whatever has arrived
                chunk = response.raw.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self._max_bytes:
                    raise _Unbounded(self._too_large(size))
                chunks.append(chunk)
            return _Reply(response.status_code, response.headers, b"".join(chunks), response.encoding)
        except requests.RequestException:
            raise  # _Unbounded among them
        except ReadTimeoutError as err:  # what requests' own body reading would raise
            raise requests.ReadTimeout(str(err)) from None
        except (HTTPError, OSError, ValueError) as err:
            raise requests.ConnectionError(str(err)) from None
        finally:
            response.close()

    def _too_large(self, size: int) -> str:
        return (
            f"answer of more than {self._max_bytes} bytes ({size} or more) not read "
            "(INGEST_CERTAINLY__MAX_RESPONSE_BYTES)"
        )

    def request_export(
        self, bot_id: str, from_date: date, to_date: date, report_id: int = MESSAGE_REPORT_ID
    ) -> ApiAnswer:
        """POST an export request. Never raises for network trouble: that is TRANSIENT."""
        try:
            response = self._send("POST", json=self._params(bot_id, from_date, to_date, report_id))
        except requests.RequestException as err:
            return ApiAnswer(Outcome.TRANSIENT, 0, _network_message(err), "")
        answer = classify_answer(response.status_code, response.text, response.headers)
        if answer.outcome is Outcome.ACCEPTED and response.status_code not in (200, 201, 202):
            log.warning("unusual 2xx answer taken as accepted: %s %s", response.status_code, answer.body)
        return answer

    def fetch_report(
        self, bot_id: str, from_date: date, to_date: date, report_id: int = MESSAGE_REPORT_ID
    ) -> tuple[list[dict[str, Any]], bytes]:
        """GET a report: the rows and the body exactly as received (kept as raw bytes)."""
        try:
            response = self._send("GET", params=self._params(bot_id, from_date, to_date, report_id))
        except requests.RequestException as err:
            raise GetUnavailable(
                f"Certainly API: {_network_message(err)}", status=0, retry_after=None
            ) from None
        answer = classify_answer(response.status_code, response.text, response.headers)
        if answer.outcome is Outcome.TOKEN_REJECTED:
            raise TokenRejected(
                f"Certainly API rejected the token ({response.status_code}: {answer.message})"
            )
        if answer.outcome is Outcome.TRANSIENT or (
            response.status_code == 429 and answer.outcome is Outcome.IN_PROGRESS
        ):
            raise GetUnavailable(
                f"Certainly API answered {response.status_code} to GET: {answer.message}",
                status=response.status_code,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if response.status_code >= 300:
            raise ApiRefused(f"Certainly API answered {response.status_code} to GET: {answer.message}")
        try:
            rows = json.loads(response.content)
        except ValueError:
            raise ApiUnavailable("Certainly API answered GET with a body that is not JSON") from None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ApiUnavailable("Certainly API answered GET with something other than a list of rows")
        return rows, response.content

    def probe(
        self, bot_id: str, from_date: date, to_date: date, report_id: int = MESSAGE_REPORT_ID
    ) -> tuple[int, str]:
        """A GET whose only purpose is to see how the API answers (for `ingest doctor`).

        Returns (status, body text), or (0, reason) when no HTTP answer came back.
        """
        try:
            response = self._send("GET", params=self._params(bot_id, from_date, to_date, report_id))
        except requests.RequestException as err:
            return 0, _network_message(err)
        return response.status_code, response.text[:2000]


def _network_message(err: requests.RequestException) -> str:
    # The exception text can contain the URL but never headers, so no token leaks here.
    kind = type(err).__name__
    if isinstance(err, _Unbounded):
        return str(err)
    if isinstance(err, requests.Timeout):
        return f"time-out ({kind})"
    if isinstance(err, requests.ConnectionError):
        return f"cannot connect ({kind})"
    return kind
