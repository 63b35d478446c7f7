"""The settings model: one section per part of the job, each field with its default, its
bounds and the description the documentation and the example files are generated from
(``docs/generate.py``).

Sources and precedence, highest first: arguments, environment, secret files, ``.env``,
TOML, defaults. Secret files outrank ``.env``: a mounted Secret is what the operator meant,
a ``.env`` in the working folder may be anybody's leftover.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources import NestedSecretsSettingsSource

from ingest.settings.values import (
    account_address_problem,
    bot_id_problem,
    dataset_days,
    entries_checked_by,
    sender_problem,
    split_list,
)

ENV_PREFIX = "INGEST_"
CommaList = Annotated[list[str], NoDecode]


class CertainlySettings(BaseModel):
    """The Certainly API and the account whose token is used."""

    base_url: str = Field("https://app.certainly.io/api/", description="API root URL.")
    token: SecretStr | None = Field(None, description="Public API auth token (JWT).")
    report_path: str | None = Field(
        None,
        description="Message report path under base_url (undocumented by the vendor; ask Certainly).",
        examples=["<report-path>"],
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
        default_factory=list,
        description="Bot ids kept current by `ingest run` (letters, digits, '-', '_').",
        examples=[["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"]],
    )

    account_email: CommaList = Field(
        default_factory=list,
        description="The token owner's address(es) reports are sent to (aliases too); "
        "default: INGEST_IMAP__USERNAME when it is an address. Mail addressed elsewhere is never matched.",
        examples=[["owner@example.com"]],
    )

    _split = field_validator("bots", "account_email", mode="before")(split_list)
    _check = field_validator("bots", mode="after")(entries_checked_by(bot_id_problem))
    _check_account = field_validator("account_email", mode="after")(
        entries_checked_by(account_address_problem)
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
        None,
        description="First day kept current for INGEST_CERTAINLY__BOTS (default: yesterday).",
        examples=[date(2024, 1, 1)],
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

    host: str | None = Field(None, description="IMAP server host name.", examples=["imap.example.com"])
    port: int | None = Field(None, ge=1, le=65535, description="Default 993 (tls) or 143.", examples=[993])
    security: Literal["tls", "starttls", "none"] = Field(
        "tls",
        description="Transport security: tls (from the first byte), starttls (upgraded on port 143) "
        "or none (clear text: a warning unless the server is on loopback).",
    )
    auth: Literal["password", "xoauth2", "oauthbearer"] = Field(
        "password", description="password (LOGIN), or OAuth2 as Gmail and Microsoft 365 require."
    )
    username: str | None = Field(
        None, description="Login name (often the email address).", examples=["reports@example.com"]
    )
    password: SecretStr | None = Field(None, description="Password or app password.")
    oauth2_access_token: SecretStr | None = Field(None, description="OAuth2 access token.")
    oauth2_refresh_token: SecretStr | None = Field(
        None, description="OAuth2 refresh token, exchanged at oauth2_token_url for access tokens."
    )
    oauth2_token_url: str | None = Field(
        None, description="OAuth2 token endpoint.", examples=["https://oauth2.googleapis.com/token"]
    )
    oauth2_client_id: str | None = Field(None, description="OAuth2 client id.", examples=["<client-id>"])
    oauth2_client_secret: SecretStr | None = Field(None, description="OAuth2 client secret.")
    folder: str = Field("INBOX", description="Folder watched for report emails.")
    processed_folder: str = Field("certainly-ingest/processed", description="Where archived emails go.")
    failed_folder: str = Field(
        "certainly-ingest/failed", description="Where reports that failed validation go."
    )
    rejected_folder: str | None = Field(
        None,
        description="Where mail from other senders goes (default: left alone).",
        examples=["certainly-ingest/rejected"],
    )
    allow_special_use_folder: bool = Field(
        False,
        description="Let the processed/failed/rejected folder be a special-use one "
        "(Trash, Junk, Archive, [Gmail]/...), refused otherwise.",
    )
    allowed_senders: CommaList = Field(
        default_factory=list,
        description="Addresses, @domains or domains whose mail is ingested; nothing else is.",
        examples=[["@example.com"]],
    )
    require_authentication: bool = Field(
        False,
        description="Ingest only mail your own receiving server marked as authenticated: its topmost "
        "Authentication-Results header with authserv_id must pass DMARC (or aligned DKIM).",
        examples=[True],
    )
    authserv_id: str | None = Field(
        None,
        description="The receiving server's authserv-id: the first word of the Authentication-Results "
        "headers it adds ('Authentication-Results: mx.example.com; dkim=pass ...'); required with "
        "require_authentication.",
        examples=["mx.example.com"],
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
    ca_file: Path | None = Field(
        None,
        description="Extra CA bundle (PEM) for the server certificate.",
        examples=[Path("/etc/certainly-ingest/imap-ca.pem")],
    )
    timeout: float = Field(30.0, gt=0, description="Seconds for connect and for each command.")
    reconnect_attempts: int = Field(5, ge=1, description="Reconnections when the server drops us mid-run.")
    idle_seconds: float = Field(
        25 * 60.0,
        gt=0,
        le=29 * 60,
        description="`ingest watch`: re-issue IDLE after this (servers drop it at 30 min).",
    )

    _split = field_validator("allowed_senders", mode="before")(split_list)
    _check = field_validator("allowed_senders", mode="after")(entries_checked_by(sender_problem))

    @property
    def effective_port(self) -> int:
        """The configured port, or the standard one for the security mode."""
        if self.port:
            return self.port
        return 993 if self.security == "tls" else 143


class OutputSettings(BaseModel):
    """Where the archive is written."""

    root: str = Field(
        "./archive",
        description="Local folder, or s3://bucket/prefix (S3-compatible); the container image "
        "sets /data/archive.",
    )
    staging_dir: Path | None = Field(
        None,
        description="s3:// only: local folder for temporary files (default: staging/ "
        "beside the state store). A local root always uses <root>/.staging (same disk).",
        examples=[Path("/data/staging")],
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint (MinIO, Ceph ...); unset for AWS.",
        examples=["http://minio:9000"],
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
        examples=[2555],
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
        examples=[Path("/tmp")],
    )
    max_inflated_bytes: int = Field(
        512 * 1024**2,
        ge=1024,
        description="What the compressed attachments of one email (or one imported file) may "
        "inflate to in all, streamed to temp_dir; beyond it the email goes to the failed folder.",
    )


class StateSettings(BaseModel):
    """The job's own SQLite state store."""

    path: Path = Field(
        Path("./ingest-state.sqlite"),
        description="SQLite file (keep it on a volume); the container image sets /data/state.sqlite.",
    )


class MetricsSettings(BaseModel):
    """Optional Prometheus metrics."""

    textfile: Path | None = Field(
        None,
        description="Write Prometheus metrics here after each run (a node-exporter textfile).",
        examples=[Path("/var/lib/node_exporter/textfile/certainly_ingest.prom")],
    )


class ExportSettings(BaseModel):
    """Compliance exports (`ingest export`)."""

    signing_key_file: Path | None = Field(
        None,
        description="Ed25519 private key (PEM, from `ingest keygen`) that signs export bundles.",
        examples=[Path("/run/secrets/export-signing-key.pem")],
    )
    signing_key: SecretStr | None = Field(
        None,
        description="The same key's PEM text, e.g. a secret file ingest_export__signing_key; "
        "signing_key_file wins when both are set.",
    )


class RetentionSettings(BaseModel):
    """How long rows are kept (`ingest prune`; `ingest run` applies it when set)."""

    days: int | None = Field(
        None,
        ge=1,
        description="Keep rows this many days after their UTC date; unset: keep forever.",
        examples=[2555],
    )
    datasets: Annotated[dict[str, Annotated[int, Field(ge=1)]], NoDecode] = Field(
        default_factory=dict,
        description='Days per dataset, overriding days: {"messages": 365} or messages=365,standard=730.',
        examples=[{"messages": 365, "standard": 730}],
    )

    _parse = field_validator("datasets", mode="before")(dataset_days)

    def days_for(self, dataset: str) -> int | None:
        """The retention of a dataset in days, None to keep it forever."""
        return self.datasets.get(dataset, self.days)


class AuditSettings(BaseModel):
    """The archive's audit log of erasures, prunes and legal holds."""

    actor: str | None = Field(
        None,
        description="Who acts, as the audit log records it (default: the OS user).",
        examples=["dpo@example.com"],
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
    """Every setting of certainly-ingest; the settings reference of the documentation site
    (docs/reference/settings.md) is generated from it."""

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
