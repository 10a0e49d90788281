"""The alert threshold of one score kind (events, sessions, entities), learned from its own scores. Pure.

An item alerts when its 0–100 score is at or above its kind's threshold.

- ``fixed``: the threshold is the configured floor (``SECSTREAM_ALERT_THRESHOLD``, 90).
- ``adaptive``: a **target alert rate**. The threshold is the smallest score such that at
  most ``rate`` of the kind's recent scored items reach it (the ``1 − rate`` quantile of
  their scores), never below the floor (a quiet stream does not start alerting on noise)
  and never above 100 (a threshold above the scale would silence the kind). "Recent":
  a histogram of the scores (``resolution`` wide bins over 0–100) with exponential
  forgetting, ``half_life`` items, so the threshold follows a drifting stream in
  constant memory. Until ``warmup`` items were seen it is the floor.

Prequential: a caller decides with :attr:`AlertThreshold.value`, then :meth:`observe`\\ s the
scores it decided on, so an item never moves the threshold it was judged by.

Why a rate and not peaks-over-threshold (SPOT: a generalized Pareto fit of the tail of
the scores that did not alert, threshold at risk ``q``). Both were tried on the HDFS
session score stream of ``bench.eval_hdfs`` (floor 90: F1 0.9495), offline, since the
threshold never feeds back into the scores:

- the scores are already calibrated tails (``TailCalibrator``: ``-log10(1 - p)`` over
  ``decades``) and stop at 100, so the tail above the floor is short and bounded, with
  a point mass at 100 (97 of the bundled sample's 126 event alerts score exactly 100):
  a GPD fitted there extrapolates nothing the data does not show;
- SPOT learns only what it did not flag, so its threshold is a quantile of a truncated
  distribution and it cannot see a flood: normal scores uniform on 0–100 (10 % at or
  above 90) kept it at the floor, alerting on 10 %. Once above the floor it learns the
  anomalies between the floor and its threshold as normal and climbs: with a streaming
  SPOT at risk 0.001, HDFS F1 fell to 0.49–0.61 (half-life 20,000 and 5,000; classic
  SPOT with a fixed initial threshold: 0.72); at risk 0.002–0.01 F1 was unchanged;
- a rate is what a SOC budgets, and its cost is plain: at most ``rate`` of the items
  alert, so a stream with more anomalies than that loses recall. On HDFS 2.9 % of the
  sessions are in anomalous blocks and 2.0 % score 90 or more; through
  ``bench.eval_hdfs --threshold-mode adaptive`` (half-life 20,000): rate 0.01 F1 0.682
  (session threshold 99.45 at the end), 0.02 F1 0.928, 0.03 F1 0.9495 (it stayed at the floor). The
  default mode is therefore ``fixed``; ``adaptive`` is for streams whose scores at the
  floor are more than a SOC can read, and ``secstream_alert_threshold_estimate_score``
  shows in fixed mode what it would do.

The cap matters here too: for a fully novel stream the top ``10**-decades`` of the scores
all score 100, so a ``rate`` below that share cannot be resolved; the threshold then sits
at 100 and the kind's alerts are the items scoring 100 (raise ``SECSTREAM_TAIL_DECADES``
for finer budgets).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np

Mode = Literal["fixed", "adaptive"]
MODES: tuple[Mode, ...] = ("fixed", "adaptive")
TOP = 100.0


def default_warmup(rate: float) -> int:
    """Items seen before the quantile is trusted: 20 expected alerts' worth, at least 200."""
    return max(200, math.ceil(20.0 / rate))


class AlertThreshold:
    """Online alert threshold of one score kind; see the module docstring."""

    def __init__(self, floor: float = 90.0, *, mode: Mode = "fixed", rate: float = 0.01,
                 half_life: float = 20_000.0, warmup: int | None = None, resolution: float = 0.05) -> None:
        if mode not in MODES:
            raise ValueError(f"threshold mode must be one of {MODES}, got {mode!r}")
        if not 0.0 <= floor <= TOP:
            raise ValueError(f"floor must be in [0, 100], got {floor}")
        if not 0.0 < rate < 1.0:
            raise ValueError(f"rate must be in (0, 1), got {rate}")
        if half_life <= 0 or resolution <= 0 or (warmup is not None and warmup < 0):
            raise ValueError(f"need half_life > 0, resolution > 0, warmup >= 0; got {half_life}, {resolution}, "
                             f"{warmup}")
        self.floor, self.mode, self.rate = float(floor), mode, float(rate)
        self.half_life, self.resolution = float(half_life), float(resolution)
        self.warmup = default_warmup(rate) if warmup is None else int(warmup)
        self._bins = round(TOP / resolution) + 1  # the last bin holds the scores of exactly 100
        self._decay = 0.5 ** (1.0 / self.half_life)
        self._hist = np.zeros(self._bins, dtype=np.float64)
        self.seen = 0  # items observed (not decayed)
        self.estimate = self.floor  # the rate quantile clamped to [floor, 100]; the floor in warm-up

    @classmethod
    def of(cls, threshold: float | AlertThreshold) -> AlertThreshold:
        """``threshold`` itself, or a fixed threshold at that number (what the stages accept)."""
        return threshold if isinstance(threshold, AlertThreshold) else cls(threshold)

    def fresh(self) -> AlertThreshold:
        """A new, empty threshold with the same configuration (another stage or kind)."""
        return AlertThreshold(self.floor, mode=self.mode, rate=self.rate, half_life=self.half_life,
                              warmup=self.warmup, resolution=self.resolution)

    @property
    def adaptive(self) -> bool:
        return self.mode == "adaptive"

    @property
    def value(self) -> float:
        """The threshold in effect: scores at or above it alert."""
        return self.estimate if self.adaptive else self.floor

    def alerts(self, score: float) -> bool:
        return score >= self.value

    def observe(self, scores: Iterable[float] | np.ndarray) -> None:
        """Fold scored items (stream order; decided already) into the histogram, then update the estimate.

        Fixed mode learns too, so :attr:`estimate` says what the adaptive threshold would be.
        """
        x = np.asarray(scores if isinstance(scores, np.ndarray) else list(scores), dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        # exact per-item forgetting: the i-th of n items has aged n - 1 - i items at the batch's end
        self._hist *= self._decay ** x.size
        weights = self._decay ** np.arange(x.size - 1, -1, -1, dtype=np.float64)
        np.add.at(self._hist, self._bin(x), weights)
        self.seen += int(x.size)
        self._update()

    def _bin(self, x: np.ndarray) -> np.ndarray:
        # a tiny epsilon: a score of exactly k·resolution (90.0) lands in bin k despite binary fractions
        return np.clip(np.floor(x / self.resolution + 1e-9).astype(np.int64), 0, self._bins - 1)

    def _update(self) -> None:
        total = float(self._hist.sum())
        if self.seen < self.warmup or total <= 0:
            self.estimate = self.floor
            return
        tail = np.cumsum(self._hist[::-1])[::-1]  # tail[k]: weight of the scores in bins >= k
        ok = np.flatnonzero(tail <= self.rate * total)
        # lowest bin edge whose tail fits the rate; none fits when the top bin alone is over it
        k = int(ok[0]) if ok.size else self._bins - 1
        self.estimate = float(min(TOP, max(self.floor, k * self.resolution)))

    def share_at(self, threshold: float) -> float:
        """The (forgetting-weighted) share of recent scores at or above ``threshold``."""
        total = float(self._hist.sum())
        if total <= 0:
            return 0.0
        return float(self._hist[int(self._bin(np.array([threshold]))[0]):].sum() / total)

    # ------------------------------------------------------------------ state
    def snapshot(self) -> dict[str, Any]:
        """Plain data (JSON-able), sparse; restored by :meth:`restore` into a threshold of the same resolution."""
        nz = np.flatnonzero(self._hist)
        return {"resolution": self.resolution, "seen": self.seen, "bins": nz.tolist(),
                "weights": self._hist[nz].tolist()}

    def restore(self, state: Mapping[str, Any]) -> None:
        if abs(float(state["resolution"]) - self.resolution) > 1e-12:
            raise ValueError(f"threshold snapshot has resolution {state['resolution']}, expected {self.resolution}")
        bins = np.asarray(state["bins"], dtype=np.int64)
        weights = np.asarray(state["weights"], dtype=np.float64)
        if bins.shape != weights.shape or (bins.size and (bins.min() < 0 or bins.max() >= self._bins)):
            raise ValueError("threshold snapshot bins do not fit")
        hist = np.zeros(self._bins, dtype=np.float64)
        hist[bins] = weights
        self._hist, self.seen = hist, int(state["seen"])
        self._update()
