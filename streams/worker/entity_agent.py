"""Live entities in the worker: entity steps repartitioned by entity, state in a changelog-backed table.

The events agent sends one step per (event, entity) (:func:`streams.stages.entity_stage.entity_steps`)
to ``<app_id>-entity-steps``, on the partition of its key ``type:id`` (in bulk:
streams/kafka/step_codec.py): every step of an entity reaches one partition, hence one
worker and one :class:`detection.entity_tracker.EntityTracker`.
Per batch and partition the ``entities`` agent runs :meth:`EntityStage.observe` (entity
scores, window commits, drift) and then

- once per commit interval (streams/worker/table_agent.py), mirrors what the interval's batches
  changed into the Faust table ``entities`` (changelog
  ``<app_id>-entities-changelog``, co-partitioned with the steps) as the records of
  :mod:`detection.entity_records`, keys ``<partition>|e:…``, ``|g:…``, ``|a:…``, and
  ``<partition>|m`` written last, alone (Tansu's "latest offset" answer, see
  :meth:`streams.worker.table_agent.TableAgent._write_records`). The local table keeps a placeholder, not the record:
  only a recovery reads records back, and Faust's recovery replays them in full from
  the changelog (an entity record is ≈ 16 KB of base64; keeping a second copy of every
  entity in memory would double the state);
- publishes ``entity_drift`` alerts and the ``event_anomaly`` alerts an entity score
  raised to the alerts topic (keyed by alert id: an event already alerted on its own
  score is not alerted again, and one raised twice is one alert);
- upserts every committed version to the ``entities`` collection (in the stage).

A (re)started worker rebuilds each assigned partition's tracker from the table.
At-least-once, like the rest: a crash replays the steps since the last commit, and one
between a flush's changelog writes and its commit replays that interval's steps.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from streams.ops import metrics
from streams.kafka.step_codec import decode_entity_steps
from streams.stages.entity_stage import EntityOutcome, EntityStage
from streams.worker.alert_sink import AlertSink
from streams.worker.batches import wait_sent
from streams.worker.table_agent import BULK_MESSAGES_BUFFERED, TableAgent

log = logging.getLogger(__name__)

TABLE = "entities"
_KEPT = 1  # what the local table keeps for a record (see the module docstring)


class EntityAgent(TableAgent):
    """The entity half of a worker; see the module docstring."""

    def __init__(self, app: faust.App, stage: EntityStage, executor: ThreadPoolExecutor, *, app_id: str,
                 partitions: int, batch_size: int, within_s: float, alerts: AlertSink,
                 commit_interval_s: float = 0.0, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__(app, executor, name="entities", steps="entity-steps", table=TABLE, app_id=app_id,
                         partitions=partitions, batch_size=batch_size, within_s=within_s,
                         commit_interval_s=commit_interval_s, buffered=BULK_MESSAGES_BUFFERED, ready=ready)
        self.stage = stage
        self.alerts = alerts  # dedup, then the alerts topic

    async def _batch(self, partition: int, values: list[bytes]) -> None:
        outcome = await self.run(self._observe, partition, values)
        sends = await self.alerts.send_alerts(outcome.alerts, outcome.alert_vectors)
        if sends:
            await wait_sent(sends)  # acked before the batch's offsets can be committed
        metrics.ENTITY_VERSIONS.inc(outcome.commits)
        metrics.ENTITY_WINDOWS.inc(outcome.windows)
        if outcome.late:
            metrics.ENTITY_LATE.inc(outcome.late)
        metrics.ENTITIES.set(self.stage.entities())
        metrics.observe_threshold("entity", self.stage.alert_threshold)
        closed = self.stage.closed_until(partition)
        if closed is not None:
            metrics.ENTITY_CLOSED.labels(str(partition)).set(closed)

    def _observe(self, partition: int, values: list[bytes]) -> EntityOutcome:
        steps, vectors = decode_entity_steps(values)
        return self.stage.observe(steps, vectors, partition=partition) if steps else EntityOutcome()

    async def _write_state(self, partition: int) -> None:
        """The records the batches since the last flush changed, the meta record last and alone."""
        prefix = f"{partition}|".encode()
        records = await self.run(self.stage.records, partition)
        await self._write_records(partition, [(prefix + k.encode("utf-8"), v) for k, v in records], keep=_KEPT)

    # ------------------------------------------------------------------ recovery
    def _drop(self, partition: int) -> None:
        self.stage.drop(partition)
        try:
            metrics.ENTITY_CLOSED.remove(str(partition))
        except KeyError:
            pass  # never reported

    def _load(self, partition: int, items: list[tuple[bytes, Any]]) -> None:
        prefix = f"{partition}|".encode()
        mine = [(bytes(k), v) for k, v in items if bytes(k).startswith(prefix)]
        values = [v for _, v in mine if isinstance(v, dict)]
        if len(values) < len(mine):  # placeholders: this process wrote them, the changelog has the records
            log.warning("entities: partition %d has %d records only held as placeholders; its state restarts "
                        "empty (recovery replays full records: this happens only if a partition is loaded "
                        "without a recovery)", partition, len(mine) - len(values))
            values = []
        try:
            counts = self.stage.restore(partition, values)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            log.error("entities: partition %d records unreadable (%s); its state restarts empty", partition, exc)
            self.stage.drop(partition)
            return
        for key, _ in mine:  # the records are in the tracker now: keep placeholders only
            self.table.data[key] = _KEPT
        metrics.ENTITIES.set(self.stage.entities())
        closed = self.stage.closed_until(partition)
        if closed is not None:
            metrics.ENTITY_CLOSED.labels(str(partition)).set(closed)
        if counts.get("entities") or counts.get("accumulators"):
            log.info("entities: partition %d recovered %d entities, %d peer groups, %d open accumulators",
                     partition, counts["entities"], counts["groups"], counts["accumulators"])
