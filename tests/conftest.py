"""Fixtures shared by every tier of tests."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A fresh folder outside pytest's tmp_path (which other sessions may lock to 0700):
    for archives and state stores that a Dovecot-side check may need to reach."""
    path = Path(tempfile.mkdtemp(prefix="ingest-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
