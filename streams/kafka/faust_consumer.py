"""Faust's Kafka consumer, tuned and fixed where Faust gives no setting.

**Stale fetches after a seek** (the restart stall, docs/operations.md "Restarts"). Faust's fetcher
loop (``Consumer._drain_messages``) remembers, per partition, the offset of the last message it
delivered (``_read_offset``) and drops any later message below it as a duplicate. Records are
fetched in aiokafka's own thread, and a batch fetched *before* a seek (the seek to the committed
offsets after every rebalance) can still be delivered *after* it: it moves the read offset back
up past the offsets the seek is about to fetch again, and Faust drops those as duplicates. When
their first copies had been discarded (a revocation clears the agents' queues), they are never
processed, the committed offset stops below them for good, and the worker consumes to the end of
the log and commits nothing more. Its stale records also make Faust record a false "gap" (offsets
it takes as non-existent), so a commit can skip what was never processed. :func:`fix_stale_fetches`
stamps every fetched batch, in the consumer's thread, with the state of each partition's fetch
position at hand-out (aiokafka's partition state object and the number of seeks on it); before
delivering a record, Faust's loop compares the stamp with the position now, and a record whose
partition was sought or re-assigned since is not delivered: the seek made aiokafka fetch it again.
The one message in delivery while the seek happens gets its read offset put back to the seek's, and
the first record fetched after a seek sets its partition's read offset to the seek's: records
delivered *before* the seek (during Faust's own ``perform_seek``, which awaits the seek in the
consumer's thread while the loop goes on) had moved it up, and their re-fetched copies were dropped
although the first copies had been skipped (a stream skips and acks a message of an older consumer
generation): 1,818 events of a 4-partition restart stress run were lost that way, committed and
never stored. Delivering the copies repeats work; effects are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["fix_stale_fetches", "group_start", "seek_left_out", "undelivered"]

log = logging.getLogger(__name__)

#: the longest a stream's record is held waiting for a rebalance to end (:func:`_held_until_flowing`)
HOLD_MAX_S = 30.0


class _StampedRecords(dict):  # type: ignore[type-arg]
    """A fetch's ``{tp: [records]}`` with each partition's position state at hand-out."""

    stamps: dict[Any, tuple[Any, int]]


def _partition_state(consumer: Any, tp: Any) -> Any:
    """aiokafka's TopicPartitionState of ``tp`` (None while unassigned); read from any thread."""
    subscription = consumer._subscription.subscription
    assignment = subscription.assignment if subscription is not None else None
    # a Faust TP and an aiokafka TopicPartition are equal tuples with equal hashes: no conversion per record
    return assignment.state_value(tp) if assignment is not None else None


def _stamp(state: Any) -> tuple[Any, int]:
    return state, getattr(state, "_secstream_seeks", 0)


def _fresh(consumer: Any, tp: Any, stamp: tuple[Any, int] | None) -> bool:
    """True unless ``tp``'s fetch position was sought or re-assigned since ``stamp`` was taken."""
    if stamp is None:
        return True
    state = _partition_state(consumer, tp)
    return state is stamp[0] and getattr(state, "_secstream_seeks", 0) == stamp[1]


def _install_seek_counter() -> None:
    from aiokafka.consumer.subscription_state import TopicPartitionState

    seek = TopicPartitionState.seek
    if getattr(seek, "_secstream", False):
        return

    await_reset, reset_to = TopicPartitionState.await_reset, TopicPartitionState.reset_to

    def counted_seek(self: Any, position: int) -> None:
        seek(self, position)
        self._secstream_seeks = getattr(self, "_secstream_seeks", 0) + 1
        self._secstream_target = position
        self._secstream_reset = None

    def noted_await_reset(self: Any, strategy: int) -> None:
        # the position the broker refused (out of range), before aiokafka forgets it; None on a first assignment
        self._secstream_refused = self._position
        await_reset(self, strategy)

    def noted_reset_to(self: Any, position: int) -> None:
        reset_to(self, position)
        refused = getattr(self, "_secstream_refused", None)
        # an out-of-range position reset to the log's start or end: the offsets between do not exist
        self._secstream_reset = (refused, position) if refused is not None else None
        if refused is None:  # no committed offset: the group starts reading the partition here
            self._secstream_start = position

    counted_seek._secstream = True  # type: ignore[attr-defined]
    TopicPartitionState.seek = counted_seek
    TopicPartitionState.await_reset = noted_await_reset
    TopicPartitionState.reset_to = noted_reset_to


async def _fetch_records(self: Any, consumer: Any, active_partitions: Any, timeout: float | None = None,
                         max_records: int | None = None) -> Any:
    """Faust's fetch in the consumer thread, its result stamped at once (no await between hand-out and stamp)."""
    records = await _ORIGINAL_FETCH(self, consumer, active_partitions, timeout=timeout, max_records=max_records)
    stamped = _StampedRecords(records)
    stamped.stamps = {}
    for tp in records:
        state = _partition_state(consumer, tp)
        if state is not None:
            stamped.stamps[tp] = _stamp(state)
    return stamped


def _real_gap(previous: tuple[Any, int | None] | None, stamp: tuple[Any, int] | None,
              offset: int) -> tuple[int, int] | None:
    """The offsets below ``offset`` that the log does not have, as far as this fetch shows; None if unknown.

    aiokafka fetches a partition's records in order from its position, so between two records delivered
    from one position (no seek, no re-assignment, no record left out between them) every missing offset
    is missing from the log (compaction, transaction markers), and so are the offsets between a seek's
    target and the first record fetched after it, or between a position the broker refused (retention)
    and the first record after aiokafka reset it. Anything else (Faust's read offset, which its own seek
    sets back while the loop goes on) says nothing about the log, and a "gap" taken from it lets a
    commit pass offsets that were never processed. ``previous`` is the last record delivered from this
    position, ``(stamp, None)`` once one was left out.
    """
    if stamp is None:
        return None
    same = previous is not None and previous[0] is not None and previous[0][0] is stamp[0] \
        and previous[0][1] == stamp[1]
    if same:
        assert previous is not None
        return None if previous[1] is None else (previous[1] + 1, offset - 1)
    reset = getattr(stamp[0], "_secstream_reset", None)  # the broker refused the position (retention): reset
    if reset is not None and offset == reset[1] and reset[0] < offset:  # the first record after the reset
        return reset[0], offset - 1
    target = getattr(stamp[0], "_secstream_target", None)
    if stamp[1] and reset is None and target is not None and target <= offset:  # the first record after a seek
        return target, offset - 1
    return None


def _record_gap(self: Any, tp: Any, low: int, high: int) -> None:
    """Count ``low..high`` as absent from the log in Faust's bookkeeping (its ``_add_gap`` starts one past the
    committed offset, as if that offset had been processed: Kafka's committed offset is the next one to)."""
    committed = self._committed_offset[tp]
    if committed is not None:
        low = max(low, committed)
    if low <= high:
        gaps = self._gap[tp]
        gaps.addi(low, high + 1)
        gaps.merge_overlaps()


_undelivered: dict[tuple[str, str], int] = {}  # (why, "topic/partition") -> records fetched and not delivered


def _count_undelivered(why: str, tp: Any) -> None:
    key = (why, f"{tp.topic}/{tp.partition}")
    _undelivered[key] = _undelivered.get(key, 0) + 1


def undelivered() -> dict[str, dict[str, int]]:
    """Records fetched and not delivered, by why and partition (the SIGUSR2 report shows them)."""
    out: dict[str, dict[str, int]] = {}
    for (why, tp), n in sorted(_undelivered.items()):
        out.setdefault(why, {})[tp] = n
    return out


def _must_hold(app: Any) -> bool:
    """A stream's record waits while the app's flow is suspended or a rebalance is not over (:func:`_held_until_flowing`)."""
    return not app.flow_control.is_active() or bool(app.rebalancing)


async def _held_until_flowing(self: Any, aiokafka_consumer: Any, tp: Any, stamp: tuple[Any, int] | None,
                              generation_id: int) -> str | None:
    """Hold a stream's record until the rebalance is over and the app's flow runs; None then, else why it was let go.

    - A stream skips a record delivered while the app's flow control is suspended, and nothing fetches it
      again when that happens after the seek to the committed offsets: at the end of a rebalance Faust
      resumes the partitions and seeks them before it resumes the flow, and the first worker of a group
      never stops its consumer's own flow, so records fetched in between were skipped for good (the
      restart stress lost the first 50-200 records after a worker's start that way).
    - A record queued for its agent before the rebalance ends can be thrown away: the last step of a table
      recovery (``Recovery.on_recovery_completed``) resumes the stream partitions, seeks them, then calls
      ``flow_control.resume()``, and mode's ``FlowControlEvent.resume()`` empties every agent queue on
      each call, also when the flow already runs (it had run since the recovery resumed it to read the
      changelogs). Records fetched after the seek and queued meanwhile were lost; the delivery loop had
      passed them, so the commit froze below them: the restart stress's last holes (docs/operations.md
      "The last hole"). Held until ``app.rebalancing`` is over (Faust clears it after that resume), a
      record reaches its queue after the clearing; one fetched before the seek is let go on the way.

    A record let go here is fetched again: its partition was sought or re-assigned, or paused until a seek,
    or (held :data:`HOLD_MAX_S`: a rebalance that does not end) :func:`_reseek_dropped` seeks it back.
    """
    held_since = time.monotonic()
    while _must_hold(self.app):
        if self.should_stop or not self.flow_active or self.app.consumer_generation_id != generation_id:
            return "consumer stopped or re-assigned"
        if not _fresh(aiokafka_consumer, tp, stamp):
            return "fetched before a seek"
        if tp not in self._get_active_partitions():
            return "partition not active"
        if time.monotonic() - held_since > HOLD_MAX_S:
            return "held too long in a rebalance"
        await asyncio.sleep(0.02)
    return None


async def _getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
    """Faust's ``Consumer.getmany`` (faust-streaming 0.15), delivering no record fetched before a seek."""
    if self.__dict__.get("_secstream_dropped"):
        await _reseek_dropped(self, self._thread._consumer, self._get_active_partitions())
    records, active_partitions = await self._wait_next_records(timeout)
    generation_id = self.app.consumer_generation_id
    if records is None or self.should_stop:
        return
    stamps = getattr(records, "stamps", {})
    aiokafka_consumer = self._thread._consumer
    applied = self.__dict__.setdefault("_secstream_applied", {})  # tp -> the stamp whose seek set its read offset
    records_it = self.scheduler.iterate(records)
    to_message = self._to_message
    acks_enabled_for = self.app.topics.acks_enabled_for
    if not self.flow_active:
        try:
            await self.perform_seek()
        except Exception as ex:  # noqa: BLE001 - as Faust does
            self.log.warning(f"exception performing seek when flow not active {ex}")
        return
    previous = self.__dict__.setdefault("_secstream_previous", {})  # tp -> (stamp, offset) last delivered
    for tp, record in records_it:
        if not self.flow_active or self.app.consumer_generation_id != generation_id:
            for left in records:  # the rest of this fetch is left out: no gap after it is real
                previous[left] = (stamps.get(left), None)
                if records[left]:
                    _left_out(self, left, min(r.offset for r in records[left]), stamps.get(left))
            break
        stamp = stamps.get(tp)
        if not (active_partitions is None or tp in active_partitions or tp in self._buffered_partitions):
            previous[tp] = (stamp, None)  # a record of this position was left out: no gap after it is real
            _count_undelivered("partition not active", tp)
            _left_out(self, tp, record.offset, stamp)
            continue
        if not _fresh(aiokafka_consumer, tp, stamp):
            _count_undelivered("fetched before a seek", tp)
            continue  # fetched before a seek of its partition: the seek fetches it again
        if acks_enabled_for(tp.topic):  # a stream's record (not a changelog's): its commit is at stake
            if _must_hold(self.app):
                why = await _held_until_flowing(self, aiokafka_consumer, tp, stamp, generation_id)
                if why is not None:
                    _count_undelivered(why, tp)
                    _left_out(self, tp, record.offset, stamp)
                    previous[tp] = (stamp, None)
                    continue
            real = _real_gap(previous.get(tp), stamp, record.offset)
            if real is not None and real[0] <= real[1]:
                _record_gap(self, tp, *real)
            previous[tp] = (stamp, record.offset)
        if stamp is not None and stamp[1] and applied.get(tp) != stamp:
            # the first record fetched after a seek: its read offset is the seek's, so the loop delivers what
            # the seek fetches again instead of dropping it as a copy of records delivered before the seek
            # (their first copies may have been skipped: a stream skips and acks a message of an older
            # generation, and a revocation clears the agents' queues)
            applied[tp] = stamp
            target = getattr(stamp[0], "_secstream_target", None)
            if target is not None and record.offset >= target:
                self._read_offset[tp] = target
        self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        message = to_message(tp, record)
        yield tp, message
        # the loop delivered it and set its read offset; if a seek came meanwhile, that offset is stale
        if not _fresh(aiokafka_consumer, tp, stamp) and self._read_offset.get(tp) == message.offset:
            state = _partition_state(aiokafka_consumer, tp)
            target = getattr(state, "_secstream_target", None) if state is stamp[0] else None
            if target is None:
                self._read_offset.pop(tp, None)
            else:
                self._read_offset[tp] = target


_ORIGINAL_FETCH = faust_aiokafka.AIOKafkaConsumerThread._fetch_records


def fix_stale_fetches() -> None:
    """Install the stale-fetch fix (module docstring) in this process; idempotent."""
    _install_seek_counter()
    faust_aiokafka.AIOKafkaConsumerThread._fetch_records = _fetch_records
    faust_consumer.Consumer.getmany = _getmany


def group_start(consumer: Any, tp: Any) -> int | None:
    """Where the group started reading ``tp`` when it had no committed offset (aiokafka's reset), else None."""
    aiokafka_consumer = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    if aiokafka_consumer is None or getattr(aiokafka_consumer, "_subscription", None) is None:
        return None
    state = _partition_state(aiokafka_consumer, tp)
    return getattr(state, "_secstream_start", None) if state is not None else None


def _left_out(consumer: Any, tp: Any, offset: int, stamp: tuple[Any, int] | None = None) -> None:
    """A record taken from aiokafka and not delivered. On a partition the group never committed, the seek to the
    committed offset that follows a rebalance moves nothing, so :func:`seek_left_out` fetches it again. On a
    stream partition with a committed offset, :func:`_reseek_dropped` does, if no seek comes before the
    partition flows again."""
    if consumer._committed_offset.get(tp) is None:
        low = consumer.__dict__.setdefault("_secstream_left_out", {})
        low[tp] = min(low.get(tp, offset), offset)
    elif stamp is not None and consumer.app.topics.acks_enabled_for(tp.topic):
        dropped = consumer.__dict__.setdefault("_secstream_dropped", {})
        first = dropped.get(tp)
        dropped[tp] = (min(first[0], offset) if first else offset, stamp)


async def _reseek_dropped(consumer: Any, aiokafka_consumer: Any, active: Any) -> None:
    """Fetch again what was fetched and not delivered on a stream partition that flows again with no seek since.

    Records taken from aiokafka while their partition was not active (paused for a rebalance's recovery) are
    let go on the grounds that the seek to the committed offsets that ends the rebalance fetches them again.
    A worker's first assignment could let them go *after* that seek: e2e's restarted worker dropped 2,002
    records ("partition not active"), its position at the end of the log and its committed offset at the
    first of them, and processed nothing more until the guard's rejoin 60 s later (2026-12-07). So the lowest
    offset let go is kept with its fetch stamp; once the partition is active and the flow runs, if it was
    neither sought nor re-assigned since, the consumer seeks it back to that offset (never above the committed
    one). A seek or re-assignment since clears it: that seek fetches from the committed offset.
    """
    dropped = consumer.__dict__.get("_secstream_dropped")
    if not dropped or not consumer.flow_active or not consumer.app.flow_control.is_active():
        return
    assigned = consumer.assignment()
    for tp, (offset, stamp) in list(dropped.items()):
        if tp not in assigned or not _fresh(aiokafka_consumer, tp, stamp):
            del dropped[tp]  # re-assigned or sought since: that fetches it again
            continue
        if active is not None and tp not in active:
            continue  # still paused: wait for it to flow (or for the seek that ends the rebalance)
        del dropped[tp]
        committed = consumer._committed_offset.get(tp)
        target = offset if committed is None else min(offset, committed)
        log.info("%s/%d: back to offset %d, %d and on were fetched and let go with no seek since", tp.topic,
                 tp.partition, target, offset)
        await consumer.seek(tp, target)


async def seek_left_out(consumer: Any) -> None:
    """After Faust's seek to the committed offsets: partitions never committed go back to the first record
    left out (Faust's seek does nothing where there is no committed offset; those records were lost for good,
    and the first commit passed them)."""
    low = consumer.__dict__.pop("_secstream_left_out", {})
    if not low:
        return
    assigned = consumer.assignment()
    for tp, offset in sorted(low.items()):
        if tp in assigned and consumer._committed_offset.get(tp) is None:
            log.info("%s/%d has no committed offset: back to offset %d, left out at a rebalance", tp.topic,
                     tp.partition, offset)
            await consumer.seek(tp, offset)
