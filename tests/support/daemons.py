"""What every private IMAP daemon of the tests shares (Dovecot, Cyrus): a free loopback port,
skipping or failing when it is not installed, a pid file to wait for, the IMAP greeting to
wait for, and stopping a daemonized master with every child it forked.

A server class subclasses :class:`PrivateDaemon` and writes only what is its own: its
configuration, its launch command and its stop command.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import pytest

HOST = "127.0.0.1"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 15.0

_D = TypeVar("_D", bound="PrivateDaemon")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Racy by nature (someone may grab it before the server binds), but good enough for
    tests; a lost race shows up as a clear start-up error with the server's log.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def require_server(missing: str | None, *, needs_root: str) -> None:
    """Skip the calling test when the server cannot run here (``missing`` says why, or
    ``needs_root`` when not root); fail instead when ``CI=true``: ``.ci/run`` installs the
    servers, so a missing one there is a red build, not a silently skipped suite."""
    if missing is not None:
        reason = missing
    elif os.geteuid() != 0:
        reason = needs_root
    else:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; required when CI=true", pytrace=False)
    pytest.skip(reason)


def read_pid(path: Path) -> int | None:
    """The pid in a daemon's pid file, or None while there is none (or it is half written)."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def wait_for_pid(path: Path, seconds: float, what: str) -> int:
    """The pid a daemon writes to ``path`` once it has forked into the background."""
    deadline = time.monotonic() + seconds
    while (pid := read_pid(path)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} started but wrote no pid file {path.name}")
        time.sleep(0.05)
    return pid


def wait_for_greeting(port: int, master_pid: int | None = None, what: str = "the server") -> None:
    """Poll ``port`` until it sends an IMAP ``* OK`` greeting; give up early when the
    master (``master_pid``) has exited."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if master_pid is not None and not alive(master_pid):
            raise RuntimeError(f"{what}'s master process exited during start-up")
        try:
            with socket.create_connection((HOST, port), timeout=2.0) as conn:
                greeting = conn.recv(512)
            if greeting.startswith(b"* OK"):
                return
            last_error = f"unexpected greeting {greeting!r}"
        except OSError as error:
            last_error = repr(error)
        time.sleep(0.1)
    raise RuntimeError(f"no IMAP greeting on port {port} within {START_TIMEOUT_S:.0f}s ({last_error})")


def stop_master(master_pid: int | None) -> None:
    """SIGTERM a daemon's master, then wait for it and its children (:func:`reap_session`)."""
    if master_pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(master_pid, signal.SIGTERM)
    reap_session(master_pid, STOP_TIMEOUT_S)


def reap_session(master_pid: int, timeout: float) -> None:
    """Wait for a daemon's master and its children to exit; SIGKILL stragglers.

    A daemonized master (Dovecot's, Cyrus's) calls setsid(), so every child shares the
    master's pid as session id; that finds them even after the master is gone.
    """
    deadline = time.monotonic() + timeout
    while (pids := _session_pids(master_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not pids:
        return
    if alive(master_pid) and master_pid not in pids:
        pids.append(master_pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    return _proc_state(pid) not in (None, "Z", "X")


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields follow ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def _session_pids(session_id: int) -> list[int]:
    """Live (non-zombie) processes in session ``session_id``.

    Zombies are skipped: an orphaned child is reparented to pid 1, and if pid 1 does not
    reap (as in some sandboxes) it stays a harmless zombie we cannot kill.
    """
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After ')': state, ppid, pgrp, session, ...
        if int(fields[3]) == session_id and fields[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


class PrivateDaemon:
    """A private server on loopback, used as a context manager: ``start`` on entry,
    ``stop`` (idempotent, leaves no process behind) on exit."""

    @property
    def host(self) -> str:
        """Address the server listens on (loopback only)."""
        return HOST

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def private_server(
    server: Callable[..., _D], require: Callable[[], None], prefix: str, **options: Any
) -> Iterator[_D]:
    """``server(workdir, **options)`` in its own ``mkdtemp`` folder, removed afterwards
    (``require`` skips or fails first).

    Not under pytest's ``tmp_path``: another pytest session resets ``/tmp/pytest-of-root``
    to 0700 at any time, and the server's processes (not root) must traverse every folder
    above their files.
    """
    require()
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with server(workdir, **options) as running:
            yield running
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
