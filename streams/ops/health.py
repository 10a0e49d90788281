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
  (:mod:`streams.worker.consumer_watch`): an orchestrator then replaces it.

Both answer ``200`` with ``ok`` or ``503`` with the reason, one line of plain text.
"""

from __future__ import annotations

import threading
import time

__all__ = ["Health"]


class Health:
    """Thread-safe health state; see the module docstring."""

    def __init__(self, stall_s: float = 30.0) -> None:
        if stall_s <= 0:
            raise ValueError(f"stall_s must be > 0, got {stall_s}")
        self.stall_s = stall_s
        self._lock = threading.Lock()
        self._beat = time.monotonic()
        self._beating = False
        self._ready = False
        self._why = "starting"
        self._stalled = ""

    def beat(self) -> None:
        """The event loop is running (called by a timer)."""
        with self._lock:
            self._beat = time.monotonic()
            self._beating = True

    def set_ready(self, ready: bool, why: str = "") -> None:
        with self._lock:
            self._ready, self._why = ready, ("" if ready else why or "not ready")

    def set_stalled(self, why: str) -> None:
        """The consumer is stalled and did not recover (``why``), or no longer (empty)."""
        with self._lock:
            self._stalled = why

    def live(self) -> tuple[bool, str]:
        with self._lock:
            age, beating = time.monotonic() - self._beat, self._beating
        if not beating:
            return True, "starting"
        if age > self.stall_s:
            return False, f"event loop silent for {age:.0f} s (limit {self.stall_s:.0f} s)"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        ok, why = self.live()
        if not ok:
            return ok, why
        with self._lock:
            if self._stalled:
                return False, f"consumer stalled: {self._stalled}"
            return (True, "ok") if self._ready else (False, self._why)
