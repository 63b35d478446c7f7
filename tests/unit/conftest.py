"""Fixtures of the unit tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No INGEST_* variable from the outer environment, and a working folder of our own
    (so no stray .env file is read): for tests of how settings are loaded."""
    for name in list(os.environ):
        if name.upper().startswith("INGEST_"):
            monkeypatch.delenv(name)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir
