"""`ingest watch` against a real Dovecot: a report that arrives while the watcher waits in
IDLE is archived within seconds, and stop (an Event, or SIGTERM to the process) ends it
within 5 s. A connection that drops while idle is re-opened.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import ingest.pipeline.watch as pipeline
from ingest.settings import Settings
from ingest.state.store import Store
from tests.support.archive import assert_archive_matches
from tests.support.job import start_ingest
from tests.support.mail import (
    PROCESSED,
    RECIPIENT,
    SENDER,
    Mailboxes,
    accept_windows,
    deliver,
    email_rows,
    message_id,
    moved,
    report,
    report_email,
    snapshot,
    stranger_email,
    truth_of,
    watcher_settings,
)
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PASSWORD = "secret"
ACCOUNTS = Mailboxes("watch", 7, PASSWORD)
USERS = ACCOUNTS.users
BOT = "3f0c2a9e-5555-4c1a-9d4e-00000000000e"
PICKUP_S = 5.0  # "within a few seconds"
STOP_S = 5.0


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; returns the seconds it took; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def archived(settings: Settings, mid: str) -> Callable[[], bool]:
    def check() -> bool:
        if not Path(settings.state.path).exists():
            return False
        return any(
            r["message_id"] == mid and r["outcome"] == "archived" for r in email_rows(settings.state.path)
        )

    return check


def dovecot_notes(dovecot) -> str:  # type: ignore[no-untyped-def]
    """Dovecot's own words on IDLE notification (it polls every 30 s without inotify)."""
    try:
        lines = Path(dovecot.log_path).read_text(errors="replace").splitlines()
    except OSError:
        return "no Dovecot log"
    notes = [line for line in lines if "inotify" in line.lower() or "idle" in line.lower()]
    return "Dovecot log: " + (" | ".join(notes[-5:]) or "nothing about IDLE or inotify")


class WatchThread:
    """``ingest.pipeline.watch.watch`` in a thread with its own store; records IDLE entries."""

    def __init__(self, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.idles = 0
        self.result: dict[str, Any] = {}
        real_wait = pipeline._wait_for_mail

        def counting_wait(*args: Any, **kwargs: Any) -> None:
            self.idles += 1
            real_wait(*args, **kwargs)

        monkeypatch.setattr(pipeline, "_wait_for_mail", counting_wait)
        self.thread = threading.Thread(target=self._run, name="ingest-watch", daemon=True)

    def _run(self) -> None:
        try:
            with Store.open(self.settings.state.path) as store:
                self.result["summary"] = pipeline.watch(self.settings, store, self.stop)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.result["error"] = err

    def __enter__(self) -> WatchThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=STOP_S + 5)

    def stop_and_time(self) -> float:
        started = time.monotonic()
        self.stop.set()
        self.thread.join(timeout=STOP_S + 5)
        assert not self.thread.is_alive(), "watch did not return after stop"
        return time.monotonic() - started


def test_watch_archives_a_report_delivered_during_idle_and_stops_within_5s(
    dovecot, user, workdir, monkeypatch
) -> None:
    rep = report(BOT, date(2024, 9, 1), date(2024, 9, 3))
    stranger = stranger_email("attacker@evil.test")
    deliver(dovecot, user, PASSWORD, [stranger], flags=[b"\\Flagged"])
    # poll_interval 30 s: only IDLE can bring a new mail in within PICKUP_S.
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)
    with Store.open(settings.state.path) as store:
        accept_windows(store, rep)

    with WatchThread(settings, monkeypatch) as watcher:
        wait_for(lambda: watcher.idles >= 1, 20, "watch reached IDLE")
        time.sleep(0.5)
        raw = report_email(rep)
        before = snapshot(dovecot, user, PASSWORD)
        deliver(dovecot, user, PASSWORD, [raw])
        try:
            pickup = wait_for(archived(settings, message_id(raw)), PICKUP_S, "report archived from IDLE")
        except AssertionError as err:
            raise AssertionError(
                f"{err}; IDLE entered {watcher.idles} time(s); {dovecot_notes(dovecot)}"
            ) from None
        stopping = watcher.stop_and_time()

    assert "error" not in watcher.result, repr(watcher.result.get("error"))
    summary = watcher.result["summary"]
    assert (summary.emails_archived, summary.emails_ignored) == (1, 1)
    assert stopping < STOP_S
    print(f"\nwatch: IDLE pick-up {pickup:.2f} s, stop {stopping:.2f} s")
    assert_archive_matches(Path(settings.output.root), truth_of(rep))
    after = snapshot(dovecot, user, PASSWORD)
    before["INBOX"][(message_id(raw), frozenset())] += 1
    assert after == moved(before, {message_id(raw): PROCESSED})


def test_watch_reconnects_when_the_connection_drops_during_idle(dovecot, user, workdir, monkeypatch) -> None:
    rep = report(BOT, date(2024, 9, 4), date(2024, 9, 6))
    with TcpProxy(dovecot.port) as proxy:
        # Back-off before reconnecting is min(poll_interval, 30 s): keep it short here.
        settings = watcher_settings(dovecot, user, PASSWORD, workdir, port=proxy.port)
        settings.requester.poll_interval = 1.0
        with Store.open(settings.state.path) as store:
            accept_windows(store, rep)
        with WatchThread(settings, monkeypatch) as watcher:
            wait_for(lambda: watcher.idles >= 1, 20, "watch reached IDLE")
            time.sleep(0.5)
            assert proxy.cut_all() == 1  # the NAT box forgets us while we idle
            raw = report_email(rep)
            deliver(dovecot, user, PASSWORD, [raw])
            wait_for(
                lambda: "error" in watcher.result or archived(settings, message_id(raw))(),
                20,
                "report archived after the reconnect",
            )
            assert "error" not in watcher.result, f"watch died: {watcher.result['error']!r}"
            stopping = watcher.stop_and_time()
        assert proxy.connections >= 2
    assert stopping < STOP_S
    assert_archive_matches(Path(settings.output.root), truth_of(rep))


def test_ingest_watch_process_picks_up_mail_and_exits_on_sigterm_within_5s(dovecot, user, workdir) -> None:
    rep = report(BOT, date(2024, 9, 7), date(2024, 9, 9))
    stranger = stranger_email("attacker@evil.test")
    deliver(dovecot, user, PASSWORD, [stranger])
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)
    with Store.open(settings.state.path) as store:
        accept_windows(store, rep)
    env = {
        "INGEST_CERTAINLY__BASE_URL": "http://127.0.0.1:9/",
        "INGEST_CERTAINLY__TOKEN": "unused",
        "INGEST_CERTAINLY__REPORT_PATH": "unused",
        "INGEST_REQUESTER__MAX_IN_FLIGHT": "1000",
        "INGEST_REQUESTER__POLL_INTERVAL": "30",
        "INGEST_IMAP__HOST": dovecot.host,
        "INGEST_IMAP__PORT": str(dovecot.port),
        "INGEST_IMAP__SECURITY": "none",
        "INGEST_IMAP__USERNAME": user,
        "INGEST_IMAP__PASSWORD": PASSWORD,
        "INGEST_IMAP__ALLOWED_SENDERS": SENDER,
        "INGEST_CERTAINLY__ACCOUNT_EMAIL": RECIPIENT,  # the owner, redirected to this mailbox
        "INGEST_IMAP__TIMEOUT": "10",
        "INGEST_OUTPUT__ROOT": settings.output.root,
        "INGEST_STATE__PATH": str(settings.state.path),
        "COLUMNS": "200",
    }
    process = start_ingest("watch", env=env, cwd=workdir)
    try:
        # The stranger recorded = the first pass is done and the process is about to IDLE.
        wait_for(
            lambda: process.poll() is not None or bool(email_rows(settings.state.path)),
            30,
            "first pass of ingest watch",
        )
        assert process.poll() is None, process.communicate(timeout=5)
        time.sleep(1.0)
        raw = report_email(rep)
        before = snapshot(dovecot, user, PASSWORD)
        deliver(dovecot, user, PASSWORD, [raw])
        try:
            pickup = wait_for(
                archived(settings, message_id(raw)), PICKUP_S, "report archived by ingest watch"
            )
        except AssertionError as err:
            raise AssertionError(f"{err}; {dovecot_notes(dovecot)}") from None
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=STOP_S + 5)
        stopping = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    print(f"\ningest watch: IDLE pick-up {pickup:.2f} s, SIGTERM to exit {stopping:.2f} s")
    assert stopping < STOP_S, f"exit took {stopping:.1f} s"
    assert process.returncode == 0, err
    assert "1 archived" in out and "1 ignored" in out
    assert_archive_matches(Path(settings.output.root), truth_of(rep))
    before["INBOX"][(message_id(raw), frozenset())] += 1
    assert snapshot(dovecot, user, PASSWORD) == moved(before, {message_id(raw): PROCESSED})


def test_watch_polls_on_a_server_without_idle(dovecot, user, workdir, monkeypatch) -> None:
    rep = report(BOT, date(2024, 9, 7), date(2024, 9, 9))
    settings = watcher_settings(dovecot, user, PASSWORD, workdir)
    settings.requester.poll_interval = 0.5  # without IDLE, new mail is found by polling
    with Store.open(settings.state.path) as store:
        accept_windows(store, rep)
    real_capabilities = pipeline.Mailbox.capabilities
    monkeypatch.setattr(
        pipeline.Mailbox, "capabilities", lambda self: real_capabilities(self) - {"IDLE"}
    )  # an old server
    with WatchThread(settings, monkeypatch) as watcher:
        wait_for(lambda: watcher.idles >= 1, 20, "watch waiting for mail")
        raw = report_email(rep)
        deliver(dovecot, user, PASSWORD, [raw])
        pickup = wait_for(archived(settings, message_id(raw)), PICKUP_S, "report archived by polling")
        stopping = watcher.stop_and_time()
    assert "error" not in watcher.result, repr(watcher.result.get("error"))
    assert stopping < STOP_S
    print(f"\nwatch without IDLE: pick-up {pickup:.2f} s, stop {stopping:.2f} s")
    assert_archive_matches(Path(settings.output.root), truth_of(rep))
