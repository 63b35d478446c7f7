"""Fuzzing the email side: random MIME structures and random bytes never raise; every
report found is either archived or quarantined with a reason.

The contract (ingest.mail.attachments): ``parse_email`` raises nothing for what an email holds,
whatever is wrong with it: corrupt compressed streams, encrypted zip members, bombs, MIME
nested hundreds of levels deep, names longer in bytes than a file system takes; each
becomes a one-line problem. On the part-by-part path the transfer decoding
(:class:`ingest.mail.attachments.Decoder`) never raises either, and gives the same bytes
however the body is cut into fetched chunks."""

from __future__ import annotations

import base64
import gzip
import io
import json
import zipfile
from email.message import EmailMessage
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.mail.attachments import MAX_MIME_DEPTH, Decoder, parse_email
from ingest.pipeline.intake import archive_report
from ingest.pipeline.summary import RunSummary
from ingest.simulator import generate_messages, rows_to_csv
from ingest.state.store import Store
from tests.support.mail import corrupt_gzip, encrypted_zip, gzip_bomb

BOT = "f0f0f0f0-0000-4000-8000-000000000001"
GOOD_CSV = rows_to_csv(generate_messages(BOT, *[__import__("datetime").date(2024, 1, 1)] * 2))

names = st.one_of(
    st.none(),
    st.text(max_size=40).map(lambda s: " ".join(s.splitlines())),
    st.sampled_from(
        [
            "report.csv",
            "../../etc/passwd.csv",
            "r.csv.gz",
            "bundle.zip",
            "logo.png",
            "=?utf-8?q?x?=.csv",
            "Bericht Grüße.csv",
            "a/b\\c.csv",
            ".hidden.csv",
            "月次メッセージ報告書" * 12 + ".csv",
            "é" * 200 + ".csv.gz",
            "\U0001f4ca" * 80 + ".zip",
        ]
    ),
)
payloads = st.one_of(
    st.binary(max_size=300),
    st.just(GOOD_CSV),
    st.just(b"id,timestamp\n1,2024-01-01T00:00:00Z\n2,not-a-date\n"),
    st.just(b"\xff\xfe not utf-8, at all\n"),
    st.builds(lambda b: gzip.compress(b), st.sampled_from([GOOD_CSV, b"id,timestamp\n"])),
    st.builds(lambda b: b[: len(b) // 2], st.just(gzip.compress(GOOD_CSV))),  # truncated gzip
    st.just(corrupt_gzip(GOOD_CSV)),  # valid header, broken deflate stream (zlib.error)
    st.just(encrypted_zip("r.csv", GOOD_CSV)),  # ZipCrypto member (RuntimeError without a password)
    st.just(gzip_bomb(2 * 1024 * 1024)),
)


@st.composite
def zips(draw: st.DrawFn) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(draw(st.integers(0, 3))):
            archive.writestr(
                draw(st.sampled_from([f"r{n}.csv", f"../x{n}.csv", f"d/{n}.txt"])), draw(payloads)
            )
    return buffer.getvalue()


@st.composite
def emails(draw: st.DrawFn) -> EmailMessage:
    # Serialised in the test body: the email package draws MIME boundaries from `random`.
    msg = EmailMessage()
    msg["From"] = draw(st.sampled_from(["reports@certainly.example", "a@b", "", "x <y@z>, w@v"]))
    msg["Subject"] = draw(st.text(max_size=60).map(lambda s: " ".join(s.splitlines())))
    msg.set_content(draw(st.text(max_size=100)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["csv", "octet", "zip", "gzip", "text", "nested", "encrypted"]))
        filename = draw(names)
        if kind == "zip":
            msg.add_attachment(draw(zips()), maintype="application", subtype="zip", filename=filename)
        elif kind == "encrypted":
            msg.add_attachment(
                encrypted_zip(draw(st.sampled_from(["r.csv", "x/../r.csv"])), draw(payloads)),
                maintype="application",
                subtype="zip",
                filename=filename,
            )
        elif kind == "nested":
            inner = EmailMessage()
            inner["Subject"] = "forwarded"
            inner.add_attachment(draw(payloads), maintype="text", subtype="csv", filename="inner.csv")
            msg.add_attachment(inner)
        else:
            maintype, subtype = {
                "csv": ("text", "csv"),
                "octet": ("application", "octet-stream"),
                "gzip": ("application", "gzip"),
                "text": ("text", "plain"),
            }[kind]
            data = draw(payloads)
            if maintype == "text":
                msg.add_attachment(
                    data.decode("utf-8", "replace"),
                    subtype=subtype,
                    filename=filename,
                    cte=draw(st.sampled_from(["base64", "quoted-printable"])),
                )
            else:
                msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    parsed = parse_email(raw)
    assert all(r.filename and "/" not in r.filename for r in parsed.reports)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=emails())
def test_every_report_is_archived_or_quarantined_with_a_reason(
    message: EmailMessage, tmp_path_factory
) -> None:  # type: ignore[no-untyped-def]
    raw = message.as_bytes()
    workdir = tmp_path_factory.mktemp("fuzz")
    root = workdir / "archive"
    parsed = parse_email(raw)
    with Store.open(workdir / "state.sqlite") as store:
        summary = RunSummary()
        for report in parsed.reports:
            assert "/" not in report.filename and "\\" not in report.filename
            outcome = archive_report(root, store, report, parsed, summary, bot_id=BOT)
            assert outcome in {"archived", "duplicate", "quarantined"}
            if outcome == "quarantined":
                reasons = list((root / "quarantine").glob("*/reason.json"))
                # A whole file has one "reason"; rejected rows have "reasons" counted by kind.
                docs = [json.loads(p.read_text()) for p in reasons]
                assert docs and all(d.get("reason") or d.get("reasons") for d in docs)
        assert summary.balanced
    # Nothing is ever written outside the archive root.
    assert {p.name for p in workdir.iterdir()} <= {
        "archive",
        "state.sqlite",
        "state.sqlite-wal",
        "state.sqlite-shm",
    }
    assert all(Path(p).resolve().is_relative_to(root.resolve()) for p in root.rglob("*"))


def nested(depth: int, leaf: bytes, *, rfc822_every: int = 0) -> bytes:
    """A message whose CSV sits ``depth`` multipart levels down; every ``rfc822_every``-th
    level is an attached message instead of a multipart."""
    out = b"From: reports@certainly.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    closing: list[bytes] = []
    for level in range(depth):
        if rfc822_every and level % rfc822_every == rfc822_every - 1:
            out += b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n"
            continue
        out += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
        closing.append(b"\r\n--b%d--\r\n" % level)
    out += b"Content-Type: text/csv\r\nContent-Disposition: attachment; filename=r.csv\r\n\r\n" + leaf
    return out + b"".join(reversed(closing))


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(0, 1200), rfc822_every=st.sampled_from([0, 2, 3]), leaf=payloads)
def test_deep_mime_never_raises_and_too_deep_is_refused_with_a_reason(
    depth: int, rfc822_every: int, leaf: bytes
) -> None:
    parsed = parse_email(nested(depth, leaf, rfc822_every=rfc822_every))
    refused = [p for p in parsed.problems if "nested deeper than" in p]
    if depth > MAX_MIME_DEPTH:
        assert refused and parsed.reports == []
    elif depth < MAX_MIME_DEPTH // 2:
        assert not refused


base64_bodies = st.one_of(
    st.binary(max_size=3000).map(lambda b: base64.encodebytes(b).replace(b"\n", b"\r\n")),
    st.binary(max_size=400),  # anything at all
    st.builds(
        lambda b, junk, at: b[:at] + junk + b[at:],  # one damaged line
        st.binary(min_size=1, max_size=2000).map(lambda b: base64.encodebytes(b)),
        st.binary(min_size=1, max_size=8),
        st.integers(0, 2000),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    body=base64_bodies,
    cuts=st.lists(st.integers(1, 997), min_size=1, max_size=6),
    encoding=st.sampled_from(["base64", "quoted-printable", "7bit"]),
    text=st.booleans(),
)
def test_part_path_decoding_never_raises_and_ignores_where_chunks_end(
    body: bytes, cuts: list[int], encoding: str, text: bool
) -> None:
    def decode(sizes: list[int]) -> bytes:
        decoder, out, at = Decoder(encoding, text=text), io.BytesIO(), 0
        for size in sizes * (len(body) // max(1, sum(sizes)) + 1):
            decoder.feed(body[at : at + size], out)
            at += size
        decoder.feed(body[at:], out)
        decoder.finish(out)
        return out.getvalue()

    whole = decode([len(body) or 1])
    assert decode(cuts) == whole
    if (
        encoding == "base64"
        and body
        and all(c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n" for c in body)
    ):
        try:
            expected = base64.b64decode(body.replace(b"\r\n", b""), validate=False)
        except ValueError:
            return  # not valid base64: only "never raises" is promised
        assert whole == expected
