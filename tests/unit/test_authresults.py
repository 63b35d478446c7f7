"""Authentication-Results read by RFC 8601's grammar: the RFC's own examples (appendix B),
and hostile variants (hypothesis) that a regex reads as a pass.

Why here and not only end to end: the watcher's decision rests on this parser; every
variant below is also what an attacker can put in a header below our server's.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.mail.authresults import (
    AuthResSyntaxError,
    authenticated,
    organizational_domain,
    parse_authentication_results,
    topmost_of_ours,
)
from ingest.mail.senders import authentication_passed, screen
from ingest.settings import ImapSettings

OURS = "mx.example.test"
SENDER = "reports@certainly.example"

# -- RFC 8601, appendix B ---------------------------------------------------------------------

RFC_EXAMPLES = {
    "B.2 service provided, no authentication done": ("example.org 1; none", ("example.org", 1, [])),
    "B.3 service provided, authentication done": (
        "example.com;\r\n                  spf=pass smtp.mailfrom=example.net",
        ("example.com", None, [("spf", "pass", None, [("smtp", "mailfrom", "example.net")])]),
    ),
    "B.4 several authentications, single MTA (1)": (
        "example.com;\r\n                  auth=pass (cram-md5) smtp.auth=sender@example.net;\r\n"
        "                  spf=pass smtp.mailfrom=example.net",
        (
            "example.com",
            None,
            [
                ("auth", "pass", None, [("smtp", "auth", "sender@example.net")]),
                ("spf", "pass", None, [("smtp", "mailfrom", "example.net")]),
            ],
        ),
    ),
    "B.4 several authentications, single MTA (2)": (
        "example.com; iprev=pass\r\n                  policy.iprev=192.0.2.200",
        ("example.com", None, [("iprev", "pass", None, [("policy", "iprev", "192.0.2.200")])]),
    ),
    "B.5 several authentications, different MTAs (1)": (
        "example.com;\r\n                  sender-id=fail header.from=example.com;\r\n"
        "                  dkim=pass (good signature) header.d=example.com",
        (
            "example.com",
            None,
            [
                ("sender-id", "fail", None, [("header", "from", "example.com")]),
                ("dkim", "pass", None, [("header", "d", "example.com")]),
            ],
        ),
    ),
    "B.5 several authentications, different MTAs (2)": (
        "example.net;\r\n                  sender-id=pass header.from=example.com",
        ("example.net", None, [("sender-id", "pass", None, [("header", "from", "example.com")])]),
    ),
    "B.6 multi-tiered authentication (1)": (
        'example.com;\r\n      dkim=pass reason="good signature"\r\n'
        "        header.i=@mail-router.example.net;\r\n"
        '      dkim=fail reason="bad signature"\r\n        header.i=@newyork.example.com',
        (
            "example.com",
            None,
            [
                ("dkim", "pass", "good signature", [("header", "i", "@mail-router.example.net")]),
                ("dkim", "fail", "bad signature", [("header", "i", "@newyork.example.com")]),
            ],
        ),
    ),
    "B.6 multi-tiered authentication (2)": (
        "mail-router.example.net;\r\n      dkim=pass (good signature) header.d=newyork.example.com\r\n"
        "        header.b=oINEO8hg;\r\n      dkim=fail (bad signature) header.d=mail-router.example.net\r\n"
        "        header.b=EToRSuvU",
        (
            "mail-router.example.net",
            None,
            [
                ("dkim", "pass", None, [("header", "d", "newyork.example.com"), ("header", "b", "oINEO8hg")]),
                (
                    "dkim",
                    "fail",
                    None,
                    [("header", "d", "mail-router.example.net"), ("header", "b", "EToRSuvU")],
                ),
            ],
        ),
    ),
    "B.7 comment-heavy": (
        "foo.example.net (foobar) 1 (baz);\r\n"
        "    dkim (Because I like it) / 1 (One yay) = (wait for it) fail\r\n"
        "      policy (A dot can go here) . (like that) expired\r\n"
        "      (this surprised me) = (as I wasn't expecting it) 1362471462",
        ("foo.example.net", 1, [("dkim", "fail", None, [("policy", "expired", "1362471462")])]),
    ),
}


@pytest.mark.parametrize("text, expected", RFC_EXAMPLES.values(), ids=list(RFC_EXAMPLES))
def test_rfc_8601_appendix_b_examples_parse_as_the_rfc_reads_them(text: str, expected: tuple) -> None:
    header = parse_authentication_results(text)
    authserv_id, version, results = expected
    assert (header.authserv_id, header.version) == (authserv_id, version)
    assert [(r.method, r.result, r.reason, list(r.properties)) for r in header.results] == results


# -- the variants of the issue ------------------------------------------------------------------

HOSTILE = {
    "pass inside a quoted string": (
        f'{OURS}; spf=pass smtp.mailfrom="a;dkim=pass header.d=certainly.example"@evil.test'
    ),
    "pass inside a comment": f"{OURS}; dkim=fail (dkim=pass header.d=certainly.example) header.d=evil.test",
    "a method that only ends in dkim": f"{OURS}; x-dkim=pass header.d=certainly.example",
    "a method that only starts with dkim": f"{OURS}; dkim2=pass header.d=certainly.example",
    "a property that only ends in .d": f"{OURS}; dkim=pass xheader.d=certainly.example",
    "a signing domain that only ends in the sender's": f"{OURS}; dkim=pass header.d=evilcertainly.example",
    "a signing domain that is the public suffix": f"{OURS}; dkim=pass header.d=co.uk",
    "dmarc passed for another domain": f"{OURS}; dmarc=pass header.from=evil.test",
    "dmarc passed for a parent of the sender's domain": f"{OURS}; dmarc=pass header.from=example",
    "two signing domains in one result": f"{OURS}; dkim=pass header.d=evil.test header.d=certainly.example",
    "a syntax error after a pass": f"{OURS}; dkim=pass header.d=certainly.example ]",
    "an unterminated comment": f"{OURS}; dkim=pass header.d=certainly.example (",
    "a pass for a neutral signature": f"{OURS}; dkim=neutral header.d=certainly.example",
    "our authserv-id as a prefix": f"{OURS}.evil.test; dkim=pass header.d=certainly.example",
}


@pytest.mark.parametrize("header", HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_variants_prove_nothing(header: str) -> None:
    assert not authentication_passed([header], OURS, SENDER)


GOOD = {
    "dmarc pass for the From domain": f"{OURS}; dmarc=pass (p=reject) header.from=certainly.example",
    "dkim pass for the From domain": f"{OURS}; dkim=pass header.d=certainly.example header.s=k1",
    "dkim pass for a subdomain of the organization": f"{OURS}; dkim=pass header.d=mail.certainly.example",
    "dkim pass by header.i": f"{OURS}; dkim=pass header.i=@certainly.example",
    "keywords are case-insensitive": f"{OURS.upper()}; DKIM=Pass Header.D=Certainly.Example",
    "a method version and comments everywhere": (
        f"(x) {OURS} (y) 1 (z); dkim/1 (a) = (b) pass (c) header (d) . (e) d (f) = (g) certainly.example (h)"
    ),
}


@pytest.mark.parametrize("header", GOOD.values(), ids=list(GOOD))
def test_what_a_receiving_server_writes_for_genuine_mail_passes(header: str) -> None:
    assert authentication_passed([header], OURS, SENDER)


def test_the_organizational_domain_comes_from_the_bundled_public_suffix_list() -> None:
    assert organizational_domain("a.b.certainly.co.uk") == "certainly.co.uk"
    assert organizational_domain("co.uk") is None
    assert organizational_domain("alice.github.io") != organizational_domain("mallory.github.io")
    assert not authentication_passed(
        [f"{OURS}; dkim=pass header.d=mallory.github.io"], OURS, "r@alice.github.io"
    )


def test_only_the_topmost_header_of_our_server_counts() -> None:
    ours_fail = f"{OURS}; dkim=fail header.d=certainly.example"
    ours_pass = f"{OURS}; dkim=pass header.d=certainly.example"
    later_hop = "filter.example.test; spam=pass"
    assert authentication_passed([later_hop, ours_pass, ours_fail], OURS, SENDER)
    assert not authentication_passed([ours_fail, ours_pass], OURS, SENDER)  # a pass below ours
    assert not authentication_passed([ours_pass.replace(OURS, "mx.evil.test")], OURS, SENDER)
    # Our own header broken: never fall through to what lies below it.
    assert topmost_of_ours([f"{OURS}; dkim=pass header.d=(", ours_pass], OURS) is None
    assert topmost_of_ours(["; garbage", ours_pass], OURS) is None


@pytest.mark.parametrize(
    "from_lines",
    [
        [b"From: reports@certainly.example", b"From: attacker@evil.test"],
        [b"From: attacker@evil.test", b"From: reports@certainly.example"],
        [b"From: reports@certainly.example", b"From: reports@certainly.example"],
    ],
)
def test_more_than_one_from_header_is_refused(from_lines: list[bytes]) -> None:
    """DKIM verifiers check the last From, mail programs show the first: refuse both."""
    imap = ImapSettings(allowed_senders=["@certainly.example"], require_authentication=True, authserv_id=OURS)
    passing = f"Authentication-Results: {OURS}; dmarc=pass header.from=certainly.example".encode()
    assert screen(imap, b"\r\n".join([passing, *from_lines]) + b"\r\n\r\n") == (None, "sender not allowed")
    assert screen(imap, b"\r\n".join([passing, b"From: reports@certainly.example"]) + b"\r\n\r\n") == (
        "reports@certainly.example",
        None,
    )


def test_a_folded_header_is_read_as_the_server_wrote_it() -> None:
    imap = ImapSettings(allowed_senders=["@certainly.example"], require_authentication=True, authserv_id=OURS)
    header = (
        f"Authentication-Results: {OURS};\r\n\tdkim=pass (good\r\n signature)\r\n"
        f" header.d=certainly.example\r\nFrom: {SENDER}\r\n\r\n"
    ).encode()
    assert screen(imap, header) == (SENDER, None)


# -- hypothesis ---------------------------------------------------------------------------------

_PRINTABLE = st.text(alphabet=string.printable.replace("\x0b", "").replace("\x0c", ""), max_size=80)
_KEYWORD = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_LABEL = st.from_regex(r"[a-z](?:[a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_DOMAIN = st.lists(_LABEL, min_size=2, max_size=4).map(".".join)


def _quote(text: str) -> str:
    return '"' + "".join("\\" + c if c in '"\\' else c for c in text if c not in "\r\n") + '"'


def _comment(text: str) -> str:
    return "(" + "".join("\\" + c if c in "()\\" else c for c in text if c not in "\r\n") + ")"


@settings(max_examples=300, deadline=None)
@given(payload=_PRINTABLE)
def test_anything_inside_a_quoted_string_or_comment_proves_nothing(payload: str) -> None:
    smuggled = f"dkim=pass header.d=certainly.example; dmarc=pass header.from=certainly.example {payload}"
    for header in (
        f"{OURS}; spf=pass smtp.mailfrom={_quote(smuggled)}@evil.test",
        f"{OURS}; dkim=fail {_comment(smuggled)} header.d=evil.test",
        f"{OURS} {_comment(smuggled)}; dmarc=fail header.from=certainly.example",
    ):
        assert not authentication_passed([header], OURS, SENDER)


@settings(max_examples=300, deadline=None)
@given(
    method=_KEYWORD.filter(lambda m: m not in {"dkim", "dmarc"}),
    prop=_KEYWORD.filter(lambda p: p not in {"d", "i", "from"}),
)
def test_only_the_exact_method_and_property_names_count(method: str, prop: str) -> None:
    assert not authentication_passed([f"{OURS}; {method}=pass header.d=certainly.example"], OURS, SENDER)
    assert not authentication_passed([f"{OURS}; dkim=pass header.{prop}=certainly.example"], OURS, SENDER)


_RESULT = st.tuples(_KEYWORD, _KEYWORD, st.lists(st.tuples(_KEYWORD, _KEYWORD, _DOMAIN), max_size=3))


@settings(max_examples=150, deadline=None)
@given(
    authserv=_DOMAIN,
    results=st.lists(_RESULT, min_size=1, max_size=4),
    noise=st.lists(
        st.sampled_from([" ", "\r\n\t", " (c) ", " (a (nested) \\) one) "]), min_size=64, max_size=64
    ),
)
def test_structure_survives_any_legal_whitespace_and_comments(
    authserv: str, results: list, noise: list[str]
) -> None:
    """Written with comments and folding wherever CFWS may go, read back the same."""
    gaps = iter(noise * 50)
    parts = [authserv]
    for method, result, props in results:
        text = f";{next(gaps)}{method}{next(gaps)}={next(gaps)}{result}"
        for ptype, prop, value in props:
            text += f"{next(gaps)}{ptype}{next(gaps)}.{next(gaps)}{prop}{next(gaps)}={next(gaps)}{value}"
        parts.append(text)
    header = parse_authentication_results("".join(parts) + next(gaps))
    assert header.authserv_id == authserv
    assert [(r.method, r.result, r.properties) for r in header.results] == [
        (m, r, tuple(p)) for m, r, p in results
    ]


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=300))
def test_arbitrary_text_is_parsed_or_refused_never_crashes(text: str) -> None:
    try:
        parse_authentication_results(text)
    except AuthResSyntaxError:
        pass
    assert authenticated([text], OURS, SENDER) in (True, False)


def test_deep_comments_and_huge_headers_are_refused_not_a_crash() -> None:
    with pytest.raises(AuthResSyntaxError):
        parse_authentication_results(f"{OURS}; dkim=pass " + "(" * 5000 + ")" * 5000)
    with pytest.raises(AuthResSyntaxError):
        parse_authentication_results(f"{OURS}; " + "; ".join(["dkim=pass header.d=a.example"] * 5000))


_PTYPE = st.sampled_from(["smtp", "header", "body", "policy"])  # RFC 7601's ptypes, as authres knows them


@settings(max_examples=60, deadline=None)
@given(
    authserv=_DOMAIN,
    version=st.sampled_from(["", " 1"]),
    results=st.lists(
        st.tuples(
            _KEYWORD.filter(lambda m: m != "none"),
            _KEYWORD,
            # authres differs on empty reasons and tabs in them; RFC 8601
            # allows both, ingest.mail.authresults reads them verbatim
            st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ]{0,15}", fullmatch=True).map(_quote)),
            st.lists(st.tuples(_PTYPE, _KEYWORD, _DOMAIN), max_size=3),
        ),
        min_size=1,
        max_size=4,
    ),
    comment=_PRINTABLE.map(_comment),
)
def test_the_same_reading_as_the_authres_package_on_valid_headers(
    authserv: str, version: str, results: list, comment: str
) -> None:
    """A second, independent reading of RFC 8601 (dkimpy's maintainer's ``authres``, which
    is not used at run time: see ingest.mail.authresults) agrees on every valid header."""
    import authres

    text = (
        authserv
        + version
        + "".join(
            f"; {m}={r} {comment}"
            + (f" reason={reason}" if reason else "")
            + "".join(f" {t}.{p}={v}" for t, p, v in props)
            for m, r, reason, props in results
        )
    )
    ours = parse_authentication_results(text)
    theirs = authres.FeatureContext().parse_value(text)
    assert ours.authserv_id == theirs.authserv_id
    assert [
        (r.method, r.result, r.reason, [(t, p, v) for t, p, v in r.properties]) for r in ours.results
    ] == [
        (
            r.method.lower(),
            r.result.lower(),
            r.reason,
            [(p.type.lower(), p.name.lower(), p.value) for p in r.properties],
        )
        for r in theirs.results
    ]
