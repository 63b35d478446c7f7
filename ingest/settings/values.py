"""The value forms settings accept, and the checks every entry passes: bot ids, sender and
account addresses, list settings in the comma or JSON form, per-dataset retention days.

They live apart from the settings model because the command line and the archive check
the same values (a ``--bot`` option, a bundle's bot ids) with the same words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ingest.errors import ConfigError

#: The one pattern a bot id must match on every path (settings, CLI, import, GET): the
#: vendor's UUIDs, or any name of letters, digits, ``-`` and ``_`` (at most 64, not starting
#: with ``-``). Nothing else: a bot id is a folder name and an S3 key part, and ``/``,
#: ``..``, ``%`` or ``=`` would escape the archive root or be decoded by hive readers.
BOT_ID_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}"
_BOT_ID = re.compile(BOT_ID_PATTERN)
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})+")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")


def bot_id_problem(value: str) -> str | None:
    """Why ``value`` is not an acceptable bot id, or None when it is."""
    if _BOT_ID.fullmatch(value):
        return None
    return (
        f"{shown(value)} is not a bot id (letters, digits, '-' and '_', at most 64, like the vendor's UUIDs)"
    )


def check_bot_id(value: str, where: str) -> str:
    """``value`` when it is a safe bot id; else a ConfigError (exit 2) naming ``where``
    (an option such as ``--bot`` or a variable)."""
    problem = bot_id_problem(value)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return value


def sender_problem(entry: str) -> str | None:
    """Why an allow-list entry is not an address, ``@domain`` or ``domain``; None if it is."""
    local, at, domain = entry.rpartition("@")
    if at and local and not _LOCAL_PART.fullmatch(local):
        return f"{shown(entry)} is not an address, @domain or domain"
    if not _DOMAIN.fullmatch(domain):
        return f"{shown(entry)} is not an address, @domain or domain"
    return None


def address_problem(entry: str) -> str | None:
    """Why ``entry`` is not one email address (``local@domain``); None if it is."""
    local, at, domain = entry.rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        return f"{shown(entry)} is not an email address"
    return None


def account_address_problem(entry: str) -> str | None:
    """As :func:`address_problem`, a domain in Unicode (``bücher.example``) read in its
    IDNA form (``xn--bcher-kva.example``): the account's address is compared in that form."""
    local, at, domain = entry.rpartition("@")
    if at and not domain.isascii():
        try:
            entry = f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            return f"{shown(entry)} is not an email address"
    return address_problem(entry)


def shown(value: str) -> str:
    """A non-secret input, quoted and cut short, for an error message."""
    return repr(value if len(value) <= 80 else value[:77] + "...")


def split_list(value: Any) -> Any:
    """A list setting from any source: a real list (TOML), the JSON form
    (``'["a@x.io", "@y.io"]'``) or the comma form (``"a@x.io, @y.io"``)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError(
                    "starts with '[' but is not a JSON list; use the JSON form "
                    '["a", "b"] or the comma form a,b'
                ) from None
            if not isinstance(value, list):
                raise ValueError("is not a JSON list")
        else:
            return [item.strip() for item in text.split(",") if item.strip()]
    if isinstance(value, (list, tuple)):
        if not all(isinstance(item, str) for item in value):
            raise ValueError("every entry must be text")
        return [item.strip() for item in value if item.strip()]
    return value


def entries_checked_by(problem_of: Callable[[str], str | None]) -> Callable[[list[str]], list[str]]:
    """A list validator refusing the first entry ``problem_of`` finds a problem with."""

    def check(value: list[str]) -> list[str]:
        for entry in value:
            problem = problem_of(entry)
            if problem:
                raise ValueError(f"entry {problem}")
        return value

    return check


#: Datasets a retention period can name (ingest.report_types; kept here: settings import no stage).
RETENTION_DATASETS = ("messages", "standard", "advanced", "content_management")


def dataset_days(value: Any) -> Any:
    """Per-dataset retention from any source: a table (TOML), JSON (``'{"messages": 365}'``) or
    the comma form (``messages=365, standard=730``; ``:`` also separates)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError(
                    "starts with '{' but is not a JSON object; use {\"messages\": 365} or messages=365"
                ) from None
        else:
            pairs = {}
            for item in filter(None, (part.strip() for part in text.split(","))):
                name, sep, days = item.replace(":", "=").partition("=")
                if not sep:
                    raise ValueError(f"entry {shown(item)} is not dataset=days (e.g. messages=365)")
                pairs[name.strip()] = days.strip()
            value = pairs
    if isinstance(value, dict):
        for name in value:
            if name not in RETENTION_DATASETS:
                raise ValueError(
                    f"unknown dataset {shown(str(name))}: one of {', '.join(RETENTION_DATASETS)}"
                )
    return value
