"""The ``ingest`` app: its global options, the documented exit codes and the entry point.

Exit codes (one place, :func:`exit_code_for`): 0 done; 1 finished but something needs a
person (failed window, quarantined or unmatched report, token or login refused);
2 usage or configuration error; 3 a server was unreachable, try again later.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperOption

from ingest import __version__
from ingest.cli.render import err_console, out
from ingest.errors import ConfigError, IngestError, LockHeld, TransientError
from ingest.inert import inert
from ingest.logs import setup_logging

if TYPE_CHECKING:
    from ingest.pipeline.summary import RunSummary

app = typer.Typer(
    help="Archive Certainly chatbot message reports: request exports, pick the emailed CSVs "
    "out of an IMAP mailbox, and keep a validated Parquet archive.\n\n"
    "Example: ingest backfill --bot BOT_ID --from 2024-01-01 --to 2024-12-31 && ingest run --until-done",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _flag_shows_no_type(display_type_rich: Callable[..., str | None]) -> Callable[..., str | None]:
    """typer 0.2x prints ``<bool>`` beside every flag in --help, as if it took a value; a
    flag takes none, so it gets no type column (other options keep theirs)."""

    def shown(self: TyperOption, ctx: typer.Context) -> str | None:
        return None if self.is_flag else display_type_rich(self, ctx)

    return shown


TyperOption.display_type_rich = _flag_shows_no_type(TyperOption.display_type_rich)  # type: ignore[method-assign]

EXIT_OK, EXIT_ATTENTION, EXIT_CONFIG, EXIT_TRANSIENT = 0, 1, 2, 3
#: The job's umask: files 0640, folders 0750.
JOB_UMASK = 0o027


class _State:
    """What the global options set once per invocation."""

    verbose = False
    #: main() turns the cyclic garbage collector off while the libraries are imported.
    gc_held = False


state = _State()


def exit_code_for(error: IngestError) -> int:
    """The documented exit code for an error."""
    if isinstance(error, LockHeld):
        return EXIT_OK
    if isinstance(error, ConfigError):
        return EXIT_CONFIG
    if isinstance(error, TransientError):
        return EXIT_TRANSIENT
    return EXIT_ATTENTION


def run_exit_code(summary: RunSummary) -> int:
    """1 when a person should look; 3 when the API only said "slow down" (run again later)."""
    if summary.needs_attention:
        return EXIT_ATTENTION
    return EXIT_TRANSIENT if summary.only_throttled else EXIT_OK


def attention_code(needs_attention: bool) -> int:
    """1 when a person should look, else 0."""
    return EXIT_ATTENTION if needs_attention else EXIT_OK


def settle_gc() -> None:
    """After the imports: keep what they made out of every later collection, and collect
    again. Importing polars, pyarrow, pydantic and the package leaves about 120,000
    objects for the collector to track, and its collections walked them again and again,
    during the imports and during the run (bench/README.md: 0.1 s and more of CPU)."""
    if state.gc_held:
        state.gc_held = False
        gc.freeze()
        gc.enable()


def _version(value: bool) -> None:
    if value:
        out.print(f"certainly-ingest {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    state.verbose = verbose
    # Archive, state and metrics files 0640, folders 0750: reports are personal data, and
    # nobody outside the job's user and group should read them (see the README).
    os.umask(JOB_UMASK)
    setup_logging(verbose)
    if ctx.invoked_subcommand != "import":  # import settles it after its own imports
        settle_gc()


def main() -> None:
    """Entry point: run the app, mapping package errors to one line and an exit code.

    Usage errors are click's own (exit 2); everything this package raises on purpose is
    an :class:`IngestError` and ends here as ``error: <message> (<hint>)``.
    """
    gc.disable()  # off until the command's imports are done (see settle_gc)
    state.gc_held = True
    try:
        app()
    except IngestError as error:
        message = f"error: {error}"
        if error.hint:
            message += f" ({error.hint})"
        if isinstance(error, LockHeld):
            message = str(error)
        err_console.print(inert(message, markup=False), markup=False, highlight=False, soft_wrap=True)
        sys.exit(exit_code_for(error))
    except KeyboardInterrupt:
        err_console.print("aborted")
        sys.exit(130)
