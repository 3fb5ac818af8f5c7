"""Whether a process that left a record or a folder behind is still running (on this host).

A pid alone does not name a process for long: after a reboot, or once the pids wrap around, the pid
of a build killed outright is another live process's, and in another pid namespace (a container that
shares the host's name and a mounted folder) the same pid is a different process altogether. So what
a process leaves behind carries `token()`: its pid, when it started, and its pid namespace; `gone`
tells a process of this namespace that is no more (or that is now another process) from one it
cannot see, which it leaves alone.
"""

from __future__ import annotations

import os
from functools import cache

SLACK_S = 120.0
"""How long before a record the process that made it may have started, at most, as far as `alive`'s
`since` can tell (the boot time read from /proc is whole seconds; a clock put right while it ran)."""


def _kill0(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError, OSError):
        return False
    return True


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux /proc); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


@cache
def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


@cache
def _pid_namespace() -> str:
    """This process's pid namespace (the inode of /proc/self/ns/pid), '' where unknown."""
    try:
        link = os.readlink("/proc/self/ns/pid")  # 'pid:[4026531836]'
    except OSError:
        return ""
    return "".join(c for c in link if c.isdigit())


def token(pid: int | None = None) -> str:
    """Who `pid` (default: this process) is, as `gone` reads it back: `PID[.START[.NAMESPACE]]`."""
    pid = os.getpid() if pid is None else pid
    ticks = _start_ticks(pid)
    if ticks is None:
        return str(pid)
    ns = _pid_namespace()
    return f"{pid}.{ticks}.{ns}" if ns else f"{pid}.{ticks}"


TOKEN_RE = r"\d+(?:\.\d+(?:\.\d+)?)?"
"""A regular expression matching a `token()`, to find one in a name or a comment."""


def gone(tok: str) -> bool:
    """True when the process `token()` named is surely no more: no process has its pid, or the one that
    has it started at another time. One of another pid namespace (a container) is never gone."""
    pid, _, rest = tok.partition(".")
    ticks, _, ns = rest.partition(".")
    if ns and ns != _pid_namespace():
        return False
    if not _kill0(int(pid)):
        return True
    now = _start_ticks(int(pid)) if ticks else None
    return now is not None and now != int(ticks)


def alive(pid: int, since: float | None = None) -> bool:
    """True while process `pid` exists on this host (one we may not signal counts as alive); with
    `since` (a `time.time()` at which the process that left the record ran), False too when the
    process with that pid now started after then, so is another one (the pid reused)."""
    if not _kill0(pid):
        return False
    if since is None:
        return True
    ticks, boot = _start_ticks(pid), _boot_time()
    if ticks is None or boot is None:
        return True
    return boot + ticks / os.sysconf("SC_CLK_TCK") <= since + SLACK_S
