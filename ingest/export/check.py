"""``ingest verify-export``: check a bundle as its recipient would.

Checks, each failure naming what differs:

1. ``manifest.json.sig`` is the Ed25519 signature of ``manifest.json`` under the given
   public key (a changed manifest, or one signed by another key, fails here, before the
   manifest is parsed, and nothing else is checked; a manifest over
   :data:`~ingest.export.bundle.MAX_MANIFEST_BYTES` is not even read);
2. the bundle holds exactly the signed manifest's files plus ``manifest.json``,
   ``manifest.json.sig`` and ``SHA256SUMS``: an added, renamed or duplicated file, a
   symbolic link, a folder where a file should be, a name that would leave the bundle, is
   named (``SHA256SUMS`` is not signed, so it never decides what belongs);
3. every file ``SHA256SUMS`` lists is present with that sha256, and no file is unlisted;
4. every file ``manifest.json`` lists is present with its sha256 and size;
5. the rows of each data file, counted again per day, are the manifest's counts.

A ``.zip`` bundle is judged from its directory first (member names, kinds, duplicates,
and bounds: members, sizes, compression ratio, so a zip bomb is refused before a byte is
inflated), and from its layout (:mod:`ingest.export.ziplayout`: nothing any unzip tool
could read differently), then its regular files are unpacked into a private temporary folder.

Example::

    problems = check_bundle(Path("export.zip"), Path("export.key.pub").read_bytes())
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl
from pydantic import ValidationError

from ingest.archive.storage import sha256_file
from ingest.errors import ConfigError
from ingest.export.bundle import MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE, SUMS
from ingest.export.signing import BadSignature, verify_signature
from ingest.export.ziplayout import layout_problem
from ingest.records import BundleManifest, first_problem, load

_SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
#: The files every bundle holds besides those its manifest lists.
FRAME = (MANIFEST, SIGNATURE, SUMS)

#: Bounds on a zip before anything is inflated. A bundle has one file per bot and dataset
#: (four datasets) plus four; a data file is CSV, JSON Lines or Parquet of archived rows.
MAX_MEMBERS = 50_000
MAX_MEMBER_BYTES = 64 << 30
MAX_TOTAL_BYTES = 256 << 30
#: Deflate reaches about 1032:1 at most; real CSV of chat rows compresses 5-20:1, a
#: repetitive column more, a zip bomb hundreds to a thousand to one.
MAX_RATIO = 200
#: Below this a member's ratio is not judged (a tiny file of one repeated byte is harmless).
RATIO_FLOOR_BYTES = 1 << 20

SIGNATURE_BYTES = 64

FILE, FOLDER, LINK, OTHER = "file", "folder", "symbolic link", "special file"


#: What zipfile raises on a damaged, encrypted or unsupported member (zlib, bz2 and lzma
#: raise their own errors on a damaged compressed stream).
_UNREADABLE = (
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    ValueError,
    EOFError,
    RuntimeError,
    NotImplementedError,
)


class BundleRefused(Exception):
    """The bundle cannot be judged file by file (a zip over its bounds, unreadable)."""


@dataclass(frozen=True)
class Entry:
    """One name in the bundle, relative, with forward slashes, and what it is."""

    name: str
    kind: str


def check_bundle(bundle: Path, public_key: bytes) -> list[str]:
    """Every problem found in ``bundle`` (a folder or a ``.zip``); empty when it is intact."""
    if not bundle.exists():
        raise ConfigError(f"{bundle}: no such bundle")
    if bundle.is_dir():
        try:
            return check_folder(bundle, public_key)
        except OSError as err:  # a file it cannot read (permissions): one line, not a traceback
            return [f"{err.filename or bundle}: cannot read it ({err.strerror or err})"]
    with tempfile.TemporaryDirectory(prefix="verify-export-") as tmp:
        try:
            entries, problems = unzip_bounded(bundle, Path(tmp))
        except BundleRefused as err:
            return [f"{bundle.name}: {err}"]
        except _UNREADABLE as err:
            return [f"{bundle.name}: not a readable zip ({type(err).__name__}: {str(err)[:200]})"]
        return problems + check_unpacked(Path(tmp), entries, public_key)


def unzip_bounded(bundle: Path, into: Path) -> tuple[list[Entry], list[str]]:
    """The zip's entries and the problems of their names, its regular files unpacked into
    ``into``. Raises :class:`BundleRefused` over a bound, before inflating anything."""
    with zipfile.ZipFile(bundle) as archive:
        members = archive.infolist()
        _check_bounds(members, bundle.stat().st_size)
        layout = layout_problem(bundle, members)
        if layout:
            raise BundleRefused(f"refused: {layout}; not a zip every unzip tool reads alike")
        entries: list[Entry] = []
        problems: list[str] = []
        counted = Counter(m.filename for m in members)
        for name, times in sorted(counted.items()):
            if times > 1:
                problems.append(f"{name}: in the zip {times} times (a duplicate member)")
        for member in members:
            kind = _zip_kind(member)
            name = member.filename.rstrip("/") if kind == FOLDER else member.filename
            unsafe = _name_problem(name)
            if unsafe:
                problems.append(f"{member.filename!r}: {unsafe}")
            elif kind != FILE:
                entries.append(Entry(name, kind))
            elif counted[member.filename] == 1:
                if _unpack(archive, member, into):
                    entries.append(Entry(name, FILE))
                else:
                    problems.append(f"{name}: clashes with another member (a file and a folder of one name)")
    return entries, problems


def _unpack(archive: zipfile.ZipFile, member: zipfile.ZipInfo, into: Path) -> bool:
    """One regular member into ``into``; False when its name clashes with one unpacked."""
    target = into.joinpath(*PurePosixPath(member.filename).parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        sink = target.open("xb")
    except (FileExistsError, NotADirectoryError):
        return False
    with sink, archive.open(member) as source:  # sink first: closed if the member cannot open
        shutil.copyfileobj(source, sink, 1 << 20)
    return True


def _check_bounds(members: list[zipfile.ZipInfo], archive_bytes: int) -> None:
    """Refuse a zip whose directory promises more than a bundle can be (a zip bomb)."""
    if len(members) > MAX_MEMBERS:
        raise BundleRefused(f"refused: {len(members)} members, more than a bundle has ({MAX_MEMBERS})")
    total = 0
    for member in members:
        if member.filename == MANIFEST and member.file_size > MAX_MANIFEST_BYTES:
            raise BundleRefused(
                f"refused: {MANIFEST} inflates to {member.file_size} bytes (a manifest is at most "
                f"{MAX_MANIFEST_BYTES})"
            )
        if member.file_size > MAX_MEMBER_BYTES:
            raise BundleRefused(
                f"refused: member {member.filename!r} inflates to {member.file_size} bytes "
                f"(at most {MAX_MEMBER_BYTES})"
            )
        ratio = member.file_size // max(member.compress_size, 1)
        if member.file_size > RATIO_FLOOR_BYTES and ratio > MAX_RATIO:
            raise BundleRefused(
                f"refused: member {member.filename!r} inflates {ratio} times "
                f"(at most {MAX_RATIO}): a zip bomb, not a bundle"
            )
        total += member.file_size
    if total > MAX_TOTAL_BYTES:
        raise BundleRefused(f"refused: members inflate to {total} bytes in all (at most {MAX_TOTAL_BYTES})")
    if total > RATIO_FLOOR_BYTES and total > MAX_RATIO * max(archive_bytes, 1):
        # Members that share their compressed bytes (an overlapping zip bomb) pass each
        # member's ratio but not the whole archive's.
        raise BundleRefused(
            f"refused: {archive_bytes} bytes inflate to {total} (more than {MAX_RATIO} times): "
            "a zip bomb, not a bundle"
        )
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if total > free:
        raise BundleRefused(
            f"refused: members inflate to {total} bytes, the temporary folder has {free} free"
        )


def _zip_kind(member: zipfile.ZipInfo) -> str:
    """What a zip member is: a Unix mode in its external attributes says links and devices."""
    mode = member.external_attr >> 16
    if member.create_system == 3 and stat.S_IFMT(mode):  # made on Unix, with a file type
        if stat.S_ISLNK(mode):
            return LINK
        if stat.S_ISDIR(mode):
            return FOLDER
        if not stat.S_ISREG(mode):
            return OTHER
    return FOLDER if member.is_dir() else FILE


def _name_problem(name: str) -> str | None:
    """Why a member name cannot be a bundle's, or None: only plain relative names with
    forward slashes (what the export writes) are, so a name means one file everywhere."""
    pure = PurePosixPath(name)
    if not name:
        return "an empty name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "an absolute name, outside the bundle"
    if "\\" in name or "\x00" in name:
        return "a name with a backslash or NUL (not a plain relative name)"
    if ".." in pure.parts:
        return "a name with '..', outside the bundle"
    if pure.as_posix() != name or "." in pure.parts:
        return "a name with '.' or empty parts (not a plain relative name)"
    return None


def folder_entries(folder: Path) -> list[Entry]:
    """Every name under ``folder``, what it is, links never followed."""
    found = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(top) / name
            mode = path.lstat().st_mode
            kind = (
                LINK
                if stat.S_ISLNK(mode)
                else FOLDER
                if stat.S_ISDIR(mode)
                else FILE
                if stat.S_ISREG(mode)
                else OTHER
            )
            found.append(Entry(path.relative_to(folder).as_posix(), kind))
    return found


def check_folder(folder: Path, public_key: bytes) -> list[str]:
    """The checks on a bundle folder."""
    return check_unpacked(folder, folder_entries(folder), public_key)


def check_unpacked(folder: Path, entries: list[Entry], public_key: bytes) -> list[str]:
    """The checks on an unpacked bundle whose names and kinds are ``entries``."""
    problems: list[str] = []
    kinds = {e.name: e.kind for e in entries}
    manifest_path, signature_path = folder / MANIFEST, folder / SIGNATURE
    if kinds.get(MANIFEST) != FILE:
        found = kinds.get(MANIFEST)
        nested = sorted(e.name.removesuffix(MANIFEST) for e in entries if e.name.endswith(f"/{MANIFEST}"))
        hint = f" (one is in {nested[0]}: give that folder, or zip its contents)" if nested else ""
        return [f"{MANIFEST}: " + (f"a {found}, not a file" if found else "missing") + hint]
    size = manifest_path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        return [f"{MANIFEST}: {size} bytes, more than a manifest is ({MAX_MANIFEST_BYTES}); not read"]
    data = manifest_path.read_bytes()
    unsigned = _signature_problem(kinds, signature_path, public_key, data)
    if unsigned:  # checked before the manifest is parsed: a forged one costs nothing to refuse
        return [
            unsigned,
            *_manifest_sum(folder, kinds, data),
            f"nothing else checked: a {MANIFEST} this key did not sign says nothing of the bundle",
        ]
    try:
        manifest = parse_manifest(data)
    except ValueError as err:
        return [f"{MANIFEST}: not a bundle manifest ({err})"]
    signed = [str(f["path"]) for f in manifest["files"]]
    problems += exactness(entries, signed)
    files = {e.name for e in entries if e.kind == FILE}
    problems += _check_sums(folder, files, set(signed))
    problems += _check_listed(folder, files, manifest)
    return problems


def _signature_problem(kinds: dict[str, str], path: Path, public_key: bytes, data: bytes) -> str | None:
    """Why ``data`` is not signed by the key in ``path`` (read only when it is 64 bytes,
    an Ed25519 signature's size), or None."""
    if kinds.get(SIGNATURE) != FILE:
        return f"{SIGNATURE}: missing, the manifest is unsigned"
    try:
        if path.stat().st_size != SIGNATURE_BYTES:
            raise BadSignature("not 64 bytes")
        verify_signature(public_key, data, path.read_bytes())
    except BadSignature:
        return (
            f"{SIGNATURE}: not a signature of {MANIFEST} by this public key "
            "(the manifest was changed, or another key signed it)"
        )
    return None


def _manifest_sum(folder: Path, kinds: dict[str, str], data: bytes) -> list[str]:
    """Whether ``SHA256SUMS`` says the manifest changed too (a hint of what happened)."""
    if kinds.get(SUMS) != FILE or (folder / SUMS).stat().st_size > MAX_MANIFEST_BYTES:
        return []
    for line in (folder / SUMS).read_text(encoding="utf-8", errors="replace").splitlines():
        match = _SUM_LINE.match(line)
        if match and match.group(2) == MANIFEST and match.group(1) != hashlib.sha256(data).hexdigest():
            return [f"{MANIFEST}: sha256 differs from {SUMS} (file changed)"]
    return []


def exactness(entries: list[Entry], signed: list[str]) -> list[str]:
    """What the bundle holds besides the signed files and its frame, each named: the
    bundle is exactly what was signed, or it is not the bundle that was signed."""
    expected = set(signed) | set(FRAME)
    parents = {p.as_posix() for name in expected for p in PurePosixPath(name).parents} - {"."}
    problems = []
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.kind == FILE and entry.name not in expected:
            problems.append(f"{entry.name}: not in the signed {MANIFEST} (file added)")
        elif entry.kind == LINK:
            problems.append(f"{entry.name}: a symbolic link (a bundle holds only files)")
        elif entry.kind == OTHER:
            problems.append(f"{entry.name}: not a regular file (a bundle holds only files)")
        elif entry.kind == FOLDER and entry.name in expected:
            problems.append(f"{entry.name}: a folder where {MANIFEST} lists a file")
        elif entry.kind == FOLDER and entry.name not in parents:
            problems.append(f"{entry.name}/: a folder not in the signed {MANIFEST} (added)")
    return problems


def parse_manifest(data: bytes) -> dict[str, Any]:
    """The manifest, its shape checked where the checks read it; ValueError naming what is
    wrong otherwise (a recipient gets one line, never a traceback)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"not JSON: {str(err)[:120]}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"a JSON {type(doc).__name__}, not an object")
    version = doc.get("format_version", 1)
    if isinstance(version, int) and version > BundleManifest.FORMAT:  # before its shape: it may differ
        raise ValueError(
            f"bundle manifest format_version {version} is newer than this tool reads "
            f"(1..{BundleManifest.FORMAT})"
        )
    files = doc.get("files")
    if not isinstance(files, list):
        raise ValueError("'files' is not a list")
    seen: set[str] = set()
    for number, entry in enumerate(files):
        where = f"files[{number}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} is not an object")
        path = entry.get("path")
        if not isinstance(path, str) or _name_problem(path):
            raise ValueError(f"{where}.path {str(path)[:80]!r} is not a plain relative name")
        if path in FRAME or path in seen:
            raise ValueError(f"{where}.path {path!r} is listed twice or names the bundle's own files")
        seen.add(path)
        for name in ("sha256", "dataset", "bot_id"):
            if not isinstance(entry.get(name), str | None) or entry.get("sha256") is None:
                raise ValueError(f"{where}.{name} is not a string")
        for name in ("size", "rows"):
            value = entry.get(name)
            if (value is not None or name == "size") and (type(value) is not int or value < 0):
                raise ValueError(f"{where}.{name} is not a count")
    counts = doc.get("counts") or {}
    if not isinstance(counts, dict) or not all(
        isinstance(bots, dict)
        and all(
            isinstance(days, dict) and all(type(n) is int for n in days.values()) for days in bots.values()
        )
        for bots in counts.values()
    ):
        raise ValueError("'counts' is not dataset -> bot -> day -> rows")
    try:  # and the whole of it as its model defines it (docs/reference/records.md)
        load(BundleManifest, doc, MANIFEST)
    except ValidationError as err:
        raise ValueError(f"not a bundle manifest ({first_problem(err)})") from None
    return doc


def _check_sums(folder: Path, present: set[str], signed: set[str]) -> list[str]:
    if SUMS not in present:
        return [f"{SUMS}: missing"]
    problems, listed = [], set()
    try:
        text = (folder / SUMS).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [f"{SUMS}: not UTF-8 text"]
    for number, line in enumerate(text.splitlines(), 1):
        match = _SUM_LINE.match(line)
        if not match:
            problems.append(f"{SUMS} line {number}: not '<sha256>  <file>'")
            continue
        want, name = match.groups()
        if name in listed:
            problems.append(f"{SUMS} line {number}: {name!r} listed twice")
        listed.add(name)
        if name not in signed and name not in FRAME:
            problems.append(f"{SUMS} line {number}: {name!r} is not in the signed {MANIFEST}")
            continue
        if name not in present:
            if name in signed:
                continue  # named as missing by the manifest's check
            problems.append(f"{name}: missing (listed in {SUMS})")
        elif sha256_file(folder / name) != want:
            problems.append(f"{name}: sha256 differs from {SUMS} (file changed)")
    problems += [
        f"{name}: not listed in {SUMS}" for name in sorted(present & (signed | set(FRAME)) - listed - {SUMS})
    ]
    return problems


def _check_listed(folder: Path, present: set[str], manifest: dict[str, Any]) -> list[str]:
    problems = []
    counts = manifest.get("counts") or {}
    for entry in manifest["files"]:
        name = entry["path"]
        path = folder / name
        if name not in present:
            problems.append(f"{name}: missing (listed in {MANIFEST})")
            continue
        if path.stat().st_size != entry.get("size"):
            problems.append(f"{name}: {path.stat().st_size} bytes, {MANIFEST} says {entry.get('size')}")
        if sha256_file(path) != entry.get("sha256"):
            problems.append(f"{name}: sha256 differs from {MANIFEST} (file changed)")
        if entry.get("rows") is None:
            continue
        try:
            days = rows_per_day(path)
        except (pl.exceptions.PolarsError, OSError, ValueError) as err:
            problems.append(f"{name}: unreadable ({type(err).__name__}: {str(err)[:200]})")
            continue
        if sum(days.values()) != entry["rows"]:
            problems.append(f"{name}: {sum(days.values())} rows, {MANIFEST} says {entry['rows']}")
        want = (counts.get(entry.get("dataset")) or {}).get(entry.get("bot_id")) or {}
        if days != want:
            differ = sorted(d for d in set(days) | set(want) if days.get(d, 0) != want.get(d, 0))
            problems.append(
                f"{name}: rows per day differ from {MANIFEST} on {len(differ)} day(s), e.g. "
                f"{differ[0]}: {days.get(differ[0], 0)} in the file, "
                f"{want.get(differ[0], 0)} listed"
            )
    return problems


def rows_per_day(path: Path) -> dict[str, int]:
    """Rows of a bundle data file per value of its ``date`` column, read again (streamed)."""
    if path.suffix == ".parquet":
        frame = pl.scan_parquet(path)
    elif path.suffix == ".csv":
        frame = pl.scan_csv(path, infer_schema=False, encoding="utf8")  # the BOM is skipped
    elif path.suffix == ".jsonl":
        frame = pl.scan_ndjson(path, schema_overrides={"date": pl.String()}, infer_schema_length=1000)
    else:
        raise ValueError(f"unknown data file kind {path.suffix!r}")
    counted = frame.select(pl.col("date").cast(pl.String)).group_by("date").len().collect(engine="streaming")
    return dict(sorted(Counter({str(d): int(n) for d, n in counted.iter_rows()}).items()))
