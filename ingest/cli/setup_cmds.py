"""Commands for trying the tool and checking a set-up: demo, doctor.

Library modules are imported inside each command: ``ingest --help`` and every other
command load only what they use (start-up time is part of the promise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ingest.cli.application import app, attention_code, state
from ingest.cli.options import load_settings
from ingest.cli.render import out, print_checks


@app.command(short_help="Try the whole pipeline offline, on a simulator.")
def demo(
    bots: Annotated[int, typer.Option(min=1, max=20, help="How many simulated bots.")] = 2,
    days: Annotated[int, typer.Option(min=1, max=730, help="Days of history per bot.")] = 60,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the archive and state (default: a new temporary folder)."),
    ] = None,
) -> None:
    """Run the whole pipeline against the built-in simulator and an embedded IMAP server.

    No credentials and no network beyond 127.0.0.1.

    Needs the demo extra, the embedded IMAP server: pip install 'certainly-ingest\\[demo]'.

    Example: ingest demo --bots 2 --days 60
    """
    import logging

    from ingest.ops.demo import run_demo  # the simulator is only imported when asked for

    if not state.verbose:
        logging.getLogger().setLevel(logging.WARNING)  # the demo prints its own summary
    summary = run_demo(bots=bots, days=days, out_dir=out_dir, console=out)
    raise typer.Exit(attention_code(summary.needs_attention))


@app.command(short_help="Check settings, API token, mailbox, output and state.")
def doctor() -> None:
    """Check settings, API token, IMAP login and folders, output and state store.

    Requests no export, creates no mail folder and moves no mail.
    Exit 1 when any check fails.

    Example: ingest doctor
    """
    from ingest.ops.doctor import run_checks  # the checks import the IMAP and HTTP clients

    checks = run_checks(load_settings())
    print_checks(checks)
    raise typer.Exit(attention_code(not all(c.ok for c in checks)))
