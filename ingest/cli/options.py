"""Options several commands share, and the checks on their values."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from ingest.errors import ConfigError

if TYPE_CHECKING:
    from ingest.settings import Settings


def load_settings() -> Settings:
    """The settings, imported and loaded where a command runs: pydantic-settings (which
    imports asyncio and ssl) and the settings models are a third of what ``--help`` would
    otherwise spend importing."""
    from ingest.settings import load_settings as load

    return load()


def bot_ids(values: list[str] | str | None) -> list[str] | str | None:
    """Every ``--bot`` value must be a safe bot id (ingest.settings.BOT_ID_PATTERN): it
    becomes a folder name and an S3 key part. Anything else is exit 2 naming ``--bot``."""
    from ingest.settings import check_bot_id

    for value in [values] if isinstance(values, str) else values or []:
        check_bot_id(value, "--bot")
    return values


def date_range(from_: datetime, to: datetime) -> tuple[date, date]:
    """The days --from and --to name, refused (exit 2) when they run backwards."""
    if to.date() < from_.date():
        raise ConfigError(f"--to {to.date()} is before --from {from_.date()}")
    return from_.date(), to.date()


def day(value: datetime | None) -> date | None:
    """An optional --from or --to as a day."""
    return value.date() if value else None


# The options backfill and fetch share.
Bots = Annotated[
    list[str],
    typer.Option(
        "--bot",
        help="Bot id (repeatable): letters, digits, '-' and '_', like the vendor's UUIDs.",
        callback=bot_ids,
    ),
]
FirstDay = Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First day, YYYY-MM-DD.")]
LastDay = Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day, YYYY-MM-DD.")]
ReportType = Annotated[
    int | None,
    typer.Option(
        "--report-type",
        min=1,
        max=4,
        help="1 Message Data, 2 Standard, 3 Advanced, 4 Content "
        "Management (default: INGEST_CERTAINLY__REPORT_ID).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Apply = Annotated[bool, typer.Option("--apply", help="Act; without it, only show what would go.")]
