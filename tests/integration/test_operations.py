"""What operators rely on: one job at a time, JSON logs without secrets, doctor,
metrics and the documented exit codes. Real simulator and pymap on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ingest.simulator import CertainlySimulator, EmbeddedImap, SimulatorConfig
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.job import job_env, run_ingest, start_ingest

pytestmark = pytest.mark.integration

BOT = "7d1c0b9a-0000-4000-8000-00000000000a"
TOKEN = "tok-SECRET-7f3a9c2e"
PASSWORD = "pw-SECRET-b41d77"


def simulator(imap: EmbeddedImap, **config: object) -> CertainlySimulator:
    return CertainlySimulator(
        SimulatorConfig(token=TOKEN, recipient=imap.username, **config),  # type: ignore[arg-type]
        deliver=imap.delivery(),
    )


def test_a_second_concurrent_run_stands_down_and_the_first_completes(
    imap: EmbeddedImap, tmp_path: Path
) -> None:
    with simulator(imap, delivery_delay=3.0) as sim:
        env = job_env(sim, imap, tmp_path)
        assert (
            run_ingest(
                "backfill", "--bot", BOT, "--from", "2024-03-01", "--to", "2024-03-10", env=env, cwd=tmp_path
            ).returncode
            == 0
        )
        first = start_ingest("run", "--until-done", "--timeout", "60", env=env, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 20
            while not sim.exports and time.monotonic() < deadline:
                time.sleep(0.05)  # the first job has submitted: it holds the lock
            second = run_ingest("run", env=env, cwd=tmp_path, timeout=30)
            assert second.returncode == 0
            assert "another run holds the lock" in second.stderr
            out, err = first.communicate(timeout=90)
        finally:
            first.kill()
        assert first.returncode == 0, out + err
    assert_archive_matches(tmp_path / "archive", expected_rows([BOT], *_dates("2024-03-01", "2024-03-10")))


def test_json_logs_carry_ids_and_never_a_secret(imap: EmbeddedImap, tmp_path: Path) -> None:
    with simulator(imap, delivery_delay=0.05) as sim:
        env = job_env(sim, imap, tmp_path, INGEST_LOG_FORMAT="json")
        run_ingest(
            "backfill", "--bot", BOT, "--from", "2024-03-01", "--to", "2024-03-05", env=env, cwd=tmp_path
        )
        done = run_ingest("--verbose", "run", "--until-done", "--timeout", "60", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
        assert any(r.get("window_id") and r.get("bot_id") == BOT for r in lines)
        assert any("uid" in r and "message_id" in r for r in lines)
        # Wrong credentials: the messages say what is wrong, never the secret itself.
        bad_pw = run_ingest("run", env={**env, "INGEST_IMAP__PASSWORD": PASSWORD + "x"}, cwd=tmp_path)
        bad_token = run_ingest(
            "fetch",
            "--bot",
            BOT,
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
            env={**env, "INGEST_CERTAINLY__TOKEN": TOKEN + "x"},
            cwd=tmp_path,
        )
    assert bad_pw.returncode == 1 and "refused the login" in bad_pw.stderr
    assert bad_token.returncode == 1 and "rejected the token" in bad_token.stderr
    for result in (done, bad_pw, bad_token):
        everything = result.stdout + result.stderr
        assert TOKEN not in everything and PASSWORD not in everything
        assert "Traceback" not in everything


def test_doctor_passes_on_a_good_setup_and_names_what_is_wrong(imap: EmbeddedImap, tmp_path: Path) -> None:
    with simulator(imap) as sim:
        env = job_env(sim, imap, tmp_path, COLUMNS="200")
        good = run_ingest("doctor", env=env, cwd=tmp_path)
        bad = run_ingest(
            "doctor",
            env={**env, "INGEST_CERTAINLY__TOKEN": "nope", "INGEST_IMAP__PASSWORD": "nope"},
            cwd=tmp_path,
        )
    assert good.returncode == 0, good.stdout
    assert "token accepted" in good.stdout and "FAIL" not in good.stdout
    assert bad.returncode == 1
    assert "token rejected" in bad.stdout and "refused the login" in bad.stdout
    assert not (tmp_path / "state.sqlite").exists()  # the doctor changes nothing


def test_metrics_textfile_after_a_run(imap: EmbeddedImap, tmp_path: Path) -> None:
    prom = tmp_path / "metrics" / "ingest.prom"
    with simulator(imap, delivery_delay=0.05) as sim:
        env = job_env(sim, imap, tmp_path, INGEST_METRICS__TEXTFILE=str(prom))
        run_ingest(
            "backfill", "--bot", BOT, "--from", "2024-03-01", "--to", "2024-03-03", env=env, cwd=tmp_path
        )
        assert run_ingest("run", "--until-done", "--timeout", "60", env=env, cwd=tmp_path).returncode == 0
    text = prom.read_text()
    assert 'ingest_windows{state="archived"} 1' in text
    assert "ingest_last_success_timestamp_seconds" in text
    rows = len(expected_rows([BOT], *_dates("2024-03-01", "2024-03-03")))
    assert f"ingest_archive_rows {rows}" in text


def test_exit_codes(imap: EmbeddedImap, tmp_path: Path) -> None:
    with simulator(imap) as sim:
        env = job_env(sim, imap, tmp_path, INGEST_LOG_FORMAT="text")  # text: warnings and up only
        usage = run_ingest(
            "backfill", "--bot", BOT, "--from", "yesterday", "--to", "2024-01-01", env=env, cwd=tmp_path
        )
        config = run_ingest("run", env={**env, "INGEST_IMAP__SECURITY": "ssl3"}, cwd=tmp_path)
        unreachable = run_ingest("run", env={**env, "INGEST_IMAP__PORT": "1"}, cwd=tmp_path)
        run_ingest(
            "backfill", "--bot", BOT, "--from", "2024-03-01", "--to", "2024-03-02", env=env, cwd=tmp_path
        )
        refused = run_ingest("run", env={**env, "INGEST_CERTAINLY__TOKEN": "wrong"}, cwd=tmp_path)
    assert usage.returncode == 2
    assert config.returncode == 2 and config.stderr.startswith("error: INGEST_IMAP__SECURITY")
    assert unreachable.returncode == 3 and "cannot connect to IMAP server" in unreachable.stderr
    assert refused.returncode == 1 and "rejected the token" in refused.stderr
    for result in (config, unreachable, refused):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _dates(first: str, last: str) -> tuple:  # type: ignore[type-arg]
    from datetime import date

    return date.fromisoformat(first), date.fromisoformat(last)
