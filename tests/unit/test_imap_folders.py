"""Where the job's folders go on a server, worked out from its NAMESPACE and separator, and
which configured folders are refused (special-use, unfit names). Real servers: see
tests/integration/test_imap_folders.py."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from imapclient.exceptions import IMAPClientError
from imapclient.imap_utf7 import decode as decode_utf7

from ingest.errors import ConfigError
from ingest.mail.folders import (
    Layout,
    check_folder_settings,
    check_folders_on_server,
    layout_of,
    parse_namespace,
    special_by_name,
)
from ingest.mail.mailbox import Mailbox
from ingest.settings import ImapSettings

PREFIXED = Layout(prefix="INBOX.", separator=".", others=("user.",), announced=True)
CYRUS = Layout(prefix="", separator="/", others=("Other Users/", "Shared Folders/"), announced=True)
DOVECOT = Layout(prefix="", separator=".", announced=True)


@pytest.mark.parametrize(
    ("layout", "configured", "expected"),
    [
        (PREFIXED, "certainly-ingest/processed", "INBOX.certainly-ingest.processed"),
        (PREFIXED, "INBOX/certainly-ingest/processed", "INBOX.certainly-ingest.processed"),
        (PREFIXED, "INBOX.certainly-ingest.processed", "INBOX.certainly-ingest.processed"),
        (PREFIXED, "inbox/archived", "INBOX.archived"),  # the inbox's name has no case
        (PREFIXED, "INBOX", "INBOX"),
        (PREFIXED, "inbox", "INBOX"),
        (PREFIXED, "user/ops/reports", "user.ops.reports"),  # another user's namespace: left there
        (CYRUS, "certainly-ingest/processed", "certainly-ingest/processed"),
        (CYRUS, "Shared Folders/reports", "Shared Folders/reports"),
        (CYRUS, "inbox/reports", "INBOX/reports"),  # Cyrus creates it so, and LISTs only that
        (DOVECOT, "inbox/Kept", "INBOX.Kept"),
        (DOVECOT, "certainly-ingest/processed", "certainly-ingest.processed"),  # as before namespaces
        (Layout(), "certainly-ingest/failed", "certainly-ingest/failed"),  # no NAMESPACE, "/" separator
    ],
)
def test_a_configured_folder_gets_the_servers_name(layout: Layout, configured: str, expected: str) -> None:
    assert layout.server_name(configured) == expected


LEVEL = st.text(st.characters(codec="utf-8", exclude_characters="/.\x00"), min_size=1, max_size=8).filter(
    lambda level: level.upper() != "INBOX"
)


@settings(max_examples=100, deadline=None)
@given(
    levels=st.lists(LEVEL, min_size=1, max_size=4),
    prefix=st.sampled_from(["", "INBOX{sep}", "~{sep}", "#mh{sep}"]),
    separator=st.sampled_from([".", "/"]),
)
def test_every_folder_lands_in_the_personal_namespace_with_its_levels_kept(
    levels: list[str], prefix: str, separator: str
) -> None:
    prefix = prefix.format(sep=separator)  # a prefix ends in its own namespace's separator
    # A name that already starts with the prefix is the server's own name, taken as it is
    # (the last assertion): "~/x" under the namespace "~/" is that folder, not "~/~/x".
    assume(not prefix or not separator.join(levels).upper().startswith(prefix.upper()))
    layout = Layout(prefix=prefix, separator=separator, announced=True)
    placed = layout.server_name("/".join(levels))
    assert placed.upper().startswith(prefix.upper())
    assert placed[len(prefix) :].split(separator) == levels
    assert layout.server_name(placed) == placed  # a name the server gave is taken as it is


def imap(**folders: object) -> ImapSettings:
    return ImapSettings.model_validate({"allowed_senders": ["@certainly.example"], **folders})


@pytest.mark.parametrize(
    ("setting", "name"),
    [
        ("processed_folder", "Trash"),
        ("processed_folder", "INBOX.Trash"),
        ("failed_folder", "[Gmail]/Spam"),
        ("failed_folder", "[Google Mail]/certainly"),
        ("processed_folder", "Archive"),
        ("rejected_folder", "Junk E-mail"),
        ("processed_folder", "sent items"),
        ("failed_folder", "Deleted Items"),
        ("processed_folder", "Trash/certainly"),  # emptying the Trash takes it too
        ("processed_folder", "INBOX/Junk/reports"),
    ],
)
def test_a_special_use_name_is_refused_naming_the_setting_unless_allowed(setting: str, name: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_folder_settings(imap(**{setting: name}))
    message = str(refused.value)
    assert message.startswith(f"INGEST_IMAP__{setting.upper()}={name!r} is a special-use folder")
    assert "INGEST_IMAP__ALLOW_SPECIAL_USE_FOLDER=true" in message and "\n" not in message
    check_folder_settings(imap(**{setting: name, "allow_special_use_folder": True}))


@pytest.mark.parametrize(
    "name", ["", " ", "a//b", "/processed", "processed/", " /x", "proc*", "proc%", "bad\nname", "x/\t/y"]
)
def test_a_name_that_is_no_folder_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=r"^INGEST_IMAP__PROCESSED_FOLDER=.* is not a folder name"):
        check_folder_settings(imap(processed_folder=name))


@pytest.mark.parametrize("name", ["INBOX", "inbox", "Reports"])
def test_the_watched_folder_is_never_a_target(name: str) -> None:
    with pytest.raises(ConfigError, match="is the watched folder"):
        check_folder_settings(imap(folder="Reports", failed_folder=name))


def test_the_defaults_and_ordinary_names_pass() -> None:
    check_folder_settings(imap())
    check_folder_settings(imap(processed_folder="reports/done", failed_folder="INBOX.reports.bad"))
    assert special_by_name("certainly-ingest/processed") is None
    assert special_by_name("Sentinel/reports") is None  # a word that only starts like one
    assert special_by_name("certainly-ingest/archive") is None  # a folder of its own, named so
    assert special_by_name("INBOX") is None


def test_a_folder_the_server_flags_special_use_is_refused_by_its_server_name() -> None:
    flags = {
        "INBOX.Kept": [b"\\HasNoChildren", b"\\Archive"],
        "INBOX.certainly-ingest.failed": [b"\\HasNoChildren"],
    }
    settings_ = imap(processed_folder="Kept")
    with pytest.raises(
        ConfigError, match=r"INGEST_IMAP__PROCESSED_FOLDER='Kept'.*marks 'INBOX.Kept' as \\ARCHIVE"
    ):
        check_folders_on_server(settings_, PREFIXED, lambda name: flags.get(name, []))
    allowed = imap(processed_folder="Kept", allow_special_use_folder=True)
    check_folders_on_server(allowed, PREFIXED, lambda name: flags.get(name, []))
    check_folders_on_server(imap(), PREFIXED, lambda name: flags.get(name, []))


@pytest.mark.parametrize(
    ("watched", "target"), [("INBOX.Reports", "Reports"), ("Reports", "INBOX/Reports"), ("INBOX", "INBOX.")]
)
def test_a_target_that_is_the_watched_folder_by_the_servers_names_is_refused(
    watched: str, target: str
) -> None:
    """Different in the settings, one folder on an INBOX. server: mail would go round."""
    with pytest.raises(ConfigError, match=r"^INGEST_IMAP__PROCESSED_FOLDER=.* the watched folder"):
        check_folders_on_server(imap(folder=watched, processed_folder=target), PREFIXED, lambda name: [])
    check_folders_on_server(imap(folder=watched), PREFIXED, lambda name: [])  # the defaults are not


@pytest.mark.parametrize(
    ("answer", "personal", "others"),
    [
        (b'(("" ".")) NIL NIL', [("", ".")], []),  # Dovecot
        (b'(("INBOX." ".")) NIL NIL', [("INBOX.", ".")], []),  # cPanel's Dovecot, Courier
        (
            b'(("" "/")) (("Other Users/" "/")) (("Shared Folders/" "/"))',
            [("", "/")],
            ["Other Users/", "Shared Folders/"],
        ),
        (
            b'(("INBOX." ".")) (("user." ".")) (("" "."))',
            [("INBOX.", ".")],
            ["user.", ""],
        ),  # Cyrus, no altnamespace
        (b'(("" "/" "X-PARAM" ("FLAG1" "FLAG2"))) NIL NIL', [("", "/")], []),  # RFC 2342 extensions
        (b'(("" NIL)) NIL NIL', [("", "")], []),  # a flat namespace
        (b"NIL NIL NIL", [], []),
        (b'(("&AMQ-rchiv/" "/")) NIL NIL', [("\u00c4rchiv/", "/")], []),  # modified UTF-7
    ],
)
def test_namespace_answers_as_servers_send_them_are_read(
    answer: bytes, personal: list[tuple[str, str]], others: list[str]
) -> None:
    spaces = parse_namespace([answer], decode=decode_utf7)
    assert spaces is not None
    assert spaces[0] == personal
    assert [prefix for prefix, _ in spaces[1] + spaces[2]] == others


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=80) | st.sampled_from([b"((", b'(("" "/")) NIL', b'("x") NIL NIL', b"((1 2)) NIL NIL"])
)
def test_any_namespace_answer_is_read_or_refused_never_raises(answer: bytes) -> None:
    """A server's odd answer falls back to unprefixed names (None), never a traceback."""
    spaces = parse_namespace([answer])
    assert spaces is None or (len(spaces) == 3 and all(isinstance(p, str) for g in spaces for p, _ in g))


@pytest.mark.parametrize("name", [".Reports", "Reports.", "a..b", "INBOX..Reports", "a/.b", "a. /b"])
@pytest.mark.parametrize("layout", [PREFIXED, DOVECOT], ids=["inbox-prefix", "dovecot"])
def test_an_empty_level_in_the_servers_separator_is_refused_naming_the_setting(
    name: str, layout: Layout
) -> None:
    """Fine by '/', empty by '.': CREATE fails or makes a name LIST never finds again."""
    with pytest.raises(
        ConfigError, match=rf"^INGEST_IMAP__FAILED_FOLDER={name!r} has an empty level on this server"
    ):
        check_folders_on_server(imap(failed_folder=name), layout, lambda folder: [])


def test_a_dot_is_an_ordinary_character_where_the_separator_is_a_slash() -> None:
    check_folders_on_server(imap(failed_folder=".Reports", processed_folder="a..b"), CYRUS, lambda folder: [])


def test_a_special_use_folder_spelled_with_a_lower_case_inbox_is_refused() -> None:
    """The server answers LIST with its own spelling, INBOX.Kept; 'inbox/Kept' is it."""
    flags = {"INBOX.Kept": [b"\\Archive"]}
    with pytest.raises(ConfigError, match=r"marks 'INBOX.Kept' as \\ARCHIVE"):
        check_folders_on_server(
            imap(processed_folder="inbox/Kept"), DOVECOT, lambda name: flags.get(name, [])
        )


class _NamespaceServer:
    """Just what layout_of asks of a connection: a server that announces NAMESPACE and
    then refuses it, or answers it unreadably."""

    folder_encode = True

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def has_capability(self, capability: str) -> bool:
        return capability == "NAMESPACE"

    def list_folders(self, directory: str, pattern: str) -> list[tuple[tuple[bytes, ...], bytes, str]]:
        return [((b"\\Noselect",), b".", "")]

    def _command_and_check(self, command: str) -> object:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (IMAPClientError("NAMESPACE command error: NO ['not today']"), "NAMESPACE refused"),
        ([b"(("], "NAMESPACE answer unreadable"),
    ],
)
def test_a_refused_or_unreadable_namespace_falls_back_to_unprefixed_names_and_says_so(
    answer: object, said: str
) -> None:
    layout = layout_of(_NamespaceServer(answer))
    assert layout.server_name("certainly-ingest/failed") == "certainly-ingest.failed"
    assert (
        layout.describe() == f"personal namespace '', separator '.' ({said}; separator from LIST \"\" \"\")"
    )


@settings(max_examples=100, deadline=None)
@given(
    inbox=st.sampled_from(["inbox", "Inbox", "INBOX", "iNbOx"]),
    levels=st.lists(LEVEL, min_size=1, max_size=3),
    layout=st.sampled_from([PREFIXED, CYRUS, DOVECOT, Layout()]),
)
def test_an_inbox_level_in_any_case_gets_one_server_name(
    inbox: str, levels: list[str], layout: Layout
) -> None:
    """RFC 3501 5.1: the inbox's name has no case; the server's name is spelled INBOX."""
    placed = layout.server_name("/".join([inbox, *levels]))
    assert placed == layout.server_name("/".join(["INBOX", *levels]))
    assert placed.startswith("INBOX") and layout.server_name(placed) == placed
    assert layout.same_folder(placed.replace("INBOX", inbox, 1), placed)


class _ListingServer:
    """Just what Mailbox's existence check asks of a connection: one LIST answer."""

    def __init__(self, *answers: tuple[tuple[bytes, ...], str]) -> None:
        self.answers = [(flags, b".", name) for flags, name in answers]

    def has_capability(self, capability: str) -> bool:
        return False

    def list_folders(self, directory: str, pattern: str) -> list[tuple[tuple[bytes, ...], bytes, str]]:
        return self.answers


def _mailbox_on(server: _ListingServer) -> Mailbox:
    box = Mailbox(imap())
    box._client = server  # type: ignore[assignment]  # noqa: SLF001 - a stand-in connection
    box._layout = DOVECOT  # noqa: SLF001
    return box


@pytest.mark.parametrize(
    ("answers", "exists"),
    [
        ([], False),
        ([((b"\\HasNoChildren",), "INBOX.reports")], True),  # the server's spelling of inbox.reports
        ([((b"\\HasNoChildren",), "Inbox.Reports")], True),  # Exchange: no name has a case
        ([((b"\\Noselect", b"\\HasChildren"), "inbox.reports")], False),  # a parent only
        ([((b"\\NonExistent",), "inbox.reports")], False),
    ],
)
def test_a_folder_exists_when_the_server_lists_it_selectable(
    answers: list[tuple[tuple[bytes, ...], str]], exists: bool
) -> None:
    assert _mailbox_on(_ListingServer(*answers)).folder_exists("inbox.reports") is exists
