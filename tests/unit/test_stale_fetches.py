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
