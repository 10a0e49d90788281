"""Rare and first-seen values: how surprising is this process, port, user, ...?

A hybrid vector differs little when only one parameter is new (``mimikatz.exe``
instead of ``chrome.exe`` in an otherwise common process-start line), yet a
never-seen process is what an analyst wants to hear about. This scores each
event by the most surprising of its categorical values, with probabilities
estimated from the stream itself:

- a value seen ``c`` times among ``n`` events of the field: ``P = (c + 1) / (n + 1)``;
- a never-seen value: the Good–Turing *missing mass* ``P = max(n1, 1) / (n + 1)``
  where ``n1`` is the number of values seen exactly once. A field where new
  values keep appearing (client IPs, invalid user names in a brute force) has a
  large missing mass, so its new values are not surprising; a field with a
  stable vocabulary (process names on a fleet, destination ports) has a tiny one.

Surprise is ``-log10 P`` (decades). Pure: plain values in, plain values out.
Memory is bounded per field: when a field holds more than ``max_values``
distinct values, the ones seen once are forgotten (they were the least
informative), and if more than half of ``max_values`` are left (values that
recur), only the commonest half is kept; this only makes later new values look
a little less surprising.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Fields with a vocabulary (a fleet runs a stable set of processes, services, ports).
#: Entity identities (user, host, addresses) are left out: a user's first login of
#: the day is not an anomaly; behaviour per entity is the entity model's job.
DEFAULT_FIELDS = ("process", "event_type", "source", "dst_port", "protocol")


@dataclass(frozen=True)
class RareValue:
    """The most surprising value of an event."""

    field: str
    value: str
    seen: int  # times seen before this event
    surprise: float  # -log10 probability

    def term(self) -> str:
        return f"{self.field}={self.value}"


def field_value(event: Mapping[str, Any], field: str) -> str | None:
    """The comparable value of ``field``: paths reduced to their lower-cased basename."""
    value = event.get(field)
    if value is None or value == "":
        return None
    text = str(value)
    if field == "process":
        text = text.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return text[:200]


class ValueRarity:
    """Per-field value counts; surprise of each event's rarest value."""

    def __init__(self, fields: Sequence[str] = DEFAULT_FIELDS, *, min_events: int = 100,
                 max_values: int = 50_000) -> None:
        if not fields:
            raise ValueError("fields must not be empty")
        self.fields = tuple(fields)
        self.min_events = min_events
        self.max_values = max_values
        self.counts: dict[str, Counter[str]] = {f: Counter() for f in self.fields}
        self.totals: dict[str, int] = {f: 0 for f in self.fields}
        self.singletons: dict[str, int] = {f: 0 for f in self.fields}

    def _surprise(self, field: str, value: str, pending: Counter[tuple[str, str]],
                  pending_total: Counter[str], pending_single: Counter[str]) -> tuple[float, int]:
        n = self.totals[field] + pending_total[field]
        if n < self.min_events:  # too little history for this field: no opinion
            return 0.0, 0
        seen = self.counts[field].get(value, 0) + pending[(field, value)]
        if seen:
            p = (seen + 1) / (n + 1)
        else:
            p = max(self.singletons[field] + pending_single[field], 1) / (n + 1)
        return -math.log10(max(p, 1e-12)), seen

    def score(self, events: Sequence[Mapping[str, Any]]) -> list[RareValue | None]:
        """The rarest value of each event, prequential within the batch; no state change."""
        pending: Counter[tuple[str, str]] = Counter()
        pending_total: Counter[str] = Counter()
        pending_single: Counter[str] = Counter()
        out: list[RareValue | None] = []
        for event in events:
            best: RareValue | None = None
            values = [(f, field_value(event, f)) for f in self.fields]
            for f, v in values:
                if v is None:
                    continue
                surprise, seen = self._surprise(f, v, pending, pending_total, pending_single)
                if best is None or surprise > best.surprise:
                    best = RareValue(f, v, seen, surprise)
            out.append(best)
            for f, v in values:  # later events of the batch see this one
                if v is None:
                    continue
                before = self.counts[f].get(v, 0) + pending[(f, v)]
                pending[(f, v)] += 1
                pending_total[f] += 1
                pending_single[f] += 1 if before == 0 else (-1 if before == 1 else 0)
        return out

    def learn(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Fold a scored batch into the counts."""
        for event in events:
            for f in self.fields:
                v = field_value(event, f)
                if v is None:
                    continue
                counter = self.counts[f]
                before = counter[v]
                counter[v] = before + 1
                self.totals[f] += 1
                if before == 0:
                    self.singletons[f] += 1
                elif before == 1:
                    self.singletons[f] -= 1
                if len(counter) > self.max_values:
                    self._prune(f)

    def _prune(self, field: str) -> None:
        counter = self.counts[field]
        ones = [v for v, c in counter.items() if c == 1]
        for v in ones:
            del counter[v]
        if len(counter) > self.max_values // 2:  # values that recur (each seen twice, ...): keep the commonest half
            self.counts[field] = Counter(dict(counter.most_common(self.max_values // 2)))
        self.singletons[field] = 0

    def snapshot(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "counts": {f: dict(c) for f, c in self.counts.items()},
                "totals": dict(self.totals), "singletons": dict(self.singletons)}

    def restore(self, state: Mapping[str, Any]) -> None:
        if list(state["fields"]) != list(self.fields):
            raise ValueError(f"rarity snapshot has fields {state['fields']}, expected {list(self.fields)}")
        self.counts = {f: Counter({str(k): int(v) for k, v in state["counts"][f].items()}) for f in self.fields}
        self.totals = {f: int(state["totals"][f]) for f in self.fields}
        self.singletons = {f: int(state["singletons"][f]) for f in self.fields}
