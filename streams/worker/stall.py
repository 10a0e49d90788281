"""Consumer lag and stall detection: pure functions over what the broker and the consumer say.

No Kafka and no Faust here: :mod:`streams.worker.consumer_watch` reads a worker's consumer into
:class:`PartitionState` rows every few seconds and acts on what :class:`StallDetector` finds.

**Lag** of a partition is the number of messages the group has not finished: the end offset minus
the committed offset. The end offset is the largest of what the broker lists (ListOffsets
``latest``), the high-water mark of the last fetch response, and the consumer's fetch position.
The broker's answer alone is correct while the consumer is paused (a paused consumer does not
fetch, so its high-water mark goes stale), but Tansu 0.6.0 lists the last record batch's base
offset + 1, one or more short after a multi-record batch; the fetch position is exact once the
consumer has fetched that batch. So the lag is exact once the tail is fetched and otherwise at most
one batch short, never more.

**A stall** is a partition with a backlog (lag > 0) whose committed offset has not moved for
``timeout_s`` while the worker was neither recovering (rebalance, table recovery) nor holding a
long batch (a batch waiting on the store is backpressure, not a stall: the store has its own
alert). Two kinds, told apart by where the consumer stands:

- ``hole``: the worker fetched past the committed offset (its position is at the end, or it has
  processed offsets above the committed one) yet the commit does not move: offsets below were
  fetched and never processed, and Faust commits only up to the first of them;
- ``no_progress``: nothing is fetched or processed at all.

A recovery that makes no progress (no position of any assigned partition moves, no new rebalance)
for ``timeout_s`` is a stall too (``recovery``); a long recovery that moves is not.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["PartitionState", "Stall", "StallDetector", "end_offset", "lag"]


@dataclass(frozen=True)
class PartitionState:
    """One assigned partition as the worker sees it at one moment."""

    topic: str
    partition: int
    listed_end: int | None  # the broker's ListOffsets(latest) answer
    highwater: int | None  # the high-water mark of the last fetch response
    position: int | None  # the next offset the consumer fetches
    committed: int | None  # the next offset the group has to process (None: nothing committed yet)
    acked_above: int = 0  # offsets processed above the committed one and not yet committed


def end_offset(state: PartitionState) -> int | None:
    """The partition's end offset, corrected for the broker's short answer (module docstring)."""
    known = [v for v in (state.listed_end, state.highwater, state.position) if v is not None and v >= 0]
    return max(known) if known else None


def lag(state: PartitionState) -> int | None:
    """Messages the group has not finished (None when the end offset is unknown)."""
    end = end_offset(state)
    if end is None:
        return None
    return max(0, end - (state.committed or 0))


@dataclass(frozen=True)
class Stall:
    """A partition (or the recovery, ``partition`` -1) that made no progress for ``seconds``."""

    topic: str
    partition: int
    reason: str  # "hole" | "no_progress" | "recovery" | "batch" (streams/worker/consumer_watch.py)
    seconds: float
    detail: str

    def describe(self) -> str:
        where = {"recovery": "table recovery", "batch": "batch"}.get(self.reason, f"{self.topic}/{self.partition}")
        return f"{where}: {self.reason.replace('_', ' ')} for {self.seconds:.0f} s ({self.detail})"


class StallDetector:
    """Remembers when each partition's committed offset last moved; see the module docstring."""

    def __init__(self, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._since: dict[tuple[str, int], tuple[int | None, float]] = {}
        self._recovery: tuple[Hashable, float] | None = None

    def reset(self, now: float) -> None:
        """Start every clock again at ``now`` (after a recovery action: give it the whole timeout)."""
        self._since = {key: (committed, now) for key, (committed, _) in self._since.items()}
        if self._recovery is not None:
            self._recovery = (self._recovery[0], now)

    def restart(self, topic: str, partition: int, now: float) -> None:
        """Start one partition's clock again at ``now`` (after a repair aimed at it: give it the whole timeout)."""
        key = (topic, partition)
        if key in self._since:
            self._since[key] = (self._since[key][0], now)

    def observe(self, now: float, partitions: Sequence[PartitionState], *, recovering: bool = False,
                recovery_progress: Hashable = None, busy: bool = False) -> list[Stall]:
        """The stalls at ``now`` (empty when every partition moved or had nothing to do).

        ``recovering``: a rebalance or table recovery is under way; ``recovery_progress``: any value
        that changes while it moves (positions, the rebalance count). ``busy``: the worker holds a
        batch it has been working on for a while (the store retries): nothing counts as stalled.
        """
        if recovering:
            self._since.clear()
            if self._recovery is None or self._recovery[0] != recovery_progress:
                self._recovery = (recovery_progress, now)
                return []
            waited = now - self._recovery[1]
            if waited >= self.timeout_s:
                return [Stall("", -1, "recovery", waited, f"no partition position moved; progress {recovery_progress}")]
            return []
        self._recovery = None
        if busy:
            self._since = {key: (committed, now) for key, (committed, _) in self._since.items()}
            return []
        stalls = []
        seen = set()
        for state in partitions:
            key = (state.topic, state.partition)
            seen.add(key)
            behind = lag(state)
            last = self._since.get(key)
            if not behind or last is None or last[0] != state.committed:
                self._since[key] = (state.committed, now)
                continue
            waited = now - last[1]
            if waited < self.timeout_s:
                continue
            end = end_offset(state)
            fetched_all = state.position is not None and end is not None and state.position >= end
            reason = "hole" if state.acked_above > 0 or fetched_all else "no_progress"
            detail = (f"committed {state.committed}, end {end}, lag {behind}, fetch position {state.position}, "
                      f"{state.acked_above} processed above the committed offset")
            stalls.append(Stall(state.topic, state.partition, reason, waited, detail))
        for key in set(self._since) - seen:  # revoked: forget
            del self._since[key]
        return stalls
