"""Sessionizer: events → sessions on event time. Pure (numpy + stdlib).

Key of an event: the first of ``keys`` it has — ``session_id`` (producer-given),
``user+host``, ``src_ip``, ``host``, ``user`` or ``regex`` (first match of
``pattern`` in the message, e.g. HDFS ``blk_-?\\d+``). An event with none of them
is not sessionized (its session id is ``None``).

A session closes when its key is inactive for ``gap_s`` seconds of *event* time
(so ``replay`` and the live stream agree), when it reaches ``max_events`` or
``max_duration_s``, and at :meth:`Sessionizer.flush` (end of input). Gap
eviction runs once per :meth:`observe` call against the batch's watermark (the
latest event time seen), so memory is bounded by the sessions active within one
gap, at O(open sessions) per batch, never per event.

Each open session accumulates its count, start/end, entity, the recency-weighted
mean of its event vectors (``S ← decay·S + v`` per event, ``decay = 0.5 ** (1 /
half_life)``: the latest event weighs most), a bag of template ids, the bounded
template sequence (for transitions), the first event ids and the max event score.

Session ids: the first segment of a key is the key itself (``session_id`` as
given, else ``"src_ip:10.0.0.1"`` …); a key that reopens after closing gets
``"<key>#<n>"`` (``n`` remembered for the last ``max_closed_keys`` keys).

Re-delivered events (at-least-once streams): an event may carry its *source*, the
``(partition, offset)`` it was read from. Events of one key from one source
partition arrive in offset order, so an event at or below the highest source offset
already applied to its key is a re-delivery and is skipped (counted in
:attr:`Observation.repeated`). The applied offsets travel with the key's state: the
open session's ``sources`` (inherited by the key's next session) and, for a closed
key, the memory of closed keys, so a re-delivery neither counts an event twice nor
reopens a session that closed. Event ids cannot serve here: in logs such as HDFS
identical lines are distinct events with one id. Without sources (replay of a
file, read once) nothing is skipped.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection.plain import b64, unb64
# event_time, iso_time (detection/times.py) and KEY_KINDS (detection/vocabulary.py) live in numpy-free
# modules: the CLI and the settings read them
from detection.times import event_time
from detection.vocabulary import KEY_KINDS

_ENTITY_TYPE = {"session_id": "session", "user+host": "user", "src_ip": "src_ip", "host": "host", "user": "user",
                "regex": "session"}


@dataclass
class Session:
    """An open or closed session (plain data; ``vec`` is the decayed sum, unnormalized)."""

    session_id: str
    key: str
    entity: tuple[str, str]
    start: float
    end: float
    events: int = 0
    vec: np.ndarray | None = None
    bag: Counter[str] = field(default_factory=Counter)
    sequence: list[str] = field(default_factory=list)
    templates: dict[str, str] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)
    max_event_score: float = 0.0
    reason: str = ""  # why it closed: gap, max_events, max_duration, flush
    #: first event vector of each distinct template (bounded): the session as a multi-vector
    members: dict[str, np.ndarray] = field(default_factory=dict)
    #: event count at the last rolling (early-warning) score, and whether that alerted
    scored_at: int = 0
    alerted: bool = False
    #: source partition → highest source offset applied to this key (this session and its key's earlier ones)
    sources: dict[int, int] = field(default_factory=dict)

    @property
    def vector(self) -> np.ndarray:
        """Unit recency-weighted mean of the event vectors (zeros when none)."""
        if self.vec is None:
            return np.zeros(0, dtype=np.float32)
        n = float(np.linalg.norm(self.vec))
        return (self.vec / n).astype(np.float32) if n > 1e-12 else self.vec.astype(np.float32)

    def member_matrix(self) -> np.ndarray:
        """The session's distinct-template event vectors, unit rows (float32 ``[m, dim]``, ``m`` ≥ 1 if any event)."""
        if not self.members:
            return np.zeros((0, 0), dtype=np.float32)
        m = np.stack([np.asarray(v, dtype=np.float32) for v in self.members.values()])
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        return (m / np.where(norms > 1e-12, norms, 1.0)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Compact plain data (JSON-able): vectors as base64 (float64 sum, float16 members)."""
        return {"session_id": self.session_id, "key": self.key, "entity": list(self.entity), "start": self.start,
                "end": self.end, "events": self.events, "vec": None if self.vec is None else b64(self.vec, "<f8"),
                "bag": dict(self.bag), "sequence": list(self.sequence), "templates": dict(self.templates),
                "event_ids": list(self.event_ids), "max_event_score": self.max_event_score, "reason": self.reason,
                "members": {t: b64(v, "<f2") for t, v in self.members.items()},
                "scored_at": self.scored_at, "alerted": self.alerted, "src": sources_out(self.sources)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Session:
        """Inverse of :meth:`to_dict`."""
        vec = None if d["vec"] is None else unb64(d["vec"], "<f8")
        return cls(session_id=str(d["session_id"]), key=str(d["key"]), entity=(str(d["entity"][0]), str(d["entity"][1])),
                   start=float(d["start"]), end=float(d["end"]), events=int(d["events"]), vec=vec,
                   bag=Counter({str(k): int(v) for k, v in d["bag"].items()}), sequence=[str(x) for x in d["sequence"]],
                   templates={str(k): str(v) for k, v in d["templates"].items()},
                   event_ids=[str(x) for x in d["event_ids"]], max_event_score=float(d["max_event_score"]),
                   reason=str(d["reason"]),
                   members={str(t): unb64(v, "<f2").astype(np.float32) for t, v in d.get("members", {}).items()},
                   scored_at=int(d.get("scored_at", 0)), alerted=bool(d.get("alerted", False)),
                   sources=sources_in(d.get("src")))


@dataclass
class Observation:
    """Result of :meth:`Sessionizer.observe`: per-event session ids and the sessions that closed."""

    session_ids: list[str | None]
    closed: list[Session]
    #: keys whose reopen counter was forgotten (bounded memory of closed keys), oldest first
    forgotten: list[str] = field(default_factory=list)
    #: events skipped as re-deliveries (a source offset already applied to their key); their id is ``None``
    repeated: int = 0


class Sessionizer:
    """Groups events into sessions by key and inactivity gap on event time; see the module docstring."""

    def __init__(self, *, keys: Sequence[str] = ("session_id", "user+host", "src_ip", "host"),
                 pattern: str | None = None, gap_s: float = 1800.0, max_events: int = 10_000,
                 max_duration_s: float = 86_400.0, half_life: float = 20.0, max_sequence: int = 512,
                 max_event_ids: int = 20, max_closed_keys: int = 100_000, max_members: int = 16) -> None:
        bad = [k for k in keys if k not in KEY_KINDS]
        if bad or not keys:
            raise ValueError(f"unknown session key kinds {bad or keys}; valid: {', '.join(KEY_KINDS)}")
        if "regex" in keys and not pattern:
            raise ValueError("key kind 'regex' needs a pattern, e.g. r'blk_-?\\d+'")
        if gap_s <= 0 or max_events < 1 or max_duration_s <= 0 or half_life <= 0:
            raise ValueError("gap_s, max_events, max_duration_s and half_life must be > 0")
        self.keys = tuple(keys)
        self.pattern = re.compile(pattern) if pattern else None
        self.gap_s = float(gap_s)
        self.max_events = int(max_events)
        self.max_duration_s = float(max_duration_s)
        self.decay = 0.5 ** (1.0 / half_life)
        self.max_sequence = int(max_sequence)
        self.max_event_ids = int(max_event_ids)
        self.max_closed_keys = int(max_closed_keys)
        self.max_members = int(max_members)
        self._forgotten: list[str] = []
        self.watermark = float("-inf")
        self._open: dict[str, Session] = {}  # by key
        self._segments: OrderedDict[str, int] = OrderedDict()  # key → segments opened (bounded)
        self._closed_sources: dict[str, dict[int, int]] = {}  # closed key → its applied source offsets (same bound)

    def __len__(self) -> int:
        return len(self._open)

    def key_of(self, event: Mapping[str, Any]) -> tuple[str, tuple[str, str]] | None:
        """``(key, entity)`` of an event under the configured key kinds, or ``None``."""
        for kind in self.keys:
            value: str | None = None
            if kind == "session_id":
                value = event.get("session_id") or None
            elif kind == "user+host":
                if event.get("user") and event.get("host"):
                    value = f"{event['user']}@{event['host']}"
            elif kind == "regex":
                assert self.pattern is not None
                m = self.pattern.search(str(event.get("message", "")))
                value = m[0] if m else None
            else:
                value = event.get(kind) or None
            if value:
                key = str(value) if kind in ("session_id", "regex") else f"{kind}:{value}"
                return key, (_ENTITY_TYPE[kind], str(value))
        return None

    def observe(self, events: Sequence[Mapping[str, Any]], vectors: np.ndarray, template_ids: Sequence[str],
                templates: Sequence[str] | None = None, scores: Sequence[float] | None = None,
                keys: Sequence[tuple[str, tuple[str, str]] | None] | None = None,
                sources: Sequence[tuple[int, int] | None] | None = None) -> Observation:
        """Add a batch of events (in stream order) and return what closed.

        ``vectors`` has one row per event; ``templates`` (texts) and ``scores``
        (event scores) are optional; ``keys`` (one :meth:`key_of` result per event)
        when the caller computed them already (a repartitioned stream); ``sources``
        (one ``(partition, offset)`` or ``None`` per event) to skip re-deliveries. Closed
        sessions come in closing order: those a key's next event closed
        (gap/limits), then those the batch's watermark evicted (oldest end first).
        """
        ids: list[str | None] = []
        closed: list[Session] = []
        self._forgotten = []
        repeated = 0
        for i, ev in enumerate(events):
            found = keys[i] if keys is not None else self.key_of(ev)
            source = sources[i] if sources is not None else None
            if found is None or (source is not None and source[1] <= self._applied(found[0], source[0])):
                repeated += found is not None
                ids.append(None)
                continue
            key, entity = found
            t = event_time(ev["time"])
            self.watermark = max(self.watermark, t)
            sess = self._open.get(key)
            if sess is not None and (t - sess.end > self.gap_s or t - sess.start > self.max_duration_s):
                sess.reason = "gap" if t - sess.end > self.gap_s else "max_duration"
                closed.append(self._close(key))
                sess = None
            if sess is None:
                sess = self._start(key, entity, t)
            self._add(sess, ev, vectors[i], template_ids[i], templates[i] if templates is not None else "",
                      float(scores[i]) if scores is not None else 0.0, t)
            if source is not None:
                sess.sources[source[0]] = source[1]
            ids.append(sess.session_id)
            if sess.events >= self.max_events:
                sess.reason = "max_events"
                closed.append(self._close(key))
        closed.extend(self.evict(self.watermark))
        forgotten, self._forgotten = self._forgotten, []
        return Observation(ids, closed, forgotten, repeated)

    def _applied(self, key: str, partition: int) -> int:
        """Highest offset of source ``partition`` applied to ``key`` (-1: none)."""
        sess = self._open.get(key)
        known = sess.sources if sess is not None else self._closed_sources.get(key, {})
        return known.get(partition, -1)

    def get(self, key: str) -> Session | None:
        """The open session of ``key``, if any."""
        return self._open.get(key)

    def sessions(self) -> list[Session]:
        """The open sessions (a copy of the list; the sessions themselves are live)."""
        return list(self._open.values())

    def segment(self, key: str) -> int:
        """How many sessions ``key`` has opened (0 when unknown or forgotten)."""
        return self._segments.get(key, 0)

    def adopt(self, session: Session, segment: int | None = None) -> None:
        """Take over an open session restored from elsewhere (a changelog); the watermark follows its end."""
        self._open[session.key] = session
        self.remember(session.key, segment if segment is not None else _segment_of(session))
        self.watermark = max(self.watermark, session.end)

    def remember(self, key: str, segment: int, sources: Mapping[int, int] | None = None) -> None:
        """Restore the reopen counter (and applied source offsets) of a closed key (from a changelog)."""
        self._segments.pop(key, None)
        self._segments[key] = max(1, int(segment))
        if sources:
            self._closed_sources[key] = dict(sources)
        while len(self._segments) > self.max_closed_keys:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        k, _ = self._segments.popitem(last=False)
        self._closed_sources.pop(k, None)
        self._forgotten.append(k)

    def evict(self, now: float) -> list[Session]:
        """Close the sessions idle for more than the gap (or too long) at event time ``now``."""
        stale = [k for k, s in self._open.items()
                 if now - s.end > self.gap_s or now - s.start > self.max_duration_s]
        stale.sort(key=lambda k: (self._open[k].end, k))
        out = []
        for k in stale:
            s = self._open[k]
            s.reason = "gap" if now - s.end > self.gap_s else "max_duration"
            out.append(self._close(k))
        return out

    def flush(self) -> list[Session]:
        """Close every open session (end of input), oldest end first."""
        keys = sorted(self._open, key=lambda k: (self._open[k].end, k))
        out = []
        for k in keys:
            self._open[k].reason = "flush"
            out.append(self._close(k))
        return out

    def _start(self, key: str, entity: tuple[str, str], t: float) -> Session:
        n = self._segments.pop(key, 0) + 1
        self._segments[key] = n
        while len(self._segments) > self.max_closed_keys:
            self._forget_oldest()
        sess = Session(session_id=key if n == 1 else f"{key}#{n}", key=key, entity=entity, start=t, end=t,
                       sources=self._closed_sources.pop(key, {}))
        self._open[key] = sess
        return sess

    def _add(self, s: Session, ev: Mapping[str, Any], vec: np.ndarray, tid: str, text: str, score: float,
             t: float) -> None:
        v = np.asarray(vec, dtype=np.float64)
        s.vec = v.copy() if s.vec is None else s.vec * self.decay + v
        s.events += 1
        s.start, s.end = min(s.start, t), max(s.end, t)
        s.bag[tid] += 1
        if tid not in s.templates:
            s.templates[tid] = text
        if tid not in s.members and len(s.members) < self.max_members:
            s.members[tid] = np.asarray(vec, dtype=np.float32).copy()
        if len(s.sequence) < self.max_sequence:
            s.sequence.append(tid)
        if len(s.event_ids) < self.max_event_ids and ev.get("event_id"):
            s.event_ids.append(str(ev["event_id"]))
        s.max_event_score = max(s.max_event_score, score)

    def _close(self, key: str) -> Session:
        sess = self._open.pop(key)
        if sess.sources and key in self._segments:
            self._closed_sources[key] = dict(sess.sources)
        return sess

    def snapshot(self) -> dict[str, Any]:
        """Plain-data state (JSON-serializable)."""
        return {"watermark": self.watermark if self.watermark != float("-inf") else None,
                "open": [s.to_dict() for s in self._open.values()],
                "segments": [[k, n] for k, n in self._segments.items()],
                "closed_sources": {k: sources_out(v) for k, v in self._closed_sources.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        wm = state.get("watermark")
        self.watermark = float("-inf") if wm is None else float(wm)
        self._open = {}
        for d in state["open"]:
            s = Session.from_dict(d)
            self._open[s.key] = s
        self._segments = OrderedDict((str(k), int(n)) for k, n in state["segments"])
        self._closed_sources = {str(k): sources_in(v) for k, v in state.get("closed_sources", {}).items()}


def _segment_of(session: Session) -> int:
    """The reopen number in a session id (``key`` → 1, ``key#3`` → 3)."""
    tail = session.session_id[len(session.key):]
    return int(tail[1:]) if tail.startswith("#") and tail[1:].isdigit() else 1


def sources_out(sources: Mapping[int, int]) -> dict[str, int]:
    """Applied source offsets as JSON (partition numbers as string keys)."""
    return {str(p): int(o) for p, o in sources.items()}


def sources_in(data: Mapping[str, Any] | None) -> dict[int, int]:
    """Inverse of :func:`sources_out` (``None`` or missing: none applied)."""
    return {int(p): int(o) for p, o in (data or {}).items()}
