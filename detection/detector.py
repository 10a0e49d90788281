"""Event novelty detector: exemplar baseline + tail calibration + term rarity.

Pure: numpy arrays and plain values in, plain results out. The pipeline calls
``score`` (no state change) and then ``learn`` with the same batch, which makes
scoring prequential: no event is scored by a state it has already changed.

Confidence (:mod:`detection.confidence`): every score carries how much baseline
evidence backs it (stream history, neighbour support, and how often the event's
template and entity were seen before, counted by ``observe``) and the warm-ups
that apply (``warmup_reasons``). A young template or entity keeps its real score
and may alert; only the stream warm-up (``warmup``) stops alerts.

Robust baseline (``admit_below``, :mod:`detection.admission`): an event that scores
at or above it after warm-up is not admitted into the kNN baseline (``EventScore.admitted``)
but quarantined and promoted only once it recurs persistently, so copies of an
anomaly keep scoring anomalous, also later copies in the same batch. Calibration
learns every event except held copies of a pending anomaly (one per pending
exemplar, not its volume): learning only admitted events would truncate the tail it
ranks against, and every later event would look rarer. Value counts learn every event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection.admission import GatedBaseline
from detection.calibration import TailCalibrator
from detection.confidence import ConfidenceBasis, SeenCounter, event_confidence
from detection.novelty import Neighbour
from detection.rarity import RareValue, ValueRarity

#: surprise (decades) is mapped to the calibrator's [0, 2] range: 5 decades → 2.0
_SURPRISE_PER_UNIT = 2.5


@dataclass
class EventScore:
    """Score of one event with what backs it."""

    score: float  # 0–100: the larger of the vector score and the rare-value score
    raw: float  # support-weighted kNN cosine distance
    warmup: bool  # stream warm-up, too little history to trust: never alerts
    confidence: float  # 0–1, how much baseline evidence backs the score (``basis.factors`` multiplied)
    neighbours: list[Neighbour] = field(default_factory=list)
    vector_score: float = 0.0  # 0–100 from kNN novelty of the hybrid vector
    value_score: float = 0.0  # 0–100 from the rarest categorical value
    rare: RareValue | None = None  # that value, when it is what makes the event unusual
    surprise: float = 0.0  # -log10 probability of the event's rarest value
    #: warm-ups that apply ("stream", "template", "entity"); only "stream" (= ``warmup``) stops alerts
    warmup_reasons: tuple[str, ...] = ()
    basis: ConfidenceBasis | None = None  # what the confidence rests on
    admitted: bool = True  # joins the kNN baseline when learned (False: held in quarantine)
    repeat: bool = False  # held and a copy of a pending anomaly: calibration does not count it again


class NoveltyDetector:
    """Scores hybrid event vectors against the stream's own past."""

    def __init__(self, dim: int, *, k: int = 5, capacity: int = 50_000, warmup: int = 200,
                 merge_at: float = 0.995, scale: float = 0.10, decades: float = 2.0,
                 max_terms: int = 200_000, template_warmup: int = 10, entity_warmup: int = 20,
                 max_seen_keys: int = 100_000, admit_below: float | None = None, ttl_s: float = 30 * 86_400.0,
                 quarantine: int = 10_000, promote_count: int = 5, promote_span_s: float = 600.0,
                 promote_at: float = 0.95) -> None:
        self.baseline = GatedBaseline(dim, capacity=capacity, k=k, merge_at=merge_at, ttl_s=ttl_s,
                                      quarantine=quarantine, promote_count=promote_count,
                                      promote_span_s=promote_span_s, promote_at=promote_at)
        #: score at or above which an event (after warm-up) is not admitted into the baseline; None = no gate
        self.admit_below = admit_below
        self.calibrator = TailCalibrator(scale=scale, decades=decades)
        self.rarity = ValueRarity()
        # 3 decades of surprise (a 1-in-1,000 value) count as fully rare in magnitude
        self.rarity_calibrator = TailCalibrator(scale=3.0 / _SURPRISE_PER_UNIT, decades=decades)
        self.warmup = warmup
        self.max_terms = max_terms
        self.doc_freq: Counter[int] = Counter()
        self.n_docs = 0
        # sightings per template id and per entity, for confidence and warm-up (see ``observe``)
        self.template_warmup, self.entity_warmup = template_warmup, entity_warmup
        self.templates_seen = SeenCounter(max_seen_keys)
        self.entities_seen = SeenCounter(max_seen_keys)

    def score(self, vectors: np.ndarray, top: int = 3,
              events: Sequence[dict[str, Any]] | None = None, templates: Sequence[str | None] | None = None,
              entities: Sequence[str | None] | None = None) -> list[EventScore]:
        """Scores for a batch (unit float32 rows, and the events as dicts for the
        rare-value score), prequential within the batch; no state change.

        ``templates`` (template ids) and ``entities`` (``"type:id"`` keys), one per
        row, add their age to the confidence and their warm-up to ``warmup_reasons``.
        """
        n = vectors.shape[0]
        if n == 0:
            return []
        search = self.baseline.search(vectors, top=top)
        rares = self.rarity.score(events) if events is not None else [None] * n
        surprise = np.array([r.surprise if r else 0.0 for r in rares], dtype=np.float64)
        val_scores = np.maximum(self.rarity_calibrator.score_sequence(
            np.minimum(surprise / _SURPRISE_PER_UNIT, 2.0)), 0.0)
        seen = self.baseline.seen
        history = seen + np.arange(n)
        warm = history < self.warmup
        vec_scores = np.zeros(n, dtype=np.float64)

        def combined(raw: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
            vec_scores[:] = np.maximum(self.calibrator.score_sequence(raw, weights), 0.0)
            return np.round(np.maximum(vec_scores, val_scores), 3)

        if self.admit_below is None:
            scores = combined(search.raw)
            admitted, repeats = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
        else:  # vec_scores are left as of the final raw novelties
            adm = self.baseline.admit(search, vectors, combined, self.admit_below, warm)
            admitted, scores, repeats = adm.admitted, adm.scores, adm.repeats
        t_seen = self.templates_seen.seen(templates) if templates is not None else [None] * n
        e_seen = self.entities_seen.seen(entities) if entities is not None else [None] * n
        t_total = self.templates_seen.total
        out = []
        for i, r in enumerate(search.results()):
            basis = event_confidence(history=int(history[i]), warmup=self.warmup, neighbours=len(r.neighbours),
                                     support=sum(nb.count for nb in r.neighbours), k=self.baseline.k,
                                     template_seen=t_seen[i], template_total=t_total,
                                     template_warmup=self.template_warmup, entity_seen=e_seen[i],
                                     entity_warmup=self.entity_warmup)
            if t_seen[i] is not None:
                t_total += 1
            v, c = float(vec_scores[i]), float(val_scores[i])
            out.append(EventScore(score=float(scores[i]), raw=r.raw, warmup=bool(warm[i]),
                                  confidence=round(basis.confidence, 3), neighbours=r.neighbours,
                                  vector_score=round(v, 3), value_score=round(c, 3),
                                  rare=rares[i] if c > v else None, surprise=float(surprise[i]),
                                  warmup_reasons=basis.warmup_reasons, basis=basis,
                                  admitted=bool(admitted[i]), repeat=bool(repeats[i])))
        return out

    def observe(self, templates: Sequence[str | None], entities: Sequence[str | None]) -> None:
        """Count a scored batch's template ids and entity keys (after :meth:`score`, like ``learn``)."""
        self.templates_seen.learn(templates)
        self.entities_seen.learn(entities)

    def learn(self, vectors: np.ndarray, scores: Sequence[EventScore], ids: list[str], summaries: Sequence[str],
              sparse: Sequence[tuple[Sequence[int], Sequence[float]]],
              events: Sequence[dict[str, Any]] | None = None,
              times: Sequence[float] | np.ndarray | None = None) -> None:
        """Fold a scored batch into the state (baseline, calibration, value counts, term frequencies).

        ``times`` are the events' times (epoch seconds: exemplars' first/last seen, TTL,
        promotion); events whose score was not ``admitted`` go to the quarantine."""
        if events is not None:
            self.rarity_calibrator.update(np.array(
                [min(sc.surprise / _SURPRISE_PER_UNIT, 2.0) for sc in scores if not sc.warmup], dtype=np.float64))
            self.rarity.learn(events)
        # the first events of any stream are all novel: calibrating on them would teach
        # the calibrator that novelty is common, so the distribution starts after warm-up
        # nor on copies of a held anomaly: a burst of them must not make its distance look common
        self.calibrator.update(np.array([s.raw for s in scores if not (s.warmup or s.repeat)], dtype=np.float64))
        admit = np.array([sc.admitted for sc in scores], dtype=bool)
        self.baseline.learn(vectors, ids, summaries, times, None if admit.all() else admit)
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
                     "warmup": self.warmup, "n_docs": self.n_docs, "rarity": self.rarity.snapshot(),
                     "rarity_calibrator": self.rarity_calibrator.snapshot(),
                     "doc_freq": [[int(k), int(v)] for k, v in self.doc_freq.items()],
                     "templates_seen": self.templates_seen.snapshot(),
                     "entities_seen": self.entities_seen.snapshot()},
            "arrays": base["arrays"],
        }

    def restore(self, state: dict[str, Any]) -> None:
        meta = state["meta"]
        self.baseline.restore({"meta": meta["baseline"], "arrays": state["arrays"]})
        self.calibrator.restore(meta["calibrator"])
        self.rarity.restore(meta["rarity"])
        self.rarity_calibrator.restore(meta["rarity_calibrator"])
        self.n_docs = int(meta["n_docs"])
        self.doc_freq = Counter({int(k): int(v) for k, v in meta["doc_freq"]})
        # snapshots from before these counters: every template and entity starts its warm-up again
        self.templates_seen = SeenCounter(self.templates_seen.capacity)
        self.entities_seen = SeenCounter(self.entities_seen.capacity)
        if "templates_seen" in meta:
            self.templates_seen.restore(meta["templates_seen"])
        if "entities_seen" in meta:
            self.entities_seen.restore(meta["entities_seen"])
