"""Run the `ingest` command as a subprocess against servers the test started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from ingest.simulator import CertainlySimulator


class ImapAccount(Protocol):
    """Where the job logs in: an EmbeddedImap, or a Dovecot user (see dovecot_account)."""

    host: str
    port: int
    username: str
    password: str


def job_env(sim: CertainlySimulator, imap: ImapAccount, workdir: Path, **extra: str) -> dict[str, str]:
    """A clean environment (no inherited INGEST_*) pointing the job at the test's servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update({
        "INGEST_CERTAINLY__BASE_URL": sim.base_url,
        "INGEST_CERTAINLY__TOKEN": sim.config.token,
        "INGEST_CERTAINLY__REPORT_PATH": sim.config.report_path,
        "INGEST_IMAP__HOST": imap.host,
        "INGEST_IMAP__PORT": str(imap.port),
        "INGEST_IMAP__SECURITY": "none",
        "INGEST_IMAP__USERNAME": imap.username,
        "INGEST_IMAP__PASSWORD": imap.password,
        "INGEST_IMAP__ALLOWED_SENDERS": sim.config.sender,
        "INGEST_IMAP__TIMEOUT": "10",
        "INGEST_OUTPUT__ROOT": str(workdir / "archive"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
        "INGEST_REQUESTER__POLL_INTERVAL": "0.1",
        "INGEST_REQUESTER__RETRY_INITIAL": "0.1",
        "INGEST_REQUESTER__RETRY_MAX": "0.5",
    })
    env.update(extra)
    return env


def ingest(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m ingest ARGS` with a time-out; output captured as text."""
    return subprocess.run([sys.executable, "-m", "ingest", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def start_ingest(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """Start `python -m ingest ARGS` in the background."""
    return subprocess.Popen([sys.executable, "-m", "ingest", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


#: Runs ``argv[2:]`` as its child and writes the child's peak RSS (KiB, from wait4) to
#: ``argv[1]``. A child forked from a big process (pytest after a long session) and then
#: exec'd starts its ru_maxrss at the parent's high-water mark (Linux carries the old
#: mm's hiwater_rss over exec), so the measured process is started from this small one.
_MEASURE = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "child.returncode = os.waitstatus_to_exitcode(status)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(child.returncode)\n"
)


def ingest_peak_rss(*args: str, env: dict[str, str], cwd: Path,
                    timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], float]:
    """`python -m ingest ARGS` and the whole process's peak RSS in MiB, measured by the
    kernel (the child's ``ru_maxrss``), not sampled."""
    report = cwd / ".peak-rss"
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(report), sys.executable, "-m", "ingest", *args],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return done, int(report.read_text()) / 1024
