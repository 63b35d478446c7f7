"""The README is the contract users read: keep it in step with the code."""

from __future__ import annotations

from pathlib import Path

from ingest.settings import reference_markdown

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_settings_reference_is_generated_from_the_model() -> None:
    start = README.index("<!-- settings-reference:start")
    body = README[README.index("\n", start) + 1:README.index("<!-- settings-reference:end -->")]
    assert body.strip() == reference_markdown(), (
        "README settings table is stale: regenerate with "
        "python -c \"from ingest.settings import reference_markdown as r; print(r())\"")


def test_container_instructions_are_what_ci_runs() -> None:
    assert "bash tests/container/build_and_run.sh" in README
    script = Path(__file__).resolve().parents[2] / "tests" / "container" / "build_and_run.sh"
    assert "ingest demo" in script.read_text()
