"""The README is the contract users read: keep it in step with the code."""

from __future__ import annotations

import re
from pathlib import Path


README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_container_instructions_are_what_ci_runs() -> None:
    assert "bash tests/container/build_and_run.sh" in README
    script = Path(__file__).resolve().parents[2] / "tests" / "container" / "build_and_run.sh"
    text = script.read_text()
    assert "ingest demo" in text  # refused in the image: no IMAP server there
    assert all(f"in_job {command}" in text for command in ("backfill", "run --until-done", "verify"))


def test_package_map_matches_the_folders() -> None:
    """Every stage package and module of ``ingest/`` is in the README's map, and nothing else."""
    start = README.index("<!-- package-map:start -->")
    block = README[start : README.index("<!-- package-map:end -->")]
    root = Path(__file__).resolve().parents[2] / "ingest"
    named = set(re.findall(r"\b([a-z_0-9]+)(?:\.py|/)", block)) - {"ingest"}
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    modules = {
        p.stem
        for p in root.rglob("*.py")
        if p.stem not in ("__init__", "__main__") and "simulator" not in p.parts
    }
    assert packages <= named, f"packages missing from the README map: {sorted(packages - named)}"
    assert modules <= named, f"modules missing from the README map: {sorted(modules - named)}"
    assert named <= packages | modules, f"README map names what is gone: {sorted(named - packages - modules)}"
