"""Analyst feedback on alerts: what a verdict changes. Pure (numpy and plain data).

A verdict names an alert (``alert_id``) and says ``false_positive`` or
``true_positive``. The worker resolves the alert to its evidence vector (the event
vector of an ``event_anomaly`` alert, the session vector of a ``session_anomaly``)
and records it here, per vector *space* (``event``, ``session``):

- **false positive**: the evidence joins the normal baseline (the caller teaches
  the detector: :func:`teach_normal`, ``k`` copies, so it counts as familiar for a
  k-NN with ``k`` neighbours), and any later alert of the same kind whose evidence is
  within cosine similarity ``suppress_at`` of it is suppressed: not published,
  counted with the reason ``feedback`` and the id of the verdict that suppressed it;
- **true positive**: the evidence is kept as a labelled exemplar; a later event
  within ``confirm_at`` of it scores at least :func:`confirmed_score`, which is at
  or above the alert threshold and reaches 100 for an identical one, and its alert
  names the confirmed alert it resembles. A confirmed pattern does not fade into
  the baseline as it recurs.

A later verdict on the same alert replaces the earlier one (an analyst correcting
themselves). Memory is bounded (``max_items`` verdicts, oldest first out).
Verdicts are idempotent: the worker re-reads the feedback topic from its start at
every start-up and :meth:`FeedbackMemory.known` tells what is already applied.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection.plain import b64, unb64
from detection.vocabulary import FALSE_POSITIVE, TRUE_POSITIVE, VERDICTS  # numpy-free home (the CLI checks verdicts)

__all__ = [
    "FALSE_POSITIVE",
    "TRUE_POSITIVE",
    "VECTOR_FIELD",
    "VERDICTS",
    "FeedbackMemory",
    "InvalidFeedback",
    "Match",
    "Verdict",
    "attach_vector",
    "confirmed_score",
    "parse_feedback",
    "screen",
    "take_vector",
    "teach_normal",
]

#: Field of a *raised* alert that carries its evidence vector to the alerts stage; removed there,
#: never published (``{"space": "event"|"session", "v": base64 float32}``).
VECTOR_FIELD = "_vector"
_MAX_NOTE = 500


class InvalidFeedback(ValueError):
    """A feedback message that cannot be applied; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Verdict:
    """One analyst verdict as published on the feedback topic."""

    alert_id: str
    verdict: str
    note: str = ""
    analyst: str = ""
    time: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"alert_id": self.alert_id, "verdict": self.verdict, "note": self.note, "analyst": self.analyst,
                "time": self.time}


def parse_feedback(raw: bytes | str | Mapping[str, Any]) -> Verdict:
    """A feedback message (JSON bytes, text or a dict) as a :class:`Verdict`; :class:`InvalidFeedback` if unusable."""
    if isinstance(raw, Mapping):
        doc: Any = raw
    else:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidFeedback("not_json", str(exc)[:200]) from exc
    if not isinstance(doc, Mapping):
        raise InvalidFeedback("not_an_object", f"expected a JSON object, got {type(doc).__name__}")
    alert = doc.get("alert_id")
    if not isinstance(alert, str) or not alert.strip():
        raise InvalidFeedback("missing_alert_id", "alert_id must be a non-empty string")
    verdict = doc.get("verdict")
    if verdict not in VERDICTS:
        raise InvalidFeedback("bad_verdict", f"verdict {verdict!r}; valid: {', '.join(VERDICTS)}")
    note = doc.get("note") or ""
    analyst = doc.get("analyst") or ""
    return Verdict(alert_id=alert.strip(), verdict=str(verdict), note=str(note)[:_MAX_NOTE],
                   analyst=str(analyst)[:200], time=str(doc.get("time") or ""))


def attach_vector(alert: dict[str, Any], space: str, vector: np.ndarray) -> dict[str, Any]:
    """Put the evidence vector on a raised alert (see :data:`VECTOR_FIELD`); returns the alert."""
    alert[VECTOR_FIELD] = {"space": space, "v": b64(np.asarray(vector, dtype=np.float32), "<f4")}
    return alert


def take_vector(alert: dict[str, Any]) -> tuple[str, np.ndarray] | None:
    """Remove the evidence vector from a raised alert; ``(space, unit float32 vector)`` or None."""
    carried = alert.pop(VECTOR_FIELD, None)
    if not isinstance(carried, Mapping) or not isinstance(carried.get("v"), str):
        return None
    vec = unb64(carried["v"], "<f4", "<f4")
    norm = float(np.linalg.norm(vec))
    if vec.size == 0 or not math.isfinite(norm) or norm == 0.0:
        return None
    return str(carried.get("space") or "event"), vec / norm


Carried = tuple[str, np.ndarray]  # (vector space, unit evidence vector)


def screen(memory: FeedbackMemory | None, raised: Sequence[tuple[dict[str, Any], Carried | None]]
           ) -> tuple[list[dict[str, Any]], dict[str, Carried], list[tuple[dict[str, Any], Match]]]:
    """Split raised alerts (each with its evidence vector, if any) into those to publish and those a
    false-positive verdict suppresses. Returns (kept alerts, evidence vectors of the kept by alert id,
    (suppressed alert, the verdict that suppressed it))."""
    kept: list[dict[str, Any]] = []
    vectors: dict[str, Carried] = {}
    suppressed: list[tuple[dict[str, Any], Match]] = []
    for alert, carried in raised:
        if carried is not None and memory is not None:
            match = memory.suppressing(carried[0], str(alert.get("kind", "")), carried[1])
            if match is not None:
                suppressed.append((alert, match))
                continue
        kept.append(alert)
        if carried is not None:
            vectors[str(alert.get("alert_id"))] = carried
    return kept, vectors, suppressed


def teach_normal(baseline: Any, vector: np.ndarray, ident: str, summary: str) -> None:
    """Teach an :class:`detection.novelty.ExemplarBaseline` that ``vector`` (a false positive's evidence)
    is normal: ``k`` copies (the baseline's k-NN ``k``), which merge into one exemplar of that support,
    so an identical event finds its k neighbours in it alone (novelty 0)."""
    copies = max(1, int(baseline.k))
    rows = np.repeat(np.asarray(vector, dtype=np.float32).reshape(1, -1), copies, axis=0)
    baseline.learn(rows, [ident] * copies, [summary] * copies)


def confirmed_score(similarity: float, confirm_at: float, threshold: float) -> float:
    """Score floor of an event this close to a confirmed (true positive) exemplar: ``threshold`` at
    ``confirm_at``, rising linearly to 100 for an identical one."""
    if similarity < confirm_at:
        return 0.0
    span = max(1e-9, 1.0 - confirm_at)
    return float(min(100.0, threshold + (100.0 - threshold) * (similarity - confirm_at) / span))


@dataclass
class Match:
    """The verdict nearest to a vector, and how near."""

    alert_id: str
    verdict: str
    kind: str
    similarity: float
    note: str = ""

    def explain(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alert_id": self.alert_id, "verdict": self.verdict,
                               "similarity": round(self.similarity, 4)}
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class _Space:
    dim: int
    ids: list[str] = field(default_factory=list)
    meta: list[dict[str, str]] = field(default_factory=list)  # verdict, kind, note per row
    vecs: np.ndarray | None = None

    def rows(self, verdict: str, kind: str | None = None) -> np.ndarray:
        return np.array([i for i, m in enumerate(self.meta)
                         if m["verdict"] == verdict and (kind is None or m["kind"] == kind)], dtype=np.int64)


class FeedbackMemory:
    """Verdicts with their evidence vectors, per vector space; see the module docstring."""

    def __init__(self, *, suppress_at: float = 0.97, confirm_at: float = 0.93, max_items: int = 10_000) -> None:
        for name, value in (("suppress_at", suppress_at), ("confirm_at", confirm_at)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.suppress_at = suppress_at
        self.confirm_at = confirm_at
        self.max_items = max_items
        self._spaces: dict[str, _Space] = {}
        self._verdict_of: dict[str, str] = {}  # alert id -> verdict applied

    def __len__(self) -> int:
        return len(self._verdict_of)

    def counts(self) -> dict[str, int]:
        """Verdicts held, by verdict (for metrics)."""
        out = dict.fromkeys(VERDICTS, 0)
        for v in self._verdict_of.values():
            out[v] = out.get(v, 0) + 1
        return out

    def known(self, alert_id: str, verdict: str) -> bool:
        """True when this verdict on this alert is already applied."""
        return self._verdict_of.get(alert_id) == verdict

    def add(self, alert_id: str, verdict: str, kind: str, space: str, vectors: np.ndarray, note: str = "") -> bool:
        """Record a verdict with its evidence vectors (unit float32 rows, or one vector); False when it was
        already recorded. Several rows: the evidence as first seen and as the encoder sees it now (an
        event's first sighting encodes its new values differently from every later copy)."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r}; valid: {', '.join(VERDICTS)}")
        if self.known(alert_id, verdict):
            return False
        rows = np.asarray(vectors, dtype=np.float32)
        rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
        sp = self._spaces.get(space)
        if sp is None or sp.dim != rows.shape[1]:  # a new space, or a model change: start the space over
            sp = self._spaces[space] = _Space(dim=rows.shape[1], vecs=np.zeros((0, rows.shape[1]), np.float32))
        self._remove(alert_id)
        assert sp.vecs is not None
        sp.ids.extend([alert_id] * rows.shape[0])
        sp.meta.extend({"verdict": verdict, "kind": kind, "note": note} for _ in range(rows.shape[0]))
        sp.vecs = np.vstack([sp.vecs, rows])
        self._verdict_of[alert_id] = verdict
        while len(self._verdict_of) > self.max_items:
            self._remove(next(iter(self._verdict_of)))
        return True

    def _remove(self, alert_id: str) -> None:
        if self._verdict_of.pop(alert_id, None) is None:
            return
        for sp in self._spaces.values():
            keep = [i for i, ident in enumerate(sp.ids) if ident != alert_id]
            if len(keep) != len(sp.ids):
                sp.ids = [sp.ids[i] for i in keep]
                sp.meta = [sp.meta[i] for i in keep]
                assert sp.vecs is not None
                sp.vecs = sp.vecs[keep]

    def _nearest(self, space: str, vectors: np.ndarray, verdict: str, kind: str | None,
                 at: float) -> list[Match | None]:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        sp = self._spaces.get(space)
        out: list[Match | None] = [None] * vectors.shape[0]
        if sp is None or sp.vecs is None or sp.dim != vectors.shape[1] or vectors.shape[0] == 0:
            return out
        rows = sp.rows(verdict, kind)
        if rows.size == 0:
            return out
        sims = vectors @ sp.vecs[rows].T
        best = np.argmax(sims, axis=1)
        for i, j in enumerate(best):
            s = float(sims[i, j])
            if s >= at:
                r = int(rows[j])
                out[i] = Match(sp.ids[r], verdict, sp.meta[r]["kind"], s, sp.meta[r]["note"])
        return out

    def suppressing(self, space: str, kind: str, vector: np.ndarray) -> Match | None:
        """The false-positive verdict (same kind) that suppresses an alert with this evidence, if any."""
        return self._nearest(space, vector, FALSE_POSITIVE, kind, self.suppress_at)[0]

    def confirming(self, space: str, vectors: np.ndarray) -> list[Match | None]:
        """Per row, the nearest true-positive exemplar within ``confirm_at`` (or None)."""
        return self._nearest(space, vectors, TRUE_POSITIVE, None, self.confirm_at)

    def has_confirmed(self, space: str) -> bool:
        sp = self._spaces.get(space)
        return sp is not None and sp.rows(TRUE_POSITIVE).size > 0

    # ------------------------------------------------------------------ persistence
    def snapshot(self) -> dict[str, Any]:
        """Plain data; vectors as base64 float32."""
        return {"suppress_at": self.suppress_at, "confirm_at": self.confirm_at, "order": list(self._verdict_of),
                "spaces": {name: {"dim": sp.dim, "ids": list(sp.ids), "meta": [dict(m) for m in sp.meta],
                                  "vecs": b64(sp.vecs if sp.vecs is not None else np.zeros((0, sp.dim)), "<f4")}
                           for name, sp in self._spaces.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._spaces.clear()
        self._verdict_of.clear()
        for name, raw in (state.get("spaces") or {}).items():
            dim = int(raw["dim"])
            vecs = unb64(raw["vecs"], "<f4", "<f4").reshape(-1, dim) if dim else np.zeros((0, 0), np.float32)
            ids, meta = [str(x) for x in raw["ids"]], [{k: str(v) for k, v in m.items()} for m in raw["meta"]]
            if len(ids) != vecs.shape[0] or len(meta) != len(ids):
                raise ValueError(f"feedback snapshot space {name!r}: {len(ids)} ids, {vecs.shape[0]} vectors")
            self._spaces[name] = _Space(dim=dim, ids=ids, meta=meta, vecs=vecs)
            for i, m in zip(ids, meta):
                self._verdict_of[i] = m["verdict"]
        order = [str(i) for i in state.get("order") or [] if str(i) in self._verdict_of]
        if order:  # oldest first: eviction order survives a restart
            self._verdict_of = {**{i: self._verdict_of[i] for i in order}, **self._verdict_of}

