"""Ed25519 keys and signatures for export bundles (``cryptography``).

Keys are PEM: the private key PKCS#8 unencrypted (mode 0600, never logged), the public
key SubjectPublicKeyInfo, so a recipient can check a signature with OpenSSL alone::

    openssl pkeyutl -verify -pubin -inkey signer.pub -rawin -in manifest.json -sigfile manifest.json.sig

Example::

    write_keypair(Path("export.key"))           # export.key (0600) and export.key.pub
    signature = sign(load_private_key(Path("export.key").read_bytes()), data)
    verify_signature(Path("export.key.pub").read_bytes(), data, signature)   # raises on a bad one
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ingest.errors import ConfigError


class BadSignature(Exception):
    """The signature does not match the data under that public key."""


def write_keypair(path: Path) -> Path:
    """A new private key at ``path`` (mode 0600, refused when it exists) and its public
    key at ``path.pub``. Returns the public key's path."""
    public = path.with_name(path.name + ".pub")
    for existing in (path, public):
        if existing.exists():
            raise ConfigError(f"{existing} exists: keys are never overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)  # whatever the umask
    public.write_bytes(public_pem(key))
    return public


def public_pem(key: Ed25519PrivateKey) -> bytes:
    """The public half of ``key``, as PEM."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; a ConfigError that never shows the key otherwise."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            "the signing key is not an unencrypted PEM private key (make one with `ingest keygen`)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the signing key is not an Ed25519 key (make one with `ingest keygen`)")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise ConfigError("the public key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("the public key is not an Ed25519 key")
    return key


def fingerprint(public: Ed25519PublicKey) -> str:
    """sha256 of the raw 32-byte public key, hex: names the key in a manifest."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``data``."""
    return key.sign(data)


def verify_signature(public_pem_bytes: bytes, data: bytes, signature: bytes) -> None:
    """Raise :class:`BadSignature` unless ``signature`` is ``data``'s under the key."""
    try:
        load_public_key(public_pem_bytes).verify(signature, data)
    except InvalidSignature:
        raise BadSignature("the signature does not match under this public key") from None
