"""What a killed process left behind is cleared only when its process is surely gone (pids.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from dataforge import pids


def test_a_live_process_is_not_gone():
    assert not pids.gone(pids.token())
    assert pids.alive(os.getpid(), since=time.time())


def test_a_reused_pid_is_gone_a_container_s_is_left_alone():
    """The pid a dead process had, now another process's (after a reboot, once pids wrap around), is
    gone; one named from another pid namespace (a container sharing the host name) is not ours to judge."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid, ticks, ns = (pids.token(other.pid).split(".") + ["", ""])[:3]
        if not ticks:  # no /proc here: a pid is all there is
            return
        assert not pids.gone(pids.token(other.pid))
        assert pids.gone(f"{pid}.{int(ticks) - 1}.{ns}")  # the process that had this pid started earlier
        assert not pids.gone(f"{pid}.{int(ticks) - 1}.1")  # another namespace's pid
        assert not pids.alive(other.pid, since=time.time() - 3600)  # started after the record: not its maker
        assert pids.alive(other.pid, since=time.time())
    finally:
        other.kill()
        other.wait()
    assert pids.gone(pid)
