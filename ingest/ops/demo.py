"""`ingest demo`: the whole pipeline against the simulator and an embedded IMAP server.

Real HTTP on 127.0.0.1, a real IMAP server (pymap, a child process), real POST -> email
-> IMAP -> parse -> Parquet for each bot's first window, and the GET path (routing auto)
beside it for the others; it says which window took which. No credentials and nothing
beyond loopback.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import polars as pl
from rich.console import Console

from ingest.archive.layout import DELTA_LOG
from ingest.errors import ConfigError
from ingest.pipeline.passes import RunSummary, run_until_done
from ingest.request.requester import plan_backfill
from ingest.settings import Settings, explicit_settings
from ingest.simulator import CertainlySimulator, EmbeddedImap, SimulatorConfig, pymap_installed
from ingest.state.store import Store
from ingest.state.windows import WindowState

DEMO_NAMESPACE = uuid.UUID("6f1c1e0a-7b0e-4c53-9a43-3c1f5b1d2e10")


def demo_bot_ids(count: int) -> list[str]:
    """Stable, realistic (UUID) bot ids for the demo."""
    return [str(uuid.uuid5(DEMO_NAMESPACE, f"demo-bot-{n}")) for n in range(1, count + 1)]


def demo_settings(sim: CertainlySimulator, imap: EmbeddedImap, workdir: Path) -> Settings:
    """Settings pointing at the simulator and the embedded mailbox, fast timings."""
    return explicit_settings(
        certainly={
            "base_url": sim.base_url,
            "token": sim.config.token,
            "report_path": sim.config.report_path,
            "timeout": 10,
        },
        requester={
            "window_days": 30,
            "poll_interval": 0.1,
            "retry_initial": 0.1,
            "retry_max": 0.5,
            "delivery_timeout": 30,
            "via": "auto",
            "get_rate": 20,
        },
        imap={
            "host": imap.host,
            "port": imap.port,
            "security": "none",
            "username": imap.username,
            "password": imap.password,
            "timeout": 10,
            "allowed_senders": [sim.config.sender],
        },
        output={"root": str(workdir / "archive")},
        state={"path": workdir / "state.sqlite"},
    )


def pin_first_windows_to_email(store: Store, bot_ids: list[str]) -> None:
    """Each bot's first window goes the emailed way (POST -> email -> IMAP -> archive), the
    rest the way routing picks (auto: GET, as the demo's bots are light), so the demo walks
    both paths side by side. A bot with one window only: every other one by GET (the first
    bot always by email: the whole emailed path is always walked)."""
    for index, bot_id in enumerate(bot_ids):
        windows = sorted(store.windows(bot_id=bot_id), key=lambda w: w.from_date)
        if not windows or (len(windows) == 1 and index % 2 == 1):
            continue
        first = windows[0]
        if first.state is WindowState.PLANNED and first.via is None:
            store.transition(first.id, WindowState.PLANNED, via="email")


def which_path(store: Store) -> str:
    """One line per window: bot, range, state and the path that took it."""
    names = {"email": "POST -> email -> IMAP", "get": "GET (synchronous)"}
    return "\n".join(
        f"  {w.bot_id} {w.from_date}..{w.to_date} {w.state}: {names.get(w.via or '', 'not routed')}"
        for w in store.windows()
    )


def _stranger_email() -> bytes:
    """Mail from someone not on the allow-list, which the watcher must leave alone."""
    msg = EmailMessage()
    msg["From"] = "newsletter@example.net"
    msg["To"] = "demo@example.test"
    msg["Subject"] = "Weekly digest (with a CSV the archiver must ignore)"
    msg.set_content("Not a Certainly report.")
    msg.add_attachment(
        b"id,timestamp\n1,2024-01-01T00:00:00Z\n", maintype="text", subtype="csv", filename="not-a-report.csv"
    )
    return msg.as_bytes()


def require_demo_extra() -> None:
    """Refuse the demo, before it creates anything, where its embedded IMAP server is not
    installed (a production install, the container image): exit 2 saying what to install."""
    if not pymap_installed():
        raise ConfigError(
            "ingest demo needs its embedded IMAP server (pymap), which is not installed",
            hint="install the demo extra: pip install 'certainly-ingest[demo]', or '.[demo]' from a clone",
        )


@contextlib.contextmanager
def _embedded_imap() -> Iterator[EmbeddedImap]:
    """The demo's IMAP server, started; a pymap that is installed but cannot start (a broken
    or incompatible install) is exit 2 with the last line it printed, not a traceback."""
    server = EmbeddedImap()
    try:
        server.start()
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise ConfigError(
            f"the demo's embedded IMAP server (pymap) did not start: {lines[-1] if lines else err}",
            hint="reinstall the demo extra: pip install --force-reinstall 'certainly-ingest[demo]'",
        ) from None
    try:
        yield server
    finally:
        server.stop()


def run_demo(*, bots: int, days: int, out_dir: Path | None, console: Console) -> RunSummary:
    """Backfill ``bots`` x ``days`` through the real path and print where the archive is."""
    require_demo_extra()
    workdir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="ingest-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    end = datetime.now(UTC).date() - timedelta(days=1)
    start = end - timedelta(days=days - 1)
    bot_ids = demo_bot_ids(bots)
    with _embedded_imap() as imap:
        config = SimulatorConfig(delivery_delay=0.1, recipient=imap.username)
        with CertainlySimulator(config, deliver=imap.delivery()) as sim:
            imap.delivery().deliver(_stranger_email())
            settings = demo_settings(sim, imap, workdir)
            console.print(
                f"simulator {sim.base_url}  imap 127.0.0.1:{imap.port}  "
                f"{bots} bot(s) x {days} days ({start}..{end})"
            )
            with Store.open(settings.state.path) as store:
                planned = plan_backfill(
                    store, bot_ids, start, end, window_days=settings.requester.window_days
                )
                pin_first_windows_to_email(store, bot_ids)
                with console.status("archiving...") as status:
                    summary = run_until_done(
                        settings,
                        store,
                        timeout=120,
                        on_pass=lambda s: status.update(
                            f"archiving... {s.reports_archived}/{len(planned)} reports, {s.rows_written} rows"
                        ),
                    )
                archived = len(store.windows(states=(WindowState.ARCHIVED,)))
                paths = which_path(store)
            expected = sum(len(sim.expected_rows(b, start, end)) for b in bot_ids)
    root = Path(settings.output.root).resolve()
    rows = (
        pl.scan_delta(str(root / "messages")).select(pl.len()).collect().item()
        if (root / "messages" / DELTA_LOG).is_dir()
        else 0
    )
    console.print(
        f"windows: {len(planned)} planned, {archived} archived, {summary.deferred} deferred "
        f"('already in progress'), {summary.failed} failed\n"
        f"emails: {summary.emails_seen} seen, {summary.emails_archived} archived, "
        f"{summary.emails_ignored} ignored (sender not allowed)\n"
        f"rows: {summary.rows_written} written, {summary.rows_duplicate} duplicates, "
        f"{summary.rows_rejected} rejected; simulator generated {expected}; archive holds {rows}\n"
        f"files: {summary.files_written} Parquet files in {time.monotonic() - started:.1f} s\n"
        f"paths: {summary.get_requests} GET request(s) beside {summary.emails_archived} emailed "
        "report(s); each window's path:\n"
        f"{paths}\n"
        f"archive: {root}\n"
        f"state:   {settings.state.path.resolve()}\n"
        "query it:\n"
        f"  {sys.executable} -c \"import polars as pl; print(pl.scan_delta('{root}/messages')"
        f".group_by('bot_id').len().collect())\"",
        highlight=False,
        soft_wrap=True,
    )
    if rows != expected:
        summary.problems.append(f"archive holds {rows} rows, the simulator generated {expected}")
    return summary
