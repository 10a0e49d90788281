"""Alert v1 documents (schemas/alert.v1.json) from scored events. Pure.

Alert ids are deterministic (a UUIDv5 of kind, evidence and model version), so a
replayed or re-delivered event produces the same alert id: consumers can
de-duplicate on it under at-least-once delivery.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

ALERT_NAMESPACE = uuid.UUID("6f1c1f3e-8a4b-5d2e-9c7a-2b3d4e5f6a7b")
SEVERITIES = ("informational", "low", "medium", "high", "critical")
_EVENT_SEVERITY_RANK = {"unknown": 0, "informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
SUMMARY_FIELDS = ("source", "event_type", "host", "user", "src_ip", "dst_ip", "dst_port", "outcome", "process")


def alert_id(kind: str, evidence: str, model_version: str) -> str:
    """Deterministic id of the alert of ``kind`` raised on ``evidence``."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{kind}|{evidence}|{model_version}"))


def alert_severity(score: float, event_severity: str | None = None) -> str:
    """Severity from the calibrated score, raised one step for events the source marked high/critical."""
    if score >= 98:
        level = 3
    elif score >= 95:
        level = 2
    else:
        level = 1
    if _EVENT_SEVERITY_RANK.get(event_severity or "unknown", 0) >= 3:
        level += 1
    return SEVERITIES[min(level, 4)]


def event_summary(event: Mapping[str, Any], max_message: int = 160) -> dict[str, Any]:
    """Short, safe summary of an event for alerts and neighbour lists."""
    out: dict[str, Any] = {k: event[k] for k in SUMMARY_FIELDS if event.get(k) is not None}
    message = str(event.get("message", ""))
    out["message"] = message if len(message) <= max_message else message[: max_message - 1] + "…"
    return out


def summary_line(event: Mapping[str, Any], max_len: int = 140) -> str:
    """One-line text summary, e.g. for a neighbour in an explanation."""
    head = " ".join(f"{k}={event[k]}" for k in ("source", "event_type", "host", "user", "src_ip", "outcome")
                    if event.get(k) is not None)
    line = f"{head}: {event.get('message', '')}" if head else str(event.get("message", ""))
    return line if len(line) <= max_len else line[: max_len - 1] + "…"


#: Field names as a person reads them in a title (the rest are read as they are: "process", "protocol").
FIELD_WORDS = {"dst_port": "destination port", "src_port": "source port", "dst_ip": "destination address",
               "src_ip": "source address", "event_type": "event type"}
# streams/adapters/windows.py names the event ids it knows (4624 "authentication", Sysmon 1 "process_start");
# any other id is kept as the code ``windows_event_<id>`` (or ``windows_event_unknown``)
_WINDOWS_CODE = re.compile(r"windows_event_([0-9]+|unknown)")


def readable(value: Any, source: Any = None) -> str:
    """A code as words for a title: ``windows_event_5857`` -> "Windows event 5857" ("Sysmon event 16" when
    ``source`` is sysmon), ``process_start`` -> "process start"; other values unchanged."""
    text = str(value)
    if m := _WINDOWS_CODE.fullmatch(text):
        log = "Sysmon" if source == "sysmon" else "Windows"
        return f"{log} event {m[1]}" if m[1] != "unknown" else f"{log} event (unknown id)"
    return text.replace("_", " ") if re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", text) else text


def event_words(event: Mapping[str, Any]) -> str:
    """What happened, in words: the event type (else the source) with its code spelled out."""
    return readable(event.get("event_type") or event.get("source") or "event", event.get("source"))


def title_for(event: Mapping[str, Any], rare: Any = None) -> str:
    """Short human title: one fact, each value once, no score (the alert's ``score`` field says it).

    Names the rare value when that is what made the event unusual ("First-seen process
    mimikatz.exe in process start for srahman"); the event type or the entity is left out
    where it is that value.
    """
    what_raw = event.get("event_type") or event.get("source") or "event"
    who = event.get("user") or event.get("host") or event.get("src_ip") or "unknown entity"
    what = event_words(event)
    if rare is None:
        return f"Unusual {what} for {who}"
    value = str(rare.value)
    label = FIELD_WORDS.get(rare.field, rare.field.replace("_", " "))
    shown = readable(value, event.get("source")) if rare.field in ("event_type", "source") else value
    if rare.seen == 0:
        head = f"First-seen {label} {shown}"
    else:
        head = f"Rare {label} {shown} (seen {'once' if rare.seen == 1 else f'{rare.seen} times'} before)"
    where = "" if value == str(what_raw) else f" in {what}"  # the rare value is the event type: said once
    whom = "" if value == str(who) else f" for {who}"
    return head + where + whom


def event_alert(
    *,
    event: Mapping[str, Any],
    entity: tuple[str, str],
    score: float,
    confidence: float,
    warmup: bool,
    components: Mapping[str, float],
    neighbours: Sequence[Mapping[str, Any]],
    terms: Sequence[Mapping[str, Any]],
    template: str | None,
    template_id: str | None,
    model_version: str,
    rare: Any = None,
    warmup_reasons: Sequence[str] | None = None,
    confidence_basis: Mapping[str, Any] | None = None,
    template_frequency: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``event_anomaly`` alert for one event (``event`` is the SecurityEvent as a dict).

    ``warmup_reasons``, ``confidence_basis`` (:mod:`detection.confidence`) and
    ``template_frequency`` (``{"count", "share"}``: earlier events with the template)
    are published when given.
    """
    event_id = str(event["event_id"])
    explanation: dict[str, Any] = {
        "components": {k: round(float(v), 4) for k, v in components.items()},
        "neighbours": [dict(n) for n in neighbours],
        "top_terms": [dict(t) for t in terms],
        "template": template,
        "template_id": template_id,
    }
    if template_frequency is not None:
        explanation["template_frequency"] = dict(template_frequency)
    return {
        "schema_version": "1",
        "alert_id": alert_id("event_anomaly", event_id, model_version),
        "kind": "event_anomaly",
        "time": event["time"],
        "first_seen": event["time"],
        "last_seen": event["time"],
        "count": 1,
        "score": round(float(score), 2),
        "severity": alert_severity(score, event.get("severity")),
        "confidence": round(float(confidence), 3),
        "warmup": bool(warmup),
        **({"warmup_reasons": list(warmup_reasons)} if warmup_reasons is not None else {}),
        **({"confidence_basis": dict(confidence_basis)} if confidence_basis is not None else {}),
        "title": title_for(event, rare=rare),
        "entity": {"type": entity[0], "id": entity[1]},
        "evidence": {"event_ids": [event_id], "session_id": event.get("session_id")},
        "explanation": explanation,
        "event": event_summary(event),
        "model_version": model_version,
    }
