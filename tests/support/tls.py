"""Throwaway TLS material for tests: one self-signed certificate for loopback.

The certificate is its own CA, so a client trusts the server exactly when it is given
this file as ``cafile``; that lets a test prove both that TLS works *and* that an
unknown certificate is rejected.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TestCerts", "make_test_ca"]

# Generous: RSA key generation is fast, but CI machines can be slow and starved.
_OPENSSL_TIMEOUT_S = 60


@dataclass(frozen=True)
class TestCerts:
    """Paths of a PEM certificate (also usable as the client's CA file) and its key."""

    # Stops pytest from trying to collect this class as a test because of its name.
    __test__ = False

    cert_path: Path
    key_path: Path


def make_test_ca(directory: Path) -> TestCerts:
    """Create a self-signed certificate for ``localhost`` and ``127.0.0.1`` in ``directory``.

    Uses the ``openssl`` CLI rather than a Python library so the tests need no extra
    dependency. Raises ``RuntimeError`` with openssl's stderr if it fails.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    command = [
        "openssl", "req", "-x509",
        "-newkey", "rsa:2048", "-nodes",
        "-keyout", str(key_path),
        "-out", str(cert_path),
        "-days", "2",
        "-subj", "/CN=localhost",
        # Python's ssl module checks the SAN, never the CN; both names clients may dial.
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        # Mark it a CA so it can sit in a client's trust store as its own issuer.
        "-addext", "basicConstraints=critical,CA:TRUE",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=_OPENSSL_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl failed ({result.returncode}): {result.stderr.strip()}")
    # Dovecot reads the key as root before dropping privileges, so 0600 root is fine.
    key_path.chmod(0o600)
    return TestCerts(cert_path=cert_path, key_path=key_path)
