"""A name meant as a setting but naming none is refused (exit 2) with the closest setting.

A typo must not leave a safeguard silently off: ``INGEST_IMAP__REQUIRE_AUTHENTICATON=true``
used to be ignored, and sender authentication stayed off.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import ConfigError
from ingest.settings import load_settings, section_fields
from ingest.unknown_settings import PROCESS_VARIABLES, setting_names, unknown_setting
from tests.support.job import run_ingest

pytestmark = pytest.mark.usefixtures("clean_env")

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("INGEST_IMAP__REQUIRE_AUTHENTICATON", "INGEST_IMAP__REQUIRE_AUTHENTICATION"),
        ("INGEST_IMAP_HOST", "INGEST_IMAP__HOST"),
        ("ingest_imap__allowed_sender", "INGEST_IMAP__ALLOWED_SENDERS"),
        ("INGEST_IMAPS__HOST", "INGEST_IMAP__HOST"),
        ("INGEST_LOGFORMAT", "INGEST_LOG_FORMAT"),
    ],
)
def test_a_misspelt_variable_is_refused_naming_the_closest_setting(
    name: str, closest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, "true")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == f"{name} (environment) is not a setting; did you mean {closest}?"


@pytest.mark.parametrize(
    "name", ["INGEST_SERVICE_HOST", "INGEST_SERVICE_PORT_HTTPS", "INGEST_PORT", "INGEST_PORT_443_TCP_ADDR"]
)
def test_kubernetes_service_variables_are_left_alone(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Kubernetes adds these to every pod of a namespace holding a Service named "ingest".
    monkeypatch.setenv(name, "10.0.0.1")
    assert load_settings().imap.host is None


def test_a_misspelt_key_in_dotenv_is_refused(clean_env: Path) -> None:
    (clean_env / ".env").write_text("INGEST_IMAP__HOST=imap.example.com\nINGEST_IMAP__PASWORD=x\n")
    with pytest.raises(ConfigError, match=r"INGEST_IMAP__PASWORD \(\.env\) .* INGEST_IMAP__PASSWORD\?"):
        load_settings()


def test_a_misspelt_secret_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "ingest_certainly__tokn").write_text("tok-very-secret")
    (secrets / "kubernetes.io").mkdir()
    monkeypatch.setenv("INGEST_SECRETS_DIR", str(secrets))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "ingest_certainly__tokn (secret file)" in str(err.value)
    assert "INGEST_CERTAINLY__TOKEN" in str(err.value)
    assert "tok-very-secret" not in str(err.value)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[imap]\nrequire_authenticaton = true\n",
            "[imap] require_authenticaton (INGEST_CONFIG) is not a "
            "setting; did you mean require_authentication?",
        ),
        (
            "[mail]\nhost = 'x'\n",
            "[mail] (INGEST_CONFIG) is not a settings section; sections: audit, certainly,",
        ),
        ("host = 'x'\n", "host (INGEST_CONFIG) is not a section; put it under [imap]"),
    ],
)
def test_an_unknown_toml_key_is_refused(
    toml: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ingest.toml"
    path.write_text(toml)
    monkeypatch.setenv("INGEST_CONFIG", str(path))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).startswith(message)


def test_the_shipped_examples_load_as_they_are(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_CONFIG", str(CONFIG / "example.toml"))
    (clean_env / ".env").write_text((CONFIG / "example.env").read_text())
    settings = load_settings()
    assert settings.imap.require_authentication is True


_SECTIONS = section_fields()
_KNOWN = sorted(setting_names(_SECTIONS))


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from([n for n in _KNOWN if n not in PROCESS_VARIABLES]),
    case=st.sampled_from([str.upper, str.lower]),
)
def test_every_real_setting_name_is_accepted_in_either_case(name: str, case: object) -> None:
    assert callable(case)
    assert unknown_setting({case(name): "1"}, {case(name): "1"}, [case(name)], {}, sections=_SECTIONS) is None


@pytest.mark.parametrize("name", PROCESS_VARIABLES)
def test_a_process_variable_is_accepted_in_the_environment_by_its_exact_name(name: str) -> None:
    # Read with os.environ.get(name): lower case, or only in .env, it would be ignored.
    assert unknown_setting({name: "1"}, {name: "1"}, [name.lower()], {}, sections=_SECTIONS) is None
    assert unknown_setting({name.lower(): "1"}, {}, [], {}, sections=_SECTIONS) is not None
    assert unknown_setting({}, {name: "1"}, [], {}, sections=_SECTIONS) is not None


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from([n for n in _KNOWN if "__" in n]), data=st.data())
def test_any_one_letter_slip_in_a_setting_is_refused(name: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(len("INGEST_"), len(name) - 1))
    slip = name[:at] + name[at + 1 :]  # one letter dropped
    if slip.upper() in _KNOWN:
        return
    problem = unknown_setting({slip: "1"}, {}, [], {}, sections=_SECTIONS)
    assert problem is not None and problem.startswith(f"{slip} (environment) is not a setting")


def test_the_command_exits_2_with_one_line(tmp_path: Path) -> None:
    done = run_ingest("status", env={"INGEST_IMAP__REQUIRE_AUTHENTICATON": "true"}, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: INGEST_IMAP__REQUIRE_AUTHENTICATON (environment) is not a setting; "
        "did you mean INGEST_IMAP__REQUIRE_AUTHENTICATION?"
    ]
