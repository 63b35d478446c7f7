"""A fake Certainly API, report generator, email builder and embedded IMAP server.

Used by ``ingest demo`` and by the tests; nothing here talks to anything but 127.0.0.1.
"""

from .api import CertainlySimulator, ExportRecord, RequestRecord, SimulatorConfig
from .data import MESSAGE_DATA_COLUMNS, generate_messages, rows_to_csv, rows_to_json
from .faults import Arrival, Fault, FaultScript
from .imapserver import EmbeddedImap, pymap_installed
from .mailer import ImapDelivery, build_report_email, report_filename

__all__ = [
    "MESSAGE_DATA_COLUMNS",
    "Arrival",
    "CertainlySimulator",
    "EmbeddedImap",
    "ExportRecord",
    "Fault",
    "FaultScript",
    "ImapDelivery",
    "RequestRecord",
    "SimulatorConfig",
    "build_report_email",
    "generate_messages",
    "pymap_installed",
    "report_filename",
    "rows_to_csv",
    "rows_to_json",
]
