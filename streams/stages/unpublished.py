"""First outcomes of events whose batch was scored and learned but never published.

The pipeline learns an event once (detection/recent.py): a re-delivered id is scored but not
learned, stored or alerted again, on the grounds that its first delivery's alert, if any, was
published under the same deterministic id. That holds when a batch fails *before* it is learned
(the store down) and after a crash (state is saved between batches, never with a batch scored but
unsent). It did not hold for a batch that was learned and then could not publish: the liveness
guard cancels a batch whose sends wait on a broker that lost them (streams/worker/batches.py), and
Kafka re-delivers it to the same worker, which knew every id and raised nothing. The fault test
`test_broker_killed_and_restarted_mid_stream_loses_nothing` lost both attack alerts that way
(2026-12-07).

So the worker keeps, for the events of a batch it could not publish, what their first scoring
decided: the score, whether it alerted, and the alert document with its evidence vector. When one of
them comes again, the pipeline gives it that first outcome (the same alert, the same entity step)
instead of the "already seen" one; once the batch carrying it is published, it is forgotten. The held
outcomes are part of the worker's saved state, so a worker that saves, then dies before the
re-delivery is published, still republishes them after its restart. Pure: no I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FirstOutcome", "Unpublished"]


@dataclass(frozen=True)
class FirstOutcome:
    """What an event's first (learned, unpublished) scoring decided."""

    score: float
    warmup: bool
    alert: dict[str, Any] | None = None
    vector: np.ndarray | None = None  # the alert's evidence vector (float32), with the alert only


class Unpublished:
    """Held first outcomes by event id, oldest first out past ``capacity`` (0: hold nothing)."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._held: dict[str, FirstOutcome] = {}
        #: outcomes forgotten past ``capacity`` before their batch was published (their alerts are lost)
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._held)

    def get(self, event_id: str) -> FirstOutcome | None:
        return self._held.get(event_id)

    def hold(self, outcomes: Iterable[tuple[str, FirstOutcome]]) -> int:
        """Keep each id's first outcome (an id already held keeps the one it has); returns how many are new."""
        if not self.capacity:
            return 0
        new = 0
        for event_id, outcome in outcomes:
            if event_id not in self._held:
                self._held[event_id] = outcome
                new += 1
        excess = len(self._held) - self.capacity
        if excess > 0:
            for event_id in list(self._held)[:excess]:
                del self._held[event_id]
            self.dropped += excess
        return new

    def release(self, event_ids: Iterable[str]) -> None:
        """Forget the outcomes of ``event_ids``: a batch carrying them was published."""
        if self._held:
            for event_id in event_ids:
                self._held.pop(event_id, None)

    def to_meta(self) -> list[dict[str, Any]]:
        """The held outcomes as JSON (oldest first), for the worker's saved state."""
        out = []
        for event_id, o in self._held.items():
            doc: dict[str, Any] = {"id": event_id, "s": o.score, "w": o.warmup}
            if o.alert is not None:
                doc["a"] = o.alert
                if o.vector is not None:
                    doc["v"] = base64.b64encode(np.asarray(o.vector, dtype=np.float32).tobytes()).decode("ascii")
            out.append(doc)
        return out

    def load_meta(self, docs: Iterable[dict[str, Any]]) -> None:
        """Inverse of :meth:`to_meta` (replaces what is held)."""
        self._held = {}
        self.hold((str(d["id"]), FirstOutcome(
            float(d["s"]), bool(d["w"]), d.get("a"),
            np.frombuffer(base64.b64decode(d["v"]), dtype=np.float32).copy() if "v" in d else None))
            for d in docs)
