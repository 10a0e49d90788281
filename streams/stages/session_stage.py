"""The session stage: scored events → sessions → session scores, alerts and store points.

One class serves `secstream replay` and the live worker (as `Pipeline` does for
events), so both close, score and explain sessions identically:

- :class:`detection.sessions.Sessionizer` groups the batch into sessions, one
  sessionizer per partition of the repartitioned session stream (replay: one);
- each session that closes is scored, then learned, by the shared
  :class:`detection.session_score.SessionScorer` (prequential), upserted into the
  ``sessions`` collection when a store is given, and alerts when its score reaches
  the session kind's threshold (:class:`detection.threshold.AlertThreshold`, learned from
  the scores of earlier batches' closed sessions in adaptive mode) outside the scorer's warm-up;
- a long open session is scored (not learned) every ``rolling_every`` events, so an
  attack inside a session that stays open for hours warns early; it alerts at most
  once while open, with the same alert id its close alert will have (the close
  alert supersedes it on the keyed alerts topic).

:class:`SessionOutcome` also says what changed in the open state (``touched``,
``ended``, ``segments``, ``forgotten``) so the worker can mirror it into its
changelog-backed Faust table without scanning the state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection.feedback import teach_normal
from detection.session_score import SessionScore, SessionScorer, session_alert
from detection.sessions import Session, Sessionizer, _segment_of
from detection.threshold import AlertThreshold
from streams.store import VectorStore

log = logging.getLogger(__name__)

Key = tuple[str, tuple[str, str]]


@dataclass
class ClosedSession:
    """A session that closed in this batch, its score and whether it alerted."""

    session: Session
    result: SessionScore
    alert: bool


@dataclass
class SessionOutcome:
    """What one batch did to the sessions of one partition."""

    session_ids: list[str | None] = field(default_factory=list)
    closed: list[ClosedSession] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: evidence vector of each alert (the session vector), for suppression by analyst feedback
    alert_vectors: list[np.ndarray] = field(default_factory=list)
    rolling: int = 0  # open sessions scored early in this batch
    repeated: int = 0  # re-delivered steps skipped (detection/sessions.py: sources)
    #: open sessions this batch changed (to persist), keys left without an open session,
    #: (key, reopen counter, applied source offsets) of the keys that closed, keys whose counter was forgotten
    touched: list[Session] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    segments: list[tuple[str, int, dict[int, int]]] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)


class SessionStage:
    """Sessionizers (per partition) + the shared session scorer + the ``sessions`` collection."""

    def __init__(self, scorer: SessionScorer, make_sessionizer: Callable[[], Sessionizer], *,
                 store: VectorStore | None = None, threshold: float | AlertThreshold = 90.0, model_version: str = "",
                 rolling_every: int = 0) -> None:
        if rolling_every < 0:
            raise ValueError(f"rolling_every must be >= 0 (0 = off), got {rolling_every}")
        self.scorer = scorer
        self.make_sessionizer = make_sessionizer
        self.store = store
        self.alert_threshold = AlertThreshold.of(threshold)
        self.model_version = model_version
        self.rolling_every = rolling_every
        self.sessionizers: dict[int, Sessionizer] = {}
        self._spec_ready = False
        self._keyer = make_sessionizer()

    @property
    def threshold(self) -> float:
        """The session score at or above which a session alerts, now."""
        return self.alert_threshold.value

    # ------------------------------------------------------------------ partitions
    def sessionizer(self, partition: int = 0) -> Sessionizer:
        """The sessionizer of ``partition`` (created empty on first use)."""
        sz = self.sessionizers.get(partition)
        if sz is None:
            sz = self.sessionizers[partition] = self.make_sessionizer()
        return sz

    def drop(self, partition: int) -> int:
        """Forget a partition's open sessions (revoked: its new owner recovers them). Returns how many."""
        sz = self.sessionizers.pop(partition, None)
        return len(sz) if sz is not None else 0

    def open_sessions(self) -> int:
        return sum(len(sz) for sz in self.sessionizers.values())

    def key_of(self, event: Mapping[str, Any]) -> Key | None:
        """Session key and entity of an event (the keying the worker repartitions by)."""
        return self._keyer.key_of(event)

    # ------------------------------------------------------------------ batches
    def observe(self, events: Sequence[Mapping[str, Any]], vectors: np.ndarray, template_ids: Sequence[str],
                templates: Sequence[str], scores: Sequence[float], *, partition: int = 0,
                keys: Sequence[Key | None] | None = None,
                sources: Sequence[tuple[int, int] | None] | None = None) -> SessionOutcome:
        """Add a batch of scored events (stream order) to ``partition``'s sessions; ``sources``: where each
        was read from, to skip re-deliveries (:meth:`detection.sessions.Sessionizer.observe`)."""
        sz = self.sessionizer(partition)
        if keys is None:
            keys = [sz.key_of(ev) for ev in events]
        obs = sz.observe(events, vectors, template_ids, templates, scores, keys=keys, sources=sources)
        out = SessionOutcome(session_ids=obs.session_ids, forgotten=obs.forgotten, repeated=obs.repeated)
        self._close(obs.closed, out)
        seen: set[str] = set()
        for found in keys:
            if found is None or found[0] in seen:
                continue
            key = found[0]
            seen.add(key)
            sess = sz.get(key)
            if sess is not None:
                out.touched.append(sess)
                self._rolling(sess, out)
        out.ended = [c.session.key for c in out.closed if sz.get(c.session.key) is None]
        out.segments = _segments(out.closed)
        return out

    def advance(self, partition: int, silence_s: float) -> SessionOutcome:
        """Close ``partition``'s sessions as if its watermark had moved ``silence_s`` on (a silent stream).

        The event-time watermark itself does not move, so a late event still finds
        its place; this only lets sessions close when nothing more arrives.
        """
        sz = self.sessionizers.get(partition)
        out = SessionOutcome()
        if sz is None or sz.watermark == float("-inf"):
            return out
        self._close(sz.evict(sz.watermark + silence_s), out)
        out.ended = [c.session.key for c in out.closed if sz.get(c.session.key) is None]
        out.segments = _segments(out.closed)
        return out

    def flush(self) -> SessionOutcome:
        """Close every open session of every partition (end of input), oldest end first per partition."""
        out = SessionOutcome()
        for partition in sorted(self.sessionizers):
            closed = self.sessionizers[partition].flush()
            self._close(closed, out)
            out.ended.extend(s.key for s in closed)
        return out

    # ------------------------------------------------------------------ internals
    def _close(self, closed: list[Session], out: SessionOutcome) -> None:
        points, learned = [], []
        threshold = self.threshold  # from earlier batches' sessions only (observed below)
        for sess in closed:
            res = self.scorer.process(sess)
            alert = (not res.warmup) and res.score >= threshold
            out.closed.append(ClosedSession(sess, res, alert))
            if not res.warmup:
                learned.append(res.score)
            if alert:
                out.alerts.append({**session_alert(sess, res, model_version=self.model_version,
                                                   texts=self.scorer.texts), "threshold": round(threshold, 2)})
                out.alert_vectors.append(self._vector(sess, res))
            if self.store is not None:
                points.append(self._point(sess, res, alert))
        if points and self.store is not None:
            self.store.upsert(self._collection(), points)
        self.alert_threshold.observe(learned)

    def _rolling(self, sess: Session, out: SessionOutcome) -> None:
        if not self.rolling_every or sess.events - sess.scored_at < self.rolling_every:
            return
        sess.scored_at = sess.events
        res = self.scorer.score(sess)
        out.rolling += 1
        threshold = self.threshold  # rolling scores are decided on, not learned (open sessions are partial)
        if not sess.alerted and not res.warmup and res.score >= threshold:
            sess.alerted = True
            alert = session_alert(sess, res, model_version=self.model_version, texts=self.scorer.texts)
            alert["threshold"] = round(threshold, 2)
            alert["title"] = f"Unusual open session {sess.session_id} ({sess.events} events so far)"
            out.alerts.append(alert)
            out.alert_vectors.append(self._vector(sess, res))

    def _vector(self, sess: Session, res: SessionScore) -> np.ndarray:
        return res.vector if res.vector is not None else self.scorer.vector(sess)

    def learn_normal(self, vector: np.ndarray, ident: str, summary: str) -> None:
        """Teach the past-session baseline that ``vector`` (a false-positive verdict's session vector) is normal."""
        teach_normal(self.scorer.baseline, vector, ident, summary)

    def _collection(self) -> str:
        from streams.store.session_points import SESSIONS, session_spec

        if not self._spec_ready and self.store is not None:
            self.store.ensure(session_spec(self.scorer.dim + self.scorer.bag_dim, self.scorer.dim))
            self._spec_ready = True
        return SESSIONS

    def _point(self, sess: Session, res: SessionScore, alert: bool) -> Any:
        from streams.store.session_points import session_point

        members = sess.member_matrix()
        if members.shape[1] != self.scorer.dim:
            members = np.zeros((0, self.scorer.dim), dtype=np.float32)
        vector = self._vector(sess, res)
        return session_point(sess, vector=vector, members=members, score=res.score,
                             alert=alert, model_version=self.model_version)



def _segments(closed: Sequence[ClosedSession]) -> list[tuple[str, int, dict[int, int]]]:
    """(key, reopen counter, applied source offsets) of each closed session: what its key's memory keeps."""
    return [(c.session.key, _segment_of(c.session), dict(c.session.sources)) for c in closed]
