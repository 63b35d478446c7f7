"""Settings that cannot silently ignore everything, through the real `ingest` command:
the JSON form of the list settings works end to end (simulator + IMAP + archive), a bad
entry is exit 2 naming the variable, and a hostile bot id is exit 2 on every path (each
command's --bot, the environment, TOML, the GET path, import) with nothing written
anywhere, inside the archive root or outside it.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from ingest.simulator import CertainlySimulator, EmbeddedImap
from tests.support.job import job_env, run_ingest

pytestmark = pytest.mark.integration

BOT = "5e2a7c1d-0000-4000-8000-0000000000c1"
HOSTILE = "x/../../../escaped"
PASSWORD = "pw-lists"


@pytest.mark.parametrize("form", ["json", "comma"])
def test_list_settings_in_either_form_archive_the_scheduled_bot(
        form: str, sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path) -> None:
    def listed(*values: str) -> str:
        return json.dumps(list(values)) if form == "json" else ", ".join(values)

    start = date.today() - timedelta(days=3)
    env = job_env(sim, imap, tmp_path,
                  INGEST_IMAP__ALLOWED_SENDERS=listed("nobody@elsewhere.example", sim.config.sender),
                  INGEST_CERTAINLY__BOTS=listed(BOT),
                  INGEST_REQUESTER__SCHEDULE_FROM=start.isoformat())

    done = run_ingest("run", "--until-done", "--timeout", "60", env=env, cwd=tmp_path)
    status = run_ingest("status", "--json", env=env, cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    bots = json.loads(status.stdout)["bots"]
    assert [(b["bot_id"], set(b["states"])) for b in bots] == [(BOT, {"archived"})]
    assert bots[0]["rows_archived"] > 0
    messages = tmp_path / "archive" / "messages"
    assert sorted(messages.iterdir()) == [messages / "_delta_log", messages / f"bot_id={BOT}"]


@pytest.mark.parametrize("where", ["env", "toml"])
def test_a_bad_allowed_sender_is_exit_2_naming_the_variable(
        where: str, sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path) -> None:
    env = job_env(sim, imap, tmp_path)
    if where == "env":
        env["INGEST_IMAP__ALLOWED_SENDERS"] = '["reports@certainly.io", "certainly"]'
    else:
        del env["INGEST_IMAP__ALLOWED_SENDERS"]
        (tmp_path / "ingest.toml").write_text('[imap]\nallowed_senders = ["reports@certainly.io", "certainly"]\n')
        env["INGEST_CONFIG"] = str(tmp_path / "ingest.toml")

    result = run_ingest("run", env=env, cwd=tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == ("error: INGEST_IMAP__ALLOWED_SENDERS: entry 'certainly' is not an "
                                     "address, @domain or domain")
    assert not (tmp_path / "state.sqlite").exists()


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "s.csv"
    path.write_text("date,conversations\r\n2024-03-01,5\r\n", encoding="utf-8")
    return path


#: Every way a bot id reaches the job: (label, extra environment or files, command line).
PATHS = {
    "backfill --bot": ({}, ["backfill", "--bot", BOT, "--bot", HOSTILE, "--from", "2024-03-01", "--to", "2024-03-02"]),
    "fetch --bot (GET)": ({}, ["fetch", "--bot", HOSTILE, "--from", "2024-03-01", "--to", "2024-03-02"]),
    "import --bot, report type 2": ({}, ["import", "{csv}", "--bot", HOSTILE, "--report-type", "2"]),
    "import --bot": ({}, ["import", "{csv}", "--bot", HOSTILE]),
    "compact --bot": ({}, ["compact", "--bot", HOSTILE]),
    "INGEST_CERTAINLY__BOTS (run, GET)": ({"INGEST_CERTAINLY__BOTS": f"{BOT},{HOSTILE}",
                                           "INGEST_REQUESTER__USE_GET": "true"}, ["run"]),
    "TOML bots": ({"toml": f'[certainly]\nbots = ["{HOSTILE}"]\n'}, ["status"]),
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_hostile_bot_id_is_exit_2_on_every_path_and_writes_nothing(
        path: str, sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path) -> None:
    extra, args = PATHS[path]
    job = tmp_path / "a" / "b" / "c"  # "../../../escaped" from the archive would land in tmp_path
    job.mkdir(parents=True)
    env = job_env(sim, imap, job)
    if "toml" in extra:
        (job / "ingest.toml").write_text(extra["toml"], encoding="utf-8")
        env["INGEST_CONFIG"] = str(job / "ingest.toml")
    else:
        env.update(extra)
    args = [arg.replace("{csv}", str(_csv(tmp_path))) for arg in args]

    result = run_ingest(*args, env=env, cwd=job)

    assert result.returncode == 2, result.stdout + result.stderr
    named = "--bot" if "--bot" in args else "INGEST_CERTAINLY__BOTS"
    assert result.stderr.strip() == (f"error: {named}: '{HOSTILE}' is not a bot id (letters, digits, "
                                     "'-' and '_', at most 64, like the vendor's UUIDs)"
                                     if named == "--bot" else
                                     f"error: {named}: entry '{HOSTILE}' is not a bot id (letters, "
                                     "digits, '-' and '_', at most 64, like the vendor's UUIDs)")
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert written == sorted(["a", "a/b", "a/b/c", "s.csv"] + (["a/b/c/ingest.toml"] if "toml" in extra else [])), written
    assert sim.requests == []  # no GET, no POST with it
