"""Where the job's folders sit on the server: inside the personal namespace (RFC 2342),
spelled with the server's hierarchy separator, and never on a special-use folder by
accident.

Settings name folders with ``/`` between levels (``certainly-ingest/processed``). On a
server whose personal namespace has a prefix (cPanel's Dovecot, Courier, Cyrus with
``altnamespace: no``: ``INBOX.`` with ``.``) a folder outside that prefix does not exist
and cannot be created ("nonexistent namespace"), so the name is placed inside it:
``INBOX.certainly-ingest.processed``. A name that already carries the prefix, or names
another namespace (shared folders, other users), is only re-spelled. A server without
NAMESPACE keeps the old behaviour: ``/`` becomes the separator ``LIST "" ""`` reports.

Example::

    layout = Layout(prefix="INBOX.", separator=".")
    layout.server_name("certainly-ingest/processed")  # 'INBOX.certainly-ingest.processed'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from imapclient.imap_utf7 import decode as decode_utf7
from imapclient.response_parser import parse_response

from ingest.errors import ConfigError
from ingest.settings import ImapSettings

log = logging.getLogger(__name__)

#: RFC 6154 special-use attributes (and Gmail's \Important): mail a person keeps or
#: throws away; the job must not move reports into them, nor take them for its own.
SPECIAL_USE_FLAGS = frozenset(
    {"\\ALL", "\\ARCHIVE", "\\DRAFTS", "\\FLAGGED", "\\JUNK", "\\SENT", "\\TRASH", "\\IMPORTANT"}
)
#: Names mail programs and providers give those folders, for servers that do not flag
#: them (compared case-insensitively with the folder's last level).
SPECIAL_NAMES = frozenset(
    {
        "trash", "deleted", "deleted items", "deleted messages", "bin",
        "junk", "junk e-mail", "junk email", "spam", "bulk mail",
        "sent", "sent items", "sent messages", "sent mail", "outbox",
        "drafts", "draft", "archive", "archives", "all mail", "starred", "important", "flagged",
    }
)  # fmt: skip
#: Top levels that hold only a provider's special folders (Gmail's, in two spellings).
PROVIDER_LEVELS = ("[gmail]", "[google mail]")
#: The setting names of the folders the job moves mail into.
MOVE_TARGETS = ("processed_folder", "failed_folder", "rejected_folder")
# LIST wildcards and control characters have no place in a folder name the job creates.
_UNFIT = re.compile(r"[*%\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Layout:
    """How the server names folders: the personal namespace's prefix and separator, and
    the prefixes of the other namespaces (left alone when a setting names them)."""

    prefix: str = ""
    separator: str = "/"
    others: tuple[str, ...] = ()
    announced: bool = False  # the server answered NAMESPACE (else: the LIST separator only)
    fallback: str = ""  # why NAMESPACE was not used although announced (refused, unreadable)

    def server_name(self, name: str) -> str:
        """The server's name for a configured folder (``/`` between levels)."""
        spelled = self.canonical(name.replace("/", self.separator) if self.separator else name)
        if spelled == "INBOX":
            return "INBOX"  # never prefixed: the inbox is the inbox on every server
        if self.prefix and _starts_with(spelled, self.prefix):
            return self.prefix + spelled[len(self.prefix) :]
        if any(other and spelled.startswith(other) for other in self.others):
            return spelled
        return self.prefix + spelled

    def canonical(self, server_name: str) -> str:
        """A server name with its first level spelled ``INBOX`` when it is the inbox in
        any case: RFC 3501 5.1 makes INBOX case-insensitive, yet Cyrus creates ``INBOX/x``
        for ``inbox/x`` and then finds nothing by ``LIST "" "inbox/x"``."""
        first, sep, rest = server_name.partition(self.separator) if self.separator else (server_name, "", "")
        return "INBOX" + sep + rest if first.upper() == "INBOX" else server_name

    def same_folder(self, listed: str, server_name: str) -> bool:
        """Whether a name LIST answered is the folder ``server_name`` (INBOX in any case)."""
        return self.canonical(listed) == self.canonical(server_name)

    def empty_level(self, name: str) -> bool:
        """Whether a configured name has an empty level once spelled with the server's
        separator (``.Reports``, ``a..b`` where it is ``.``): no folder LIST finds again."""
        spelled = name.replace("/", self.separator) if self.separator else name
        return bool(self.separator) and not all(level.strip() for level in spelled.split(self.separator))

    def describe(self) -> str:
        """One line for ``doctor``: the namespace, the separator and where they came from."""
        source = "NAMESPACE" if self.announced else self.fallback or 'no NAMESPACE; separator from LIST "" ""'
        return f"personal namespace {self.prefix!r}, separator {self.separator!r} ({source})"


def _starts_with(name: str, prefix: str) -> bool:
    """Whether ``name`` starts with ``prefix``; an ``INBOX`` at the start is compared
    without regard to case, as servers treat the inbox's name (RFC 3501 5.1)."""
    if prefix.upper().startswith("INBOX"):
        return name.upper().startswith(prefix.upper())
    return name.startswith(prefix)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def layout_of(client: Any) -> Layout:
    """The server's :class:`Layout`: its first personal namespace when it answers
    NAMESPACE, else (or when the answer cannot be read) no prefix and the separator of
    ``LIST "" ""``, as before namespaces were read."""
    separator = _list_separator(client)
    if not client.has_capability("NAMESPACE"):
        return Layout(separator=separator)
    try:
        raw = client._command_and_check("namespace")  # noqa: SLF001 - read here, see parse_namespace
    except IMAPClientAbortError:
        raise  # the connection broke: not an answer
    except IMAPClientError as err:  # NO or BAD: the documented fallback, as when unreadable
        log.warning("the server refuses NAMESPACE (%s): folder names are used unprefixed", err)
        return Layout(separator=separator, fallback='NAMESPACE refused; separator from LIST "" ""')
    spaces = parse_namespace(raw, decode=decode_utf7 if client.folder_encode else _text)
    if spaces is None:
        log.warning(
            "the server's NAMESPACE answer cannot be read (%r): folder names are used unprefixed", raw
        )
        return Layout(separator=separator, fallback='NAMESPACE answer unreadable; separator from LIST "" ""')
    personal, other, shared = spaces
    others = tuple(prefix for prefix, _ in other + shared)
    if not personal:  # no personal namespace announced: nothing to place folders in
        return Layout(separator=separator, others=others, announced=True)
    prefix, own_separator = personal[0]  # the first one is the default (RFC 2342 5)
    return Layout(prefix, own_separator or separator, others, announced=True)


Descriptor = tuple[str, str]  # (prefix, separator; "" when the namespace is flat)


def parse_namespace(
    raw: Any, decode: Callable[[Any], str] = _text
) -> tuple[list[Descriptor], list[Descriptor], list[Descriptor]] | None:
    """(personal, other users', shared) namespaces of a ``* NAMESPACE`` answer's data,
    or None when it is not one. Each descriptor's extensions (RFC 2342 5:
    ``("" "/" "X-PARAM" ("x"))``) are skipped; imapclient's own ``namespace()`` raises on
    them, and on an answer of other than three groups."""
    try:
        groups = list(parse_response(raw if isinstance(raw, list) else [raw]))
    except (IMAPClientError, ValueError, TypeError):
        return None
    if len(groups) != 3 or not all(group is None or isinstance(group, tuple) for group in groups):
        return None
    spaces: list[list[Descriptor]] = []
    for group in groups:
        descriptors = []
        for entry in group or ():
            if not isinstance(entry, tuple) or len(entry) < 2 or not isinstance(entry[0], (bytes, str)):
                return None
            descriptors.append((decode(entry[0]), _text(entry[1])))
        spaces.append(descriptors)
    return spaces[0], spaces[1], spaces[2]


def _list_separator(client: Any) -> str:
    listed = client.list_folders("", "")  # LIST "" "" answers with the separator only
    return _text(listed[0][1]) if listed and listed[0][1] else "/"


def check_folder_settings(imap: ImapSettings) -> None:
    """Refuse, before any connection, a processed/failed/rejected folder that is unfit
    (empty level, wildcard, control character), is the watched folder, or is named like
    a special-use folder (unless ``allow_special_use_folder``)."""
    for setting in MOVE_TARGETS:
        name = getattr(imap, setting)
        if not name and setting == "rejected_folder":
            continue  # none (unset or empty): such mail is left where it is, as always
        variable = f"INGEST_IMAP__{setting.upper()}"
        levels = name.split("/")
        if _UNFIT.search(name) or not all(level.strip() for level in levels):
            raise ConfigError(
                f"{variable}={name!r} is not a folder name: levels are separated by a single '/', "
                "none empty, without '*', '%' or control characters"
            )
        if name.upper() == "INBOX" or name == imap.folder:
            raise ConfigError(
                f"{variable}={name!r} is the watched folder: handled mail would be examined again"
            )
        if not imap.allow_special_use_folder and (why := special_by_name(name)):
            raise ConfigError(_special_use_refusal(variable, name, why))


def configured_targets(imap: ImapSettings) -> list[tuple[str, str]]:
    """(setting name, configured folder) of each folder the job moves mail into."""
    return [(setting, value) for setting in MOVE_TARGETS if (value := getattr(imap, setting))]


def special_by_name(name: str) -> str | None:
    """Why a configured name looks like a special-use folder or one inside it (emptying
    the Trash takes its sub-folders too), or None. The name's first level counts, after
    an ``INBOX`` one: ``Trash``, ``INBOX.Trash`` and ``Trash/reports`` do, ``reports/archive``
    does not."""
    levels = [level.strip().lower() for level in re.split(r"[/.]", name)]
    if len(levels) > 1 and levels[0] == "inbox":
        levels = levels[1:]
    if levels[0] in PROVIDER_LEVELS:
        return f"{name.split('/')[0]} holds the provider's special folders"
    if levels[0] in SPECIAL_NAMES:
        return "that is the usual name of a special-use folder" + (
            " or one inside it" if len(levels) > 1 else ""
        )
    return None


def check_folders_on_server(
    imap: ImapSettings, layout: Layout, flags_of: Callable[[str], Iterable[Any]]
) -> None:
    """Refuse a processed/failed/rejected folder that is, by the server's names, the
    watched folder (``Reports`` and ``INBOX.Reports`` on an ``INBOX.`` server) or one the
    server flags as special-use (``\\Trash``, ``\\Junk``, ``\\All`` ...) or lies inside
    one (unless ``allow_special_use_folder``), or has an empty level by the server's
    separator (``.Reports`` where it is ``.``). ``flags_of(server name)`` lists a folder's
    attributes (none when it does not exist)."""
    watched = layout.server_name(imap.folder)
    for setting, name in configured_targets(imap):
        variable, server_name = f"INGEST_IMAP__{setting.upper()}", layout.server_name(name)
        if server_name.upper() in (watched.upper(), "INBOX", layout.prefix.upper()):
            raise ConfigError(
                f"{variable}={name!r} is {server_name!r} on this server, the watched folder "
                "(or the namespace itself): handled mail would be examined again"
            )
        if layout.empty_level(name):
            raise ConfigError(
                f"{variable}={name!r} has an empty level on this server, whose separator is "
                f"{layout.separator!r}: name the folder without a leading, trailing or doubled "
                f"{layout.separator!r}"
            )
        if imap.allow_special_use_folder:
            continue
        for folder in _self_and_parents(server_name, layout):
            flags = sorted({_text(flag).upper() for flag in flags_of(folder)} & SPECIAL_USE_FLAGS)
            if flags:
                inside = "" if folder == server_name else f", and {server_name!r} is inside it"
                why = f"the server marks {folder!r} as {', '.join(flags)}{inside}"
                raise ConfigError(_special_use_refusal(variable, name, why))


def _self_and_parents(server_name: str, layout: Layout) -> list[str]:
    """A folder and each folder above it inside the personal namespace (``INBOX.a.b``:
    itself, ``INBOX.a``); never the namespace prefix or the inbox itself."""
    if not layout.separator:
        return [server_name]
    levels = server_name.split(layout.separator)
    found = [layout.separator.join(levels[:depth]) for depth in range(len(levels), 0, -1)]
    bare = {layout.prefix.upper(), layout.prefix.rstrip(layout.separator).upper(), "INBOX", ""}
    return [folder for folder in found if folder.upper() not in bare]


def _special_use_refusal(variable: str, name: str, why: str) -> str:
    return (
        f"{variable}={name!r} is a special-use folder ({why}); choose a folder of the job's own, "
        "or set INGEST_IMAP__ALLOW_SPECIAL_USE_FOLDER=true if this is really meant"
    )
