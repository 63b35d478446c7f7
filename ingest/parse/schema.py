"""The archive's canonical schema for report type 1 (Message Data), declared once.

Every Parquet file under ``messages/`` has exactly :func:`file_schema`; the hive
partition keys ``bot_id`` and ``date`` live in the folder names, as hive-style readers
(DuckDB, polars, Spark) expect.

Nested objects (``data``, ``bot_module``, ``botuser``, ``botuser_meta``) and the list
``through_bot_modules`` are kept as JSON text: the vendor does not document their shape
and ``botuser_meta`` varies by channel, so text is the only lossless choice; DuckDB's
``json_extract`` and polars' ``str.json_decode`` query it directly.
An empty cell and a JSON ``null`` are both stored as null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from ingest.report_types import MESSAGES

#: How a column is typed: Message Data uses int, bool, text, json and timestamp; typed
#: reports (2-4) are typed on their own evidence as int, float, bool, date, timestamp or text.
Kind = Literal["int", "float", "bool", "date", "timestamp", "text", "json"]


@dataclass(frozen=True)
class Column:
    """One canonical column: its name, how it is typed, and what it means."""

    name: str
    kind: Kind
    doc: str
    required: bool = False

    @property
    def dtype(self) -> pl.DataType:
        return DTYPES[self.kind]


DTYPES: dict[Kind, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "text": pl.String(),
    "json": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
}

MESSAGE_COLUMNS: tuple[Column, ...] = (
    Column("id", "int", "Row id; (bot_id, id) is unique across the archive.", required=True),
    Column("timestamp", "timestamp", "When the message happened, UTC.", required=True),
    Column("message", "text", "The user's input (typed text or the suggested reply pressed)."),
    Column("response", "text", "The bot's processed answer."),
    Column("text", "text", "The text of each speech bubble of the bot module."),
    Column("type", "text", "Expected response type: Text, Wait, Choice."),
    Column("wait", "int", "Programmed delay between bot messages."),
    Column("conversation_id", "text", "Id of the whole conversation."),
    Column("through_bot_modules", "json", "Modules the message came through (JSON)."),
    Column("bot_module_id", "int", "Module the input was made to."),
    Column("is_test", "bool", "True when from the tester mode, false for the live widget."),
    Column("external_agent", "text", "Id given by a third-party integration to an agent."),
    Column("through_connection_id", "int", "Connection the message came through."),
    Column("is_global_module_match", "bool", "Response prompted by a global connection."),
    Column("is_deleted", "bool", "Logical deletion flag."),
    Column("id_message_evaluate", "int", "Id of the connection matched for the module."),
    Column("data", "json", "The module's connections (JSON)."),
    Column("user_message_empty", "bool", "No message was received from the user."),
    Column("bot_response_empty", "bool", "The module sent no message to the user."),
    Column("bot_module", "json", "The module input was made to (JSON object)."),
    Column("botuser", "json", "The bot user (JSON object: id, created_date)."),
    Column("botuser_meta", "json", "Bot user metadata (JSON object, e.g. web host)."),
)

PROVENANCE: tuple[Column, ...] = (
    Column("extra", "json", "Columns the report had beyond this schema, as a JSON object."),
    Column("source_sha256", "text", "sha256 of the attachment (or GET answer) the row came from."),
    Column("source_kind", "text", "'csv' (emailed export) or 'get' (synchronous API)."),
)

DATASET = MESSAGES

NESTED_JSON = tuple(c.name for c in MESSAGE_COLUMNS if c.kind == "json" and c.name != "through_bot_modules")
REQUIRED = tuple(c.name for c in MESSAGE_COLUMNS if c.required)
SOURCE_COLUMNS = tuple(c.name for c in MESSAGE_COLUMNS)


def file_schema() -> pl.Schema:
    """The schema of every data file (partition keys excluded)."""
    return pl.Schema({c.name: c.dtype for c in (*MESSAGE_COLUMNS, *PROVENANCE)})
