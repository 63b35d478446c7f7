"""What logging in to the IMAP server needs besides the settings: the TLS context (the
system's CAs plus an optional extra CA file, verification always on) and the OAuth2 access
token (the configured one, or a fresh one from the refresh token)."""

from __future__ import annotations

import ssl

import requests

from ingest.errors import ConfigError, MailboxAuthError, MailboxUnavailable
from ingest.settings import ImapSettings, require


def ssl_context(settings: ImapSettings) -> ssl.SSLContext:
    """Certificate verification always on: the system's CAs plus an optional extra CA file."""
    try:
        context = ssl.create_default_context()
        if settings.ca_file:
            context.load_verify_locations(cafile=str(settings.ca_file))  # in addition to the system's
        return context
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"INGEST_IMAP__CA_FILE cannot be loaded: {err}") from None


def oauth2_access_token(settings: ImapSettings) -> str:
    """The configured access token, or a fresh one from the refresh token."""
    if settings.oauth2_access_token is not None:
        return settings.oauth2_access_token.get_secret_value()
    refresh = require(settings.oauth2_refresh_token, "imap", "oauth2_refresh_token")
    url = require(settings.oauth2_token_url, "imap", "oauth2_token_url")
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh.get_secret_value(),
        "client_id": settings.oauth2_client_id or "",
    }
    if settings.oauth2_client_secret is not None:
        form["client_secret"] = settings.oauth2_client_secret.get_secret_value()
    try:
        # Never follow a redirect: a 307/308 would re-send the refresh token and the client
        # secret to whatever host it names.
        response = requests.post(url, data=form, timeout=settings.timeout, allow_redirects=False)
    except requests.RequestException as err:
        raise MailboxUnavailable(f"OAuth2 token endpoint {url}: {type(err).__name__}") from None
    if response.is_redirect or 300 <= response.status_code < 400:
        raise ConfigError(
            f"OAuth2 token endpoint {url} answered a redirect ({response.status_code}), "
            "which is not followed: set the final token URL",
            hint="INGEST_IMAP__OAUTH2_TOKEN_URL",
        )
    if response.status_code >= 400:
        raise MailboxAuthError(
            f"OAuth2 token endpoint {url} refused the refresh token ({response.status_code})",
            hint="INGEST_IMAP__OAUTH2_REFRESH_TOKEN",
        )
    try:
        return str(response.json()["access_token"])
    except (ValueError, KeyError, TypeError):
        raise MailboxAuthError(f"OAuth2 token endpoint {url} gave no access_token") from None
