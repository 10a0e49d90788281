"""Process memory as the benchmarks report it (one reader for all of them)."""

from __future__ import annotations

import os
import resource
import sys


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (``getrusage``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def rss_mib(pid: int | str = "self") -> float:
    """Current resident set size in MiB of this process or ``pid`` (Linux ``/proc/<pid>/statm``); else
    this process's peak, or -1 for another process."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mib() if pid == "self" else -1.0


def cpu_seconds(pid: int | str = "self") -> float:
    """CPU time (user + system) a process has used so far, in seconds (Linux ``/proc/<pid>/stat``); -1 when
    it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15
    except (OSError, ValueError, IndexError):
        return -1.0
