"""Alerts in the worker: every raised alert goes through dedup before the alerts topic.

The events, session and entity agents hand their alerts to :meth:`AlertAgent.send_alert`
instead of the alerts topic. They are repartitioned to ``<app_id>-alert-steps``
keyed by the alert's entity (``type:id``), so every alert of an entity reaches one
partition, hence one worker and one :class:`detection.dedup.AlertDeduper`: groups
and the per-entity rate limit hold across batches, agents and workers.

Per batch and partition the ``alerts`` agent folds the alerts into the open groups,
publishes what changed to the alerts topic (new alerts, and updates under the same
``alert_id`` with a higher ``count``; alert v1, or OCSF Detection Findings with
``SECSTREAM_ALERT_FORMAT=ocsf``, :mod:`detection.ocsf`) and waits for the acks; once per commit
interval (streams/worker/table_agent.py) it mirrors the changed
dedup records into the Faust table ``alert-groups`` (changelog), meta last and
alone (Tansu's "latest offset" answer, see :meth:`streams.worker.table_agent.TableAgent._write_records`). Publish
before persist: a crash in between re-delivers the batch, which republishes the
same documents under the same ids; the other order could lose an update.

Analyst feedback (:mod:`detection.feedback`): a raised alert travels with its evidence
vector; one within ``suppress_at`` of a false-positive verdict of the same kind is
suppressed before dedup (``secstream_alerts_suppressed_total{reason="feedback"}``).
Every published document is also stored in the Qdrant ``alerts`` collection (point id
``point_id(alert_id)``, payload the v1 document, dense vector the evidence in the event
space: the event's vector, or the event part of a session's), which is what
``secstream feedback`` verdicts and ``secstream hunt --like ALERT_ID`` resolve.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import numpy as np

from detection.dedup import AlertDeduper, DedupOutcome
from detection.feedback import (
    Carried,
    FeedbackMemory,
    attach_vector,
    screen,
    take_vector,
)
from detection.ocsf import to_ocsf
from streams.ops import metrics
from streams.store import CollectionSpec, StorePoint, VectorStore, point_id
from streams.store.collections import ALERTS, EVENTS
from streams.worker.batches import wait_sent
from streams.worker.table_agent import TableAgent
from streams.kafka.json_codec import dumps
from streams.kafka.partition_keys import alert_partition_key

log = logging.getLogger(__name__)

TABLE = "alert-groups"



def event_space(carried: Carried | None, dim: int) -> np.ndarray | None:
    """An evidence vector in the event space (``dim``): as is, or the event part (the first ``dim``
    components, re-normalized) of a session vector."""
    if carried is None:
        return None
    space, vec = carried
    if space == "session" and vec.shape[0] > dim:
        part = vec[:dim]
        norm = float(np.linalg.norm(part))
        return part / norm if norm > 0 else None
    return vec if vec.shape[0] == dim else None


class AlertAgent(TableAgent):
    """Dedup + rate limit between the agents that raise alerts and the alerts topic; see the module docstring."""

    def __init__(self, app: faust.App, make_deduper: Callable[[], AlertDeduper], executor: ThreadPoolExecutor, *,
                 app_id: str, partitions: int, batch_size: int, within_s: float, alerts_topic: Any,
                 alert_format: str = "v1", ready: Callable[[], Awaitable[None]] | None = None,
                 store: VectorStore | None = None, dim: int = 0, feedback: FeedbackMemory | None = None,
                 commit_interval_s: float = 0.0) -> None:
        super().__init__(app, executor, name="alerts", steps="alert-steps", table=TABLE, app_id=app_id,
                         partitions=partitions, batch_size=batch_size, within_s=within_s,
                         commit_interval_s=commit_interval_s, ready=ready)
        self.make_deduper = make_deduper
        self.dedupers: dict[int, AlertDeduper] = {}
        self.alerts_topic = alerts_topic
        self.render: Callable[[dict[str, Any]], dict[str, Any]] = to_ocsf if alert_format == "ocsf" else dict
        self.store, self.dim, self.feedback = store, dim, feedback
        if store is not None and dim > 0:
            store.ensure(CollectionSpec(name=ALERTS, dense_dim=dim, sparse_name=None))

    async def send_alert(self, alert: dict[str, Any], vector: np.ndarray | None = None, space: str = "event") -> Any:
        """Hand one raised alert (and its evidence vector) to dedup; returns the send future to await with
        the batch's other sends."""
        metrics.ALERTS_RAISED.labels(str(alert.get("kind", "unknown"))).inc()
        value = dumps(attach_vector(dict(alert), space, vector) if vector is not None else alert)
        return await self.steps_topic.send(key=alert_partition_key(alert), value=value)

    async def send_alerts(self, alerts: list[dict[str, Any]], vectors: list[Any], space: str = "event") -> list[Any]:
        """:meth:`send_alert` for each alert with its vector (``vectors`` aligned, None where there is none)."""
        vecs = list(vectors) + [None] * (len(alerts) - len(vectors))
        return [await self.send_alert(alert, vec, space) for alert, vec in zip(alerts, vecs)]

    def deduper(self, partition: int) -> AlertDeduper:
        d = self.dedupers.get(partition)
        if d is None:
            d = self.dedupers[partition] = self.make_deduper()
        return d

    async def _batch(self, partition: int, values: list[bytes]) -> None:
        raised: list[tuple[dict[str, Any], Carried | None]] = []
        for raw in values:
            try:
                alert = json.loads(raw)
            except ValueError as exc:  # our own output: should not happen
                log.warning("skipping unreadable alert step: %s", exc)
                continue
            raised.append((alert, take_vector(alert)))
        alerts, vectors = await self.run(self._screen, raised)
        deduper = self.deduper(partition)
        outcome = deduper.process(alerts)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("alerts: partition %d: %d raised, published %s, folded %d, rate-limited %d, repeated %d",
                      partition, len(alerts), [(d["alert_id"][:8], d.get("count"), bool(d.get("update")))
                                               for d in outcome.published], outcome.folded, outcome.rate_limited,
                      outcome.repeated)
        sends = [await self.alerts_topic.send(key=str(doc["alert_id"]).encode(), value=dumps(self.render(doc)))
                 for doc in outcome.published]
        if sends:
            await wait_sent(sends)  # published before the groups are persisted (module docstring)
        if self.store is not None and outcome.published:
            await self.run(self._store_alerts, outcome.published, vectors)
        self._count(outcome)

    async def _write_state(self, partition: int) -> None:
        """The dedup records the batches since the last flush changed, meta last and alone."""
        prefix = f"{partition}|".encode()
        records = self.deduper(partition).take_records()
        await self._write_records(partition, [(prefix + k.encode("utf-8"), v) for k, v in records])

    def _screen(self, raised: list[tuple[dict[str, Any], Carried | None]]
                ) -> tuple[list[dict[str, Any]], dict[str, Carried]]:
        """Drop alerts a false-positive verdict suppresses (on the pipeline thread, where verdicts are
        applied); the evidence vectors of the rest by alert id."""
        kept, vectors, suppressed = screen(self.feedback, raised)
        for alert, match in suppressed:
            metrics.ALERTS_SUPPRESSED.labels(str(alert.get("kind", "unknown")), "feedback").inc()
            log.info("alert %s (%s) suppressed: %.3f similar to false positive %s", alert.get("alert_id"),
                     alert.get("kind"), match.similarity, match.alert_id, extra={"alert_id": alert.get("alert_id")})
        return kept, vectors

    def _store_alerts(self, docs: list[dict[str, Any]], vectors: dict[str, Carried]) -> None:
        """Upsert published documents into the ``alerts`` collection (see the module docstring)."""
        assert self.store is not None
        ids = [str(d["alert_id"]) for d in docs]
        found = {i: v for i in ids if (v := event_space(vectors.get(i), self.dim)) is not None}
        missing = [(i, d) for i, d in zip(ids, docs) if i not in found]
        if missing:
            found.update(self._stored_vectors(missing))
        points = [StorePoint(id=point_id(i), dense=found[i], payload=d) for i, d in zip(ids, docs) if i in found]
        metrics.ALERTS_UNSTORED.inc(len(ids) - len(points))
        if len(points) < len(ids):
            log.warning("alerts: %d published alerts not stored, no evidence vector found: %s", len(ids) - len(points),
                        [i for i in ids if i not in found])
        if points:
            self.store.upsert(ALERTS, points)

    def _stored_vectors(self, missing: list[tuple[str, dict[str, Any]]]) -> dict[str, np.ndarray]:
        """Vectors of alerts that came without one, in two store calls: an update keeps the vector its alert
        was stored with; an alert raised without one (a drift, an overflow) takes its first evidence event's."""
        assert self.store is not None
        stored = {p.id: p.dense for p in self.store.retrieve_points(ALERTS, [point_id(i) for i, _ in missing])}
        out = {i: stored[point_id(i)] for i, _ in missing if point_id(i) in stored}
        first = {i: str(ev[0]) for i, d in missing if i not in out
                 and (ev := (d.get("evidence") or {}).get("event_ids"))}
        if first and self.store.attach(EVENTS) is not None:
            events = {p.id: p.dense for p in self.store.retrieve_points(EVENTS, [point_id(e) for e in first.values()])}
            out.update({i: events[point_id(e)] for i, e in first.items()
                        if point_id(e) in events and events[point_id(e)].shape[0] == self.dim})
        return out

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
