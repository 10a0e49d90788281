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
