"""Output paths: directories that dataforge replaces as a whole (`export --out`, `report --out`), and
the `--out` paths of other commands, checked before any work.

A command may replace a missing or empty directory, or one it wrote before (recognised by the
marker file it leaves there); anything else is the user's and is refused before any work. The
new contents are written beside `out` and swapped in at the end, so an earlier output stays
intact until the new one is complete. The folders used on the way are named after the host and
process that made them, so what a killed command left there is cleared by the next one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import uuid
from pathlib import Path
from typing import Iterator

from dataforge import pids
from dataforge.errors import UserError, refusal


def out_path(value: str | Path, what: str) -> Path:
    """`--out` as a directory path; an empty (or blank) value is refused rather than read as `.`, the
    current folder (`Path("")` is `.`)."""
    if not str(value).strip():
        raise UserError(f"--out is empty; give a directory for the {what}")
    return Path(value)


def out_file(value: str | Path, what: str, *, flag: str = "--out", example: str | None = None) -> Path:
    """`flag` (`--out`) as the path of a file to write at the end of a long run, refused before the run when
    it is empty, a directory, or inside something that is not one. `example`: a file name to suggest inside
    a directory given instead (default: `what` as a `.json` name)."""
    if not str(value).strip():
        raise UserError(f"{flag} is empty; give the path of a file for the {what}")
    path = Path(value)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; give the path of a file for the {what}, "
                        f"e.g. {flag} {path / (example or what.replace(' ', '_') + '.json')}")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is not a directory")
    return path


def check_replaceable(out: Path, marker: str, what: str) -> None:
    """Refuse `out` unless it is missing, an empty directory, or an earlier `what` (holds `marker`)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory; give a directory for the {what}")
    here = Path.cwd().resolve()
    if out.resolve() in (here, *here.parents):  # it would be replaced from under the shell standing in it
        raise UserError(f"--out {out} is the folder you are in (or holds it); give a new folder for the {what}, "
                        f"e.g. --out {what}s")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise UserError(f"--out {out} is a non-empty directory without {marker} (not an earlier {what}); "
                        "refusing to replace it: give a new or empty directory")


def clear_leftovers(out: Path) -> None:
    """Remove the folders a command killed outright (SIGKILL, power loss) left beside `out`: a
    half-written `.tmp-` one, and an `.old-` one, put back as `out` when the kill came between
    moving it aside and moving the new one in. Only those of processes of this host that are gone."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(tmp|old)-{re.escape(socket.gethostname())}-({pids.TOKEN_RE})"
                         r"-[0-9a-f]{8}")
    with contextlib.suppress(OSError):  # a folder we may not list or change: the command says so when it writes
        for p in sorted(out.parent.iterdir(), key=lambda p: p.name):  # .old- before .tmp-
            m = pattern.fullmatch(p.name)
            if m is None or not pids.gone(m[2]) or p.is_symlink() or not p.is_dir():
                continue
            if m[1] == "old" and not out.exists():
                os.replace(p, out)
            else:
                shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(out: Path, marker: str, what: str) -> Iterator[Path]:
    """A fresh directory beside `out`; on success it replaces `out`, on failure it is removed."""
    clear_leftovers(out)
    check_replaceable(out, marker, what)
    tag = f"{socket.gethostname()}-{pids.token()}-{uuid.uuid4().hex[:8]}"
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:  # a read-only folder, a file where a folder should be, ...: the user's to fix
        raise UserError(f"--out {out}: cannot write the {what} there ({e.strerror or e}: {e.filename}); "
                        "give a folder you can write to") from None
    try:
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        found = refusal(e) if isinstance(e, Exception) else None
        if found is not None:  # a full disk, a file size limit: the user's to fix
            raise UserError(f"--out {out}: cannot write the {what} there ({found[0]}); an earlier {what} there "
                            "is as it was: make room and run the command again") from None
        raise
    old = out.parent / f".{out.name}.old-{tag}"
    if out.exists():
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old.exists():
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
