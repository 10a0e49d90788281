"""The arguments of ``secstream hunt`` that are checked before anything is opened: times and an entity.

Numpy-free (stdlib and :mod:`detection.times` only), so that a bad ``--since`` or ``--entity`` answers
without loading the store or the encoder. :mod:`streams.hunt.command` and :mod:`streams.hunt.filters`
re-export these names.
"""

from __future__ import annotations

import re

from detection.times import event_time

__all__ = ["ENTITY_TYPES", "parse_entity", "parse_when"]

#: event fields an entity value is looked up in (``--entity type:value`` names one of them)
ENTITY_TYPES: tuple[str, ...] = ("user", "host", "src_ip", "dst_ip")

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, now: float) -> float:
    """Epoch seconds of ``text``: RFC 3339 (no offset means UTC), a date (UTC midnight), ``now``,
    or an age before ``now`` (``90s``, ``30m``, ``2h``, ``7d``, ``1w``). ValueError names the forms."""
    t = text.strip()
    age = _AGE.match(t)
    if age:
        return now - float(age[1]) * _UNIT_S[age[2]]
    if t == "now":
        return now
    try:
        return event_time(t)  # RFC 3339, no offset = UTC, a date = its UTC midnight: as events' times
    except ValueError:
        raise ValueError(f"{text!r} is not a time; use RFC 3339 (2025-03-11T02:30:00Z), a date (2025-03-11), "
                         f"now, or an age before now (30m, 2h, 7d)") from None


def parse_entity(text: str) -> tuple[str | None, str]:
    """``(type, value)`` of ``type:value`` when type is one of :data:`ENTITY_TYPES`, else ``(None, text)``
    (so an IPv6 address stays a bare value). ValueError for an empty value or a misspelt type."""
    t = text.strip()
    kind, sep, value = t.partition(":")
    if sep and kind in ENTITY_TYPES:
        if not value:
            raise ValueError(f"entity {text!r} has no value after {kind + ':'!r}")
        return kind, value
    if sep and re.fullmatch(r"[a-z_]+", kind) and not re.fullmatch(r"[a-f]+", kind):  # a word, not hex
        raise ValueError(f"unknown entity type {kind!r}; valid: {', '.join(ENTITY_TYPES)} (or a bare value)")
    if not t:
        raise ValueError("entity is empty")
    return None, t
