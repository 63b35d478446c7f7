"""A rig for scenarios run through the real CLI (``python -m ingest`` in a child process)
against a private Dovecot user and the simulator over HTTP, where the test APPENDs each
report email itself at the moment the scenario needs it (the simulator delivers none: its
emails wait in ``sim.outbox``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from imapclient import IMAPClient

from ingest.simulator import CertainlySimulator, SimulatorConfig
from tests.support.job import Account, job_env, run_ingest

#: Seconds the rig waits at most for the simulator to finish an export.
WAIT = 30.0


@dataclass
class CliRig:
    sim: CertainlySimulator
    account: Account
    workdir: Path
    env: dict[str, str]

    def cli(self, *args: str) -> tuple[int, str]:
        """Run ``ingest ARGS``: its exit code and its whole output (never a traceback)."""
        done = run_ingest(*args, env=self.env, cwd=self.workdir, timeout=120)
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout + done.stderr

    def append(self, raw: bytes, *, received: datetime | None = None) -> None:
        """APPEND one message; ``received`` sets its INTERNALDATE (default: now)."""
        with IMAPClient(self.account.host, port=self.account.port, ssl=False, timeout=10) as client:
            client.login(self.account.username, self.account.password)
            client.append("INBOX", raw, flags=(), msg_time=received)

    def vendor_mail(self, bot: str | None = None) -> bytes:
        """The simulator's one report email (of ``bot``'s export, when given); waits for it."""
        assert self.sim.wait_idle(WAIT), "the simulator never finished the export"
        mails = [m for m in self.sim.outbox if bot is None or bot.encode() in m.split(b"\r\n\r\n", 1)[0]]
        assert len(mails) == 1, f"the simulator holds {len(mails)} report emails of {bot or 'any bot'}"
        return mails[0]

    def windows(self) -> dict[str, str]:
        """The state store's windows: ``"<bot> <from date>"`` -> state."""
        with closing(sqlite3.connect(self.workdir / "state.sqlite")) as conn:
            return {
                f"{bot} {start}": state
                for bot, start, state in conn.execute(
                    "SELECT bot_id, from_date, state FROM windows ORDER BY id"
                )
            }

    def attachments(self, outcome: str) -> list[dict[str, object]]:
        """The state store's reports of one outcome."""
        with closing(sqlite3.connect(self.workdir / "state.sqlite")) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM attachments WHERE outcome = ?", (outcome,))]

    def reports(self) -> dict[str, dict[str, object]]:
        """The state store's reports by file name."""
        with closing(sqlite3.connect(self.workdir / "state.sqlite")) as conn:
            conn.row_factory = sqlite3.Row
            return {str(r["filename"]): dict(r) for r in conn.execute("SELECT * FROM attachments")}

    @property
    def archive(self) -> Path:
        return self.workdir / "archive"


@contextmanager
def cli_rig(account: Account, workdir: Path, config: SimulatorConfig, **env: str) -> Iterator[CliRig]:
    """The simulator (no delivery) and the job's environment for ``account``, with ``env`` on
    top; log lines as text and a wide terminal, so messages are asserted whole."""
    with CertainlySimulator(config) as sim:
        yield CliRig(
            sim,
            account,
            workdir,
            job_env(sim, account, workdir, INGEST_LOG_FORMAT="text", COLUMNS="400", **env),
        )
