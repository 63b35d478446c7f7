"""One exception tree for the whole package.

Retry logic asks one question (``isinstance(err, TransientError)``) and the CLI maps
the tree to exit codes and one-line messages in one place (``ingest.cli.application``)::

    IngestError                      base; ``str(err)`` is a one-line, secret-free message
    +-- LockHeld                     another run holds the state store (exit 0: not a failure)
    +-- TransientError               may succeed if tried again later
    |   +-- ApiUnavailable           5xx, 429, time-out, connection refused
    |   +-- MailboxUnavailable       IMAP connection dropped or refused
    |   +-- StorageUnavailable       the object store is unreachable or failing (5xx)
    +-- TerminalError                needs a person; retrying will not help
        +-- ConfigError              a setting is missing or wrong (exit 2)
        +-- TokenRejected            the Certainly API refused the token (401/403)
        +-- ApiRefused               the Certainly API refused a request (400/422...)
        +-- MailboxAuthError         the IMAP server refused the login
        +-- StateError               the state store is corrupt, locked or too new
        +-- OutputError              the archive root cannot be written
        +-- ReportRejected           a report file cannot be archived (goes to quarantine)
        +-- UnderLegalHold           an erasure would touch data a legal hold keeps (exit 1)
        +-- RecordTooNew             an archive record's format_version is newer than this tool reads
"""

from __future__ import annotations

import errno


class IngestError(Exception):
    """Base of every error this package raises on purpose."""

    #: Settings a person may want to look at; shown after the message.
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class LockHeld(IngestError):
    """Another ``ingest`` process holds the state store's lock; this one stands down."""


class TransientError(IngestError):
    """Trying again later may succeed."""


class TerminalError(IngestError):
    """Retrying will not help: a person must act."""


class ApiUnavailable(TransientError):
    """The Certainly API did not answer usefully (5xx, 429, time-out, refused)."""


class MailboxUnavailable(TransientError):
    """The IMAP server could not be reached or dropped the connection."""


class StorageUnavailable(TransientError):
    """The S3-compatible store could not be reached or kept failing (5xx) after retries."""


class ConfigError(TerminalError):
    """A setting is missing or invalid. The message names the variable."""


class TokenRejected(TerminalError):
    """The Certainly API refused the token (401/403)."""

    hint = "INGEST_CERTAINLY__TOKEN"


class ApiRefused(TerminalError):
    """The Certainly API refused a request as invalid (400/422 ...)."""


class MailboxAuthError(TerminalError):
    """The IMAP server refused the credentials."""


class StateError(TerminalError):
    """The state store cannot be used (corrupt, newer schema, locked)."""


class OutputError(TerminalError):
    """The archive root cannot be written."""


class ReportRejected(TerminalError):
    """A report file cannot be archived as a whole (it is quarantined with this reason)."""


class UnderLegalHold(TerminalError):
    """An erasure would delete data a legal hold keeps: a person decides (the hold's reason)."""


class RecordTooNew(TerminalError):
    """A record in the archive (or a bundle) has a newer ``format_version`` than this tool
    reads (:mod:`ingest.records`): it is refused, never guessed at; a newer tool reads it."""


#: errno values of an OutputError that say the archive itself cannot be written (full,
#: read-only, no permission), as opposed to one message's file (a name too long).
_STORE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


def stops_the_run(err: BaseException) -> bool:
    """Whether ``err``, raised while handling one message (or one imported file), is the
    run's problem rather than that message's: a lost connection or an unavailable store
    (TransientError, exit 3), settings (ConfigError), the state store (StateError), or
    an archive or temporary folder that cannot be written (full, read-only). Anything
    else is caught at the message boundary: the message is set aside with its reason
    and the run goes on (see ``ingest.pipeline.poll.poll_folder``)."""
    if isinstance(err, (TransientError, ConfigError, StateError)):
        return True
    if isinstance(err, OutputError):
        cause = err.__cause__ or err.__context__
        return not isinstance(cause, OSError) or cause.errno in _STORE_ERRNOS
    # A full or read-only disk met outside our own wrappers (pyarrow, polars, tempfile).
    return isinstance(err, OSError) and err.errno in _STORE_ERRNOS


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an error's message, bounded; its type's name when it says nothing."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__


def described(err: BaseException, limit: int = 300) -> str:
    """``Type: first line`` of an error from a library (a socket, zlib, zipfile)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {first_line(err, limit)}"[:limit] if text else type(err).__name__


def one_line(err: BaseException) -> str:
    """A one-line, bounded reason for an error caught at a message boundary: the message
    of one of ours, else the exception's type and first words (never a traceback)."""
    if isinstance(err, IngestError):
        text = " ".join(str(err).split())
    elif isinstance(err, RecursionError):
        text = "structure nested too deeply to read (RecursionError)"
    else:
        detail = " ".join(str(err).split())
        text = f"unexpected {type(err).__name__}" + (f": {detail}" if detail else "")
    return text[:400]
