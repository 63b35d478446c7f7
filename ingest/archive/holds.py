"""Legal holds: data of a bot (between two days, or all of it) that is never pruned or erased.

::

    holds/<id>.json    a hold in force: {"id", "bot_id", "from", "to", "reason", "placed_at", "actor"}

A hold lives in the archive (not only in the state store: whoever reads the archive sees
it), and placing or lifting one is an audit record (:mod:`ingest.archive.audit`). Lifting
removes its object; the audit log keeps that it was there.

Example::

    hold = place(storage, "bot-1", date(2024, 1, 1), None, reason="litigation 2026-17", actor="dpo")
    covering(active(storage), "bot-1", date(2024, 3, 1))     # [hold]
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from ingest.archive.audit import append, new_id
from ingest.archive.commit import as_json, write_bytes_once
from ingest.archive.layout import HOLDS, hold_key
from ingest.archive.storage import Storage
from ingest.errors import ConfigError


@dataclass(frozen=True)
class Hold:
    """A legal hold: a bot's data from ``first`` to ``last`` (inclusive; None: unbounded)."""

    id: str
    bot_id: str
    first: date | None
    last: date | None
    reason: str
    placed_at: str = ""
    actor: str = ""

    def covers(self, bot_id: str, day: date) -> bool:
        """Whether this hold keeps the bot's data of that day."""
        return (
            bot_id == self.bot_id
            and (self.first is None or day >= self.first)
            and (self.last is None or day <= self.last)
        )

    def span(self) -> str:
        """The days held, for people: ``2024-01-01..2024-12-31``, ``..2024-12-31``, ``all``."""
        if self.first is None and self.last is None:
            return "all days"
        return f"{self.first or ''}..{self.last or ''}"

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["from"], body["to"] = body.pop("first"), body.pop("last")
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in body.items()}


def _from_json(doc: dict[str, Any]) -> Hold:
    def day(value: Any) -> date | None:
        return date.fromisoformat(value) if value else None

    return Hold(
        str(doc["id"]),
        str(doc["bot_id"]),
        day(doc.get("from")),
        day(doc.get("to")),
        str(doc.get("reason", "")),
        str(doc.get("placed_at", "")),
        str(doc.get("actor", "")),
    )


def active(out: Storage) -> list[Hold]:
    """Every hold in force, oldest first."""
    found = []
    for obj in out.objects(f"{HOLDS}/"):
        if obj.key.endswith(".json"):
            found.append(_from_json(json.loads(out.read_bytes(obj.key))))
    return sorted(found, key=lambda h: (h.placed_at, h.id))


def covering(holds: list[Hold], bot_id: str, day: date) -> list[Hold]:
    """The holds that keep the bot's data of that day."""
    return [h for h in holds if h.covers(bot_id, day)]


def place(
    out: Storage, bot_id: str, first: date | None, last: date | None, *, reason: str, actor: str
) -> Hold:
    """Place a hold (an object under ``holds/`` and an audit record)."""
    if first and last and last < first:
        raise ConfigError(f"--to {last} is before --from {first}")
    if not reason.strip():
        raise ConfigError("a legal hold needs a --reason")
    hold = Hold(
        new_id(), bot_id, first, last, reason, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), actor
    )
    write_bytes_once(out, hold_key(hold.id), as_json(hold.as_json()))
    append(out, {"kind": "hold-add", "hold": hold.as_json()}, actor=actor, reason=reason)
    return hold


def lift(out: Storage, hold_id: str, *, reason: str, actor: str) -> Hold:
    """Lift a hold: the audit record first (what was lifted, by whom, why), then its object."""
    found = {h.id: h for h in active(out)}
    if hold_id not in found:
        raise ConfigError(f"no legal hold {hold_id!r} in force (see `ingest hold list`)")
    hold = found[hold_id]
    append(out, {"kind": "hold-remove", "hold": hold.as_json()}, actor=actor, reason=reason)
    out.delete(hold_key(hold_id))
    return hold


__all__ = ["HOLDS", "Hold", "active", "covering", "lift", "place"]
