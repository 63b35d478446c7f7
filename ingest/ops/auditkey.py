"""The audit key: the secret that hashes bot user ids in the audit log, kept out of the archive.

An erasure's audit record says ``subject_sha256``: HMAC-SHA256 of the id under this key,
never the id. Bot user ids are short (a 7-digit id is ten million guesses), so whoever holds
the key can test guesses against the hashes: the key must never be where the hashes are.
It is, in order:

1. ``INGEST_AUDIT__SALT`` (a secret setting, like the signing key), when set;
2. else the key file beside the state store, ``<state path>.audit-key``: made on first use
   (32 random bytes, hex; mode 0600; never overwritten), and backed up with the state store.

The key file's first ``key`` line is the key in use; ``legacy`` lines are older keys, kept
only so old records stay checkable: an archive from before this (its salt at
``audit/salt``, readable by anyone who reads the archive) has that salt moved here and
removed from the archive, by ``ingest migrate`` or on the first erasure. New records then
use a fresh key: a copy of the archive taken before cannot re-identify them either.

``ingest audit prove --botuser ID`` is the holder's proof: the audit records whose hash is
this id's under one of the keys held.

Example::

    key = audit_key(settings, storage)                 # for a new record
    found = prove(settings, storage, "4242")           # [(record key, key label)]
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ingest.archive import audit
from ingest.archive.layout import salt_key
from ingest.archive.storage import Storage
from ingest.errors import ConfigError, OutputError
from ingest.settings import Settings

log = logging.getLogger(__name__)

SUFFIX = ".audit-key"
_HEADER = (
    "# certainly-ingest audit key: HMAC-SHA256 key of the bot user ids in the audit log.\n"
    "# Secret: whoever holds it and the archive can re-identify erased people. Back it up\n"
    "# with the state store; without it, `ingest audit prove` cannot check old records.\n"
)


@dataclass(frozen=True)
class Key:
    """One key held: where it comes from (for people) and its secret text."""

    label: str
    secret: str


def key_path(settings: Settings) -> Path:
    """``<state path>.audit-key``: beside the state store, never under the archive root."""
    state = Path(settings.state.path)
    return state.with_name(state.name + SUFFIX)


#: Shorter, a setting's key could be guessed like the ids it hides.
MIN_SALT = 16


def audit_key(settings: Settings, storage: Storage) -> str:
    """The key new audit records hash ids with: the setting's, else the key file's (made on
    first use, unless the audit log already holds hashes under a key no longer held: then
    refused, so a lost key file is noticed, not silently replaced). An archive's old salt
    is moved out of the archive first."""
    move_archive_salt(settings, storage)
    secret = setting_salt(settings)
    if secret is not None:
        return secret
    path = checked_key_path(settings)
    if not path.exists() and not settings.audit.new_key:
        orphaned = _hashed_records(audit.records(storage))
        if orphaned:
            raise ConfigError(
                f"{path}: no audit key file, but {orphaned} audit record(s) hash erased people under "
                "a key: a new key would leave them unprovable",
                hint="restore the key file from the state store's backup (or set INGEST_AUDIT__SALT "
                "to the key), or set INGEST_AUDIT__NEW_KEY=true to start a new key",
            )
    key = _current(_read_or_make(path))
    warn_if_readable(path)
    return key


def setting_salt(settings: Settings) -> str | None:
    """``INGEST_AUDIT__SALT`` without surrounding whitespace (as a key file's lines are
    read), or None when unset; one shorter than :data:`MIN_SALT` is refused."""
    if settings.audit.salt is None:
        return None
    secret = settings.audit.salt.get_secret_value().strip()
    if len(secret) < MIN_SALT:
        raise ConfigError(
            f"INGEST_AUDIT__SALT is {'empty' if not secret else f'{len(secret)} characters'}: "
            f"at least {MIN_SALT} (a short key is guessed like the ids it hides)",
            hint="unset it (a key file is made beside the state store) or give 32+ random "
            "characters, e.g. `openssl rand -hex 32`",
        )
    return secret


def checked_key_path(settings: Settings) -> Path:
    """The key file's path, refused when it would lie under a local archive root (a state
    store kept inside the archive): whoever reads the archive would hold the key."""
    path = key_path(settings)
    root = settings.output.root
    if root.startswith("s3://"):
        return path
    inside = Path(root).expanduser().resolve()
    where = path.expanduser().resolve()
    if where == inside or inside in where.parents:
        raise ConfigError(
            f"{path}: the audit key file would be under the archive root {root}, where whoever "
            "reads the archive could re-identify erased people (INGEST_STATE__PATH is inside "
            "INGEST_OUTPUT__ROOT)",
            hint="keep INGEST_STATE__PATH outside the archive root, or set INGEST_AUDIT__SALT",
        )
    return path


def warn_if_readable(path: Path) -> str | None:
    """A warning (logged, and returned for ``ingest doctor``) when the key file is readable
    by its group or others; None otherwise."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if not mode & 0o077:
        return None
    warning = f"{path}: the audit key is readable by others (mode {mode & 0o777:o}): chmod 600 it"
    log.warning("%s", warning)
    return warning


def _hashed_records(log: list[audit.AuditRecord]) -> int:
    return sum(1 for r in log if r.entry.subject_sha256)


def held_keys(settings: Settings, storage: Storage) -> list[Key]:
    """Every key this operator holds, newest first: the setting, the key file's current key
    and its legacy keys (an archive salt not yet moved counts too)."""
    found = []
    secret = setting_salt(settings)
    if secret is not None:
        found.append(Key("INGEST_AUDIT__SALT", secret))
    path = checked_key_path(settings)
    if path.exists():
        for kind, line in _lines(path):
            found.append(Key(f"{path} ({kind})", line))
    legacy = _archive_salt(storage)
    if legacy is not None:
        found.append(Key(f"{storage.describe(salt_key())} (not yet moved: run `ingest migrate`)", legacy))
    return found


def unprovable(settings: Settings, storage: Storage) -> int:
    """How many audit records hash subjects under a key not held (their ``key_id`` is none
    of the held keys'; records made before ``key_id`` was written cannot tell, and count
    only when no key is held at all)."""
    keys = held_keys(settings, storage)
    ids = {audit.key_id(k.secret) for k in keys}
    count = 0
    for record in audit.records(storage):
        if not _hashed_records([record]):
            continue
        named = record.entry.key_id
        if (named is not None and named not in ids) or (named is None and not keys):
            count += 1
    return count


def prove(settings: Settings, storage: Storage, subject_id: str) -> list[tuple[audit.AuditRecord, Key]]:
    """The audit records that name this bot user (their ``subject_sha256`` holds the id's
    HMAC under a key held), with the key that matched."""
    if not subject_id.strip():
        raise ConfigError("name the subject: --botuser ID")
    keys = held_keys(settings, storage)
    if not keys:
        hashed = _hashed_records(audit.records(storage))
        raise ConfigError(
            f"no audit key held: neither INGEST_AUDIT__SALT nor {key_path(settings)}"
            + (f"; {hashed} record(s) are hashed under keys you do not hold" if hashed else ""),
            hint="the key is made by the first erasure; restore it from the state store's backup",
        )
    found = []
    for record in audit.records(storage):
        hashes = record.entry.subject_sha256
        if hashes is None:
            continue
        for key in keys:
            mine = hmac.new(key.secret.encode(), subject_id.encode(), hashlib.sha256).hexdigest()
            if any(isinstance(h, str) and hmac.compare_digest(h, mine) for h in hashes):
                found.append((record, key))
                break
    return found


def move_archive_salt(settings: Settings, storage: Storage) -> bool:
    """Move an archive's ``audit/salt`` (where every archive reader could read it) into the
    key file as a legacy key, then remove it from the archive. True when one was moved.
    A salt under an Object Lock retention that cannot be removed yet is kept in both
    places, said in a warning; ``ingest verify`` names it until it is gone."""
    legacy = _archive_salt(storage)
    if legacy is None:
        return False
    path = checked_key_path(settings)
    _read_or_make(path)
    if all(secret != legacy for _, secret in _lines(path)):
        try:
            with path.open("a", encoding="utf-8") as keys:
                keys.write(f"legacy {legacy}\n")
                keys.flush()
                os.fsync(keys.fileno())
        except OSError as err:  # the salt stays in the archive: nothing is lost
            raise ConfigError(
                f"{path}: cannot add the archive's old salt to it ({err.strerror or err})"
            ) from None
    try:
        storage.delete(salt_key())
    except OutputError as err:
        log.warning("the audit salt is kept in %s and also stays in the archive: %s", path, err)
        return False
    log.warning("moved the archive's audit salt to %s (it no longer sits beside the hashes)", path)
    return True


def _archive_salt(storage: Storage) -> str | None:
    if not storage.exists(salt_key()):
        return None
    return storage.read_bytes(salt_key()).decode("utf-8", errors="replace").strip() or None


def _read_or_make(path: Path) -> list[tuple[str, str]]:
    """The key file's lines, the file made first (0600, never overwritten) when absent."""
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"{path.parent}: cannot make the audit key's folder ({err.strerror or err})"
            ) from None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _lines(path)  # another process made it first
        except OSError as err:
            raise ConfigError(
                f"{path}: cannot make the audit key there ({err.strerror or err})",
                hint="it lives beside INGEST_STATE__PATH: a writable volume, or set INGEST_AUDIT__SALT",
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as keys:
            keys.write(f"{_HEADER}key {secrets.token_hex(32)}\n")
            keys.flush()
            os.fsync(keys.fileno())
        os.chmod(path, 0o600)  # whatever the umask
    return _lines(path)


def _lines(path: Path) -> list[tuple[str, str]]:
    """``(kind, secret)`` of each ``key`` or ``legacy`` line; a key file that is not one is
    a configuration error naming the file (never its content)."""
    found = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the audit key ({type(err).__name__})") from None
    for line in text.splitlines():
        kind, _, secret = line.strip().partition(" ")
        if kind in ("key", "legacy") and secret.strip():
            found.append((kind, secret.strip()))
    if not any(kind == "key" for kind, _ in found):
        raise ConfigError(f"{path}: no 'key' line: not an audit key file", hint="restore it from a backup")
    return found


def _current(lines: list[tuple[str, str]]) -> str:
    return next(secret for kind, secret in lines if kind == "key")
