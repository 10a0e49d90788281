"""Alerts as OCSF Detection Findings (class 2004, category 2 "Findings", OCSF 1.3). Pure.

``SECSTREAM_ALERT_FORMAT=ocsf`` makes the worker publish this rendering instead of
alert v1. The mapping:

- ``activity_id`` 1 Create for a new alert, 2 Update for a dedup update (same
  ``finding_info.uid`` = our ``alert_id``, higher ``count``); ``type_uid`` =
  2004 × 100 + activity;
- ``time`` (epoch ms) of the alert, ``finding_info.first_seen_time`` /
  ``last_seen_time`` its first and last occurrence, ``count`` the occurrences;
- ``severity_id`` from our severity (informational 1 … critical 5), ``risk_score``
  the 0–100 score, ``confidence_score`` the confidence × 100;
- ``finding_info``: ``uid``, ``title``, ``types`` [kind], ``analytic`` (type 5,
  "Statistical", named after the kind), ``related_events`` (the evidence event ids);
- the entity as ``actor.user`` (user), ``device`` (host) or ``src_endpoint.ip`` (address);
- ``evidences``: one per evidence event id, with the event summary when there is one;
- ``unmapped.secstream``: what OCSF has no place for (explanation, model version,
  session id, warm-up and its reasons, the confidence basis, rate limit).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detection.times import event_time

__all__ = ["OCSF_VERSION", "to_ocsf"]

OCSF_VERSION = "1.3.0"
CLASS_UID, CATEGORY_UID = 2004, 2
_SEVERITY_ID = {"unknown": 0, "informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


def _ms(value: Any) -> int:
    return int(round(event_time(value) * 1000))


def to_ocsf(alert: Mapping[str, Any], *, product_version: str = "") -> dict[str, Any]:
    """The OCSF Detection Finding of an alert v1 document (see the module docstring)."""
    activity = 2 if alert.get("update") else 1
    ent = alert.get("entity") or {}
    evidence = alert.get("evidence") or {}
    event = alert.get("event") or {}
    ids = list(evidence.get("event_ids") or [])
    out: dict[str, Any] = {
        "class_uid": CLASS_UID, "class_name": "Detection Finding", "category_uid": CATEGORY_UID,
        "category_name": "Findings", "activity_id": activity, "activity_name": ("Create", "Update")[activity - 1],
        "type_uid": CLASS_UID * 100 + activity, "time": _ms(alert["time"]),
        "severity_id": _SEVERITY_ID.get(str(alert.get("severity")), 0),
        "severity": str(alert.get("severity", "unknown")).capitalize(),
        "status_id": 1, "status": "New", "is_alert": True, "count": int(alert.get("count", 1)),
        "risk_score": int(round(float(alert.get("score", 0.0)))), "message": alert.get("title", ""),
        "metadata": {"version": OCSF_VERSION, "uid": alert["alert_id"],
                     "product": {"name": "secstream", "vendor_name": "secstream",
                                 **({"version": product_version} if product_version else {})}},
        "finding_info": {
            "uid": alert["alert_id"], "title": alert.get("title", ""), "types": [alert["kind"]],
            "first_seen_time": _ms(alert["first_seen"]), "last_seen_time": _ms(alert["last_seen"]),
            "analytic": {"type_id": 5, "type": "Statistical", "name": f"secstream {alert['kind']}",
                         "uid": str(alert.get("model_version", ""))},
            "related_events": [{"uid": i} for i in ids],
        },
        "evidences": [{"data": {"event_id": i, **(dict(event) if n == 0 else {})}}
                      for n, i in enumerate(ids)] or [{"data": {"session_id": evidence.get("session_id")}}],
        "unmapped": {"secstream": {k: alert[k] for k in ("explanation", "model_version", "warmup", "warmup_reasons",
                                                         "confidence_basis", "rate_limited", "threshold")
                                   if k in alert}
                     | {"entity": dict(ent), "session_id": evidence.get("session_id")}},
    }
    if alert.get("confidence") is not None:
        out["confidence_score"] = int(round(float(alert["confidence"]) * 100))
    etype, eid = ent.get("type"), ent.get("id")
    if etype == "user":
        out["actor"] = {"user": {"name": eid}}
    elif etype == "host":
        out["device"] = {"hostname": eid, "type_id": 0}
    elif etype == "src_ip":
        out["src_endpoint"] = {"ip": eid}
    if event.get("host") and "device" not in out:
        out["device"] = {"hostname": event["host"], "type_id": 0}
    return out
