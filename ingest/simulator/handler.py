"""HTTP layer of the simulator: routing, JWT header check, parameter parsing, JSON replies.

The report semantics (limits, exports) live in :mod:`ingest.simulator.api`; this module only
turns HTTP requests into :class:`ReportParams` and answers in Django REST Framework's style
(``{"detail": ...}`` bodies), because that is what the real service is built with.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from .faults import DropConnection, Fault, FaultScript

log = logging.getLogger(__name__)

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Bot ids end up in Subjects and filenames: keep them to a safe alphabet (UUIDs fit).
_BOT_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
VALID_REPORT_IDS = (1, 2, 3, 4)  # Message Data, Standard, Advanced, Content Management
MAX_BODY_BYTES = 64 * 1024  # a report request body is tiny; refuse anything bigger

Reply = tuple[int, Any]


class BadRequestError(ValueError):
    """A request the API answers with 400 and ``{"detail": <detail>}``."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class ReportParams:
    """The four report parameters, validated."""

    bot_id: str
    from_date: date
    to_date: date
    report_id: int


def _parse_date(raw: Mapping[str, Any], field: str) -> date:
    value = raw.get(field)
    if value is None or value == "":
        raise BadRequestError(f"{field}: this field is required.")
    # The regex first: date.fromisoformat also accepts forms like "20240101".
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise BadRequestError(f"{field}: date has wrong format. Use YYYY-MM-DD.")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequestError(f"{field}: date has wrong format. Use YYYY-MM-DD.") from None


def parse_report_params(raw: Mapping[str, Any]) -> ReportParams:
    """Validate fromDate/toDate/reportId/botId (query strings or JSON values).

    Raises :class:`BadRequestError` naming the first bad field; ``toDate < fromDate`` is refused.
    """
    from_date = _parse_date(raw, "fromDate")
    to_date = _parse_date(raw, "toDate")
    report = raw.get("reportId")
    if report is None or report == "":
        raise BadRequestError("reportId: this field is required.")
    # bool is an int subclass, and str.isdigit() accepts non-ASCII digits: refuse both.
    text = str(report) if isinstance(report, (int, str)) and not isinstance(report, bool) else ""
    if not (text.isascii() and text.isdigit()) or int(text) not in VALID_REPORT_IDS:
        raise BadRequestError(f"reportId: must be one of {', '.join(map(str, VALID_REPORT_IDS))}.")
    bot_id = raw.get("botId")
    if bot_id is None or bot_id == "":
        raise BadRequestError("botId: this field is required.")
    if not isinstance(bot_id, str) or not _BOT_ID_RE.match(bot_id):
        raise BadRequestError("botId: not a valid bot id.")
    if to_date < from_date:
        raise BadRequestError("toDate: must not be before fromDate.")
    return ReportParams(bot_id=bot_id, from_date=from_date, to_date=to_date, report_id=int(report))


class ReportBackend(Protocol):
    """What the handler needs from the simulator."""

    @property
    def token(self) -> str: ...
    @property
    def report_path(self) -> str: ...
    @property
    def faults(self) -> FaultScript: ...
    def handle_get(self, params: ReportParams) -> Reply: ...
    def handle_post(self, params: ReportParams) -> Reply: ...
    def record_request(self, method: str, path: str, params: Any, status: int) -> None: ...


class SimulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its simulator backend."""

    daemon_threads = True  # a stuck client must never keep the process alive

    def __init__(self, address: tuple[str, int], backend: ReportBackend) -> None:
        super().__init__(address, SimulatorHandler)
        self.backend = backend


class SimulatorHandler(BaseHTTPRequestHandler):
    """Routes the report path; everything else is a JSON 404."""

    server: SimulatorHTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers on stop()
    server_version = "CertainlySimulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        # The stdlib writes access logs to stderr; route them to logging instead.
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._handle("PUT")

    def do_PATCH(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        params: Any = None
        headers: Mapping[str, str] = {}
        try:
            status, body, params, headers = self._dispatch(method, url.path, url.query)
        except DropConnection as drop:
            # A scripted fault (or a stop during its delay): close without answering.
            self.server.backend.record_request(method, url.path, drop.params, 0)
            self.close_connection = True
            return
        except Exception:  # noqa: BLE001 - a simulator bug must still produce an answer
            log.exception("simulator failed on %s %s", method, url.path)
            status, body = 500, {"detail": "A server error occurred."}
        self.server.backend.record_request(method, url.path, params, status)
        try:
            self._send(status, body, headers)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (time-out) or was killed while we waited: nothing to tell.
            log.debug("simulator: client of %s %s went away before the answer", method, url.path)

    def _dispatch(self, method: str, path: str, query: str) -> tuple[int, Any, Any, Mapping[str, str]]:
        backend = self.server.backend
        if path.strip("/") != backend.report_path.strip("/"):
            return 404, {"detail": "Not found."}, None, {}
        auth = self.headers.get("Authorization")
        if auth is None:
            return 401, {"detail": "Authentication credentials were not provided."}, None, {}
        if auth != f"JWT {backend.token}":
            return 401, {"detail": "Given token not valid for any token type"}, None, {}
        if method not in ("GET", "POST"):
            return 405, {"detail": f'Method "{method}" not allowed.'}, None, {}
        raw: Any = None  # recorded as-is, even when it fails validation
        try:
            if method == "GET":
                # DRF's query_params.get() returns the last value of a repeated key.
                raw = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
            else:
                raw = self._read_json()
        except BadRequestError as exc:
            return 400, {"detail": exc.detail}, raw, {}
        backend.faults.arrived(method, raw)
        fault = backend.faults.take(method)
        if fault is not None:
            scripted = self._apply_fault(fault, raw)
            if scripted is not None:
                return scripted
        try:
            params = parse_report_params(raw)
        except BadRequestError as exc:
            return 400, {"detail": exc.detail}, raw, {}
        status, body = backend.handle_get(params) if method == "GET" else backend.handle_post(params)
        return status, body, raw, {}

    def _apply_fault(self, fault: Fault, raw: Any) -> tuple[int, Any, Any, Mapping[str, str]] | None:
        """Wait, drop, or answer as scripted; None means "now behave normally"."""
        stopping = self.server.backend.faults.pause(fault.delay)
        if fault.drop or stopping:
            raise DropConnection(raw)
        if fault.status is None:
            return None
        return fault.status, fault.payload(), raw, fault.headers

    def _read_json(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BadRequestError("Invalid Content-Length header.") from None
        if length > MAX_BODY_BYTES:
            raise BadRequestError("Request body too large.")
        body = self.rfile.read(length) if length > 0 else b""
        try:
            raw = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequestError(f"JSON parse error - {exc}") from None
        if not isinstance(raw, dict):
            raise BadRequestError("Expected a JSON object with fromDate, toDate, reportId, botId.")
        return raw

    def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        """Answer; ``body`` bytes are sent as they are, anything else as JSON."""
        headers = dict(headers or {})
        payload = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode("utf-8")
        content_type = next(
            (v for k, v in headers.items() if k.lower() == "content-type"), "application/json"
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'JWT realm="api"')
        for name, value in headers.items():
            if name.lower() not in ("content-type", "content-length"):
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
