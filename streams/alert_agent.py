"""Alerts in the worker: every raised alert goes through dedup before the alerts topic.

The events, session and entity agents hand their alerts to :meth:`AlertAgent.send_alert`
instead of the alerts topic. They are repartitioned to ``<app_id>-alert-steps``
keyed by the alert's entity (``type:id``), so every alert of an entity reaches one
partition, hence one worker and one :class:`detection.dedup.AlertDeduper`: groups
and the per-entity rate limit hold across batches, agents and workers.

Per batch and partition the ``alerts`` agent folds the alerts into the open groups,
publishes what changed to the alerts topic (new alerts, and updates under the same
``alert_id`` with a higher ``count``; alert v1, or OCSF Detection Findings with
``SECSTREAM_ALERT_FORMAT=ocsf``, :mod:`detection.ocsf`), waits for the acks, then mirrors the changed
dedup records into the Faust table ``alert-groups`` (changelog), meta last and
alone (Tansu's "latest offset" answer, see :mod:`streams.session_agent`). Publish
before persist: a crash in between re-delivers the batch, which republishes the
same documents under the same ids; the other order could lose an update.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from detection.dedup import AlertDeduper, DedupOutcome
from detection.ocsf import to_ocsf
from streams import metrics
from streams.table_agent import TableAgent
from streams.wire import dumps

log = logging.getLogger(__name__)

TABLE = "alert-groups"


def alert_partition_key(alert: dict[str, Any]) -> bytes:
    """The repartition key of an alert: its entity ``type:id``."""
    ent = alert.get("entity") or {}
    return f"{ent.get('type', 'unknown')}:{ent.get('id', '')}".encode()


class AlertAgent(TableAgent):
    """Dedup + rate limit between the agents that raise alerts and the alerts topic; see the module docstring."""

    def __init__(self, app: faust.App, make_deduper: Callable[[], AlertDeduper], executor: ThreadPoolExecutor, *,
                 app_id: str, partitions: int, batch_size: int, within_s: float, alerts_topic: Any,
                 alert_format: str = "v1", ready: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__(app, executor, name="alerts", steps="alert-steps", table=TABLE, app_id=app_id,
                         partitions=partitions, batch_size=batch_size, within_s=within_s, ready=ready)
        self.make_deduper = make_deduper
        self.dedupers: dict[int, AlertDeduper] = {}
        self.alerts_topic = alerts_topic
        self.render: Callable[[dict[str, Any]], dict[str, Any]] = to_ocsf if alert_format == "ocsf" else dict

    async def send_alert(self, alert: dict[str, Any]) -> Any:
        """Hand one raised alert to dedup; returns the send future to await with the batch's other sends."""
        metrics.ALERTS_RAISED.labels(str(alert.get("kind", "unknown"))).inc()
        return await self.steps_topic.send(key=alert_partition_key(alert), value=dumps(alert))

    def deduper(self, partition: int) -> AlertDeduper:
        d = self.dedupers.get(partition)
        if d is None:
            d = self.dedupers[partition] = self.make_deduper()
        return d

    async def _batch(self, partition: int, values: list[bytes]) -> None:
        alerts = []
        for raw in values:
            try:
                alerts.append(json.loads(raw))
            except ValueError as exc:  # our own output: should not happen
                log.warning("skipping unreadable alert step: %s", exc)
        deduper = self.deduper(partition)
        outcome = deduper.process(alerts)
        sends = [await self.alerts_topic.send(key=str(doc["alert_id"]).encode(), value=dumps(self.render(doc)))
                 for doc in outcome.published]
        if sends:
            await asyncio.gather(*sends)  # published before the groups are persisted (module docstring)
        records = deduper.take_records()
        prefix = f"{partition}|".encode()
        writes = [await self._write(partition, prefix + k.encode("utf-8"), v) for k, v in records[:-1]]
        writes = [w for w in writes if w is not None]
        if writes:
            await asyncio.gather(*writes)
        meta_key, meta = records[-1]
        await asyncio.gather(await self._write(partition, prefix + meta_key.encode("utf-8"), meta))
        self._count(outcome)

    def _count(self, outcome: DedupOutcome) -> None:
        for doc in outcome.published:
            if doc.get("update"):
                metrics.ALERT_UPDATES.labels(doc["kind"]).inc()
            else:
                metrics.ALERTS.labels(doc["kind"], doc["severity"]).inc()
        metrics.ALERTS_FOLDED.labels("dedup").inc(outcome.folded)
        metrics.ALERTS_FOLDED.labels("rate_limit").inc(outcome.rate_limited)
        metrics.ALERTS_FOLDED.labels("redelivered").inc(outcome.repeated)
        metrics.ALERT_GROUPS_OPEN.set(sum(len(d) for d in self.dedupers.values()))

    # ------------------------------------------------------------------ recovery
    def _drop(self, partition: int) -> None:
        self.dedupers.pop(partition, None)

    def _load(self, partition: int, items: list[tuple[bytes, Any]]) -> None:
        prefix = f"{partition}|".encode()
        mine = [(bytes(k)[len(prefix):].decode("utf-8"), v) for k, v in items if bytes(k).startswith(prefix)]
        deduper = self.dedupers[partition] = self.make_deduper()
        try:
            groups = deduper.load_records([(k, v) for k, v in mine if isinstance(v, dict)])
        except (KeyError, TypeError, ValueError) as exc:
            log.error("alerts: partition %d dedup records unreadable (%s); its groups restart empty", partition, exc)
            self.dedupers[partition] = self.make_deduper()
            return
        if groups:
            log.info("alerts: partition %d recovered %d open alert groups", partition, groups)
