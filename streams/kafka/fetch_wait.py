"""How long a worker's Kafka fetch may wait for data: short while caught up, longer while the broker starves.

**A short wait for latency.** Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``,
hard-coded. A Kafka broker answers a fetch as soon as any data arrives, so the value only bounds
idle polling there; Tansu (the embedded broker) holds every fetch that finds no data for the whole
wait, even when data arrives meanwhile. Measured on Tansu 0.6.0, one hop producer → consumer: p50
0.632 s with 1,500 ms, 0.016 s with 100 ms. The worker's events reach an alert over two hops
(events, then alert-steps), so this alone made event→alert latency seconds. :func:`limit_fetch_wait`
sets the worker's wait (``SECSTREAM_KAFKA_FETCH_MAX_WAIT_MS``, 50 ms); against Kafka a short wait
costs a few empty fetches per second while idle.

**A longer wait while the broker starves a partition.** Tansu on S3 storage also spends the wait
*reading* the log: records it cannot read from storage within the wait are not returned, and a
partition whose next records are no longer in the broker's memory comes back empty, with a
high-water mark above the fetch position, on every fetch. Measured 2026-12-07 here (Tansu 0.6.0 on a
local moto S3, a consumer 1,000 records behind): waits of 50–300 ms got nothing in 4 s of fetching,
500 ms got 15 records per fetch, 1,000 ms 75. With 50 ms the worker's session and entity step topics
stopped for good (the broker-kill fault test; docs/operations.md "Two more things the guard found"): not a
crash effect, a consumer behind the broker's memory. :func:`adapt_fetch_wait` makes each fetch's
wait follow what the broker does: a fetch that returns nothing for a partition the broker says has
more (high-water mark above the position) doubles the wait, up to :data:`STARVED_WAIT_CAP_MS`; once
no fetched partition is behind, the wait is back to the short one. A Kafka broker never starves a
partition that way, so there the wait stays short.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["STARVED_WAIT_CAP_MS", "adapt_fetch_wait", "limit_fetch_wait", "next_wait_ms"]

#: the longest wait a starved fetch grows to (Faust's own hard-coded wait is 1,500 ms)
STARVED_WAIT_CAP_MS = 2000

_ORIGINAL_CREATE = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
_wait_ms = {"value": 1500}


def next_wait_ms(current: int, base: int, *, starved: bool, behind: bool, cap: int = STARVED_WAIT_CAP_MS) -> int:
    """The next fetch's wait: doubled (at least twice ``base``, at most ``cap``) after a fetch that starved a
    partition, back to ``base`` once no fetched partition is behind, unchanged otherwise."""
    if starved:
        return max(base, min(cap, max(2 * current, 2 * base)))
    if not behind:
        return base
    return current


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _ORIGINAL_CREATE(self, transport)
    consumer._fetch_max_wait_ms = _wait_ms["value"]  # read by AIOKafkaConsumer.start() to build its Fetcher
    return consumer


def limit_fetch_wait(ms: int) -> None:
    """Make Faust's consumers of this process wait at most ``ms`` for data per fetch (while caught up)."""
    _wait_ms["value"] = int(ms)
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer


def _fetch_outcome(fetcher: Any, assignment: Any, request: Any, answered_ms: int) -> tuple[bool, bool]:
    """(starved, behind) for one answered fetch: ``starved`` when the broker answered a partition with no records
    although its high-water mark is above the offset fetched; ``behind`` when any fetched partition is."""
    starved = behind = False
    for topic, partitions in request.topics:
        for partition, offset, *_ in partitions:
            tp = TopicPartition(topic, partition)
            try:
                state = assignment.state_value(tp)
            except KeyError:
                continue
            highwater = state.highwater
            if highwater is None or not state.has_valid_position:
                continue
            if highwater > state.position:
                behind = True
            answered = (state.timestamp or 0) >= answered_ms  # aiokafka stamps a partition answered without error
            if answered and state.position == offset and highwater > offset and tp not in fetcher._records:
                starved = True
    return starved, behind


def adapt_fetch_wait(on_change: Callable[[int, bool], None] | None = None) -> None:
    """Let every aiokafka fetcher of this process grow its wait while the broker starves a partition (module
    docstring). ``on_change(wait_ms, starved)`` is told after each answered fetch (a metric)."""
    from aiokafka.consumer.fetcher import Fetcher

    original = Fetcher._proc_fetch_request
    if getattr(original, "_secstream", False):
        return

    async def proc_fetch_request(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
        asked_ms = int(1000 * time.time())
        result = await original(self, assignment, node_id, request)
        if not assignment.active:
            return result
        base = getattr(self, "_secstream_base_wait_ms", None)
        if base is None:
            base = self._secstream_base_wait_ms = self._fetch_max_wait_ms
        starved, behind = _fetch_outcome(self, assignment, request, asked_ms)
        self._fetch_max_wait_ms = next_wait_ms(self._fetch_max_wait_ms, base, starved=starved, behind=behind)
        if on_change is not None:
            on_change(self._fetch_max_wait_ms, starved)
        return result

    proc_fetch_request._secstream = True  # type: ignore[attr-defined]
    Fetcher._proc_fetch_request = proc_fetch_request
