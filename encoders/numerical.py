"""Numerical component: standardized log volumes with explicit missing flags.

Features are ``log1p`` of ``bytes_in``, ``bytes_out``, ``packets`` and
``duration_ms``, z-scored with running (Welford/Chan) statistics of the events
seen *before* the batch, clipped to [-5, 5]. Layout (dim 9)::

    [z_bytes_in, z_bytes_out, z_packets, z_duration,      # 0 where missing
     miss_bytes_in, miss_bytes_out, miss_packets, miss_duration,   # 1 = missing
     1.0]                                                  # bias

The constant bias dim keeps a present row non-zero when every value sits at
the mean, so "perfectly ordinary" still has a direction (and two ordinary
events have cosine 1) instead of collapsing to an absent zero row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from encoders.base import ComponentBatch, ComponentEncoder, Events, column, column_map, empty_batch, finish_rows, float_value

__all__ = ["NUMERICAL_FIELDS", "NumericalEncoder"]

NUMERICAL_FIELDS: tuple[str, ...] = ("bytes_in", "bytes_out", "packets", "duration_ms")


def _log1p_value(raw: Any) -> float | None:
    number = float_value(raw)
    return math.log1p(number) if number is not None and number >= 0 else None


class NumericalEncoder(ComponentEncoder):
    """Running-standardized ``log1p`` features plus missing flags and a bias (dim 9).

    Args:
        fields: numeric event fields, in block order.
        clip: z-scores are clipped to ``[-clip, clip]``.
        min_std: floor of the standard deviation in log1p units, so a feature
            that has been constant so far does not turn a 1 % change into z=5.

    Until a feature has 2 observations its std is taken as 1. Negative,
    non-numeric or non-finite values count as missing. The row is absent when
    all fields are missing.
    """

    name = "numerical"
    version = "v1"

    def __init__(self, fields: Sequence[str] = NUMERICAL_FIELDS, clip: float = 5.0, min_std: float = 0.1) -> None:
        if not fields or len(set(fields)) != len(fields):
            raise ValueError(f"fields must be non-empty and unique, got {list(fields)}")
        if not clip > 0 or not min_std > 0:
            raise ValueError(f"clip and min_std must be > 0, got clip={clip}, min_std={min_std}")
        self.fields = tuple(fields)
        self.clip = float(clip)
        self.min_std = float(min_std)
        k = len(self.fields)
        self.count = np.zeros(k, dtype=np.float64)
        self.mean = np.zeros(k, dtype=np.float64)
        self.m2 = np.zeros(k, dtype=np.float64)

    @property
    def dim(self) -> int:
        """``2 * len(fields) + 1`` (9 by default)."""
        return 2 * len(self.fields) + 1

    @property
    def var(self) -> np.ndarray:
        """Population variance per feature (``M2 / count``; 0 before any value)."""
        return np.where(self.count > 0, self.m2 / np.maximum(self.count, 1.0), 0.0)

    @property
    def std(self) -> np.ndarray:
        """Standard deviation used for z-scores (1 until 2 observations, floored)."""
        std = np.sqrt(self.var)
        return np.where(self.count >= 2, np.maximum(std, self.min_std), 1.0)

    def features(self, events: Events) -> tuple[np.ndarray, np.ndarray]:
        """``(log1p values [n, k] with 0 where missing, missing mask [n, k])``."""
        n, k = len(events), len(self.fields)
        values = np.zeros((n, k), dtype=np.float64)
        missing = np.ones((n, k), dtype=bool)
        for j, field in enumerate(self.fields):
            logs = column_map(column(events, field), _log1p_value)
            rows = [i for i, v in enumerate(logs) if v is not None]
            if rows:
                values[rows, j] = [logs[i] for i in rows]
                missing[rows, j] = False
        return values, missing

    def encode(self, events: Events) -> ComponentBatch:
        """z-score against the stats before this batch; see the module docstring."""
        n, k = len(events), len(self.fields)
        if n == 0:
            return empty_batch(self.dim)
        values, missing = self.features(events)
        z = np.clip((values - self.mean) / self.std, -self.clip, self.clip)
        z[missing] = 0.0
        out = np.zeros((n, self.dim), dtype=np.float64)
        out[:, :k] = z
        out[:, k : 2 * k] = missing
        out[:, 2 * k] = 1.0
        return finish_rows(out, ~missing.all(axis=1))

    def update(self, events: Events) -> None:
        """Fold the batch into the running stats (Chan et al. parallel merge)."""
        if len(events) == 0:
            return
        values, missing = self.features(events)
        observed = ~missing
        n_b = observed.sum(axis=0).astype(np.float64)
        has = n_b > 0
        if not has.any():
            return
        safe_n = np.maximum(n_b, 1.0)
        mean_b = np.where(observed, values, 0.0).sum(axis=0) / safe_n
        m2_b = (np.where(observed, values - mean_b, 0.0) ** 2).sum(axis=0)
        n_a = self.count
        total = n_a + n_b
        delta = mean_b - self.mean
        safe_total = np.maximum(total, 1.0)
        new_mean = self.mean + delta * n_b / safe_total
        new_m2 = self.m2 + m2_b + delta**2 * n_a * n_b / safe_total
        self.mean = np.where(has, new_mean, self.mean)
        self.m2 = np.where(has, new_m2, self.m2)
        self.count = total

    def _get_state(self) -> dict[str, Any]:
        return {
            "fields": list(self.fields),
            "count": self.count.tolist(),
            "mean": self.mean.tolist(),
            "m2": self.m2.tolist(),
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        if list(state.get("fields", [])) != list(self.fields):
            raise ValueError(f"numerical snapshot fields {state.get('fields')} != {list(self.fields)}")
        k = len(self.fields)
        arrays = [np.asarray(state[key], dtype=np.float64) for key in ("count", "mean", "m2")]
        if any(a.shape != (k,) for a in arrays):
            raise ValueError(f"numerical snapshot arrays must have shape ({k},)")
        self.count, self.mean, self.m2 = arrays
