"""The entity stage: scored events → entity steps → entity embeddings, entity scores, drift alerts, history.

One class serves `secstream replay` and the live worker (as `Pipeline` does for
events and `SessionStage` for sessions):

- each scored event becomes one *step* per entity it names (:func:`entity_steps`,
  types ``SECSTREAM_ENTITY_TYPES``); the worker repartitions the steps by entity
  (``<app>-entity-steps``), so every step of an entity reaches one partition and one
  :class:`detection.entity_tracker.EntityTracker` (replay: one tracker, partition 0);
- the tracker scores each step against the entity's last committed embedding (no
  leakage: never its own window or a later one), folds it into its tumbling window,
  and commits a version per entity whenever a window closes on event time;
- **the entity score joins the event score** (:func:`detection.entity_alerts.joined_score`,
  Fisher's method over the two calibrated tails, never below the event's own score)
  when the entity score itself reaches ``join_at`` (95: the two scores are far from
  independent, an event rare for everyone is also far from its user, and Fisher
  without that gate turned 24 ordinary events of the bundled sample into alerts),
  for the entity types in ``join_types`` (default ``user``: one centroid says little
  about a server host with many behaviours), against the entity's *own* embedding (one
  still on its peer prior adds nothing the population score does not already say).
  An event whose own score stayed below the threshold but whose joined score reached
  it gets an ``event_anomaly`` alert explaining which entity it does not resemble
  (:func:`detection.entity_alerts.entity_event_alert`), once the entity has
  ``min_versions`` versions and its type's score calibrator ``warmup`` scored steps;
- events scored in the event detector's warm-up make no steps (nothing is sent for them): the encoders
  are still learning then (the first batch is encoded before the categorical
  vocabulary, numerical statistics and templates exist), so those vectors are not
  what the same events look like later, and entities built on them keep moving for
  a dozen windows as they converge away from that start. On the OpenSSH drift
  scenario through the replay path that inflated every entity's usual move, and the
  abrupt change scored 77 instead of alerting;
- drifts alert as ``entity_drift``; every committed version is upserted to the
  ``entities`` collection (:mod:`streams.store.entity_points`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection.alerts import event_summary
from detection.entity_alerts import entity_event_alert, joined_score
from detection.entity_drift import entity_drift_alert
from detection.entity_groups import EntityKey, entity_keys
from detection.entity_records import Record, load_records, take_records
from detection.entity_tracker import EntityScores, EntityTracker, WindowReport
from detection.threshold import AlertThreshold
from streams.stages.pipeline import Accepted, BatchOutcome
from streams.store import StorePoint, VectorStore

log = logging.getLogger(__name__)

__all__ = ["EntityOutcome", "EntityStage", "EntityStep", "entity_step_rows", "entity_steps"]


@dataclass
class EntityStep:
    """One (event, entity) pair: what the entity stage needs of a scored event."""

    entity: EntityKey
    time: str
    event_id: str
    score: float  # the event's own (population) score
    alerted: bool  # the event alerted on its own score
    template_id: str = ""
    template: str = ""
    summary: dict[str, Any] = field(default_factory=dict)  # detection.alerts.event_summary of the event
    session_id: str | None = None
    severity: str | None = None  # the source's severity of the event

    @property
    def key(self) -> bytes:
        """The repartition key: ``type:id``."""
        return f"{self.entity[0]}:{self.entity[1]}".encode()


def entity_steps(outcome: BatchOutcome, types: Sequence[str]) -> tuple[list[EntityStep], np.ndarray]:
    """The steps of a processed batch (input order, one per entity of each accepted event scored after the
    detector's warm-up) and their vectors."""
    steps, rows = entity_step_rows(outcome, types)
    if outcome.vectors is None:
        return steps, np.zeros((0, 0), dtype=np.float32)
    return steps, np.asarray(outcome.vectors[np.asarray(rows, dtype=np.int64)], dtype=np.float32)


def entity_step_rows(outcome: BatchOutcome, types: Sequence[str]) -> tuple[list[EntityStep], list[int]]:
    """:func:`entity_steps` with each step's row of ``outcome.vectors`` instead of a copy of it (an event's steps
    share its row)."""
    steps: list[EntityStep] = []
    rows: list[int] = []
    if outcome.vectors is None:
        return steps, rows
    for r in outcome.results:
        if not isinstance(r, Accepted) or r.event is None or r.row < 0 or r.warmup or r.repeated:
            continue  # warm-up events never become steps (module docstring), nor an id learned before
        keys = entity_keys(r.event, types)
        if not keys:
            continue
        summary = event_summary(r.event)
        for key in keys:
            steps.append(EntityStep(key, str(r.event["time"]), r.event_id, float(r.score), bool(r.alert),
                                    r.template_id or "", r.template or "", summary, r.session_id,
                                    r.event.get("severity")))
            rows.append(r.row)
    return steps, rows


@dataclass
class EntityOutcome:
    """What one batch of steps did."""

    #: event id → (joined score, entity score that gave it, that entity; None: no own embedding joined)
    scores: dict[str, tuple[float, float, EntityKey | None]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: evidence vector of each alert (the event's hybrid row; None for a drift alert)
    alert_vectors: list[np.ndarray | None] = field(default_factory=list)
    drift_alerts: int = 0
    event_alerts: int = 0
    commits: int = 0  # entity versions committed
    windows: int = 0  # windows closed
    late: int = 0  # steps too late for their window (left out of the update)


class EntityStage:
    """Entity trackers (one per partition) + alerts + the ``entities`` collection; see the module docstring."""

    def __init__(self, make_tracker: Callable[[], EntityTracker], *, store: VectorStore | None = None,
                 threshold: float | AlertThreshold = 90.0, model_version: str = "", min_versions: int = 3,
                 warmup: int = 200, join_types: Sequence[str] = ("user",), join_at: float = 95.0,
                 decades: float = 2.0) -> None:
        if min_versions < 1 or warmup < 0 or decades <= 0:
            raise ValueError(f"need min_versions >= 1, warmup >= 0, decades > 0; got {min_versions}, {warmup}, "
                             f"{decades}")
        self.make_tracker = make_tracker
        self.store = store
        #: the entity kind's threshold on joined scores (fixed or adaptive; a number is a fixed one)
        self.alert_threshold = AlertThreshold.of(threshold)
        self.model_version = model_version
        self.min_versions, self.warmup, self.decades = int(min_versions), int(warmup), float(decades)
        self.join_at = float(join_at)
        self.trackers: dict[int, EntityTracker] = {}
        self.types = make_tracker().types
        self.join_types = frozenset(join_types)
        if not self.join_types <= set(self.types):
            raise ValueError(f"join types {sorted(self.join_types)} must be tracked types ({', '.join(self.types)})")
        self._spec_ready = False
        self._points: list[StorePoint] = []
        self._outcome: EntityOutcome | None = None  # the batch that window commits report to (on_commit)

    @property
    def threshold(self) -> float:
        """The joined score at or above which an event alerts through an entity score, now."""
        return self.alert_threshold.value

    # ------------------------------------------------------------------ partitions and state
    def tracker(self, partition: int = 0) -> EntityTracker:
        """The tracker of ``partition`` (created empty on first use)."""
        tr = self.trackers.get(partition)
        if tr is None:
            tr = self.trackers[partition] = self.make_tracker()
            tr.on_commit = lambda report, p=partition: self._committed(p, report)
        return tr

    def drop(self, partition: int) -> int:
        """Forget a partition (revoked: its new owner recovers it). Returns the entities it held."""
        tr = self.trackers.pop(partition, None)
        return len(tr.table) if tr is not None else 0

    def restore(self, partition: int, values: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Rebuild ``partition``'s tracker from its changelog records (a fresh tracker)."""
        self.drop(partition)
        return load_records(self.tracker(partition), values)

    def records(self, partition: int) -> list[Record]:
        """The records ``partition`` changed since the last call (meta last); see :func:`take_records`."""
        return take_records(self.tracker(partition))

    def closed_until(self, partition: int) -> float | None:
        """Event time up to which ``partition``'s windows are closed (None: no window closed yet, or not held)."""
        tr = self.trackers.get(partition)
        if tr is None:
            return None
        upto = tr.windows.closed_upto()
        return upto if math.isfinite(upto) else None

    def entities(self) -> int:
        return sum(len(tr.table) for tr in self.trackers.values())

    # ------------------------------------------------------------------ batches
    def observe(self, steps: Sequence[EntityStep], vectors: np.ndarray, *, partition: int = 0) -> EntityOutcome:
        """Score a batch of steps (stream order) against their entities, then fold them in."""
        out = EntityOutcome()
        if not steps:
            return out
        tr = self.tracker(partition)
        events = [{"time": s.time, "event_id": s.event_id, s.entity[0]: s.entity[1]} for s in steps]
        self._outcome = out
        try:
            res = tr.process(events, vectors)
        finally:
            self._outcome = None
        out.late = int(res.late.sum())
        best: dict[str, int] = {}  # event id → the step that gave its joined score
        for i, step in enumerate(steps):
            joined, top, who = out.scores.get(step.event_id, (step.score, 0.0, None))
            if (step.entity[0] in self.join_types and res.basis[i] in ("own", "previous")
                    and res.score[i] >= self.join_at):
                mine = joined_score(step.score, float(res.score[i]), self.decades)
                if who is None or mine > joined:
                    joined, top, who = mine, float(res.score[i]), step.entity
                    best[step.event_id] = i
            out.scores[step.event_id] = (joined, top, who)
        threshold = self.threshold  # from earlier batches' joined scores only (observed below)
        for event_id, i in best.items():
            joined = out.scores[event_id][0]
            if self._may_alert(tr, steps[i], int(res.version[i]), joined, threshold):
                out.alerts.append({**self._event_alert(tr, steps[i], vectors[i], joined, res, i),
                                   "threshold": round(threshold, 2)})
                out.alert_vectors.append(vectors[i])
                out.event_alerts += 1
        self.alert_threshold.observe([joined for joined, _, _ in out.scores.values()])
        self._flush_points()
        return out

    def flush(self) -> EntityOutcome:
        """Close every open window of every partition (end of input)."""
        out = EntityOutcome()
        self._outcome = out
        try:
            for partition in sorted(self.trackers):
                self.trackers[partition].flush()
        finally:
            self._outcome = None
        self._flush_points()
        return out

    # ------------------------------------------------------------------ internals
    def _may_alert(self, tr: EntityTracker, step: EntityStep, version: int, score: float, threshold: float) -> bool:
        return (not step.alerted and score >= threshold
                and version >= self.min_versions and tr.scored(step.entity[0], own=True) >= self.warmup)

    def _event_alert(self, tr: EntityTracker, step: EntityStep, vector: np.ndarray, score: float,
                     res: EntityScores, i: int) -> dict[str, Any]:
        version = int(res.version[i])
        return entity_event_alert(event=step.summary, event_id=step.event_id, time=step.time, entity=step.entity,
                                  score=score, entity_score=float(res.score[i]), event_score=step.score,
                                  distance=float(res.raw[i]), version=version, basis=res.basis[i], vector=vector,
                                  reference=res.reference[i], parts=tr.parts,
                                  template=step.template or None, template_id=step.template_id or None,
                                  model_version=self.model_version, confidence=min(1.0, version / 5.0),
                                  session_id=step.session_id, severity=step.severity)

    def _committed(self, partition: int, report: WindowReport) -> None:
        out = self._outcome
        if out is not None:
            out.windows += 1
            out.commits += len(report.commit.keys)
            for finding in report.findings:  # a drift alerts at its own threshold (SECSTREAM_ENTITY_DRIFT_ALERT_AT)
                out.alerts.append({**entity_drift_alert(finding, model_version=self.model_version),
                                   "threshold": round(self.trackers[partition].drift.alert_at, 2)})
                out.alert_vectors.append(None)
                out.drift_alerts += 1
        if self.store is not None:
            from streams.store.entity_points import entity_points

            tr = self.trackers[partition]
            self._points += entity_points(tr, report, alert_at=tr.drift.alert_at, model_version=self.model_version,
                                          partition=partition)

    def _flush_points(self) -> None:
        if self.store is None or not self._points:
            return
        from streams.store.entity_points import ENTITIES, entity_spec

        if not self._spec_ready:
            self.store.ensure(entity_spec(self._points[0].dense.shape[0]))
            self._spec_ready = True
        points, self._points = self._points, []
        self.store.upsert(ENTITIES, points)
