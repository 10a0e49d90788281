"""Alert deduplication and per-entity rate limiting. Pure (plain data in and out).

A SOC reads one alert per *situation*, not one per event. Alerts of the same kind
on the same entity with the same template (sessions and entity drifts: the same
kind and entity) form a **group** while they keep arriving within ``window_s`` of
the group's last one (event time) and the group is younger than ``max_open_s``:

- the group's first alert is published as it is (``count`` 1, its own ``alert_id``);
- every later alert of an open group is folded into it: ``count`` grows,
  ``last_seen`` moves, ``score`` is the highest seen, the first ``max_event_ids``
  event ids are kept in ``evidence.event_ids``. At the end of each batch a group
  that changed is published again under the **same** ``alert_id`` with
  ``"update": true``: consumers keep the newest document per alert id, so 200
  copies of one anomalous event in a batch are one alert with count 200, and over
  many batches one alert and a few updates;
- an alert id already seen (a re-delivered batch under at-least-once, or the same
  event replayed again) is not counted twice, not even after its group closed: the
  last ``max_known`` alert ids are remembered;
- **rate limit**: an entity opens at most ``rate_limit`` groups per ``window_s``;
  further alerts on it fold into one overflow group per kind and entity
  (``template_id`` ``*``, ``"rate_limited": true``), so nothing is dropped
  silently and the analyst sees how many were held back.

Groups are closed (forgotten) once the event-time watermark (the latest alert time
seen) is ``window_s`` past their last alert, or past the watermark at which they were
last touched, whichever is later: alerts of old events arriving late (a backfill, a
re-sent file) fold among themselves instead of each closing its group at once (a group
key holds one open group: a late alert that cannot join it replaces it, and a later
on-time alert of that key starts a new alert). A group spanning more than ``max_open_s``
of event time closes too. State is a set of keyed records
(:meth:`AlertDeduper.take_records` / :meth:`AlertDeduper.load_records`), so a worker
can keep it in a changelog-backed table and write only what a batch changed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from detection.alerts import SEVERITIES, alert_id, alert_severity, readable
from detection.times import event_time

__all__ = ["AlertDeduper", "DedupOutcome", "group_key"]

RATE_LIMITED = "*"


def group_key(alert: Mapping[str, Any]) -> str:
    """The dedup group of an alert: ``kind|type:id|template_id`` (template empty when the kind has none)."""
    ent = alert.get("entity") or {}
    template = (alert.get("explanation") or {}).get("template_id") or ""
    return f"{alert['kind']}|{ent.get('type', 'unknown')}:{ent.get('id', '')}|{template}"


def _entity_of(key: str) -> str:
    return key.split("|", 2)[1]


@dataclass
class DedupOutcome:
    """What one batch of alerts became."""

    published: list[dict[str, Any]] = field(default_factory=list)  # new alerts and updates, to send
    new: int = 0  # groups opened
    folded: int = 0  # alerts folded into an open group
    rate_limited: int = 0  # alerts folded into an overflow group by the rate limit
    repeated: int = 0  # alerts already folded (re-delivered)


@dataclass
class _Group:
    alert: dict[str, Any]  # the document as last published (or about to be)
    first_t: float
    last_t: float
    published: bool = False
    touched: float = -math.inf  # the watermark when an alert last joined (late alerts: above last_t)

    def plain(self) -> dict[str, Any]:
        return {"alert": self.alert, "first_t": self.first_t, "last_t": self.last_t, "published": self.published,
                "touched": self.touched if math.isfinite(self.touched) else None}


class AlertDeduper:
    """Groups, updates and rate limits alerts; see the module docstring.

    Args:
        window_s: a group stays open while alerts keep coming within this many seconds (event time).
        max_open_s: a group older than this is closed even if alerts keep coming (a new alert reopens one).
        rate_limit: groups an entity may open per ``window_s`` before further alerts fold into its overflow group.
        max_event_ids: event ids kept in a group's evidence.
        max_known: alert ids remembered overall (oldest forgotten first), so an alert raised again after its
            group closed is recognised.
    """

    def __init__(self, *, window_s: float = 600.0, max_open_s: float = 86_400.0, rate_limit: int = 20,
                 max_event_ids: int = 20, max_known: int = 100_000) -> None:
        if not window_s > 0 or max_open_s < window_s or rate_limit < 1 or max_event_ids < 1 or max_known < 1:
            raise ValueError(f"need window_s > 0, max_open_s >= window_s, rate_limit >= 1, max_event_ids >= 1, "
                             f"max_known >= 1; got {window_s}, {max_open_s}, {rate_limit}, {max_event_ids}, "
                             f"{max_known}")
        self.window_s, self.max_open_s = float(window_s), float(max_open_s)
        self.rate_limit, self.max_event_ids = int(rate_limit), int(max_event_ids)
        self.groups: dict[str, _Group] = {}
        self.max_known = int(max_known)
        self.known: dict[str, None] = {}  # alert ids seen, oldest first (an ordered set)
        self.opened: dict[str, list[float]] = {}  # entity → times it opened groups within the window
        self.watermark = -math.inf
        self._changed: set[str] = set()
        self._removed: set[str] = set()

    def __len__(self) -> int:
        return len(self.groups)

    # ------------------------------------------------------------------ batches
    def process(self, alerts: Sequence[Mapping[str, Any]]) -> DedupOutcome:
        """Fold a batch of alerts (stream order) into the open groups; return what to publish."""
        out = DedupOutcome()
        touched: dict[int, _Group] = {}  # by identity, in first-touch order (a group may close later in the batch)
        for raw in alerts:
            t = event_time(raw.get("last_seen") or raw["time"])
            self._expire(max(self.watermark, t))
            if str(raw["alert_id"]) in self.known:
                out.repeated += 1
                continue
            self._know(str(raw["alert_id"]))
            key = group_key(raw)
            g = self._open_group(key, t)
            if g is None and self._limited(_entity_of(key), t):
                key = self._overflow_key(key)
                g = self._open_group(key, t)
                out.rate_limited += 1
            if g is None:
                self.groups[key] = self._start(raw, t, rate_limited=key.endswith("|" + RATE_LIMITED))
                if not key.endswith("|" + RATE_LIMITED):
                    self.opened.setdefault(_entity_of(key), []).append(t)
                    self._changed.add("r:" + _entity_of(key))
                out.new += 1
            else:
                self._fold(g, raw, t)
                out.folded += 1
            self._changed.add("o:" + key)
            g = self.groups[key] = self.groups.pop(key)  # to the end: groups are kept in touch order
            g.touched = self.watermark
            touched.setdefault(id(g), g)
        for g in touched.values():
            doc = copy.deepcopy(g.alert)
            if g.published:
                doc["update"] = True
            g.published = True
            out.published.append(doc)
        return out

    def _know(self, ident: str) -> None:
        self.known[ident] = None
        self._changed.add("k:" + ident)
        while len(self.known) > self.max_known:
            old = next(iter(self.known))
            del self.known[old]
            self._changed.discard("k:" + old)
            self._removed.add("k:" + old)

    def _open_group(self, key: str, t: float) -> _Group | None:
        g = self.groups.get(key)
        if g is None or t - g.last_t > self.window_s or g.first_t - t > self.window_s \
                or max(t, g.last_t) - min(t, g.first_t) > self.max_open_s:
            return None  # too far after (or, arriving late, before) the group's alerts
        return g

    def _limited(self, entity: str, t: float) -> bool:
        recent = [x for x in self.opened.get(entity, []) if t - x <= self.window_s]
        if len(recent) != len(self.opened.get(entity, [])):
            self.opened[entity] = recent
            self._changed.add("r:" + entity)
        return len(recent) >= self.rate_limit

    @staticmethod
    def _overflow_key(key: str) -> str:
        kind, entity, _ = key.split("|", 2)
        return f"{kind}|{entity}|{RATE_LIMITED}"

    def _start(self, raw: Mapping[str, Any], t: float, *, rate_limited: bool) -> _Group:
        doc = copy.deepcopy(dict(raw))
        doc["count"] = int(doc.get("count", 1))
        if rate_limited:  # its own id: the overflow of this entity and kind from this alert on
            doc["alert_id"] = alert_id(str(doc["kind"]), f"rate-limited|{group_key(raw)}|{doc['alert_id']}",
                                       str(doc.get("model_version", "")))
            doc["rate_limited"] = True
            ent = doc.get("entity") or {}
            # one fact: the entity's alerts of this kind are held back here (the first one's title named the
            # entity again, and later ones fold in: its explanation stays in the document)
            doc["title"] = (f"More {readable(doc['kind'])} alerts on {ent.get('type')} {ent.get('id')} than the "
                            f"rate limit ({self.rate_limit} per {self.window_s:.0f} s)")
        ev = doc.setdefault("evidence", {})
        ev["event_ids"] = list(ev.get("event_ids") or [])[: self.max_event_ids]
        return _Group(alert=doc, first_t=t, last_t=t)

    def _fold(self, g: _Group, raw: Mapping[str, Any], t: float) -> None:
        doc = g.alert
        doc["count"] = int(doc["count"]) + int(raw.get("count", 1))
        if t >= g.last_t:
            g.last_t = t
            doc["last_seen"] = raw.get("last_seen") or raw["time"]
        if t < g.first_t:  # arrived late
            g.first_t = t
            doc["first_seen"] = raw.get("first_seen") or raw["time"]
        score = float(raw.get("score", 0.0))
        if score > float(doc["score"]):
            doc["score"] = round(score, 2)
            event = raw.get("event") or {}
            doc["severity"] = max(doc["severity"], alert_severity(score, event.get("severity")),
                                  key=SEVERITIES.index)
        ids = doc["evidence"]["event_ids"]
        for eid in (raw.get("evidence") or {}).get("event_ids") or []:
            if len(ids) >= self.max_event_ids:
                break
            if eid not in ids:
                ids.append(eid)

    def _expire(self, watermark: float) -> None:
        """Close the groups the watermark has left ``window_s`` behind. Groups are kept in touch order, and a
        group's ``max(last_t, touched)`` is the watermark when it was last touched (an alert's time is never
        above it), so it rises along the order: the closed ones are a prefix, and the scan stops at the first
        group still open (one check per alert instead of one per open group). A group never spans more than
        ``max_open_s``: :meth:`_open_group` refuses a fold that would make it."""
        self.watermark = watermark
        while self.groups:
            key, g = next(iter(self.groups.items()))
            if watermark - max(g.last_t, g.touched) <= self.window_s:
                break
            del self.groups[key]
            self._removed.add("o:" + key)
            self._changed.discard("o:" + key)

    # ------------------------------------------------------------------ state as records
    def take_records(self) -> list[tuple[str, dict[str, Any] | None]]:
        """Records changed since the last call: ``o:<group>`` (open groups), ``r:<entity>`` (rate
        limit), ``k:<alert id>`` (alert ids seen), ``None`` for a deleted key, and the meta record ``m`` last."""
        out: list[tuple[str, dict[str, Any] | None]] = [(k, None) for k in sorted(self._removed)]
        for k in sorted(self._changed):
            if k.startswith("o:"):
                g = self.groups.get(k[2:])
                out.append((k, g.plain() if g is not None else None))
            elif k.startswith("k:"):
                out.append((k, {"k": 1}))
            else:
                times = self.opened.get(k[2:], [])
                out.append((k, {"times": times} if times else None))
        self._changed.clear()
        self._removed.clear()
        out.append(("m", {"watermark": self.watermark if math.isfinite(self.watermark) else None}))
        return out

    def load_records(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Rebuild from the latest value of each record key (deleted keys absent). Returns the open groups."""
        self.groups, self.opened, self.watermark, self.known = {}, {}, -math.inf, {}
        for key, value in records:
            if key.startswith("o:"):
                touched = value.get("touched")
                self.groups[key[2:]] = _Group(alert=dict(value["alert"]), first_t=float(value["first_t"]),
                                              last_t=float(value["last_t"]), published=bool(value["published"]),
                                              touched=float(touched) if touched is not None else -math.inf)
            elif key.startswith("r:"):
                self.opened[key[2:]] = [float(x) for x in value["times"]]
            elif key.startswith("k:"):
                self.known[key[2:]] = None
            elif key == "m" and value.get("watermark") is not None:
                self.watermark = float(value["watermark"])
        # touch order, as process() keeps it (see _expire)
        self.groups = dict(sorted(self.groups.items(), key=lambda kv: max(kv[1].last_t, kv[1].touched)))
        self._changed.clear()
        self._removed.clear()
        return len(self.groups)

