"""Connection security and authentication of the watcher against a real Dovecot.

One Dovecot (TLS on both ports with a throwaway CA, password and OAuth2 logins) serves the
module; the test serves the OAuth2 endpoints itself: the introspection URL Dovecot asks
about tokens, and a token endpoint that turns refresh tokens into access tokens.
"""

from __future__ import annotations

import gc
import json
import shutil
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from ingest.errors import MailboxAuthError, MailboxUnavailable
from ingest.mail.mailbox import Mailbox
from ingest.pipeline.passes import run_once
from ingest.settings import Settings
from ingest.state.store import Store
from tests.support.archive import assert_archive_matches
from tests.support.job import run_ingest
from tests.support.mail import (
    PROCESSED,
    SENDER,
    Mailboxes,
    accept_windows,
    deliver,
    message_id,
    moved,
    report,
    report_email,
    running_dovecot,
    snapshot,
    truth_of,
    watcher_settings,
)
from tests.support.tls import TestCerts, make_test_ca

pytestmark = pytest.mark.integration

PASSWORD = "secret"
ACCOUNTS = Mailboxes("sec", 29, PASSWORD)
USERS = ACCOUNTS.users
BOT = "3f0c2a9e-3333-4c1a-9d4e-00000000000c"
CLIENT_ID, CLIENT_SECRET = "ingest-test-client", "client-secret-42"
HTTP_TIMEOUT_S = 10


@dataclass
class OAuthServer:
    """What the test's OAuth2 endpoints know and saw."""

    url: str
    access_tokens: dict[str, str] = field(default_factory=dict)  # token -> username
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh -> username
    introspected: list[str] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def introspection_url(self) -> str:
        return self.url + "/introspect"

    @property
    def token_url(self) -> str:
        return self.url + "/token"


def _handler(state: OAuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            status, body = 404, {"error": "not_found"}
            with state.lock:
                if self.path == "/introspect":
                    token = form.get("token", "")
                    state.introspected.append(token)
                    user = state.access_tokens.get(token)
                    status, body = 200, ({"active": True, "username": user} if user else {"active": False})
                elif self.path == "/token":
                    state.token_requests.append(form)
                    user = state.refresh_tokens.get(form.get("refresh_token", ""))
                    if (
                        form.get("grant_type") == "refresh_token"
                        and user
                        and form.get("client_id") == CLIENT_ID
                        and form.get("client_secret") == CLIENT_SECRET
                    ):
                        token = f"issued-{len(state.token_requests)}-{user}"
                        state.access_tokens[token] = user
                        status, body = (
                            200,
                            {"access_token": token, "token_type": "Bearer", "expires_in": 3599},
                        )
                    else:
                        status, body = 400, {"error": "invalid_grant"}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthServer]:
    state = OAuthServer(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def tls_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ingest-watcher-tls-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def certs(tls_dir: Path) -> TestCerts:
    return make_test_ca(tls_dir / "server")


@pytest.fixture(scope="module")
def other_ca(tls_dir: Path) -> TestCerts:
    return make_test_ca(tls_dir / "other")


@pytest.fixture(scope="module")
def dovecot_options(certs: TestCerts, oauth: OAuthServer) -> dict[str, object]:
    """This module's Dovecot (tests/conftest.py) speaks TLS and asks ``oauth`` about tokens."""
    return {"tls": certs, "oauth2_introspection_url": oauth.introspection_url}


def secure_settings(
    dovecot,
    user: str,
    workdir: Path,
    security: str,
    ca: Path | None,  # type: ignore[no-untyped-def]
    **imap: object,
) -> Settings:
    port = dovecot.imaps_port if security == "tls" else dovecot.port
    password = imap.pop("password", PASSWORD)
    return watcher_settings(
        dovecot, user, password, workdir, security=security, port=port, ca_file=ca, **imap
    )


def one_report(dovecot, user: str, day: int):  # type: ignore[no-untyped-def]
    """Deliver one report; returns (report, raw, snapshot before the pass)."""
    rep = report(BOT, date(2024, 5, day), date(2024, 5, day + 2))
    raw = report_email(rep)
    deliver(dovecot, user, PASSWORD, [raw])
    return rep, raw, snapshot(dovecot, user, PASSWORD)


def archive_one(settings: Settings, rep) -> None:  # type: ignore[no-untyped-def]
    with Store.open(settings.state.path) as store:
        accept_windows(store, rep)
        summary = run_once(settings, store)
    assert (summary.emails_archived, summary.reports_archived) == (1, 1)


# -- transport ----------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_with_the_test_ca_archives_a_report(dovecot, certs, user, workdir, security) -> None:
    rep, raw, before = one_report(dovecot, user, 1)
    settings = secure_settings(dovecot, user, workdir, security, certs.ca_path)

    with Mailbox(settings.imap) as box:  # the session really is encrypted and verified
        sock = box.client.socket()
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.getpeercert()["subjectAltName"] == (("DNS", "localhost"), ("IP Address", "127.0.0.1"))
    archive_one(settings, rep)

    assert_archive_matches(Path(settings.output.root), truth_of(rep))
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(raw): PROCESSED})


@pytest.mark.parametrize("ca", ["none", "another CA"])
@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_an_untrusted_certificate_fails_with_one_clear_line(
    dovecot, other_ca, user, workdir, security, ca
) -> None:
    rep, _, before = one_report(dovecot, user, 4)
    settings = secure_settings(dovecot, user, workdir, security, other_ca.ca_path if ca != "none" else None)

    with Store.open(settings.state.path) as store:
        accept_windows(store, rep)
        with pytest.raises(MailboxUnavailable) as caught:
            run_once(settings, store)
    message = f"{caught.value} ({caught.value.hint})"
    assert "certificate" in message and "INGEST_IMAP__CA_FILE" in message
    assert "\n" not in message
    assert snapshot(dovecot, user, PASSWORD) == before
    assert not (Path(settings.output.root) / "messages").exists()
    gc.collect()  # a socket leaked by the failed handshake would warn (an error here) now


def test_the_ca_file_is_an_extra_ca_not_a_replacement_of_the_system_store(
    dovecot, certs, other_ca, user, workdir, monkeypatch
) -> None:
    """INGEST_IMAP__CA_FILE is documented as an *extra* CA bundle: setting it must not stop
    the system store (here: SSL_CERT_FILE naming the server's CA) from being trusted."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_path))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    trusting_system = secure_settings(dovecot, user, workdir, "tls", None)
    Mailbox(trusting_system.imap).connect().close()  # the system store alone is enough

    with_extra = secure_settings(dovecot, user, workdir, "tls", other_ca.ca_path)
    Mailbox(with_extra.imap).connect().close()


def test_the_cli_prints_the_certificate_error_on_one_line_and_exits_3(dovecot, user, workdir) -> None:
    env = {
        "INGEST_IMAP__HOST": dovecot.host,
        "INGEST_IMAP__PORT": str(dovecot.imaps_port),
        "INGEST_IMAP__SECURITY": "tls",
        "INGEST_IMAP__USERNAME": user,
        "INGEST_IMAP__PASSWORD": PASSWORD,
        "INGEST_IMAP__ALLOWED_SENDERS": SENDER,
        "INGEST_IMAP__TIMEOUT": "10",
        "INGEST_OUTPUT__ROOT": str(workdir / "archive"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
        "COLUMNS": "300",
    }
    done = run_ingest("run", env=env, cwd=workdir, timeout=60)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "certificate" in lines[0] and "INGEST_IMAP__CA_FILE" in lines[0]
    assert PASSWORD not in done.stderr + done.stdout


# -- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_oauth2_access_token_logs_in_and_archives(dovecot, certs, oauth, user, workdir, mechanism) -> None:
    token = f"access-{mechanism}-{user}"
    oauth.access_tokens[token] = user
    rep, raw, before = one_report(dovecot, user, 7)
    settings = secure_settings(
        dovecot,
        user,
        workdir,
        "tls",
        certs.ca_path,
        auth=mechanism,
        password=None,
        oauth2_access_token=token,
    )

    archive_one(settings, rep)

    assert token in oauth.introspected  # Dovecot really asked about our token
    assert_archive_matches(Path(settings.output.root), truth_of(rep))
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(raw): PROCESSED})


# Dovecot delays every login from an address after a failed one (auth_failure_delay and
# an escalating per-IP penalty), so refused logins go to a Dovecot of their own.


@pytest.fixture(scope="module")
def refused_xoauth2(oauth: OAuthServer) -> Iterator[tuple[BaseException, dict, dict]]:
    """One refused XOAUTH2 login on a fresh Dovecot: the error, and the mailbox before/after."""
    users = {"refused@example.test": PASSWORD}
    with (
        running_dovecot(users, oauth2_introspection_url=oauth.introspection_url) as server,
        tempfile.TemporaryDirectory(prefix="ingest-watcher-") as tmp,
    ):
        rep = report(BOT, date(2024, 5, 10), date(2024, 5, 12))
        deliver(server, "refused@example.test", PASSWORD, [report_email(rep)])
        before = snapshot(server, "refused@example.test", PASSWORD)
        settings = watcher_settings(
            server,
            "refused@example.test",
            None,
            Path(tmp),
            auth="xoauth2",
            oauth2_access_token="expired-or-forged",
        )
        with Store.open(settings.state.path) as store:
            accept_windows(store, rep)
            try:
                run_once(settings, store)
            except Exception as err:  # noqa: BLE001 - the tests below look at what it was
                error: BaseException = err
            else:
                raise AssertionError("a forged token logged in")
        gc.collect()  # a socket leaked by the failed login would warn (an error here) now
        yield error, before, snapshot(server, "refused@example.test", PASSWORD)


def test_a_bad_oauth2_token_is_an_auth_error_and_touches_nothing(refused_xoauth2, oauth) -> None:
    error, before, after = refused_xoauth2
    assert isinstance(error, MailboxAuthError), repr(error)
    assert "expired-or-forged" in oauth.introspected  # Dovecot asked, and was told no
    assert "expired-or-forged" not in f"{error} {error.hint}"
    assert after == before


def test_a_bad_oauth2_token_error_points_at_the_token_setting(refused_xoauth2) -> None:
    """The hint of a refused XOAUTH2 login must name the OAuth2 settings, not the password."""
    error, _, _ = refused_xoauth2
    assert "OAUTH2" in (getattr(error, "hint", None) or ""), f"hint was {getattr(error, 'hint', None)!r}"


def test_a_wrong_password_is_an_auth_error() -> None:
    with (
        running_dovecot({"pw@example.test": PASSWORD}) as server,
        tempfile.TemporaryDirectory(prefix="ingest-watcher-") as tmp,
    ):
        settings = watcher_settings(server, "pw@example.test", "wrong", Path(tmp))
        with pytest.raises(MailboxAuthError) as caught:
            Mailbox(settings.imap).connect()
        assert "wrong" not in str(caught.value) and "pw@example.test" in str(caught.value)
        gc.collect()


def test_the_refresh_token_is_exchanged_at_the_token_endpoint(dovecot, certs, oauth, user, workdir) -> None:
    refresh = f"refresh-{user}"
    oauth.refresh_tokens[refresh] = user
    rep, raw, before = one_report(dovecot, user, 13)
    settings = secure_settings(
        dovecot,
        user,
        workdir,
        "tls",
        certs.ca_path,
        auth="xoauth2",
        password=None,
        oauth2_refresh_token=refresh,
        oauth2_token_url=oauth.token_url,
        oauth2_client_id=CLIENT_ID,
        oauth2_client_secret=CLIENT_SECRET,
    )
    seen = len(oauth.token_requests)

    archive_one(settings, rep)

    requests_made = oauth.token_requests[seen:]
    assert requests_made == [
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
    ]
    issued = [t for t, u in oauth.access_tokens.items() if u == user and t.startswith("issued-")]
    assert len(issued) == 1 and issued[0] in oauth.introspected
    assert_archive_matches(Path(settings.output.root), truth_of(rep))
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(raw): PROCESSED})


def test_a_refused_refresh_token_is_an_auth_error(dovecot, certs, oauth, user, workdir) -> None:
    settings = secure_settings(
        dovecot,
        user,
        workdir,
        "tls",
        certs.ca_path,
        auth="xoauth2",
        password=None,
        oauth2_refresh_token="revoked",
        oauth2_token_url=oauth.token_url,
        oauth2_client_id=CLIENT_ID,
        oauth2_client_secret=CLIENT_SECRET,
    )
    with pytest.raises(MailboxAuthError) as caught:
        Mailbox(settings.imap).connect()
    assert "400" in str(caught.value) and "revoked" not in str(caught.value)
    assert CLIENT_SECRET not in f"{caught.value} {caught.value.hint}"
    del caught
    # The IMAP connection opened before the token exchange failed must be closed, not
    # left to the garbage collector (under filterwarnings=error its ResourceWarning fails here).
    gc.collect()
