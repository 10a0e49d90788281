"""Producer and consumer tools: `secstream produce`, `secstream alerts` and `secstream feedback`.

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
from streams.cli.alert_lines import format_alert_line
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


async def consume_alerts(bootstrap: str, topic: str, *, follow: bool, as_json: bool, out: TextIO,
                         idle_s: float = 2.0, limit: int | None = None,
                         security: KafkaSecuritySettings | None = None) -> int:
    """Print alerts from the beginning of the topic; stop when idle unless following."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, **_security_kwargs(security))
    await start_client(consumer, bootstrap, security)
    shown = 0
    rows: list[list[Any]] = []
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
                        out.write(format_alert_line(alert) + "\n")
                    else:
                        ent = alert.get("entity", {})
                        rows.append([alert.get("time", "")[:19], alert.get("severity", ""),
                                     f"{alert.get('score', 0):.1f}", f"{ent.get('type')}={ent.get('id')}",
                                     alert.get("kind", ""), alert.get("title", "")[:70]])
                    out.flush()
    finally:
        await consumer.stop()
    if rows:
        out.write(table(rows, ["time", "severity", "score", "entity", "kind", "title"]) + "\n")
    return shown


def print_alerts(bootstrap: str, topic: str, *, follow: bool, as_json: bool, limit: int | None = None,
                 out: TextIO | None = None, security: KafkaSecuritySettings | None = None) -> int:
    return asyncio.run(consume_alerts(bootstrap, topic, follow=follow, as_json=as_json, out=out or sys.stdout,
                                      limit=limit, security=security))
