"""Count invariants between templates, mined online from the stream. Pure (numpy + stdlib).

Invariants Mining (Lou et al., 2010) without labels or a training phase: for each
pair of tracked templates ``(i, j)`` and each small ratio ``a:b`` (1:1, 1:2, 2:1,
1:3, 3:1, 2:3, 3:2) the miner counts, over past sessions where ``i`` or ``j``
occurs, how often ``b·c_i == a·c_j`` held. A relation that held in at least
``min_hold`` of at least ``min_support`` such sessions is an *invariant* (e.g.
"allocated once ⇒ received three times"). A *zero invariant* is a template seen
in at most ``zero_rate`` of past sessions: its presence is a violation.

Nothing is hard-coded about the templates: the first ``max_templates`` distinct
template ids get a slot; later ones are scored by zero invariants only.

Counts are per *entity*: the cumulative bag of every closed segment of a key so
far (``blk_x``, ``blk_x#2`` …, bounded LRU of ``max_keys`` keys), so a block
that an inactivity gap split still satisfies its invariants when its last
segment closes. Prequential: :meth:`InvariantMiner.score` changes no state;
:meth:`InvariantMiner.learn` folds the session in afterwards.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RATIOS: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2))


@dataclass
class InvariantResult:
    """Violations of one session's (cumulative) counts."""

    violations: int  # violated pair invariants (one per pair) + present rare templates
    weight: float  # Σ −log10(1 − hold rate) of the violated invariants
    pairs: list[tuple[str, str, tuple[int, int], float]] = field(default_factory=list)  # (i, j, (a, b), hold)
    rare: list[tuple[str, float]] = field(default_factory=list)  # (template, session share)


class InvariantMiner:
    """Online pairwise count-ratio and zero invariants; see the module docstring."""

    def __init__(self, *, max_templates: int = 64, min_hold: float = 0.95, min_support: int = 20,
                 zero_rate: float = 0.007, max_keys: int = 100_000) -> None:
        if not 0.5 < min_hold < 1.0 or not 0.0 < zero_rate < 0.5 or min_support < 1 or max_templates < 2:
            raise ValueError("need 0.5 < min_hold < 1, 0 < zero_rate < 0.5, min_support >= 1, max_templates >= 2")
        self.max_templates, self.min_hold, self.min_support = max_templates, min_hold, min_support
        self.zero_rate, self.max_keys = zero_rate, max_keys
        k, r = max_templates, len(RATIOS)
        self.slots: dict[str, int] = {}
        self.active = np.zeros((k, k, r), dtype=np.float64)
        self.held = np.zeros((k, k, r), dtype=np.float64)
        self.doc_freq: Counter[str] = Counter()
        self.n = 0
        self.cumulative: OrderedDict[str, Counter[str]] = OrderedDict()
        self._a = np.array([a for a, _ in RATIOS], dtype=np.float64)
        self._b = np.array([b for _, b in RATIOS], dtype=np.float64)

    @property
    def invariants(self) -> int:
        """Number of pair invariants currently established (each ratio counted)."""
        return int(np.triu(self._established().any(axis=2), 1).sum())

    def counts(self, key: str | None, bag: Mapping[str, int]) -> Counter[str]:
        """The entity's cumulative bag including this session (no state change)."""
        out = Counter(self.cumulative.get(key, Counter())) if key is not None else Counter()
        out.update(bag)
        return out

    def _vector(self, counts: Mapping[str, int]) -> np.ndarray:
        x = np.zeros(self.max_templates, dtype=np.float64)
        for t, c in counts.items():
            s = self.slots.get(t)
            if s is not None:
                x[s] = c
        return x

    def _relations(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xi, xj = x[:, None, None], x[None, :, None]
        return (xi > 0) | (xj > 0), xi * self._b == xj * self._a

    def _established(self) -> np.ndarray:
        rate = (self.held + 1.0) / (self.active + 2.0)
        return (self.active >= self.min_support) & (rate >= self.min_hold)

    def score(self, key: str | None, bag: Mapping[str, int]) -> InvariantResult:
        """Violated invariants of the entity's cumulative counts with this session. No state change."""
        counts = self.counts(key, bag)
        x = self._vector(counts)
        active, rel = self._relations(x)
        rate = (self.held + 1.0) / (self.active + 2.0)
        viol = self._established() & active & ~rel
        per_pair = np.triu(viol.any(axis=2), 1)
        w = np.where(viol, -np.log10(np.maximum(1.0 - rate, 1e-6)), 0.0).max(axis=2)
        names = {s: t for t, s in self.slots.items()}
        pairs = []
        for i, j in zip(*np.nonzero(per_pair)):
            r = int(np.argmax(np.where(viol[i, j], rate[i, j], -1.0)))
            pairs.append((names[int(i)], names[int(j)], RATIOS[r], float(rate[i, j, r])))
        rare = []
        if self.n >= self.min_support:
            for t, c in counts.items():
                share = (self.doc_freq.get(t, 0) + 0.5) / (self.n + 1.0)
                if c > 0 and share <= self.zero_rate:
                    rare.append((t, share))
        weight = float(np.triu(w, 1).sum()) + sum(-math.log10(s) for _, s in rare)
        pairs.sort(key=lambda p: -p[3])
        rare.sort(key=lambda p: p[1])
        return InvariantResult(violations=len(pairs) + len(rare), weight=weight, pairs=pairs, rare=rare)

    def learn(self, key: str | None, bag: Mapping[str, int]) -> None:
        """Fold a session in: its entity's cumulative counts update the relation statistics."""
        counts = self.counts(key, bag)
        for t in counts:
            if t not in self.slots and len(self.slots) < self.max_templates:
                self.slots[t] = len(self.slots)
        active, rel = self._relations(self._vector(counts))
        self.active += active
        self.held += active & rel
        self.doc_freq.update(t for t, c in counts.items() if c > 0)
        self.n += 1
        if key is not None:
            self.cumulative.pop(key, None)
            self.cumulative[key] = counts
            while len(self.cumulative) > self.max_keys:
                self.cumulative.popitem(last=False)
        if len(self.doc_freq) > 10 * self.max_keys:  # bound the rare-template table
            self.doc_freq = Counter(dict(self.doc_freq.most_common(self.max_keys)))

    def snapshot(self) -> dict[str, Any]:
        return {"slots": dict(self.slots), "active": self.active.tolist(), "held": self.held.tolist(),
                "doc_freq": dict(self.doc_freq), "n": self.n,
                "cumulative": [[k, dict(c)] for k, c in self.cumulative.items()]}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.slots = {str(t): int(s) for t, s in state["slots"].items()}
        self.active = np.asarray(state["active"], dtype=np.float64)
        self.held = np.asarray(state["held"], dtype=np.float64)
        self.doc_freq = Counter({str(t): int(c) for t, c in state["doc_freq"].items()})
        self.n = int(state["n"])
        self.cumulative = OrderedDict((str(k), Counter({str(t): int(c) for t, c in d.items()}))
                                      for k, d in state["cumulative"])
