"""Building the settings once, from every source, and what is said about them: a one-line
:class:`ConfigError` for a bad or unknown setting (never echoing the value: it may be a
secret), a warning for a setting that sends a secret in clear text, and the variable's name
for a setting a command needs but nobody set.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from ingest.errors import ConfigError
from ingest.settings.model import ENV_PREFIX, Settings
from ingest.unknown_settings import unknown_setting

log = logging.getLogger(__name__)


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
            f"{env_name(*loc)} is not set", hint="see the settings reference (docs/reference/settings.md)"
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
