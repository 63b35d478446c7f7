"""Deterministic fake Standard, Advanced and Content Management reports (reportId 2-4).

The vendor documents no columns for these types, so the shapes here are a plausible guess
for a chatbot analytics product: Standard is one row per day, Advanced one row per day and
channel, Content Management one row per day and bot module. As for Message Data
(:mod:`ingest.simulator.data`), every value comes from ``(seed, bot_id, day)`` only, so a
day yields the same rows whatever window it was asked in, and the CSV uses the same
dialect (:func:`~ingest.simulator.data.rows_to_csv`).
"""

from __future__ import annotations

import email
import email.policy
import random
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from typing import Any

from .data import rows_to_csv
from .mailer import build_report_email

#: Dataset names; the Message Data type (1) is ``messages`` and lives in ``data``.
REPORT_NAMES: dict[int, str] = {2: "standard", 3: "advanced", 4: "content_management"}

STANDARD_COLUMNS: tuple[str, ...] = (
    "date",
    "conversations",
    "messages",
    "users",
    "new_users",
    "returning_users",
    "handovers",
    "fallbacks",
    "avg_messages_per_conversation",
    "avg_conversation_duration_s",
    "goal_completion_rate",
)
ADVANCED_COLUMNS: tuple[str, ...] = (
    "date",
    "channel",
    "conversations",
    "messages",
    "users",
    "goal_completions",
    "goal_completion_rate",
    "avg_response_time_ms",
    "bounce_rate",
    "handover_rate",
    "avg_rating",
)
CONTENT_MANAGEMENT_COLUMNS: tuple[str, ...] = (
    "date",
    "bot_module_id",
    "module_code",
    "bot_module_name",
    "module_type",
    "group",
    "times_triggered",
    "unique_users",
    "fallbacks",
    "exits",
    "is_active",
    "is_global",
    "last_edited",
)
REPORT_COLUMNS: dict[int, tuple[str, ...]] = {
    2: STANDARD_COLUMNS,
    3: ADVANCED_COLUMNS,
    4: CONTENT_MANAGEMENT_COLUMNS,
}

_CHANNELS: tuple[str, ...] = ("web", "facebook_messenger", "whatsapp", "api")
# The first two are always in a bot's catalogue, so every report exercises CSV quoting
# (comma, doubled quotes) and non-ASCII text.
_TRICKY_MODULE_NAMES: tuple[str, ...] = ('Returns, refunds "express"', "Grüße & 你好 🤖")
_MODULE_NAMES: tuple[str, ...] = (
    "Welcome",
    "Order status",
    "FAQ",
    "Handover to agent",
    "Goodbye",
    "Tilbud på æbler",
    "Opening hours",
    "Track parcel",
    'Say "hi"',
    "Ça marche, merci",
)
_MODULE_TYPES: tuple[str, ...] = ("statement", "multiple_choice", "input", "webhook")


def generate_report_rows(
    report_id: int, bot_id: str, start: date, end: date, *, seed: int = 0
) -> list[dict[str, Any]]:
    """Return the rows of report ``report_id`` (2, 3 or 4) for ``start``..``end`` inclusive.

    Dates are ``YYYY-MM-DD`` text and timestamps ISO text ending in ``Z`` (as in the CSV);
    numbers, booleans and None are Python values. Rows are in day order; ``end < start``
    gives an empty list. A day's rows never depend on the rest of the range.
    """
    if report_id not in REPORT_NAMES:
        raise ValueError(f"report_id must be one of {sorted(REPORT_NAMES)}, not {report_id!r}")
    modules = _catalogue(bot_id, seed) if report_id == 4 else []
    rows: list[dict[str, Any]] = []
    day = start
    while day <= end:
        # The report id is part of the seed so that the three types are independent.
        rng = random.Random(f"{seed}:{bot_id}:{day.isoformat()}:report{report_id}")
        if report_id == 2:
            rows.append(_standard(rng, day))
        elif report_id == 3:
            rows.extend(_advanced(rng, day))
        else:
            rows.extend(_content_management(rng, day, modules))
        day += timedelta(days=1)
    return rows


def report_to_csv(report_id: int, rows: list[dict[str, Any]], *, bom: bool = False) -> bytes:
    """Render report rows as the emailed CSV (header first, CRLF, same dialect as type 1)."""
    return rows_to_csv(rows, bom=bom, columns=REPORT_COLUMNS[report_id])


def report_type_filename(report_id: int, bot_id: str, from_date: date, to_date: date) -> str:
    """The attachment name: ``<dataset>_report_<bot>_<from>_<to>.csv``.

    The bot id and both dates stay in the same form as type 1's name, because that is what
    the watcher matches an attachment to its window by.
    """
    return f"{REPORT_NAMES[report_id]}_report_{bot_id}_{from_date.isoformat()}_{to_date.isoformat()}.csv"


def build_typed_report_email(
    report_id: int,
    *,
    csv_bytes: bytes,
    bot_id: str,
    from_date: date,
    to_date: date,
    hints: bool = True,
    **kwargs: Any,
) -> bytes:
    """The report email of a type 2-4 export: type 1's email, renamed for the type.

    Built by :func:`~ingest.simulator.mailer.build_report_email` (so headers, body and
    base64 attachment stay one implementation), then only the Subject and the file name
    are changed. ``kwargs`` are passed on (sender, recipient, sent_at ...).
    """
    raw = build_report_email(
        csv_bytes=csv_bytes, bot_id=bot_id, from_date=from_date, to_date=to_date, hints=hints, **kwargs
    )
    message = email.message_from_bytes(raw, policy=email.policy.SMTP)
    assert isinstance(message, EmailMessage)
    label = REPORT_NAMES[report_id].replace("_", " ")
    subject = str(message["Subject"]).replace("message report", f"{label} report")
    message.replace_header("Subject", subject)
    body = message.get_body(("plain",))
    if isinstance(body, EmailMessage):
        body.set_content(body.get_content().replace("message report", f"{label} report"))
    name = (
        report_type_filename(report_id, bot_id, from_date, to_date)
        if hints
        else f"{REPORT_NAMES[report_id]}_report.csv"
    )
    for part in message.iter_attachments():
        part.set_param("filename", name, header="Content-Disposition")
    return message.as_bytes()


def _standard(rng: random.Random, day: date) -> dict[str, Any]:
    conversations = rng.randint(20, 400)
    messages = int(conversations * rng.uniform(3.0, 12.0))
    users = rng.randint(conversations * 6 // 10, conversations)
    new_users = rng.randint(0, users)
    return {
        "date": day.isoformat(),
        "conversations": conversations,
        "messages": messages,
        "users": users,
        "new_users": new_users,
        "returning_users": users - new_users,
        "handovers": rng.randint(0, conversations // 10),
        "fallbacks": rng.randint(0, messages // 8),
        "avg_messages_per_conversation": round(messages / conversations, 2),
        "avg_conversation_duration_s": round(rng.uniform(20.0, 600.0), 1),
        "goal_completion_rate": round(rng.random(), 3),
    }


def _advanced(rng: random.Random, day: date) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for channel in _CHANNELS:
        # Web always has traffic; the other channels are quiet on some days (no row).
        if channel != "web" and rng.random() < 0.2:
            continue
        conversations = rng.randint(1, 150)
        goals = rng.randint(0, conversations)
        rows.append(
            {
                "date": day.isoformat(),
                "channel": channel,
                "conversations": conversations,
                "messages": int(conversations * rng.uniform(2.0, 10.0)),
                "users": rng.randint(1, conversations),
                "goal_completions": goals,
                "goal_completion_rate": round(goals / conversations, 4),
                "avg_response_time_ms": rng.randint(80, 4000),
                "bounce_rate": round(rng.random() * 0.6, 4),
                "handover_rate": round(rng.random() * 0.2, 4),
                # No ratings on that channel that day: an empty cell, as vendors export it.
                "avg_rating": round(rng.uniform(1.0, 5.0), 2) if rng.random() < 0.85 else None,
            }
        )
    return rows


def _catalogue(bot_id: str, seed: int) -> list[dict[str, Any]]:
    """The bot's modules for Content Management: stable per (seed, bot), shared by all days."""
    rng = random.Random(f"{seed}:{bot_id}:content-modules")
    base = rng.randrange(100_000, 900_000)
    names = list(_TRICKY_MODULE_NAMES) + rng.sample(_MODULE_NAMES, rng.randint(3, 6))
    return [
        {
            "bot_module_id": base + index,
            # Zero-padded codes: a reader that infers integers would lose the zeros.
            "module_code": f"{rng.randrange(1, 10_000):05d}",
            "bot_module_name": name,
            "module_type": rng.choice(_MODULE_TYPES),
            "group": rng.choice((None, "Support", "Sales")),
            "is_global": index == 2,
        }
        for index, name in enumerate(names)
    ]


def _content_management(rng: random.Random, day: date, modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    midnight = datetime.combine(day, time(0), tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for module in modules:
        triggered = rng.randint(0, 300)
        edited = midnight - timedelta(seconds=rng.randrange(1, 86_400 * 60))
        row = {
            "date": day.isoformat(),
            **module,
            "times_triggered": triggered,
            "unique_users": rng.randint(0, triggered),
            "fallbacks": rng.randint(0, triggered // 5),
            "exits": rng.randint(0, triggered // 3),
            "is_active": rng.random() < 0.9,
            "last_edited": edited.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        # Keys in the CSV's column order, so the GET objects read in the same order.
        rows.append({column: row[column] for column in CONTENT_MANAGEMENT_COLUMNS})
    return rows
