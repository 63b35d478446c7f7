"""The smaller trust points, through the real `ingest` command on loopback: files 0640 and
folders 0750; the metrics file replaced through an exclusive temp file (a planted link is
replaced, never written through); no redirect followed with the OAuth2 refresh token; a
warning and a doctor row for clear-text transport; API answers bounded in size and time.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ingest.simulator import CertainlySimulator, EmbeddedImap, Fault
from tests.support.job import job_env, run_ingest

pytestmark = pytest.mark.integration

BOT = "5e2a7c1d-0000-4000-8000-0000000000e3"


class Http:
    """A loopback HTTP server answering every request with ``answer(handler)``; it counts
    the requests it got and whether any carried a secret."""

    def __init__(self, answer: Any) -> None:
        self.requests: list[tuple[str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.command, body))
                answer(self)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Http:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_files_are_0640_and_folders_0750_and_metrics_replace_a_planted_link(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("not the job's to write\n")
    (metrics / "ingest.prom").symlink_to(victim)  # planted where the job writes
    env = job_env(sim, imap, tmp_path, INGEST_METRICS__TEXTFILE=str(metrics / "ingest.prom"))
    old_umask = os.umask(0o022)  # the caller's usual umask: the job sets its own
    try:
        planned = run_ingest(
            "backfill", "--bot", BOT, "--from", "2024-03-01", "--to", "2024-03-03", env=env, cwd=tmp_path
        )
        done = run_ingest("run", "--until-done", "--timeout", "60", env=env, cwd=tmp_path)
    finally:
        os.umask(old_umask)

    assert planned.returncode == 0 and done.returncode == 0, done.stdout + done.stderr
    written = [tmp_path / "state.sqlite", *(tmp_path / "archive").rglob("*")]
    files = {p: stat.S_IMODE(p.stat().st_mode) for p in written if p.is_file()}
    folders = {p: stat.S_IMODE(p.stat().st_mode) for p in written if p.is_dir()}
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".json" for p in files)
    assert {p: m for p, m in files.items() if m != 0o640} == {}
    assert {p: m for p, m in folders.items() if m != 0o750} == {}
    assert victim.read_text() == "not the job's to write\n"
    assert not (metrics / "ingest.prom").is_symlink()
    assert stat.S_IMODE((metrics / "ingest.prom").stat().st_mode) == 0o640
    assert "ingest_windows" in (metrics / "ingest.prom").read_text()
    assert sorted(p.name for p in metrics.iterdir()) == ["ingest.prom"]  # no temp file left


def test_the_oauth2_token_post_never_follows_a_redirect(tmp_path: Path) -> None:
    with Http(
        lambda h: (
            h.send_response(200),
            h.send_header("Content-Length", "2"),
            h.end_headers(),
            h.wfile.write(b"{}"),
        )
    ) as thief:

        def redirect(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(307)
            handler.send_header("Location", thief.url + "steal")
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with Http(redirect) as token_endpoint:
            env = dict(
                INGEST_IMAP__HOST="127.0.0.1",
                INGEST_IMAP__PORT=str(_free_port()),
                INGEST_IMAP__SECURITY="none",
                INGEST_IMAP__AUTH="xoauth2",
                INGEST_IMAP__USERNAME="owner@example.test",
                INGEST_IMAP__OAUTH2_REFRESH_TOKEN="refresh-SECRET-1",
                INGEST_IMAP__OAUTH2_CLIENT_SECRET="client-SECRET-2",
                INGEST_IMAP__OAUTH2_TOKEN_URL=token_endpoint.url + "token",
                INGEST_IMAP__ALLOWED_SENDERS="@certainly.io",
                INGEST_STATE__PATH=str(tmp_path / "state.sqlite"),
                INGEST_OUTPUT__ROOT=str(tmp_path / "archive"),
            )
            result = run_ingest("run", env=env, cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert "answered a redirect (307)" in result.stderr and "INGEST_IMAP__OAUTH2_TOKEN_URL" in result.stderr
    assert len(token_endpoint.requests) == 1 and thief.requests == []
    assert "SECRET" not in result.stdout + result.stderr


def test_clear_text_transport_is_a_warning_and_a_doctor_row(tmp_path: Path) -> None:
    # 0.0.0.0 is not loopback by name but refuses at once here: nothing slow to wait for.
    env = dict(
        INGEST_CERTAINLY__BASE_URL=f"http://0.0.0.0:{_free_port()}/api/",
        INGEST_CERTAINLY__TOKEN="tok",
        INGEST_CERTAINLY__REPORT_PATH="report/",
        INGEST_IMAP__HOST="0.0.0.0",
        INGEST_IMAP__PORT=str(_free_port()),
        INGEST_IMAP__SECURITY="none",
        INGEST_IMAP__USERNAME="u",
        INGEST_IMAP__PASSWORD="p",
        INGEST_IMAP__ALLOWED_SENDERS="@certainly.io",
        INGEST_LOG_FORMAT="text",
        INGEST_STATE__PATH=str(tmp_path / "state.sqlite"),
        INGEST_OUTPUT__ROOT=str(tmp_path / "archive"),
        COLUMNS="300",
        NO_COLOR="1",
    )

    result = run_ingest("doctor", env=env, cwd=tmp_path)

    row = next(line for line in result.stdout.splitlines() if "transport security" in line)
    assert "WARN" in row
    assert "INGEST_CERTAINLY__BASE_URL is http://" in row and "INGEST_IMAP__SECURITY is none" in row
    assert "insecure setting: INGEST_CERTAINLY__BASE_URL is http://" in result.stderr
    assert "insecure setting: INGEST_IMAP__SECURITY is none" in result.stderr


def test_an_api_answer_over_the_size_cap_is_not_read(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    huge = b"[" + b",".join([b'{"id": 1, "text": "' + b"x" * 1000 + b'"}'] * 5000) + b"]"  # ~5 MB
    sim.script_get(Fault(status=200, body=huge))
    env = job_env(sim, imap, tmp_path, INGEST_CERTAINLY__MAX_RESPONSE_BYTES=str(1 << 20))

    result = run_ingest(
        "fetch", "--bot", BOT, "--from", "2024-03-01", "--to", "2024-03-02", env=env, cwd=tmp_path
    )

    assert result.returncode == 3, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: Certainly API: answer of more than 1048576 bytes")
    )
    assert "INGEST_CERTAINLY__MAX_RESPONSE_BYTES" in result.stderr
    assert not (tmp_path / "archive" / "messages").exists()


def test_an_api_answer_dripping_past_the_deadline_is_cut_off(tmp_path: Path) -> None:
    stop = threading.Event()

    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        handler.wfile.write(b"[")
        for _ in range(600):  # one byte every 0.2 s: every read succeeds, the whole never ends
            if stop.wait(0.2):
                return
            try:
                handler.wfile.write(b" ")
                handler.wfile.flush()
            except OSError:
                return

    with Http(drip) as api:
        env = dict(
            INGEST_CERTAINLY__BASE_URL=api.url,
            INGEST_CERTAINLY__TOKEN="tok",
            INGEST_CERTAINLY__REPORT_PATH="report/",
            INGEST_CERTAINLY__TIMEOUT="2",
            INGEST_CERTAINLY__DEADLINE="3",
            INGEST_STATE__PATH=str(tmp_path / "state.sqlite"),
            INGEST_OUTPUT__ROOT=str(tmp_path / "archive"),
        )
        started = time.monotonic()
        try:
            result = run_ingest(
                "fetch",
                "--bot",
                BOT,
                "--from",
                "2024-03-01",
                "--to",
                "2024-03-02",
                env=env,
                cwd=tmp_path,
                timeout=90,
            )
        finally:
            stop.set()
        took = time.monotonic() - started

    assert result.returncode == 3, result.stderr
    assert "no complete answer within 3 s (INGEST_CERTAINLY__DEADLINE)" in result.stderr
    print(f"\n[measured] dripping API answer cut off after {took:.1f} s (deadline 3 s)")
