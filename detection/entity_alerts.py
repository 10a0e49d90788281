"""How the entity score joins the event score, and the ``event_anomaly`` alert it can raise. Pure.

**Join** (:func:`joined_score`). Both scores are calibrated tails: a score ``s`` (0–100)
stands for a tail probability ``p = 10^(−decades·s/100)``. The two are combined by
Fisher's method, ``X = −2(ln p_event + ln p_entity) ~ χ²₄``, so ``p = e^(−X/2)(1 + X/2)``,
mapped back to a score; the joined score is the larger of that and the event's own
score (an entity can raise an event, never hide it). So an event that is only
somewhat unusual for the population (say 40–60) but far from what this user does
(entity score near 100) crosses the threshold, while a common event (score near 0)
never alerts on the entity score alone: one centroid per entity cannot say "never
done before" for an entity with many behaviours (a server host), only "far from
its mean", and on OpenSSH letting that alone alert added 26 alerts to 2,000 lines.

The alert has the id the event's own alert would have (kind, event id, model
version), so an event alerted on both its event score and an entity score, or on
two of its entities, is one alert on the keyed alerts topic (the last one wins).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from detection.alerts import alert_id, alert_severity, event_words
from detection.entity_drift import ALERT_ENTITY_TYPES
from detection.entity_groups import EntityKey
from detection.explain import component_shares

__all__ = ["entity_event_alert", "joined_score"]


def joined_score(event_score: float, entity_score: float, decades: float = 2.0) -> float:
    """``max(event, fisher(event, entity))`` on the 0–100 scale; see the module docstring."""
    ln10 = math.log(10.0)
    x = 2.0 * decades * ln10 * (max(event_score, 0.0) + max(entity_score, 0.0)) / 100.0  # −2 Σ ln p
    p = math.exp(-x / 2.0) * (1.0 + x / 2.0)
    combined = 100.0 * -math.log10(max(p, 1e-300)) / decades
    return float(min(100.0, max(event_score, combined)))


def entity_event_alert(*, event: Mapping[str, Any], event_id: str, time: str, entity: EntityKey,
                       score: float, entity_score: float, event_score: float, distance: float, version: int, basis: str,
                       vector: np.ndarray, reference: np.ndarray, parts: Mapping[str, slice],
                       template: str | None, template_id: str | None, model_version: str,
                       confidence: float = 1.0, session_id: str | None = None,
                       severity: str | None = None) -> dict[str, Any]:
    """The alert for an event whose joined ``score`` reached the threshold through its entity score.

    ``event`` is the event summary (``detection.alerts.event_summary``; ``severity`` the source's
    severity of the event, raising the alert's by one step when high), ``vector`` the
    event vector, ``reference`` the entity embedding it was compared with (version
    ``version``, ``basis`` "own" or "previous"); ``parts`` names the hybrid components
    for the explanation of what differs.
    """
    kind, ident = entity
    ent = {"type": kind, "id": ident} if kind in ALERT_ENTITY_TYPES else {"type": "unknown", "id": f"{kind}:{ident}"}
    what = event_words(event)
    shares = component_shares(np.asarray(vector, dtype=np.float32), np.asarray(reference, dtype=np.float32)[None, :],
                              parts)
    similarity = round(1.0 - float(distance), 4)
    which = "its latest version" if basis == "own" else "the version before its latest"
    return {
        "schema_version": "1",
        "alert_id": alert_id("event_anomaly", event_id, model_version),
        "kind": "event_anomaly",
        "time": time,
        "first_seen": time,
        "last_seen": time,
        "count": 1,
        "score": round(float(score), 2),
        "severity": alert_severity(score, severity),
        "confidence": round(float(confidence), 3),
        "warmup": False,
        # the confidence is the entity's age (its committed versions, full from 5 on): below 1 it is warming up
        "warmup_reasons": ["entity"] if confidence < 1.0 else [],
        "confidence_basis": {"entity_seen": int(version), "factors": {"entity": round(float(confidence), 3)}},
        # no score in the title: the alert's score field says it (it can rise when dedup folds a later copy in),
        # and the population and entity scores are the explanation's top terms
        "title": f"Unusual {what} for {kind} {ident}, unlike its own behaviour",
        "entity": ent,
        "evidence": {"event_ids": [event_id], "session_id": session_id},
        "explanation": {
            "components": {k: round(float(v), 4) for k, v in shares.items()},
            "neighbours": [{"id": f"{kind}:{ident}", "similarity": similarity,
                            "summary": f"{kind} {ident}'s embedding, version {version} ({which} committed "
                                       f"before this event's window)"}],
            "top_terms": [{"term": f"distance {distance:.3f} from {kind} {ident}'s usual behaviour "
                                   f"(entity score {entity_score:.0f})", "weight": round(float(entity_score) / 100, 4)},
                          {"term": f"score for the population {event_score:.0f}",
                           "weight": round(float(event_score) / 100.0, 4)}],
            "template": template,
            "template_id": template_id,
        },
        "event": dict(event),
        "model_version": model_version,
    }
