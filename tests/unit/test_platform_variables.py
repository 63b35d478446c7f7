"""Breaks (issue 26) of the settings a careless operator or a cluster hands the job.

Unknown ``INGEST_`` names are refused so that a typo cannot leave a safeguard off. Kubernetes
adds service-link variables to every pod (``enableServiceLinks`` is on by default): for a
Service named ``ingest-metrics`` in the namespace (a natural name beside this job), every pod
gets ``INGEST_METRICS_SERVICE_HOST``, ``INGEST_METRICS_PORT=tcp://...`` and more, and the
job refused to start (exit 2, "did you mean INGEST_METRICS?") although nobody set anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.job import run_ingest


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    return {
        "INGEST_OUTPUT__ROOT": str(workdir / "archive"),
        "INGEST_STATE__PATH": str(workdir / "state.sqlite"),
        "INGEST_SECRETS_DIR": str(workdir / "no-secrets"),
        **extra,
    }


#: What Kubernetes sets for `kind: Service, name: ingest-metrics, ports: [{name: http, port: 9100}]`.
METRICS_SERVICE_LINKS = {
    "INGEST_METRICS_SERVICE_HOST": "10.96.12.7",
    "INGEST_METRICS_SERVICE_PORT": "9100",
    "INGEST_METRICS_SERVICE_PORT_HTTP": "9100",
    "INGEST_METRICS_PORT": "tcp://10.96.12.7:9100",
    "INGEST_METRICS_PORT_9100_TCP": "tcp://10.96.12.7:9100",
    "INGEST_METRICS_PORT_9100_TCP_PROTO": "tcp",
    "INGEST_METRICS_PORT_9100_TCP_PORT": "9100",
    "INGEST_METRICS_PORT_9100_TCP_ADDR": "10.96.12.7",
}


@pytest.mark.parametrize("service", ["ingest-metrics", "ingest-imap-proxy", "ingest-state"])
def test_service_links_of_a_service_named_ingest_something_do_not_stop_the_job(
    service: str, workdir: Path
) -> None:
    prefix = service.upper().replace("-", "_")
    links = {name.replace("INGEST_METRICS", prefix): value for name, value in METRICS_SERVICE_LINKS.items()}
    done = run_ingest("status", env=_env(workdir, **links), cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "not a setting" not in done.stderr


@pytest.mark.parametrize(
    ("name", "value", "closest"),
    [
        ("INGEST_IMAP_PORT", "993", "INGEST_IMAP__PORT"),
        ("INGEST_METRICS__TEXTFLE", "/tmp/x.prom", "INGEST_METRICS__TEXTFILE"),
        ("INGEST_IMAP__REQUIRE_AUTHENTICATON", "true", "INGEST_IMAP__REQUIRE_AUTHENTICATION"),
    ],
)
def test_typos_are_still_refused_beside_service_links(
    name: str, value: str, closest: str, workdir: Path
) -> None:
    done = run_ingest("status", env=_env(workdir, **METRICS_SERVICE_LINKS, **{name: value}), cwd=workdir)
    assert done.returncode == 2
    assert f"{name} (environment) is not a setting; did you mean {closest}?" in done.stderr


TOML_WITH_AUTHENTICATION = '[imap]\nrequire_authentication = true\nauthserv_id = "mx.example.com"\n'


def test_ingest_config_in_dotenv_is_refused_not_silently_ignored(workdir: Path) -> None:
    # config/example.env is a template for .env and lists INGEST_CONFIG (commented out):
    # uncommented there, the TOML file was never read and sender authentication stayed off.
    (workdir / "ingest.toml").write_text(TOML_WITH_AUTHENTICATION)
    (workdir / ".env").write_text(f"INGEST_CONFIG={workdir / 'ingest.toml'}\n")
    done = run_ingest("status", env=_env(workdir), cwd=workdir)
    assert done.returncode == 2
    assert "INGEST_CONFIG (.env) is read from the environment only" in done.stderr


def test_ingest_config_in_dotenv_and_in_the_environment_is_fine(workdir: Path) -> None:
    # A .env both sourced into the shell and lying in the working folder: the environment's
    # INGEST_CONFIG is the one read, nothing is ignored.
    (workdir / "ingest.toml").write_text(TOML_WITH_AUTHENTICATION)
    (workdir / ".env").write_text(f"INGEST_CONFIG={workdir / 'ingest.toml'}\n")
    done = run_ingest("status", env=_env(workdir, INGEST_CONFIG=str(workdir / "ingest.toml")), cwd=workdir)
    assert done.returncode == 0, done.stderr


def test_a_lower_case_ingest_config_is_refused(workdir: Path) -> None:
    # pydantic-settings reads settings in any case, but INGEST_CONFIG is read by its exact
    # name: ingest_config=... silently dropped the TOML file.
    (workdir / "ingest.toml").write_text(TOML_WITH_AUTHENTICATION)
    done = run_ingest("status", env=_env(workdir, ingest_config=str(workdir / "ingest.toml")), cwd=workdir)
    assert done.returncode == 2
    assert "ingest_config (environment) is upper case only; set INGEST_CONFIG" in done.stderr


def test_ingest_config_as_a_secret_file_is_refused(workdir: Path) -> None:
    secrets = workdir / "secrets"
    secrets.mkdir()
    (workdir / "ingest.toml").write_text(TOML_WITH_AUTHENTICATION)
    (secrets / "ingest_config").write_text(str(workdir / "ingest.toml"))
    done = run_ingest("status", env=_env(workdir, INGEST_SECRETS_DIR=str(secrets)), cwd=workdir)
    assert done.returncode == 2
    assert "ingest_config (secret file) is read from the environment only" in done.stderr
