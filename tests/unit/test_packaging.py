"""Packaging: the embedded IMAP server only in the ``demo`` extra, the lint and type tools
only in the ``lint`` dependency group, one source for the version, and ``ingest demo``
refusing plainly where the extra is not installed."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import ingest
from ingest.simulator import EmbeddedImap
from tests.support.job import run_ingest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
README = (REPO / "README.md").read_text()


def _names(requirements: list[str]) -> set[str]:
    """Distribution names (with their extras) of requirement strings."""
    return {re.split(r"[<>=!~;\s]", r, maxsplit=1)[0].lower() for r in requirements}


def test_pymap_is_only_in_the_demo_extra_which_the_tests_install() -> None:
    project = PYPROJECT["project"]
    assert not any(n.startswith("pymap") for n in _names(project["dependencies"]))
    extras = project["optional-dependencies"]
    assert "pymap" in _names(extras["demo"])
    assert "certainly-ingest[demo]" in _names(extras["test"])


def test_lint_tools_are_a_dependency_group_that_ci_installs_before_its_checks() -> None:
    """Nobody running the tests needs ruff or mypy (PEP 735: a group, not an extra), yet CI
    still runs every code check: .ci/run installs the group, with a pip that knows groups."""
    lint = _names(PYPROJECT["dependency-groups"]["lint"])
    assert {"ruff", "mypy", "types-requests", "import-linter"} <= lint
    assert not lint & _names(PYPROJECT["project"]["optional-dependencies"]["test"])
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.index("pip install -q --upgrade 'pip>=25.1'") < ci.index("pip install -q --group lint")
    assert ci.index("pip install -q --group lint") < ci.index(".venv/bin/ruff check")


def _installed_closure(requirements: list[str]) -> set[str]:
    """The distributions a plain ``pip install`` of ``requirements`` brings, by their
    installed metadata (requirements of an extra not followed), normalised names."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo.extend(Requirement(r) for r in importlib.metadata.requires(req.name) or [])
    return seen


def _imported_top_modules() -> set[str]:
    """Top-level modules imported anywhere in ingest/ (at module level or in a function)."""
    found: set[str] = set()
    for path in (REPO / "ingest").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.partition(".")[0])
    return found - set(sys.stdlib_module_names) - {"ingest"}


def test_every_module_the_code_imports_comes_with_a_plain_install() -> None:
    """What ``pip install certainly-ingest`` (and the image) holds is enough for every import:
    a library present here only through the test tools (click via mkdocs once) would break
    the production install with a ModuleNotFoundError."""
    closure = _installed_closure(PYPROJECT["project"]["dependencies"])
    providers = importlib.metadata.packages_distributions()
    missing = {
        module: providers.get(module)
        for module in _imported_top_modules()
        if not {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(module, [])} & closure
    }
    assert not missing, f"imported but not installed by the base dependencies: {missing}"


def test_readme_quick_start_installs_the_demo_extra() -> None:
    assert "python3 -m venv .venv && .venv/bin/pip install '.[demo]' && .venv/bin/ingest demo" in README


def test_the_version_is_written_once_in_the_package() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ingest.__version__"}
    assert importlib.metadata.version("certainly-ingest") == ingest.__version__  # the install's metadata
    done = run_ingest("--version", cwd=REPO, timeout=60)
    assert done.stdout.strip() == f"certainly-ingest {ingest.__version__}"


def _without_pymap(tmp_path: Path) -> dict[str, str]:
    """Variables making pymap unimportable in a child Python, as in a production install:
    a sitecustomize on PYTHONPATH marks it absent before anything else is imported."""
    blocker = tmp_path / "no-pymap"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['pymap'] = None\n")
    return {"PYTHONPATH": f"{blocker}:{REPO}"}


def test_demo_without_pymap_exits_2_saying_what_to_install(tmp_path: Path) -> None:
    env = _without_pymap(tmp_path)
    probe = subprocess.run(
        [sys.executable, "-c", "import pymap"], env=env, capture_output=True, text=True, timeout=60
    )
    assert probe.returncode != 0, "the blocker did not hide pymap"

    out = tmp_path / "demo-out"
    done = run_ingest("demo", "--out", str(out), env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: ingest demo needs its embedded IMAP server (pymap), which is not installed "
        "(install the demo extra: pip install 'certainly-ingest[demo]', or '.[demo]' from a clone)"
    ]
    assert done.stdout == ""
    assert not out.exists(), "the demo created its folder before refusing"


def test_demo_with_a_pymap_that_cannot_start_exits_2_in_one_line(tmp_path: Path) -> None:
    """A broken or incompatible pymap (here: one whose entry point fails) is named in one
    line with its last words, not a traceback."""
    fake = tmp_path / "broken" / "pymap"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "main.py").write_text(
        "import sys\n\ndef main():\n"
        "    print('Traceback (most recent call last):', file=sys.stderr)\n"
        "    print(\"ImportError: cannot import name 'backend'\", file=sys.stderr)\n"
        "    sys.exit(1)\n"
    )
    env = {"PYTHONPATH": f"{fake.parent}:{REPO}"}  # the demo's pymap child inherits it
    done = run_ingest("demo", "--out", str(tmp_path / "out"), env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: the demo's embedded IMAP server (pymap) did not start: ImportError: cannot import "
        "name 'backend' (reinstall the demo extra: pip install --force-reinstall 'certainly-ingest[demo]')"
    ]


def test_embedded_imap_without_pymap_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymap", None)
    with pytest.raises(RuntimeError, match=r"pymap is not installed: pip install 'certainly-ingest\[demo\]'"):
        EmbeddedImap().start()
