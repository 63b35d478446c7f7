"""A zip is a bundle's only when every unzip tool reads the same files from it.

Readers differ: ``zipfile`` and ``unzip`` trust the central directory, a streaming reader
(Java's ``ZipInputStream``, ``bsdtar`` on a pipe) walks the local headers from the start,
Info-ZIP renames a member by its Unicode Path extra field. A zip with a local entry the
directory does not list (inserted before the directory, prepended, or appended after the
end record), or with a name only some readers see, can show one recipient a forged file
while ``verify-export`` checked another. So a bundle's zip must be laid out with no room
for a second reading: its local entries tile the file from byte 0, each agreeing with its
directory entry, the directory ends at the end record, and the end record ends the file.

Example::

    problem = layout_problem(Path("export.zip"), zipfile.ZipFile("export.zip").infolist())
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_LOCAL_SIG = 0x04034B50
_END = struct.Struct("<IHHHHIIH")
_END_SIG = 0x06054B50
_END64_LOCATOR = struct.Struct("<IIQI")
_END64_LOCATOR_SIG = 0x07064B50
_END64 = struct.Struct("<IQHHIIQQQQ")
_END64_SIG = 0x06064B50
_DESCRIPTOR_SIG = b"PK\x07\x08"
_HAS_DESCRIPTOR = 0x08

#: Extra fields a bundle's zip may carry: zip64 sizes, and the timestamps and Unix ids
#: zip tools add. Any other may mean something to one reader only (0x7075 and 0x6375, the
#: Info-ZIP Unicode path and comment, rename a member for Info-ZIP unzip alone).
ALLOWED_EXTRAS = {0x0001: "zip64", 0x000A: "NTFS times", 0x5455: "timestamps", 0x7875: "Unix ids"}


def layout_problem(path: Path, members: list[zipfile.ZipInfo]) -> str | None:
    """Why the zip at ``path`` (its central directory read as ``members``) can be read
    differently by another unzip tool, or None when its bytes are exactly its entries."""
    with path.open("rb") as raw:
        size = raw.seek(0, 2)
        end = _directory_bounds(raw, size)
        if isinstance(end, str):
            return end
        directory_start, directory_end, count = end
        if count != len(members):
            return f"its end record counts {count} members, its directory holds {len(members)}"
        at = 0
        for member in sorted(members, key=lambda m: m.header_offset):
            if member.header_offset != at:
                return _gap(at, member.header_offset, member.filename)
            if "\x00" in member.orig_filename:  # zipfile cuts the name there, other tools do not
                return f"member {member.orig_filename!r}: a name with a NUL"
            problem = _extra_problem(member.filename, member.extra)
            if problem:
                return problem
            ends = _local_entry_end(raw, member)
            if isinstance(ends, str):
                return f"member {member.filename!r}: {ends}"
            at = ends
        if at != directory_start:
            return _gap(at, directory_start, "the central directory")
        if directory_end != size:
            return f"{size - directory_end} bytes after its end record (appended data or a comment)"
    return None


def _gap(at: int, starts: int, what: str) -> str:
    if starts > at:
        return f"{starts - at} bytes before {what} that no directory entry covers (a hidden entry)"
    return f"{what} overlaps the entry before it (at byte {starts}, {at - starts} bytes early)"


def _directory_bounds(raw: BinaryIO, size: int) -> tuple[int, int, int] | str:
    """The central directory's start, the end record's end, and its member count; or why
    the end record is not the file's last 22 bytes (a comment, or anything appended)."""
    if size < _END.size:
        return "too short for a zip end record"
    raw.seek(size - _END.size)
    sig, _disk, _cd_disk, _here, count, cd_size, cd_start, comment = _END.unpack(raw.read(_END.size))
    if sig != _END_SIG or comment:
        return "its end record is not its last 22 bytes (a comment, or data appended after it)"
    directory_end = size - _END.size
    locator_at = directory_end - _END64_LOCATOR.size
    if locator_at >= 0:
        raw.seek(locator_at)
        loc_sig, _disk64, end64_at, _disks = _END64_LOCATOR.unpack(raw.read(_END64_LOCATOR.size))
        if loc_sig == _END64_LOCATOR_SIG:
            if end64_at + _END64.size != locator_at:
                return "its zip64 end record is not right before its locator"
            raw.seek(end64_at)
            fields = _END64.unpack(raw.read(_END64.size))
            if fields[0] != _END64_SIG or fields[1] != _END64.size - 12:
                return "its zip64 end record is damaged or carries extensible data"
            count, cd_size, cd_start = fields[7], fields[8], fields[9]
            directory_end = end64_at
    if cd_start + cd_size != directory_end:
        return "its central directory does not end at its end record (data prepended or inserted)"
    return cd_start, size, count


def _extra_problem(name: str, extra: bytes) -> str | None:
    """Why an extra field block is not a bundle's: malformed, or a field outside the list."""
    at = 0
    while at < len(extra):
        if at + 4 > len(extra):
            return f"member {name!r}: a malformed extra field"
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind not in ALLOWED_EXTRAS:
            return f"member {name!r}: extra field 0x{kind:04x}, which some unzip tools read differently"
        at += 4 + length
    if at != len(extra):
        return f"member {name!r}: a malformed extra field"
    return None


def _zip64_sizes(extra: bytes) -> tuple[int, int] | None:
    """The uncompressed and compressed sizes of a local header's zip64 field, if any."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == 0x0001 and length >= 16:
            usize, csize = struct.unpack_from("<QQ", extra, at + 4)
            return usize, csize
        at += 4 + length
    return None


def _local_entry_end(raw: BinaryIO, member: zipfile.ZipInfo) -> int | str:
    """Where ``member``'s local entry (header, data, data descriptor) ends; or how its local
    header disagrees with its directory entry (name, flags, method, CRC, sizes, extras)."""
    raw.seek(member.header_offset)
    head = raw.read(_LOCAL.size)
    if len(head) < _LOCAL.size:
        return "its local header is cut short"
    sig, _version, flags, method, _time, _date, crc, csize, usize, name_len, extra_len = _LOCAL.unpack(head)
    if sig != _LOCAL_SIG:
        return "no local header where its directory entry points"
    name = raw.read(name_len)
    extra = raw.read(extra_len)
    encoding = "utf-8" if member.flag_bits & 0x800 else "cp437"
    if name != member.orig_filename.encode(encoding, "surrogateescape") or len(extra) != extra_len:
        return "its local header names another file than its directory entry"
    if flags != member.flag_bits or method != member.compress_type:
        return "its local header's flags or compression differ from its directory entry"
    problem = _extra_problem(member.filename, extra)
    if problem:
        return problem.removeprefix(f"member {member.filename!r}: ") + " (local header)"
    if csize == 0xFFFFFFFF or usize == 0xFFFFFFFF:
        sizes = _zip64_sizes(extra)
        if sizes is None:
            return "its local header's zip64 sizes are missing"
        usize, csize = sizes
    data_end = int(member.header_offset) + _LOCAL.size + int(name_len) + int(extra_len) + member.compress_size
    if not flags & _HAS_DESCRIPTOR:
        if (crc, csize, usize) != (member.CRC, member.compress_size, member.file_size):
            return "its local header's CRC or sizes differ from its directory entry"
        return data_end
    return _descriptor_end(raw, member, data_end)


def _descriptor_end(raw: BinaryIO, member: zipfile.ZipInfo, at: int) -> int | str:
    """Where the data descriptor after ``member``'s data ends (with or without its
    signature, 32- or 64-bit sizes), when it agrees with the directory entry."""
    raw.seek(at)
    tail = raw.read(24)
    want = (member.CRC, member.compress_size, member.file_size)
    for skip in (4, 0) if tail.startswith(_DESCRIPTOR_SIG) else (0,):
        for form in ("<III", "<IQQ"):
            width = struct.calcsize(form)
            if len(tail) >= skip + width and struct.unpack_from(form, tail, skip) == want:
                return int(at + skip + width)
    return "its data descriptor differs from its directory entry"
