"""What Faust may commit (streams/kafka/faust_commits.py): a batch's own acks, and gaps the fetcher saw in
the log. No broker: Faust's real ``Consumer.ack``
bookkeeping runs on a consumer object holding just the fields it reads, and aiokafka's real
SubscriptionState provides the partition states the stamps refer to."""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import TopicPartition
from faust.types.tuples import TP, ConsumerMessage

from streams.kafka import faust_commits
from streams.kafka.faust_consumer import _partition_state, _real_gap, _stamp, fix_stale_fetches
from streams.worker.batches import withhold

TOPIC = "secstream.events"
TP0 = TP(TOPIC, 0)


def in_loop(test: Callable[[], None]) -> Callable[[], None]:
    """aiokafka's partition states are made inside a running loop."""
    async def body() -> None:
        test()

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(body())
    return run


def consumer() -> Any:
    """The fields Faust's Consumer.ack and our guard read; the committed offset is 100."""
    return SimpleNamespace(
        app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True)),
        _committed_offset=defaultdict(lambda: None, {TP0: 100}), _acked_index=defaultdict(set),
        _acked=defaultdict(list), _n_acked=0, _unacked_messages=set(), _waiting_for_ack=None)


def delivered(c: Any, offset: int) -> ConsumerMessage:
    """A message delivered to a stream (Faust tracks it as unacked until it is acked)."""
    message = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, [], None, b"{}", None)
    c._unacked_messages.add(message)
    return message


def assigned() -> SubscriptionState:
    fix_stale_fetches()
    subs = SubscriptionState()
    subs.subscribe({TOPIC})
    subs.assign_from_subscribed({TopicPartition(TOPIC, 0)})
    subs.seek(TopicPartition(TOPIC, 0), 100)  # Faust's seek to the committed offset
    return subs


def test_only_what_a_batch_finished_is_committed() -> None:
    faust_commits.guard_topics([TOPIC])
    c = consumer()
    skipped, processed, earlier = delivered(c, 100), delivered(c, 101), delivered(c, 102)
    before = faust_commits.dropped_acks()

    # a stream skipped 100 (its flow was suspended: a rebalance) and acked it: not recorded, not waited for
    assert faust_commits._ack(c, skipped) is False
    assert skipped.acked and skipped not in c._unacked_messages and 100 not in c._acked_index[TP0]
    assert faust_commits._ack(c, skipped) is False  # a second ack of it is a no-op

    faust_commits.mark_processed([SimpleNamespace(message=processed), SimpleNamespace(message=earlier)])
    assert faust_commits._ack(c, processed) is True  # its batch finished: recorded, committable
    assert c._acked[TP0] == [101] and processed not in c._unacked_messages
    # a batch that finished while a rebalance was under way is recorded too: it was processed
    assert faust_commits._ack(c, earlier) is True and c._acked[TP0] == [101, 102]

    after = faust_commits.dropped_acks()
    assert after["skipped"] == before["skipped"] + 1


def test_acks_of_unguarded_topics_are_faust_s_own() -> None:
    c = consumer()
    message = ConsumerMessage("some-other-topic", 0, 100, 0.0, 0, [], None, b"{}", None)
    other = TP("some-other-topic", 0)
    c._committed_offset[other] = None
    assert faust_commits._ack(c, message) is True and c._acked[other] == [100]


@in_loop
def test_a_gap_is_what_the_fetcher_saw_missing_from_the_log() -> None:
    subs = assigned()  # sought to 100
    tp = TopicPartition(TOPIC, 0)
    c = SimpleNamespace(_subscription=subs)
    stamp = _stamp(_partition_state(c, tp))
    assert _real_gap(None, stamp, 100) == (100, 99)  # the first record after the seek is at its target
    assert _real_gap(None, stamp, 103) == (100, 102)  # fetched from 100, the log's first record is 103
    assert _real_gap((stamp, 105), stamp, 109) == (106, 108)  # 106..108 are not in the log (compacted)
    assert _real_gap((stamp, 105), stamp, 106) == (106, 105)  # consecutive: an empty range
    assert _real_gap((stamp, None), stamp, 140) is None  # a record of this position was left out: unknown
    subs.seek(tp, 100)
    after_seek = _stamp(_partition_state(c, tp))
    assert _real_gap((stamp, 105), after_seek, 100) == (100, 99)  # a new position: only its own records count
    # the broker refused 100 (retention deleted it): aiokafka resets to the log's start, 130
    state = _partition_state(c, tp)
    state.await_reset(0)
    state.reset_to(130)
    assert _real_gap(None, after_seek, 130) == (100, 129)  # the first record after the reset
    assert _real_gap(None, after_seek, 135) is None  # not the first record after it: says nothing
    fresh = SubscriptionState()
    fresh.subscribe({TOPIC})
    fresh.assign_from_subscribed({tp})
    unsought = _stamp(_partition_state(SimpleNamespace(_subscription=fresh), tp))
    assert _real_gap(None, unsought, 7) is None  # no seek (a new group): nothing is known below it


def test_the_first_offset_after_the_committed_one_must_be_processed_or_absent() -> None:
    """Faust let the acks start one past the committed offset (it reads Kafka's committed offset as the
    last one processed), so a worker's first record could be skipped and committed past."""
    import faust

    faust_commits.install()
    faust_commits.guard_topics([TOPIC])

    async def scenario() -> None:
        def consumer_at_100() -> Any:  # committed 100; 101..110 processed; 100 not
            app = faust.App("commit-guard-head", broker="kafka://127.0.0.1:1")
            c = app.consumer
            app.topics._acking_topics.add(TOPIC)
            c._committed_offset[TP0] = 100
            for o in range(101, 111):
                m = ConsumerMessage(TOPIC, 0, o, 0.0, 0, [], None, b"{}", None)
                faust_commits.mark_processed([SimpleNamespace(message=m)])
                c.ack(m)
            return c

        assert faust_commits._ORIGINAL_NEW_OFFSET(consumer_at_100(), TP0) == 111  # Faust alone: 100 passed over
        c = consumer_at_100()
        assert c._new_offset(TP0) is None  # 100 was neither processed nor seen absent: wait for it
        c._gap[TP0].addi(100, 101)  # the fetcher saw the log without 100 (a transaction marker)
        assert c._new_offset(TP0) == 111

    asyncio.run(scenario())


def _revocation(committed: int, acked_before: range, finishing: range) -> tuple[int | None, Any]:
    """Revoke a partition on Faust's real consumer (built by a real app, not started) whose commit stands
    at ``committed`` with ``acked_before`` acked, while the batch of ``finishing`` completes during the
    revocation (Faust waits for the streams, then commits). Returns the offset Faust would commit then,
    and the consumer. The app's own revocation handler (tables, flow control, the wait) is replaced by
    one that finishes that batch and asks for the offset: what happens between Faust's clearing and its
    last commit."""
    import faust

    faust_commits.install()
    faust_commits.guard_topics([TOPIC])

    def acked(c: Any, offsets: range) -> None:
        for o in offsets:
            m = ConsumerMessage(TOPIC, 0, o, 0.0, 0, [], None, b"{}", None)
            faust_commits.mark_processed([SimpleNamespace(message=m)])
            assert c.ack(m) is True

    async def scenario() -> tuple[int | None, Any]:
        app = faust.App("commit-guard-test", broker="kafka://127.0.0.1:1")
        c = app.consumer
        app.topics._acking_topics.add(TOPIC)  # as the conductor does for a topic an agent consumes
        c._committed_offset[TP0] = committed
        acked(c, acked_before)
        seen: dict[str, int | None] = {}

        async def handler(revoked: Any) -> None:
            acked(c, finishing)
            seen["offset"] = c._new_offset(TP0)

        c._on_partitions_revoked = handler
        await c.on_partitions_revoked({TP0})
        return seen["offset"], c

    return asyncio.run(scenario())


def test_a_revocation_commits_what_was_processed_but_never_past_a_hole() -> None:
    # 100..104 never processed (skipped); 105..110 acked before the revocation, 111..120 during it
    offset, c = _revocation(100, range(105, 111), range(111, 121))
    assert offset is None  # Faust had cleared the commit state and would have committed 121, past the hole
    # afterwards the state is cleared as Faust leaves it, and nothing is committed until the next seek
    assert c._committed_offset.get(TP0) is None and c._new_offset(TP0) is None

    offset, _ = _revocation(100, range(100, 111), range(111, 121))  # no hole: everything is committed
    assert offset == 121


def test_a_partition_never_committed_commits_from_where_the_group_started_reading() -> None:
    """With no committed offset aiokafka resets the partition to the log's start (0 here); records 0..2 were
    fetched and let go at the worker's start, and the seek to a committed offset that does not exist fetched
    nothing again: Faust alone committed 11 past them (3 alerts lost in the store-outage fault test)."""
    import faust
    from aiokafka.consumer.fetcher import OffsetResetStrategy

    faust_commits.install()
    faust_commits.guard_topics([TOPIC])

    async def scenario() -> None:
        fix_stale_fetches()
        subs = SubscriptionState()
        subs.subscribe({TOPIC})
        subs.assign_from_subscribed({TopicPartition(TOPIC, 0)})
        state = _partition_state(SimpleNamespace(_subscription=subs), TP0)
        state.await_reset(OffsetResetStrategy.EARLIEST)  # no committed offset: the reset policy decides
        state.reset_to(0)

        def processed(c: Any, offsets: range) -> None:
            for o in offsets:
                m = ConsumerMessage(TOPIC, 0, o, 0.0, 0, [], None, b"{}", None)
                faust_commits.mark_processed([SimpleNamespace(message=m)])
                c.ack(m)

        def consumer_from_3() -> Any:  # never committed; 3..10 processed
            app = faust.App("commit-guard-start", broker="kafka://127.0.0.1:1")
            c = app.consumer
            app.topics._acking_topics.add(TOPIC)
            c._thread = SimpleNamespace(_consumer=SimpleNamespace(_subscription=subs))
            assert c._committed_offset[TP0] is None
            processed(c, range(3, 11))
            return c

        assert faust_commits._ORIGINAL_NEW_OFFSET(consumer_from_3(), TP0) == 11  # Faust alone: 0..2 passed over
        c = consumer_from_3()
        assert c._new_offset(TP0) is None  # 0..2 were neither processed nor seen absent: wait for them
        processed(c, range(0, 3))  # fetched again (a rejoin resets the partition to the log's start)
        assert c._new_offset(TP0) == 11

    asyncio.run(scenario())


def test_records_let_go_with_no_seek_since_are_fetched_again_once_the_partition_flows() -> None:
    """A restarted worker's first records were taken from aiokafka while its events partition was paused and
    let go ("partition not active") after the seek that ends the rebalance: nothing fetched them again, and the
    worker sat 60 s at the end of the log with its commit at the first of them (e2e, 2026-12-07)."""
    import faust

    from streams.kafka.faust_consumer import _left_out, _reseek_dropped

    async def scenario() -> None:
        subs = assigned()  # sought to the committed offset, 100
        app = faust.App("reseek-dropped", broker="kafka://127.0.0.1:1")
        app.flow_control.resume()
        c = app.consumer
        app.topics._acking_topics.add(TOPIC)
        aio = SimpleNamespace(_subscription=subs)
        c._thread = SimpleNamespace(_consumer=aio)
        c.assignment = lambda: {TP0}
        c._committed_offset[TP0] = 100
        sought: list[tuple[TP, int]] = []

        async def seek(tp: TP, offset: int) -> None:
            sought.append((tp, offset))
            subs.seek(TopicPartition(tp.topic, tp.partition), offset)

        c.seek = seek
        state = _partition_state(aio, TP0)

        _left_out(c, TP0, 120, _stamp(state))  # fetched from 100, 100..119 delivered, 120 on let go
        _left_out(c, TP0, 121, _stamp(state))
        await _reseek_dropped(c, aio, set())  # still paused: not yet
        assert sought == []
        await _reseek_dropped(c, aio, {TP0})  # flows again, never sought since: from the committed offset
        assert sought == [(TP0, 100)]
        await _reseek_dropped(c, aio, {TP0})  # once
        assert sought == [(TP0, 100)]

        _left_out(c, TP0, 150, _stamp(_partition_state(aio, TP0)))
        subs.seek(TopicPartition(TOPIC, 0), 100)  # the rebalance's own seek came after: it fetches them again
        await _reseek_dropped(c, aio, {TP0})
        assert sought == [(TP0, 100)] and not c.__dict__["_secstream_dropped"]

        c._committed_offset[TP0] = 200  # committed past them (another copy was processed): back to them, copies are harmless
        _left_out(c, TP0, 180, _stamp(_partition_state(aio, TP0)))
        await _reseek_dropped(c, aio, {TP0})
        assert sought[-1] == (TP0, 180)

    asyncio.run(scenario())


def test_a_hole_is_a_committed_offset_nobody_will_finish() -> None:
    """What the consumer watch seeks back to (streams/worker/consumer_watch.py): offsets above the committed one
    processed, nothing at it in flight, and it is not absent from the log."""
    from intervaltree import IntervalTree

    c = consumer()
    c._gap = defaultdict(IntervalTree)
    queue: list[Any] = []  # the events agent's queue (a deque in Faust), as the conductor indexes it by partition
    c.app.topics._tp_index = {TP0: [SimpleNamespace(_queue=SimpleNamespace(_queue=queue))]}
    assert faust_commits.holes(c) == {}  # nothing processed above: nothing waits
    first = delivered(c, 100)  # taken by a stream, its batch still running
    c._acked[TP0].extend([101, 102])
    assert faust_commits.holes(c) == {}  # the batch that finishes 100 moves the commit
    first.acked = True  # withheld (streams/worker/batches.py): never recorded, never finished
    assert faust_commits.holes(c) == {TP0: 100}
    # copies of 101 and 102 (delivered before a seek) were queued ahead of the seek's copy of 100: still to come
    queue.append(SimpleNamespace(message=ConsumerMessage(TOPIC, 0, 100, 0.0, 0, [], None, b"{}", None)))
    assert faust_commits.holes(c) == {}
    queue.clear()
    c._gap[TP0].addi(100, 101)
    assert faust_commits.holes(c) == {}  # 100 is absent from the log: the commit passes it
    c._gap[TP0].clear()
    c.__dict__["_secstream_unknown_committed"] = {TP0}
    assert faust_commits.holes(c) == {}  # between a revocation and the seek: the committed offset is not known
    c.__dict__["_secstream_unknown_committed"] = set()
    c._acked[TP0].insert(0, 100)
    assert faust_commits.holes(c) == {}  # processed: the commit moves on its next round


def test_a_held_batch_is_in_flight_until_its_state_is_written() -> None:
    faust_commits.guard_topics([TOPIC])
    c = consumer()
    held, later = delivered(c, 100), delivered(c, 101)
    events = [SimpleNamespace(message=held)]
    faust_commits.hold(events)  # its batch finished; the table agent writes its state at the next flush
    assert faust_commits._ack(c, held) is False  # the stream's ack is kept back, not dropped as a skip
    assert not held.acked and held in c._unacked_messages and not c._acked[TP0]
    faust_commits.hold([SimpleNamespace(message=later)])
    faust_commits.release(events)  # the state is written: the ack asked for is recorded now
    assert held.acked and c._acked[TP0] == [100] and held not in c._unacked_messages
    # a held batch whose state could not be written is never recorded, and no longer in flight
    faust_commits.unhold([SimpleNamespace(message=later)])
    withhold([SimpleNamespace(message=later)])
    assert faust_commits._ack(c, later) is False and c._acked[TP0] == [100]


def test_waiting_for_the_streams_writes_what_the_agents_hold() -> None:
    """A stop (or a revocation) waits for the messages in flight before its last commit; a held batch is
    one until its agent writes its state, so the wait must let the agents write (it hung before)."""
    faust_commits.guard_topics([TOPIC])
    c = consumer()
    message = delivered(c, 100)
    events = [SimpleNamespace(message=message)]
    faust_commits.hold(events)
    faust_commits._ack(c, message)
    written = []

    async def flush() -> None:
        written.append(len(events))
        faust_commits.release(events)

    async def commit(**_: Any) -> None:
        pass

    async def wait_for_ack(timeout: float) -> None:
        await asyncio.sleep(0)

    c.should_stop = False
    c.commit = commit
    c.commit_and_end_transactions = commit
    c._wait_for_ack = wait_for_ack
    c._clean_unacked_messages = lambda: None
    faust_commits.on_wait_empty(flush)
    try:
        asyncio.run(asyncio.wait_for(faust_commits._wait_empty(c), timeout=5))
    finally:
        faust_commits._on_wait_empty.remove(flush)
    assert written == [1] and c._acked[TP0] == [100] and not c._unacked_messages
