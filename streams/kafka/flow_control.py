"""Faust's flow control, fixed: resuming a flow that already runs must not empty the agents' queues.

**The last restart hole** (docs/operations.md "Restarts", 2026-12-07). Every agent's input queue is a
``mode`` ``FlowControlQueue`` made with ``clear_on_resume=True``: when the app's flow is resumed after a
rebalance, what was queued before is dropped, since the seek that ends the rebalance fetches it again.
But ``FlowControlEvent.resume()`` empties the queues on *every* call, also when the flow already runs, and
Faust's table recovery calls it while it does. At the end of a recovery
(``faust.tables.recovery.Recovery.on_recovery_completed``) Faust resumes the stream partitions, seeks them
to the committed offsets, and only then calls ``flow_control.resume()``: the flow had been running since
the recovery resumed it to read the changelogs, so the records fetched after the seek were already handed
to the agents' queues, and that call threw them away. Nothing fetched them again: the delivery loop's
read offset had passed them. The commit then stopped below the first of them for good (a hole) while
the worker processed everything above: the restart stress's last stall, and the two holes the hole
repair (streams/worker/consumer_watch.py) found in the first 11 restarts of a 1-partition run, whose
trace showed the record handed to the delivery loop once, after the seek, and never taken by its stream.

:func:`keep_queues_on_running_resume` makes ``resume()`` empty the queues only when the flow was
suspended: a real resume, after which the seek re-fetches what was queued. A resume of a running flow
changes nothing; what is queued then was fetched after the seek and is processed.
"""

from __future__ import annotations

from typing import Any

from mode.utils.queues import FlowControlEvent

__all__ = ["keep_queues_on_running_resume"]

_ORIGINAL_RESUME = FlowControlEvent.resume


def _resume(self: Any) -> None:
    if self.is_active():
        return  # already running: nothing queued is stale (module docstring)
    _ORIGINAL_RESUME(self)


def keep_queues_on_running_resume() -> None:
    """Install the fix in this process (module docstring); idempotent."""
    FlowControlEvent.resume = _resume  # type: ignore[method-assign]
