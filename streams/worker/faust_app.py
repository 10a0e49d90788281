"""The Faust app: topics and thin agents around `Pipeline.process`.

At-least-once: Tansu has no transactions (docs/architecture.md, "Facts about the platform"), so
effects are idempotent instead: store point ids are UUIDv5 of event ids and alert ids are deterministic,
so a batch re-delivered after a crash rewrites the same points and alerts.

The pipeline is CPU-bound; it runs in a single worker thread so the event loop
keeps heartbeating while a batch is encoded, and batches never overlap (the
state is not shared between threads).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

import faust

from streams.kafka import faust_commits
from streams.ops import metrics
from streams.worker.alert_agent import AlertAgent
from streams.worker.batches import finish_batch, wait_sent
from streams.worker.consumer_watch import ConsumerWatch
from streams.worker.entity_agent import EntityAgent
from streams.stages.entity_stage import EntityStage, entity_step_rows
from streams.kafka.faust_consumer import fix_stale_fetches
from streams.kafka.fetch_wait import adapt_fetch_wait, limit_fetch_wait
from streams.worker.feedback_agent import FeedbackAgent
from streams.ops.health import Health
from streams.kafka.client_options import aiokafka_kwargs, faust_credentials
from streams.ops.logs import OwnLevels, logging_config
from streams.store.collections import EVENTS as EVENTS_COLLECTION
from streams.stages.pipeline import BatchOutcome, Pipeline
from streams.stages.factory import build_deduper, stage_thresholds
from streams.worker.session_agent import SessionAgent
from streams.worker.store_points import StorePointsGauge
from streams.stages.session_stage import SessionStage
from streams.config.settings import Settings
from streams.stages.snapshots import save_feedback, save_session_state, save_state, save_thresholds
from streams.cli.alert_lines import format_alert_line
from streams.kafka.json_codec import dumps
from streams.kafka.partition_keys import entity_key
from streams.kafka.step_codec import encode_entity_steps, encode_session_steps

log = logging.getLogger(__name__)

#: the most bytes of one partition's records in one produce request (Faust's default: 16 KB); see App below
PRODUCER_BATCH_BYTES = 1_048_576


class _FaustWorker(faust.Worker):
    """Faust's worker, whose root log handler lets secstream's records through at ``own_level``."""

    own_level: int = logging.INFO
    on_stopping: Callable[[], None] | None = None  # called on SIGTERM/SIGINT, before Faust stops anything
    on_report: Callable[[], Awaitable[str]] | None = None  # SIGUSR2: a state report to log

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None  # its terminal escapes would prefix log lines in files and JSON logs

    def _schedule_shutdown(self, signal: Any) -> None:
        if self.on_stopping is not None:
            self.on_stopping()
        super()._schedule_shutdown(signal)

    def _on_sigusr2(self) -> None:
        """SIGUSR2 logs the consumer's state; Faust's default drops the worker into pdb, which blocks the
        event loop of a worker that has no terminal (heartbeats stop, the group evicts it)."""
        if self.on_report is not None:
            self.add_future(self._report())

    async def _report(self) -> None:
        if self.on_report is not None:
            log.warning("%s", await self.on_report())

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        if logger.handlers:  # Faust set it to its own level; filter per logger instead (streams/ops/logs.py)
            handler = logger.handlers[0]
            others = max(handler.level, level, logging.DEBUG)
            handler.setLevel(logging.NOTSET)
            handler.addFilter(OwnLevels(self.own_level, others))


class Worker:
    """Owns the Faust app, the pipeline and the thread the pipeline runs in."""

    def __init__(self, settings: Settings, bootstrap: str, pipeline: Pipeline, *, state_dir: Any,
                 sessions: SessionStage | None = None, entities: EntityStage | None = None,
                 sample: Callable[[], Iterable[bytes]] | None = None, out: TextIO | None = None,
                 health: Health | None = None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.stage = sessions
        self.entity_stage = entities
        self.state_dir = state_dir
        self.out = out or sys.__stdout__
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline")
        self._cache_seen = (0, 0)
        self.health = health or Health()  # /healthz, /readyz (streams/ops/health.py)
        s = settings
        limit_fetch_wait(s.kafka_fetch_max_wait_ms)
        metrics.CONSUMER_FETCH_WAIT.set(s.kafka_fetch_max_wait_ms)
        adapt_fetch_wait(metrics.observe_fetch_wait)  # longer while the broker starves a partition (streams/kafka/fetch_wait.py)
        fix_stale_fetches()  # the restart stall (streams/kafka/faust_consumer.py, docs/operations.md "Restarts")
        faust_commits.install()  # commit only what a batch finished (streams/kafka/faust_commits.py)
        if s.trace_consumer:
            from streams.kafka import consumer_trace

            consumer_trace.install()
        self.app = faust.App(
            s.app_id,
            broker=f"kafka://{bootstrap}",
            broker_credentials=faust_credentials(s),  # None: plaintext (streams/kafka/client_options.py)
            value_serializer="raw",
            key_serializer="raw",
            topic_partitions=s.topic_partitions,
            topic_replication_factor=1,
            broker_rebalance_timeout=s.kafka_rebalance_timeout_s,
            broker_session_timeout=s.kafka_session_timeout_s,
            broker_heartbeat_interval=s.kafka_heartbeat_interval_s,
            consumer_auto_offset_reset="earliest",
            # the check compares a table's last changelog offset with the broker's end offset, which Tansu
            # answers one or more short after a multi-record batch: with it on, the first rebalance after a
            # changelog write crashed a running worker (ConsistencyError; docs/operations.md). The tables live
            # in memory and are rebuilt from their changelogs, so there is no local file it could protect.
            recovery_consistency_check=False,
            producer_max_request_size=max(1_048_576, 4 * s.max_message_bytes, 16 * 1_048_576),
            # aiokafka keeps one produce request in flight per broker, so a partition's sends go at one batch per
            # round trip: at Faust's 16 KB, five steps of a few KB each (vectors in base64). On Tansu with S3
            # storage that was ~100 steps/s, and a batch of 819 events took more than the guard's 60 s to send
            # (2026-12-07). One request now carries up to a megabyte of one partition's records.
            producer_max_batch_size=PRODUCER_BATCH_BYTES,
            consumer_max_fetch_size=16 * 1_048_576,
            datadir=str(s.data_dir / "faust"),
            web_enabled=False,
        )
        self.events_topic = self.app.topic(s.topic_events, partitions=s.topic_partitions)
        self.dlq_topic = self.app.topic(s.topic_dlq, partitions=1)
        self.alerts_topic = self.app.topic(s.topic_alerts, partitions=1)
        self.feedback_topic = self.app.topic(s.topic_feedback, partitions=1)
        # every raised alert goes through dedup (streams/worker/alert_agent.py) before the alerts topic
        commit_s = s.commit_interval_ms / 1000  # the table agents' commit interval (streams/worker/table_agent.py)
        self.alerts = AlertAgent(self.app, lambda: build_deduper(s), self.executor, app_id=s.app_id,
                                 partitions=s.topic_partitions, batch_size=s.batch_size,
                                 # alerts are few and an analyst waits on them: no 0.2 s floor (the
                                 # session and entity agents keep it: fewer, larger changelog writes)
                                 within_s=s.batch_within_s, alerts_topic=self.alerts_topic,
                                 alert_format=s.alert_format, ready=self.ensure_topics, store=pipeline.store,
                                 dim=pipeline.encoder.dim, feedback=pipeline.feedback,
                                 commit_interval_s=commit_s)
        # analyst verdicts: read by every worker (streams/worker/feedback_agent.py)
        self.feedback = FeedbackAgent(self.app, self.executor, bootstrap=bootstrap, topic=s.topic_feedback,
                                      client_options=aiokafka_kwargs(s),
                                      memory=pipeline.feedback, pipeline=pipeline, sessions=sessions,
                                      store=pipeline.store, retry_s=s.feedback_retry_s, ready=self.ensure_topics)
        self.sessions: SessionAgent | None = None
        if sessions is not None:
            self.sessions = SessionAgent(
                self.app, sessions, self.executor, app_id=s.app_id, partitions=s.topic_partitions,
                batch_size=s.batch_size, within_s=max(s.batch_within_s, 0.2), idle_s=s.session_idle_s,
                alerts=self.alerts, sessions_topic=self.app.topic(s.topic_sessions, partitions=1),
                commit_interval_s=commit_s, ready=self.ensure_topics)
        self.entities: EntityAgent | None = None
        if entities is not None:
            self.entities = EntityAgent(
                self.app, entities, self.executor, app_id=s.app_id, partitions=s.topic_partitions,
                batch_size=s.batch_size, within_s=max(s.batch_within_s, 0.2), alerts=self.alerts,
                commit_interval_s=commit_s, ready=self.ensure_topics)
        self._outputs = [self.dlq_topic, self.alerts_topic, self.feedback_topic]
        if self.sessions is not None:
            self._outputs.append(self.sessions.sessions_topic)
        self._topics_lock = asyncio.Lock()
        self._turn = asyncio.Lock()  # one events batch, or one state save, at a time
        self._topics_ready = False
        self.app.agent(self.events_topic, name="events")(self._events_agent)
        faust_commits.guard_topics([s.topic_events])
        # lag gauge and stall guard (streams/worker/consumer_watch.py)
        self.watch = ConsumerWatch(self.app, self.health, events_topic=s.topic_events, timeout_s=s.stall_timeout_s,
                                   recover=s.stall_recovery, max_recoveries=s.stall_max_recoveries,
                                   store_failing=lambda: getattr(pipeline.store, "up", True) is False)
        self.app.timer(min(5.0, s.stall_timeout_s / 4), name="consumer-watch")(self._watch_timer)
        self.points = StorePointsGauge(pipeline.store, EVENTS_COLLECTION) if pipeline.store is not None else None
        self.app.timer(s.store_count_interval_s, name="points")(self._points_timer)
        self.app.timer(1.0, name="health")(self._health_timer)
        self.app.timer(s.state_interval_s, name="state")(self._state_timer)
        if s.print_alerts:
            self.app.agent(self.alerts_topic, name="alerts-printer")(self._print_alerts)
        if sample is not None:
            self._sample = sample
            self.app.task(self._feed_sample)
        self.thresholds = stage_thresholds(pipeline, sessions, entities)
        for kind, threshold in self.thresholds.items():
            metrics.observe_threshold(kind, threshold)

    async def ensure_topics(self) -> None:
        """Create the output topics (DLQ, alerts, sessions) once, before anything is sent to them.

        Left to auto-creation, the first send to a topic that does not exist yet can
        wait on metadata for the producer's whole request timeout (seen on Tansu),
        stalling the batch and the shutdown behind it.
        """
        async with self._topics_lock:
            if self._topics_ready:
                return
            for topic in self._outputs:
                await topic.maybe_declare()
            self._topics_ready = True

    async def _events_agent(self, stream: faust.StreamT) -> None:
        await self.ensure_topics()
        # noack: events are acked by take_events after their batch only, never by the stream's background
        # drainer (it would ack events no batch handled once a stop closed take_events; streams/worker/batches.py)
        async for events in stream.noack().take_events(self.settings.batch_size, within=self.settings.batch_within_s):
            await finish_batch("events", events, self._batch(events))

    async def _batch(self, events: list[Any]) -> None:
        """Score a batch, then send its effects and wait for their acks (streams/worker/batches.py: its offsets
        are committed after that). Under :attr:`_turn`: state is saved between batches, never with a
        batch scored but not yet sent (a crash then would restore re-delivered events as already seen)."""
        loop = asyncio.get_running_loop()
        async with self._turn:
            values = [e.value if isinstance(e.value, bytes) else bytes(e.value or b"") for e in events]
            sources = [(e.message.partition, e.message.offset) for e in events]
            scoring = loop.run_in_executor(self.executor, self._process, values, sources)
            try:
                outcome, steps, entity_steps = await asyncio.shield(scoring)
            except asyncio.CancelledError:  # the pipeline thread goes on and learns the batch: hold what it decides
                outcome = (await scoring)[0]
                self._hold_unpublished(outcome)
                raise
            try:
                await self._publish(outcome, events, steps, entity_steps)
            except BaseException:  # failed or cancelled (the guard, a stop): Kafka re-delivers the batch
                self._hold_unpublished(outcome)
                raise
            self.pipeline.release_unpublished(outcome)
            metrics.EVENTS_UNPUBLISHED.set(len(self.pipeline.unpublished))
            now = time.time()
        for e in events:
            ts = e.message.timestamp
            if ts:
                metrics.E2E_SECONDS.observe(max(0.0, now - ts))
        metrics.observe_outcome(outcome)
        metrics.observe_threshold("event", self.pipeline.alert_threshold)
        metrics.BASELINE_EXEMPLARS.set(len(self.pipeline.detector.baseline))
        metrics.observe_baseline("events", self.pipeline.detector.baseline)
        self._observe_cache()

    def _hold_unpublished(self, outcome: BatchOutcome) -> None:
        """A batch learned and not published: its re-delivery must publish what was decided the first time, not
        "already seen" (streams/stages/unpublished.py). Under :attr:`_turn`, so a state save includes them."""
        held = self.pipeline.hold_unpublished(outcome)
        metrics.EVENTS_UNPUBLISHED.set(len(self.pipeline.unpublished))
        log.warning("events: held the first outcome of %d learned events (%d alerts) for their re-delivery",
                    held, len(outcome.alerts))

    def _observe_cache(self) -> None:
        text = self.pipeline.encoder.components.get("text")
        hits, misses = getattr(text, "cache_hits", 0), getattr(text, "cache_misses", 0)
        last_hits, last_misses = self._cache_seen
        if hits >= last_hits and misses >= last_misses:
            metrics.TEXT_CACHE.labels("hit").inc(hits - last_hits)
            metrics.TEXT_CACHE.labels("miss").inc(misses - last_misses)
        self._cache_seen = (hits, misses)

    def _process(self, values: list[bytes], sources: list[tuple[int, int]]
                 ) -> tuple[BatchOutcome, list[tuple[int, bytes]], list[tuple[int, bytes]]]:
        """Score a batch and derive its session and entity steps, in bulk per partition (on the pipeline thread)."""
        outcome = self.pipeline.process(values)
        partitions = self.settings.topic_partitions
        steps = encode_session_steps(outcome, self.stage, partitions, sources) if self.stage is not None else []
        e_steps: list[tuple[int, bytes]] = []
        if self.entity_stage is not None and outcome.vectors is not None:
            found, rows = entity_step_rows(outcome, self.entity_stage.types)
            e_steps = encode_entity_steps(found, outcome.vectors, partitions, rows)
        return outcome, steps, e_steps

    async def _publish(self, outcome: BatchOutcome, events: list[Any], steps: list[tuple[int, bytes]],
                       e_steps: list[tuple[int, bytes]]) -> None:
        sends = []
        if self.sessions is not None and steps:
            sends.extend(await self.sessions.send_steps(steps))
        if self.entities is not None and e_steps:
            sends.extend(await self.entities.send_steps(e_steps))
        for r in outcome.rejected:
            msg = events[r.index].message
            record = r.dlq_record(source=f"{msg.topic}/{msg.partition}/{msg.offset}")
            sends.append(await self.dlq_topic.send(key=None, value=dumps(record)))
        sends.extend(await self.alerts.send_alerts(outcome.alerts, outcome.alert_vectors))
        if sends:  # wait for the broker's acks before the batch's offsets can be committed
            await wait_sent(sends)

    async def _health_timer(self) -> None:
        """Beat (the loop runs) and say whether this worker can take traffic (streams/ops/health.py)."""
        self.health.beat()
        if not self._topics_ready:
            self.health.set_ready(False, "creating output topics")
            return
        mine = [tp for tp in self.app.consumer.assignment() if tp.topic == self.settings.topic_events]
        self.health.set_ready(bool(mine), "" if mine else f"no partition of {self.settings.topic_events} assigned")

    async def _watch_timer(self) -> None:
        if self._topics_ready:
            await self.watch.check()

    async def _points_timer(self) -> None:
        """Points stored (a timer of its own: while the store is down the count waits, the lag must not).

        Starts a count off the pipeline thread and returns; a tick whose previous count still runs is
        skipped (streams/worker/store_points.py: awaited here, behind the batches, it overran the 5 s)."""
        if self.points is not None:
            await self.points.tick()

    async def _state_timer(self) -> None:
        async with self._turn:  # between two batches of the events agent (see _batch)
            await asyncio.get_running_loop().run_in_executor(self.executor, self.save)

    def save(self) -> None:
        """Persist detector/encoder state and flush the store (runs on the pipeline thread)."""
        save_state(self.pipeline, self.state_dir)
        if self.stage is not None:
            save_session_state(self.stage.scorer, self.state_dir, self.pipeline.model_version)
        save_feedback(self.pipeline.feedback, self.state_dir, self.pipeline.model_version)
        save_thresholds(self.state_dir, self.pipeline.model_version, self.thresholds)
        if self.pipeline.store is not None:
            self.pipeline.store.flush()

    async def _print_alerts(self, stream: faust.StreamT) -> None:
        async for value in stream:
            try:
                alert = json.loads(value)
                line = format_alert_line(alert)
            except (ValueError, TypeError, AttributeError):
                continue
            print(line, file=self.out, flush=True)

    async def _feed_sample(self) -> None:
        await asyncio.sleep(1.0)
        rate = self.settings.sample_rate
        sent, started = 0, time.monotonic()
        for value in self._sample():
            try:
                key = entity_key(json.loads(value))
            except ValueError:
                key = None
            await self.events_topic.send(key=key, value=value)
            sent += 1
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0.05:
                await asyncio.sleep(ahead)
        log.info("sample stream: %d events sent", sent)

    def run(self, loglevel: str = "info") -> None:
        """Run until SIGINT/SIGTERM; then save state."""
        # Faust's own INFO chatter (service start/stop trees) drowns the alerts on a
        # terminal: it logs at WARN unless debugging; secstream's loggers keep the level asked.
        faust_level = "debug" if loglevel == "debug" else "warn"
        json_logs = self.settings.log_format == "json"  # Faust's records too, through our formatter
        worker = _FaustWorker(self.app, loglevel=faust_level, redirect_stdouts=False, console_port=0, quiet=True,
                              logging_config=logging_config(faust_level, "json") if json_logs else None)
        worker.own_level = getattr(logging, loglevel.upper(), logging.INFO)
        worker.on_stopping = self.stopping
        worker.on_report = self.watch.report
        for name in ("streams", "encoders", "detection", "secstream"):
            logging.getLogger(name).setLevel(loglevel.upper())
        try:
            worker.execute_from_commandline()
        except SystemExit:
            pass
        finally:
            self.stopping()
            if self.points is not None:
                self.points.close()
            try:
                self.executor.submit(self.save).result(timeout=60)
            except Exception as exc:  # noqa: BLE001 - the store is down: the state files are written first
                log.error("shutdown: state saved, store not flushed (%s: %s)", type(exc).__name__, exc)
            self.executor.shutdown(wait=True)

    def stopping(self) -> None:
        """The worker is stopping: not ready any more, and a batch waiting on a failing store gives up
        (streams/worker/batches.py withholds it: Kafka re-delivers it) instead of holding the shutdown."""
        self.health.set_ready(False, "shutting down")
        abort = getattr(self.pipeline.store, "abort", None)
        if abort is not None:
            abort()
