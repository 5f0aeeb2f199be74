"""Open .zip uploads safely: no paths outside the archive, no links, bounded size; no Django."""
from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

# Metadata that archivers add; skipped, never reported as bad rows.
_JUNK_PREFIXES = ("__MACOSX/",)
_JUNK_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")


class ArchiveError(ValueError):
    """The archive as a whole is refused."""


@dataclass(frozen=True)
class Entry:
    info: zipfile.ZipInfo

    @property
    def name(self) -> str:
        return self.info.filename

    @property
    def path(self) -> PurePosixPath:
        return PurePosixPath(self.info.filename)


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if "\\" in name:
        return "a backslash in the path"
    if ".." in PurePosixPath(name).parts:
        return "a '..' path component"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return None


def _is_junk(info: zipfile.ZipInfo) -> bool:
    path = PurePosixPath(info.filename)
    return (info.is_dir() or info.filename.startswith(_JUNK_PREFIXES)
            or path.name in _JUNK_NAMES or path.name.startswith("._"))


def zip_entries(stream: BinaryIO, *, max_entries: int, max_total_bytes: int
                ) -> tuple[zipfile.ZipFile, list[Entry]]:
    """Open a zip archive and return its file entries after checking all of them.

    Reads only the central directory. Refuses the whole archive for an absolute or ``..``
    path, a symbolic link, more than ``max_entries`` entries or more than
    ``max_total_bytes`` uncompressed, before a single entry is extracted.
    """
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"not a readable .zip archive ({exc})") from None
    infos = archive.infolist()
    if len(infos) > max_entries:
        archive.close()
        raise ArchiveError(f"the archive has {len(infos)} entries, more than {max_entries}")
    total = 0
    for info in infos:
        reason = _unsafe_reason(info)
        if reason:
            archive.close()
            raise ArchiveError(f"entry {info.filename!r} has {reason}")
        total += info.file_size
    if total > max_total_bytes:
        archive.close()
        raise ArchiveError(
            f"the archive unpacks to {total} bytes, more than {max_total_bytes}")
    entries = [Entry(info) for info in infos if not _is_junk(info)]
    if not entries:
        archive.close()
        raise ArchiveError("the archive holds no files")
    return archive, entries


def entry_read(archive: zipfile.ZipFile, entry: Entry, *, max_bytes: int) -> bytes:
    """Return an entry's bytes, never more than ``max_bytes`` whatever its header claims."""
    if entry.info.file_size > max_bytes:
        raise ArchiveError(f"{entry.info.file_size} bytes, more than {max_bytes}")
    with archive.open(entry.info) as member:
        data = member.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ArchiveError(f"more than {max_bytes} bytes")
    return data

