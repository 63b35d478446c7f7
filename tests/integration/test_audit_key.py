"""The audit key never lives under the archive root: made beside the state store on the first
erasure (mode 0600) or given as a secret setting; a reader of the archive alone finds no key
to test guesses of ids with, the key's holder proves an erasure with `ingest audit prove`;
an old archive's salt moves out of it (`ingest migrate`, or the next erasure) and its old
records stay provable."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from ingest.archive import audit
from ingest.archive.storage import LocalStorage
from ingest.ops.doctor import check_audit_key
from ingest.settings import Settings
from tests.support.forget import OTHER, SUBJECT, build_archive, files_holding
from tests.support.job import run_ingest

pytestmark = pytest.mark.integration

#: The salt an archive made before kept at audit/salt (64 hex characters, as it was made).
OLD_SALT = "5a" * 32


def _env(work: Path, **extra: str) -> dict[str, str]:
    return {
        "INGEST_OUTPUT__ROOT": str(work / "archive"),
        "INGEST_STATE__PATH": str(work / "state" / "state.sqlite"),
        "INGEST_AUDIT__ACTOR": "dpo@example.com",
        **extra,
    }


def _erase(work: Path, env: dict[str, str], who: str) -> None:
    done = run_ingest("erase", "--botuser", who, "--reason", _reason(who), "--apply", env=env, cwd=work)
    assert done.returncode == 0, done.stderr


def _reason(who: str) -> str:
    """The request's reference, as a DPO writes it: never the id itself."""
    return "DSR-17" if who == SUBJECT else "DSR-18"


def _secrets(key_file: Path) -> list[str]:
    return [
        line.split()[1]
        for line in key_file.read_text().splitlines()
        if line.split()[:1] in (["key"], ["legacy"])
    ]


def test_erase_with_no_setting_keeps_its_key_beside_the_state_store_only(workdir: Path) -> None:
    env = _env(workdir)
    (workdir / "state").mkdir()
    build_archive(workdir, env)

    _erase(workdir, env, SUBJECT)

    key_file = workdir / "state" / "state.sqlite.audit-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    (secret,) = _secrets(key_file)
    assert len(bytes.fromhex(secret)) == 32
    archive = workdir / "archive"
    assert not (archive / "audit" / "salt").exists()
    assert files_holding([archive], [secret]) == []  # no byte of the key anywhere in the archive
    (record,) = [r for r in audit.records(LocalStorage(archive)) if r.entry.kind == "erase"]
    # The log holds the id's HMAC under that key: not the id, not a plain hash of it.
    assert record.entry.subject_sha256 == [
        hmac.new(secret.encode(), SUBJECT.encode(), hashlib.sha256).hexdigest()
    ]
    assert hashlib.sha256(SUBJECT.encode()).hexdigest() not in record.entry.model_dump_json()
    # Nor anywhere else in the archive (the erasure's record, manifests): no unkeyed hash to test guesses on.
    assert files_holding([archive], [hashlib.sha256(SUBJECT.encode()).hexdigest(), SUBJECT]) == []

    proved = run_ingest("audit", "prove", "--botuser", SUBJECT, env=env, cwd=workdir)
    assert proved.returncode == 0, proved.stderr
    assert record.key in proved.stdout and "erase" in proved.stdout and _reason(SUBJECT) in proved.stdout
    other = run_ingest("audit", "prove", "--botuser", OTHER, env=env, cwd=workdir)
    assert other.returncode == 1 and "no audit record names this bot user" in other.stdout
    before = key_file.read_bytes()
    _erase(workdir, env, OTHER)
    assert key_file.read_bytes() == before  # made once, never replaced


def test_the_key_may_be_a_secret_setting_and_then_no_key_file_is_made(workdir: Path) -> None:
    env = _env(workdir, INGEST_AUDIT__SALT="a-long-secret-from-the-vault-0123456789")
    (workdir / "state").mkdir()
    build_archive(workdir, env)

    _erase(workdir, env, SUBJECT)
    proved = run_ingest("audit", "prove", "--botuser", SUBJECT, env=env, cwd=workdir)

    assert not (workdir / "state" / "state.sqlite.audit-key").exists()
    assert files_holding([workdir / "archive"], ["a-long-secret-from-the-vault"]) == []
    assert proved.returncode == 0 and "INGEST_AUDIT__SALT" in proved.stdout
    assert "a-long-secret" not in proved.stdout + proved.stderr


def test_an_old_archives_salt_moves_out_and_its_records_stay_provable(workdir: Path) -> None:
    env = _env(workdir)
    (workdir / "state").mkdir()
    build_archive(workdir, env)
    archive = LocalStorage(workdir / "archive")
    # As an erasure made before this left it: the salt beside the hash it made.
    (workdir / "archive" / "audit").mkdir(exist_ok=True)
    (workdir / "archive" / "audit" / "salt").write_text(OLD_SALT)
    old_hash = hmac.new(OLD_SALT.encode(), OTHER.encode(), hashlib.sha256).hexdigest()
    audit.append(archive, {"kind": "erase", "subject_sha256": [old_hash]}, actor="dpo", reason="DSR old")

    flagged = run_ingest("verify", env=env, cwd=workdir)
    migrated = run_ingest("migrate", env=env, cwd=workdir)

    assert "audit/salt: the audit key sits in the archive" in flagged.stdout
    assert "audit/salt" not in migrated.stdout, migrated.stdout
    assert not (workdir / "archive" / "audit" / "salt").exists()
    key_file = workdir / "state" / "state.sqlite.audit-key"
    current, legacy = _secrets(key_file)
    assert legacy == OLD_SALT and current != OLD_SALT
    assert files_holding([workdir / "archive"], [OLD_SALT, current]) == []

    _erase(workdir, env, SUBJECT)  # a new record: the fresh key, which no old copy of the archive had

    old_proof = run_ingest("audit", "prove", "--botuser", OTHER, env=env, cwd=workdir)
    new_proof = run_ingest("audit", "prove", "--botuser", SUBJECT, env=env, cwd=workdir)
    assert old_proof.returncode == 0 and "DSR old" in old_proof.stdout and "(legacy)" in old_proof.stdout
    assert new_proof.returncode == 0 and _reason(SUBJECT) in new_proof.stdout and "(key)" in new_proof.stdout
    logged = json.dumps([r.entry.model_dump(mode="json") for r in audit.records(archive)])
    assert hmac.new(OLD_SALT.encode(), SUBJECT.encode(), hashlib.sha256).hexdigest() not in logged


def test_the_next_erasure_moves_an_old_salt_out_too(workdir: Path) -> None:
    env = _env(workdir)
    (workdir / "state").mkdir()
    build_archive(workdir, env)
    (workdir / "archive" / "audit").mkdir(exist_ok=True)
    (workdir / "archive" / "audit" / "salt").write_text(OLD_SALT)

    _erase(workdir, env, SUBJECT)

    assert not (workdir / "archive" / "audit" / "salt").exists()
    assert OLD_SALT in _secrets(workdir / "state" / "state.sqlite.audit-key")
    assert run_ingest("audit", "prove", "--botuser", SUBJECT, env=env, cwd=workdir).returncode == 0


def test_a_damaged_key_file_is_one_line_that_never_shows_it(workdir: Path) -> None:
    env = _env(workdir)
    (workdir / "state").mkdir()
    build_archive(workdir, env)
    key_file = workdir / "state" / "state.sqlite.audit-key"
    key_file.write_text("kee 00112233-not-a-key-line\n")

    refused = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply", env=env, cwd=workdir)

    assert refused.returncode == 2
    assert "not an audit key file" in refused.stderr and "00112233" not in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("setting", "said"),
    [("  ", "INGEST_AUDIT__SALT is empty"), (" short-secret \n", "INGEST_AUDIT__SALT is 12 characters")],
)
def test_an_empty_or_short_key_setting_is_exit_2_naming_it(workdir: Path, setting: str, said: str) -> None:
    env = _env(workdir, INGEST_AUDIT__SALT=setting)
    (workdir / "state").mkdir()
    build_archive(workdir, env)

    refused = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply", env=env, cwd=workdir)

    assert refused.returncode == 2
    assert said in refused.stderr and "at least 16" in refused.stderr and "Traceback" not in refused.stderr
    assert "short-secret" not in refused.stderr


def test_surrounding_whitespace_of_the_key_setting_does_not_change_the_hashes(workdir: Path) -> None:
    secret = "a-long-secret-from-the-vault-0123456789"
    env = _env(workdir, INGEST_AUDIT__SALT=f"  {secret}\n")
    (workdir / "state").mkdir()
    build_archive(workdir, env)

    _erase(workdir, env, SUBJECT)
    proved = run_ingest(
        "audit", "prove", "--botuser", SUBJECT, env={**env, "INGEST_AUDIT__SALT": secret}, cwd=workdir
    )

    assert proved.returncode == 0, proved.stdout + proved.stderr


def test_a_state_store_under_the_archive_root_keeps_no_key_there_and_verify_names_one(workdir: Path) -> None:
    env = _env(workdir)
    (workdir / "state").mkdir()
    build_archive(workdir, env)
    inside = {**env, "INGEST_STATE__PATH": str(workdir / "archive" / "state.sqlite")}

    refused = run_ingest("erase", "--botuser", SUBJECT, "--reason", "DSR", "--apply", env=inside, cwd=workdir)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "INGEST_STATE__PATH" in refused.stderr and "INGEST_AUDIT__SALT" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert list((workdir / "archive").rglob("*.audit-key")) == []
    assert files_holding([workdir / "archive"], [SUBJECT]) != []  # nothing was erased without a key

    (workdir / "archive" / "old.sqlite.audit-key").write_text("key " + "ab" * 32 + "\n")  # as one left it
    flagged = run_ingest("verify", env=env, cwd=workdir)
    assert flagged.returncode == 1
    assert "old.sqlite.audit-key: an audit key file in the archive" in flagged.stdout


def test_a_lost_key_file_is_never_silently_replaced(workdir: Path) -> None:
    env = _env(workdir)
    (workdir / "state").mkdir()
    build_archive(workdir, env)
    _erase(workdir, env, SUBJECT)
    key_file = workdir / "state" / "state.sqlite.audit-key"
    key_file.unlink()  # lost: a state store restored without it

    refused = run_ingest("erase", "--botuser", OTHER, "--reason", "DSR-18", "--apply", env=env, cwd=workdir)
    no_key = run_ingest("audit", "prove", "--botuser", SUBJECT, env=env, cwd=workdir)

    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) <= 2, refused.stderr
    assert "no audit key file, but 1 audit record(s)" in refused.stderr
    assert "INGEST_AUDIT__NEW_KEY" in refused.stderr
    assert not key_file.exists()
    assert no_key.returncode == 2 and "1 record(s) are hashed under keys you do not hold" in no_key.stderr

    _erase(workdir, {**env, "INGEST_AUDIT__NEW_KEY": "true"}, OTHER)  # a person chose a new key
    proved = run_ingest("audit", "prove", "--botuser", SUBJECT, env=env, cwd=workdir)

    assert proved.returncode == 1
    assert "1 records are hashed under keys you do not hold" in proved.stdout
    assert run_ingest("audit", "prove", "--botuser", OTHER, env=env, cwd=workdir).returncode == 0


def test_a_key_file_others_can_read_is_warned_of_by_erase_and_doctor(workdir: Path) -> None:
    env = _env(workdir)
    (workdir / "state").mkdir()
    build_archive(workdir, env)
    _erase(workdir, env, SUBJECT)
    key_file = workdir / "state" / "state.sqlite.audit-key"
    key_file.chmod(0o640)

    erased = run_ingest("erase", "--botuser", OTHER, "--reason", "DSR-18", "--apply", env=env, cwd=workdir)
    settings = Settings(
        state={"path": str(workdir / "state" / "state.sqlite")}, output={"root": str(workdir / "archive")}
    )
    checked = check_audit_key(settings)

    assert erased.returncode == 0, erased.stderr
    assert "readable by others (mode 640): chmod 600 it" in erased.stderr
    assert checked.ok and checked.warning and "chmod 600" in checked.detail
