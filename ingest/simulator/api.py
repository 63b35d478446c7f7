"""A fake Certainly Message Report API on loopback, for ``ingest demo`` and tests.

Semantics follow the vendor's public documentation: GET is synchronous, at most
``max_get_days`` (15) calendar days inclusive and at most ``max_get_rows`` (500) rows, the
first ones by timestamp; POST is asynchronous, one export in progress per token, and the
CSV arrives by email after ``delivery_delay`` seconds. The undocumented parts (status codes,
wording, report path) are configurable so clients can be tested against several variants.
``reportId`` 1 returns the Message Data rows (the documented type); 2, 3 and 4 return the
simulator's guess at the undocumented Standard, Advanced and Content Management reports
(:mod:`ingest.simulator.reports`), by GET and by email alike.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from email.parser import BytesParser
from typing import Any, Literal, NamedTuple

from .data import generate_messages, rows_to_csv, rows_to_json
from .faults import Fault, FaultScript
from .handler import Reply, ReportParams, SimulatorHTTPServer
from .mailer import build_report_email
from .reports import build_typed_report_email, generate_report_rows, report_to_csv

log = logging.getLogger(__name__)

ACCEPTED_DETAIL = "Your report is being generated and will be sent to your email."
IN_PROGRESS_DETAIL = "A previous request is already in progress. Please wait until it finishes."


@dataclass
class SimulatorConfig:
    """Knobs of the simulator; defaults mimic the documented behaviour."""

    token: str = "demo-token"
    report_path: str = "api/v1/message-report/"
    delivery_delay: float = 0.2
    # How "a previous request is already in progress" is answered (status code).
    in_progress_style: Literal["409", "400", "200"] = "400"
    accepted_status: int = 200
    seed: int = 0
    min_per_day: int = 5
    max_per_day: int = 40
    sender: str = "reports@certainly.example"
    recipient: str = "owner@example.test"
    lose_every: int = 0  # drop the email of every Nth accepted export; 0 = never
    in_progress_every: int = 0  # answer every Nth POST "in progress" even when idle; 0 = never
    email_hints: bool = True  # bot id and dates in the email's subject and file name
    max_get_days: int = 15
    max_get_rows: int = 500
    # Days with heavy_per_day rows, per bot id: a GET answer cannot hold them (over 500).
    heavy_days: Mapping[str, Collection[date]] = field(default_factory=dict)
    heavy_per_day: int = 600

    def __post_init__(self) -> None:
        if self.in_progress_style not in ("409", "400", "200"):
            raise ValueError(
                f"in_progress_style must be '409', '400' or '200', not {self.in_progress_style!r}"
            )
        if min(self.lose_every, self.in_progress_every, self.delivery_delay) < 0:
            raise ValueError("lose_every, in_progress_every and delivery_delay must not be negative")


class RequestRecord(NamedTuple):
    """One request as the simulator saw it; ``params`` is the query dict or JSON body."""

    method: str
    path: str
    params: Any
    status: int


@dataclass
class ExportRecord:
    """One accepted POST export and what became of it."""

    bot_id: str
    from_date: date
    to_date: date
    report_id: int
    delivered: bool = False
    lost: bool = False  # chosen by lose_every: the email is built but never delivered
    finished: bool = False
    rows: int = 0
    message_id: str | None = None
    error: str | None = None
    accepted_at: float = field(default_factory=time.time)


class CertainlySimulator:
    """The fake API: an HTTP server thread plus timer threads for email deliveries.

    ``deliver`` receives each report email (RFC 5322 bytes); when it is None the emails are
    kept in :attr:`outbox` instead. :meth:`script_post` / :meth:`script_get` queue
    :class:`~ingest.simulator.faults.Fault` answers; :attr:`faults` logs arrivals.
    """

    def __init__(
        self, config: SimulatorConfig | None = None, deliver: Callable[[bytes], None] | None = None
    ) -> None:
        self.config = config or SimulatorConfig()
        self._deliver = deliver
        self._cond = threading.Condition()  # guards everything below
        self._requests: list[RequestRecord] = []
        self._exports: list[ExportRecord] = []
        self._outbox: list[bytes] = []
        self._active: ExportRecord | None = None
        self._posts = 0  # POSTs that reached handle_post, for in_progress_every
        self.faults = FaultScript()
        self._timers: list[threading.Timer] = []
        self._stopping = False
        self._server: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- ReportBackend protocol (used by the HTTP handler) ---------------------------------
    @property
    def token(self) -> str:
        """The only token accepted, as ``Authorization: JWT <token>``."""
        return self.config.token

    @property
    def report_path(self) -> str:
        """The report path relative to the base URL."""
        return self.config.report_path

    def record_request(self, method: str, path: str, params: Any, status: int) -> None:
        """Remember one request (thread-safe)."""
        with self._cond:
            self._requests.append(RequestRecord(method, path, params, status))

    def handle_get(self, params: ReportParams) -> Reply:
        """Synchronous report: range and row caps as documented."""
        days = (params.to_date - params.from_date).days + 1
        if days > self.config.max_get_days:
            return 400, {"detail": f"The maximum time range supported is {self.config.max_get_days} days."}
        rows = self.expected_report_rows(params.report_id, params.bot_id, params.from_date, params.to_date)
        return 200, rows_to_json(rows[: self.config.max_get_rows])

    def handle_post(self, params: ReportParams) -> Reply:
        """Asynchronous export: accepted unless another one is still in progress."""
        with self._cond:
            self._posts += 1
            every = self.config.in_progress_every
            if self._active is not None or self._stopping or (every and self._posts % every == 0):
                return int(self.config.in_progress_style), {"detail": IN_PROGRESS_DETAIL}
            export = ExportRecord(params.bot_id, params.from_date, params.to_date, params.report_id)
            self._exports.append(export)
            every = self.config.lose_every
            export.lost = every > 0 and len(self._exports) % every == 0
            self._active = export
            timer = threading.Timer(self.config.delivery_delay, self._run_export, (export,))
            timer.daemon = True
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
            timer.start()
        return self.config.accepted_status, {"detail": ACCEPTED_DETAIL}

    def script_post(self, *faults: Fault) -> None:
        """Queue scripted answers for the next POSTs (before the normal behaviour)."""
        self.faults.script("POST", *faults)

    def script_get(self, *faults: Fault) -> None:
        """Queue scripted answers for the next GETs (before the normal behaviour)."""
        self.faults.script("GET", *faults)

    # -- export delivery --------------------------------------------------------------------
    def _run_export(self, export: ExportRecord) -> None:
        message_id: str | None = None
        delivered = False
        error: str | None = None
        rows = 0
        try:
            data = self.expected_report_rows(
                export.report_id, export.bot_id, export.from_date, export.to_date
            )
            rows = len(data)
            if export.report_id == 1:
                message = build_report_email(
                    csv_bytes=rows_to_csv(data),
                    bot_id=export.bot_id,
                    from_date=export.from_date,
                    to_date=export.to_date,
                    sender=self.config.sender,
                    recipient=self.config.recipient,
                    hints=self.config.email_hints,
                )
            else:
                message = build_typed_report_email(
                    export.report_id,
                    csv_bytes=report_to_csv(export.report_id, data),
                    bot_id=export.bot_id,
                    from_date=export.from_date,
                    to_date=export.to_date,
                    sender=self.config.sender,
                    recipient=self.config.recipient,
                    hints=self.config.email_hints,
                )
            message_id = BytesParser().parsebytes(message, headersonly=True)["Message-ID"]
            if export.lost:
                log.info(
                    "simulator: losing the report email for %s %s..%s on purpose",
                    export.bot_id,
                    export.from_date,
                    export.to_date,
                )
            elif self._deliver is not None:
                self._deliver(message)
                delivered = True
            else:
                with self._cond:
                    self._outbox.append(message)
                delivered = True
        except Exception as exc:  # noqa: BLE001 - a failed delivery must not wedge exports
            log.exception("simulator: report delivery failed")
            error = f"{type(exc).__name__}: {exc}"
        finally:
            # Always clear the in-progress flag, or every later POST would be refused.
            with self._cond:
                export.rows, export.message_id = rows, message_id
                export.delivered, export.error, export.finished = delivered, error, True
                if self._active is export:
                    self._active = None
                self._cond.notify_all()

    # -- introspection ------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request received, oldest first."""
        with self._cond:
            return list(self._requests)

    @property
    def exports(self) -> list[ExportRecord]:
        """A snapshot of the accepted exports, oldest first (records update in place)."""
        with self._cond:
            return list(self._exports)

    @property
    def outbox(self) -> list[bytes]:
        """Report emails kept because no ``deliver`` callable was given."""
        with self._cond:
            return list(self._outbox)

    def expected_rows(self, bot_id: str, from_date: date, to_date: date) -> list[dict[str, Any]]:
        """Ground truth: every row of the bot in the range, as this simulator generates them."""
        return generate_messages(
            bot_id,
            from_date,
            to_date,
            seed=self.config.seed,
            min_per_day=self.config.min_per_day,
            max_per_day=self.config.max_per_day,
            heavy_days=self.config.heavy_days.get(bot_id, ()),
            heavy_per_day=self.config.heavy_per_day,
        )

    def expected_report_rows(
        self, report_id: int, bot_id: str, from_date: date, to_date: date
    ) -> list[dict[str, Any]]:
        """Ground truth for any report type: :meth:`expected_rows` for type 1, else the
        Standard (2), Advanced (3) or Content Management (4) rows for the range."""
        if report_id == 1:
            return self.expected_rows(bot_id, from_date, to_date)
        return generate_report_rows(report_id, bot_id, from_date, to_date, seed=self.config.seed)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no export is in progress or pending; False if ``timeout`` expired."""
        with self._cond:
            return self._cond.wait_for(lambda: self._active is None, timeout)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> CertainlySimulator:
        """Serve on 127.0.0.1 on a free port, in a daemon thread."""
        if self._server is not None or self._stopping:
            raise RuntimeError("simulator already started (or stopped: make a new one)")
        self._server = SimulatorHTTPServer(("127.0.0.1", 0), self)
        # A short poll interval keeps stop() fast; the server is otherwise idle.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="certainly-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/``."""
        if self._server is None:
            raise RuntimeError("simulator not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def report_url(self) -> str:
        """The full URL of the report endpoint."""
        return self.base_url + self.config.report_path.lstrip("/")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, cancel pending deliveries; waits at most about ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self.faults.stop()  # wake handlers sleeping in a scripted delay: they drop
        with self._cond:
            self._stopping = True
            timers = list(self._timers)
        for timer in timers:
            timer.cancel()  # no effect on a delivery already running; joined below
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(max(0.0, deadline - time.monotonic()))
        for timer in timers:
            timer.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            if self._active is not None and not any(t.is_alive() for t in timers):
                # Its timer was cancelled before firing: record that it never ran.
                self._active.finished = True
                self._active.error = "cancelled: simulator stopped"
                self._active = None
            self._cond.notify_all()
        self._server = None
        self._thread = None

    def __enter__(self) -> CertainlySimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
