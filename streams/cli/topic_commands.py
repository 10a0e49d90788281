"""Producer and consumer tools: `secstream produce`, `secstream alerts` and `secstream feedback`.

`secstream alerts` shows each alert's id (its first 8 characters, more where two shown ids share them;
the whole id with ``full_ids``) and its count, so the updates of one alert (same id, higher count) read
as such; ``--json`` prints the documents as published. :func:`find_alert_ids` completes a short id from
the alerts topic's keys (every alert is published keyed by its id).

Each takes ``security``, the settings whose Kafka security options its clients use
(:mod:`streams.kafka.client_options`); None is a plaintext broker. A client that cannot connect or
authenticate raises :class:`streams.kafka.client_options.KafkaSecurityError`: one line, no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.adapters import read_records
from streams.cli.alert_lines import alert_id_of, format_alert_line
from streams.cli.alert_lookup import ShortIds, short_id_chars
from streams.kafka.partition_keys import entity_key
from streams.cli.terminal import Progress, table
from streams.kafka.client_options import KafkaSecuritySettings, aiokafka_kwargs, connect_error


async def start_client(client: Any, bootstrap: str, security: KafkaSecuritySettings | None) -> None:
    """``await client.start()``; a failure to connect or authenticate becomes one clear line."""
    try:
        await client.start()
    except Exception as exc:
        with contextlib.suppress(Exception):  # already failing: report the first error
            await client.stop()
        if security is None:
            raise
        raise connect_error(exc, bootstrap, security) from exc


def _security_kwargs(security: KafkaSecuritySettings | None) -> dict[str, Any]:
    return aiokafka_kwargs(security) if security is not None else {}


async def produce_values(bootstrap: str, topic: str, values: Iterable[bytes], *, rate: float | None = None,
                         progress: Progress | None = None, max_request_size: int = 16 * 1_048_576,
                         security: KafkaSecuritySettings | None = None) -> int:
    """Publish raw values keyed by entity; optional rate limit (events/s). Returns the count."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=max_request_size,
                                acks="all", **_security_kwargs(security))
    await start_client(producer, bootstrap, security)
    sent, started = 0, time.monotonic()
    try:
        pending = []
        for value in values:
            try:
                obj = json.loads(value)
                key = entity_key(obj) if isinstance(obj, dict) else None
            except (ValueError, UnicodeDecodeError, RecursionError):
                key = None
            pending.append(await producer.send(topic, value=value, key=key))
            sent += 1
            if progress is not None:
                progress.advance()
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0.01:
                    await asyncio.sleep(ahead)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def publish_feedback(bootstrap: str, topic: str, verdict: dict[str, Any], *,
                     security: KafkaSecuritySettings | None = None) -> None:
    """Publish one analyst verdict (keyed by its alert id) and wait for the broker's ack."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **_security_kwargs(security))
        await start_client(producer, bootstrap, security)
        try:
            await producer.send_and_wait(topic, value=json.dumps(verdict).encode("utf-8"),
                                         key=str(verdict["alert_id"]).encode("utf-8"))
        finally:
            await producer.stop()

    asyncio.run(send())


def produce_file(bootstrap: str, topic: str, path: Path, fmt: str, *, rate: float | None = None,
                 year: int | None = None, security: KafkaSecuritySettings | None = None) -> tuple[int, int]:
    """Publish a file's records; returns (sent, skipped) — skipped = records the adapter could not read."""
    skipped = 0

    def values() -> Iterable[bytes]:
        nonlocal skipped
        for rec in read_records(path, fmt, year=year):
            if rec.value is None:
                skipped += 1
                continue
            yield rec.value

    progress = Progress(f"produce {path.name}")
    try:
        sent = asyncio.run(produce_values(bootstrap, topic, values(), rate=rate, progress=progress,
                                          security=security))
    finally:
        progress.close()
    return sent, skipped


def alert_row(alert: dict[str, Any]) -> list[Any]:
    """The table row of an alert (v1 or OCSF, read alike: :func:`format_alert_line`'s view), whole id first."""
    from streams.cli.alert_lines import v1_view

    a = v1_view(alert)
    ent = a.get("entity") or {}
    count = int(a.get("count") or 1)
    return [alert_id_of(alert), str(a.get("time", ""))[:19], a.get("severity", ""), f"{float(a.get('score') or 0):.1f}",
            f"{count}{' (update)' if a.get('update') else ''}", f"{ent.get('type')}={ent.get('id')}",
            a.get("kind", ""), str(a.get("title", ""))[:70]]


def alerts_table(rows: list[list[Any]], *, full_ids: bool = False) -> str:
    """Rows of :func:`alert_row` as a table: ids cut to the fewest characters (8 or more) that keep the
    alerts shown apart, unless ``full_ids``."""
    n = None if full_ids else short_id_chars(r[0] for r in rows)
    cut = [[r[0][:n], *r[1:]] for r in rows]
    return table(cut, ["id", "time", "severity", "score", "count", "entity", "kind", "title"])


async def consume_alerts(bootstrap: str, topic: str, *, follow: bool, as_json: bool, out: TextIO,
                         idle_s: float = 2.0, limit: int | None = None,
                         security: KafkaSecuritySettings | None = None, full_ids: bool = False) -> int:
    """Print alerts from the beginning of the topic; stop when idle unless following."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, **_security_kwargs(security))
    await start_client(consumer, bootstrap, security)
    shown = 0
    rows: list[list[Any]] = []
    short = ShortIds()
    try:
        while limit is None or shown < limit:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            if not batch:
                if follow:
                    continue
                break
            for records in batch.values():
                for rec in records:
                    try:
                        alert = json.loads(rec.value)
                    except ValueError:
                        continue
                    shown += 1
                    if as_json:
                        out.write(json.dumps(alert, ensure_ascii=False) + "\n")
                    elif follow:
                        out.write(format_alert_line(alert, ids=None if full_ids else short) + "\n")
                    else:
                        rows.append(alert_row(alert))
                    out.flush()
    finally:
        await consumer.stop()
    if rows:
        out.write(alerts_table(rows, full_ids=full_ids) + "\n")
    return shown


def print_alerts(bootstrap: str, topic: str, *, follow: bool, as_json: bool, limit: int | None = None,
                 out: TextIO | None = None, security: KafkaSecuritySettings | None = None,
                 full_ids: bool = False) -> int:
    return asyncio.run(consume_alerts(bootstrap, topic, follow=follow, as_json=as_json, out=out or sys.stdout,
                                      limit=limit, security=security, full_ids=full_ids))


async def alert_ids_in_topic(bootstrap: str, topic: str, prefix: str, *, timeout_s: float = 30.0,
                             security: KafkaSecuritySettings | None = None) -> list[str]:
    """The distinct alert ids starting with ``prefix`` among the keys of ``topic`` (read to its end offsets)."""
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                **_security_kwargs(security))
    await start_client(consumer, bootstrap, security)
    found: set[str] = set()
    try:
        await consumer.topics()  # metadata of every topic: an absent alerts topic has no partitions
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any([await consumer.position(tp) < ends[tp] for tp in tps]) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for rec in records:
                    key = rec.key.decode("utf-8", "replace") if rec.key else ""
                    if key.startswith(prefix):
                        found.add(key)
    finally:
        await consumer.stop()
    return sorted(found)


def find_alert_ids(bootstrap: str, topic: str, prefix: str, *,
                   security: KafkaSecuritySettings | None = None) -> list[str]:
    """:func:`alert_ids_in_topic`, run to completion."""
    return asyncio.run(alert_ids_in_topic(bootstrap, topic, prefix, security=security))
