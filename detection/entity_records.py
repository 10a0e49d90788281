"""An :class:`~detection.entity_tracker.EntityTracker` as a set of small keyed records. Pure.

The worker keeps entity state in a changelog-backed table (``streams.worker.entity_agent``):
rewriting a whole tracker (≈ 12 KiB per entity) after every batch would not scale,
so the state is cut into records that change independently, and each batch writes
only the ones it changed (:func:`take_records`):

- ``e:<type>:<id>``: one committed entity (base, slice rows, previous version,
  drift averages), written when a window commits it, deleted when evicted;
- ``g:<type>:<group>``: one peer group (sum and count of its members' unit bases,
  the means it published at its last two commits), written when it changes;
- ``a:<window start>:<type>:<id>``: one open (window, entity) accumulator (float64
  sum, count, first event ids), written when a batch adds to it, deleted at close;
- ``m``: the rest (watermark, counters, the drift and entity-score calibrators),
  every time.

Values are plain data (JSON-able; arrays as base64, :mod:`detection.plain`), never
pickle. :func:`load_records` rebuilds a tracker from the latest value of each key.
Record keys contain ``:`` only as separators before the id, so an IPv6 id is fine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from detection.calibration import TailCalibrator
from detection.entity_groups import EntityKey
from detection.entity_tracker import EntityTracker
from detection.entity_windows import _Open
from detection.plain import b64, unb64

__all__ = ["META", "Record", "load_records", "take_records"]

META = "m"
Record = tuple[str, dict[str, Any] | None]


def _num(x: float) -> float | None:
    """A float for JSON: ±inf and nan as ``None``."""
    return float(x) if math.isfinite(x) else None


def _entity(tracker: EntityTracker, key: EntityKey) -> dict[str, Any]:
    t = tracker.table
    r = t.row(key)
    assert r is not None
    return {"r": "e", "k": list(key), "base": b64(t.base[r], "<f4"), "adj": b64(t.adj[:, r], "<f4"),
            "prev_base": b64(t.prev_base[r], "<f4"), "prev_adj": b64(t.prev_adj[r], "<f4"),
            "slice": int(t.last_slice[r]), "version": int(t.version[r]), "end": _num(float(t.end[r])),
            "prev_end": _num(float(t.prev_end[r])),
            "ew": [float(t.ew_move[r]), float(t.ew_peer[r]), float(t.ew_count[r])], "n": int(t.n_scored[r])}


def _group(tracker: EntityTracker, key: tuple[str, str]) -> dict[str, Any]:
    g = tracker.table.groups
    r = g.rows[key]
    return {"r": "g", "k": list(key), "sum": b64(g.sum[r], "<f8"), "count": int(g.count[r]),
            "cur": b64(g.cur[r], "<f4"), "prev": b64(g.prev[r], "<f4"),
            "cur_end": _num(float(g.cur_end[r])), "prev_end": _num(float(g.prev_end[r]))}


def _accumulator(tracker: EntityTracker, start: float, key: EntityKey) -> dict[str, Any] | None:
    w = tracker.windows._open.get(start)
    r = None if w is None else w.rows.get(key)
    if w is None or r is None:
        return None
    return {"r": "a", "s": start, "i": r, "k": list(key), "sum": b64(w.sums[r], "<f8"), "count": int(w.counts[r]),
            "ids": list(w.ids[r])}


def _meta(tracker: EntityTracker) -> dict[str, Any]:
    t, w = tracker.table, tracker.windows
    return {"r": META, "types": list(tracker.types), "dim": tracker.dim, "window_s": w.window_s,
            "slices": t.slices, "table_types": list(t.types), "evicted": t.evicted, "watermark": _num(w.watermark),
            "dropped": dict(w.dropped), "overflow": dict(w.overflow), "drift": tracker.drift.snapshot(),
            "event_cals": {k: cal.snapshot() for k, cal in tracker._event_cals.items()}}


def take_records(tracker: EntityTracker) -> list[Record]:
    """The records changed since the last call (``None``: delete), the meta record last; resets the change sets.

    Deletions come before writes, so a key deleted and written again in one batch ends written.
    """
    t, g, w = tracker.table, tracker.table.groups, tracker.windows
    out: list[Record] = []
    out += [(f"e:{k[0]}:{k[1]}", None) for k in sorted(t.removed)]
    out += [(f"g:{k[0]}:{k[1]}", None) for k in sorted(g.removed)]
    out += [(f"a:{s!r}:{k[0]}:{k[1]}", None) for s, k in sorted(w.removed)]
    out += [(f"e:{k[0]}:{k[1]}", _entity(tracker, k)) for k in sorted(t.changed) if k in t]
    out += [(f"g:{k[0]}:{k[1]}", _group(tracker, k)) for k in sorted(g.changed) if k in g.rows]
    for s, k in sorted(w.changed):
        value = _accumulator(tracker, s, k)
        if value is not None:
            out.append((f"a:{s!r}:{k[0]}:{k[1]}", value))
    for changes in (t.changed, t.removed, g.changed, g.removed, w.changed, w.removed):
        changes.clear()
    out.append((META, _meta(tracker)))
    return out


def _end(x: float | None, missing: float) -> float:
    return missing if x is None else float(x)


def load_records(tracker: EntityTracker, values: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Rebuild a fresh ``tracker`` from the latest value of each record (any order); returns counts per kind.

    Raises:
        ValueError: the records were written by a tracker of other types, width, window or slices.
    """
    by_kind: dict[str, list[Mapping[str, Any]]] = {"e": [], "g": [], "a": [], META: []}
    for v in values:
        by_kind.setdefault(str(v.get("r")), []).append(v)
    t, g, w = tracker.table, tracker.table.groups, tracker.windows
    for meta in by_kind[META][-1:]:
        if (list(meta["types"]) != list(tracker.types) or int(meta["dim"]) != tracker.dim
                or float(meta["window_s"]) != w.window_s or int(meta["slices"]) != t.slices):
            raise ValueError(f"entity records are of types {meta['types']}, dim {meta['dim']}, window "
                             f"{meta['window_s']} s, {meta['slices']} slices; this tracker: {list(tracker.types)}, "
                             f"{tracker.dim}, {w.window_s} s, {t.slices}")
        t.types = [str(x) for x in meta["table_types"]]
        t.evicted = int(meta["evicted"])
        w.watermark = _end(meta["watermark"], -math.inf)
        w.dropped.update({str(k): int(n) for k, n in meta["dropped"].items()})
        w.overflow.update({str(k): int(n) for k, n in meta["overflow"].items()})
        tracker.drift.restore(meta["drift"])
        for name, state in meta["event_cals"].items():
            cal = tracker._event_cals[str(name)] = TailCalibrator(scale=tracker.event_scale, decades=tracker.decades)
            cal.restore(state)
    for v in by_kind["g"]:
        r = g.row((str(v["k"][0]), str(v["k"][1])))
        g.sum[r], g.count[r] = unb64(v["sum"], "<f8"), int(v["count"])
        g.cur[r], g.prev[r] = unb64(v["cur"], "<f4", "<f4"), unb64(v["prev"], "<f4", "<f4")
        g.cur_end[r], g.prev_end[r] = _end(v["cur_end"], math.inf), _end(v["prev_end"], math.inf)
    entities = sorted(by_kind["e"], key=lambda v: _end(v["end"], -math.inf))  # LRU: least recent first
    entities = entities[-t.max_entities:]
    rows = t.allocate([(str(v["k"][0]), str(v["k"][1])) for v in entities])
    for r, v in zip(rows.tolist(), entities):
        t.base[r], t.prev_base[r] = unb64(v["base"], "<f4", "<f4"), unb64(v["prev_base"], "<f4", "<f4")
        t.adj[:, r] = unb64(v["adj"], "<f4", "<f4").reshape(t.slices, t.dim)
        t.prev_adj[r] = unb64(v["prev_adj"], "<f4", "<f4")
        t.last_slice[r], t.version[r] = int(v["slice"]), int(v["version"])
        t.end[r], t.prev_end[r] = _end(v["end"], -math.inf), _end(v["prev_end"], math.inf)
        t.ew_move[r], t.ew_peer[r], t.ew_count[r] = (float(x) for x in v["ew"])
        t.n_scored[r] = int(v["n"])
    for v in sorted(by_kind["a"], key=lambda v: (float(v["s"]), int(v["i"]))):  # rows in arrival order
        start, key = float(v["s"]), (str(v["k"][0]), str(v["k"][1]))
        acc = w._open.get(start)
        if acc is None:
            acc = w._open[start] = _Open(tracker.dim)
        r = acc.row(key)
        acc.sums[r] = unb64(v["sum"], "<f8")
        acc.counts[r] = int(v["count"])
        acc.ids[r] = [str(x) for x in v["ids"]]
    for changes in (t.changed, t.removed, g.changed, g.removed, w.changed, w.removed):
        changes.clear()
    return {"entities": len(entities), "groups": len(by_kind["g"]), "accumulators": len(by_kind["a"]),
            "meta": len(by_kind[META][-1:])}
