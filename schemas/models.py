"""Pydantic models of the wire contracts: SecurityEvent v1 and Alert v1.

The JSON Schema files next to this module (``security_event.v1.json``,
``alert.v1.json``) are the published contracts; these models implement them and
``tests/unit/test_schemas.py`` keeps both in agreement.

Input policy for events (strict, so that the DLQ tells producers what is wrong):

* ``time`` is an RFC 3339 string with an offset (``T`` separator) or epoch
  milliseconds (an integer, or a finite float); it becomes an aware UTC datetime.
* string fields take strings only; ports and counters take JSON integers only
  (``22`` and ``22.0`` are accepted, ``"22"`` and ``true`` are ``wrong_type``).
* ``null`` for an optional field means absent.
* unknown top-level fields are moved into ``attributes`` (non-scalar values as
  their JSON text, ``null`` dropped); ``attributes`` given explicitly win.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import math
import re
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Annotated, Any, Final, Literal, get_args

import jsonschema
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from schemas.errors import InvalidEvent, SecstreamError

__all__ = [
    "ENTITY_TYPES", "MAX_EVENT_BYTES", "MAX_MESSAGE_BYTES", "Alert", "AlertEntity", "AlertEventSummary",
    "AlertEvidence", "AlertExplanation", "AlertNeighbour", "AlertTopTerm", "SecurityEvent", "decode_event",
    "format_time", "load_schema", "parse_event", "validate_alert",
]

Severity = Literal["unknown", "informational", "low", "medium", "high", "critical"]
Outcome = Literal["success", "failure", "unknown"]
AlertKind = Literal["event_anomaly", "session_anomaly", "entity_drift"]
AlertSeverity = Literal["informational", "low", "medium", "high", "critical"]
EntityType = Literal["user", "host", "src_ip", "session", "process", "unknown"]
ENTITY_TYPES: Final[tuple[str, ...]] = get_args(EntityType)

MAX_MESSAGE_BYTES: Final = 65536
MAX_EVENT_BYTES: Final = 81920
_MIN_MS: Final = 0
_MAX_MS: Final = 7289654399999  # 2200-12-31T23:59:59.999Z
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


# --------------------------------------------------------------------------- field validators


def _err(reason: str, msg: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(reason, msg, ctx or None)


def _check_text(v: str) -> str:
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise _err("invalid_value", "string contains an unpaired surrogate") from None
    return v


def _strict_str(v: object) -> str:
    if not isinstance(v, str):
        raise _err("wrong_type", "expected a string, got {t}", t=type(v).__name__)
    return _check_text(v)


def _message(v: object) -> str:
    s = _strict_str(v)
    if len(s) * 4 > MAX_MESSAGE_BYTES and len(s.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise _err("too_large", "{n} bytes of UTF-8 exceeds {m}", n=len(s.encode("utf-8")), m=MAX_MESSAGE_BYTES)
    return s


def _int_in(lo: int, hi: int | None) -> Any:
    """A before-validator accepting JSON integers (int or integral float) in lo..hi."""

    def check(v: object) -> int:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _err("wrong_type", "expected an integer, got {t}", t=type(v).__name__)
        if isinstance(v, float):
            if not v.is_integer():
                raise _err("wrong_type", "expected an integer, got {v}", v=repr(v))
            v = int(v)
        if v < lo or (hi is not None and v > hi):
            raise _err("invalid_value", "{v} is not in {r}", v=v, r=f"{lo}..{'' if hi is None else hi}")
        return v

    return BeforeValidator(check)


def _duration(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _err("wrong_type", "expected a number, got {t}", t=type(v).__name__)
    if not math.isfinite(v) or v < 0:
        raise _err("invalid_value", "{v} is not a finite number >= 0", v=repr(v))
    return float(v)


def _ip(v: object) -> str:
    s = _strict_str(v)
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        raise _err("invalid_value", "{v} is not an IPv4 or IPv6 address", v=repr(s[:64])) from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        raise _err("invalid_value", "{v} has a zone index", v=repr(s[:64]))
    return str(addr)


def _enum(options: tuple[str, ...]) -> Any:
    def check(v: object) -> str:
        if not isinstance(v, str):
            raise _err("wrong_type", "expected a string, got {t}", t=type(v).__name__)
        if v not in options:
            raise _err("invalid_value", "{v} is not one of {o}", v=repr(v[:64]), o=", ".join(options))
        return v

    return BeforeValidator(check)


def _time(v: object) -> datetime:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise _err("wrong_type", "expected an RFC 3339 string or epoch milliseconds, got {t}", t=type(v).__name__)
    if isinstance(v, str):
        m = _RFC3339.fullmatch(v)
        if m is None:
            raise _err("invalid_value", "{v} is not an RFC 3339 date-time with offset", v=repr(v[:64]))
        y, mo, d, h, mi, s, frac, tz = m.groups()
        try:
            off = timedelta(0) if tz in ("Z", "z") else (1 if tz[0] == "+" else -1) * timedelta(
                hours=int(tz[1:3]), minutes=int(tz[4:6])
            )
            micro = int((frac or ".0")[1:7].ljust(6, "0"))
            local = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=UTC)
            dt = local - off
        except (ValueError, OverflowError):
            raise _err("invalid_value", "{v} is not a valid date-time", v=repr(v[:64])) from None
        if not 1970 <= dt.year <= 2200:
            raise _err("invalid_value", "{v} is outside years 1970..2200", v=repr(v[:64]))
        return dt
    if not (isinstance(v, int) or math.isfinite(v)) or not _MIN_MS <= v <= _MAX_MS:
        raise _err("invalid_value", "{v} epoch ms is outside years 1970..2200", v=repr(v))
    if isinstance(v, int):
        return _EPOCH + timedelta(milliseconds=v)
    return _EPOCH + timedelta(microseconds=round(v * 1000))


def _attributes(v: object) -> dict[str, str | int | float | bool]:
    if not isinstance(v, dict):
        raise _err("wrong_type", "expected an object, got {t}", t=type(v).__name__)
    out: dict[str, str | int | float | bool] = {}
    for k, val in v.items():
        if not isinstance(k, str):
            raise _err("wrong_type", "attribute names must be strings")
        _check_text(k)
        if isinstance(val, str):
            _check_text(val)
        elif isinstance(val, float):
            if not math.isfinite(val):
                raise _err("invalid_value", "attribute {k}: {v} is not finite", k=k[:64], v=repr(val))
        elif not isinstance(val, int):  # bool is an int
            raise _err("wrong_type", "attribute {k}: expected string, number or boolean, got {t}",
                       k=k[:64], t=type(val).__name__)
        out[k] = val
    return out


Str = Annotated[str, BeforeValidator(_strict_str)]
Port = Annotated[int, _int_in(0, 65535)]
Counter = Annotated[int, _int_in(0, None)]
IP = Annotated[str, BeforeValidator(_ip)]


def format_time(dt: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with milliseconds: ``YYYY-MM-DDTHH:MM:SS.fffZ``."""
    dt = dt.astimezone(UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def _scalarize(v: object) -> str | int | float | bool:
    if isinstance(v, str | bool | int | float):
        return v
    return json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)


# --------------------------------------------------------------------------- SecurityEvent


class SecurityEvent(BaseModel):
    """SecurityEvent v1 (``security_event.v1.json``). Build it with :func:`parse_event`/:func:`decode_event`."""

    model_config = ConfigDict(extra="forbid", validate_default=False)

    time: Annotated[datetime, BeforeValidator(_time)]
    message: Annotated[str, BeforeValidator(_message)]
    event_id: Annotated[str, BeforeValidator(_strict_str), Field(min_length=1, max_length=256)] | None = None
    source: Str | None = None
    event_type: Str | None = None
    severity: Annotated[Severity, _enum(get_args(Severity))] | None = None
    outcome: Annotated[Outcome, _enum(get_args(Outcome))] | None = None
    host: Str | None = None
    user: Str | None = None
    process: Str | None = None
    src_ip: IP | None = None
    dst_ip: IP | None = None
    src_port: Port | None = None
    dst_port: Port | None = None
    protocol: Str | None = None
    bytes_in: Counter | None = None
    bytes_out: Counter | None = None
    packets: Counter | None = None
    duration_ms: Annotated[float, BeforeValidator(_duration)] | None = None
    session_id: Str | None = None
    attributes: Annotated[dict[str, str | int | float | bool], BeforeValidator(_attributes)] = Field(
        default_factory=dict
    )

    @model_validator(mode="before")
    @classmethod
    def _move_unknown_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = cls.model_fields
        unknown = [k for k in data if k not in known]
        if not unknown and data.get("attributes", 0) is not None:
            return data
        out = {k: v for k, v in data.items() if k in known and v is not None}
        if unknown:
            given = out.get("attributes", {})
            attrs = dict(given) if isinstance(given, dict) else None
            if attrs is not None:
                for k in unknown:
                    val = data[k]
                    if val is not None and str(k) not in attrs:
                        attrs[str(k)] = _scalarize(val)
                out["attributes"] = attrs
        return out

    @model_validator(mode="after")
    def _fill_event_id(self) -> SecurityEvent:
        if self.event_id is None:
            self.event_id = self.compute_event_id()
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: time as ``YYYY-MM-DDTHH:MM:SS.fffZ``, None fields and empty attributes omitted."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            v = getattr(self, name)
            if v is None or (name == "attributes" and not v):
                continue
            out[name] = format_time(v) if name == "time" else (dict(v) if name == "attributes" else v)
        return out

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON of :meth:`to_dict` (what producers put on the wire)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def compute_event_id(self) -> str:
        """Deterministic id: ``ev-`` + 32 hex of sha256 over the canonical JSON of the event without event_id."""
        body = self.to_dict()
        body.pop("event_id", None)
        canon = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return "ev-" + hashlib.sha256(canon.encode("utf-8")).hexdigest()[:32]

    def entity(self) -> tuple[str, str]:
        """The best entity of the event: the first present of user, host, src_ip, else ("unknown", source)."""
        for kind in ("user", "host", "src_ip"):
            v = getattr(self, kind)
            if v:
                return (kind, v)
        return ("unknown", self.source or "unknown")


def _reason_of(err_type: str) -> str:
    if err_type in ("missing_field", "wrong_type", "invalid_value", "too_large", "not_object"):
        return err_type
    if err_type == "missing":
        return "missing_field"
    if err_type.endswith("_type") or err_type.endswith("_parsing"):
        return "wrong_type"
    return "invalid_value"


def parse_event(obj: object) -> SecurityEvent:
    """Validate a decoded JSON value into a :class:`SecurityEvent`.

    Raises:
        InvalidEvent: ``not_object`` (not a dict), ``missing_field`` (no time/message),
            ``wrong_type``, ``invalid_value`` (bad IP, port range, enum, time) or
            ``too_large`` (message over 65536 bytes). The detail names the field.
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("not_object", f"expected a JSON object, got {type(obj).__name__}")
    try:
        return SecurityEvent.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "event"
        reason = _reason_of(first["type"])
        msg = "required field is missing" if reason == "missing_field" else first["msg"]
        raise InvalidEvent(reason, f"{field}: {msg}") from exc
    except RecursionError as exc:
        raise InvalidEvent("invalid_value", "value nested too deeply") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_event(raw: bytes, max_bytes: int = MAX_EVENT_BYTES) -> SecurityEvent:
    """Decode one wire message (UTF-8 JSON bytes) into a :class:`SecurityEvent`.

    The size is checked before anything is decoded. Never raises anything but
    :class:`InvalidEvent` for bad input: ``too_large``, ``not_utf8``, ``not_json``
    (including NaN/Infinity literals and nesting too deep), then as :func:`parse_event`.
    """
    if len(raw) > max_bytes:
        raise InvalidEvent("too_large", f"{len(raw)} bytes exceeds {max_bytes}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("not_utf8", f"invalid UTF-8 at byte {exc.start}") from exc
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError and NaN/Infinity
        raise InvalidEvent("not_json", str(exc)[:200]) from exc
    except RecursionError as exc:
        raise InvalidEvent("not_json", "JSON nested too deeply") from exc
    return parse_event(obj)


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


class AlertExplanation(_Strict):
    """Why the alert fired: per-component contributions, neighbours, terms, template."""

    components: dict[str, Number]
    neighbours: list[AlertNeighbour]
    top_terms: list[AlertTopTerm]
    template: str | None
    template_id: str | None


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
    score: Annotated[float, Field(ge=0, le=100)]
    severity: AlertSeverity
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    warmup: bool | None = None
    title: str
    entity: AlertEntity
    evidence: AlertEvidence
    explanation: AlertExplanation
    event: AlertEventSummary | None = None
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict as published; absent optional fields (event, confidence, warmup) are omitted."""
        out = self.model_dump(mode="json")
        for key in ("event", "confidence", "warmup"):
            if out.get(key) is None:
                out.pop(key, None)
        if out.get("event"):
            out["event"] = {k: v for k, v in out["event"].items() if v is not None}
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
