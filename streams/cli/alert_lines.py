"""One readable terminal line per alert (v1 or OCSF): `secstream alerts` and the worker's live printer.

A line starts with the alert's id (its first 8 characters unless told otherwise: the id `secstream feedback`
takes) and ends with its count (``x3``) when the alert stands for more than one raised alert.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from detection.times import iso_time
from streams.cli.alert_lookup import SHORT_ID


def alert_id_of(alert: dict[str, Any]) -> str:
    """The alert id of a v1 alert or of an OCSF finding (``finding_info.uid``)."""
    if "class_uid" in alert:
        return str((alert.get("finding_info") or {}).get("uid") or (alert.get("metadata") or {}).get("uid") or "")
    return str(alert.get("alert_id") or "")


def v1_view(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert as v1 fields: itself, or the v1 fields an OCSF Detection Finding (detection/ocsf.py) carries."""
    if "class_uid" not in alert:
        return alert
    info, extra = alert.get("finding_info", {}), alert.get("unmapped", {}).get("secstream", {})
    types = info.get("types") or [""]
    return {"alert_id": alert_id_of(alert), "kind": types[0],
            "time": iso_time(alert["time"] / 1000) if alert.get("time") else "",
            "severity": str(alert.get("severity", "")).lower(),
            "score": alert.get("risk_score", 0), "entity": extra.get("entity", {}),
            "explanation": extra.get("explanation", {}), "title": info.get("title", ""),
            "count": alert.get("count", 1), "update": alert.get("activity_id") == 2,
            "warmup_reasons": extra.get("warmup_reasons"),
            "confidence": alert["confidence_score"] / 100 if alert.get("confidence_score") is not None else None}


def format_alert_line(alert: dict[str, Any], ids: Callable[[str], str] | None = None) -> str:
    """One readable line per alert (v1 or OCSF) for a terminal. ``ids`` shows the alert id (default: its first
    :data:`SHORT_ID` characters; ``str`` shows it whole)."""
    shown = (ids or (lambda i: i[:SHORT_ID]))(alert_id_of(alert)) or "-"
    alert = v1_view(alert)
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
    return (f"{shown}  {alert.get('time', '')[:19]}  {alert.get('severity', ''):<8} {alert.get('score', 0):6.1f}  "
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
