"""Liveness and readiness of a worker, answered on the metrics port (``/healthz``, ``/readyz``).

- **live**: the worker's event loop still runs: a Faust timer beats every second, and the
  process is live while the last beat is younger than ``stall_s`` (before the first beat,
  while the model loads and the worker starts, it is live: probes give start-up its own
  allowance). The HTTP server answers
  from its own thread, so a loop stuck in a blocking call shows up as not live (an
  orchestrator restarts it) instead of as a silent hang. A batch being scored does not stall
  the loop: the pipeline runs in its own thread.
- **ready**: the worker can take traffic: its output topics exist and its consumer holds
  partitions of the events topic. Not ready while starting, during a rebalance that left it
  none, and from the start of a shutdown (so a load balancer or a rollout stops waiting on it).
  Not ready either while its consumer is *stalled* and could not recover by itself
  (:mod:`streams.worker.consumer_watch`). Kubernetes does not replace a pod that is only unready,
  so a worker stalled for ``restart_after_s`` (``SECSTREAM_STALL_RESTART_AFTER_S``) is not live
  either: its liveness probe fails and the kubelet restarts it with a fresh consumer.

Both answer ``200`` with ``ok`` or ``503`` with the reason, one line of plain text.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Health"]


class Health:
    """Thread-safe health state; see the module docstring."""

    def __init__(self, stall_s: float = 30.0, *, restart_after_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``restart_after_s``: a consumer stalled this long makes the worker not live (0: never)."""
        if stall_s <= 0:
            raise ValueError(f"stall_s must be > 0, got {stall_s}")
        if restart_after_s < 0:
            raise ValueError(f"restart_after_s must be >= 0, got {restart_after_s}")
        self.stall_s = stall_s
        self.restart_after_s = restart_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._beat = clock()
        self._stalled_since: float | None = None
        self._beating = False
        self._ready = False
        self._why = "starting"
        self._stalled = ""

    def beat(self) -> None:
        """The event loop is running (called by a timer)."""
        with self._lock:
            self._beat = self._clock()
            self._beating = True

    def set_ready(self, ready: bool, why: str = "") -> None:
        with self._lock:
            self._ready, self._why = ready, ("" if ready else why or "not ready")

    def set_stalled(self, why: str) -> None:
        """The consumer is stalled and did not recover (``why``), or no longer (empty)."""
        with self._lock:
            self._stalled = why
            if not why:
                self._stalled_since = None
            elif self._stalled_since is None:
                self._stalled_since = self._clock()

    def live(self) -> tuple[bool, str]:
        with self._lock:
            now = self._clock()
            age, beating = now - self._beat, self._beating
            stalled, since = self._stalled, self._stalled_since
        if not beating:
            return True, "starting"
        if age > self.stall_s:
            return False, f"event loop silent for {age:.0f} s (limit {self.stall_s:.0f} s)"
        if stalled and since is not None and self.restart_after_s and now - since >= self.restart_after_s:
            return False, f"consumer stalled for {now - since:.0f} s and not recovered: {stalled}"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        ok, why = self.live()
        if not ok:
            return ok, why
        with self._lock:
            if self._stalled:
                return False, f"consumer stalled: {self._stalled}"
            return (True, "ok") if self._ready else (False, self._why)
