"""The container image, built for real by ``tests/container/build_and_run.sh``, running the
real job: a private Dovecot and the simulator (over HTTP) on loopback, a host folder owned
by the image's uid as the volume ``/data``, and in the image ``ingest backfill``, ``ingest
run --until-done`` and ``ingest verify``. The archive on the host must then hold exactly
the simulator's rows, and the mailbox's processed folder the report emails.

The script installs podman, buildah and debootstrap when missing (apt-get, as root), builds a
Debian base image once (cached as ``localhost/ingest-base:bookworm``, about a minute), builds
the Dockerfile (its dependency layer is cached while pyproject.toml is unchanged) and checks
the image: non-root user, entrypoint, env, labels, no IMAP server (pymap) inside, and
``ingest demo`` refusing in one line. About a minute on a warm machine.

Always runs in CI (``CI=true``). Locally, ``INGEST_SKIP_CONTAINER=1`` skips it, e.g.
``INGEST_SKIP_CONTAINER=1 .venv/bin/python -m pytest``.
"""

from __future__ import annotations

import os
import re
import subprocess
from datetime import date
from pathlib import Path
from typing import NamedTuple

import pytest

from ingest.simulator import CertainlySimulator, ImapDelivery, SimulatorConfig
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.dovecot import private_dovecot
from tests.support.job import job_env
from tests.support.mail import snapshot, stranger_email

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tests" / "container" / "build_and_run.sh"
#: The user documentation: the README and the documentation site's pages.
DOCS = "\n".join(
    page.read_text() for page in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
)
TIMEOUT_S = 1500  # the first run on a machine builds the base image with debootstrap

USER, PASSWORD = "owner@example.test", "secret"
BOTS = ["6d2f4c1a-1111-4e2b-8c3d-00000000c0d1", "6d2f4c1a-2222-4e2b-8c3d-00000000c0d2"]
START, END = date(2024, 3, 1), date(2024, 4, 15)  # two 30-day windows per bot
APP_UID = 10001  # the Dockerfile's APP_UID
PROCESSED = "certainly-ingest/processed"
DEMO_REFUSAL = (
    "error: ingest demo needs its embedded IMAP server (pymap), which is not installed "
    "(install the demo extra: pip install 'certainly-ingest[demo]', or '.[demo]' from a clone)"
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


class _Account(NamedTuple):
    host: str
    port: int
    username: str
    password: str


def _data_volume(tmp_path: Path, dotenv: dict[str, str]) -> Path:
    """The host folder mounted as /data, owned by the image's uid as a volume would be,
    holding the job's settings as a .env file in its working directory."""
    data = tmp_path / "data"
    data.mkdir(mode=0o750)
    settings = data / ".env"
    settings.write_text("".join(f"{name}={value}\n" for name, value in dotenv.items()))
    settings.chmod(0o600)
    for path in (data, settings):
        os.chown(path, APP_UID, APP_UID)
    return data


def _build_and_run(**env: str) -> str:
    """Run the script (``env`` on top of ours); its combined output, after asserting exit 0."""
    try:
        proc = subprocess.run(
            ["bash", str(SCRIPT)],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        partial = err.output.decode("utf-8", "replace") if err.output else ""
        print(partial)
        pytest.fail(f"{SCRIPT.name} did not finish in {TIMEOUT_S} s; its output:\n{partial[-6000:]}")
    output = proc.stdout.decode("utf-8", "replace")
    print(output)  # pytest shows it for a failing test
    assert proc.returncode == 0, f"{SCRIPT.name} exited {proc.returncode}:\n{output[-6000:]}"
    assert "build and run OK" in output
    return output


def _assert_docs_quote_the_sizes(output: str) -> None:
    """The docs' "about N MB, on a base of M MB" is within 15% of what was measured."""
    measured = re.search(r"image size: (\d+) MB \(.*\), base image size: (\d+) MB", output)
    assert measured, "the script logged no image sizes"
    quoted = re.findall(r"about (\d+) MB, on a base of (\d+) MB", DOCS)
    assert quoted, "the docs give no image size (docs/operations.md, The container image)"
    for figures in quoted:
        for what, got, said in zip(("image", "base image"), measured.groups(), figures, strict=True):
            assert abs(int(said) - int(got)) <= 0.15 * int(got), (
                f"the docs say the {what} is about {said} MB; it is {got} MB now: update them"
            )


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(
    os.environ.get("INGEST_SKIP_CONTAINER") == "1" and not _in_ci(),
    reason="INGEST_SKIP_CONTAINER=1 (never honoured in CI)",
)
def test_the_image_runs_the_job_against_dovecot_and_the_simulator(tmp_path: Path) -> None:
    with private_dovecot("ingest-container-dovecot-", users={USER: PASSWORD}) as dovecot:
        delivery = ImapDelivery(dovecot.host, dovecot.port, USER, PASSWORD, folder="INBOX")
        delivery.deliver(stranger_email("newsletter@example.net"))
        config = SimulatorConfig(delivery_delay=0.05, recipient=USER)
        with CertainlySimulator(config, deliver=delivery) as sim:
            dotenv = job_env(sim, _Account(dovecot.host, dovecot.port, USER, PASSWORD), Path("/data"))
            # The image's own env places state and archive under /data (and outranks a .env).
            del dotenv["INGEST_OUTPUT__ROOT"], dotenv["INGEST_STATE__PATH"]
            data = _data_volume(tmp_path, dotenv)
            backfill = " ".join([*(f"--bot {bot}" for bot in BOTS), f"--from {START} --to {END}"])
            output = _build_and_run(INGEST_CONTAINER_DATA=str(data), INGEST_CONTAINER_BACKFILL=backfill)
            exports = sim.exports
        mailbox = snapshot(dovecot, USER, PASSWORD)

    truth = expected_rows(BOTS, START, END)
    assert_archive_matches(data / "archive", truth)
    assert f"{len(truth)} rows" in output  # ingest verify, run in the image, counted them all
    # Every report email moved to the processed folder; the stranger's left in the inbox.
    assert len(exports) == 2 * len(BOTS)
    assert sum(mailbox[PROCESSED].values()) == len(exports)
    assert sum(mailbox["INBOX"].values()) == 1
    # The job wrote the volume as its own non-root user.
    owners = {path.stat().st_uid for path in data.rglob("*")}
    assert owners == {APP_UID}, f"files under /data owned by {owners}"

    # No IMAP server in the image: the demo says what to install instead.
    assert "No module named 'pymap'" in output
    assert DEMO_REFUSAL in output.splitlines()
    if "INGEST_BASE_IMAGE" not in os.environ:  # docs/operations.md quotes the default base's figures
        _assert_docs_quote_the_sizes(output)
