"""Partition keys: an event and an alert by their entity, so one worker sees all of an entity's events and alerts."""

from __future__ import annotations

from functools import lru_cache
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


@lru_cache(maxsize=65_536)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's, and aiokafka's, which Faust uses) gives ``key``:
    murmur2 of the key, positive, modulo the partition count."""
    from aiokafka.partitioner import murmur2  # here: the CLI imports this module and must start fast

    return (murmur2(key) & 0x7FFFFFFF) % partitions
