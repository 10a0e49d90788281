"""The event pipeline: raw message bytes → validated events → hybrid vectors →
store upsert → prequential kNN novelty → alerts.

One function (`Pipeline.process`) serves the Faust agent and `secstream replay`,
so an offline replay scores exactly as production does. It is synchronous and
CPU-bound: the agent runs it in a single worker thread, one batch at a time.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from detection.alerts import event_alert, summary_line
from detection.confidence import template_frequency
from detection.detector import EventScore, NoveltyDetector
from detection.explain import component_shares, top_terms
from detection.feedback import FeedbackMemory, Match, confirmed_score, teach_normal
from detection.recent import RecentIds
from detection.threshold import AlertThreshold
from encoders.hybrid import HybridEncoder
from schemas.errors import InvalidEvent
from schemas.models import SecurityEvent, decode_event
from streams.config.payload_fields import PayloadFields
from streams.store import CollectionSpec, SparseTerms, StorePoint, VectorStore, point_id
from streams.store.collections import EVENTS
from streams.store.retry import StoreUnavailable
from streams.stages.unpublished import FirstOutcome, Unpublished

log = logging.getLogger(__name__)

#: DLQ reason of a valid-looking message whose processing failed (not an input error).
PROCESSING_ERROR = "processing_error"


class _Summaries(Sequence[str]):
    """Neighbour summaries built on demand: only events that become new exemplars need
    one, and most events of a stream merge into an existing exemplar."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self._docs = docs

    def __len__(self) -> int:
        return len(self._docs)

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return summary_line(self._docs[i])


@dataclass
class Accepted:
    """A valid event and its score."""

    index: int
    event_id: str
    session_id: str | None
    score: float
    alert: bool
    warmup: bool
    #: the decoded event (SecurityEvent as a dict), its template and its row in ``BatchOutcome.vectors``
    event: dict[str, Any] | None = None
    template_id: str | None = None
    template: str | None = None
    row: int = -1
    #: an event id learned before (a re-delivery, a re-sent event, or an identical line: ids default to a
    #: content hash): scored, not learned, stored or alerted again by the event detector. It keeps its row
    #: and still joins its session (identical lines are distinct events in logs such as HDFS: leaving them
    #: out of sessions lowered F1 from 0.95 to 0.88 there); entity steps leave it out.
    repeated: bool = False


@dataclass
class Rejected:
    """An invalid input: goes to the DLQ with its reason, never stops the worker."""

    index: int
    reason: str
    detail: str
    raw: bytes

    def dlq_record(self, source: str = "") -> dict[str, Any]:
        """The DLQ message: the raw value (UTF-8 text or base64) plus the reason."""
        try:
            raw_text, encoding = self.raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            raw_text, encoding = base64.b64encode(self.raw).decode("ascii"), "base64"
        return {
            "reason": self.reason,
            "detail": self.detail,
            "raw": raw_text,
            "raw_encoding": encoding,
            "raw_bytes": len(self.raw),
            "source": source,
            "received_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }


@dataclass
class BatchOutcome:
    """What one batch produced, in input order."""

    results: list[Accepted | Rejected] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: evidence vector of each alert (the event's hybrid row), for suppression by analyst feedback
    alert_vectors: list[np.ndarray] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: dense hybrid rows of the accepted events (row ``Accepted.row``), float32 ``[n_accepted, D]``
    vectors: np.ndarray | None = None

    @property
    def rejected(self) -> list[Rejected]:
        return [r for r in self.results if isinstance(r, Rejected)]

    @property
    def accepted(self) -> list[Accepted]:
        return [r for r in self.results if isinstance(r, Accepted)]


class Pipeline:
    """Stateful scorer of event batches; see the module docstring."""

    def __init__(self, encoder: HybridEncoder, detector: NoveltyDetector, store: VectorStore | None, *,
                 threshold: float | AlertThreshold = 90.0, max_message_bytes: int = 81_920,
                 neighbours_in_alert: int = 3, recent_ids: int = 100_000,
                 feedback: FeedbackMemory | None = None, payload_fields: PayloadFields | None = None) -> None:
        self.encoder = encoder
        self.detector = detector
        self.store = store
        #: the event kind's alert threshold (fixed or adaptive; a number is a fixed one)
        self.alert_threshold = AlertThreshold.of(threshold)
        self.max_message_bytes = max_message_bytes
        self.neighbours_in_alert = neighbours_in_alert
        self.model_version = encoder.version
        #: analyst verdicts (detection/feedback.py): confirmed patterns raise scores here; the alerts
        #: stage suppresses alerts like false positives
        self.feedback = feedback if feedback is not None else FeedbackMemory()
        self.recent = RecentIds(recent_ids)  # detection/recent.py: event ids already learned
        #: first outcomes of learned events whose batch could not be published (streams/stages/unpublished.py)
        self.unpublished = Unpublished(recent_ids)
        #: the event fields a store point keeps (streams/config/payload_fields.py); None: all of them
        self.payload_fields = payload_fields
        if store is not None:
            store.ensure(CollectionSpec(name=EVENTS, dense_dim=encoder.dim))

    @property
    def threshold(self) -> float:
        """The event score at or above which an event alerts, now."""
        return self.alert_threshold.value

    def process(self, values: Sequence[bytes]) -> BatchOutcome:
        """Score a batch of raw messages; every input gets exactly one result.

        Never raises for a bad message: invalid input is a `Rejected` result, and an
        unexpected failure while scoring (a bug, an unusable store) is retried one
        message at a time so that only the messages that fail on their own are
        rejected, with reason ``processing_error`` and the exception as the detail.
        """
        try:
            return self._process(values)
        except StoreUnavailable:  # the store is down and the worker stopping: no message's fault
            raise
        except Exception as exc:  # the worker must keep going
            log.exception("batch of %d failed (%s); retrying one by one", len(values), exc)  # noqa: TRY401 - one-line summary
        out = BatchOutcome()
        rows: list[np.ndarray] = []
        for i, raw in enumerate(values):
            try:
                one = self._process([raw])
            except StoreUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001
                out.results.append(Rejected(i, PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"[:500], bytes(raw)))
                continue
            for res in one.results:
                res.index = i
                if isinstance(res, Accepted) and one.vectors is not None and res.row >= 0:
                    rows.append(one.vectors[res.row])
                    res.row = len(rows) - 1
            out.results.extend(one.results)
            out.alerts.extend(one.alerts)
            out.alert_vectors.extend(one.alert_vectors)
        out.vectors = np.array(rows, dtype=np.float32) if rows else None
        return out

    def _process(self, values: Sequence[bytes]) -> BatchOutcome:
        out = BatchOutcome()
        t0 = time.perf_counter()
        events: list[SecurityEvent] = []
        positions: list[int] = []
        slots: list[Accepted | Rejected | None] = [None] * len(values)
        for i, raw in enumerate(values):
            try:
                events.append(decode_event(raw, self.max_message_bytes))
                positions.append(i)
            except InvalidEvent as exc:
                slots[i] = Rejected(i, exc.reason, exc.detail, bytes(raw))
        docs = [e.to_dict() for e in events]
        t1 = time.perf_counter()
        batch = self.encoder.encode(docs)
        t2 = time.perf_counter()
        entities = [f"{kind}:{ident}" for kind, ident in (e.entity() for e in events)]
        scores = self.detector.score(batch.dense, top=max(self.neighbours_in_alert, 1), events=docs,
                                     templates=batch.template_ids, entities=entities)
        confirmed = self._confirmed(batch.dense, scores)
        ids = [d["event_id"] for d in docs]
        repeated = self.recent.repeated(ids)
        t3 = time.perf_counter()
        threshold = self.threshold  # learned from earlier batches only (observed below, after learning)
        held = self.unpublished
        for j, (doc, ev, sc) in enumerate(zip(docs, events, scores)):
            first = held.get(ids[j]) if held and repeated[j] else None
            if first is not None:  # learned, never published: its first outcome again, not "already seen"
                self._republish(out, slots, positions[j], j, doc, first, batch)
                continue
            alert = (((not sc.warmup) and sc.score >= threshold) or j in confirmed) and not repeated[j]
            slots[positions[j]] = Accepted(positions[j], doc["event_id"], doc.get("session_id"), sc.score, alert,
                                           sc.warmup, event=doc, template_id=batch.template_ids[j],
                                           template=batch.templates[j], row=j, repeated=repeated[j])
            if alert:
                doc_alert = {**self._alert(j, doc, ev, sc, batch, docs), "threshold": round(threshold, 2)}
                if j in confirmed:
                    doc_alert["explanation"]["confirmed_like"] = confirmed[j].explain()
                    doc_alert["title"] = f"Like confirmed alert {confirmed[j].alert_id[:8]}: {doc_alert['title']}"
                out.alerts.append(doc_alert)
                out.alert_vectors.append(batch.dense[j])
        t4 = time.perf_counter()
        fresh = [j for j in range(len(docs)) if not repeated[j]]
        if self.store is not None and fresh:
            self.store.upsert(EVENTS, [self._point(j, docs[j], scores[j], batch) for j in fresh])
        t5 = time.perf_counter()
        times = np.array([e.time.timestamp() for e in events], dtype=np.float64)  # exemplar first/last seen
        if len(fresh) == len(docs):
            self._learn(batch, scores, ids, docs, entities, times)
        elif fresh:
            self._learn(batch.rows(fresh), [scores[j] for j in fresh], [ids[j] for j in fresh],
                        [docs[j] for j in fresh], [entities[j] for j in fresh], times[fresh])
        self.recent.add([ids[j] for j in fresh])
        # a re-delivered event was counted the first time: the rate is over distinct events
        self.alert_threshold.observe([scores[j].score for j in fresh if not scores[j].warmup])
        t6 = time.perf_counter()
        out.results = [s for s in slots if s is not None]
        out.vectors = batch.dense
        out.timings = {"decode": t1 - t0, "encode": t2 - t1, "score": t3 - t2, "explain": t4 - t3,
                       "upsert": t5 - t4, "learn": t6 - t5}
        return out

    def _republish(self, out: BatchOutcome, slots: list[Accepted | Rejected | None], position: int, j: int,
                   doc: dict[str, Any], first: FirstOutcome, batch: Any) -> None:
        """Row ``j``, a re-delivery of an event learned in a batch that was never published: its first outcome."""
        slots[position] = Accepted(position, doc["event_id"], doc.get("session_id"), first.score,
                                   first.alert is not None, first.warmup, event=doc, template_id=batch.template_ids[j],
                                   template=batch.templates[j], row=j)
        if first.alert is not None:
            out.alerts.append(first.alert)
            out.alert_vectors.append(first.vector if first.vector is not None else batch.dense[j])
        self.unpublished.release([doc["event_id"]])  # once per id: a second copy in the batch is "already seen"

    def hold_unpublished(self, outcome: BatchOutcome) -> int:
        """Keep the first outcome of every event ``outcome`` learned: its batch could not be published, and
        a re-delivery must publish what was decided (streams/stages/unpublished.py). Returns how many."""
        alerts = {a["evidence"]["event_ids"][0]: (a, v) for a, v in zip(outcome.alerts, outcome.alert_vectors)
                  if a.get("evidence", {}).get("event_ids")}
        held = []
        for r in outcome.accepted:
            if r.repeated:
                continue
            alert, vector = alerts.get(r.event_id, (None, None)) if r.alert else (None, None)
            held.append((r.event_id, FirstOutcome(float(r.score), bool(r.warmup), alert, vector)))
        return self.unpublished.hold(held)

    def release_unpublished(self, outcome: BatchOutcome) -> None:
        """``outcome``'s batch was published: its events' held first outcomes are done with."""
        if self.unpublished:
            self.unpublished.release(r.event_id for r in outcome.accepted)

    def _learn(self, batch: Any, scores: list[EventScore], ids: list[str], docs: list[dict[str, Any]],
               entities: list[str], times: np.ndarray) -> None:
        self.detector.learn(batch.dense, scores, ids, _Summaries(docs), batch.sparse, events=docs, times=times)
        self.detector.observe(batch.template_ids, entities)
        self.encoder.update(docs)

    def _confirmed(self, vectors: np.ndarray, scores: list[EventScore]) -> dict[int, Match]:
        """Rows like a true-positive verdict: their score is raised to :func:`confirmed_score` (in place)."""
        fb = self.feedback
        if not fb.has_confirmed("event") or vectors.shape[0] == 0:
            return {}
        out = {}
        for j, m in enumerate(fb.confirming("event", vectors)):
            if m is not None:
                out[j] = m
                scores[j].score = round(max(scores[j].score, confirmed_score(m.similarity, fb.confirm_at,
                                                                             self.threshold)), 3)
        return out

    def encode_stored(self, payloads: Sequence[dict[str, Any]]) -> np.ndarray:
        """Hybrid rows of stored events (``events`` payloads) as the encoder sees them now, without learning.
        An event's first sighting encodes its new values differently from later copies of it."""
        fields = SecurityEvent.model_fields  # the payload is the event plus what _point adds
        docs = [{k: v for k, v in p.items() if k in fields} for p in payloads]
        return self.encoder.encode(docs).dense if docs else np.zeros((0, self.encoder.dim), dtype=np.float32)

    def learn_normal(self, vectors: np.ndarray, ident: str, summary: str) -> None:
        """Teach the baseline that ``vectors`` (rows: a false-positive verdict's evidence) are normal, with
        enough support that an identical event is not novel."""
        for row in np.asarray(vectors, dtype=np.float32).reshape(-1, self.encoder.dim):
            teach_normal(self.detector.baseline, row, ident, summary)

    def _point(self, j: int, doc: dict[str, Any], sc: EventScore, batch: Any) -> StorePoint:
        indices, values = batch.sparse[j]
        payload = self.payload_fields.apply(doc) if self.payload_fields is not None else dict(doc)
        payload.update({"template": batch.templates[j], "template_id": batch.template_ids[j],
                        "score": sc.score, "novelty": round(sc.raw, 6), "warmup": sc.warmup,
                        "warmup_reasons": list(sc.warmup_reasons), "confidence": sc.confidence,
                        "model_version": self.model_version})
        return StorePoint(id=point_id(doc["event_id"]), dense=batch.dense[j],
                          sparse=SparseTerms(list(indices), list(values)) if len(indices) else None,
                          payload=payload)

    def _alert(self, j: int, doc: dict[str, Any], ev: SecurityEvent, sc: EventScore, batch: Any,
               docs: list[dict[str, Any]]) -> dict[str, Any]:
        rows, neighbours = [], []
        for nb in sc.neighbours[: self.neighbours_in_alert]:
            if nb.in_batch:
                rows.append(batch.dense[nb.row])
                other = docs[nb.row]
                neighbours.append({"id": other["event_id"], "similarity": round(nb.similarity, 4),
                                   "summary": summary_line(other)})
            else:
                rows.append(self.detector.baseline.vector(nb.row))
                neighbours.append({"id": nb.id, "similarity": round(nb.similarity, 4),
                                   "summary": self.detector.baseline.summary(nb.row)})
        shares = component_shares(batch.dense[j], np.array(rows, dtype=np.float32).reshape(len(rows), -1),
                                  batch.parts) if rows else {name: 0.0 for name in batch.parts}
        indices, values = batch.sparse[j]
        describe = self.encoder.sparse.describe if self.encoder.sparse is not None else str
        terms = [{"term": describe(idx), "weight": round(w, 3)}
                 for idx, w in top_terms(indices, values, self.detector.doc_freq, self.detector.n_docs)]
        if sc.rare is not None:  # the rare value is the reason: it leads, weighted by its surprise
            terms = [{"term": sc.rare.term(), "weight": round(sc.rare.surprise, 3)}] + \
                [t for t in terms if t["term"] != sc.rare.term()][:4]
        return event_alert(event=doc, entity=ev.entity(), score=sc.score, confidence=sc.confidence,
                           warmup=sc.warmup, components=shares, neighbours=neighbours, terms=terms,
                           template=batch.templates[j], template_id=batch.template_ids[j],
                           model_version=self.model_version, rare=sc.rare, warmup_reasons=sc.warmup_reasons,
                           confidence_basis=sc.basis.to_alert() if sc.basis is not None else None,
                           template_frequency=template_frequency(sc.basis))
