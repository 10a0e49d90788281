"""Event ids seen recently: a re-delivered or re-sent event is recognised, not learned twice. Pure.

Delivery is at least once (Tansu has no transactions): after a crash, the events since the
last committed offset come again, and a producer may re-send a file. The detector's state is
prequential, so learning an event twice makes its look-alikes more familiar than the stream
made them, and an event that did not alert the first time could alert the second. The
pipeline keeps the ids of the last ``capacity`` events it learned; an event whose id is among
them (or earlier in the same batch) is scored for the output but not learned, not stored
again and not alerted again (its alert, if it had one, has the same deterministic id).

Ids are kept as 64-bit hashes (blake2b), oldest first out; the set is part of the worker's
saved state, so a snapshot and the ids it has learned stay consistent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

__all__ = ["RecentIds"]


def _h(ident: str) -> int:
    return int.from_bytes(hashlib.blake2b(ident.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


class RecentIds:
    """The ids of the last ``capacity`` learned events (``capacity`` 0: none, nothing is ever repeated)."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._ids: dict[int, None] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def repeated(self, ids: Sequence[str]) -> list[bool]:
        """Per id: seen before, or earlier in ``ids`` (no state change)."""
        if not self.capacity:
            return [False] * len(ids)
        out, batch = [], set()
        for ident in ids:
            h = _h(ident)
            out.append(h in self._ids or h in batch)
            batch.add(h)
        return out

    def add(self, ids: Sequence[str]) -> None:
        """Remember ``ids`` (learned now); the oldest are forgotten past ``capacity``."""
        if not self.capacity:
            return
        for ident in ids:
            h = _h(ident)
            self._ids.pop(h, None)
            self._ids[h] = None
        excess = len(self._ids) - self.capacity
        if excess > 0:
            for h in list(self._ids)[:excess]:
                del self._ids[h]

    def to_array(self) -> np.ndarray:
        """The hashes, oldest first (uint64), for a snapshot."""
        return np.fromiter(self._ids, dtype=np.uint64, count=len(self._ids))

    def load_array(self, hashes: np.ndarray) -> None:
        self._ids = dict.fromkeys(int(h) for h in np.asarray(hashes, dtype=np.uint64)[-self.capacity:]) \
            if self.capacity else {}
