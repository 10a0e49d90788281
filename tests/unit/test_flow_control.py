"""Resuming a flow that already runs keeps the agents' queues (streams/kafka/flow_control.py), with mode's real
FlowControlEvent and FlowControlQueue; a real resume after a suspension still empties them."""

from __future__ import annotations

import asyncio

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from streams.kafka.flow_control import keep_queues_on_running_resume


def test_a_running_flow_keeps_what_was_queued_and_a_real_resume_drops_it() -> None:
    keep_queues_on_running_resume()

    async def scenario() -> None:
        flow = FlowControlEvent()  # suspended, as Faust's app starts
        queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        flow.resume()  # the table recovery resumes it to read the changelogs
        assert flow.is_active()
        await queue.put(873)  # fetched after the seek that ends the recovery, handed to the agent's queue
        flow.resume()  # the recovery's last resume: the flow already runs
        assert queue.qsize() == 1 and queue.get_nowait() == 873  # kept: nothing would fetch it again

        await queue.put(874)
        flow.suspend()  # a rebalance: what is queued is fetched again by the seek that ends it
        flow.resume()
        assert queue.qsize() == 0

    asyncio.run(scenario())
