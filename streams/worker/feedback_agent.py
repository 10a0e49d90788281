"""Analyst verdicts in the worker: every worker reads the whole feedback topic.

``secstream feedback ALERT_ID --verdict false_positive|true_positive`` publishes
``{"alert_id", "verdict", "note", "analyst", "time"}`` to ``secstream.feedback``.
A verdict must reach every worker, not one of a consumer group: the event and
session state it changes is per worker (each scores its own partitions). So each
worker reads the topic with its own group-less consumer, from the start at every
start-up; verdicts already applied (:meth:`detection.feedback.FeedbackMemory.known`,
saved with the worker's state) are skipped, so a restart applies each once.

A verdict is resolved through the store: the alert in the ``alerts`` collection
(:mod:`streams.worker.alert_agent`) gives its kind and its event-space evidence vector; a
session alert's session vector comes from the ``sessions`` collection. An
``entity_drift`` verdict is counted (``recorded``) but has no vector to act on. An
alert this worker's store does not hold (yet: the alert is stored just after it is
published; or never: with embedded stores, another worker raised it) is retried for
``retry_s`` and then counted ``not_found``. Applying runs on the pipeline thread,
between batches; see :mod:`detection.feedback` for what a verdict changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import numpy as np
from aiokafka import AIOKafkaConsumer

from detection.alerts import summary_line
from detection.feedback import (
    FALSE_POSITIVE,
    FeedbackMemory,
    InvalidFeedback,
    Verdict,
    parse_feedback,
)
from streams.ops import metrics
from streams.store.collections import ALERTS, EVENTS
from streams.stages.pipeline import Pipeline
from streams.stages.session_stage import SessionStage
from streams.store import VectorStore, point_id

log = logging.getLogger(__name__)

#: what resolving a verdict's alert gave: (alert document, vector space, evidence vector or None)
Resolved = tuple[dict[str, Any], str, np.ndarray | None]


class FeedbackAgent:
    """Reads verdicts and applies them to this worker's state; see the module docstring."""

    def __init__(self, app: faust.App, executor: ThreadPoolExecutor, *, bootstrap: str, topic: str,
                 memory: FeedbackMemory, pipeline: Pipeline, sessions: SessionStage | None,
                 store: VectorStore | None, retry_s: float = 60.0, ready: Any = None,
                 client_options: dict[str, Any] | None = None) -> None:
        self.executor = executor
        self.bootstrap, self.topic = bootstrap, topic
        self.client_options = client_options or {}  # security options (streams.kafka.client_options.aiokafka_kwargs)
        self.memory, self.pipeline, self.sessions, self.store = memory, pipeline, sessions, store
        self.retry_s = retry_s
        self.ready = ready
        self.pending: list[tuple[Verdict, float]] = []  # (verdict, monotonic time first tried)
        app.task(self._run)

    async def _run(self) -> None:
        if self.ready is not None:
            await self.ready()  # the topic exists: a group-less consumer only learns of new topics slowly
        while True:  # a broker outage stops reading, not the worker; every start re-reads from the beginning
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the worker, retry the consumer
                log.warning("feedback consumer failed (%s: %s); retrying in 5 s", type(exc).__name__, exc)
                await asyncio.sleep(5.0)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False, **self.client_options)
        await consumer.start()
        loop = asyncio.get_running_loop()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                now = time.monotonic()
                for records in batch.values():
                    for rec in records:
                        try:
                            self.pending.append((parse_feedback(rec.value or b""), now))
                        except InvalidFeedback as exc:
                            metrics.FEEDBACK.labels("unknown", "invalid").inc()
                            log.warning("feedback %s/%d@%d ignored: %s", rec.topic, rec.partition, rec.offset, exc)
                if self.pending:
                    self.pending = await loop.run_in_executor(self.executor, self.apply_all, self.pending)
        finally:
            await consumer.stop()

    def apply_all(self, pending: list[tuple[Verdict, float]]) -> list[tuple[Verdict, float]]:
        """Apply what can be applied (on the pipeline thread); returns what to retry later."""
        retry = []
        for verdict, since in pending:
            result = self.apply(verdict)
            if result == "not_found" and time.monotonic() - since < self.retry_s:
                retry.append((verdict, since))
                continue
            metrics.FEEDBACK.labels(verdict.verdict, result).inc()
            if result == "applied":
                log.info("feedback applied: %s on alert %s%s", verdict.verdict, verdict.alert_id,
                         f" ({verdict.note})" if verdict.note else "",
                         extra={"alert_id": verdict.alert_id, "verdict": verdict.verdict})
            elif result == "not_found":
                log.info("feedback on alert %s: not in this worker's store after %.0f s", verdict.alert_id,
                         self.retry_s)
        for name, n in self.memory.counts().items():
            metrics.FEEDBACK_VERDICTS.labels(name).set(n)
        return retry

    def apply(self, verdict: Verdict) -> str:
        """``applied``, ``known``, ``not_found`` or ``recorded`` (see :data:`streams.ops.metrics.FEEDBACK`)."""
        if self.memory.known(verdict.alert_id, verdict.verdict):
            return "known"
        resolved = self.resolve(verdict.alert_id)
        if resolved is None:
            return "not_found"
        doc, space, vector = resolved
        if vector is None:
            return "recorded"
        self.memory.add(verdict.alert_id, verdict.verdict, str(doc.get("kind", "")), space, vector, verdict.note)
        if verdict.verdict == FALSE_POSITIVE:
            ident = f"feedback:{verdict.alert_id}"
            summary = f"false positive: {summary_line(doc.get('event') or {}) or doc.get('title', '')}"
            if space == "event":
                self.pipeline.learn_normal(vector, ident, summary)
            elif self.sessions is not None:
                self.sessions.learn_normal(vector, ident, summary)
        return "applied"

    def resolve(self, alert_id: str) -> Resolved | None:
        """The stored alert and its evidence vector (None: the alert is not in this store)."""
        store = self.store
        if store is None or store.attach(ALERTS) is None:
            return None
        found = store.retrieve_points(ALERTS, [point_id(alert_id)])
        if not found:
            return None
        doc = found[0].payload
        kind = str(doc.get("kind", ""))
        if kind == "event_anomaly":  # as first seen, and as the encoder sees the event now
            rows = [found[0].dense]
            ids = [str(e) for e in (doc.get("evidence") or {}).get("event_ids") or []][:1]
            events = store.retrieve(EVENTS, [point_id(ids[0])]) if ids and store.attach(EVENTS) is not None else []
            if events:
                rows.extend(self.pipeline.encode_stored([events[0].payload]))
            return doc, "event", np.stack(rows)
        if kind == "session_anomaly":
            from streams.store.session_points import SESSIONS, session_point_id

            session_id = (doc.get("evidence") or {}).get("session_id")
            if session_id and store.attach(SESSIONS) is not None:
                sess = store.retrieve_points(SESSIONS, [session_point_id(str(session_id))])
                if sess:
                    return doc, "session", sess[0].dense
        return doc, "none", None
