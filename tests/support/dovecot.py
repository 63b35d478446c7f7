"""A private, throwaway Dovecot IMAP server for integration tests.

``Dovecot(workdir)`` writes its own config, starts ``dovecot -c <conf>`` on free loopback
ports and stops it again; nothing touches the system's Dovecot configuration. It needs
root (Dovecot's master must start as root and we ``chown`` the mail folder).

Permission traps this module handles, because each one fails in a confusing way:

* Dovecot's auth and imap processes run as user ``dovecot``, not root. pytest's
  ``tmp_path`` and ``mkdtemp`` create 0700 folders, so they cannot traverse the workdir:
  logins fail with "Temporary authentication failure" and the log says "missing +x
  perm". We therefore add r-x for group/other on the workdir and on every folder above
  it. We only ever *add* bits: a blanket ``chmod 755`` on ``/tmp`` would strip its
  sticky and world-writable bits and break the whole machine.
* Mail is stored as ``uid=dovecot`` (static userdb), so the mail folder is chowned to
  ``dovecot``; ``first_valid_uid = 1`` lets that system uid own mail at all.
* Dovecot creates unix sockets in ``base_dir`` (e.g. ``<base_dir>/login/imap-urlauth``),
  and socket paths are limited to ~108 bytes. pytest's tmp paths embed the test name and
  get long, so a long ``base_dir`` moves to a short ``/tmp/dv*`` folder of its own.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from tests.support.daemons import (
    COMMAND_TIMEOUT_S,
    HOST,
    STOP_TIMEOUT_S,
    PrivateDaemon,
    free_port,
    private_server,
    read_pid,
    reap_session,
    require_server,
    wait_for_greeting,
    wait_for_pid,
)
from tests.support.tls import TestCerts

__all__ = [
    "DEFAULT_USERS",
    "Dovecot",
    "add_mode_bits",
    "dovecot_available",
    "private_dovecot",
    "require_dovecot",
]

DEFAULT_USERS: Mapping[str, str] = MappingProxyType({"owner@example.test": "secret"})

# Longest base_dir we accept in place: the longest socket Dovecot creates below it is
# about 30 characters, and sun_path holds 108 bytes; keep a comfortable margin.
_MAX_BASE_DIR_LEN = 60
_LOG_TAIL_LINES = 30


def dovecot_available() -> bool:
    """Whether the Dovecot binaries are installed (``apt-get install dovecot-imapd``)."""
    return shutil.which("dovecot") is not None and shutil.which("doveadm") is not None


def require_dovecot() -> None:
    """Skip the calling test when Dovecot cannot run here; fail instead when ``CI=true``
    (CI is where Dovecot is the reference server)."""
    require_server(
        None if dovecot_available() else "dovecot is not installed (apt-get install -y dovecot-imapd)",
        needs_root="a private Dovecot instance needs root (it chowns mail to user dovecot)",
    )


class Dovecot(PrivateDaemon):
    """A private Dovecot instance rooted in ``workdir``; use as a context manager.

    ``users`` maps login names to plain-text passwords. With ``tls`` the plain port
    requires STARTTLS (``ssl = required``) and an implicit-TLS port is opened too. With
    ``oauth2_introspection_url`` XOAUTH2 and OAUTHBEARER are checked against that URL.
    With ``personal_prefix`` (``"INBOX."``) the personal namespace has that prefix and
    ``.`` as separator, as cPanel's Dovecot and Courier have; ``special_use`` maps folder
    names (within that namespace) to a special-use flag, each created at login.
    """

    def __init__(
        self,
        workdir: Path,
        users: Mapping[str, str] = DEFAULT_USERS,
        tls: TestCerts | None = None,
        oauth2_introspection_url: str | None = None,
        personal_prefix: str | None = None,
        special_use: Mapping[str, str] | None = None,
        mail_format: str = "maildir",
    ) -> None:
        for user, password in users.items():
            # passwd-file is colon- and line-separated; anything else would corrupt it.
            if any(ch in user + password for ch in ":\n\r"):
                raise ValueError(f"user or password for {user!r} contains ':' or a newline")
        self._workdir = workdir.resolve()
        self._users = dict(users)
        self._tls = tls
        self._oauth2_url = oauth2_introspection_url
        self._personal_prefix = personal_prefix
        self._special_use = dict(special_use or {})
        self._mail_format = mail_format  # "mbox": a folder holds mail or folders, never both
        self._conf = self._workdir / "dovecot.conf"
        self._log = self._workdir / "dovecot.log"
        self._base_dir: Path | None = None
        self._own_base_dir = False  # True when base_dir is a mkdtemp folder to delete
        self._port: int | None = None
        self._imaps_port: int | None = None
        self._master_pid: int | None = None

    # -- public properties -------------------------------------------------------------

    @property
    def port(self) -> int:
        """Plain IMAP port; offers STARTTLS when started with ``tls``.

        Dovecot treats loopback clients as already "secured", so even with
        ``ssl = required`` it accepts a plaintext LOGIN here before STARTTLS.
        """
        return self._require_started(self._port)

    @property
    def imaps_port(self) -> int:
        """Implicit-TLS port; 0 when started without ``tls`` (no listener)."""
        return self._require_started(self._imaps_port)

    @property
    def log_path(self) -> Path:
        """Dovecot's log file: the first place to look when a test fails."""
        return self._log

    @property
    def config_path(self) -> Path:
        """The generated ``dovecot.conf`` (useful for ``doveadm -c``)."""
        return self._conf

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Write the config, start Dovecot and wait until it greets on ``port``.

        Raises ``RuntimeError`` (with the tail of Dovecot's log) if it does not come up
        within ~15 s; whatever did start is stopped first.
        """
        if self._master_pid is not None:
            raise RuntimeError("Dovecot is already running")
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._base_dir = self._choose_base_dir()
        self._port = free_port()
        self._imaps_port = free_port() if self._tls else 0
        try:
            self._write_files()
            self._fix_permissions()
            self._launch()
            self._master_pid = self._read_master_pid()
            self._wait_for_greeting()
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            self._fail_start(str(error))
        except BaseException:
            self.stop()  # e.g. Ctrl-C while waiting: leave no daemon behind
            raise

    def stop(self) -> None:
        """Stop Dovecot and make sure none of its processes survive. Idempotent."""
        if self._base_dir is None:
            return
        if self._conf.exists() and (self._base_dir / "master.pid").exists():
            try:
                subprocess.run(
                    ["doveadm", "-c", str(self._conf), "stop"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=COMMAND_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                pass  # reap_session below kills whatever is left
        pid = self._master_pid or self._read_master_pid_or_none()
        if pid is not None:
            reap_session(pid, STOP_TIMEOUT_S)
        if self._own_base_dir:
            shutil.rmtree(self._base_dir, ignore_errors=True)
        self._base_dir = None
        self._master_pid = None

    # -- helpers -------------------------------------------------------------------

    def _require_started(self, value: int | None) -> int:
        if value is None:
            raise RuntimeError("Dovecot has not been started")
        return value

    def _choose_base_dir(self) -> Path:
        """``workdir/run`` when short enough for unix socket paths, else ``/tmp/dv*``."""
        in_place = self._workdir / "run"
        if len(str(in_place)) <= _MAX_BASE_DIR_LEN:
            self._own_base_dir = False
            return in_place
        self._own_base_dir = True
        return Path(tempfile.mkdtemp(prefix="dv", dir="/tmp"))

    def _write_files(self) -> None:
        assert self._base_dir is not None
        mail_dir = self._workdir / "mail"
        mail_dir.mkdir(exist_ok=True)
        users_file = self._workdir / "users"
        users_file.write_text(
            "".join(f"{user}:{{PLAIN}}{pw}\n" for user, pw in self._users.items()),
            encoding="utf-8",
        )
        mechanisms = "plain login"
        oauth2_passdb = ""
        if self._oauth2_url is not None:
            mechanisms = "plain login xoauth2 oauthbearer"
            oauth2_conf = self._workdir / "oauth2.conf.ext"
            oauth2_conf.write_text(
                f"introspection_url = {self._oauth2_url}\n"
                "introspection_mode = post\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n",
                encoding="utf-8",
            )
            # Must come before passwd-file; restricted to the token mechanisms.
            oauth2_passdb = (
                "passdb {\n"
                "  driver = oauth2\n"
                "  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {oauth2_conf}\n"
                "}\n"
            )
        if self._tls is None:
            ssl = "ssl = no\n"
        else:
            # '<' is Dovecot's "read this file" syntax.
            ssl = (
                "ssl = required\n"
                f"ssl_cert = <{self._tls.cert_path.resolve()}\n"
                f"ssl_key = <{self._tls.key_path.resolve()}\n"
            )
        # Blocks must span lines: Dovecot rejects `name { key = value }` on one line.
        self._conf.write_text(
            "protocols = imap\n"
            "first_valid_uid = 1\n"
            f"listen = {HOST}\n"
            f"base_dir = {self._base_dir}\n"
            f"state_dir = {self._base_dir}/state\n"
            f"log_path = {self._log}\n"
            f"{ssl}"
            "disable_plaintext_auth = no\n"
            f"auth_mechanisms = {mechanisms}\n"
            f"mail_location = {self._mail_format}:{mail_dir}/%u\n"
            "default_login_user = dovenull\n"
            "default_internal_user = dovecot\n"
            "service imap-login {\n"
            "  inet_listener imap {\n"
            f"    port = {self._port}\n"
            "  }\n"
            "  inet_listener imaps {\n"
            f"    port = {self._imaps_port}\n"
            "  }\n"
            "}\n"
            f"{self._namespace_block()}"
            f"{oauth2_passdb}"
            "passdb {\n"
            "  driver = passwd-file\n"
            "  mechanisms = plain login\n"
            f"  args = scheme=PLAIN username_format=%u {users_file}\n"
            "}\n"
            "userdb {\n"
            "  driver = static\n"
            f"  args = uid=dovecot gid=dovecot home={mail_dir}/%u\n"
            "}\n",
            encoding="utf-8",
        )

    @property
    def personal_prefix(self) -> str:
        """The personal namespace's prefix ("" unless started with ``personal_prefix``)."""
        return self._personal_prefix or ""

    @property
    def separator(self) -> str:
        """The hierarchy separator: ``.`` (maildir's default, and the prefixed namespace's)."""
        return "."

    def _namespace_block(self) -> str:
        """A personal namespace with a prefix and special-use folders, when asked for;
        else none (Dovecot's default: no prefix, maildir's ``.``)."""
        if self._personal_prefix is None and not self._special_use:
            return ""
        mailboxes = "".join(
            f'  mailbox "{name}" {{\n    auto = create\n    special_use = {flag}\n  }}\n'
            for name, flag in self._special_use.items()
        )
        return (
            "namespace inbox {\n"
            "  inbox = yes\n"
            "  separator = .\n"
            f"  prefix = {self.personal_prefix}\n"
            f"{mailboxes}"
            "}\n"
        )

    def _fix_permissions(self) -> None:
        """Let user ``dovecot`` reach the workdir and own the mail (see module docstring)."""
        assert self._base_dir is not None
        shutil.chown(self._workdir / "mail", user="dovecot", group="dovecot")
        for directory in (self._base_dir, *self._base_dir.parents):
            if directory.exists():
                add_mode_bits(directory, 0o755)
        for directory in (self._workdir, *self._workdir.parents):
            add_mode_bits(directory, 0o755)
        # Read by the auth process, which runs as dovecot.
        for name in ("users", "oauth2.conf.ext"):
            if (self._workdir / name).exists():
                add_mode_bits(self._workdir / name, 0o644)

    def _launch(self) -> None:
        """Run ``dovecot -c <conf>``, which forks the master into the background.

        Its output goes to a file, not a pipe: the daemonized master and its children
        inherit the descriptors, so a pipe never reaches EOF and ``subprocess.run(...,
        capture_output=True)`` would hang until its timeout.
        """
        stderr_path = self._workdir / "dovecot.stderr"
        with stderr_path.open("w+b") as stderr:
            code = subprocess.run(
                ["dovecot", "-c", str(self._conf)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            ).returncode
            stderr.seek(0)
            output = stderr.read().decode("utf-8", errors="replace").strip()
        if code != 0:
            # Config errors come from doveconf on stderr; the log file is not open yet.
            raise RuntimeError(f"dovecot exited {code}: {output}")

    def _read_master_pid_or_none(self) -> int | None:
        return None if self._base_dir is None else read_pid(self._base_dir / "master.pid")

    def _read_master_pid(self) -> int:
        # `dovecot` daemonizes and writes master.pid before returning; check anyway.
        assert self._base_dir is not None
        return wait_for_pid(self._base_dir / "master.pid", 2.0, "dovecot")

    def _wait_for_greeting(self) -> None:
        """Poll the plain port until it sends an IMAP ``* OK`` greeting."""
        assert self._port is not None and self._master_pid is not None
        wait_for_greeting(self._port, self._master_pid, "dovecot")

    def _fail_start(self, message: str) -> NoReturn:
        """Clean up a failed start and raise with the log tail for diagnosis."""
        tail = self._log_tail()
        self.stop()
        raise RuntimeError(f"Dovecot failed to start: {message}\n--- {self._log} ---\n{tail}")

    def _log_tail(self) -> str:
        try:
            lines = self._log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log file)"
        return "\n".join(lines[-_LOG_TAIL_LINES:])


def add_mode_bits(path: Path, bits: int) -> None:
    """OR ``bits`` into ``path``'s mode; never removes bits (``/tmp`` keeps 1777)."""
    mode = path.stat().st_mode & 0o7777
    if mode | bits != mode:
        path.chmod(mode | bits)


def private_dovecot(
    prefix: str = "ingest-dovecot-", **options: Any
) -> contextlib.AbstractContextManager[Dovecot]:
    """A Dovecot in its own ``mkdtemp`` folder, removed afterwards (skips or fails via
    :func:`require_dovecot`); see :func:`tests.support.daemons.private_server`."""
    return private_server(Dovecot, require_dovecot, prefix, **options)
