"""`secstream replay`: offline, prequential scoring of a file through the same
`Pipeline.process` the worker runs (the "replay output" contract in docs/architecture.md).

Writes ``events.jsonl`` (one line per input record, in input order),
``sessions.jsonl`` (one line per session when it closes, or at end of input) and
``alerts.jsonl`` (the alerts exactly as they would be published).

Sessions go through :class:`streams.stages.session_stage.SessionStage`, the stage the
worker runs: :class:`detection.sessions.Sessionizer` (key: ``session_id``, else
user+host, src_ip, host; inactivity gap on event time), scored at close by
:class:`detection.session_score.SessionScorer` (prequential: against past closed
sessions only); ``alert`` is ``score >=`` the session kind's threshold (configured as the
pipeline's, :mod:`detection.threshold`) outside the session warm-up, and each alerting
session adds a ``session_anomaly`` alert (a long open session may alert early, with the
same alert id).

Entities go through :class:`streams.stages.entity_stage.EntityStage` (one tracker; the
worker has one per partition of its entity steps): an event's ``score`` in
``events.jsonl`` is its joined score (its own score, raised by an entity score
against the entity's own committed embedding), ``alert`` is true when either
alerted; ``entity_drift`` alerts and entity-raised ``event_anomaly`` alerts join
``alerts.jsonl``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detection.dedup import AlertDeduper
from detection.session_score import SessionScorer
from detection.sessions import Sessionizer
from streams.adapters import Record, read_records
from streams.cli.terminal import Progress
from streams.stages.entity_stage import EntityOutcome, EntityStage, entity_steps
from streams.stages.pipeline import Accepted, Pipeline, Rejected
from streams.stages.factory import (
    build_deduper,
    build_entity_stage,
    build_pipeline,
    build_session_stage,
    build_store,
    settle_heap,
)
from streams.stages.session_stage import SessionOutcome, SessionStage
from streams.config.settings import Settings


@dataclass
class ReplaySummary:
    records: int = 0
    events: int = 0
    errors: int = 0
    alerts: int = 0
    sessions: int = 0
    session_alerts: int = 0
    entity_alerts: int = 0  # event_anomaly alerts raised by an entity score
    drift_alerts: int = 0
    entity_versions: int = 0
    published: int = 0  # alerts written as new (after dedup; = alerts without dedup)
    updates: int = 0  # updates of written alerts (dedup: same alert_id, higher count)
    folded: int = 0  # raised alerts folded into an open alert (dedup, rate limit, repeated)
    seconds: float = 0.0
    by_error: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def _batches(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


class _AlertOut:
    """``alerts.jsonl`` as the worker would publish it: a batch's raised alerts go through dedup (when given)."""

    def __init__(self, out: Any, dedup: AlertDeduper | None, summary: ReplaySummary) -> None:
        self.out, self.dedup, self.summary = out, dedup, summary
        self.pending: list[dict[str, Any]] = []

    def add(self, alerts: Iterable[dict[str, Any]]) -> None:
        self.pending.extend(alerts)

    def end_batch(self) -> None:
        raised, self.pending = self.pending, []
        if self.dedup is None:
            published = raised
        else:
            outcome = self.dedup.process(raised)
            published = outcome.published
            self.summary.folded += outcome.folded + outcome.rate_limited + outcome.repeated
        self.out.writelines(_line(a) for a in published)
        updates = sum(1 for a in published if a.get("update"))
        self.summary.published += len(published) - updates
        self.summary.updates += updates


def _write_sessions(outcome: SessionOutcome, s_out: Any, al_out: _AlertOut, summary: ReplaySummary) -> None:
    """Sessions that closed (each scored before it was learned) and the session alerts, in closing order."""
    for c in outcome.closed:
        s_out.write(_line({"session_id": c.session.session_id, "score": round(c.result.score, 3), "alert": c.alert,
                           "events": c.session.events}))
    summary.sessions += len(outcome.closed)
    al_out.add(outcome.alerts)
    summary.alerts += len(outcome.alerts)
    summary.session_alerts += len(outcome.alerts)


def _write_entities(outcome: EntityOutcome, al_out: _AlertOut, summary: ReplaySummary) -> None:
    al_out.add(outcome.alerts)
    summary.alerts += len(outcome.alerts)
    summary.entity_alerts += outcome.event_alerts
    summary.drift_alerts += outcome.drift_alerts
    summary.entity_versions += outcome.commits


def replay_records(records: Iterator[Record], pipeline: Pipeline, out_dir: Path, *, batch_size: int = 2000,
                   progress: Progress | None = None, sessions: SessionStage | None = None,
                   sessionizer: Sessionizer | None = None, session_scorer: SessionScorer | None = None,
                   entities: EntityStage | None = None, dedup: AlertDeduper | None = None) -> ReplaySummary:
    """Score ``records`` in order and write the three contract files under ``out_dir``.

    ``sessions`` is the session stage (as the worker builds it); without one, a
    stage is made of ``sessionizer``/``session_scorer`` (fresh defaults if absent)
    and no store. ``entities`` is the entity stage (none: no entity scores). ``dedup``
    groups and rate limits the alerts as the worker does before publishing them (none:
    every raised alert is written).
    """
    import time

    out_dir.mkdir(parents=True, exist_ok=True)
    summary = ReplaySummary()
    if sessions is None:
        sz = sessionizer if sessionizer is not None else Sessionizer()  # an empty one is falsy (__len__)
        sessions = SessionStage(session_scorer or SessionScorer(pipeline.encoder.dim), lambda: sz,
                                threshold=pipeline.alert_threshold.fresh(), model_version=pipeline.model_version)
    started = time.perf_counter()
    with open(out_dir / "events.jsonl", "w", encoding="utf-8") as ev_out, \
            open(out_dir / "alerts.jsonl", "w", encoding="utf-8") as al_file, \
            open(out_dir / "sessions.jsonl", "w", encoding="utf-8") as s_out:
        al_out = _AlertOut(al_file, dedup, summary)
        for batch in _batches(records, batch_size):
            valid = [r for r in batch if r.value is not None]
            outcome = pipeline.process([r.value for r in valid if r.value is not None])
            by_pos = {id(valid[res.index]): res for res in outcome.results}
            acc = [r for r in outcome.results if isinstance(r, Accepted) and r.event is not None and r.row >= 0]
            s_outcome = None
            if acc and outcome.vectors is not None:
                s_outcome = sessions.observe([r.event for r in acc if r.event is not None],
                                             outcome.vectors[[r.row for r in acc]],
                                             [r.template_id or "" for r in acc], [r.template or "" for r in acc],
                                             [r.score for r in acc])
            session_of = {id(r): sid for r, sid in zip(acc, s_outcome.session_ids)} if s_outcome is not None else {}
            e_outcome = entities.observe(*entity_steps(outcome, entities.types)) if entities is not None else None
            joined = e_outcome.scores if e_outcome is not None else {}
            raised = {a["evidence"]["event_ids"][0] for a in e_outcome.alerts
                      if a["kind"] == "event_anomaly"} if e_outcome is not None else set()
            for rec in batch:
                summary.records += 1
                res = by_pos.get(id(rec))
                if res is None:
                    summary.errors += 1
                    summary.by_error["adapter"] = summary.by_error.get("adapter", 0) + 1
                    ev_out.write(_line({"line": rec.line, "error": rec.error or "unreadable record"}))
                elif isinstance(res, Rejected):
                    summary.errors += 1
                    summary.by_error[res.reason] = summary.by_error.get(res.reason, 0) + 1
                    ev_out.write(_line({"line": rec.line, "error": f"{res.reason}: {res.detail}"}))
                else:
                    assert isinstance(res, Accepted)
                    summary.events += 1
                    score = joined[res.event_id][0] if res.event_id in joined else res.score
                    ev_out.write(_line({"event_id": res.event_id, "session_id": session_of.get(id(res)),
                                        "score": round(score, 3), "alert": res.alert or res.event_id in raised}))
            al_out.add(outcome.alerts)
            summary.alerts += len(outcome.alerts)
            if s_outcome is not None:
                _write_sessions(s_outcome, s_out, al_out, summary)
            if e_outcome is not None:
                _write_entities(e_outcome, al_out, summary)
            al_out.end_batch()
            if progress is not None:
                progress.advance(len(batch), alerts=summary.alerts)
        _write_sessions(sessions.flush(), s_out, al_out, summary)
        if entities is not None:
            _write_entities(entities.flush(), al_out, summary)
        al_out.end_batch()
    summary.seconds = time.perf_counter() - started
    if progress is not None:
        progress.close(alerts=summary.alerts)
    return summary


def run_replay(path: Path, fmt: str, out_dir: Path, settings: Settings, *, keep_store: Path | None = None,
               year: int | None = None) -> ReplaySummary:
    """Replay a file with a fresh pipeline; the store lives in a temporary directory unless kept."""
    with tempfile.TemporaryDirectory(prefix="secstream-replay-") as tmp:
        root = keep_store or Path(tmp)
        store = build_store(settings.model_copy(update={"qdrant_url": ""}), data_dir=root)
        try:
            pipeline = build_pipeline(settings, store)
            stage = build_session_stage(settings, pipeline, store)
            entities = build_entity_stage(settings, pipeline, store)
            settle_heap()
            progress = Progress(f"replay {path.name}")
            return replay_records(read_records(path, fmt, year=year), pipeline, out_dir,
                                  batch_size=settings.batch_size, progress=progress, sessions=stage,
                                  entities=entities, dedup=build_deduper(settings))
        finally:
            store.close()
