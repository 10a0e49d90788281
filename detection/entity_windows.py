"""Tumbling event-time windows keyed by entity: the micro-batches of entity updates. Pure (numpy).

Windows are ``[k·window_s, (k+1)·window_s)`` in epoch seconds of the events'
``time``, aligned on the epoch, so every worker and a ``replay`` of the same
events cut them identically. The watermark is the latest event time seen. A
window closes once ``watermark ≥ window_end + lateness_s``: every window ending
at or before :meth:`TumblingWindows.closed_upto` is closed, in order of end.

An event whose window is still open joins it, even when it is older than the
watermark (late, but within ``lateness_s``). An event whose window has closed is
too late: it is counted per entity type in ``dropped`` and left out of the update.

Per (window, entity) the accumulator holds the float64 sum of the event vectors,
their count and the first ``max_ids`` event ids (evidence for alerts), nothing
per event. Memory is O(entities active in the open windows) and at most
``max_keys`` entities per window: an entity new to a full window is counted in
``overflow`` (per type) and left out, so a flood of fresh source addresses cannot
grow the state without bound.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detection.entity_groups import EntityKey, scatter_add

__all__ = ["MAX_WINDOW_S", "MIN_WINDOW_S", "ClosedWindow", "EntityKey", "TumblingWindows"]

#: Allowed window lengths (seconds): 1 to 15 minutes.
MIN_WINDOW_S, MAX_WINDOW_S = 60.0, 900.0


@dataclass
class ClosedWindow:
    """A window at close: what one batch update of its entities needs."""

    start: float
    end: float
    keys: list[EntityKey]
    sums: np.ndarray  # float64 [m, dim]
    counts: np.ndarray  # int64 [m]
    event_ids: list[list[str]]

    def means(self) -> np.ndarray:
        """Mean interaction vector of each entity (float64 ``[m, dim]``)."""
        return self.sums / np.maximum(self.counts, 1)[:, None]


class _Open:
    """Accumulators of one open window (rows grow by doubling)."""

    def __init__(self, dim: int) -> None:
        self.rows: dict[EntityKey, int] = {}
        self.sums = np.zeros((16, dim), dtype=np.float64)
        self.counts = np.zeros(16, dtype=np.int64)
        self.ids: list[list[str]] = []

    def row(self, key: EntityKey) -> int:
        r = self.rows.get(key)
        if r is None:
            r = len(self.rows)
            if r == self.counts.size:
                self.sums = np.concatenate([self.sums, np.zeros_like(self.sums)])
                self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
            self.rows[key] = r
            self.ids.append([])
        return r


class TumblingWindows:
    """Event-time tumbling windows of entity interactions; see the module docstring.

    Args:
        dim: width of the event vectors.
        window_s: window length in seconds, 60–900.
        lateness_s: how long after its end a window still accepts events, 0 to ``window_s``.
        max_keys: most entities per window.
        max_ids: event ids kept per (window, entity).

    Raises:
        ValueError: an argument outside its range (the message names the range).
    """

    def __init__(self, dim: int, *, window_s: float = 300.0, lateness_s: float = 60.0,
                 max_keys: int = 100_000, max_ids: int = 10) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not MIN_WINDOW_S <= window_s <= MAX_WINDOW_S:
            raise ValueError(f"window_s must be in [{MIN_WINDOW_S:.0f}, {MAX_WINDOW_S:.0f}] seconds "
                             f"(1 to 15 minutes), got {window_s}")
        if not 0.0 <= lateness_s <= window_s:
            raise ValueError(f"lateness_s must be in [0, window_s={window_s}] seconds, got {lateness_s}")
        if max_keys < 1 or max_ids < 0:
            raise ValueError(f"need max_keys >= 1 and max_ids >= 0, got {max_keys}, {max_ids}")
        self.dim = dim
        self.window_s = float(window_s)
        self.lateness_s = float(lateness_s)
        self.max_keys = int(max_keys)
        self.max_ids = int(max_ids)
        self.watermark = -math.inf
        self.dropped: Counter[str] = Counter()  # too-late events per entity type
        self.overflow: Counter[str] = Counter()  # events left out of a full window, per entity type
        self._open: dict[float, _Open] = {}
        # (window start, entity) accumulators changed / closed since the last take (changelog records)
        self.changed: set[tuple[float, EntityKey]] = set()
        self.removed: set[tuple[float, EntityKey]] = set()

    def window_start(self, t: float) -> float:
        """Start of the window holding event time ``t``."""
        return math.floor(t / self.window_s) * self.window_s

    def closed_upto(self, watermark: float | None = None) -> float:
        """Every window ending at or before this time is closed at ``watermark`` (default: the current one)."""
        wm = self.watermark if watermark is None else watermark
        if wm == -math.inf:
            return -math.inf
        return math.floor((wm - self.lateness_s) / self.window_s) * self.window_s

    def too_late(self, t: float) -> bool:
        """Whether an event at ``t`` arriving now would find its window closed."""
        return self.window_start(t) + self.window_s <= self.closed_upto()

    def __len__(self) -> int:
        """Number of open windows."""
        return len(self._open)

    def pending(self) -> int:
        """(window, entity) accumulators held."""
        return sum(len(w.rows) for w in self._open.values())

    def advance(self, t: float) -> list[ClosedWindow]:
        """Move the watermark to ``t`` (if later) and close the windows it passes, oldest first."""
        if t > self.watermark:
            self.watermark = float(t)
        upto = self.closed_upto()
        starts = sorted(s for s in self._open if s + self.window_s <= upto)
        return [self._close(s) for s in starts]

    def flush(self) -> list[ClosedWindow]:
        """Close every open window (end of input), oldest first."""
        return [self._close(s) for s in sorted(self._open)]

    def _close(self, start: float) -> ClosedWindow:
        w = self._open.pop(start)
        m = len(w.rows)
        for key in w.rows:
            self.changed.discard((start, key))
            self.removed.add((start, key))
        return ClosedWindow(start=start, end=start + self.window_s, keys=list(w.rows),
                            sums=w.sums[:m].copy(), counts=w.counts[:m].copy(), event_ids=w.ids)

    def add(self, times: Sequence[float] | np.ndarray, keys: Sequence[Sequence[EntityKey]], vectors: np.ndarray,
            event_ids: Sequence[str | None] | None = None) -> np.ndarray:
        """Add events to their open windows at the current watermark (which this does not move).

        ``keys[i]`` are the entities of event ``i`` (it counts once for each).
        Returns bool ``[n]``: the event joined its window (False: too late, dropped).
        """
        t = np.asarray(times, dtype=np.float64)
        n = t.size
        accepted = np.zeros(n, dtype=bool)
        if n == 0:
            return accepted
        starts = np.floor(t / self.window_s) * self.window_s
        upto = self.closed_upto()
        by_window: dict[float, tuple[list[int], list[int]]] = {}
        for i in range(n):
            if not keys[i]:
                continue
            s = float(starts[i])
            if s + self.window_s <= upto:
                self.dropped.update(k[0] for k in keys[i])
                continue
            accepted[i] = True
            w = self._open.get(s)
            if w is None:
                w = self._open[s] = _Open(self.dim)
            rows, src = by_window.setdefault(s, ([], []))
            ident = event_ids[i] if event_ids is not None else None
            for key in keys[i]:
                if key not in w.rows and len(w.rows) >= self.max_keys:
                    self.overflow[key[0]] += 1
                    continue
                r = w.row(key)
                self.changed.add((s, key))
                rows.append(r)
                src.append(i)
                if ident and len(w.ids[r]) < self.max_ids:
                    w.ids[r].append(str(ident))
        for s, (rows, src) in by_window.items():
            w = self._open[s]
            r = np.asarray(rows, dtype=np.int64)
            scatter_add(w.sums, r, np.asarray(vectors)[np.asarray(src, dtype=np.int64)])
            w.counts += np.bincount(r, minlength=w.counts.size)
        return accepted

    def snapshot(self) -> dict[str, Any]:
        """``{"meta": plain data, "arrays": numpy arrays}`` (write the arrays with safetensors, never pickle)."""
        windows, arrays = [], {}
        for i, (s, w) in enumerate(sorted(self._open.items())):
            m = len(w.rows)
            windows.append({"start": s, "keys": [list(k) for k in w.rows], "ids": w.ids})
            arrays[f"window{i}.sums"] = w.sums[:m].copy()
            arrays[f"window{i}.counts"] = w.counts[:m].copy()
        meta = {"dim": self.dim, "window_s": self.window_s, "lateness_s": self.lateness_s,
                "watermark": None if self.watermark == -math.inf else self.watermark,
                "dropped": dict(self.dropped), "overflow": dict(self.overflow), "windows": windows}
        return {"meta": meta, "arrays": arrays}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot` taken with the same dim and window length."""
        meta, arrays = state["meta"], state["arrays"]
        if int(meta["dim"]) != self.dim or float(meta["window_s"]) != self.window_s:
            raise ValueError(f"windows snapshot has dim {meta['dim']} and window_s {meta['window_s']}, "
                             f"expected {self.dim} and {self.window_s}")
        wm = meta["watermark"]
        self.watermark = -math.inf if wm is None else float(wm)
        self.dropped = Counter({str(k): int(v) for k, v in meta["dropped"].items()})
        self.overflow = Counter({str(k): int(v) for k, v in meta["overflow"].items()})
        self._open = {}
        for i, d in enumerate(meta["windows"]):
            w = _Open(self.dim)
            keys = [(str(k[0]), str(k[1])) for k in d["keys"]]
            w.rows = {k: r for r, k in enumerate(keys)}
            m = len(keys)
            w.sums = np.zeros((max(m, 16), self.dim), dtype=np.float64)
            w.counts = np.zeros(max(m, 16), dtype=np.int64)
            w.sums[:m] = np.asarray(arrays[f"window{i}.sums"], dtype=np.float64)
            w.counts[:m] = np.asarray(arrays[f"window{i}.counts"], dtype=np.int64)
            w.ids = [[str(x) for x in ids] for ids in d["ids"]]
            self._open[float(d["start"])] = w
