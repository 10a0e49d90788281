"""Alert v1 models (``alert.v1.json``) and the packaged JSON Schema files.

Split from :mod:`schemas.models` (which re-exports everything here); pure: stdlib,
pydantic and jsonschema only.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from schemas.errors import SecstreamError
from schemas.models import _RFC3339, AlertKind, AlertSeverity, EntityType, Outcome, SecurityEvent

__all__ = [
    "Alert", "AlertConfidenceBasis", "AlertEntity", "AlertEventSummary", "AlertEvidence", "AlertExplanation",
    "AlertNeighbour", "AlertTemplateFrequency", "AlertTopTerm", "AlertTransition", "WarmupReason", "load_schema",
    "validate_alert",
]


# --------------------------------------------------------------------------- Alert


def _rfc3339(v: str) -> str:
    if _RFC3339.fullmatch(v) is None:
        raise ValueError(f"{v[:64]!r} is not an RFC 3339 date-time with offset")
    return v


DateTimeStr = Annotated[str, AfterValidator(_rfc3339)]
Number = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AlertEntity(_Strict):
    """The entity an alert is about."""

    type: EntityType
    id: str


class AlertEvidence(_Strict):
    """What the alert is based on: the event ids and/or the session id."""

    event_ids: list[str]
    session_id: str | None


class AlertNeighbour(_Strict):
    """A nearest baseline neighbour: point id, similarity and a short payload summary."""

    id: str
    similarity: Number
    summary: str


class AlertTopTerm(_Strict):
    """A top sparse term and its weight."""

    term: str
    weight: Number


Count = Annotated[int, Field(ge=0)]
Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
#: a warm-up that applies to a score (see ``warmup_reasons`` in alert.v1.json)
WarmupReason = Literal["stream", "template", "entity"]


class AlertTemplateFrequency(_Strict):
    """How often the template was seen before: ``count`` sightings, their ``share`` of all."""

    count: Count
    share: Unit


class AlertTransition(_Strict):
    """An unusual template transition of a session (``from`` is a Python keyword: the field is ``from_``)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    from_id: str | None = None
    to_id: str | None = None
    probability: Unit
    surprise: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class AlertConfidenceBasis(_Strict):
    """What the confidence rests on (absent facts do not apply to the alert's kind)."""

    history: Count | None = None
    neighbours: Count | None = None
    support: Count | None = None
    density: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    template_seen: Count | None = None
    entity_seen: Count | None = None
    factors: dict[str, Unit] | None = None


class AlertConfirmedLike(_Strict):
    """The analyst-confirmed alert (true_positive verdict) whose evidence this one resembles."""

    alert_id: str
    verdict: Literal["true_positive"]
    similarity: Number
    note: str | None = None


class AlertExplanation(_Strict):
    """Why the alert fired: per-component contributions, neighbours, terms, template (and its
    frequency), a session's unusual transitions."""

    components: dict[str, Number]
    neighbours: list[AlertNeighbour]
    top_terms: list[AlertTopTerm]
    template: str | None
    template_id: str | None
    template_frequency: AlertTemplateFrequency | None = None
    transitions: list[AlertTransition] | None = None
    confirmed_like: AlertConfirmedLike | None = None


class AlertEventSummary(_Strict):
    """Short summary of the triggering event (message truncated)."""

    source: str | None = None
    event_type: str | None = None
    host: str | None = None
    user: str | None = None
    src_ip: str | None = None
    dst_ip: str | None = None
    dst_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    outcome: Outcome | None = None
    process: str | None = None
    message: str | None = None

    @classmethod
    def from_event(cls, event: SecurityEvent, max_message: int = 256) -> AlertEventSummary:
        """Summarize an event, truncating the message to ``max_message`` characters."""
        msg = event.message if len(event.message) <= max_message else event.message[: max_message - 1] + "…"
        return cls(source=event.source, event_type=event.event_type, host=event.host, user=event.user,
                   src_ip=event.src_ip, dst_ip=event.dst_ip, dst_port=event.dst_port,
                   outcome=event.outcome, process=event.process, message=msg)


class Alert(_Strict):
    """Alert v1 (``alert.v1.json``). ``Alert.model_validate(obj)`` parses one; :meth:`to_dict` renders one."""

    schema_version: Literal["1"] = "1"
    alert_id: Annotated[str, Field(min_length=1)]
    kind: AlertKind
    time: DateTimeStr
    first_seen: DateTimeStr
    last_seen: DateTimeStr
    count: Annotated[int, Field(ge=1)]
    update: bool | None = None
    rate_limited: bool | None = None
    score: Annotated[float, Field(ge=0, le=100)]
    threshold: Annotated[float, Field(ge=0, le=100)] | None = None
    severity: AlertSeverity
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    warmup: bool | None = None
    warmup_reasons: list[WarmupReason] | None = None
    confidence_basis: AlertConfidenceBasis | None = None
    title: str
    entity: AlertEntity
    evidence: AlertEvidence
    explanation: AlertExplanation
    event: AlertEventSummary | None = None
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict as published; absent optional fields (event, confidence, warmup, warmup_reasons,
        confidence_basis, update, rate_limited, threshold, the explanation's template_frequency, transitions
        and confirmed_like) are omitted."""
        out = self.model_dump(mode="json", by_alias=True)
        for key in ("event", "confidence", "warmup", "warmup_reasons", "confidence_basis", "update", "rate_limited",
                    "threshold"):
            if out.get(key) is None:
                out.pop(key, None)
        for key in ("template_frequency", "transitions", "confirmed_like"):
            if out["explanation"].get(key) is None:
                out["explanation"].pop(key, None)
        if out["explanation"].get("confirmed_like"):
            out["explanation"]["confirmed_like"] = {k: v for k, v in out["explanation"]["confirmed_like"].items()
                                                    if v is not None}
        for key in ("event", "confidence_basis"):
            if out.get(key):
                out[key] = {k: v for k, v in out[key].items() if v is not None}
        return out


# --------------------------------------------------------------------------- JSON Schema files


@cache
def _load(name: str) -> dict[str, Any]:
    fname = name if name.endswith(".json") else f"{name}.json"
    text = resources.files("schemas").joinpath(fname).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def load_schema(name: str) -> dict[str, Any]:
    """Load a packaged JSON Schema by name (``"alert.v1"`` or ``"alert.v1.json"``); returns a fresh copy."""
    try:
        return copy.deepcopy(_load(name))
    except FileNotFoundError as exc:
        raise SecstreamError(f"no packaged schema {name!r}; known: security_event.v1, alert.v1") from exc


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_load(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def validate_alert(obj: dict[str, Any]) -> None:
    """Validate ``obj`` against ``alert.v1.json``; raise :class:`SecstreamError` naming the first problem."""
    err = jsonschema.exceptions.best_match(_validator("alert.v1").iter_errors(obj))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        raise SecstreamError(f"alert does not match alert.v1.json at {where}: {err.message}")
