"""One readable terminal line per alert (v1 or OCSF): `secstream alerts` and the worker's live printer."""

from __future__ import annotations

from typing import Any

from detection.sessions import iso_time


def format_alert_line(alert: dict[str, Any]) -> str:
    """One readable line per alert (v1 or OCSF) for a terminal."""
    if "class_uid" in alert:  # OCSF Detection Finding (detection/ocsf.py): the v1 fields it carries
        info, extra = alert.get("finding_info", {}), alert.get("unmapped", {}).get("secstream", {})
        alert = {"time": iso_time(alert["time"] / 1000) if alert.get("time") else "", "severity": str(alert.get("severity", "")).lower(),
                 "score": alert.get("risk_score", 0), "entity": extra.get("entity", {}),
                 "explanation": extra.get("explanation", {}), "title": info.get("title", ""),
                 "count": alert.get("count", 1), "update": alert.get("activity_id") == 2,
                 "warmup_reasons": extra.get("warmup_reasons"),
                 "confidence": alert["confidence_score"] / 100 if alert.get("confidence_score") is not None else None}
    ent = alert.get("entity", {})
    explanation = alert.get("explanation", {})
    comps = explanation.get("components", {})
    terms = explanation.get("top_terms") or []
    if terms and not str(alert.get("title", "")).startswith("Unusual"):
        top = terms[0].get("term", "-")  # a rare value made it unusual: name it
    else:
        top = max(comps, key=comps.get) if comps else "-"  # the component that moved it most
    count = int(alert.get("count") or 1)
    times = f"  x{count}{' (update)' if alert.get('update') else ''}" if count > 1 or alert.get("update") else ""
    return (f"{alert.get('time', '')[:19]}  {alert.get('severity', ''):<8} {alert.get('score', 0):6.1f}  "
            f"{ent.get('type', '')}={ent.get('id', '')}  [{top}]  {alert.get('title', '')}{times}"
            f"{_trust_suffix(alert)}")


def _trust_suffix(alert: dict[str, Any]) -> str:
    """``  (warm-up: template, entity)`` when a warm-up applies, else ``  (low confidence 31%)`` below 50 %
    (a percentage rounded as OCSF's ``confidence_score``, so both formats print the same line)."""
    reasons = alert.get("warmup_reasons")
    if reasons:
        return f"  (warm-up: {', '.join(reasons)})"
    confidence = alert.get("confidence")
    if confidence is not None and float(confidence) < 0.5:
        return f"  (low confidence {round(float(confidence) * 100)}%)"
    return ""
