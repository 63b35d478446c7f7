"""The ``ingest`` command: a thin layer over the library. Each command parses its
arguments, calls one library function (ingest.ops.job, ingest.ops.upkeep,
ingest.ops.compliance and the like) and renders what it returns (ingest.cli.render);
the app, its exit codes and the entry point are in ingest.cli.application.

``ingest.cli:main`` is the console script; ``from ingest.cli import app`` gives the Typer
app (the docs generator and the tests read its commands). The command modules are
imported here for their registrations: setup first (demo, doctor), then bringing reports
in, looking after the archive, and compliance; that is the order of ``ingest --help``.
"""

# isort: off
from ingest.cli import setup_cmds, pipeline_cmds, archive_cmds, compliance_cmds  # noqa: F401  (registers, in order)

# isort: on
from ingest.cli.application import (
    EXIT_ATTENTION,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_TRANSIENT,
    app,
    exit_code_for,
    main,
    run_exit_code,
)

__all__ = [
    "EXIT_ATTENTION",
    "EXIT_CONFIG",
    "EXIT_OK",
    "EXIT_TRANSIENT",
    "app",
    "exit_code_for",
    "main",
    "run_exit_code",
]
