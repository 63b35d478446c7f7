"""A private, throwaway Cyrus IMAP 3.6 server: a second, independent IMAP implementation
beside Dovecot, started on a free loopback port and stopped again.

Installing Debian's ``cyrus-imapd`` removes ``dovecot-imapd`` (both provide and conflict
on ``imap-server``), so the tests use ``cyrus-common`` and ``sasl2-bin`` (installed with
``--no-install-recommends``: cyrus-common recommends cyrus-imapd) and an ``imapd``
binary extracted from the downloaded ``cyrus-imapd`` package, which ``.ci/run`` puts in
:data:`CYRUS_ROOT` (see ``../shared/testing.md``).

Two namespaces, as servers in the wild have them:

* ``altnamespace=True`` (Cyrus 3.6's default, and ``unixhierarchysep``): NAMESPACE answers
  ``(("" "/"))``; folders may sit at the top level.
* ``altnamespace=False`` (with ``unixhierarchysep: no``): personal folders live under
  ``INBOX.`` with ``.`` as separator, as Courier and older Cyrus have them.

Logins are addresses (``owner@example.test``): ``virtdomains: userid`` splits them into
user and domain, and SASL's realm is the domain. The admin ``cyrus`` (realm: the
servername) creates each user's mailbox, which does not exist before.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

from tests.support.daemons import (
    COMMAND_TIMEOUT_S,
    HOST,
    PrivateDaemon,
    free_port,
    private_server,
    read_pid,
    require_server,
    stop_master,
    wait_for_greeting,
    wait_for_pid,
)
from tests.support.dovecot import DEFAULT_USERS

__all__ = ["CYRUS_ROOT", "Cyrus", "cyrus_available", "private_cyrus", "require_cyrus"]

#: Where ``.ci/run`` extracts the cyrus-imapd package (override: INGEST_TEST_CYRUS_ROOT).
CYRUS_ROOT = Path(os.environ.get("INGEST_TEST_CYRUS_ROOT", "/var/cache/certainly-ingest-tests/cyrus/root"))
_MASTER = Path("/usr/lib/cyrus/bin/master")
_SERVERNAME = "localhost"  # also the admin's SASL realm


def _imapd() -> Path:
    return CYRUS_ROOT / "usr/lib/cyrus/bin/imapd"


def cyrus_available() -> bool:
    """Whether Cyrus's master, SASL's tools and the extracted imapd are all here."""
    return _MASTER.exists() and _imapd().exists() and shutil.which("saslpasswd2") is not None


def require_cyrus() -> None:
    """Skip the calling test when Cyrus cannot run here; fail instead when ``CI=true``
    (``.ci/run`` installs it, so a missing Cyrus there is a broken build)."""
    require_server(
        None
        if cyrus_available()
        else f"Cyrus IMAP is not set up (cyrus-common, sasl2-bin and {_imapd()}: see .ci/run)",
        needs_root="a private Cyrus needs root (it runs as user cyrus)",
    )


class Cyrus(PrivateDaemon):
    """A private Cyrus rooted in ``workdir``; use as a context manager. ``owner_rights``
    replaces the rights a user always has on their own folders (Cyrus: ``lkxan``), so a
    test can take the create right away with an ACL."""

    def __init__(
        self,
        workdir: Path,
        users: Mapping[str, str] = DEFAULT_USERS,
        altnamespace: bool = True,
        owner_rights: str | None = None,
    ) -> None:
        for user in users:
            local = user.partition("@")[0]
            # A hierarchy separator in the local part would make the mailbox a sub-folder.
            if user.count("@") > 1 or not local or any(c in local for c in " \n\r/."):
                raise ValueError(f"user {user!r} cannot be a Cyrus login here")
        self._workdir = workdir.resolve()
        self._users = dict(users)
        self._altnamespace = altnamespace
        self._owner_rights = owner_rights
        self._admin_password = secrets.token_hex(12)
        self._port: int | None = None
        self._master_pid: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("Cyrus has not been started")
        return self._port

    @property
    def personal_prefix(self) -> str:
        """``""`` in the default namespace, ``INBOX.`` without altnamespace."""
        return "" if self._altnamespace else "INBOX."

    @property
    def separator(self) -> str:
        return "/" if self._altnamespace else "."

    @property
    def log_path(self) -> Path:
        return self._workdir / "cyrus.log"

    def start(self) -> None:
        """Write the configuration and SASL users, start ``master`` and create each user's
        mailbox; raises RuntimeError (after stopping what started) if it does not come up."""
        if self._master_pid is not None:
            raise RuntimeError("Cyrus is already running")
        self._port = free_port()
        try:
            self._write_files()
            self._launch()
            self._wait_for_greeting()
            self._create_mailboxes()
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            self.stop()
            raise RuntimeError(f"Cyrus failed to start: {error}") from None
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop master and every child (by session). Idempotent."""
        stop_master(self._master_pid or self._read_pid())
        self._master_pid = None

    def _write_files(self) -> None:
        d = self._workdir
        for sub in ("conf", "part", "sieve"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        namespace = "" if self._altnamespace else "altnamespace: no\nunixhierarchysep: no\n"
        if self._owner_rights is not None:  # what an owner may always do (default "lkxan")
            namespace += f"implicit_owner_rights: {self._owner_rights}\n"
        (d / "imapd.conf").write_text(
            f"configdirectory: {d}/conf\npartition-default: {d}/part\ndefaultpartition: default\n"
            f"sievedir: {d}/sieve\nadmins: cyrus\nservername: {_SERVERNAME}\n"
            f"sasl_pwcheck_method: auxprop\nsasl_auxprop_plugin: sasldb\nsasl_sasldb_path: {d}/sasldb2\n"
            "sasl_mech_list: PLAIN LOGIN\nallowplaintext: yes\nvirtdomains: userid\n"
            f"syslog_prefix: cyrus-test-{self._port}\n{namespace}",
            encoding="utf-8",
        )
        # Blocks span lines; the single service listens on loopback only.
        (d / "cyrus.conf").write_text(
            "START {\n"
            f'  recover cmd="ctl_cyrusdb -r -C {d}/imapd.conf"\n'
            "}\n"
            "SERVICES {\n"
            f'  imap cmd="{_imapd()} -C {d}/imapd.conf" listen="{HOST}:{self._port}" prefork=0\n'
            "}\n"
            "EVENTS {\n}\nDAEMON {\n}\n",
            encoding="utf-8",
        )
        self._sasl_user("cyrus", _SERVERNAME, self._admin_password)
        for user, password in self._users.items():
            local, _, domain = user.partition("@")
            self._sasl_user(local, domain or _SERVERNAME, password)
        subprocess.run(["chown", "-R", "cyrus:mail", str(d)], check=True, timeout=COMMAND_TIMEOUT_S)

    def _sasl_user(self, name: str, realm: str, password: str) -> None:
        subprocess.run(
            ["saslpasswd2", "-p", "-c", "-f", str(self._workdir / "sasldb2"), "-u", realm, name],
            input=password.encode(),
            check=True,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
        )

    def _launch(self) -> None:
        d = self._workdir
        with self.log_path.open("wb") as log:
            code = subprocess.run(
                [
                    str(_MASTER),
                    "-C",
                    f"{d}/imapd.conf",
                    "-M",
                    f"{d}/cyrus.conf",
                    "-p",
                    f"{d}/master.pid",
                    "-d",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            ).returncode
        if code != 0:
            raise RuntimeError(f"cyrus master exited {code}: {self.log_path.read_text(errors='replace')}")
        self._master_pid = wait_for_pid(d / "master.pid", 5.0, "cyrus master")

    def _read_pid(self) -> int | None:
        return read_pid(self._workdir / "master.pid")

    def _wait_for_greeting(self) -> None:
        wait_for_greeting(self.port, what="cyrus")

    @contextlib.contextmanager
    def admin(self) -> Iterator[IMAPClient]:
        """A session logged in as the admin ``cyrus`` (to create mailboxes, set ACLs)."""
        with IMAPClient(HOST, port=self.port, ssl=False, timeout=10) as client:
            client.login("cyrus", self._admin_password)
            yield client

    def user_mailbox(self, user: str) -> str:
        """The admin's name for a user's INBOX: ``user/NAME`` (``user.NAME`` with ``.``)."""
        return f"user{self.separator}{user}"

    def _create_mailboxes(self) -> None:
        """The admin creates each user's mailbox, which does not exist before."""
        with self.admin() as admin:
            for user in self._users:
                admin.create_folder(self.user_mailbox(user))


def private_cyrus(prefix: str = "ingest-cyrus-", **options: Any) -> contextlib.AbstractContextManager[Cyrus]:
    """A Cyrus in its own ``mkdtemp`` folder, removed afterwards (skips or fails via
    :func:`require_cyrus`); see :func:`tests.support.daemons.private_server`."""
    return private_server(Cyrus, require_cyrus, prefix, **options)
