"""Confidence of a score: how much baseline evidence backs it, and which warm-ups apply. Pure.

A score says how unusual something is; its confidence says how much past
evidence the verdict rests on. Confidence is a product of factors in [0, 1],
each published in the alert (``confidence_basis.factors``) so an analyst can see
what lowered it:

- ``stream``: events (or sessions) the detector had learned before this score,
  ``min(1, history / (5·warmup))``: the calibration of a young stream is coarse;
- ``support``: past events the nearest neighbours stand for (a neighbour is an
  exemplar that merged near-duplicates, so one neighbour can stand for many),
  ``min(1, support / k)`` (sessions: over the number of nearest sessions listed).
  ``support = neighbours × density``, with ``density`` the mean number of past
  events per neighbour: few, lone neighbours are thin evidence of what is normal
  near the event;
- ``template`` and ``entity``: how often the event's template and its entity
  (``user``, else ``host``, else ``src_ip``) were seen before,
  :func:`age_factor`: ``0.5`` for a first sighting rising linearly to ``1`` at
  the warm-up count. The floor is ``0.5``, not ``0``: a never-seen template is
  often the anomaly itself, and the stream baseline it is compared with is
  evidence too; what is missing is this template's (entity's) own history.

Warm-up is explicit, never a silent 0: a score whose template or entity is
younger than its warm-up count keeps its real score and may alert; it lists
``"template"`` / ``"entity"`` in ``warmup_reasons`` and its confidence drops. A
stream (or session baseline) in warm-up lists ``"stream"``; only that one stops
alerts (scores before ``warmup`` events are ranked against too little history).

Per-template and per-entity sightings are counted by :class:`SeenCounter`, a
capped dict with least-recently-seen eviction. Chosen over a count-min sketch on
purpose: a sketch's error is an over-count, which would call a never-seen entity
"seen" whenever it collides, hiding exactly the warm-up this module must show.
Eviction errs the other way: an entity not seen for ``capacity`` distinct others
counts as new again, which lowers confidence and never inflates it.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AGE_FLOOR", "WARMUP_REASONS", "ConfidenceBasis", "SeenCounter", "age_factor", "event_confidence",
           "session_confidence", "template_frequency"]

#: every value of an alert's ``warmup_reasons``, in the order they are listed
WARMUP_REASONS = ("stream", "template", "entity")
#: the template / entity factor of a first sighting
AGE_FLOOR = 0.5


def age_factor(seen: int | None, warmup: int, floor: float = AGE_FLOOR) -> float:
    """``floor`` for a first sighting, linear to 1 at ``warmup`` sightings; 1 when unknown (``None``) or warm-up 0."""
    if seen is None or warmup <= 0:
        return 1.0
    return floor + (1.0 - floor) * min(1.0, max(0, seen) / warmup)


@dataclass(frozen=True)
class ConfidenceBasis:
    """What a confidence rests on (``confidence_basis`` in an alert); ``None`` fields do not apply."""

    confidence: float
    factors: dict[str, float] = field(default_factory=dict)
    warmup_reasons: tuple[str, ...] = ()
    history: int | None = None  # events (sessions, entity updates) learned before the score
    neighbours: int | None = None  # nearest neighbours found
    support: int | None = None  # past events (sessions) they stand for
    template_seen: int | None = None  # earlier events with the template (sessions holding it)
    template_share: float | None = None  # template_seen / history of the template counter
    entity_seen: int | None = None  # earlier events (versions) of the entity

    @property
    def density(self) -> float | None:
        """Past events per neighbour (``support / neighbours``)."""
        if self.support is None or not self.neighbours:
            return None
        return self.support / self.neighbours

    def to_alert(self) -> dict[str, Any]:
        """The alert's ``confidence_basis`` object (JSON-ready; absent facts left out)."""
        out: dict[str, Any] = {}
        for name in ("history", "neighbours", "support", "density", "template_seen", "entity_seen"):
            value = getattr(self, name)
            if value is not None:
                out[name] = round(float(value), 3) if name == "density" else int(value)
        out["factors"] = {k: round(float(v), 3) for k, v in self.factors.items()}
        return out


def _product(factors: Mapping[str, float]) -> float:
    out = 1.0
    for f in factors.values():
        out *= f
    return out


def _base(history: int, warmup: int, support: int, full_support: int) -> tuple[dict[str, float], list[str]]:
    factors = {"stream": min(1.0, history / max(1, 5 * warmup)), "support": min(1.0, support / max(1, full_support))}
    return factors, ["stream"] if history < warmup else []


def _age(factors: dict[str, float], reasons: list[str], name: str, seen: int | None, warmup: int) -> None:
    if seen is not None:
        factors[name] = age_factor(seen, warmup)
        if seen < warmup:
            reasons.append(name)


def event_confidence(*, history: int, warmup: int, neighbours: int, support: int, k: int,
                     template_seen: int | None = None, template_total: int | None = None,
                     template_warmup: int = 10, entity_seen: int | None = None,
                     entity_warmup: int = 20) -> ConfidenceBasis:
    """Confidence of an event score (see the module docstring for the factors)."""
    factors, reasons = _base(history, warmup, support, k)
    _age(factors, reasons, "template", template_seen, template_warmup)
    _age(factors, reasons, "entity", entity_seen, entity_warmup)
    share = None
    if template_seen is not None and template_total is not None:
        share = template_seen / template_total if template_total > 0 else 0.0
    return ConfidenceBasis(confidence=_product(factors), factors=factors, warmup_reasons=tuple(reasons), history=history,
                           neighbours=neighbours, support=support, template_seen=template_seen,
                           template_share=share, entity_seen=entity_seen)


def session_confidence(*, history: int, warmup: int, neighbours: int, support: int, listed: int,
                       template_seen: int | None = None, template_warmup: int = 5) -> ConfidenceBasis:
    """Confidence of a session score: ``stream`` over closed sessions, ``support`` of the ``listed``
    nearest past sessions (``min(1, support / listed)``), ``template`` the age (in sessions) of the
    session's rarest template. Sessions have no entity factor: a session key (an HDFS block, a
    user+host pair) is new for most sessions by construction."""
    factors, reasons = _base(history, warmup, support, listed)
    _age(factors, reasons, "template", template_seen, template_warmup)
    share = None if template_seen is None else (template_seen / history if history > 0 else 0.0)
    return ConfidenceBasis(confidence=_product(factors), factors=factors, warmup_reasons=tuple(reasons), history=history,
                           neighbours=neighbours, support=support, template_seen=template_seen,
                           template_share=share)


def template_frequency(basis: ConfidenceBasis | None) -> dict[str, Any] | None:
    """The alert's ``explanation.template_frequency`` (``count`` earlier sightings, their ``share``)."""
    if basis is None or basis.template_seen is None:
        return None
    share = basis.template_share if basis.template_share is not None else 0.0
    return {"count": int(basis.template_seen), "share": float(f"{share:.4g}")}  # 4 significant digits


class SeenCounter:
    """How often each key (template id, entity) was seen: a capped dict, least recently seen evicted.

    :meth:`seen` is prequential and read-only (a key's count before each position of a
    batch, earlier positions of the batch included); :meth:`learn` folds a batch in.
    ``total`` counts every key learned, evicted ones included.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.total = 0
        self._counts: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counts)

    def get(self, key: str) -> int:
        return self._counts.get(key, 0)

    def seen(self, keys: Sequence[str | None]) -> list[int | None]:
        """Count of each key before its position (``None`` for a ``None`` key); no state change."""
        counts = self._counts
        running: Counter[str] = Counter()
        out: list[int | None] = []
        for key in keys:
            if key is None:
                out.append(None)
                continue
            out.append(counts.get(key, 0) + running[key])
            running[key] += 1
        return out

    def learn(self, keys: Iterable[str | None]) -> None:
        """Count a batch of keys (``None`` skipped), then evict the least recently seen beyond capacity."""
        batch = Counter(k for k in keys if k is not None)
        counts = self._counts
        for key, n in batch.items():
            counts[key] = counts.get(key, 0) + n
            counts.move_to_end(key)
        self.total += sum(batch.values())
        while len(counts) > self.capacity:
            counts.popitem(last=False)

    def snapshot(self) -> dict[str, Any]:
        """Plain data: ``{"capacity", "total", "counts": [[key, count], ...]}``, least recently seen first."""
        return {"capacity": self.capacity, "total": self.total, "counts": [[k, v] for k, v in self._counts.items()]}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.total = int(state["total"])
        self._counts = OrderedDict((str(k), int(v)) for k, v in state["counts"])
        while len(self._counts) > self.capacity:
            self._counts.popitem(last=False)
