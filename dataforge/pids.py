"""Whether a process that left a record or a folder behind is still running (on this host)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while process `pid` exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
