"""Authentication-Results (RFC 8601) read by its grammar, and what it proves about a sender.

Why not a regular expression: the header carries comments and quoted strings, and parts of
it echo what the sender wrote (``smtp.mailfrom``, ``header.from``). A regex finds
``dkim=pass header.d=certainly.io`` inside ``smtp.mailfrom="a;dkim=pass header.d=certainly.io"@evil.test``
and inside ``x-dkim=pass ...``; a tokenizer that knows where comments and quoted strings
start and end does not.

Why not the ``authres`` package: read and tried (1.2.0). It parses comments and quoted
strings correctly, but in its default (and only reachable) non-strict mode it drops
properties it cannot parse without a word, takes time quadratic in the header's length
(a 670 KB header: 27 s), and raises RecursionError on deeply nested comments. This parser
is linear, bounded, and refuses the whole header on any syntax error (fail closed).

Example::

    header = parse_authentication_results("mx.example.com; dkim=pass header.d=certainly.io")
    header.authserv_id, header.results[0].method, header.results[0].value("header", "d")
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

#: Longer headers are refused: no receiving server writes one, and it bounds the work.
MAX_HEADER_CHARS = 16 * 1024
#: Deeper nesting of comments is refused.
MAX_COMMENT_DEPTH = 16

_WSP = " \t\r\n"
# RFC 5322 atext without "/" and "=" (which separate the parts of a resinfo); "." and "@"
# are separate tokens too, so that dot-atoms and addresses are assembled by the grammar.
_WORD = re.compile(r"[A-Za-z0-9!#$%&'*+\-?^_`{|}~]+")
_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")  # RFC 5321 Ldh-str
_DIGITS = re.compile(r"[0-9]+")
_PVALUE = re.compile(r"[A-Za-z0-9!#$%&'*+\-?^_`{|}~./=@]+")  # token / dot-atom / [local]@domain
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class AuthResSyntaxError(ValueError):
    """The header does not follow RFC 8601's grammar; ``authserv_id`` is set when that part
    could still be read (to tell our server's broken header from another server's)."""

    def __init__(self, message: str, authserv_id: str | None = None) -> None:
        super().__init__(message)
        self.authserv_id = authserv_id


@dataclass(frozen=True)
class AuthResult:
    """One resinfo: ``method=result [reason=...] ptype.property=value ...``.
    Method, result, ptype and property are lower-case (keywords are case-insensitive)."""

    method: str
    result: str
    reason: str | None
    properties: tuple[tuple[str, str, str], ...]

    def values(self, ptype: str, prop: str) -> list[str]:
        """Every value given for ``ptype.prop`` (a hostile header may give several)."""
        return [v for t, p, v in self.properties if (t, p) == (ptype, prop)]


@dataclass(frozen=True)
class AuthResHeader:
    """One Authentication-Results header: who wrote it and what it found."""

    authserv_id: str
    version: int | None
    results: tuple[AuthResult, ...]


class _Lexer:
    """A cursor over the header text; every method consumes what it recognises."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self, char: str) -> bool:
        if self.peek() == char:
            self.pos += 1
            return True
        return False

    def expect(self, char: str, what: str) -> None:
        if not self.take(char):
            raise AuthResSyntaxError(f"expected {char!r} {what} at offset {self.pos}")

    def match(self, pattern: re.Pattern[str]) -> str | None:
        found = pattern.match(self.text, self.pos)
        if not found:
            return None
        self.pos = found.end()
        return found.group()

    def cfws(self) -> bool:
        """Skip folding white space and (nested) comments; True when anything was skipped."""
        start = self.pos
        while not self.at_end():
            char = self.peek()
            if char in _WSP:
                self.pos += 1
            elif char == "(":
                self._comment()
            else:
                break
        return self.pos > start

    def _comment(self) -> None:
        depth = 0
        while True:
            char = self.peek()
            if not char:
                raise AuthResSyntaxError("unterminated comment")
            self.pos += 1
            if char == "\\":
                if not self.peek():
                    raise AuthResSyntaxError("unterminated quoted pair in a comment")
                self.pos += 1
            elif char == "(":
                depth += 1
                if depth > MAX_COMMENT_DEPTH:
                    raise AuthResSyntaxError("comments nested too deeply")
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return

    def quoted(self) -> str | None:
        """A quoted-string's content (quoted pairs resolved), or None if none starts here."""
        if not self.take('"'):
            return None
        out: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise AuthResSyntaxError("unterminated quoted string")
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                if not self.peek():
                    raise AuthResSyntaxError("unterminated quoted pair")
                char = self.peek()
                self.pos += 1
            out.append(char)

    def keyword(self, what: str) -> str:
        word = self.match(_WORD)
        if word is None or not _KEYWORD.fullmatch(word):
            raise AuthResSyntaxError(f"expected {what} at offset {self.pos}")
        return word.lower()

    def value(self, what: str) -> str:
        """RFC 2045 value: a token (dots allowed, as in an authserv-id) or a quoted string."""
        quoted = self.quoted()
        if quoted is not None:
            return quoted
        parts: list[str] = []
        while (word := self.match(_WORD)) is not None or self.peek() == ".":
            parts.append(word if word is not None else self.text[self.pos])
            if word is None:
                self.pos += 1
        if not parts:
            raise AuthResSyntaxError(f"expected {what} at offset {self.pos}")
        return "".join(parts)


def parse_authentication_results(text: str) -> AuthResHeader:
    """Parse one (unfolded or folded) Authentication-Results value; AuthResSyntaxError on
    anything outside the grammar."""
    if len(text) > MAX_HEADER_CHARS:
        raise AuthResSyntaxError(f"header longer than {MAX_HEADER_CHARS} characters")
    lx = _Lexer(text)
    lx.cfws()
    authserv_id = lx.value("an authserv-id").lower()
    try:
        return _rest(lx, authserv_id)
    except AuthResSyntaxError as err:
        raise AuthResSyntaxError(str(err), authserv_id) from None


def _rest(lx: _Lexer, authserv_id: str) -> AuthResHeader:
    version: int | None = None
    if lx.cfws() and (digits := lx.match(_DIGITS)) is not None:
        version = int(digits)
        lx.cfws()
    if version is not None and version != 1:
        raise AuthResSyntaxError(f"unsupported version {version}")
    results: list[AuthResult] = []
    saw_none = False
    while lx.take(";"):
        if saw_none:
            raise AuthResSyntaxError("'none' must be the only result")
        lx.cfws()
        result = _resinfo(lx)
        if result is None:
            if results:
                raise AuthResSyntaxError("'none' must be the only result")
            saw_none = True
        else:
            results.append(result)
    lx.cfws()
    if not lx.at_end():
        raise AuthResSyntaxError(f"unexpected {lx.peek()!r} at offset {lx.pos}")
    if not results and not saw_none:
        raise AuthResSyntaxError("no result")
    return AuthResHeader(authserv_id, version, tuple(results))


def _resinfo(lx: _Lexer) -> AuthResult | None:
    """``method[/version] = result [reason=...] *propspec``; None for ``none``."""
    method = lx.keyword("a method")
    lx.cfws()
    if method == "none" and (lx.at_end() or lx.peek() == ";"):
        return None
    if lx.take("/"):
        lx.cfws()
        if lx.match(_DIGITS) is None:
            raise AuthResSyntaxError("expected a method version")
        lx.cfws()
    lx.expect("=", "after the method")
    lx.cfws()
    result = lx.keyword("a result")
    reason: str | None = None
    properties: list[tuple[str, str, str]] = []
    separated = lx.cfws()  # RFC 8601: CFWS before a reasonspec or propspec
    while not lx.at_end() and lx.peek() != ";":
        if not separated:
            raise AuthResSyntaxError(f"unexpected {lx.peek()!r} at offset {lx.pos}")
        name = lx.keyword("a property type or 'reason'")
        lx.cfws()
        if name == "reason" and not properties and reason is None and lx.take("="):
            lx.cfws()
            reason = lx.value("a reason")
        else:
            lx.expect(".", "between property type and property")
            lx.cfws()
            prop = lx.keyword("a property")
            lx.cfws()
            lx.expect("=", "after the property")
            lx.cfws()
            properties.append((name, prop, _pvalue(lx)))
        separated = lx.cfws()
    return AuthResult(method, result, reason, tuple(properties))


def _pvalue(lx: _Lexer) -> str:
    quoted = lx.quoted()
    if quoted is not None:
        if lx.take("@"):  # "local part"@domain
            domain = lx.match(_PVALUE)
            if domain is None:
                raise AuthResSyntaxError("expected a domain after '@'")
            return f'"{quoted}"@{domain}'
        return quoted
    value = lx.match(_PVALUE)
    if value is None:
        raise AuthResSyntaxError(f"expected a property value at offset {lx.pos}")
    return value


def domain_name(value: str) -> str | None:
    """``value`` as a lower-case DNS name (letters, digits, hyphens; at least two labels),
    else None: never guess what a malformed domain meant."""
    name = value.lower().removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return name


@functools.lru_cache(maxsize=1)
def _suffix_list() -> PublicSuffixList:
    """The Public Suffix List bundled with ``publicsuffixlist`` (never fetched at run time)."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def organizational_domain(domain: str) -> str | None:
    """The registrable domain (DMARC's organizational domain) of ``domain``, or None when
    ``domain`` is itself a public suffix. Uses the full list (private suffixes included), so
    ``a.github.io`` and ``b.github.io`` are different organizations."""
    found = _suffix_list().privatesuffix(domain)
    return str(found) if found else None


def topmost_of_ours(values: list[str], authserv_id: str) -> AuthResHeader | None:
    """The topmost header written by our server (``authserv_id``), or None.

    Receiving servers add theirs on top, so a header above ours was added by a later hop of
    our own and anything below it may have been written by the sender. A header that cannot
    be parsed and is ours, or whose authserv-id cannot even be read, stops the search: it
    might be ours, and what lies below is never trusted instead (fail closed).
    """
    ours = authserv_id.strip().lower()
    for value in values:
        try:
            header = parse_authentication_results(value)
        except AuthResSyntaxError as err:
            if err.authserv_id is None or err.authserv_id == ours:
                return None
            continue
        if header.authserv_id == ours:
            return header
    return None


def authenticated(values: list[str], authserv_id: str, sender: str) -> bool:
    """Whether our server's Authentication-Results prove that ``sender``'s domain sent it:
    DMARC passed for exactly the From domain, or DKIM passed for a signing domain
    (``header.d``, else the domain of ``header.i``) of the From domain's organization.
    A result giving a property twice proves nothing (which one did the server mean?)."""
    if "@" not in sender:
        return False
    from_domain = domain_name(sender.rsplit("@", 1)[1])
    header = topmost_of_ours(values, authserv_id)
    if header is None or from_domain is None:
        return False
    from_org = organizational_domain(from_domain)
    for result in header.results:
        if result.result != "pass":
            continue
        if result.method == "dmarc":
            claimed = result.values("header", "from")
            if len(claimed) == 1 and domain_name(claimed[0]) == from_domain:
                return True
        elif result.method == "dkim":
            signer = _dkim_domain(result)
            if signer is not None and from_org is not None and organizational_domain(signer) == from_org:
                return True
    return False


def _dkim_domain(result: AuthResult) -> str | None:
    d, i = result.values("header", "d"), result.values("header", "i")
    if len(d) > 1 or len(i) > 1:
        return None
    if d:
        return domain_name(d[0])
    if i and "@" in i[0]:
        return domain_name(i[0].rsplit("@", 1)[1])
    return None
