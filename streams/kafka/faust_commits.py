"""What Faust may commit: offsets a batch finished, or that the fetcher saw absent from the log.

Faust commits, per partition, up to the first offset it has not seen acknowledged, counting as
acknowledged what its consumer's ``ack`` recorded and every "gap" (offsets it takes as absent from the
log). Each path below let a commit pass offsets nobody processed, found by the restart stress
(docs/operations.md "Restarts"), where those events were committed and lost:

- **skips**: a stream that finds its flow suspended (a rebalance, a stop) or a message of an older
  consumer generation skips it and *acks* it, ``noack`` or not. For the topics of the batch agents
  (:func:`guard_topics`) an ack is recorded only for a message whose batch finished
  (:func:`mark_processed`, called by streams/worker/batches.py); a skipped record is fetched again by
  the re-assignment or seek that follows every skip (streams/kafka/faust_consumer.py holds a record
  delivered while the flow is suspended after the seek, so that none is skipped for good);
- **gaps inferred from Faust's read offset**, which its own seek sets back while the fetcher loop
  moves on, and which included the record being delivered: not recorded (:func:`_add_gap`); the
  fetcher records the gaps it sees in the log as it delivers (streams/kafka/faust_consumer.py);
- **a revocation's last commit**: Faust clears a revoked partition's committed offset, acks and gaps
  first, then waits for the streams and commits, and that commit passed any hole below the acks of
  the batch finishing meanwhile. The bookkeeping is kept until that commit
  (:func:`_on_partitions_revoked`), and nothing is committed until the next seek says where;
- **the committed offset itself**: Faust accepts acks that start one past it (it reads Kafka's
  committed offset as the last one processed; it is the next one to process), so a worker's first
  record could be skipped and committed. :func:`_new_offset` waits for it unless it is a gap. A
  partition the group never committed starts where aiokafka reset it (the log's start): its first
  commit waits for that offset too. Without that, records fetched at a worker's start and let go
  while its flow was suspended (streams/kafka/faust_consumer.py) were never fetched again, since the
  seek to a committed offset that does not exist moves nothing, and the first commit passed them
  (3 alerts lost in the store-outage fault test, 2026-12-07).

Every rule errs towards processing a record twice (effects are idempotent); a record held back
wrongly shows as a hole, which the stall guard (streams/worker/consumer_watch.py) recovers by a rejoin.

A batch can also finish with its state not yet durable: the table agents write their changelogs once
per commit interval (streams/worker/table_agent.py). Its messages are *held* (:func:`hold`): their
stream's ack is kept back, so they stay in flight (Faust's revocation and the hole check wait for
them), until the state is written and :func:`release` records the acks. Faust waits for every
message in flight before a revocation's commit and before the last commit of a stop
(``Consumer.wait_empty``); while it waits, the callbacks given to :func:`on_wait_empty` run (the
agents write their state), as Kafka Streams commits before it gives a partition away.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.kafka import consumer_trace
from streams.kafka.faust_consumer import group_start, seek_left_out


__all__ = ["dropped_acks", "guard_topics", "hold", "holes", "install", "mark_processed",
           "on_wait_empty", "release", "unhold"]

log = logging.getLogger(__name__)

_guarded: set[str] = set()
_processed: weakref.WeakSet[Any] = weakref.WeakSet()  # messages whose batch finished
_dropped = {"skipped": 0, "gaps": 0}
_holding: weakref.WeakSet[Any] = weakref.WeakSet()  # finished, their state not durable yet: acks kept back
_ack_asked: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # held message -> its consumer
_on_wait_empty: list[Callable[[], Awaitable[None]]] = []

_ORIGINAL_ACK = faust_consumer.Consumer.ack
_ORIGINAL_REVOKED = faust_consumer.Consumer.on_partitions_revoked
_ORIGINAL_NEW_OFFSET = faust_consumer.Consumer._new_offset
_ORIGINAL_PERFORM_SEEK = faust_consumer.Consumer.perform_seek


def guard_topics(names: Iterable[str]) -> None:
    """Commit ``names``' offsets only for what a batch finished (the agents that use streams/worker/batches.py)."""
    _guarded.update(names)


def _messages(events: Sequence[Any]) -> Iterable[Any]:
    """The Kafka messages of ``events`` (an event without one is left out)."""
    return (m for m in (getattr(event, "message", None) for event in events) if m is not None)


def mark_processed(events: Sequence[Any]) -> None:
    """The batch of ``events`` finished: their acks may be committed."""
    _processed.update(_messages(events))


def hold(events: Sequence[Any]) -> None:
    """The batch of ``events`` finished, its state is not durable yet: keep their acks back until
    :func:`release` (or :func:`unhold`)."""
    _holding.update(_messages(events))


def release(events: Sequence[Any]) -> None:
    """The state of held ``events`` is durable: they are processed, and an ack their stream asked for is
    recorded now."""
    for message in _messages(events):
        _holding.discard(message)
        _processed.add(message)
        consumer = _ack_asked.pop(message, None)
        if consumer is not None:
            _ORIGINAL_ACK(consumer, message)


def unhold(events: Sequence[Any]) -> None:
    """Held ``events`` will not be released (their state could not be written): no longer held, never
    recorded (the caller withholds them: streams/worker/batches.py)."""
    for message in _messages(events):
        _holding.discard(message)
        _ack_asked.pop(message, None)


def on_wait_empty(callback: Callable[[], Awaitable[None]]) -> None:
    """Await ``callback()`` whenever Faust waits for the messages in flight (a revocation, a stop)."""
    _on_wait_empty.append(callback)


def dropped_acks() -> dict[str, int]:
    """How many acks and gaps were not recorded, by why (for the trace and the tests)."""
    return dict(_dropped)


def _ack(self: Any, message: Any) -> bool:
    if message in _holding and not message.acked:
        with ack_lock:
            if message in _holding:  # recorded by release(), in flight until then
                _ack_asked[message] = self
                return False
    if message.topic in _guarded and not message.acked and message not in _processed:
        with ack_lock:
            if message.acked:
                return False
            message.acked = True  # its offset is not recorded; a later ack of it is a no-op
            self._unacked_messages.discard(message)
        _dropped["skipped"] += 1
        consumer_trace.note(message.tp, message.offset, "skipped by its stream: ack not recorded")
        log.debug("ack of %s/%d offset %d not recorded: skipped, not processed", message.topic,
                  message.partition, message.offset)
        notify(self._waiting_for_ack)
        return False
    return bool(_ORIGINAL_ACK(self, message))


async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    """Faust's own gap, inferred from its read offset: not recorded (streams/kafka/faust_consumer.py records
    the gaps the fetcher saw in the log as it delivers)."""
    _dropped["gaps"] += 1
    log.debug("gap %d..%d of %s not recorded: inferred from the read offset, not seen in the log",
              offset_from, offset_to, tp)


async def _on_partitions_revoked(self: Any, revoked: Any) -> None:
    """Faust's revocation, with the partitions' commit bookkeeping kept until its last commit is done.

    Faust clears a revoked partition's committed offset, acks and gaps first, then waits for the
    streams to finish and commits. With the bookkeeping gone, that commit took the acks of the batch
    finishing meanwhile as the whole story and committed past a hole below them: offsets never
    processed (the restart stress lost 47-209 records at a time that way, each time across the
    guard's rejoin of a worker whose commit was frozen behind a hole). Kept, the commit stops at the
    hole, and the offsets below it are fetched again by the next owner.
    """
    kept = {tp: (self._committed_offset.get(tp), self._acked.get(tp), self._acked_index.get(tp), self._gap.get(tp))
            for tp in revoked}
    handler = self._on_partitions_revoked
    unknown = self.__dict__.setdefault("_secstream_unknown_committed", set())

    async def handler_with_bookkeeping(partitions: Any) -> None:
        for tp, (committed, acked, index, gap) in kept.items():
            if committed is not None:
                self._committed_offset[tp] = committed
            if acked is not None:
                self._acked[tp] = acked + self._acked.get(tp, [])
                self._acked_index[tp] = (index or set()) | self._acked_index.get(tp, set())
            if gap is not None:
                self._gap[tp] = gap
        try:
            await handler(partitions)
        finally:
            for tp in revoked:  # as Faust leaves them: the next assignment starts from the broker's commit
                for table in (self._gap, self._acked, self._acked_index, self._committed_offset):
                    table.pop(tp, None)
            unknown.update(revoked)

    self._on_partitions_revoked = handler_with_bookkeeping
    try:
        await _ORIGINAL_REVOKED(self, revoked)
    finally:
        self._on_partitions_revoked = handler


def _new_offset(self: Any, tp: Any) -> int | None:
    """Faust's next offset to commit, never past an offset that was neither processed nor absent from the log.

    Between a revocation and the next seek the committed offset is unknown: an offset computed from the
    acks alone could pass a hole below them, so nothing is committed until the seek says where. And
    Faust lets the acks start one past the committed offset (it reads Kafka's committed offset as the
    last one processed; it is the next one to process), so the first record after a worker's start
    could be skipped and committed: it must be acked or a gap the fetcher saw.
    """
    if tp in self.__dict__.get("_secstream_unknown_committed", ()):
        return None
    committed, acked = self._committed_offset[tp], self._acked[tp]
    if committed is None and acked:  # never committed: the first commit starts where the group started reading
        committed = group_start(self, tp)
    if committed is not None and acked and min(acked) > committed:
        gaps = self._gap[tp]
        if not gaps or not gaps.overlaps(committed):
            return None
    return _ORIGINAL_NEW_OFFSET(self, tp)  # type: ignore[no-any-return]


def holes(consumer: Any) -> dict[Any, int]:
    """Stream partitions whose committed offset is a hole now: ``{tp: committed offset}``.

    A hole is an offset the commit waits for that nobody will ever finish: offsets above it were processed
    (acked and not yet committed), it is not absent from the log (no gap covers it), and no message of the
    partition at or above it and below the first processed one is in flight: taken by a stream and not yet
    acked (a withheld batch's messages are marked acked and count as not in flight), or still queued for
    its agent. A queue can hold copies of later offsets *ahead* of the hole's offset (records delivered
    before a seek, then the seek's own copies), so "processed above" alone proves nothing. A message on
    its way between the fetcher and a queue is in neither place, so one reading can be early: a hole is a
    hole only when it lasts (streams/worker/consumer_watch.py waits). Between a revocation and the next
    seek the committed offset is unknown: no hole then.
    """
    unknown = consumer.__dict__.get("_secstream_unknown_committed", ())
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    candidates: dict[Any, tuple[int, int]] = {}
    for tp, acked in list(consumer._acked.items()):
        committed = consumer._committed_offset.get(tp)
        if committed is None or not acked or tp in unknown or not acks_enabled_for(tp.topic):
            continue
        low = min(acked)
        if low <= committed:
            continue  # the commit moves on its next round
        gaps = consumer._gap.get(tp)
        if gaps and gaps.overlaps(committed):
            continue
        candidates[tp] = (committed, low)
    if candidates:
        for message in list(consumer._unacked_messages):
            span = candidates.get(message.tp)
            if span is not None and not message.acked and span[0] <= message.offset < span[1]:
                del candidates[message.tp]  # in flight: the batch that finishes it moves the commit
    for tp in [tp for tp in candidates if _queued(consumer, tp, *candidates[tp])]:
        del candidates[tp]
    return {tp: committed for tp, (committed, _) in candidates.items()}


def _queued(consumer: Any, tp: Any, low: int, high: int) -> bool:
    """Whether an agent's queue holds a message of ``tp`` with an offset in ``low..high - 1`` (not taken yet)."""
    for channel in list(consumer.app.topics._tp_index.get(tp, ())):
        queue = getattr(channel, "_queue", None)  # the channel's queue, where the conductor puts ``tp``'s events
        for event in list(getattr(queue, "_queue", ())):
            message = getattr(event, "message", None)
            if message is not None and message.tp == tp and low <= message.offset < high:
                return True
    return False


async def _wait_empty(self: Any) -> None:
    """Faust's wait for the messages in flight (its loop, less its debug logs), which lets the table agents
    write the state of the batches they hold on every round (module docstring): held messages are in flight
    until then, and nothing else would release them while Faust waits (a stop waits here before it stops
    the agents and their timers)."""
    while not self.should_stop and self._unacked_messages:
        for callback in list(_on_wait_empty):
            try:
                await callback()
            except Exception:  # noqa: BLE001 - what it held stays unrecorded: its records are fetched again
                log.exception("writing held state while waiting for the streams failed")
        await self.commit()
        if not self._unacked_messages:
            break
        await self._wait_for_ack(timeout=1)  # a batch still running: held when it ends, written next round
        self._clean_unacked_messages()
    await self.commit_and_end_transactions()


async def _perform_seek(self: Any) -> None:
    await _ORIGINAL_PERFORM_SEEK(self)
    self.__dict__.get("_secstream_unknown_committed", set()).clear()  # every assigned partition was sought
    await seek_left_out(self)  # and a partition never committed goes back to what was left out


def install() -> None:
    """Replace Faust's ``Consumer.ack``, ``_add_gap``, ``on_partitions_revoked``, ``_new_offset``,
    ``perform_seek`` and ``wait_empty`` in this process; idempotent."""
    faust_consumer.Consumer.ack = _ack
    faust_consumer.Consumer._add_gap = _add_gap
    faust_consumer.Consumer.on_partitions_revoked = _on_partitions_revoked
    faust_consumer.Consumer._new_offset = _new_offset
    faust_consumer.Consumer.perform_seek = _perform_seek
    faust_consumer.Consumer.wait_empty = _wait_empty
