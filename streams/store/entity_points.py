"""Committed entity versions as points of the Qdrant ``entities`` collection: history you can query.

Every version a window commits is its own point, id ``point_id("entity:<type>:<id>:<version>")``,
so the history of an entity is the run of ids for versions 1..n (:func:`entity_history`,
no scan) and a replayed window rewrites the same points. The dense vector ``entity`` is
the committed unit base embedding (store-default quantization); :func:`similar_entities`
finds the entities (any version) closest to a vector, e.g. to an alerting event's.

Payload: ``entity`` ``{type, id}``, ``entity_type``, ``entity_id``, ``version``,
``window_start``/``window_end`` (RFC 3339) and ``window_start_epoch``/``window_end_epoch``,
``interactions`` (events in the window), ``new`` (first version, started from its peers),
``move`` (chord from the previous version), ``peer`` (chord from its peer group's mean,
null without peers), ``peer_group``, ``drift_score`` (0–100, 0 when not scored),
``drifted`` (at or above the alert level), ``model_version``, ``partition``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detection.entity_drift import DriftScores
from detection.entity_groups import EntityKey, unit_rows
from detection.entity_tracker import EntityTracker, WindowReport
from detection.times import iso_time
from streams.store import CollectionSpec, Hit, StorePoint, VectorStore, point_id

__all__ = ["DENSE", "ENTITIES", "entity_history", "entity_point_id", "entity_points", "entity_spec",
           "similar_entities"]

ENTITIES = "entities"
DENSE = "entity"


def entity_spec(dim: int) -> CollectionSpec:
    """The ``entities`` collection: one dense ``entity`` vector per committed version."""
    return CollectionSpec(name=ENTITIES, dense_dim=dim, dense_name=DENSE, sparse_name=None)


def entity_point_id(key: EntityKey, version: int) -> str:
    """The store id of version ``version`` of an entity."""
    return point_id(f"entity:{key[0]}:{key[1]}:{int(version)}")


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def entity_points(tracker: EntityTracker, report: WindowReport, *, alert_at: float, model_version: str,
                  partition: int = 0) -> list[StorePoint]:
    """The points of one closed window's committed versions (read right after the commit)."""
    c, d = report.commit, report.drift
    vectors = unit_rows(tracker.table.base[c.rows])
    return [StorePoint(id=entity_point_id(key, int(c.versions[i])), dense=vectors[i],
                       payload=_payload(key, i, report, d, alert_at, model_version, partition))
            for i, key in enumerate(c.keys)]


def _payload(key: EntityKey, i: int, report: WindowReport, d: DriftScores, alert_at: float, model_version: str,
             partition: int) -> dict[str, Any]:
    c = report.commit
    score = float(d.score[i])
    return {"entity": {"type": key[0], "id": key[1]}, "entity_type": key[0], "entity_id": key[1],
            "version": int(c.versions[i]), "window_start": iso_time(c.window_start),
            "window_end": iso_time(c.window_end), "window_start_epoch": float(c.window_start),
            "window_end_epoch": float(c.window_end), "interactions": int(report.counts[i]), "new": bool(c.new[i]),
            "move": round(float(c.move[i]), 6), "peer": _finite(round(float(c.peer[i]), 6)),
            "peer_group": c.peer_groups[i], "drift_score": round(score, 3),
            "drifted": bool(d.scored[i] and score >= alert_at), "model_version": model_version,
            "partition": int(partition)}


def entity_history(store: VectorStore, key: EntityKey, latest: int, *, limit: int = 100) -> list[Hit]:
    """The stored versions of ``key`` from ``latest`` back (at most ``limit``), oldest first.

    Versions evicted from the store or never stored are skipped.
    """
    first = max(1, int(latest) - limit + 1)
    ids = [entity_point_id(key, v) for v in range(first, int(latest) + 1)]
    return store.retrieve(ENTITIES, ids) if ids else []


def similar_entities(store: VectorStore, vector: np.ndarray, limit: int) -> list[Hit]:
    """Entity versions whose embedding is closest to ``vector`` (cosine), best first."""
    return store.search_dense(ENTITIES, np.asarray(vector, dtype=np.float32), limit)
