"""Logging: readable lines on a terminal, JSON lines for log collectors.

JSON is used when stderr is not a terminal (a container, a CronJob) or when
``INGEST_LOG_FORMAT=json``; ``INGEST_LOG_FORMAT=text`` forces text. Ids travel as
``extra={"window_id": ..., "bot_id": ..., "uid": ...}`` and become JSON fields.
Nothing here ever formats a settings object, so secrets cannot reach a log line. Text
mode strips control characters from every message (:func:`ingest.inert.inert`); JSON
escapes them by itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from ingest.inert import inert

#: LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any extra ids."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(document, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL logger: message`` for a terminal; the message is made inert
    (ingest.inert: no ESC or other control character from a subject, a file name or a
    server answer reaches the terminal), and a traceback keeps its line breaks."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return inert(super().formatMessage(record), markup=False)


def json_wanted() -> bool:
    """JSON unless a person is watching (or INGEST_LOG_FORMAT says otherwise)."""
    choice = os.environ.get("INGEST_LOG_FORMAT", "").lower()
    if choice in ("json", "text"):
        return choice == "json"
    return not sys.stderr.isatty()


def setup_logging(verbose: bool = False) -> bool:
    """Configure the root logger once; returns True when logs are JSON."""
    as_json = json_wanted()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose or as_json else logging.WARNING)
    # Third-party chatter (urllib3 connection lines) stays out unless asked for.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    return as_json
