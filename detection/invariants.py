"""Count invariants between templates, mined online from the stream. Pure (numpy + stdlib).

Invariants Mining (Lou et al., 2010) without labels or a training phase: for each
pair of tracked templates ``(i, j)`` and each small ratio ``a:b`` (1:1, 1:2, 2:1,
1:3, 3:1, 2:3, 3:2) the miner counts, over past sessions where ``i`` or ``j``
occurs, how often ``b·c_i == a·c_j`` held. A *zero invariant* says a template
occurs in at most ``zero_rate`` of sessions: its presence is a violation.

A pair relation is an *invariant* (e.g. "allocated once ⇒ received three
times") when its smoothed hold rate ``(held + 1) / (active + 2)`` is at least
``min_hold`` over at least ``min_support`` sessions; a violation weighs
``−log10(1 − hold)``.

A zero invariant is a claim about a small rate measured on a finite past, so it
is established by a one-sided test at ``confidence``, not by the raw ratio: a
template is *rare* when the Wilson upper bound of its session share is at most
``zero_rate`` (and at least ``min_support`` sessions were seen), and its presence
weighs ``−log10(upper share)``. A template never seen in ``n`` sessions is then
not "rare" until ``n`` is large enough to be sure (at 0.99 and 0.7 %: about 770
sessions), nor is one seen a few times in a young stream. Measured on HDFS
(``bench eval-hdfs``): the raw ratio (share 0.5/482) raised 10 false alarms in the
first ~730 sessions, each a first sighting of a template that turned out common
(``Served block``, ``Got exception while serving``, the deletion templates); the
test removes them. Pairs keep the ratio: no pair false alarm there had thin
support (thousands of sessions, hold ≥ 0.99), and the same Wilson test on pairs
delayed them by hundreds of sessions and missed 6 early anomalous blocks.

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
from statistics import NormalDist
from typing import Any

import numpy as np

RATIOS: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2))


def wilson_bounds(k: np.ndarray | float, n: np.ndarray | float, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval ``(lower, upper)`` of a rate with ``k`` successes in ``n`` trials.

    ``z`` is the one-sided normal quantile (2.326 for 0.99). ``n == 0`` gives ``(0, 1)``.
    """
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 1.0)
    p = k / safe
    z2 = z * z
    centre = p + z2 / (2.0 * safe)
    half = z * np.sqrt(p * (1.0 - p) / safe + z2 / (4.0 * safe * safe))
    den = 1.0 + z2 / safe
    lo = np.where(n > 0, np.clip((centre - half) / den, 0.0, 1.0), 0.0)
    hi = np.where(n > 0, np.clip((centre + half) / den, 0.0, 1.0), 1.0)
    return lo, hi


@dataclass
class InvariantResult:
    """Violations of one session's (cumulative) counts."""

    violations: int  # violated pair invariants (one per pair) + present rare templates
    weight: float  # Σ −log10(1 − hold) of violated pairs + Σ −log10(upper share) of rare templates
    pairs: list[tuple[str, str, tuple[int, int], float]] = field(default_factory=list)  # (i, j, (a, b), hold)
    rare: list[tuple[str, float]] = field(default_factory=list)  # (template, upper confidence bound of its share)


class InvariantMiner:
    """Online pairwise count-ratio and zero invariants; see the module docstring."""

    def __init__(self, *, max_templates: int = 64, min_hold: float = 0.95, min_support: int = 20,
                 zero_rate: float = 0.007, max_keys: int = 100_000, confidence: float = 0.99) -> None:
        if not 0.5 < min_hold < 1.0 or not 0.0 < zero_rate < 0.5 or min_support < 1 or max_templates < 2:
            raise ValueError("need 0.5 < min_hold < 1, 0 < zero_rate < 0.5, min_support >= 1, max_templates >= 2")
        if not 0.5 <= confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
        self.max_templates, self.min_hold, self.min_support = max_templates, min_hold, min_support
        self.zero_rate, self.max_keys, self.confidence = zero_rate, max_keys, confidence
        self._z = NormalDist().inv_cdf(confidence)
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

    def _hold(self) -> np.ndarray:
        return (self.held + 1.0) / (self.active + 2.0)

    def _established(self, rate: np.ndarray | None = None) -> np.ndarray:
        rate = self._hold() if rate is None else rate
        return (self.active >= self.min_support) & (rate >= self.min_hold)

    def share_upper(self, template: str) -> float:
        """Upper confidence bound of the share of past sessions holding ``template``.

        Never below the smoothed share ``(k + 0.5) / (n + 1)``, so ``confidence=0.5``
        (no margin) is the raw-ratio rule and the weight stays finite.
        """
        k = self.doc_freq.get(template, 0)
        return max(float(wilson_bounds(k, self.n, self._z)[1]), (k + 0.5) / (self.n + 1.0))

    def score(self, key: str | None, bag: Mapping[str, int]) -> InvariantResult:
        """Violated invariants of the entity's cumulative counts with this session. No state change."""
        counts = self.counts(key, bag)
        x = self._vector(counts)
        active, rel = self._relations(x)
        rate = self._hold()
        viol = self._established(rate) & active & ~rel
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
                share = self.share_upper(t) if c > 0 else 1.0
                if share <= self.zero_rate:
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
