"""Partition keys: an event and an alert by their entity, so one worker sees all of an entity's events and alerts."""

from __future__ import annotations

from typing import Any


def entity_key(event: dict[str, Any]) -> bytes | None:
    """Partition key of an event: its entity, so one worker sees all of an entity's events."""
    for name in ("user", "host", "src_ip"):
        value = event.get(name)
        if isinstance(value, str) and value:
            return value.encode("utf-8")
    return None


def alert_partition_key(alert: dict[str, Any]) -> bytes:
    """The repartition key of an alert: its entity ``type:id``."""
    ent = alert.get("entity") or {}
    return f"{ent.get('type', 'unknown')}:{ent.get('id', '')}".encode()
