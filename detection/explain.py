"""Explanations: which hybrid component made an event far from its neighbours.

For unit vectors ``a`` and ``b`` split into component blocks ``a_c``, ``b_c``:

    1 - a·b = ½‖a − b‖² = Σ_c ½‖a_c − b_c‖²

so the cosine distance decomposes exactly into per-component parts, whatever
the weights or which components are present (a block absent in one event and
present in the other contributes its full weight). The share of component ``c``
is its part divided by the total.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def component_shares(a: np.ndarray, neighbours: np.ndarray, parts: Mapping[str, slice]) -> dict[str, float]:
    """Share of the distance to ``neighbours`` (rows, averaged) owed to each component.

    Returns shares that sum to 1 (or all 0 when the event equals its neighbours).
    """
    if neighbours.ndim == 1:
        neighbours = neighbours[None, :]
    if neighbours.shape[0] == 0:
        return {name: 0.0 for name in parts}
    diff = neighbours - a[None, :]
    contrib = {name: float(0.5 * np.mean(np.sum(diff[:, sl] ** 2, axis=1))) for name, sl in parts.items()}
    total = sum(contrib.values())
    if total <= 1e-12:
        return {name: 0.0 for name in parts}
    return {name: round(v / total, 4) for name, v in contrib.items()}


def top_terms(indices: Sequence[int], values: Sequence[float], doc_freq: Mapping[int, int], n_docs: int,
              limit: int = 5) -> list[tuple[int, float]]:
    """Terms of a sparse vector ranked by weight × IDF against past document frequencies."""
    scored = []
    for idx, w in zip(indices, values):
        df = doc_freq.get(int(idx), 0)
        idf = math.log((n_docs - df + 0.5) / (df + 0.5) + 1.0)
        scored.append((int(idx), float(w) * idf))
    scored.sort(key=lambda t: -t[1])
    return scored[:limit]
