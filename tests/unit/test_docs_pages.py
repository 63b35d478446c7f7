"""The pages people read stay in step with the code: the container instructions are what CI
runs, the package map in CONTRIBUTING.md names every module, and the README stays a front
door (short, pointing at pages that exist, free of dates and issue numbers)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
#: Every user page: the README and the documentation site's pages, generated ones included.
USER_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_container_instructions_are_what_ci_runs() -> None:
    assert "bash tests/container/build_and_run.sh" in OPERATIONS
    script = ROOT / "tests" / "container" / "build_and_run.sh"
    text = script.read_text()
    assert "ingest demo" in text  # refused in the image: no IMAP server there
    assert all(f"in_job {command}" in text for command in ("backfill", "run --until-done", "verify"))


def test_package_map_matches_the_folders() -> None:
    """Every stage package and module of ``ingest/`` is in CONTRIBUTING.md's map, and nothing else."""
    start = CONTRIBUTING.index("<!-- package-map:start -->")
    block = CONTRIBUTING[start : CONTRIBUTING.index("<!-- package-map:end -->")]
    root = ROOT / "ingest"
    named = set(re.findall(r"\b([a-z_0-9]+)(?:\.py|/)", block)) - {"ingest"}
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    modules = {
        p.stem
        for p in root.rglob("*.py")
        if p.stem not in ("__init__", "__main__") and "simulator" not in p.parts
    }
    assert packages <= named, f"packages missing from the map: {sorted(packages - named)}"
    assert modules <= named, f"modules missing from the map: {sorted(modules - named)}"
    assert named <= packages | modules, f"the map names what is gone: {sorted(named - packages - modules)}"


def test_the_readme_is_a_front_door_whose_links_lead_somewhere() -> None:
    assert len(README.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link]
    assert local, "the README links no page"
    assert [link for link in local if not (ROOT / link).is_file()] == []


def test_user_pages_carry_no_issue_numbers_or_commit_hashes() -> None:
    """Dates and loads belong to the measurements (bench/README.md), issue numbers and
    hashes to the history; a user page with them reads as a changelog and goes stale."""
    for page in USER_PAGES:
        text = page.read_text()
        assert not re.search(r"\bissues? \d+", text, flags=re.IGNORECASE), page
        assert not re.search(r"\bcommit [0-9a-f]{7,40}\b", text), page
