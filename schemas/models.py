"""Pydantic models of the wire contracts: SecurityEvent v1 and Alert v1.

The JSON Schema files next to this module (``security_event.v1.json``,
``alert.v1.json``) are the published contracts; these models implement them and
``tests/unit/test_schemas.py`` keeps both in agreement.

Input policy for events (strict, so that the DLQ tells producers what is wrong):

* ``time`` is an RFC 3339 string with an offset (``T`` separator) or epoch
  milliseconds (an integer, or a finite float); it becomes an aware UTC datetime.
* string fields take strings only; ports and counters take JSON integers only
  (``22`` and ``22.0`` are accepted, ``"22"`` and ``true`` are ``wrong_type``).
* ``null`` for a field means absent (a null ``time`` or ``message`` is ``missing_field``).
* sizes: a message of at most ``MAX_EVENT_BYTES`` (the worker's ``SECSTREAM_MAX_MESSAGE_BYTES``), a
  ``message`` of at most ``MAX_MESSAGE_BYTES`` of UTF-8, ``event_id`` at most 256 characters and the
  other string fields (entity names become keys of per-entity state) at most ``MAX_FIELD_CHARS``;
  any of them over its limit is ``too_large``.
* unknown top-level fields are moved into ``attributes`` (non-scalar values as
  their JSON text, ``null`` dropped); ``attributes`` given explicitly win.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.errors import InvalidEvent

# the alert models and the schema loader are in schemas/alert.py (which builds on these)
__all__ = [
    "ENTITY_TYPES", "MAX_EVENT_BYTES", "MAX_FIELD_CHARS", "MAX_MESSAGE_BYTES", "SecurityEvent", "decode_event",
    "format_time", "parse_event",
]

Severity = Literal["unknown", "informational", "low", "medium", "high", "critical"]
Outcome = Literal["success", "failure", "unknown"]
AlertKind = Literal["event_anomaly", "session_anomaly", "entity_drift"]
AlertSeverity = Literal["informational", "low", "medium", "high", "critical"]
EntityType = Literal["user", "host", "src_ip", "session", "process", "unknown"]
ENTITY_TYPES: Final[tuple[str, ...]] = get_args(EntityType)

MAX_MESSAGE_BYTES: Final = 65536
MAX_EVENT_BYTES: Final = 81920
#: source, event_type, host, user, process, protocol, session_id: names, not text (the message is the text)
MAX_FIELD_CHARS: Final = 1024
_MIN_MS: Final = 0
_MAX_MS: Final = 7289654399999  # 2200-12-31T23:59:59.999Z
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
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


def _short_str(v: object) -> str:
    s = _strict_str(v)
    if len(s) > MAX_FIELD_CHARS:
        raise _err("too_large", "{n} characters exceeds {m}", n=len(s), m=MAX_FIELD_CHARS)
    return s


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


Str = Annotated[str, BeforeValidator(_short_str)]
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
        if not unknown and all(v is not None for v in data.values()):
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
    if err_type.endswith(("_type", "_parsing")):
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
