"""A batch's bookkeeping (streams/worker/batches.py): in flight, cancelled when stuck, withheld. No Kafka: the
events hold Faust's message objects, whose ``acked`` flag Faust's ``Consumer.ack`` reads."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from faust.types.tuples import ConsumerMessage

from streams.ops import metrics
from streams.worker.batches import cancel_batches_waiting, finish_batch, longest_batch_wait, wait_sent


def events(n: int) -> list[SimpleNamespace]:
    """Events around Faust's real message type (streams/kafka/faust_commits.py keeps weak references to them)."""
    return [SimpleNamespace(message=ConsumerMessage("secstream.events", 0, i, 0.0, 0, [], None, b"{}", None))
            for i in range(n)]


def test_a_stuck_batch_is_cancelled_withheld_and_the_agent_goes_on() -> None:
    async def scenario() -> None:
        never = asyncio.get_running_loop().create_future()  # a send lost with the broker: no answer ever
        stuck_events, next_events = events(3), events(2)
        withheld_before = metrics.BATCHES_WITHHELD.labels("events")._value.get()
        stuck = asyncio.ensure_future(finish_batch("events", stuck_events, never))
        await asyncio.sleep(0.05)
        assert longest_batch_wait() >= 0.05
        assert cancel_batches_waiting(10.0) == []  # not that old: left alone
        assert cancel_batches_waiting(0.0, time.monotonic()) == ["events"]
        assert await stuck is False  # the agent goes on with its next batch
        assert all(e.message.acked for e in stuck_events)  # withheld: Consumer.ack skips them, never committed
        assert metrics.BATCHES_WITHHELD.labels("events")._value.get() == withheld_before + 1
        assert longest_batch_wait() == 0.0

        async def fine() -> None:
            await asyncio.sleep(0)

        assert await finish_batch("events", next_events, fine()) is True
        assert not any(e.message.acked for e in next_events)  # acked later by take_events, as usual

    asyncio.run(scenario())


def test_a_batch_whose_sends_keep_being_acked_is_slow_not_stuck() -> None:
    """The guard's clock restarts at each of the batch's sends acked (wait_sent): a big batch on a broker that
    writes slowly is left alone; one whose sends stopped answering is cancelled, measured from the last ack."""
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sends = [loop.create_future() for _ in range(3)]

        async def work() -> None:
            await wait_sent(sends)

        batch = asyncio.ensure_future(finish_batch("events", events(3), work()))
        await asyncio.sleep(0.2)
        assert longest_batch_wait() >= 0.2
        sends[0].set_result(None)  # one acked: progress
        await asyncio.sleep(0)
        assert longest_batch_wait() < 0.1
        assert cancel_batches_waiting(0.15) == []  # waited 0.2 s in all, but not since its last ack
        sends[1].set_result(None)
        await asyncio.sleep(0.2)  # the third never answers
        assert cancel_batches_waiting(0.15) == ["events"]
        assert await batch is False

    asyncio.run(scenario())
