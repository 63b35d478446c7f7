"""``ingest verify-export``: check a bundle as its recipient would.

Checks, each failure naming what differs:

1. ``manifest.json.sig`` is the Ed25519 signature of ``manifest.json`` under the given
   public key (a changed manifest, or one signed by another key, fails here);
2. every file ``SHA256SUMS`` lists is present with that sha256, and no file is unlisted;
3. every file ``manifest.json`` lists is present with its sha256 and size;
4. the rows of each data file, counted again per day, are the manifest's counts.

A ``.zip`` bundle is read member by member into a private temporary folder first (names
that would leave it are refused).

Example::

    problems = check_bundle(Path("export.zip"), Path("export.key.pub").read_bytes())
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl

from ingest.errors import ConfigError
from ingest.export.bundle import MANIFEST, SIGNATURE, SUMS, sha256_path
from ingest.export.signing import BadSignature, verify_signature

_SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


def check_bundle(bundle: Path, public_key: bytes) -> list[str]:
    """Every problem found in ``bundle`` (a folder or a ``.zip``); empty when it is intact."""
    if not bundle.exists():
        raise ConfigError(f"{bundle}: no such bundle")
    if bundle.is_dir():
        return check_folder(bundle, public_key)
    with tempfile.TemporaryDirectory(prefix="verify-export-") as tmp:
        try:
            _unzip(bundle, Path(tmp))
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            return [f"{bundle.name}: not a readable zip ({err})"]
        return check_folder(Path(tmp), public_key)


def _unzip(bundle: Path, into: Path) -> None:
    with zipfile.ZipFile(bundle) as archive:
        for member in archive.infolist():
            name = PurePosixPath(member.filename)
            if member.is_dir():
                continue
            if name.is_absolute() or ".." in name.parts or "\\" in member.filename:
                raise ValueError(f"member {member.filename!r} would leave the bundle")
            target = into.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)


def check_folder(folder: Path, public_key: bytes) -> list[str]:
    """The checks on an unpacked bundle."""
    problems: list[str] = []
    manifest_path, signature_path = folder / MANIFEST, folder / SIGNATURE
    if not manifest_path.is_file():
        return [f"{MANIFEST}: missing"]
    data = manifest_path.read_bytes()
    if not signature_path.is_file():
        problems.append(f"{SIGNATURE}: missing, the manifest is unsigned")
    else:
        try:
            verify_signature(public_key, data, signature_path.read_bytes())
        except BadSignature:
            problems.append(
                f"{SIGNATURE}: not a signature of {MANIFEST} by this public key "
                "(the manifest was changed, or another key signed it)"
            )
    problems += _check_sums(folder)
    try:
        manifest = json.loads(data)
    except ValueError as err:
        return [*problems, f"{MANIFEST}: not JSON ({err})"]
    problems += _check_listed(folder, manifest)
    return problems


def _check_sums(folder: Path) -> list[str]:
    sums = folder / SUMS
    if not sums.is_file():
        return [f"{SUMS}: missing"]
    problems, listed = [], set()
    for number, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        match = _SUM_LINE.match(line)
        if not match:
            problems.append(f"{SUMS} line {number}: not '<sha256>  <file>'")
            continue
        want, name = match.groups()
        listed.add(name)
        if not _inside(name):
            problems.append(f"{SUMS} line {number}: {name!r} is outside the bundle")
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing (listed in {SUMS})")
        elif sha256_path(path) != want:
            problems.append(f"{name}: sha256 differs from {SUMS} (file changed)")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    problems += [f"{name}: not listed in {SUMS} (file added)" for name in sorted(present - listed - {SUMS})]
    return problems


def _check_listed(folder: Path, manifest: dict[str, Any]) -> list[str]:
    problems = []
    counts = manifest.get("counts") or {}
    for entry in manifest.get("files", []):
        name = str(entry.get("path"))
        if not _inside(name):
            problems.append(f"{MANIFEST}: file {name!r} is outside the bundle")
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing (listed in {MANIFEST})")
            continue
        if path.stat().st_size != entry.get("size"):
            problems.append(f"{name}: {path.stat().st_size} bytes, {MANIFEST} says {entry.get('size')}")
        if sha256_path(path) != entry.get("sha256"):
            problems.append(f"{name}: sha256 differs from {MANIFEST} (file changed)")
        if entry.get("rows") is None:
            continue
        try:
            days = rows_per_day(path)
        except (pl.exceptions.PolarsError, OSError, ValueError) as err:
            problems.append(f"{name}: unreadable ({type(err).__name__}: {err})")
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


def _inside(name: str) -> bool:
    """A relative name that stays inside the bundle (no absolute path, no ``..``)."""
    pure = PurePosixPath(name)
    return bool(name) and not pure.is_absolute() and ".." not in pure.parts and "\\" not in name


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
