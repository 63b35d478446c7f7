"""`ingest verify-export` against a changed bundle: it accepts exactly the signed files plus
manifest.json, manifest.json.sig and SHA256SUMS, and names every file added, removed,
renamed, duplicated or changed, in a folder and in a zip (exit 1); a zip bomb, a bad name,
a link or a broken manifest is one line, never a traceback. A killed export's leftovers
are swept by the next export."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.crashpoints import EXPORT_POINTS
from ingest.export.bundle import MAX_MANIFEST_BYTES
from ingest.export.check import MAX_RATIO, check_bundle
from ingest.export.signing import load_private_key, sign
from ingest.export.workfolder import MARKER, sweep_killed_exports
from ingest.simulator import generate_messages
from ingest.simulator.data import rows_to_csv
from tests.support.job import run_ingest

pytestmark = pytest.mark.integration

BOT_A, BOT_B = "bot-a", "bot-b"
DATA_A, DATA_B = f"data/messages/{BOT_A}.csv", f"data/messages/{BOT_B}.csv"
Edit = Callable[[Path], None]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small archive of two bots and a signed folder bundle of both (CSV)."""
    work = tmp_path_factory.mktemp("tamper")
    for bot, start in ((BOT_A, date(2024, 1, 1)), (BOT_B, date(2024, 1, 3))):
        (work / f"{bot}.csv").write_bytes(rows_to_csv(generate_messages(bot, start, start.replace(day=5))))
    env = _env(work)
    for bot in (BOT_A, BOT_B):
        done = run_ingest("import", f"{bot}.csv", "--bot", bot, env=env, cwd=work)
        assert done.returncode == 0, done.stderr
    done = run_ingest("keygen", "--out", "signer.key", env=env, cwd=work)
    assert done.returncode == 0, done.stderr
    done = run_ingest("export", "--bot", BOT_A, "--bot", BOT_B, "--out", "bundle", env=env, cwd=work)
    assert done.returncode == 0, done.stderr
    return {"work": work, "bundle": work / "bundle", "public": work / "signer.key.pub"}


def _env(work: Path) -> dict[str, str | None]:
    return {
        "INGEST_OUTPUT__ROOT": str(work / "archive"),
        "INGEST_STATE__PATH": str(work / "state.sqlite"),
        "INGEST_EXPORT__SIGNING_KEY_FILE": str(work / "signer.key"),
    }


def _verify(made: dict[str, Path], bundle: Path) -> subprocess.CompletedProcess[str]:
    return run_ingest("verify-export", str(bundle), "--public-key", str(made["public"]), cwd=made["work"])


def _copy(made: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    shutil.copytree(made["bundle"], folder, symlinks=True)
    return folder


def _zip_of(folder: Path, out: Path, members: list[tuple[str, bytes]] | None = None) -> Path:
    """``folder`` as a zip as the export writes it, then ``members`` appended as they are."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(folder).as_posix())
        for name, data in members or []:
            archive.writestr(name, data)
    return out


def _add_with_sum(folder: Path, name: str, data: bytes) -> None:
    """An added file, and its line appended to SHA256SUMS (which is not signed)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with (folder / "SHA256SUMS").open("a", encoding="utf-8") as sums:
        sums.write(f"{hashlib.sha256(data).hexdigest()}  {name}\n")


def _added(folder: Path) -> None:
    _add_with_sum(folder, "data/messages/extra.csv", b'"id"\r\n"1"\r\n')


def _removed(folder: Path) -> None:
    (folder / DATA_B).unlink()


def _renamed(folder: Path) -> None:
    (folder / DATA_B).rename(folder / "data/messages/bot-c.csv")


def _duplicated(folder: Path) -> None:
    shutil.copyfile(folder / DATA_A, folder / "data/messages/bot-a copy.csv")


def _changed(folder: Path) -> None:
    content = bytearray((folder / DATA_A).read_bytes())
    content[-5] ^= 0x01
    (folder / DATA_A).write_bytes(bytes(content))


#: Each change, and the lines verify-export must print for it (each naming its file).
TAMPERING: dict[str, tuple[Edit, list[str]]] = {
    "added": (_added, ["data/messages/extra.csv: not in the signed manifest.json (file added)"]),
    "removed": (_removed, [f"{DATA_B}: missing (listed in manifest.json)"]),
    "renamed": (
        _renamed,
        [
            "data/messages/bot-c.csv: not in the signed manifest.json (file added)",
            f"{DATA_B}: missing (listed in manifest.json)",
        ],
    ),
    "duplicated": (_duplicated, ["data/messages/bot-a copy.csv: not in the signed manifest.json"]),
    "changed": (
        _changed,
        [f"{DATA_A}: sha256 differs from SHA256SUMS", f"{DATA_A}: sha256 differs from manifest.json"],
    ),
}


def test_the_untouched_bundle_verifies_as_a_folder_and_as_a_zip(
    made: dict[str, Path], tmp_path: Path
) -> None:
    assert _verify(made, made["bundle"]).returncode == 0
    zipped = _zip_of(made["bundle"], tmp_path / "b.zip")
    checked = _verify(made, zipped)
    assert checked.returncode == 0, checked.stdout
    assert "OK" in checked.stdout


def test_the_ok_lines_are_one_line_each_when_piped(made: dict[str, Path], tmp_path: Path) -> None:
    """Scripts grep these lines: piped (no terminal width), they are never wrapped."""
    out = tmp_path / ("a-folder-name-long-enough-to-wrap-any-line-at-eighty-columns" * 2) / "q.zip"
    exported = run_ingest(
        "export", "--bot", BOT_A, "--out", str(out), env=_env(made["work"]), cwd=made["work"]
    )
    checked = _verify(made, out)

    assert exported.returncode == 0, exported.stderr
    assert [line for line in exported.stdout.splitlines() if line.startswith("exported ")][0].endswith("...")
    assert str(out) in exported.stdout
    assert checked.stdout == (
        "verify-export: OK, signature, files (exactly those signed), checksums and counts match\n"
    )


@pytest.mark.parametrize("form", ["folder", "zip"])
@pytest.mark.parametrize("change", sorted(TAMPERING))
def test_a_tampered_bundle_fails_naming_the_file(
    made: dict[str, Path], tmp_path: Path, change: str, form: str
) -> None:
    edit, expected = TAMPERING[change]
    folder = _copy(made, tmp_path)
    edit(folder)
    bundle = folder if form == "folder" else _zip_of(folder, tmp_path / "tampered.zip")

    checked = _verify(made, bundle)

    assert checked.returncode == 1, checked.stdout
    for line in expected:
        assert line in checked.stdout, checked.stdout
    assert "Traceback" not in checked.stdout + checked.stderr


def test_a_duplicate_zip_member_fails_naming_it(made: dict[str, Path], tmp_path: Path) -> None:
    extra = (made["bundle"] / DATA_A).read_bytes()
    with pytest.warns(UserWarning, match="Duplicate name"):
        zipped = _zip_of(made["bundle"], tmp_path / "dup.zip", [(DATA_A, extra)])

    checked = _verify(made, zipped)

    assert checked.returncode == 1
    assert f"{DATA_A}: in the zip 2 times (a duplicate member)" in checked.stdout


def _local_entry(name: str, data: bytes, extra: bytes = b"") -> bytes:
    """A stored local entry, as a streaming unzip tool would read it."""
    head = struct.pack(
        "<IHHHHHIIIHH",
        0x04034B50,
        20,
        0,
        0,
        0,
        0,
        zlib.crc32(data),
        len(data),
        len(data),
        len(name),
        len(extra),
    )
    return head + name.encode() + extra + data


FORGED = b'\xef\xbb\xbf"id","message","date"\r\n"1","EVIL: pay to IBAN XX00 0000","2024-01-01"\r\n'


def _hidden_before_directory(raw: bytes) -> bytes:
    """A forged entry inserted before the central directory, the end record's offset moved."""
    end = raw.rfind(b"PK\x05\x06")
    fields = list(struct.unpack("<IHHHHIIH", raw[end : end + 22]))
    hidden = _local_entry(DATA_A, FORGED)
    fields[6] += len(hidden)
    return (
        raw[: fields[6] - len(hidden)]
        + hidden
        + raw[fields[6] - len(hidden) : end]
        + struct.pack("<IHHHHIIH", *fields)
    )


def _unicode_path(name: str, shown: str) -> bytes:
    body = b"\x01" + struct.pack("<I", zlib.crc32(name.encode())) + shown.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


def _renamed_for_info_zip(folder: Path, out: Path, kind: int) -> Path:
    """The bundle with bot-a's and bot-b's data swapped for Info-ZIP's unzip alone."""
    swap = {DATA_A: DATA_B, DATA_B: DATA_A}
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix()
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            if name in swap:
                info.extra = (
                    _unicode_path(name, swap[name])
                    if kind == 0x7075
                    else struct.pack("<HH", kind, 5) + b"\x01\x00\x00\x00\x00"
                )
            archive.writestr(info, path.read_bytes())
    return out


def _nul_named(raw: bytes) -> bytes:
    """An added member ``SUMMARY.txt<NUL>evil.exe``: zipfile reads ``SUMMARY.txt``."""
    buffer = io.BytesIO(raw)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("SUMMARY.txtXevil.exe", b"MZ evil")
    return buffer.getvalue().replace(b"SUMMARY.txtXevil.exe", b"SUMMARY.txt\x00evil.exe")


ZIP_FORGERIES: dict[str, Callable[[bytes], bytes]] = {
    "a member name with a NUL": _nul_named,
    "a stored entry hidden before the central directory": _hidden_before_directory,
    "an entry prepended": lambda raw: _local_entry(DATA_A, FORGED) + raw,
    "junk appended": lambda raw: raw + b"trailing junk " * 3,
    "a second zip appended": lambda raw: raw + raw,
    "a zip comment": lambda raw: raw[:-2] + struct.pack("<H", 4) + b"note",
}


@pytest.mark.parametrize("forgery", sorted(ZIP_FORGERIES))
def test_a_zip_another_unzip_tool_reads_differently_is_refused(
    made: dict[str, Path], tmp_path: Path, forgery: str
) -> None:
    raw = _zip_of(made["bundle"], tmp_path / "b.zip").read_bytes()
    forged = tmp_path / "forged.zip"
    forged.write_bytes(ZIP_FORGERIES[forgery](raw))
    with zipfile.ZipFile(forged) as archive:  # the directory's reading is still the signed bundle
        assert archive.read(DATA_A) == (made["bundle"] / DATA_A).read_bytes()

    checked = _verify(made, forged)

    assert checked.returncode == 1, checked.stdout
    assert checked.stdout.count("  - ") == 1 and "refused:" in checked.stdout, checked.stdout
    assert "not a zip every unzip tool reads alike" in checked.stdout
    assert "Traceback" not in checked.stdout + checked.stderr


@pytest.mark.parametrize("kind", [0x7075, 0x6375])
def test_a_zip_renaming_members_for_info_zip_is_refused(
    made: dict[str, Path], tmp_path: Path, kind: int
) -> None:
    forged = _renamed_for_info_zip(made["bundle"], tmp_path / "upath.zip", kind)
    if kind == 0x7075:  # Info-ZIP's unzip does unpack bot-b's data as bot-a's
        subprocess.run(["unzip", "-q", str(forged), "-d", str(tmp_path / "out")], check=True)
        assert (tmp_path / "out" / DATA_A).read_bytes() == (made["bundle"] / DATA_B).read_bytes()

    checked = _verify(made, forged)

    assert checked.returncode == 1, checked.stdout
    assert f"extra field 0x{kind:04x}" in checked.stdout and checked.stdout.count("  - ") == 1


def test_zips_of_other_tools_still_verify(made: dict[str, Path], tmp_path: Path) -> None:
    """Info-ZIP's zip (timestamp and Unix extra fields) and a streamed zip (data
    descriptors after each member) are laid out exactly, so they verify."""
    by_zip = tmp_path / "by-zip.zip"
    subprocess.run(["zip", "-q", "-r", "-X-", str(by_zip), "."], cwd=made["bundle"], check=True)
    streamed = tmp_path / "streamed.zip"
    with (
        streamed.open("wb") as sink,
        zipfile.ZipFile(_Unseekable(sink), "w", zipfile.ZIP_DEFLATED) as archive,
    ):
        for path in sorted(p for p in made["bundle"].rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(made["bundle"]).as_posix())
    with zipfile.ZipFile(streamed) as archive:
        assert all(info.flag_bits & 0x08 for info in archive.infolist())

    for bundle in (by_zip, streamed):
        checked = _verify(made, bundle)
        assert checked.returncode == 0, checked.stdout


def test_a_zip64_bundle_still_verifies(
    made: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle over 4 GiB or 65,535 members is zip64 (sizes and offsets in extra fields,
    a zip64 end record): the limits made small, so every member and the end are zip64 here."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 16)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)
    zipped = _zip_of(made["bundle"], tmp_path / "z64.zip")
    monkeypatch.undo()
    raw = zipped.read_bytes()
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw  # the zip64 end record and its locator

    assert check_bundle(zipped, made["public"].read_bytes()) == []
    forged = tmp_path / "z64-hidden.zip"
    forged.write_bytes(raw + b"junk")
    assert "not a zip every unzip tool reads alike" in check_bundle(forged, made["public"].read_bytes())[0]


class _Unseekable(io.RawIOBase):
    """A file zipfile cannot seek back in, so it writes a data descriptor after each member."""

    def __init__(self, sink: io.BufferedWriter) -> None:
        self.sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self.sink.write(data)

    def flush(self) -> None:
        self.sink.flush()


def test_a_symbolic_link_fails_naming_it_in_a_folder_and_in_a_zip(
    made: dict[str, Path], tmp_path: Path
) -> None:
    folder = _copy(made, tmp_path)
    outside = tmp_path / "outside.csv"
    outside.write_bytes((folder / DATA_B).read_bytes())
    (folder / DATA_B).unlink()
    (folder / DATA_B).symlink_to(outside)  # same bytes, but not the bundle's own file
    link = zipfile.ZipInfo("data/messages/link.csv")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zipped = _zip_of(made["bundle"], tmp_path / "link.zip")
    with zipfile.ZipFile(zipped, "a") as archive:
        archive.writestr(link, "/etc/passwd")

    in_folder, in_zip = _verify(made, folder), _verify(made, zipped)

    assert in_folder.returncode == 1 and in_zip.returncode == 1
    assert f"{DATA_B}: a symbolic link (a bundle holds only files)" in in_folder.stdout
    assert "data/messages/link.csv: a symbolic link (a bundle holds only files)" in in_zip.stdout


def test_a_folder_where_a_file_should_be_fails_naming_it(made: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(made, tmp_path)
    (folder / DATA_B).unlink()
    (folder / DATA_B).mkdir()
    zipped = _zip_of(made["bundle"], tmp_path / "dir.zip")
    with zipfile.ZipFile(zipped, "a") as archive:
        archive.writestr(zipfile.ZipInfo("data/messages/empty/"), b"")

    in_folder, in_zip = _verify(made, folder), _verify(made, zipped)

    assert in_folder.returncode == 1
    assert f"{DATA_B}: a folder where manifest.json lists a file" in in_folder.stdout
    assert in_zip.returncode == 1
    assert "data/messages/empty/: a folder not in the signed manifest.json (added)" in in_zip.stdout


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../escaped.csv", "outside the bundle"),
        ("data/../../escaped.csv", "outside the bundle"),
        ("/etc/escaped.csv", "an absolute name"),
        ("C:/escaped.csv", "an absolute name"),
        ("data\\messages\\x.csv", "backslash"),
        ("./data/messages/bot-a.csv", "not a plain relative name"),
        ("data//messages/x.csv", "not a plain relative name"),
    ],
)
def test_a_zip_member_name_leaving_the_bundle_is_named_and_never_written(
    made: dict[str, Path], tmp_path: Path, name: str, why: str
) -> None:
    zipped = _zip_of(made["bundle"], tmp_path / "names.zip")
    with zipfile.ZipFile(zipped, "a") as archive:
        info = zipfile.ZipInfo("placeholder")
        info.filename = name  # ZipInfo normalises some names; the attacker's writer does not
        archive.writestr(info, b"pwned")

    checked = _verify(made, zipped)

    assert checked.returncode == 1
    assert f"{name!r}: " in checked.stdout and why in checked.stdout, checked.stdout
    assert not (tmp_path / "escaped.csv").exists() and not Path("/etc/escaped.csv").exists()


def test_a_zip_bomb_is_refused_in_one_line_before_inflating(made: dict[str, Path], tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("data/messages/bomb.csv", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(64):  # 64 MiB of zeros: about 64 KiB deflated
                member.write(block)
    assert bomb.stat().st_size < (64 << 20) // MAX_RATIO

    checked = _verify(made, bomb)

    assert checked.returncode == 1
    assert checked.stdout.strip().splitlines() == [
        line for line in checked.stdout.strip().splitlines() if line.strip()
    ]
    assert "bomb.zip: refused: member 'data/messages/bomb.csv' inflates" in checked.stdout
    assert "a zip bomb, not a bundle" in checked.stdout
    assert len([line for line in checked.stdout.splitlines() if line.startswith("  - ")]) == 1


def test_a_zip_with_too_many_members_is_refused_in_one_line(
    made: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.export.check as check

    monkeypatch.setattr(check, "MAX_MEMBERS", 8)  # the bound, made small enough to reach here
    zipped = _zip_of(made["bundle"], tmp_path / "many.zip", [(f"pad/{n}", b"") for n in range(8)])

    problems = check_bundle(zipped, made["public"].read_bytes())

    assert problems == ["many.zip: refused: 14 members, more than a bundle has (8)"]


#: Manifests a careless or hostile sender could sign: each is one line, exit 1.
BROKEN_MANIFESTS = {
    "not JSON": b"{not json",
    "a list": b"[]",
    "files not a list": b'{"files": {"a": 1}}',
    "a file entry not an object": b'{"files": ["data/x.csv"]}',
    "a path not a string": b'{"files": [{"path": 7, "sha256": "x", "size": 1}]}',
    "a size not a count": b'{"files": [{"path": "a.csv", "sha256": "x", "size": "12"}]}',
    "a path leaving the bundle": b'{"files": [{"path": "../a.csv", "sha256": "x", "size": 1}]}',
    "a dataset that is a list": b'{"files": [{"path": "a.csv", "sha256": "x", "size": 1, "dataset": []}]}',
    "counts not nested": b'{"files": [], "counts": {"messages": 3}}',
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "not UTF-8": b'{"files": "\xff\xfe"}',
}


@pytest.mark.parametrize("case", sorted(BROKEN_MANIFESTS))
def test_a_malformed_or_wrongly_typed_manifest_is_one_line_and_exit_1(
    made: dict[str, Path], tmp_path: Path, case: str
) -> None:
    folder = _copy(made, tmp_path)
    data = BROKEN_MANIFESTS[case]
    (folder / "manifest.json").write_bytes(data)
    key = load_private_key((made["work"] / "signer.key").read_bytes())
    (folder / "manifest.json.sig").write_bytes(sign(key, data))  # signed: the sender's own mistake

    checked = _verify(made, folder)

    assert checked.returncode == 1
    problems = [line for line in checked.stdout.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1 and problems[0].startswith("  - manifest.json: not a bundle manifest ("), (
        checked.stdout
    )
    assert "Traceback" not in checked.stdout + checked.stderr


def test_a_forged_manifest_is_refused_by_its_signature_before_it_is_parsed(
    made: dict[str, Path], tmp_path: Path
) -> None:
    """A manifest nobody signed is never parsed (a costly one costs nothing): only the
    signature is named, and nothing the forged manifest says is trusted."""
    folder = _copy(made, tmp_path)
    (folder / "manifest.json").write_bytes(b"[" * 5_000_000)  # would be slow or a RecursionError to parse
    (folder / "manifest.json.sig").write_bytes(b"\0" * 10_000_000)  # no signature is 10 MB

    problems = check_bundle(folder, made["public"].read_bytes())

    assert problems == [
        "manifest.json.sig: not a signature of manifest.json by this public key "
        "(the manifest was changed, or another key signed it)",
        "manifest.json: sha256 differs from SHA256SUMS (file changed)",
        "nothing else checked: a manifest.json this key did not sign says nothing of the bundle",
    ]


def test_a_manifest_over_the_bound_is_not_read(made: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(made, tmp_path)
    with (folder / "manifest.json").open("ab") as manifest:
        manifest.truncate(MAX_MANIFEST_BYTES + 1)

    checked = _verify(made, folder)

    assert checked.returncode == 1
    assert f"manifest.json: {MAX_MANIFEST_BYTES + 1} bytes, more than a manifest is" in checked.stdout
    assert checked.stdout.count("  - ") == 1
    zipped = _zip_of(folder, tmp_path / "big-manifest.zip")
    assert check_bundle(zipped, made["public"].read_bytes()) == [
        f"big-manifest.zip: refused: manifest.json inflates to {MAX_MANIFEST_BYTES + 1} bytes "
        f"(a manifest is at most {MAX_MANIFEST_BYTES})"
    ]


@pytest.mark.parametrize("junk", [b"", b"PK\x03\x04 not really", os.urandom(4096)])
def test_a_file_that_is_no_zip_is_one_line_and_exit_1(
    made: dict[str, Path], tmp_path: Path, junk: bytes
) -> None:
    bundle = tmp_path / "junk.zip"
    bundle.write_bytes(junk)

    checked = _verify(made, bundle)

    assert checked.returncode == 1
    assert "junk.zip: not a readable zip" in checked.stdout
    assert "Traceback" not in checked.stdout + checked.stderr


#: Names a careless or hostile hand may add: any relative path of plain parts.
name_parts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\x00"),
    min_size=1,
    max_size=12,
).filter(lambda part: part not in (".", ".."))
relative_names = st.lists(name_parts, min_size=1, max_size=4).map("/".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=relative_names, data=st.binary(max_size=64), with_sum=st.booleans(), zipped=st.booleans())
def test_any_added_file_fails_naming_it(
    made: dict[str, Path], name: str, data: bytes, with_sum: bool, zipped: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bundle"
        shutil.copytree(made["bundle"], folder)
        target = folder / name
        if target.exists() or any(p.is_file() for p in target.parents):
            return  # a name the bundle already uses for a file: the change tests below cover it
        if with_sum:
            _add_with_sum(folder, name, data)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        bundle = _zip_of(folder, Path(tmp) / "b.zip") if zipped else folder

        problems = check_bundle(bundle, made["public"].read_bytes())

    assert f"{name}: not in the signed manifest.json (file added)" in problems


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from([DATA_A, DATA_B, "SUMMARY.txt"]), where=st.integers(0), flip=st.integers(1, 255))
def test_any_changed_byte_fails_naming_the_file(
    made: dict[str, Path], which: str, where: int, flip: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bundle"
        shutil.copytree(made["bundle"], folder)
        content = bytearray((folder / which).read_bytes())
        content[where % len(content)] ^= flip
        (folder / which).write_bytes(bytes(content))

        problems = check_bundle(folder, made["public"].read_bytes())

    assert f"{which}: sha256 differs from manifest.json (file changed)" in problems


def test_a_sums_line_for_a_file_the_manifest_does_not_sign_is_named(
    made: dict[str, Path], tmp_path: Path
) -> None:
    folder = _copy(made, tmp_path)
    with (folder / "SHA256SUMS").open("a", encoding="utf-8") as sums:
        sums.write(f"{'0' * 64}  data/messages/ghost.csv\n")

    problems = check_bundle(folder, made["public"].read_bytes())

    assert any("'data/messages/ghost.csv' is not in the signed manifest.json" in p for p in problems)


def _lookalikes(out: Path) -> list[str]:
    """Folders and files an earlier version's sweep could take for an export's leftovers:
    bundle-shaped, named like one, of a process id that is alive in another namespace (1)
    or gone; none carries the exporter's marker, so none is ever removed."""
    for name in (".notes.tmp-1", ".q.zip.tmp-999999999", ".q.zip.part-1"):
        (out / name).mkdir()
        (out / name / "manifest.json").write_text("{}")
        (out / name / "data").mkdir()
    (out / ".old.zip.part-999999999").write_bytes(b"PK\x03\x04 someone's zip")
    return sorted(p.name for p in out.iterdir() if p.name.startswith((".notes", ".q.zip.", ".old")))


@pytest.mark.parametrize("point", EXPORT_POINTS)
def test_a_killed_exports_leftovers_are_swept_by_the_next_export(made: dict[str, Path], point: str) -> None:
    work = made["work"]
    out = work / "killed"
    out.mkdir()
    env = {**_env(work), "INGEST_CRASH_AT": point}
    strangers = _lookalikes(out)

    killed = run_ingest("export", "--bot", BOT_A, "--out", str(out / "q.zip"), env=env, cwd=work)

    assert killed.returncode == -signal.SIGKILL
    (left,) = [p for p in out.iterdir() if p.name.startswith(".q.zip.tmp-") and (p / MARKER).exists()]

    again = run_ingest("export", "--bot", BOT_A, "--out", str(out / "q2.zip"), env=_env(work), cwd=work)

    assert again.returncode == 0, again.stderr
    assert not left.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([*strangers, "q2.zip"])
    assert _verify(made, out / "q2.zip").returncode == 0
    shutil.rmtree(out)


def test_a_running_exports_folder_is_never_swept_whatever_its_pid(tmp_path: Path) -> None:
    """An export in another container (its pid means nothing here, or is this one's) keeps
    its folder while it holds the marker's lock; once no one holds it, the folder goes."""
    running = tmp_path / ".q.zip.tmp-1"
    running.mkdir()
    (running / "bundle").mkdir()
    (running / MARKER).write_text("certainly-ingest export to q.zip, pid 1\n")
    holder = os.open(running / MARKER, os.O_RDWR)  # another export's lock: a separate open file
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        assert sweep_killed_exports(tmp_path) == 0
        assert (running / MARKER).exists()
    finally:
        os.close(holder)

    assert sweep_killed_exports(tmp_path) == 1
    assert not running.exists()


def test_a_marker_that_is_a_link_or_folder_makes_nothing_sweepable(tmp_path: Path) -> None:
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "f").write_text("keep")
    linked = tmp_path / ".a.tmp-1"
    linked.mkdir()
    (linked / MARKER).symlink_to(elsewhere / "f")
    folder = tmp_path / ".b.tmp-1"
    (folder / MARKER).mkdir(parents=True)
    (tmp_path / ".c.tmp-1").symlink_to(elsewhere)

    assert sweep_killed_exports(tmp_path) == 0
    assert linked.exists() and folder.exists() and (elsewhere / "f").read_text() == "keep"


def test_the_manifest_lists_what_the_recipient_gets(made: dict[str, Path]) -> None:
    manifest = json.loads((made["bundle"] / "manifest.json").read_bytes())
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {p.relative_to(made["bundle"]).as_posix() for p in made["bundle"].rglob("*") if p.is_file()}
    assert on_disk == listed | {"manifest.json", "manifest.json.sig", "SHA256SUMS"}


def test_a_manifest_that_is_a_link_is_named(made: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(made, tmp_path)
    real = tmp_path / "elsewhere.json"
    (folder / "manifest.json").rename(real)
    (folder / "manifest.json").symlink_to(real)

    assert check_bundle(folder, made["public"].read_bytes()) == ["manifest.json: a symbolic link, not a file"]


def test_a_bundle_zipped_inside_its_folder_says_where_the_manifest_is(
    made: dict[str, Path], tmp_path: Path
) -> None:
    zipped = tmp_path / "nested.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for path in sorted(p for p in made["bundle"].rglob("*") if p.is_file()):
            archive.write(path, "bundle/" + path.relative_to(made["bundle"]).as_posix())

    assert check_bundle(zipped, made["public"].read_bytes()) == [
        "manifest.json: missing (one is in bundle/: give that folder, or zip its contents)"
    ]


def _members(raw: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        return sorted((info.filename, archive.read(info)) for info in archive.infolist())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.lists(st.tuples(st.integers(0), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(0)),
)
def test_any_damage_to_a_zip_is_named_or_changes_no_file_and_never_a_traceback(
    made: dict[str, Path], changes: list[tuple[int, int]], cut: int | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pristine = _zip_of(made["bundle"], Path(tmp) / "b.zip").read_bytes()
        damaged = bytearray(pristine)
        for where, value in changes:
            damaged[where % len(damaged)] = value
        if cut is not None:
            damaged = damaged[: cut % len(damaged)]
        (Path(tmp) / "d.zip").write_bytes(bytes(damaged))

        problems = check_bundle(Path(tmp) / "d.zip", made["public"].read_bytes())

    if not problems:  # only the container changed (a date, an attribute): the files are the signed ones
        assert _members(bytes(damaged)) == _members(pristine)
