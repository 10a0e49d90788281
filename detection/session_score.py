"""Session anomaly score at close: kNN novelty vs past sessions ⊕ transition surprise. Pure.

Session vector = unit(√(1−w)·events ⊕ √w·templates): ``events`` is the session's
unit recency-weighted mean of event vectors, ``templates`` the bag of template
ids, hashed into ``bag_dim`` buckets, sqrt-tf, L2. Its novelty is the
support-weighted kNN distance (:class:`detection.novelty.ExemplarBaseline`) to
PAST CLOSED SESSIONS only, calibrated 0–100 by a :class:`TailCalibrator`.

Transition surprise: a smoothed first-order Markov model over template ids with start/end symbols; the session's
surprise is ``max_i −log10 P(t_i | t_{i−1})``. It is robust to recurring
anomalies by construction: a recurring bad transition stays improbable as long
as it is a small share of the transitions out of its state. Calibrated 0–100 by
its own TailCalibrator.

Sequence surprise (optional, ``sequence=True`` or an
:class:`detection.sequence.OnlineSequenceScorer`; issue 3b): a small GRU trained
self-supervised on next-template prediction over the stream's own closed
sessions (refitted every few hundred sessions, no labels). Its raw value is the
session's max per-step −ln p over ``sequence_scale``, calibrated 0–100 by its own
TailCalibrator; 0 until the model's first fit. It joins the kNN/transition max
(and its gate). Off by default: on HDFS (``bench eval-hdfs --sequence on|off``) it
leaves ROC-AUC, PR-AUC and F1 at the alert threshold unchanged under the gate and
takes ~1.8x the replay time; ungated it lowered F1@90 from 0.937 to 0.867 (measured).

Count invariants (:class:`detection.invariants.InvariantMiner`, ``invariants=True``):
pairwise count-ratio relations and rare templates mined online over each entity's
cumulative counts (a template is rare when the upper ``confidence`` bound of its
session share is at most ``zero_rate``, so a first sighting in a young stream is
not yet a violation). A session that violates an established invariant scores
``90 + 10·(1 − e^(−weight/5))`` (at or above the default alert threshold: the
alert rule is "an invariant broke", not a fixed alert rate). Once the miner has
established invariants (``gate``), the kNN/transition score is scaled into
[0, 89] so it ranks the remaining sessions without alerting on its own; before
that (short streams, streams without count structure) it is used as is.

Score = max of the calibrated scores (kNN, transition and sequence gated as above). Prequential: :meth:`SessionScorer.process`
scores a session, then learns it. Robust admission (``admit_below``, :mod:`detection.admission`):
a session that scored at or above it after warm-up does not join the kNN baseline (its
calibration counts it unless it repeats a pending one); it waits in the quarantine and is
promoted once sessions near it (similarity >= ``promote_at``) recur ``promote_count`` times
over ``promote_span_s`` of event time (their close times).
A pure gate, without promotion, measured on HDFS: it locks out patterns first seen after
warm-up and lowers ROC-AUC. With quarantine and promotion (on by default), measured on
HDFS: ROC-AUC, PR-AUC and F1 unchanged (0.9978, 0.8598, 0.9495); the 531 sessions held are
those that alerted, 213 pending exemplars were promoted.

Confidence and explanation (:mod:`detection.confidence`): a score carries its
confidence (closed sessions learned, support of the listed nearest sessions, age
of the session's rarest template in sessions) and its warm-ups ("stream" below
``warmup`` sessions, which never alert; "template" when the rarest template was
in fewer than ``template_warmup`` past sessions, which may). The alert lists the
session's unusual transitions: the ``transitions`` most improbable distinct
template transitions with ``P ≤ unusual_p`` under the Markov model, with their
probability and surprise (empty when the session is unusual for other reasons).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from detection.admission import GatedBaseline
from detection.alerts import alert_id, alert_severity
from detection.calibration import TailCalibrator
from detection.confidence import ConfidenceBasis, session_confidence, template_frequency
from detection.explain import component_shares
from detection.invariants import InvariantMiner, InvariantResult
from detection.sequence import END, START, OnlineSequenceScorer, SequenceSurprise
from detection.sessions import Session
from detection.times import iso_time

_SEQ = "sequence."  # prefix of the sequence model's arrays in a snapshot


def _bucket(tid: str, dim: int) -> int:
    return int.from_bytes(hashlib.blake2b(tid.encode("utf-8"), digest_size=8).digest(), "little") % dim


def bag_vector(bag: Mapping[str, int], dim: int) -> np.ndarray:
    """Hashed sqrt-tf bag of template ids, L2-normalized (float32 ``[dim]``)."""
    v = np.zeros(dim, dtype=np.float64)
    for tid, n in bag.items():
        v[_bucket(tid, dim)] += float(n)
    v = np.sqrt(v)
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 0 else v).astype(np.float32)


class MarkovSurprise:
    """Smoothed first-order transition model over template ids (bounded number of states)."""

    def __init__(self, *, alpha: float = 0.1, max_states: int = 10_000) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = alpha
        self.max_states = max_states
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.symbols: set[str] = {END}

    def surprise(self, sequence: Sequence[str]) -> tuple[float, tuple[str, str, float]]:
        """``max −log10 P`` over the session's transitions and the worst ``(from, to, P)``. No state change."""
        return self.worst(self.ranked(sequence))

    @staticmethod
    def worst(ranked: Sequence[tuple[str, str, float]]) -> tuple[float, tuple[str, str, float]]:
        """``(−log10 P, (from, to, P))`` of the least probable of :meth:`ranked`'s transitions (never empty:
        a session has at least its start → end transition)."""
        return -math.log10(ranked[0][2]), ranked[0]

    def ranked(self, sequence: Sequence[str]) -> list[tuple[str, str, float]]:
        """The session's distinct transitions ``(from, to, P)``, least probable first (ties: first
        occurrence first), with the start and end symbols. No state change."""
        v = len(self.symbols) + 1
        probs: dict[tuple[str, str], float] = {}
        totals: dict[str, int] = {}
        for a, b in pairwise([START, *sequence, END]):
            if (a, b) in probs:
                continue
            row = self.counts.get(a)
            if a not in totals:
                totals[a] = sum(row.values()) if row else 0
            n_ab = row.get(b, 0) if row else 0
            probs[(a, b)] = (n_ab + self.alpha) / (totals[a] + self.alpha * v)
        return [(a, b, p) for (a, b), p in sorted(probs.items(), key=lambda kv: kv[1])]

    def learn(self, sequence: Sequence[str]) -> None:
        seq = [START, *sequence, END]
        for a, b in pairwise(seq):
            self.counts[a][b] += 1
            self.symbols.add(b)
        if len(self.symbols) > self.max_states:  # forget the rarest states
            keep = {s for s, _ in Counter({s: sum(c.values()) for s, c in self.counts.items()})
                    .most_common(self.max_states // 2)} | {START, END}
            self.counts = defaultdict(Counter, {a: Counter({b: n for b, n in c.items() if b in keep})
                                                for a, c in self.counts.items() if a in keep})
            self.symbols = (keep - {START}) | {END}

    def snapshot(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "counts": {a: dict(c) for a, c in self.counts.items()},
                "symbols": sorted(self.symbols)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alpha = float(state["alpha"])
        self.counts = defaultdict(Counter, {a: Counter({b: int(n) for b, n in c.items()})
                                            for a, c in state["counts"].items()})
        self.symbols = set(state["symbols"])


@dataclass
class SessionScore:
    """Score of one closed session and what backs it."""

    score: float  # 0–100
    knn_raw: float
    knn_score: float
    surprise: float  # max −log10 P of a transition
    surprise_score: float
    warmup: bool
    worst_transition: tuple[str, str, float]
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    components: dict[str, float] = field(default_factory=dict)
    rare_templates: list[tuple[str, float]] = field(default_factory=list)  # (template id, −log10 share)
    invariant_score: float = 0.0
    invariants: InvariantResult | None = None
    sequence_score: float = 0.0  # calibrated GRU surprise (0 while the model is not ready)
    sequence: SequenceSurprise | None = None
    #: the most unusual distinct transitions ``(from, to, P)`` (P ≤ ``unusual_p``), least probable first
    transitions: list[tuple[str, str, float]] = field(default_factory=list)
    confidence: float = 0.0  # 0–1, how much baseline evidence backs the score (``basis.factors`` multiplied)
    warmup_reasons: tuple[str, ...] = ()  # "stream" (= ``warmup``: never alerts), "template" (may alert)
    basis: ConfidenceBasis | None = None
    #: the unit session vector that was scored (:meth:`SessionScorer.vector`), reused by learn() and the store
    vector: np.ndarray | None = None


class SessionScorer:
    """Prequential session scorer; see the module docstring."""

    def __init__(self, dim: int, *, k: int = 50, bag_dim: int = 512, bag_weight: float = 0.5,
                 capacity: int = 20_000, merge_at: float = 0.999, scale: float = 0.05, decades: float = 2.0,
                 surprise_scale: float = 4.0, alpha: float = 0.1, warmup: int = 50,
                 admit_below: float | None = None, neighbours: int = 3, invariants: bool = True,
                 gate: float = 0.89, min_hold: float = 0.95, zero_rate: float = 0.007, confidence: float = 0.99,
                 sequence: bool | OnlineSequenceScorer = False, sequence_scale: float = 10.0,
                 template_warmup: int = 5, unusual_p: float = 0.1, transitions: int = 3,
                 ttl_s: float = 30 * 86_400.0, quarantine: int = 10_000, promote_count: int = 5,
                 promote_span_s: float = 600.0, promote_at: float = 0.95) -> None:
        if not 0.0 <= bag_weight <= 1.0:
            raise ValueError(f"bag_weight must be in [0, 1], got {bag_weight}")
        if sequence_scale <= 0:
            raise ValueError(f"sequence_scale must be > 0, got {sequence_scale}")
        self.dim, self.bag_dim, self.bag_weight = dim, bag_dim, bag_weight
        self.parts = {"events": slice(0, dim), "templates": slice(dim, dim + bag_dim)}
        self.baseline = GatedBaseline(dim + bag_dim, capacity=capacity, k=k, merge_at=merge_at, ttl_s=ttl_s,
                                      quarantine=quarantine, promote_count=promote_count,
                                      promote_span_s=promote_span_s, promote_at=promote_at)
        self.knn_cal = TailCalibrator(scale=scale, decades=decades)
        self.markov = MarkovSurprise(alpha=alpha)
        self.surprise_cal = TailCalibrator(scale=1.0, decades=decades)
        self.surprise_scale = surprise_scale
        self.warmup = warmup
        self.admit_below = admit_below
        self.neighbours = neighbours
        self.doc_freq: Counter[str] = Counter()  # sessions containing each template
        self.texts: dict[str, str] = {}
        self.seen = 0
        self.miner = (InvariantMiner(min_hold=min_hold, zero_rate=zero_rate, confidence=confidence)
                      if invariants else None)
        self.gate = gate
        self.sequence: OnlineSequenceScorer | None = None
        if isinstance(sequence, OnlineSequenceScorer):
            self.sequence = sequence
        elif sequence:
            self.sequence = OnlineSequenceScorer()
        self.sequence_cal = TailCalibrator(scale=1.0, decades=decades)
        self.sequence_scale = sequence_scale
        self.template_warmup, self.unusual_p, self.transitions = template_warmup, unusual_p, transitions

    def vector(self, session: Session) -> np.ndarray:
        """Unit session vector (float32 ``[dim + bag_dim]``)."""
        ev = session.vector
        if ev.size != self.dim:
            ev = np.zeros(self.dim, dtype=np.float32)
        v = np.concatenate([math.sqrt(1.0 - self.bag_weight) * ev,
                            math.sqrt(self.bag_weight) * bag_vector(session.bag, self.bag_dim)])
        n = float(np.linalg.norm(v))
        return (v / n if n > 0 else v).astype(np.float32)

    def score(self, session: Session) -> SessionScore:
        """Score against past closed sessions only — changes no state."""
        v = self.vector(session)
        res = self.baseline.score(v[None, :], top=max(self.neighbours, 1))[0]
        knn_score = float(self.knn_cal.score(np.array([res.raw]))[0])
        ranked = self.markov.ranked(session.sequence)
        surprise, worst = self.markov.worst(ranked)
        s_raw = min(surprise / self.surprise_scale, 2.0)
        s_score = float(self.surprise_cal.score(np.array([s_raw]))[0])
        nbs, rows = [], []
        for nb in res.neighbours[: self.neighbours]:
            if nb.in_batch:
                continue
            rows.append(self.baseline.vector(nb.row))
            nbs.append({"id": nb.id, "similarity": round(nb.similarity, 4), "summary": self.baseline.summary(nb.row)})
        comps = (component_shares(v, np.array(rows), self.parts) if rows else {p: 0.0 for p in self.parts})
        rare = sorted(((t, -math.log10((self.doc_freq.get(t, 0) + 0.5) / (self.seen + 1.0))) for t in session.bag),
                      key=lambda x: -x[1])[:5]
        seq = self.sequence.surprise(session.sequence) if self.sequence is not None else None
        seq_score = float(self.sequence_cal.score(np.array([self._seq_raw(seq)]))[0]) if seq is not None else 0.0
        base, inv_score, inv = max(knn_score, s_score, seq_score), 0.0, None
        if self.miner is not None:
            inv = self.miner.score(session.key, session.bag)
            if inv.violations:
                inv_score = 90.0 + 10.0 * (1.0 - math.exp(-inv.weight / 5.0))
            if self.miner.invariants:
                base *= self.gate
        rarest_seen = self.doc_freq.get(rare[0][0], 0) if rare else None
        basis = session_confidence(history=self.seen, warmup=self.warmup,
                                   neighbours=len(res.neighbours[: self.neighbours]),
                                   support=sum(nb.count for nb in res.neighbours[: self.neighbours]),
                                   listed=self.neighbours, template_seen=rarest_seen,
                                   template_warmup=self.template_warmup)
        unusual = [t for t in ranked[: self.transitions] if t[2] <= self.unusual_p]
        return SessionScore(score=round(max(base, inv_score), 3), knn_raw=res.raw, knn_score=knn_score,
                            surprise=surprise, surprise_score=s_score, warmup=self.seen < self.warmup,
                            worst_transition=worst, neighbours=nbs, components=comps, rare_templates=rare,
                            invariant_score=inv_score, invariants=inv, sequence_score=seq_score, sequence=seq,
                            transitions=unusual, confidence=round(basis.confidence, 3),
                            warmup_reasons=basis.warmup_reasons, basis=basis, vector=v)

    def _seq_raw(self, seq: SequenceSurprise) -> float:
        return min(seq.max_nll / self.sequence_scale, 2.0)

    def learn(self, session: Session, result: SessionScore) -> None:
        """Fold a scored session into the state (robust admission applies to the kNN baseline only)."""
        admitted = self.admit_below is None or result.warmup or result.score < self.admit_below
        v = result.vector if result.vector is not None else self.vector(session)
        # a held copy of a pending session is not calibrated again (one per pending exemplar, not its volume)
        repeat = not admitted and bool(self.baseline.pending_duplicates(v[None, :])[0])
        self.baseline.learn(v[None, :], [session.session_id], [session_summary(session)], [session.end],
                            None if admitted else np.zeros(1, dtype=bool))
        if not repeat:
            self.knn_cal.update(np.array([result.knn_raw]))
        self.surprise_cal.update(np.array([min(result.surprise / self.surprise_scale, 2.0)]))
        self.markov.learn(session.sequence)
        if self.sequence is not None:
            if result.sequence is not None:
                self.sequence_cal.update(np.array([self._seq_raw(result.sequence)]))
            self.sequence.learn(session.sequence)
        if self.miner is not None:
            self.miner.learn(session.key, session.bag)
        self.doc_freq.update(session.bag.keys())
        for tid, text in session.templates.items():
            if text and len(self.texts) < 100_000:
                self.texts.setdefault(tid, text)
        self.seen += 1

    def process(self, session: Session) -> SessionScore:
        """Score, then learn (prequential)."""
        result = self.score(session)
        self.learn(session, result)
        return result

    def snapshot(self) -> dict[str, Any]:
        """``{"meta": plain data, "arrays": float arrays}``; the sequence model's arrays are prefixed ``sequence.``."""
        base = self.baseline.snapshot()
        arrays = dict(base["arrays"])
        seq = self.sequence.snapshot() if self.sequence is not None else None
        if seq is not None:
            arrays.update({_SEQ + k: v for k, v in seq["arrays"].items()})
        return {"meta": {"baseline": base["meta"], "knn_cal": self.knn_cal.snapshot(),
                         "surprise_cal": self.surprise_cal.snapshot(), "markov": self.markov.snapshot(),
                         "doc_freq": dict(self.doc_freq), "texts": dict(self.texts), "seen": self.seen,
                         "miner": self.miner.snapshot() if self.miner is not None else None,
                         "sequence": seq["meta"] if seq is not None else None,
                         "sequence_cal": self.sequence_cal.snapshot()},
                "arrays": arrays}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot`; a snapshot without a sequence model leaves a fresh one as it is."""
        meta, arrays = state["meta"], state["arrays"]
        self.baseline.restore({"meta": meta["baseline"],
                               "arrays": {k: v for k, v in arrays.items() if not k.startswith(_SEQ)}})
        if self.sequence is not None and meta.get("sequence") is not None:
            self.sequence.restore({"meta": meta["sequence"],
                                   "arrays": {k[len(_SEQ):]: v for k, v in arrays.items() if k.startswith(_SEQ)}})
        if meta.get("sequence_cal") is not None:
            self.sequence_cal.restore(meta["sequence_cal"])
        self.knn_cal.restore(meta["knn_cal"])
        self.surprise_cal.restore(meta["surprise_cal"])
        self.markov.restore(meta["markov"])
        self.doc_freq = Counter({str(k): int(v) for k, v in meta["doc_freq"].items()})
        self.texts = {str(k): str(v) for k, v in meta["texts"].items()}
        self.seen = int(meta["seen"])
        if self.miner is not None and meta.get("miner") is not None:
            self.miner.restore(meta["miner"])


def session_summary(session: Session, limit: int = 140) -> str:
    """One line: event count, duration and the most frequent templates."""
    top = ", ".join(f"{(session.templates.get(t) or t)[:40]}×{n}" for t, n in session.bag.most_common(3))
    line = f"{session.events} events, {session.end - session.start:.0f}s: {top}"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def session_alert(session: Session, result: SessionScore, *, model_version: str,
                  texts: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A ``session_anomaly`` alert (schemas/alert.v1.json) for a closed session."""
    texts = texts or {}

    def text(tid: str) -> str:
        return session.templates.get(tid) or texts.get(tid) or tid

    def step(a: str, b: str) -> str:
        return f"{text(a) if a != START else 'START'} → {text(b) if b != END else 'END'}"

    terms: list[dict[str, Any]] = []
    seq = result.sequence
    if seq is not None and result.sequence_score > 0 and result.sequence_score >= max(
            result.knn_score, result.surprise_score, result.invariant_score):
        a, b, p = seq.worst  # the GRU drives the score: its most surprising step first
        terms.append({"term": f"unexpected next template (sequence model, p={p:.2g}): {step(a, b)}",
                      "weight": round(-math.log10(max(p, 1e-12)), 3)})
    terms.extend({"term": text(t), "weight": round(w, 3)} for t, w in result.rare_templates)
    a, b, p = result.worst_transition
    terms.append({"term": f"transition {step(a, b)}", "weight": round(-math.log10(max(p, 1e-12)), 3)})
    if result.invariants is not None:
        for ti, tj, (ra, rb), hold in result.invariants.pairs[:3]:
            terms.append({"term": f"invariant broken: {rb}×count({text(ti)}) = {ra}×count({text(tj)})",
                          "weight": round(-math.log10(max(1.0 - hold, 1e-6)), 3)})
        for t, share in result.invariants.rare[:3]:
            terms.append({"term": f"rare template: {text(t)}", "weight": round(-math.log10(share), 3)})
    rarest = result.rare_templates[0][0] if result.rare_templates else None
    kind, ident = session.entity
    basis = result.basis
    explanation: dict[str, Any] = {
        "components": {k: round(float(v), 4) for k, v in result.components.items()},
        "neighbours": list(result.neighbours),
        "top_terms": terms,
        "template": text(rarest) if rarest else None,
        "template_id": rarest,
    }
    freq = template_frequency(basis)
    if freq is not None and rarest is not None:
        explanation["template_frequency"] = freq
    explanation["transitions"] = [
        {"from": text(a) if a != START else "START", "to": text(b) if b != END else "END",
         "from_id": a if a != START else None, "to_id": b if b != END else None,
         "probability": float(f"{p:.4g}"), "surprise": round(-math.log10(max(p, 1e-12)), 3)}
        for a, b, p in result.transitions]
    return {
        "schema_version": "1",
        "alert_id": alert_id("session_anomaly", session.session_id, model_version),
        "kind": "session_anomaly",
        "time": iso_time(session.end),
        "first_seen": iso_time(session.start),
        "last_seen": iso_time(session.end),
        "count": 1,
        "score": round(float(result.score), 2),
        "severity": alert_severity(result.score),
        "confidence": round(float(result.confidence), 3),
        "warmup": bool(result.warmup),
        "warmup_reasons": list(result.warmup_reasons),
        **({"confidence_basis": basis.to_alert()} if basis is not None else {}),
        "title": f"Unusual session {session.session_id} ({session.events} events)",  # the score is its own field
        "entity": {"type": kind, "id": ident},
        "evidence": {"event_ids": list(session.event_ids[:20]), "session_id": session.session_id},
        "explanation": explanation,
        "model_version": model_version,
    }
