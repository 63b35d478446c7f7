"""Deterministic fake "Message Data" report rows (reportId 1) and their CSV form.

Every value is derived from ``(seed, bot_id, day)`` only, so a day always yields the same
rows whatever range it was asked in: tests can compare an archive with
``generate_messages`` for any window without caring how the windows were split.
Hosts, addresses and IPs are documentation-only values (RFC 2606 / RFC 5737).
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

MESSAGE_DATA_COLUMNS: tuple[str, ...] = (
    "id",
    "timestamp",
    "message",
    "response",
    "text",
    "type",
    "wait",
    "conversation_id",
    "through_bot_modules",
    "bot_module_id",
    "is_test",
    "external_agent",
    "through_connection_id",
    "is_global_module_match",
    "is_deleted",
    "id_message_evaluate",
    "data",
    "user_message_empty",
    "bot_response_empty",
    "bot_module",
    "botuser",
    "botuser_meta",
)

# Ids are day.toordinal() * ID_STRIDE + index: stable, unique per bot, increasing with time.
ID_STRIDE = 10_000

# The first row of every day uses one of these, so any non-empty range exercises CSV
# quoting (commas, quotes, embedded newlines) and non-ASCII text.
_TRICKY_MESSAGES: tuple[str, ...] = (
    'Hello, I said "hi"\nand then a second line',
    "Grüße, 你好, emoji 🤖",
    'Quote at end "',
    "line one\nline two\nline three, with comma",
)
_MESSAGES: tuple[str, ...] = _TRICKY_MESSAGES + (
    "",
    "",
    "Where is my order?",
    "I want to talk to a human",
    "Yes",
    "No, thanks",
    "Hvad koster det?",
    "Can I return an item, please?",
    "Ça marche très bien",
    "  leading and trailing spaces  ",
    "Suggested Replies: Track parcel",
)
_BOT_TEXTS: tuple[str, ...] = (
    "Hi! How can I help you today?",
    "Let me check that for you…",
    "Please choose one of the options below:",
    'You can reply "yes" or "no".',
    "Thanks, Grüße from the bot 🤖",
    "One moment, please.",
)
_MODULE_NAMES: tuple[str, ...] = (
    "Welcome",
    "Order status",
    "Returns, refunds",
    "Handover to agent",
    "FAQ",
    "Goodbye",
)
_MODULE_TYPES: tuple[str, ...] = ("statement", "multiple_choice", "input", "webhook")
_KPI_LABELS: tuple[tuple[str, str], ...] = (
    ("Resolved", "#2ECC71"),
    ("Handover", "#E67E22"),
    ("Lead", "#3498DB"),
)
_PAGES: tuple[str, ...] = ("/", "/shop", "/help/returns?lang=da", "/contact")


def generate_messages(
    bot_id: str,
    start: date,
    end: date,
    *,
    seed: int = 0,
    min_per_day: int = 5,
    max_per_day: int = 40,
    heavy_days: Collection[date] = (),
    heavy_per_day: int = 600,
) -> list[dict[str, Any]]:
    """Return the Message Data rows of ``bot_id`` from ``start`` to ``end`` inclusive.

    Rows are sorted by timestamp; ``end < start`` gives an empty list. The result for a
    given day never depends on the rest of the range. A day in ``heavy_days`` has
    ``heavy_per_day`` rows (more than one GET answer holds, when over 500).
    """
    if not 0 <= min_per_day <= max_per_day < ID_STRIDE or not 0 <= heavy_per_day < ID_STRIDE:
        raise ValueError(f"need 0 <= min_per_day <= max_per_day < {ID_STRIDE}, heavy_per_day too")
    modules = _bot_modules(bot_id, seed)
    rows: list[dict[str, Any]] = []
    day = start
    while day <= end:
        lo, hi = (heavy_per_day, heavy_per_day) if day in heavy_days else (min_per_day, max_per_day)
        rows.extend(_day_rows(bot_id, day, seed, lo, hi, modules))
        day += timedelta(days=1)
    return rows


def _bot_modules(bot_id: str, seed: int) -> list[dict[str, Any]]:
    """The bot's module catalogue: stable per (seed, bot), shared by all days."""
    rng = random.Random(f"{seed}:{bot_id}:modules")
    base = rng.randrange(100_000, 900_000)
    modules: list[dict[str, Any]] = []
    for i, name in enumerate(_MODULE_NAMES):
        module_id = base + i
        kpis = [
            {"label": label, "colour": colour, "id": rng.randrange(1, 50)}
            for label, colour in rng.sample(_KPI_LABELS, rng.randrange(0, 3))
        ]
        modules.append(
            {
                "id": module_id,
                "name": name,
                "type": rng.choice(_MODULE_TYPES),
                "instruction": rng.choice(_BOT_TEXTS),
                "error_instruction": rng.choice(("", "Sorry, I did not get that.")),
                "is_global": i == 4,
                "priority": i,
                "is_starting": i == 0,
                "fallback_module_id": base + 4 if i != 4 else None,
                "skip_user_input": rng.random() < 0.2,
                "skip_global_connection_evaluation": rng.random() < 0.1,
                "group": rng.choice((None, "Support", "Sales")),
                "kpis": kpis,
            }
        )
    return modules


def _iso_z(moment: datetime) -> str:
    """DRF-style UTC timestamp: microseconds always present, ``Z`` suffix."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _day_rows(
    bot_id: str, day: date, seed: int, lo: int, hi: int, modules: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}:{bot_id}:{day.isoformat()}")
    count = rng.randint(lo, hi)
    midnight = datetime.combine(day, time(0), tzinfo=UTC)
    # Sorting the offsets first means index order == timestamp order, so ids grow with time.
    offsets = sorted(rng.randrange(86_400 * 1_000_000) for _ in range(count))
    conversations: list[dict[str, Any]] = [
        {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "user": {
                "id": rng.randrange(1, 10_000_000),
                "created_date": _iso_z(midnight - timedelta(seconds=rng.randrange(86_400 * 30))),
            },
            "meta": {
                "web": {
                    "host": "www.example.com",
                    "current_ip": f"192.0.2.{rng.randrange(1, 255)}",
                    "hostPageUrl": "https://www.example.com" + rng.choice(_PAGES),
                }
            },
        }
        for _ in range(max(1, count // 4))
    ]
    rows: list[dict[str, Any]] = []
    for index, offset in enumerate(offsets):
        conv = rng.choice(conversations)
        module = rng.choice(modules)
        message = (
            _TRICKY_MESSAGES[day.toordinal() % len(_TRICKY_MESSAGES)] if index == 0 else rng.choice(_MESSAGES)
        )
        kind = rng.choice(("Text", "Text", "Wait", "Choice"))
        bot_empty = rng.random() < 0.1
        text = "" if bot_empty else rng.choice(_BOT_TEXTS)
        is_global = bool(module["is_global"])
        rows.append(
            {
                "id": day.toordinal() * ID_STRIDE + index,
                "timestamp": _iso_z(midnight + timedelta(microseconds=offset)),
                "message": message,
                "response": text,
                "text": text,
                "type": kind,
                "wait": rng.randint(1, 5) if kind == "Wait" else 0,
                "conversation_id": conv["id"],
                "through_bot_modules": rng.sample([m["id"] for m in modules], rng.randrange(0, 3)),
                "bot_module_id": module["id"],
                "is_test": rng.random() < 0.05,
                "external_agent": f"agent-{rng.randrange(1, 9)}" if rng.random() < 0.1 else None,
                "through_connection_id": rng.randrange(1, 5000) if rng.random() < 0.7 else None,
                "is_global_module_match": is_global,
                "is_deleted": rng.random() < 0.02,
                "id_message_evaluate": rng.randrange(1, 5000) if rng.random() < 0.6 else None,
                "data": {
                    "type": "global" if is_global else "local",
                    "fallback": rng.random() < 0.2,
                    "position": rng.randrange(0, 4),
                },
                "user_message_empty": message == "",
                "bot_response_empty": bot_empty,
                "bot_module": dict(module, kpis=[dict(k) for k in module["kpis"]]),
                "botuser": dict(conv["user"]),
                "botuser_meta": {"web": dict(conv["meta"]["web"])},
            }
        )
    return rows


def _cell(value: Any) -> str:
    """One CSV cell: JSON-style booleans, empty for None, compact JSON for nested values."""
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def rows_to_csv(
    rows: list[dict[str, Any]], *, bom: bool = False, columns: tuple[str, ...] = MESSAGE_DATA_COLUMNS
) -> bytes:
    """Render rows as the emailed CSV: UTF-8, header row, minimal quoting, CRLF line ends.

    ``bom=True`` prefixes a UTF-8 byte-order mark, as Excel-oriented exports often do.
    ``columns`` is the header (the other report types have their own, see ``reports``).
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return ("\ufeff" if bom else "").encode("utf-8") + buffer.getvalue().encode("utf-8")


def rows_to_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GET response body: an independent, JSON-serialisable copy of the rows."""
    copied: list[dict[str, Any]] = json.loads(json.dumps(rows, ensure_ascii=False))
    return copied
