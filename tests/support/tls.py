"""Throwaway TLS material for tests: a private CA and a server certificate for loopback.

A client trusts the server exactly when it is given the CA's file as ``cafile``; that lets
a test prove both that TLS works *and* that a certificate of another CA is rejected.
Made in-process with ``trustme`` (no ``openssl`` binary, no RSA key generation to wait for).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["TestCerts", "make_test_ca"]


@dataclass(frozen=True)
class TestCerts:
    """PEM files: the server's certificate chain and key, and the CA a client trusts."""

    # Stops pytest from trying to collect this class as a test because of its name.
    __test__ = False

    cert_path: Path
    key_path: Path
    ca_path: Path


def make_test_ca(directory: Path) -> TestCerts:
    """Create a CA and a server certificate for ``localhost`` and ``127.0.0.1`` in ``directory``.

    Python's ssl module checks the subjectAltName, never the CN: both names clients dial
    are in it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    certs = TestCerts(
        cert_path=directory / "cert.pem", key_path=directory / "key.pem", ca_path=directory / "ca.pem"
    )
    certs.cert_path.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    # Dovecot reads the key as root before dropping privileges, so 0600 root is fine.
    certs.key_path.touch(mode=0o600)
    server.private_key_pem.write_to_path(str(certs.key_path))
    ca.cert_pem.write_to_path(str(certs.ca_path))
    return certs
