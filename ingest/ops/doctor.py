"""`ingest doctor`: check configuration, API auth, IMAP, output and state store.

Each check is independent and returns a pass/fail line. No export is requested, no
mail folder created, no mail moved; only a probe file is written (and removed) in the
output root.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest.archive.s3 import S3Storage
from ingest.archive.storage import storage_for
from ingest.errors import IngestError
from ingest.mail.authresults import topmost_of_ours
from ingest.mail.folders import check_folder_settings, configured_targets
from ingest.mail.mailbox import Mailbox, selectable
from ingest.mail.recipients import account_addresses
from ingest.mail.senders import raw_header_values
from ingest.request.client import Outcome, classify_answer, client_from
from ingest.settings import Settings, transport_warnings
from ingest.state.store import Store

#: How many of the latest emails from allowed senders the authentication check reads.
RECENT_MAIL = 5


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    ok: bool
    detail: str
    warning: bool = False  # passes, but a person should know (shown as "warn")


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order a person would fix them."""
    return [
        check_state(settings),
        check_audit_key(settings),
        check_output(settings),
        check_temp(settings),
        check_transport(settings),
        check_api(settings),
        check_account(settings),
        *check_imap(settings),
        check_sender_authentication(settings),
    ]


def check_transport(settings: Settings) -> Check:
    """A warning (not a failure) for secrets or reports that would cross a network in
    clear text: an http:// API or token URL, IMAP security=none."""
    warnings = transport_warnings(settings)
    if warnings:
        return Check("transport security", True, "; ".join(warnings), warning=True)
    return Check(
        "transport security", True, "TLS for the API, the token endpoint and IMAP (or loopback only)"
    )


def check_sender_authentication(settings: Settings) -> Check:
    """Without require_authentication only the From header is checked, and anybody can
    write that: a forged report from the vendor's address is archived like a real one.
    With it, a wrong authserv-id silently ignores every report: recent mail from the
    allowed senders is looked at for a header of ours. Warnings, not failures."""
    imap = settings.imap
    name = "sender authentication"
    if not imap.require_authentication:
        return Check(
            name,
            True,
            "OFF: only the From header is checked, which anyone can forge; set "
            "INGEST_IMAP__REQUIRE_AUTHENTICATION=true and INGEST_IMAP__AUTHSERV_ID to your "
            "receiving server's authserv-id",
            warning=True,
        )
    authserv_id = imap.authserv_id or ""

    def look() -> Check:
        with Mailbox(imap) as box:
            box.select()
            uids: set[int] = set()
            for sender in imap.allowed_senders:
                uids.update(box.client.search(["FROM", sender.lstrip("@")]))
            # One small FETCH each: a range over the recent ones could span a busy folder.
            screened = {
                uid: item
                for uid in sorted(uids)[-RECENT_MAIL:]
                for item in box.fetch_screening([uid]).values()
            }
        if not screened:
            return Check(name, True, f"required ({authserv_id}); no mail from allowed senders to check yet")
        ours = sum(
            1
            for item in screened.values()
            if topmost_of_ours(
                raw_header_values(
                    email.message_from_bytes(item.header, policy=email.policy.default),
                    "Authentication-Results",
                ),
                authserv_id,
            )
            is not None
        )
        if not ours:
            return Check(
                name,
                True,
                f"required, but none of the last {len(screened)} emails from allowed "
                f"senders carries Authentication-Results from {authserv_id}: every report "
                "would be ignored; check INGEST_IMAP__AUTHSERV_ID",
                warning=True,
            )
        return Check(
            name,
            True,
            f"required: {ours} of the last {len(screened)} emails from allowed "
            f"senders carry Authentication-Results from {authserv_id}",
        )

    try:
        return look()
    except IngestError as err:  # the IMAP checks above already say what is wrong
        return Check(name, True, f"required ({authserv_id}); recent mail not checked: {err}", warning=True)


def _guard(name: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except IngestError as err:
        hint = f" ({err.hint})" if err.hint else ""
        return Check(name, False, f"{err}{hint}")


def check_state(settings: Settings) -> Check:
    path = Path(settings.state.path)
    if not path.exists():
        parent = next((p for p in path.absolute().parents if p.exists()), Path("/"))
        ok = os.access(parent, os.W_OK)
        return Check(
            "state store",
            ok,
            f"{path} will be created"
            if ok
            else f"{path} cannot be created: {parent} is not writable (INGEST_STATE__PATH)",
        )

    def run() -> Check:
        with Store.open(settings.state.path) as store:
            result = store.quick_check()
            windows = len(store.windows())
        if result != "ok":
            return Check("state store", False, f"{settings.state.path}: {result}")
        return Check("state store", True, f"{settings.state.path}: ok, {windows} window(s)")

    try:
        return _guard("state store", run)
    except sqlite3.Error as err:
        return Check("state store", False, f"{settings.state.path}: {err}")


def check_audit_key(settings: Settings) -> Check:
    """The audit key: a valid setting, or a key file outside the archive root and readable
    by its owner only (a warning otherwise: whoever reads it can re-identify erased people)."""
    from ingest.ops.auditkey import checked_key_path, setting_salt, warn_if_readable

    def run() -> Check:
        if setting_salt(settings) is not None:
            return Check("audit key", True, "INGEST_AUDIT__SALT")
        path = checked_key_path(settings)
        if not path.exists():
            return Check("audit key", True, f"{path} (made by the first erasure)")
        warning = warn_if_readable(path)
        return Check("audit key", True, warning or f"{path}: mode 600", warning=warning is not None)

    return _guard("audit key", run)


def check_output(settings: Settings) -> Check:
    """The archive root can be written: a probe file (local) or a bucket listing (S3:
    write-once objects cannot be taken back, so nothing is written there)."""
    if settings.output.root.startswith("s3://"):

        def s3() -> Check:
            storage = storage_for(settings)
            assert isinstance(storage, S3Storage)  # an s3:// root is always one
            storage.check_bucket()
            staging = _probe(Path(storage.staging))
            if staging:
                return Check("output", False, f"{staging} (INGEST_OUTPUT__STAGING_DIR)")
            return Check(
                "output", True, f"{storage.describe()} is listable; staging {storage.staging} is writable"
            )

        return _guard("output", s3)
    root = Path(settings.output.root)
    problem = _probe(root)
    if problem:
        return Check("output", False, f"{problem} (INGEST_OUTPUT__ROOT)")
    return Check("output", True, f"{root.resolve()} is writable")


def check_temp(settings: Settings) -> Check:
    """The temporary folder is writable and has room for the largest email the settings
    allow: its parts fetched to disk (up to INGEST_IMAP__MAX_MESSAGE_BYTES) plus its
    attachments inflated (up to INGEST_OUTPUT__MAX_INFLATED_BYTES). In Kubernetes the
    emptyDir's sizeLimit is not visible here: keep it at least this large too."""
    folder = Path(settings.output.temp_dir or tempfile.gettempdir())
    need = settings.imap.max_message_bytes + settings.output.max_inflated_bytes
    problem = _probe(folder)
    if problem:
        return Check("temp space", False, f"{problem} (INGEST_OUTPUT__TEMP_DIR)")
    free = shutil.disk_usage(folder).free
    detail = f"{folder}: {free / 2**20:,.0f} MiB free, one email may need {need / 2**20:,.0f} MiB"
    if free < need:
        return Check(
            "temp space",
            False,
            f"{detail} (INGEST_OUTPUT__TEMP_DIR, INGEST_IMAP__MAX_MESSAGE_BYTES, "
            "INGEST_OUTPUT__MAX_INFLATED_BYTES)",
        )
    return Check("temp space", True, detail)


def _probe(folder: Path) -> str | None:
    """None when a file can be created, fsynced and removed in ``folder``; else why not."""
    probe = folder / f".doctor-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        fd = os.open(probe, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as err:
        return f"{folder} is not writable: {err.strerror}"
    return None


def check_api(settings: Settings) -> Check:
    def run() -> Check:
        c = settings.certainly
        client = client_from(c)
        # A one-day GET: 401/403 means the token is refused; anything else means it was accepted.
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        bot = c.bots[0] if c.bots else "00000000-0000-0000-0000-000000000000"
        status, body = client.probe(bot, yesterday, yesterday, c.report_id)
        answer = classify_answer(status, body)
        if status == 0:
            return Check("certainly API", False, f"{client.url}: {body}")
        if answer.outcome is Outcome.TOKEN_REJECTED:
            return Check(
                "certainly API",
                False,
                f"token rejected ({status}: {answer.message}) (INGEST_CERTAINLY__TOKEN)",
            )
        if status == 404:
            return Check("certainly API", False, f"{client.url} not found (INGEST_CERTAINLY__REPORT_PATH)")
        return Check("certainly API", True, f"{client.url}: token accepted (HTTP {status})")

    return _guard("certainly API", run)


def check_imap(settings: Settings) -> list[Check]:
    imap = settings.imap
    checks: list[Check] = []
    if not imap.allowed_senders:
        checks.append(
            Check(
                "allowed senders",
                False,
                "INGEST_IMAP__ALLOWED_SENDERS is empty: nothing would ever be ingested",
            )
        )
    else:
        checks.append(Check("allowed senders", True, ", ".join(imap.allowed_senders)))
    box = Mailbox(imap)
    try:
        box.connect()
    except IngestError as err:
        return [*checks, Check("imap login", False, f"{err}" + (f" ({err.hint})" if err.hint else ""))]
    try:
        checks.append(
            Check(
                "imap login", True, f"{imap.username} on {imap.host}:{imap.effective_port} ({imap.security})"
            )
        )
        checks.append(_guard("imap folder", lambda: _folder_check(box)))
        caps = {c.decode() if isinstance(c, bytes) else c for c in box.client.capabilities()}
        wanted = ["IDLE", "MOVE", "UIDPLUS"]
        missing = [c for c in wanted if c not in caps]
        checks.append(
            Check(
                "imap capabilities",
                "UIDPLUS" in caps or "MOVE" in caps,
                "has "
                + ", ".join(c for c in wanted if c in caps)
                + (f"; missing {', '.join(missing)}" if missing else ""),
            )
        )
        checks.append(
            _guard("imap namespace", lambda: Check("imap namespace", True, box.layout().describe()))
        )
        checks.append(_guard("imap folders", lambda: _target_folders_check(box)))
    finally:
        box.close()
    return checks


def _target_folders_check(box: Mailbox) -> Check:
    """The exact server names of the processed/failed/rejected folders, whether each
    exists or may be created there, and that none is a special-use folder."""
    check_folder_settings(box.settings)  # unfit or special-use names: ConfigError, shown as failing
    box.check_folders()
    layout = box.layout()
    lines, fine = [], True
    for setting, name in configured_targets(box.settings):
        server_name = layout.server_name(name)
        attributes = box.folder_attributes(server_name)
        if selectable(attributes):
            state, ok = _insertable(box, server_name)
        else:
            state, ok = _creatable(box, server_name)
            if attributes is not None:  # listed, \\Noselect: a parent only; the job CREATEs it
                state = f"a parent only (\\Noselect), {state} if the server allows (mbox does not)"
        fine = fine and ok
        lines.append(f"{setting.removesuffix('_folder')} {server_name!r} ({state})")
    return Check("imap folders", fine, "; ".join(lines))


def _insertable(box: Mailbox, server_name: str) -> tuple[str, bool]:
    """Whether mail may be moved into an existing folder: on a server with ACL (RFC 4314)
    MOVE and COPY need the insert right ('i') on it."""
    if "ACL" not in box.capabilities():
        return "exists", True
    rights = box.my_rights(server_name)
    if "i" in rights:
        return f"exists, rights {rights!r}", True
    return f"exists, but no insert right ('i'): mail cannot be moved into it (rights {rights!r})", False


def _creatable(box: Mailbox, server_name: str) -> tuple[str, bool]:
    """Whether the job may create a missing folder (doctor creates nothing): on a server
    with ACL (RFC 4314) the nearest existing parent must grant 'k' (create; 'c' in RFC
    2086); elsewhere a folder inside the personal namespace is the user's to create."""
    if "ACL" not in box.capabilities():
        return "will be created", True
    # A top-level folder is created beside INBOX: Cyrus asks for the right on INBOX then.
    parent = _existing_parent(box, server_name, box.layout().separator) or "INBOX"
    rights = box.my_rights(parent)
    if "k" in rights or "c" in rights:
        return f"will be created (rights {rights!r} on {parent!r})", True
    return f"cannot be created: no create right on {parent!r} (rights {rights!r})", False


def _existing_parent(box: Mailbox, server_name: str, separator: str) -> str | None:
    levels = server_name.split(separator) if separator else [server_name]
    for depth in range(len(levels) - 1, 0, -1):
        parent = separator.join(levels[:depth])
        if parent and box.folder_exists(parent):
            return parent
    return None


def _folder_check(box: Mailbox) -> Check:
    box.select()
    count = 0
    for sender in box.settings.allowed_senders:
        count += box.count(["FROM", sender.lstrip("@")])  # bounded UID ranges: any folder size
    return Check("imap folder", True, f"{box.folder}: {count} message(s) from allowed senders")


def check_account(settings: Settings) -> Check:
    """The token owner's address(es) a report must be sent to (To), and where they
    come from; a warning when they cannot be known: another account's genuine report,
    forwarded here, could then not be told from ours."""
    name = "account address"
    found = account_addresses(settings)
    if not found:
        return Check(
            name,
            True,
            "UNKNOWN: INGEST_CERTAINLY__ACCOUNT_EMAIL is not set and INGEST_IMAP__USERNAME is not an "
            "address, so a report's To is not checked: set it to the address your Certainly "
            "account (the token's owner) receives exports at",
            warning=True,
        )
    source = (
        "INGEST_CERTAINLY__ACCOUNT_EMAIL"
        if settings.certainly.account_email
        else "INGEST_IMAP__USERNAME; set INGEST_CERTAINLY__ACCOUNT_EMAIL if the token's owner is another"
    )
    return Check(name, True, f"{', '.join(found)} (from {source}); reports sent elsewhere are set aside")
