"""Settings: environment, .env, secrets directory, TOML, precedence and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import ConfigError
from ingest.settings import explicit_settings, load_settings

SECRET_TOKEN = "tok-9f8e7d6c5b4a-very-secret"


pytestmark = pytest.mark.usefixtures("clean_env")


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ingest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_configuration() -> None:
    settings = load_settings()
    assert settings.imap.host is None
    assert settings.imap.effective_port == 993
    assert settings.certainly.token is None
    assert settings.imap.allowed_senders == []


def test_env_prefix_and_double_underscore_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_IMAP__HOST", "imap.example.com")
    monkeypatch.setenv("INGEST_IMAP__PORT", "1143")
    monkeypatch.setenv("INGEST_IMAP__SECURITY", "starttls")
    monkeypatch.setenv("INGEST_CERTAINLY__REPORT_PATH", "v1/message-report/")
    monkeypatch.setenv("INGEST_REQUESTER__WINDOW_DAYS", "7")
    monkeypatch.setenv("INGEST_OUTPUT__ROOT", "/data/archive")
    monkeypatch.setenv("INGEST_STATE__PATH", "/data/state.sqlite")

    settings = load_settings()

    assert settings.imap.host == "imap.example.com"
    assert settings.imap.port == 1143
    assert settings.imap.security == "starttls"
    assert settings.certainly.report_path == "v1/message-report/"
    assert settings.requester.window_days == 7
    assert settings.output.root == "/data/archive"
    assert settings.state.path == Path("/data/state.sqlite")


def test_allowed_senders_is_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_IMAP__ALLOWED_SENDERS", " reports@certainly.io, @example.com ,, ")
    monkeypatch.setenv("INGEST_CERTAINLY__BOTS", "bot-a,bot-b")

    settings = load_settings()

    assert settings.imap.allowed_senders == ["reports@certainly.io", "@example.com"]
    assert settings.certainly.bots == ["bot-a", "bot-b"]


def test_dotenv_file_in_the_working_directory(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        "INGEST_IMAP__HOST=dotenv.example\nINGEST_IMAP__ALLOWED_SENDERS=a@x.io,@y.io\n"
        "UNRELATED_VARIABLE=ignored\n",
        encoding="utf-8",
    )

    settings = load_settings()

    assert settings.imap.host == "dotenv.example"
    assert settings.imap.allowed_senders == ["a@x.io", "@y.io"]


def test_environment_beats_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("INGEST_IMAP__HOST=dotenv.example\n", encoding="utf-8")
    monkeypatch.setenv("INGEST_IMAP__HOST", "env.example")

    assert load_settings().imap.host == "env.example"


def test_secrets_dir_file_and_secret_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    # Kubernetes and Docker secret files often end with a newline.
    (secrets / "ingest_certainly__token").write_text(SECRET_TOKEN + "\n", encoding="utf-8")
    monkeypatch.setenv("INGEST_SECRETS_DIR", str(secrets))

    settings = load_settings()

    assert settings.certainly.token is not None
    assert settings.certainly.token.get_secret_value() == SECRET_TOKEN
    assert SECRET_TOKEN not in repr(settings)
    assert SECRET_TOKEN not in str(settings)
    assert SECRET_TOKEN not in repr(settings.certainly)
    assert SECRET_TOKEN not in settings.model_dump_json()


def test_toml_file_named_by_ingest_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _toml(
        tmp_path,
        """
[imap]
host = "toml.example"
port = 1143
allowed_senders = ["reports@certainly.io", "@example.com"]

[certainly]
report_path = "toml/report/"
""",
    )
    monkeypatch.setenv("INGEST_CONFIG", str(config))

    settings = load_settings()

    assert settings.imap.host == "toml.example"
    assert settings.imap.port == 1143
    assert settings.imap.allowed_senders == ["reports@certainly.io", "@example.com"]
    assert settings.certainly.report_path == "toml/report/"


def test_environment_beats_toml_field_by_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _toml(tmp_path, '[imap]\nhost = "toml.example"\nport = 1143\n')
    monkeypatch.setenv("INGEST_CONFIG", str(config))
    monkeypatch.setenv("INGEST_IMAP__HOST", "env.example")

    settings = load_settings()

    assert settings.imap.host == "env.example"
    assert settings.imap.port == 1143  # not overridden: still from TOML


def test_bad_value_names_the_variable_and_hides_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = "hunter2-s3cr3t-passw0rd"
    monkeypatch.setenv("INGEST_IMAP__PORT", bad)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert "INGEST_IMAP__PORT" in message
    assert bad not in message
    assert "\n" not in message


def test_out_of_range_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_IMAP__PORT", "70000")

    with pytest.raises(ConfigError, match="INGEST_IMAP__PORT"):
        load_settings()


def test_missing_toml_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "does-not-exist.toml"
    monkeypatch.setenv("INGEST_CONFIG", str(missing))

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert "INGEST_CONFIG" in str(caught.value)
    assert str(missing) in str(caught.value)


def test_explicit_settings_ignore_environment_dotenv_and_toml(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_IMAP__HOST", "env.example")
    monkeypatch.setenv("INGEST_IMAP__PORT", "not-a-port")  # would fail if it were read
    (clean_env / ".env").write_text("INGEST_OUTPUT__ROOT=/from/dotenv\n", encoding="utf-8")
    monkeypatch.setenv("INGEST_CONFIG", str(_toml(tmp_path, '[certainly]\nreport_path = "toml/"\n')))

    settings = explicit_settings(imap={"security": "none"})

    assert settings.imap.host is None
    assert settings.imap.security == "none"
    assert settings.imap.effective_port == 143
    assert settings.output.root == "./archive"
    assert settings.certainly.report_path is None
