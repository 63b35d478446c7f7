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
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import tomllib
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources import NestedSecretsSettingsSource

from ingest.errors import ConfigError
from ingest.unknown_settings import unknown_setting

log = logging.getLogger(__name__)

ENV_PREFIX = "INGEST_"
CommaList = Annotated[list[str], NoDecode]

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
        f"{_shown(value)} is not a bot id (letters, digits, '-' and '_', at most 64, like the vendor's UUIDs)"
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
        return f"{_shown(entry)} is not an address, @domain or domain"
    if not _DOMAIN.fullmatch(domain):
        return f"{_shown(entry)} is not an address, @domain or domain"
    return None


def address_problem(entry: str) -> str | None:
    """Why ``entry`` is not one email address (``local@domain``); None if it is."""
    local, at, domain = entry.rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        return f"{_shown(entry)} is not an email address"
    return None


def account_address_problem(entry: str) -> str | None:
    """As :func:`address_problem`, a domain in Unicode (``bücher.example``) read in its
    IDNA form (``xn--bcher-kva.example``): the account's address is compared in that form."""
    local, at, domain = entry.rpartition("@")
    if at and not domain.isascii():
        try:
            entry = f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            return f"{_shown(entry)} is not an email address"
    return address_problem(entry)


def _shown(value: str) -> str:
    """A non-secret input, quoted and cut short, for an error message."""
    return repr(value if len(value) <= 80 else value[:77] + "...")


def _split_list(value: Any) -> Any:
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


def _entries_checked_by(problem_of: Callable[[str], str | None]) -> Callable[[list[str]], list[str]]:
    """A list validator refusing the first entry ``problem_of`` finds a problem with."""

    def check(value: list[str]) -> list[str]:
        for entry in value:
            problem = problem_of(entry)
            if problem:
                raise ValueError(f"entry {problem}")
        return value

    return check


class CertainlySettings(BaseModel):
    """The Certainly API and the account whose token is used."""

    base_url: str = Field("https://app.certainly.io/api/", description="API root URL.")
    token: SecretStr | None = Field(None, description="Public API auth token (JWT).")
    report_path: str | None = Field(
        None,
        description="Message report path under base_url (undocumented by the vendor).",
    )
    report_id: int = Field(1, ge=1, le=4, description="1 Message Data, 2 Standard, 3 Advanced, 4 CM.")
    timeout: float = Field(30.0, gt=0, description="Seconds for connect and for each read.")
    deadline: float = Field(
        300.0, gt=0, description="Seconds one API request may take in all (connect, headers, body)."
    )
    max_response_bytes: int = Field(
        64 << 20, ge=1024, description="Larger API answers are cut off unread (a transient failure)."
    )
    bots: CommaList = Field(
        default_factory=list, description="Bot ids kept current by `ingest run` (letters, digits, '-', '_')."
    )

    account_email: CommaList = Field(
        default_factory=list,
        description="The token owner's address(es) reports are sent to (aliases too); "
        "default: INGEST_IMAP__USERNAME when it is an address. Mail addressed elsewhere is never matched.",
    )

    _split = field_validator("bots", "account_email", mode="before")(_split_list)
    _check = field_validator("bots", mode="after")(_entries_checked_by(bot_id_problem))
    _check_account = field_validator("account_email", mode="after")(
        _entries_checked_by(account_address_problem)
    )


class RequesterSettings(BaseModel):
    """How export windows are planned and tracked."""

    window_days: int = Field(30, ge=1, le=366, description="Days per POST export window.")
    max_in_flight: int = Field(1, ge=1, description="Accepted exports waiting for email at once.")
    delivery_timeout: float = Field(
        6 * 3600.0, gt=0, description="Seconds an accepted export may take to arrive before it is lost."
    )
    retry_initial: float = Field(60.0, ge=0, description="First back-off after 'in progress' (s).")
    retry_max: float = Field(3600.0, ge=0, description="Longest back-off (s).")
    max_attempts: int = Field(8, ge=1, description="Transient failures before a window fails.")
    split_after_losses: int = Field(
        2, ge=1, description="Losses after which a window is split in half (a too-large attachment?)."
    )
    poll_interval: float = Field(60.0, gt=0, description="Seconds between passes of `run --until-done`.")
    schedule_from: date | None = Field(
        None, description="First day kept current for INGEST_CERTAINLY__BOTS (default: yesterday)."
    )
    use_get: bool = Field(
        False,
        description="Superseded by via (kept as it was): with via=email, fetch scheduled "
        "windows of <= 15 days with GET instead of email.",
    )
    via: Literal["auto", "email", "get"] = Field(
        "auto",
        description="How windows are archived: auto (GET in spans of <= 15 days, only days of "
        "500+ rows by email), email (POST only) or get (GET only; a day of 500+ rows fails).",
    )
    get_rate: float = Field(
        2.0, gt=0, le=100, description="GET requests per second at most (via=auto or get)."
    )

    @field_validator("via", mode="before")
    @classmethod
    def _via_word(cls, value: Any) -> Any:
        """``Auto``, `` EMAIL `` and the like are the words they spell."""
        return value.strip().lower() if isinstance(value, str) else value


class ImapSettings(BaseModel):
    """The mailbox that receives the token owner's report emails."""

    host: str | None = Field(None, description="IMAP server host name.")
    port: int | None = Field(None, ge=1, le=65535, description="Default 993 (tls) or 143.")
    security: Literal["tls", "starttls", "none"] = Field("tls", description="Transport security.")
    auth: Literal["password", "xoauth2", "oauthbearer"] = Field(
        "password", description="password (LOGIN), or OAuth2 as Gmail and Microsoft 365 require."
    )
    username: str | None = Field(None, description="Login name (often the email address).")
    password: SecretStr | None = Field(None, description="Password or app password.")
    oauth2_access_token: SecretStr | None = Field(None, description="OAuth2 access token.")
    oauth2_refresh_token: SecretStr | None = Field(
        None, description="OAuth2 refresh token, exchanged at oauth2_token_url for access tokens."
    )
    oauth2_token_url: str | None = Field(None, description="OAuth2 token endpoint.")
    oauth2_client_id: str | None = Field(None, description="OAuth2 client id.")
    oauth2_client_secret: SecretStr | None = Field(None, description="OAuth2 client secret.")
    folder: str = Field("INBOX", description="Folder watched for report emails.")
    processed_folder: str = Field("certainly-ingest/processed", description="Where archived emails go.")
    failed_folder: str = Field(
        "certainly-ingest/failed", description="Where reports that failed validation go."
    )
    rejected_folder: str | None = Field(
        None, description="Where mail from other senders goes (default: left alone)."
    )
    allow_special_use_folder: bool = Field(
        False,
        description="Let the processed/failed/rejected folder be a special-use one "
        "(Trash, Junk, Archive, [Gmail]/...), refused otherwise.",
    )
    allowed_senders: CommaList = Field(
        default_factory=list,
        description="Addresses, @domains or domains whose mail is ingested; nothing else is.",
    )
    require_authentication: bool = Field(
        False, description="Ingest only mail whose topmost Authentication-Results passes DKIM or DMARC."
    )
    authserv_id: str | None = Field(
        None,
        description="The receiving server's authserv-id in Authentication-Results "
        "(required with require_authentication).",
    )
    max_message_bytes: int = Field(
        128 * 1024**2,
        ge=1024,
        description="Larger messages are not fetched; they go to the failed folder. With "
        "INGEST_OUTPUT__MAX_INFLATED_BYTES, the space one email may take in INGEST_OUTPUT__TEMP_DIR.",
    )
    part_fetch_bytes: int = Field(
        32 * 1024**2, ge=1024, description="Messages larger than this are fetched part by part to disk."
    )
    ca_file: Path | None = Field(None, description="Extra CA bundle for the server certificate.")
    timeout: float = Field(30.0, gt=0, description="Seconds for connect and for each command.")
    reconnect_attempts: int = Field(5, ge=1, description="Reconnections when the server drops us mid-run.")
    idle_seconds: float = Field(
        25 * 60.0,
        gt=0,
        le=29 * 60,
        description="`ingest watch`: re-issue IDLE after this (servers drop it at 30 min).",
    )

    _split = field_validator("allowed_senders", mode="before")(_split_list)
    _check = field_validator("allowed_senders", mode="after")(_entries_checked_by(sender_problem))

    @property
    def effective_port(self) -> int:
        """The configured port, or the standard one for the security mode."""
        if self.port:
            return self.port
        return 993 if self.security == "tls" else 143


class OutputSettings(BaseModel):
    """Where the archive is written."""

    root: str = Field("./archive", description="Local folder, or s3://bucket/prefix (S3-compatible).")
    staging_dir: Path | None = Field(
        None,
        description="s3:// only: local folder for temporary files (default: staging/ "
        "beside the state store). A local root always uses <root>/.staging (same disk).",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, Ceph ...); unset for AWS."
    )
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_access_key_id: SecretStr | None = Field(
        None, description="S3 access key; unset: the AWS default chain (env, IRSA ...)."
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    object_lock_days: int | None = Field(
        None,
        ge=1,
        le=36500,
        description="s3:// only: write raw copies, manifests and the audit log with an S3 Object "
        "Lock retention (GOVERNANCE mode) of this many days; the bucket must have Object Lock on.",
    )
    object_lock_bypass: bool = Field(
        False,
        description="s3:// only: let erasure and pruning remove objects still under a governance "
        "retention (needs s3:BypassGovernanceRetention); off, such an object stops them (exit 1).",
    )
    temp_dir: Path | None = Field(
        None,
        description="Local folder for one email's or imported file's temporary files (parts "
        "fetched to disk, inflated attachments); default: the system's (TMPDIR, else /tmp).",
    )
    max_inflated_bytes: int = Field(
        512 * 1024**2,
        ge=1024,
        description="What the compressed attachments of one email (or one imported file) may "
        "inflate to in all, streamed to temp_dir; beyond it the email goes to the failed folder.",
    )


class StateSettings(BaseModel):
    """The job's own SQLite state store."""

    path: Path = Field(Path("./ingest-state.sqlite"), description="SQLite file (keep it on a volume).")


class MetricsSettings(BaseModel):
    """Optional Prometheus metrics."""

    textfile: Path | None = Field(None, description="Write Prometheus metrics here after each run.")


class ExportSettings(BaseModel):
    """Compliance exports (`ingest export`)."""

    signing_key_file: Path | None = Field(
        None, description="Ed25519 private key (PEM, from `ingest keygen`) that signs export bundles."
    )
    signing_key: SecretStr | None = Field(
        None,
        description="The same key's PEM text, e.g. a secret file ingest_export__signing_key; "
        "signing_key_file wins when both are set.",
    )


#: Datasets a retention period can name (ingest.report_types; kept here: settings import no stage).
RETENTION_DATASETS = ("messages", "standard", "advanced", "content_management")


def _dataset_days(value: Any) -> Any:
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
                    raise ValueError(f"entry {_shown(item)} is not dataset=days (e.g. messages=365)")
                pairs[name.strip()] = days.strip()
            value = pairs
    if isinstance(value, dict):
        for name in value:
            if name not in RETENTION_DATASETS:
                raise ValueError(
                    f"unknown dataset {_shown(str(name))}: one of {', '.join(RETENTION_DATASETS)}"
                )
    return value


class RetentionSettings(BaseModel):
    """How long rows are kept (`ingest prune`; `ingest run` applies it when set)."""

    days: int | None = Field(
        None, ge=1, description="Keep rows this many days after their UTC date; unset: keep forever."
    )
    datasets: Annotated[dict[str, Annotated[int, Field(ge=1)]], NoDecode] = Field(
        default_factory=dict,
        description='Days per dataset, overriding days: {"messages": 365} or messages=365,standard=730.',
    )

    _parse = field_validator("datasets", mode="before")(_dataset_days)

    def days_for(self, dataset: str) -> int | None:
        """The retention of a dataset in days, None to keep it forever."""
        return self.datasets.get(dataset, self.days)


class AuditSettings(BaseModel):
    """The archive's audit log of erasures, prunes and legal holds."""

    actor: str | None = Field(
        None, description="Who acts, as the audit log records it (default: the OS user)."
    )
    salt: SecretStr | None = Field(
        None,
        description="Secret key of the subject hashes in the audit log (default: a random one "
        "made once beside the state store, <state path>.audit-key, mode 0600; never in the archive).",
    )
    new_key: bool = Field(
        False,
        description="Let an erasure make a new audit key file though the audit log holds subject "
        "hashes under a key not held (the old key lost: its records stay unprovable).",
    )


class Settings(BaseSettings):
    """Every setting of certainly-ingest; see the README's configuration reference."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        nested_model_default_partial_update=True,
    )

    certainly: CertainlySettings = CertainlySettings()
    requester: RequesterSettings = RequesterSettings()
    imap: ImapSettings = ImapSettings()
    output: OutputSettings = OutputSettings()
    state: StateSettings = StateSettings()
    metrics: MetricsSettings = MetricsSettings()
    export: ExportSettings = ExportSettings()
    retention: RetentionSettings = RetentionSettings()
    audit: AuditSettings = AuditSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secret files before .env: a mounted Secret outranks a file in the working folder.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = os.environ.get(ENV_PREFIX + "SECRETS_DIR") or (
            "/run/secrets" if Path("/run/secrets").is_dir() else None
        )
        if secrets_dir:
            sources.append(
                NestedSecretsSettingsSource(
                    file_secret_settings,
                    secrets_dir=secrets_dir,
                    secrets_nested_delimiter="__",
                    secrets_dir_missing="ok",
                )
            )
        sources.append(dotenv_settings)
        toml_file = os.environ.get(ENV_PREFIX + "CONFIG")
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def env_name(*loc: str | int) -> str:
    """The environment variable for a settings location: ``("imap", "port")`` -> ``INGEST_IMAP__PORT``
    (a list index in the location, ``("imap", "allowed_senders", 0)``, names the list)."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc if not isinstance(part, int))


def section_fields() -> dict[str, list[str]]:
    """Each settings section and its fields: ``{"imap": ["host", "port", ...], ...}``."""
    fields: dict[str, list[str]] = {}
    for section, info in Settings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        fields[section] = list(model.model_fields)
    return fields


def _refuse_unknown_names(toml_file: str | None) -> None:
    """A ConfigError (exit 2) for the first name in any source meant as a setting but naming
    none (a typo such as ``INGEST_IMAP__REQUIRE_AUTHENTICATON`` would leave a check off)."""
    toml: dict[str, Any] = {}
    try:
        if toml_file:
            with open(toml_file, "rb") as stream:
                toml = tomllib.load(stream)
        dotenv = dotenv_values(".env") if Path(".env").is_file() else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read settings: {err}") from None
    secrets_dir = os.environ.get(ENV_PREFIX + "SECRETS_DIR") or "/run/secrets"
    secret_files = [p.name for p in Path(secrets_dir).glob("[iI][nN][gG][eE][sS][tT]_*")]
    problem = unknown_setting(os.environ, dotenv, secret_files, toml, sections=section_fields())
    if problem:
        raise ConfigError(problem)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once, turning validation errors into a one-line :class:`ConfigError`.

    Unknown ``INGEST_`` names and TOML keys are refused too (:mod:`ingest.unknown_settings`).
    """
    toml_file = os.environ.get(ENV_PREFIX + "CONFIG")
    if toml_file and not Path(toml_file).is_file():
        raise ConfigError(f"INGEST_CONFIG names {toml_file!r}, which is not a readable file")
    _refuse_unknown_names(toml_file)
    try:
        settings = Settings(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        # Never echo the input: it may be a secret.
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{env_name(*first['loc'])}: {message}") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read settings: {err}") from None
    for warning in transport_warnings(settings):
        log.warning("insecure setting: %s", warning)
    return settings


def _loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses: clear text there never leaves the machine."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def transport_warnings(settings: Settings) -> list[str]:
    """Settings under which a secret or a report crosses a network unencrypted: an
    ``http://`` API or OAuth2 token URL, IMAP without TLS. Loopback is exempt. The job
    runs anyway (a lab may want it), but says so in the log and in ``ingest doctor``."""
    found = []
    for loc, url, what in (
        (("certainly", "base_url"), settings.certainly.base_url, "the API token"),
        (
            ("imap", "oauth2_token_url"),
            settings.imap.oauth2_token_url,
            "the OAuth2 refresh token and client secret",
        ),
    ):
        if url and url.lower().startswith("http://") and not _loopback(urlsplit(url).hostname):
            found.append(f"{env_name(*loc)} is http://: {what} would travel unencrypted")
    if settings.imap.security == "none" and settings.imap.host and not _loopback(settings.imap.host):
        found.append(
            "INGEST_IMAP__SECURITY is none: the IMAP login and every report would travel unencrypted"
        )
    return found


def require(value: Any, *loc: str) -> Any:
    """Return ``value`` or raise a ConfigError naming the variable that must be set."""
    if value is None or value == "" or value == []:
        raise ConfigError(
            f"{env_name(*loc)} is not set", hint="see the configuration reference in the README"
        )
    return value


class _ExplicitSettings(Settings):
    """Settings from arguments only: no environment, .env, secrets or TOML."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def explicit_settings(**values: Any) -> Settings:
    """Settings built only from ``values`` (the demo and tests must not read the user's env).

    Example: ``explicit_settings(imap={"host": "127.0.0.1", "security": "none"})``
    """
    return _ExplicitSettings(**values)


def reference_markdown() -> str:
    """The README's settings table, generated from the models (a test keeps them equal).

    Regenerate: ``python -c "from ingest.settings import reference_markdown as r; print(r())"``
    """
    lines = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for section, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for name, info in model.model_fields.items():
            kind = _type_name(info.annotation)
            if info.default_factory is not None:
                default = str(info.default_factory())  # type: ignore[call-arg]  # ours take no argument
            else:
                default = "-" if info.default is None else str(info.default)
            lines.append(
                f"| `{env_name(section, name)}` | {kind} | `{default}` | "
                f"{(info.description or '').replace('|', '/')} |"
            )
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    """A reader's name for a field type: ``SecretStr | None`` -> ``secret``."""
    names = {
        "SecretStr": "secret",
        "str": "text",
        "int": "integer",
        "float": "number",
        "bool": "true/false",
        "date": "YYYY-MM-DD",
        "Path": "path",
        "list": "list (a,b or JSON)",
    }
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Annotated:
        return _type_name(args[0])
    if get_origin(annotation) is dict:
        return "dataset=days list (a=1,b=2 or JSON)"
    if get_origin(annotation) is Literal:
        return " / ".join(map(str, get_args(annotation)))
    if get_origin(annotation) is not None and args and get_origin(annotation) is not list:
        return _type_name(args[0]) if len(args) == 1 else " or ".join(map(_type_name, args))
    origin = get_origin(annotation) or annotation
    return names.get(getattr(origin, "__name__", str(origin)), str(origin))
