"""Raw novelty → a 0–100 score an analyst can read, without labels.

The score multiplies two things, both needed for an alert:
- rarity: how far in the tail of the stream's own past raw novelties the value
  lies, on a log scale. ``-log10(1 - p) / decades`` where ``p`` is the share of
  past events with a lower raw novelty, estimated as ``less / (n + 1)`` so a value
  above everything seen is only as rare as the history can show (after 1,000
  events, "new maximum" is a 1-in-1,000 event, not certainty).
- magnitude: the raw novelty relative to ``scale`` (a cosine distance), capped
  at 1, so a stream of near-identical events does not alert on the tiniest
  difference just because differences are rare.

The distribution is a fixed histogram over [0, 2] (cosine distance range), so
memory is constant; counts are halved when they pass ``max_count`` so the
calibration follows a drifting stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TailCalibrator:
    """Streaming ECDF of raw novelty with a log-tail score."""

    def __init__(self, *, bins: int = 4000, decades: float = 2.0, scale: float = 0.10,
                 max_count: int = 5_000_000) -> None:
        if bins < 10 or decades <= 0 or scale <= 0:
            raise ValueError(f"need bins >= 10, decades > 0, scale > 0; got {bins}, {decades}, {scale}")
        self.bins = bins
        self.decades = decades
        self.scale = scale
        self.max_count = max_count
        self._hist = np.zeros(bins, dtype=np.float64)
        self._n = 0.0

    @property
    def count(self) -> float:
        return self._n

    def _bin(self, raw: np.ndarray) -> np.ndarray:
        return np.clip((raw / 2.0 * self.bins).astype(np.int64), 0, self.bins - 1)

    def score(self, raw: np.ndarray) -> np.ndarray:
        """Scores 0–100 for raw novelties (1-d), against the past only; no state change."""
        raw = np.asarray(raw, dtype=np.float64)
        if raw.size == 0:
            return np.zeros(0, dtype=np.float64)
        cum = np.concatenate([[0.0], np.cumsum(self._hist)])
        b = self._bin(raw)
        less = cum[b] + 0.5 * self._hist[b]  # half of the own bin: ties are not "rarer"
        return self._combine(raw, less / (self._n + 1.0))

    def score_sequence(self, raw: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Scores for a batch in stream order: value ``i`` is ranked against the past
        plus values ``0..i-1`` of the batch (prequential), without changing state.
        ``weights`` (0/1 per value) leaves out batch values the caller will not
        :meth:`update` with, so the ranking matches a one-by-one run."""
        raw = np.asarray(raw, dtype=np.float64)
        n = raw.size
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        cum = np.concatenate([[0.0], np.cumsum(self._hist)])
        b = self._bin(raw)
        earlier = np.tri(n, k=-1, dtype=bool)  # earlier[i, j]: j comes before i
        weighted = weights is not None and not np.all(weights)
        if weighted:
            earlier &= np.asarray(weights, dtype=bool)[None, :]
        less_in_batch = (earlier & (b[None, :] < b[:, None])).sum(axis=1)
        tie_in_batch = (earlier & (b[None, :] == b[:, None])).sum(axis=1)
        less = cum[b] + 0.5 * self._hist[b] + less_in_batch + 0.5 * tie_in_batch
        total = self._n + (earlier.sum(axis=1) if weighted else np.arange(n))
        return self._combine(raw, less / (total + 1.0))

    def _combine(self, raw: np.ndarray, p: np.ndarray) -> np.ndarray:
        tail = np.maximum(1.0 - p, 1e-12)
        rarity = np.clip(-np.log10(tail) / self.decades, 0.0, 1.0)
        magnitude = np.clip(raw / self.scale, 0.0, 1.0)
        return 100.0 * rarity * magnitude

    def update(self, raw: np.ndarray) -> None:
        """Fold observed raw novelties into the distribution."""
        raw = np.asarray(raw, dtype=np.float64)
        np.add.at(self._hist, self._bin(raw), 1.0)
        self._n += raw.size
        if self._n > self.max_count:
            self._hist *= 0.5
            self._n = float(self._hist.sum())

    def quantile(self, q: float) -> float:
        """Raw novelty at quantile ``q`` of the past (for metrics and notes)."""
        if self._n == 0:
            return 0.0
        cum = np.cumsum(self._hist) / self._n
        return float((np.searchsorted(cum, q) + 0.5) * 2.0 / self.bins)

    def snapshot(self) -> dict[str, Any]:
        return {"bins": self.bins, "decades": self.decades, "scale": self.scale, "n": self._n,
                "hist": self._hist.tolist()}

    def restore(self, state: dict[str, Any]) -> None:
        if int(state["bins"]) != self.bins:
            raise ValueError(f"calibrator snapshot has {state['bins']} bins, expected {self.bins}")
        self._hist = np.asarray(state["hist"], dtype=np.float64)
        self._n = float(state["n"])
