"""An embedded IMAP server (pymap's in-memory ``dict`` backend) in a child process.

Used by ``ingest demo`` and tests when no real mail server is at hand. pymap only loads its
sample messages with ``--demo-data``, which is not passed: the mailbox starts empty with a
single INBOX. Mail is lost when the process stops.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .mailer import ImapDelivery

# pymap has no ``__main__`` module (``python -m pymap`` fails), and its console script may
# not be on PATH: call its entry point through the running interpreter instead.
_PYMAP_MAIN = "from pymap.main import main; main()"
_PORT_ATTEMPTS = 3  # the free port we picked can be taken before pymap binds it


def pymap_installed() -> bool:
    """Whether pymap can be imported: it comes with the ``demo`` extra only, so that the
    production install (and its container image) carries no IMAP server."""
    return importlib.util.find_spec("pymap") is not None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _greets(host: str, port: int) -> bool:
    """True if an IMAP server answers on host:port with an ``* OK`` greeting."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            return sock.recv(256).startswith(b"* OK")
    except OSError:
        return False


class EmbeddedImap:
    """pymap on a free loopback port, with one user; a context manager."""

    def __init__(
        self,
        username: str = "demo@example.test",
        password: str = "demo-password",
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.username = username
        self.password = password
        self.startup_timeout = startup_timeout
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: str | None = None

    def __repr__(self) -> str:
        return f"EmbeddedImap(host={self.host!r}, port={self.port}, username={self.username!r})"

    @property
    def log_path(self) -> Path | None:
        """pymap's combined stdout/stderr while running (deleted by :meth:`stop`)."""
        return Path(self._tmpdir, "pymap.log") if self._tmpdir else None

    def start(self) -> EmbeddedImap:
        """Start pymap and wait (bounded) until it greets; raises RuntimeError otherwise."""
        if self._proc is not None:
            raise RuntimeError("embedded IMAP server already started")
        if not pymap_installed():
            raise RuntimeError("pymap is not installed: pip install 'certainly-ingest[demo]'")
        self._tmpdir = tempfile.mkdtemp(prefix="ingest-pymap-")
        last_error = ""
        for _ in range(_PORT_ATTEMPTS):
            self.port = _free_port(self.host)
            if self._launch():
                return self
            last_error = self._log_tail()
            self._terminate()
        self.stop()
        raise RuntimeError(f"pymap did not start on {self.host}: {last_error}")

    def _launch(self) -> bool:
        assert self._tmpdir is not None and self.log_path is not None
        cmd = [
            sys.executable,
            "-c",
            _PYMAP_MAIN,
            # A per-port pid file name in case the optional ``pid`` package is installed.
            "--pid-file",
            f"ingest-pymap-{self.port}.pid",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--no-tls",
            "dict",
            "--demo-user",
            self.username,
            "--demo-password",
            self.password,
        ]
        with open(self.log_path, "ab") as log_file:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=self._tmpdir
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False  # exited, e.g. the port was taken meanwhile
            if _greets(self.host, self.port):
                return True
            time.sleep(0.1)
        return False

    def _log_tail(self) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")[-2000:]

    def _terminate(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # pymap handles SIGTERM and exits cleanly
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate pymap (kill after ``timeout``) and remove its temporary directory."""
        self._terminate(timeout)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def delivery(self, folder: str = "INBOX", timeout: float = 10.0) -> ImapDelivery:
        """An :class:`ImapDelivery` appending to ``folder`` of this server's user."""
        return ImapDelivery(
            self.host, self.port, self.username, self.password, folder=folder, timeout=timeout
        )

    def __enter__(self) -> EmbeddedImap:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last resort so an unstopped server does not outlive a crashed test run.
        with contextlib.suppress(Exception):
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(1.0)  # reap it, or Popen warns about a running child
