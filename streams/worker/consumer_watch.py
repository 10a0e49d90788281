"""The consumer watch: the events lag gauge, and a liveness guard against a consumer that stalls.

Every few seconds (a Faust timer of the worker) it reads each assigned source partition (the events
topic and the agents' step topics; not the changelogs) into a :class:`streams.worker.stall.PartitionState`:
the broker's end offset (ListOffsets), the last fetch's high-water mark, the fetch position,
Faust's committed offset and the offsets processed above it. From those it sets
``secstream_consumer_lag_messages`` and asks :class:`streams.worker.stall.StallDetector` for stalls.

**A hole is repaired first.** A stream partition whose commit waits for an offset that nobody will finish
(offsets above it processed, nothing at it in flight: :func:`streams.kafka.faust_commits.holes`) for
:data:`HOLE_REPAIR_AFTER_S` (at most half the stall timeout) is sought back to its committed offset at once: the
consumer fetches the hole again (and the processed records above it, whose effects are idempotent) without a
rejoin. Logged at WARNING with the offsets, counted in ``secstream_consumer_holes_repaired_total{topic}``. A
withheld batch (streams/worker/batches.py) leaves such a hole on a worker that keeps its partition; so does a
record Faust's delivery loop never handed to its stream (the restart stress, docs/operations.md "Restarts").

On a stall it logs why (one ERROR line per stalled partition: the kind, the offsets), counts it
(``secstream_consumer_stalls_total{topic,reason}``) and recovers: the consumer rejoins the group
(``secstream_consumer_stall_recoveries_total``). The rebalance that follows revokes and re-assigns
the partitions, and Faust seeks each to its committed offset, so whatever was never processed is
fetched again. If ``recover`` is off, or ``max_recoveries`` rejoins in a row did not move the
committed offset, the worker gives up: ``secstream_consumer_stalled`` is 1 and ``/readyz`` answers
503 with the reason, so an orchestrator replaces the worker. The stall ends (and readiness comes
back) once every stalled partition's committed offset moved or its backlog is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from streams.kafka import consumer_trace, faust_commits, faust_consumer
from streams.ops import metrics
from streams.worker.batches import cancel_batches_waiting, longest_batch_wait
from streams.ops.health import Health
from streams.worker.stall import PartitionState, Stall, StallDetector, lag

log = logging.getLogger(__name__)

#: a batch in flight longer than this (a quarter of the stall timeout when that is shorter) holds the worker:
#: backpressure, not a stall. The store retrying, or a worker's first batch waiting for the text model (~7 s of
#: imports; under load a 4 s stall timeout read that as a `hole` with nothing committed yet, 2026-12-07). A batch
#: that never finishes is the guard's `batch` stall (:data:`STUCK_AFTER_MIN_S`); holes are repaired either way.
BUSY_AFTER_S = 5.0
#: a hole (committed offset waiting for an offset nobody will finish) lasting this long is sought back to
HOLE_REPAIR_AFTER_S = 10.0
#: a batch in flight this long without a send acked (or the stall timeout, when longer) while the store answers is stuck
STUCK_AFTER_MIN_S = 30.0


class ConsumerWatch:
    """Reads a Faust app's consumer; see the module docstring."""

    def __init__(self, app: Any, health: Health, *, events_topic: str, timeout_s: float, recover: bool = True,
                 max_recoveries: int = 3, store_failing: Callable[[], bool] = lambda: False) -> None:
        self.app = app
        self.health = health
        self.events_topic = events_topic
        self.detector = StallDetector(timeout_s)
        self.busy_after_s = min(BUSY_AFTER_S, timeout_s / 4)
        self.store_failing = store_failing
        self.stuck_after_s = max(timeout_s, STUCK_AFTER_MIN_S)
        self.recover = recover
        self.max_recoveries = max_recoveries
        self.recoveries = 0  # rejoins since the committed offsets last moved
        self._stalled: dict[tuple[str, int], int | None] = {}  # stalled partition -> committed offset then
        self._gave_up = False
        self._lag_labels: set[tuple[str, str]] = set()  # lag gauge children set by this worker
        self.hole_after_s = min(HOLE_REPAIR_AFTER_S, timeout_s / 2)
        self._holes: dict[Any, tuple[int, float]] = {}  # tp -> (committed offset, first seen) of a possible hole

    async def states(self) -> list[PartitionState]:
        """The assigned source partitions as the consumer sees them now (empty while unassigned)."""
        consumer = self.app.consumer
        try:
            tps = [tp for tp in consumer.assignment() if not _internal(consumer, tp)]
        except Exception:  # noqa: BLE001 - the consumer is not started (yet, or any more)
            return []
        if not tps:
            return []
        listed = await _within(consumer.highwaters(*tps), {})
        positions = await _within(_positions(consumer, tps), {})
        committed, acked = consumer._committed_offset, consumer._acked
        out = []
        for tp in tps:
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not fetched yet
                highwater = None
            out.append(PartitionState(tp.topic, tp.partition, listed.get(tp), highwater, positions.get(tp),
                                      committed.get(tp), len(acked.get(tp) or ())))
        return out

    async def check(self) -> list[Stall]:
        """One round: lag gauge, stall detection, recovery (see the module docstring)."""
        states = await self.states()
        labels = set()
        for state in states:
            if state.topic == self.events_topic:
                behind = lag(state)
                if behind is not None:
                    labels.add((state.topic, str(state.partition)))
                    metrics.CONSUMER_LAG.labels(state.topic, str(state.partition)).set(behind)
        for gone in self._lag_labels - labels:  # revoked: this worker no longer reports it
            metrics.CONSUMER_LAG.remove(*gone)
        self._lag_labels = labels
        now = time.monotonic()
        recovering = bool(self.app.rebalancing or getattr(self.app, "in_recovery", False))
        age, failing = longest_batch_wait(now), self.store_failing()
        self._maybe_cleared(states, recovering=recovering, batch_age=age)
        if not recovering:
            await self.repair_holes(now)
        progress = (self.app.rebalancing_count, tuple(sorted((s.topic, s.partition, s.position) for s in states)))
        if age >= self.stuck_after_s and not failing:
            return await self._on_stuck_batch(age, states, now)
        stalls = self.detector.observe(now, states, recovering=recovering, recovery_progress=progress,
                                       busy=age > self.busy_after_s)
        if stalls:
            await self._on_stalls(stalls, states, now)
        return stalls

    async def repair_holes(self, now: float) -> list[tuple[Any, int]]:
        """Seek each partition whose hole lasted :attr:`hole_after_s` back to its committed offset (module docstring)."""
        consumer = self.app.consumer
        if not consumer.flow_active or not self.app.flow_control.is_active():
            self._holes.clear()
            return []
        found = faust_commits.holes(consumer)
        for tp in [tp for tp, (committed, _) in self._holes.items() if found.get(tp) != committed]:
            del self._holes[tp]  # filled (or moved): not a hole any more
        repaired = []
        for tp, committed in sorted(found.items()):
            seen = self._holes.setdefault(tp, (committed, now))
            if now - seen[1] < self.hole_after_s:
                continue
            del self._holes[tp]
            acked = consumer._acked.get(tp) or ()
            log.warning("%s/%d: hole at offset %d for %.0f s (%d processed above it, nothing at it in flight); seeking "
                        "back to it%s", tp.topic, tp.partition, committed, now - seen[1], len(acked),
                        _trace_of(tp, committed))
            try:
                await consumer.seek(tp, committed)
            except Exception as exc:  # noqa: BLE001 - revoked meanwhile, consumer stopping: the guard still watches
                log.warning("%s/%d: the seek back to %d failed: %s", tp.topic, tp.partition, committed, exc)
                continue
            metrics.CONSUMER_HOLES_REPAIRED.labels(tp.topic).inc()
            self.detector.restart(tp.topic, tp.partition, now)  # the stall guard gives the repair its whole timeout
            repaired.append((tp, committed))
        return repaired

    async def _on_stuck_batch(self, age: float, states: list[PartitionState], now: float) -> list[Stall]:
        """A batch in flight for :attr:`stuck_after_s` while the store answers: it waits on something that will not
        (a send lost with a broker). Cancelled, it is withheld (its offsets stay uncommitted) and the rejoin
        that follows re-delivers it."""
        if self.recover and self.recoveries < self.max_recoveries:
            agents = sorted(set(cancel_batches_waiting(self.stuck_after_s, now)))
            what = f"a batch of {', '.join(agents)} waited {age:.0f} s with no send acked and the store up; cancelled: its offsets " \
                   "are withheld and re-delivered"
        else:
            what = f"a batch waited {age:.0f} s with no send acked and the store up"
        stall = Stall("", -1, "batch", age, what)
        await self._on_stalls([stall], states, now)
        return [stall]

    async def report(self) -> str:
        """The consumer's state in a few lines (``kill -USR2 <pid>`` logs it): where a stalled worker waits."""
        app, consumer = self.app, self.app.consumer
        lines = [f"consumer state: rebalancing={app.rebalancing} (rebalance #{app.rebalancing_count}), "
                 f"in_recovery={getattr(app, 'in_recovery', None)}, flow_active={consumer.flow_active}, "
                 f"unacked messages={len(consumer._unacked_messages)}, recoveries in a row={self.recoveries}",
                 f"  acks and gaps not recorded (streams/kafka/faust_commits.py): {faust_commits.dropped_acks()}",
                 f"  records fetched and not delivered (streams/kafka/faust_consumer.py): "
                 f"{faust_consumer.undelivered() or 'none'}",
                 f"  paused: {_names(consumer._paused_partitions)}",
                 f"  not fetched while their agent's buffer is full: {_names(consumer._buffered_partitions)}",
                 f"  fetched: {_names(consumer._get_active_partitions())}",
                 f"  aiokafka fetcher: {_fetcher_state(consumer)}"]
        read = consumer._read_offset
        for state in await self.states():
            lines.append(f"  {state.topic}/{state.partition}: listed end {state.listed_end}, highwater "
                         f"{state.highwater}, position {state.position}, committed {state.committed}, read offset "
                         f"{read.get((state.topic, state.partition))}, acked above committed {state.acked_above}, "
                         f"lag {lag(state)}")
        return "\n".join(lines)

    def _maybe_cleared(self, states: list[PartitionState], *, recovering: bool, batch_age: float) -> None:
        if not self._stalled:
            return
        now_committed = {(s.topic, s.partition): s for s in states}
        for key, committed in list(self._stalled.items()):
            if key == ("", -1):  # a recovery or batch stall: over when neither holds any more
                if not recovering and batch_age < self.stuck_after_s:
                    del self._stalled[key]
                continue
            state = now_committed.get(key)
            if state is None or state.committed != committed or not lag(state):
                del self._stalled[key]
        if not self._stalled:
            log.warning("consumer stall cleared after %d recover%s: the committed offsets move again",
                        self.recoveries, "y" if self.recoveries == 1 else "ies")
            self.recoveries = 0
            self._gave_up = False
            metrics.CONSUMER_STALLED.set(0)
            self.health.set_stalled("")

    async def _on_stalls(self, stalls: list[Stall], states: list[PartitionState], now: float) -> None:
        committed = {(s.topic, s.partition): s.committed for s in states}
        for stall in stalls:
            metrics.CONSUMER_STALLS.labels(stall.topic or stall.reason, stall.reason).inc()
            self._stalled.setdefault((stall.topic, stall.partition), committed.get((stall.topic, stall.partition)))
        why = "; ".join(s.describe() for s in stalls)
        try:  # what the consumer looked like when it stalled, before the rejoin changes it
            log.warning("%s", await self.report())
        except Exception as exc:  # noqa: BLE001 - a report must never stop the recovery
            log.warning("consumer state report failed: %s", exc)
        if self.recover and self.recoveries < self.max_recoveries:
            self.recoveries += 1
            log.error("consumer stalled: %s; recovering: rejoining the group (%d of %d)", why, self.recoveries,
                      self.max_recoveries)
            metrics.CONSUMER_STALL_RECOVERIES.inc()
            await rejoin(self.app)
            self.detector.reset(time.monotonic())
            return
        if not self._gave_up:
            self._gave_up = True
            action = "recovery is off" if not self.recover else f"{self.recoveries} rejoins did not help"
            log.error("consumer stalled: %s; %s: not ready, replace this worker", why, action)
        metrics.CONSUMER_STALLED.set(1)
        self.health.set_stalled(why)
        self.detector.reset(now)


async def rejoin(app: Any) -> None:
    """Make the worker's Kafka consumer rejoin its group (a rebalance: Faust seeks to the committed offsets)."""
    thread = app.consumer._thread

    async def request() -> None:  # in the consumer's own thread and loop, where aiokafka lives
        thread._ensure_consumer()._coordinator.request_rejoin()

    await thread.call_thread(request)


async def _positions(consumer: Any, tps: list[Any]) -> dict[Any, int | None]:
    got = await asyncio.gather(*(_within(consumer.position(tp), None, timeout_s=1.0) for tp in tps))
    return dict(zip(tps, got, strict=True))


async def _within(awaitable: Any, default: Any, timeout_s: float = 5.0) -> Any:
    """``awaitable``'s result, or ``default`` when it fails or takes longer than ``timeout_s`` (a rebalance)."""
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except Exception:  # noqa: BLE001 - rebalancing, not started, the broker away: no reading this round
        return default


def _fetcher_state(consumer: Any) -> str:
    """aiokafka's fetcher as the consumer thread sees it: results fetched and not yet handed over (a partition
    with one is not fetched again until it is consumed), nodes with a fetch in flight, the fetch task."""
    aio = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    fetcher = getattr(aio, "_fetcher", None)
    if fetcher is None:
        return "not started"
    now = time.monotonic()
    held = []
    for tp, result in list(fetcher._records.items()):
        records = getattr(result, "_partition_records", None)
        nxt = getattr(records, "next_fetch_offset", None)
        age = now - getattr(result, "_created", now)
        held.append(f"{tp.topic}/{tp.partition}={type(result).__name__}(next {nxt}, {age:.0f} s old)")
    task = getattr(fetcher, "_fetch_task", None)
    task_state = "none" if task is None else ("done: " + repr(task.exception()) if task.done() and not
                                             task.cancelled() else ("cancelled" if task.cancelled() else "running"))
    return (f"wait {fetcher._fetch_max_wait_ms} ms (streams/kafka/fetch_wait.py), held {sorted(held) or 'none'}, "
            f"in flight to nodes {sorted(fetcher._in_flight) or 'none'}, fetch task {task_state}")


def _trace_of(tp: Any, offset: int) -> str:
    """What the consumer trace saw of ``offset`` (SECSTREAM_TRACE_CONSUMER=1; else nothing)."""
    seen = consumer_trace.history(tp, offset)
    return f"; trace: {seen}" if seen is not None else ""


def _names(tps: Any) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in tps or ())


def _internal(consumer: Any, tp: Any) -> bool:
    """Changelogs (read by table recovery, never committed) and Faust's assignor topic."""
    return consumer._is_changelog_tp(tp) or tp.topic.endswith("__assignor-__leader")
