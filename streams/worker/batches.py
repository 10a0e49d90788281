"""One batch of a Faust ``take_events`` stream: its offsets are committed only after its effects.

Faust's ``take_events`` acks a batch's events in a ``finally`` when the agent moves
on, also when the agent is cancelled (the worker stopping) or raises. Acked offsets
are committed. Left as is, a batch cut short would be committed without its effects
(store points, alerts, DLQ records, steps): lost, not re-delivered. So every agent
runs its batch through :func:`finish_batch`:

- the batch's work runs in its own task, shielded: a stop (cancellation) waits for
  it to finish, so a graceful shutdown flushes the batch in flight, acks it, and the
  consumer commits it;
- if the work fails (a stop while the store is down: :class:`streams.store.retry.StoreUnavailable`,
  or any unexpected error), the batch's messages are *withheld*: marked acked before
  Faust's ``finally`` so that ``Consumer.ack`` skips them and never records their
  offsets. The committed offset stops at the first of them (Faust commits up to the
  first gap), and Kafka re-delivers the batch to the next owner of the partition.
  Effects are idempotent (store ids, alert ids), so a re-delivery repeats, never loses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from streams.ops import metrics
from streams.kafka.faust_commits import hold, mark_processed

log = logging.getLogger(__name__)

@dataclass
class _InFlight:
    agent: str
    started: float  # time.monotonic()
    progressed: float  # time.monotonic() of its start or of its last send acked (:func:`wait_sent`)


_in_flight: dict[asyncio.Future[Any], _InFlight] = {}  # a batch's task -> its clock


def longest_batch_wait(now: float | None = None) -> float:
    """Seconds the batch in flight (any agent) that has waited longest without progress has waited: since it
    started or since one of its sends was last acked; 0 when none is in flight."""
    if not _in_flight:
        return 0.0
    return (time.monotonic() if now is None else now) - min(b.progressed for b in _in_flight.values())


def cancel_batches_waiting(wait_s: float, now: float | None = None) -> list[str]:
    """Cancel every batch in flight that has waited ``wait_s`` or more without progress (the consumer watch: it
    waits on nothing that will answer); :func:`finish_batch` then withholds it, so Kafka re-delivers it. Returns
    their agents."""
    now = time.monotonic() if now is None else now
    stuck = [(task, b.agent) for task, b in list(_in_flight.items()) if now - b.progressed >= wait_s]
    for task, _ in stuck:
        task.cancel()
    return [agent for _, agent in stuck]


async def wait_sent(sends: Sequence[Awaitable[Any]]) -> None:
    """Wait for a batch's sends (the broker's acks). Each ack is progress: a batch whose sends keep being acked
    is slow (a big batch, a broker writing to S3), not stuck, and the guard leaves it alone. The broker-kill fault
    test had a batch of 819 events cancelled after 61 s of sends acked 5 records at a time (2026-12-07)."""
    futures = [asyncio.ensure_future(s) for s in sends]
    clock = _in_flight.get(asyncio.current_task())  # type: ignore[arg-type]
    if clock is not None:
        def acked(_: asyncio.Future[Any]) -> None:
            clock.progressed = time.monotonic()

        for future in futures:
            future.add_done_callback(acked)
    await asyncio.gather(*futures)


def withhold(events: Sequence[Any]) -> None:
    """Keep ``events``' offsets out of every commit (see the module docstring)."""
    for event in events:
        message = getattr(event, "message", None)
        if message is not None:
            message.acked = True  # Consumer.ack skips an acked message: its offset is never recorded


async def finish_batch(agent: str, events: Sequence[Any], work: Awaitable[Any],
                       held: list[Any] | None = None) -> bool:
    """Run one batch's ``work`` to its end, also across a cancellation; True if it finished.

    A failed batch is logged, counted (``secstream_batches_withheld_total{agent}``) and
    withheld; the agent goes on with the next batch. A cancellation is re-raised once
    the work is over. With ``held``, a finished batch's events are held, not processed
    (streams/kafka/faust_commits.py: its state is written later) and appended to ``held``.
    """
    task = asyncio.ensure_future(work)
    started = time.monotonic()
    _in_flight[task] = _InFlight(agent, started, started)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s: a batch of %d starts (%s)", agent, len(events), _offsets(events))
    task.add_done_callback(lambda t: _in_flight.pop(t, None))
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done() and task.cancelled():
                break
            if not cancelled:
                log.info("%s: stopping; finishing the batch of %d in flight first", agent, len(events))
            cancelled = True
        except Exception:  # noqa: BLE001 - read from the task below
            break
    ok = not task.cancelled() and task.exception() is None
    if ok and held is not None:
        hold(events)  # their acks wait for the state write (streams/worker/table_agent.py)
        held.extend(events)
    elif ok:
        mark_processed(events)  # their acks may now be committed (streams/kafka/faust_commits.py)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: the batch of %d finished (%s)", agent, len(events), _offsets(events))
    else:
        exc = None if task.cancelled() else task.exception()
        metrics.BATCHES_WITHHELD.labels(agent).inc()
        withhold(events)
        log.error("%s: a batch of %d could not finish (%s: %s); its offsets are not committed, Kafka "
                  "re-delivers it", agent, len(events), type(exc).__name__ if exc else "cancelled", exc)
    if cancelled:
        raise asyncio.CancelledError()
    return ok


def _offsets(events: Sequence[Any]) -> str:
    """``topic/partition first..last`` of a batch's messages, for a debug line."""
    spans: dict[tuple[str, int], list[int]] = {}
    for event in events:
        message = getattr(event, "message", None)
        if message is not None:
            span = spans.setdefault((message.topic, message.partition), [message.offset, message.offset])
            span[0], span[1] = min(span[0], message.offset), max(span[1], message.offset)
    return ", ".join(f"{t}/{p} {a}..{b}" for (t, p), (a, b) in sorted(spans.items())) or "no messages"
