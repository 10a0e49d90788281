"""The stale-fetch fix of Faust's consumer (streams/kafka/faust_consumer.py), on aiokafka's real subscription state.

A batch handed out by aiokafka is stamped with its partition's position state; it is fresh until that
partition is sought (the seek to the committed offsets after a rebalance) or re-assigned (a new
state object, positions reset). No broker: aiokafka's SubscriptionState is plain Python.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import TopicPartition

from streams.kafka.faust_consumer import _fresh, _partition_state, _stamp, fix_stale_fetches

TP0, TP1 = TopicPartition("secstream.events", 0), TopicPartition("secstream.events", 1)


def test_a_stamp_goes_stale_on_a_seek_of_its_partition_or_a_new_assignment_only() -> None:
    fix_stale_fetches()

    async def scenario() -> None:
        subs = SubscriptionState()
        subs.subscribe({"secstream.events"})
        subs.assign_from_subscribed({TP0, TP1})
        consumer = SimpleNamespace(_subscription=subs)
        subs.seek(TP0, 100)  # the position a fetch starts from
        stamp0, stamp1 = _stamp(_partition_state(consumer, TP0)), _stamp(_partition_state(consumer, TP1))
        assert _fresh(consumer, TP0, stamp0) and _fresh(consumer, TP1, stamp1)
        subs.seek(TP0, 40)  # the seek to the committed offset, after the batch was handed out
        assert not _fresh(consumer, TP0, stamp0)  # its records are fetched again from 40: not delivered
        assert _fresh(consumer, TP1, stamp1)  # the other partition's records were not sought: delivered
        assert _partition_state(consumer, TP0)._secstream_target == 40  # the read offset to put back
        stamp0 = _stamp(_partition_state(consumer, TP0))
        subs.assign_from_subscribed({TP0, TP1})  # a rebalance gave the same partitions again
        assert not _fresh(consumer, TP0, stamp0) and not _fresh(consumer, TP1, stamp1)
        assert _fresh(consumer, TP0, None)  # an unstamped record (none was handed out) passes

    asyncio.run(scenario())


def test_a_stream_record_waits_for_the_flow_and_is_let_go_only_when_fetched_again() -> None:
    """At the end of a rebalance Faust seeks, then resumes the flow; a record delivered in between was
    skipped by its stream for good. It is held until the flow resumes, and let go (counted) when its
    partition is sought or re-assigned meanwhile: the seek fetches it again."""
    from mode.utils.queues import FlowControlEvent

    from streams.kafka.faust_consumer import _held_until_flowing

    fix_stale_fetches()

    async def scenario() -> None:
        subs = SubscriptionState()
        subs.subscribe({"secstream.events"})
        subs.assign_from_subscribed({TP0, TP1})
        subs.seek(TP0, 100)
        aiokafka = SimpleNamespace(_subscription=subs)
        flow = FlowControlEvent()
        flow.suspend()
        faust = SimpleNamespace(app=SimpleNamespace(flow_control=flow, consumer_generation_id=3, rebalancing=False),
                                should_stop=False, flow_active=True, _get_active_partitions=lambda: {TP0, TP1})
        stamp = _stamp(_partition_state(aiokafka, TP0))

        held = asyncio.ensure_future(_held_until_flowing(faust, aiokafka, TP0, stamp, 3))
        await asyncio.sleep(0.1)
        assert not held.done()  # the flow is suspended: the record waits
        flow.resume()
        assert await held is None  # delivered once the streams take records again

        flow.suspend()
        held = asyncio.ensure_future(_held_until_flowing(faust, aiokafka, TP0, stamp, 3))
        await asyncio.sleep(0.05)
        subs.seek(TP0, 90)  # a rebalance sought the partition back
        assert await held == "fetched before a seek"

    asyncio.run(scenario())


def test_a_stream_record_waits_for_the_rebalance_to_end_with_the_flow_running() -> None:
    """The last step of a table recovery seeks the stream partitions, then calls flow_control.resume(), which
    empties every agent queue although the flow runs (mode's FlowControlEvent, checked below): a record queued
    in between was thrown away. It waits until Faust says the rebalance is over, after that resume."""
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    from streams.kafka.faust_consumer import _held_until_flowing

    fix_stale_fetches()

    async def scenario() -> None:
        flow = FlowControlEvent()
        queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        flow.resume()  # the recovery resumed it to read the changelogs
        await queue.put(873)
        flow.resume()  # the recovery's last resume: the flow already runs, and the queue is emptied all the same
        assert queue.qsize() == 0

        subs = SubscriptionState()
        subs.subscribe({"secstream.events"})
        subs.assign_from_subscribed({TP0})
        subs.seek(TP0, 873)  # the seek to the committed offset
        aiokafka = SimpleNamespace(_subscription=subs)
        app = SimpleNamespace(flow_control=flow, consumer_generation_id=3, rebalancing=True)
        faust = SimpleNamespace(app=app, should_stop=False, flow_active=True, _get_active_partitions=lambda: {TP0})
        held = asyncio.ensure_future(_held_until_flowing(faust, aiokafka, TP0, _stamp(_partition_state(aiokafka, TP0)), 3))
        await asyncio.sleep(0.1)
        assert not held.done()  # fetched after the seek, the flow runs, but the rebalance is not over: it waits
        app.rebalancing = False  # Faust's on_rebalance_end, after that last resume
        assert await held is None

    asyncio.run(scenario())
