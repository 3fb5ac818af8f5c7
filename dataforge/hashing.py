"""Content hashes of files, shared by sources (fingerprints) and exports (manifests)."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path


def file_sha256(path: Path) -> str:
    """Content hash of a file, or of every file below a directory (with their relative paths)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else "").encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


Identity = tuple[int, int, int, int, int]
"""(device, inode, size, mtime_ns, ctime_ns) of a file: any write changes its ctime, which no
program can set back (unlike mtime)."""

RACY_NS = 2_000_000_000
"""A remembered hash counts only if the file had not changed for this long when it was hashed:
a write within the same timestamp tick as the one before it (file systems keep times as coarse
as 2 s) would leave its identity unchanged. Such a file is hashed again next time."""


def identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class Hashed:
    """A file's hash as it was when hashed: its identity then, and when hashing began (ns since the epoch)."""

    identity: Identity
    sha256: str
    hashed_at_ns: int


@dataclass
class FileHashes:
    """`file_sha256` of source files, remembered by their identity (the catalog keeps them between
    builds, as git's index keeps its files' stat data): an unchanged file is not read again."""

    known: dict[str, Hashed] = field(default_factory=dict)
    """Absolute path -> what an earlier build hashed there."""
    new: dict[str, Hashed] = field(default_factory=dict)
    """Absolute path -> what this plan hashed (for the build to remember)."""

    def sha256(self, path: Path) -> str:
        """`file_sha256(path)`, unread when a remembered hash of this very file can be trusted."""
        if not path.is_file():
            return file_sha256(path)
        key = str(path.resolve())
        now = identity(path.stat())
        seen = self.new.get(key) or self.known.get(key)
        if seen is not None and seen.identity == now and seen.hashed_at_ns - max(now[3], now[4]) > RACY_NS:
            return seen.sha256
        started = time.time_ns()
        sha = file_sha256(path)
        if identity(path.stat()) == now:  # else it changed while being read: nothing to remember
            self.new[key] = Hashed(now, sha, started)
        return sha
