"""Settings: environment (``INGEST_`` prefix, ``__`` between section and field), a
``.env`` file, a secrets directory and an optional TOML file named by ``INGEST_CONFIG``.

Precedence, highest first: arguments, environment, secret files, ``.env``, TOML, defaults.
Secret files outrank ``.env``: a mounted Secret is what the operator meant, a ``.env`` in
the working folder may be anybody's leftover.

List settings (``INGEST_IMAP__ALLOWED_SENDERS``, ``INGEST_CERTAINLY__BOTS``) take the comma
form (``a@x.io,@y.io``) and the JSON form (``["a@x.io", "@y.io"]``) from every source, and
every entry is checked: a list that silently matches nothing is worse than an error.
Bot ids must match :data:`BOT_ID_PATTERN` everywhere (here and on the command line): they
become folder names and S3 key parts of the archive.

Nothing here is built at import time: the CLI calls :func:`load_settings` once.

Example::

    INGEST_IMAP__HOST=imap.example.com INGEST_IMAP__PASSWORD=... ingest run

A secret file is named like the variable, e.g. ``/run/secrets/ingest_certainly__token``
(a Kubernetes Secret mounted as files), and ``INGEST_SECRETS_DIR``
names the folder (default ``/run/secrets`` when it exists).

The package holds three modules: :mod:`~ingest.settings.values` (the value forms and the
checks of each entry), :mod:`~ingest.settings.model` (the sections and their fields) and
:mod:`~ingest.settings.loading` (building them once, and what is said about them). Import
from the package: ``from ingest.settings import Settings, load_settings``.
"""

from __future__ import annotations

from ingest.settings.loading import (
    env_name,
    explicit_settings,
    load_settings,
    require,
    section_fields,
    transport_warnings,
)
from ingest.settings.model import (
    ENV_PREFIX,
    AuditSettings,
    CertainlySettings,
    ExportSettings,
    ImapSettings,
    MetricsSettings,
    OutputSettings,
    RequesterSettings,
    RetentionSettings,
    Settings,
    StateSettings,
)
from ingest.settings.values import (
    BOT_ID_PATTERN,
    RETENTION_DATASETS,
    account_address_problem,
    address_problem,
    bot_id_problem,
    check_bot_id,
    sender_problem,
)

__all__ = [
    "BOT_ID_PATTERN",
    "ENV_PREFIX",
    "RETENTION_DATASETS",
    "AuditSettings",
    "CertainlySettings",
    "ExportSettings",
    "ImapSettings",
    "MetricsSettings",
    "OutputSettings",
    "RequesterSettings",
    "RetentionSettings",
    "Settings",
    "StateSettings",
    "account_address_problem",
    "address_problem",
    "bot_id_problem",
    "check_bot_id",
    "env_name",
    "explicit_settings",
    "load_settings",
    "require",
    "section_fields",
    "sender_problem",
    "transport_warnings",
]
