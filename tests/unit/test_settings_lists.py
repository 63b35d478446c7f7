"""Every list setting, in the JSON form and the comma form, from every source (environment,
.env, a secret file, TOML); every entry checked, a bad one named by its variable; and the
precedence of secret files over .env.

The list settings are found on the models, so a new one is covered without a new test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_origin

import pytest
from pydantic import BaseModel

from ingest.errors import ConfigError
from ingest.settings import Settings, env_name, load_settings

#: Good entries per list setting (field location -> values); every list field must be here.
GOOD: dict[tuple[str, str], list[str]] = {
    ("imap", "allowed_senders"): ["reports@certainly.io", "@certainly.io", "mail.certainly.io"],
    ("certainly", "bots"): ["0f9c2a1e-6b7d-4c1a-9d4e-1234567890ab", "bot_2", "B-3"],
    ("certainly", "account_email"): ["owner@example.com", "Reports.Alias+certainly@Example.com"],
}
#: An entry each list setting must refuse.
BAD: dict[tuple[str, str], str] = {
    ("imap", "allowed_senders"): "reports at certainly.io",
    ("certainly", "bots"): "x/../../../escaped",
    ("certainly", "account_email"): "@example.com",
}
SOURCES = ("env", "dotenv", "secret_file", "toml")


def list_settings() -> list[tuple[str, str]]:
    """Every (section, field) whose type is a list."""
    found = []
    for section, info in Settings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for name, field in model.model_fields.items():
            if get_origin(field.annotation) is list or field.annotation is list:
                found.append((section, name))
    return found


pytestmark = pytest.mark.usefixtures("clean_env")


def put(source: str, loc: tuple[str, str], text: str, where: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Give the setting at ``loc`` the raw text ``text`` through ``source``."""
    variable = env_name(*loc)
    if source == "env":
        monkeypatch.setenv(variable, text)
    elif source == "dotenv":
        (where / ".env").write_text(f"{variable}={text}\n", encoding="utf-8")
    elif source == "secret_file":
        secrets = where.parent / "secrets"
        secrets.mkdir(exist_ok=True)
        (secrets / variable.lower()).write_text(text + "\n", encoding="utf-8")
        monkeypatch.setenv("INGEST_SECRETS_DIR", str(secrets))
    else:
        toml = where.parent / "ingest.toml"
        toml.write_text(f"[{loc[0]}]\n{loc[1]} = {json.dumps(text)}\n", encoding="utf-8")
        monkeypatch.setenv("INGEST_CONFIG", str(toml))


def value_at(settings: Settings, loc: tuple[str, str]) -> Any:
    return getattr(getattr(settings, loc[0]), loc[1])


def test_every_list_setting_is_covered_here() -> None:
    assert sorted(list_settings()) == sorted(GOOD) == sorted(BAD)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("form", ["json", "comma"])
@pytest.mark.parametrize("loc", sorted(GOOD), ids=lambda loc: env_name(*loc))
def test_a_list_setting_takes_both_forms_from_every_source(
    loc: tuple[str, str], form: str, source: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = GOOD[loc]
    text = json.dumps(values) if form == "json" else " , ".join(values) + ","
    put(source, loc, text, clean_env, monkeypatch)

    assert value_at(load_settings(), loc) == values


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("form", ["json", "comma"])
@pytest.mark.parametrize("loc", sorted(BAD), ids=lambda loc: env_name(*loc))
def test_a_bad_entry_is_a_config_error_naming_the_variable(
    loc: tuple[str, str], form: str, source: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = [GOOD[loc][0], BAD[loc]]
    put(source, loc, json.dumps(values) if form == "json" else ",".join(values), clean_env, monkeypatch)

    with pytest.raises(ConfigError) as raised:
        load_settings()

    assert str(raised.value).startswith(env_name(*loc) + ": entry ")
    assert BAD[loc] in str(raised.value)


def test_the_json_form_is_not_taken_as_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    # '["certainly.io"]' used to become the single entry '["certainly.io"]', matching nothing.
    monkeypatch.setenv("INGEST_IMAP__ALLOWED_SENDERS", '["certainly.io"]')
    assert load_settings().imap.allowed_senders == ["certainly.io"]


@pytest.mark.parametrize("text", ['["certainly.io"', '{"a": 1}', "[1, 2]"])
def test_broken_json_is_refused_not_split(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_IMAP__ALLOWED_SENDERS", text)
    with pytest.raises(ConfigError, match="^INGEST_IMAP__ALLOWED_SENDERS: "):
        load_settings()


def test_secret_files_outrank_dotenv_and_the_environment_outranks_both(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text(
        "INGEST_IMAP__USERNAME=from-dotenv\nINGEST_IMAP__HOST=dotenv.example\n"
        "INGEST_IMAP__FOLDER=DotenvFolder\n",
        encoding="utf-8",
    )
    secrets = clean_env.parent / "secrets"
    secrets.mkdir()
    (secrets / "ingest_imap__username").write_text("from-secret-file\n", encoding="utf-8")
    (secrets / "ingest_imap__host").write_text("secret.example\n", encoding="utf-8")
    monkeypatch.setenv("INGEST_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("INGEST_IMAP__HOST", "env.example")

    imap = load_settings().imap

    assert (imap.username, imap.host, imap.folder) == ("from-secret-file", "env.example", "DotenvFolder")
