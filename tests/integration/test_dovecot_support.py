"""Checks that the private Dovecot test server behaves like the real IMAP servers we target.

Every other IMAP integration test builds on ``tests.support.dovecot``; these tests pin down
what it promises: password login, APPEND/SELECT/SEARCH/MOVE, TLS (implicit and STARTTLS)
with certificate verification, and XOAUTH2/OAUTHBEARER against an introspection endpoint.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.support import dovecot as dovecot_support
from tests.support.dovecot import Dovecot, require_dovecot
from tests.support.tls import TestCerts, make_test_ca

pytestmark = pytest.mark.integration

USER = "owner@example.test"
PASSWORD = "secret"
GOOD_TOKEN = "good-token"
IMAP_TIMEOUT_S = 10


def _message(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "noreply@certainly.test"
    msg["To"] = USER
    msg["Subject"] = subject
    msg.set_content("export attached")
    return msg.as_bytes()


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    """A plain-text (no TLS) Dovecot with the default user."""
    require_dovecot()
    with Dovecot(tmp_path / "dovecot") as server:
        yield server


@pytest.fixture
def certs(tmp_path: Path) -> TestCerts:
    require_dovecot()  # the certificates alone are no use without the server
    return make_test_ca(tmp_path / "tls")


@pytest.fixture
def tls_dovecot(tmp_path: Path, certs: TestCerts) -> Iterator[Dovecot]:
    with Dovecot(tmp_path / "dovecot", tls=certs) as server:
        yield server


class _Introspection(BaseHTTPRequestHandler):
    """OAuth2 token introspection (RFC 7662 style) that knows exactly one good token."""

    tokens_seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - name fixed by http.server
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode("utf-8"))
        token = form.get("token", [""])[0]
        self.tokens_seen.append(token)
        body: dict[str, object] = {"active": False}
        if token == GOOD_TOKEN:
            body = {"active": True, "username": USER}
        payload = json.dumps(body).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep pytest output clean; Dovecot's log records the outcome


@pytest.fixture
def introspection() -> Iterator[tuple[str, list[str]]]:
    """Serve the introspection endpoint; yields its URL and the tokens it received."""
    seen: list[str] = []
    handler = type("Handler", (_Introspection,), {"tokens_seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/introspect", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_password_login_append_select_move(dovecot: Dovecot) -> None:
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=IMAP_TIMEOUT_S) as client:
        client.login(USER, PASSWORD)
        assert b"MOVE" in client.capabilities()
        client.append("INBOX", _message("Certainly export 42"))

        selected = client.select_folder("INBOX")
        assert selected[b"EXISTS"] == 1
        assert isinstance(selected[b"UIDVALIDITY"], int) and selected[b"UIDVALIDITY"] > 0
        uids = client.search(["SUBJECT", "Certainly export 42"])
        assert len(uids) == 1

        client.create_folder("Processed")
        client.move(uids, "Processed")
        assert client.search(["ALL"]) == []
        assert client.folder_status("Processed", [b"MESSAGES"])[b"MESSAGES"] == 1
        client.logout()


def test_wrong_password_is_rejected(dovecot: Dovecot) -> None:
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=IMAP_TIMEOUT_S) as client:
        with pytest.raises(LoginError):
            client.login(USER, "wrong")


def test_two_instances_run_side_by_side(tmp_path: Path, dovecot: Dovecot) -> None:
    with Dovecot(tmp_path / "second") as second:
        assert second.port != dovecot.port
        for server in (dovecot, second):
            with IMAPClient(server.host, port=server.port, ssl=False, timeout=IMAP_TIMEOUT_S) as c:
                c.login(USER, PASSWORD)
                c.logout()


def test_implicit_tls_verifies_against_the_test_ca(tls_dovecot: Dovecot, certs: TestCerts) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca_path))
    with IMAPClient(
        tls_dovecot.host,
        port=tls_dovecot.imaps_port,
        ssl=True,
        ssl_context=context,
        timeout=IMAP_TIMEOUT_S,
    ) as client:
        assert isinstance(client.socket(), ssl.SSLSocket)
        client.login(USER, PASSWORD)
        client.logout()


def test_implicit_tls_without_the_ca_is_refused(tls_dovecot: Dovecot) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            tls_dovecot.host,
            port=tls_dovecot.imaps_port,
            ssl=True,
            ssl_context=ssl.create_default_context(),
            timeout=IMAP_TIMEOUT_S,
        )


def test_starttls_with_the_ca(tls_dovecot: Dovecot, certs: TestCerts) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca_path))
    with IMAPClient(tls_dovecot.host, port=tls_dovecot.port, ssl=False, timeout=IMAP_TIMEOUT_S) as client:
        # Dovecot counts loopback connections as "secured" (client IP == local IP), so
        # `ssl = required` does not refuse a plaintext LOGIN here; check the socket.
        assert not isinstance(client.socket(), ssl.SSLSocket)
        client.starttls(context)
        assert isinstance(client.socket(), ssl.SSLSocket)
        client.login(USER, PASSWORD)
        client.logout()


def _token_login(client: IMAPClient, mech: str, token: str) -> None:
    # imapclient's oauth2_login always sends the XOAUTH2 payload; OAUTHBEARER (RFC 7628)
    # has its own GS2 format and needs oauthbearer_login.
    if mech == "XOAUTH2":
        client.oauth2_login(USER, token)
    else:
        client.oauthbearer_login(USER, token)


@pytest.mark.parametrize("mech", ["XOAUTH2", "OAUTHBEARER"])
def test_oauth2_login_via_introspection(
    tmp_path: Path, introspection: tuple[str, list[str]], mech: str
) -> None:
    require_dovecot()
    url, tokens_seen = introspection
    with Dovecot(tmp_path / "dovecot", oauth2_introspection_url=url) as server:
        with IMAPClient(server.host, port=server.port, ssl=False, timeout=IMAP_TIMEOUT_S) as c:
            _token_login(c, mech, GOOD_TOKEN)
            c.logout()
        with IMAPClient(server.host, port=server.port, ssl=False, timeout=IMAP_TIMEOUT_S) as c:
            with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
                _token_login(c, mech, "bad-token")
    # Proves Dovecot really asked our endpoint rather than some other passdb deciding.
    assert tokens_seen == [GOOD_TOKEN, "bad-token"]


def test_start_failure_reports_dovecot_error(tmp_path: Path) -> None:
    require_dovecot()
    missing = TestCerts(
        cert_path=tmp_path / "nope.pem", key_path=tmp_path / "nope.key", ca_path=tmp_path / "nope-ca.pem"
    )
    server = Dovecot(tmp_path / "dovecot", tls=missing)
    with pytest.raises(RuntimeError, match="Dovecot failed to start.*nope.pem"):
        server.start()
    server.stop()  # idempotent after a failed start


@pytest.mark.parametrize(("ci", "outcome"), [("true", "fail"), (None, "skip")])
def test_require_dovecot_fails_in_ci_and_skips_locally(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: str
) -> None:
    monkeypatch.setattr(dovecot_support, "dovecot_available", lambda: False)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected):
        require_dovecot()
    assert os.environ.get("CI") == ci
