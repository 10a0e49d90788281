"""Event novelty detector: exemplar baseline + tail calibration + term rarity.

Pure: numpy arrays and plain values in, plain results out. The pipeline calls
``score`` (no state change) and then ``learn`` with the same batch, which makes
scoring prequential: no event is scored by a state it has already changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection.calibration import TailCalibrator
from detection.novelty import ExemplarBaseline, Neighbour


@dataclass
class EventScore:
    """Score of one event with what backs it."""

    score: float  # 0–100
    raw: float  # support-weighted kNN cosine distance
    warmup: bool  # too little history to trust: never alerts
    confidence: float  # 0–1, how much baseline evidence backs the score
    neighbours: list[Neighbour] = field(default_factory=list)


class NoveltyDetector:
    """Scores hybrid event vectors against the stream's own past."""

    def __init__(self, dim: int, *, k: int = 5, capacity: int = 50_000, warmup: int = 200,
                 merge_at: float = 0.995, scale: float = 0.10, decades: float = 2.0,
                 max_terms: int = 200_000) -> None:
        self.baseline = ExemplarBaseline(dim, capacity=capacity, k=k, merge_at=merge_at)
        self.calibrator = TailCalibrator(scale=scale, decades=decades)
        self.warmup = warmup
        self.max_terms = max_terms
        self.doc_freq: Counter[int] = Counter()
        self.n_docs = 0

    def score(self, vectors: np.ndarray, top: int = 3) -> list[EventScore]:
        """Scores for a batch (unit float32 rows), prequential within the batch."""
        results = self.baseline.score(vectors, top=top)
        raw = np.array([r.raw for r in results], dtype=np.float64)
        scores = self.calibrator.score_sequence(raw)
        seen = self.baseline.seen
        out = []
        for i, r in enumerate(results):
            history = seen + i
            support = sum(nb.count for nb in r.neighbours)
            confidence = min(1.0, history / max(1, 5 * self.warmup)) * min(1.0, support / self.baseline.k)
            out.append(EventScore(score=round(max(0.0, float(scores[i])), 3), raw=r.raw, warmup=history < self.warmup,
                                  confidence=round(confidence, 3), neighbours=r.neighbours))
        return out

    def learn(self, vectors: np.ndarray, scores: Sequence[EventScore], ids: list[str], summaries: list[str],
              sparse: Sequence[tuple[Sequence[int], Sequence[float]]]) -> None:
        """Fold a scored batch into the state (baseline, calibration, term frequencies)."""
        # the first events of any stream are all novel: calibrating on them would teach
        # the calibrator that novelty is common, so the distribution starts after warm-up
        self.calibrator.update(np.array([s.raw for s in scores if not s.warmup], dtype=np.float64))
        self.baseline.learn(vectors, ids, summaries)
        for indices, _ in sparse:
            self.doc_freq.update(set(int(i) for i in indices))
        self.n_docs += len(sparse)
        if len(self.doc_freq) > self.max_terms:  # bound memory: forget the rarest half
            keep = self.doc_freq.most_common(self.max_terms // 2)
            self.doc_freq = Counter(dict(keep))

    def snapshot(self) -> dict[str, Any]:
        base = self.baseline.snapshot()
        return {
            "meta": {"baseline": base["meta"], "calibrator": self.calibrator.snapshot(),
                     "warmup": self.warmup, "n_docs": self.n_docs,
                     "doc_freq": [[int(k), int(v)] for k, v in self.doc_freq.items()]},
            "arrays": base["arrays"],
        }

    def restore(self, state: dict[str, Any]) -> None:
        meta = state["meta"]
        self.baseline.restore({"meta": meta["baseline"], "arrays": state["arrays"]})
        self.calibrator.restore(meta["calibrator"])
        self.n_docs = int(meta["n_docs"])
        self.doc_freq = Counter({int(k): int(v) for k, v in meta["doc_freq"]})
