"""Run the `ingest` command as a subprocess against servers the test started.

Every test runs the command through :func:`run_ingest` (or :func:`start_ingest` in the
background): its environment is this process's without any ``INGEST_*`` setting or
``AWS_*`` object-store variable, so that what the developer's shell or CI exports never
reaches the job, with the test's own variables on top.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ingest.settings import Settings, explicit_settings
from ingest.simulator import CertainlySimulator
from tests.support.mail import RECIPIENT

#: Variables of the outer environment a test's job never inherits.
_NOT_INHERITED = ("INGEST_", "AWS_")


class ImapAccount(Protocol):
    """Where the job logs in: an EmbeddedImap, or a Dovecot user (see dovecot_account)."""

    host: str
    port: int
    username: str
    password: str


@dataclass
class Account:
    """A user of a server that has more than one (a Dovecot user), as :func:`job_env` and
    :func:`job_settings` want it."""

    host: str
    port: int
    username: str
    password: str


def ingest_env(env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment without any INGEST_* or AWS_* variable, then ``env`` on
    top (a value of None removes that variable)."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(_NOT_INHERITED)}
    for name, value in (env or {}).items():
        if value is None:
            clean.pop(name, None)
        else:
            clean[name] = value
    return clean


def job_env(sim: CertainlySimulator, imap: ImapAccount, workdir: Path, **extra: str) -> dict[str, str]:
    """The variables pointing the job at the test's servers (for :func:`run_ingest`)."""
    env = {
        "INGEST_CERTAINLY__BASE_URL": sim.base_url,
        "INGEST_CERTAINLY__TOKEN": sim.config.token,
        "INGEST_CERTAINLY__REPORT_PATH": sim.config.report_path,
        "INGEST_IMAP__HOST": imap.host,
        "INGEST_IMAP__PORT": str(imap.port),
        "INGEST_IMAP__SECURITY": "none",
        "INGEST_IMAP__USERNAME": imap.username,
        "INGEST_IMAP__PASSWORD": imap.password,
        "INGEST_IMAP__ALLOWED_SENDERS": sim.config.sender,
        # The token owner: the simulator mails its reports to config.recipient, and the
        # vendor mail built by tests.support.mail is addressed to RECIPIENT (an alias).
        "INGEST_CERTAINLY__ACCOUNT_EMAIL": ",".join(dict.fromkeys([sim.config.recipient, RECIPIENT])),
        "INGEST_IMAP__TIMEOUT": "10",
        "INGEST_OUTPUT__ROOT": str(workdir / "archive"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
        "INGEST_REQUESTER__POLL_INTERVAL": "0.1",
        "INGEST_REQUESTER__RETRY_INITIAL": "0.1",
        "INGEST_REQUESTER__RETRY_MAX": "0.5",
        # The tests written before routing (issue 27) are about the emailed path: pinned.
        # A test of routing sets INGEST_REQUESTER__VIA itself (in ``extra``).
        "INGEST_REQUESTER__VIA": "email",
    }
    env.update(extra)
    return env


def job_settings(
    sim: CertainlySimulator,
    imap: ImapAccount,
    workdir: Path,
    *,
    requester: Mapping[str, Any],
    certainly: Mapping[str, Any] | None = None,
    imap_options: Mapping[str, Any] | None = None,
) -> Settings:
    """The settings of an in-process job against the test's servers (what :func:`job_env`
    is to a subprocess): the API and the mailbox, the archive and the state store under
    ``workdir``; each test says how its requester is paced (``requester``) and adds any
    other API or IMAP setting (``certainly``, ``imap_options``)."""
    return explicit_settings(
        certainly={
            "base_url": sim.base_url,
            "token": sim.config.token,
            "report_path": sim.config.report_path,
            **(certainly or {}),
        },
        requester=dict(requester),
        imap={
            "host": imap.host,
            "port": imap.port,
            "security": "none",
            "username": imap.username,
            "password": imap.password,
            "allowed_senders": [sim.config.sender],
            **(imap_options or {}),
        },
        output={"root": str(workdir / "archive")},
        state={"path": workdir / "state.sqlite"},
    )


def run_ingest(
    *args: str, env: Mapping[str, str | None] | None = None, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m ingest ARGS` in ``cwd`` with :func:`ingest_env` (``env`` on top of a clean
    environment) and a time-out; output captured as text, no stdin."""
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        env=ingest_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def start_ingest(
    *args: str, env: Mapping[str, str | None] | None = None, cwd: Path, **popen: Any
) -> subprocess.Popen[Any]:
    """Start `python -m ingest ARGS` in the background, as :func:`run_ingest` would run it;
    stdout and stderr are text pipes unless ``popen`` says otherwise."""
    options: dict[str, Any] = {
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
        "stdin": subprocess.DEVNULL,
        **popen,
    }
    return subprocess.Popen([sys.executable, "-m", "ingest", *args], env=ingest_env(env), cwd=cwd, **options)


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


def ingest_peak_rss(
    *args: str, env: Mapping[str, str | None] | None = None, cwd: Path, timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`python -m ingest ARGS` and the whole process's peak RSS in MiB, measured by the
    kernel (the child's ``ru_maxrss``), not sampled."""
    report = cwd / ".peak-rss"
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(report), sys.executable, "-m", "ingest", *args],
        env=ingest_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return done, int(report.read_text()) / 1024
