"""What a hunt keeps: an entity and a time range, as store filters of the ``events`` and ``sessions`` collections.

An entity is a bare value (matched against user, host, src_ip and dst_ip) or ``type:value``. Events
match on those payload fields; a session matches by its own entity, and a ``user@host`` session
(the sessionizer's user+host key) belongs to the user and to the host. A time range keeps events
whose ``time`` (RFC 3339, compared as an instant) is inside it and sessions that overlap it
(``end_epoch >= since`` and ``start_epoch <= until``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.errors import SecstreamError
from streams.hunt.args import ENTITY_TYPES  # event fields an entity value is looked up in (numpy-free home)
from streams.store import FieldContains, FieldMatch, FieldRange, StoreFilter

__all__ = ["ENTITY_TYPES", "HuntError", "HuntFilters", "event_filter", "session_entity_ok", "session_filter"]


class HuntError(SecstreamError):
    """A hunt that cannot run as asked (nothing to search, unknown --like id, mismatched store)."""


@dataclass(frozen=True)
class HuntFilters:
    """What a hunt keeps: an entity ``(type or None, value)`` and a time range in epoch seconds."""

    entity: tuple[str | None, str] | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise HuntError("--since is after --until")


def event_filter(f: HuntFilters) -> StoreFilter:
    """Store filter of the ``events`` collection (entity fields, ``time`` as an instant)."""
    must: list[Any] = []
    should: list[Any] = []
    if f.entity is not None:
        kind, value = f.entity
        if kind is None:
            should = [FieldMatch(name, (value,)) for name in ENTITY_TYPES]
        else:
            must.append(FieldMatch(kind, (value,)))
    if f.since is not None or f.until is not None:
        must.append(FieldRange("time", gte=f.since, lte=f.until, datetime=True))
    return StoreFilter(must=tuple(must), should=tuple(should))


def session_filter(f: HuntFilters) -> StoreFilter:
    """Store filter of the ``sessions`` collection: a superset on ``entity.id`` (``user@host`` ids match
    by prefix/substring; :func:`session_entity_ok` is exact) and overlap with the time range."""
    must: list[Any] = []
    should: list[Any] = []
    if f.entity is not None:
        kind, value = f.entity
        exact = FieldMatch("entity.id", (value,))
        if kind is None:
            should = [exact, FieldContains("entity.id", value + "@", at_start=True), FieldContains("entity.id", "@" + value)]
        elif kind == "user":
            must.append(FieldMatch("entity.type", ("user",)))
            should = [exact, FieldContains("entity.id", value + "@", at_start=True)]
        elif kind == "host":
            must.append(FieldMatch("entity.type", ("host", "user")))
            should = [exact, FieldContains("entity.id", "@" + value)]
        else:
            must += [FieldMatch("entity.type", (kind,)), exact]
    if f.since is not None:
        must.append(FieldRange("end_epoch", gte=f.since))
    if f.until is not None:
        must.append(FieldRange("start_epoch", lte=f.until))
    return StoreFilter(must=tuple(must), should=tuple(should))


def session_entity_ok(payload: Mapping[str, Any], entity: tuple[str | None, str] | None) -> bool:
    """Whether a session payload belongs to ``entity`` (``user@host`` sessions belong to both parts)."""
    if entity is None:
        return True
    kind, value = entity
    ent = payload.get("entity") or {}
    etype, eid = ent.get("type"), str(ent.get("id", ""))
    user, at, host = eid.rpartition("@") if etype == "user" else ("", "", "")
    parts = {eid} | ({user, host} if at else set())
    if kind is None:
        return value in parts
    if kind == "user":
        return etype == "user" and value in ({eid, user} if at else {eid})
    if kind == "host":
        return (etype == "host" and eid == value) or (etype == "user" and bool(at) and host == value)
    return etype == kind and eid == value
