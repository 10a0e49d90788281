"""Which event fields an ``events`` store point keeps in its payload (``SECSTREAM_PAYLOAD_FIELDS``).

The allow-list names SecurityEvent v1 fields (``schemas/security_event.v1.json``) and may name single
attributes as ``attributes.<key>``: ``attributes`` keeps every attribute (they hold whatever unknown
top-level fields a producer sent), ``attributes.event_code`` keeps that one only. ``event_id`` and
``time`` are always required: the point's identity and the time filters of a hunt. The default keeps
every SecurityEvent field, as before the setting existed. What the pipeline adds to a payload (template,
scores, model version) does not come from the producer and is always stored; docs/security.md lists it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.models import SecurityEvent

__all__ = ["DEFAULT_PAYLOAD_FIELDS", "EVENT_FIELDS", "REQUIRED", "PayloadFields"]

EVENT_FIELDS: tuple[str, ...] = tuple(SecurityEvent.model_fields)
REQUIRED = ("event_id", "time")
DEFAULT_PAYLOAD_FIELDS = ",".join(EVENT_FIELDS)
_ALL = frozenset(EVENT_FIELDS)
_ATTR = "attributes."


@dataclass(frozen=True)
class PayloadFields:
    """A parsed allow-list; :meth:`apply` keeps what it allows of an event dict."""

    fields: frozenset[str]
    #: attribute keys kept when ``attributes`` itself is not listed; None: every attribute
    attribute_keys: frozenset[str] | None = None

    @classmethod
    def parse(cls, spec: str) -> PayloadFields:
        """``"time,event_id,message,attributes.event_code"`` → PayloadFields; ValueError naming valid fields."""
        names = [n.strip() for n in spec.split(",") if n.strip()]
        keys = {n[len(_ATTR):] for n in names if n.startswith(_ATTR) and len(n) > len(_ATTR)}
        plain = {n for n in names if not n.startswith(_ATTR)}
        unknown = sorted(plain - set(EVENT_FIELDS)) + [n for n in names if n == _ATTR]
        if unknown:
            raise ValueError(f"unknown payload fields {unknown}; valid: {', '.join(EVENT_FIELDS)} and "
                             f"attributes.<key>")
        missing = [n for n in REQUIRED if n not in plain]
        if missing:
            raise ValueError(f"payload fields must include {' and '.join(missing)} (point identity and time filters)")
        if "attributes" in plain:
            return cls(frozenset(plain))
        return cls(frozenset(plain | ({"attributes"} if keys else set())), frozenset(keys))

    @property
    def keeps_everything(self) -> bool:
        return self.attribute_keys is None and self.fields >= _ALL

    def spec(self) -> str:
        """The canonical setting value: fields in schema order, then the attribute keys sorted."""
        out = [n for n in EVENT_FIELDS if n in self.fields and (n != "attributes" or self.attribute_keys is None)]
        return ",".join(out + [_ATTR + k for k in sorted(self.attribute_keys or ())])

    def apply(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """A new dict of the allowed fields of ``event`` (a SecurityEvent as a dict)."""
        if self.keeps_everything:
            return dict(event)
        out = {k: v for k, v in event.items() if k in self.fields}
        if self.attribute_keys is not None and "attributes" in out:
            kept = {k: v for k, v in out["attributes"].items() if k in self.attribute_keys}
            if kept:
                out["attributes"] = kept
            else:
                del out["attributes"]
        return out
