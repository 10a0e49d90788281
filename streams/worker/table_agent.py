"""A Faust agent over a repartitioned internal topic, its per-partition state mirrored in a
changelog-backed table: the machinery the session and entity agents share.

The events agent sends *steps* to ``<app_id>-<steps>``, in bulk: one message per partition per batch, each
step on the partition its key (what the state is kept per: a session key, an entity) hashes to
(streams/kafka/step_codec.py); every step of a key thus reaches one partition, hence one worker. A subclass
processes one partition's batch of steps at a time (:meth:`TableAgent._batch`), writes what changed with
:meth:`TableAgent._write`, and rebuilds a partition from the table in :meth:`TableAgent._load`.

Recovery: Faust replays the changelog into ``table.data`` before agents resume (the
in-memory store always replays a partition from its start when it is assigned), then
:meth:`TableAgent._recovered` drops partitions no longer ours and loads the new ones.
A partition first seen in a batch before that callback ran is loaded then.

One batch (process → sends) runs at a time, under :attr:`TableAgent.turn`, so timers and
the agent never interleave their writes for a partition.

Commit interval (as Kafka Streams' ``commit.interval.ms``): a batch's alerts and records go
out at once, but its state goes to the changelog with the other batches' of the same
interval (``SECSTREAM_COMMIT_INTERVAL_MS``), by :meth:`TableAgent.flush`: what changed since
the last flush, once (an entity touched by five batches is written once, not five times),
then the batches' offsets may be committed. Until then their messages are held
(streams/kafka/faust_commits.py). A flush runs when a batch ends past the interval, on a
timer when the stream is quiet, before every revocation and when the worker stops. A crash
loses nothing: the worker that takes the partition over recovers the state of the last flush
and reads the steps from the last commit, which is that flush's (idempotent effects, as
for any re-delivery). 0 writes after every batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from streams.kafka import faust_commits
from streams.ops import metrics
from streams.worker.batches import finish_batch, wait_sent, withhold

log = logging.getLogger(__name__)

#: bulk step messages queued for a session or entity agent, and in one of its batches: ≤ ~40 MB at
#: streams/kafka/step_codec.py's 512 KiB of vectors a message (Faust's default queue is 4,096 messages)
BULK_MESSAGES_BUFFERED = 64


class TableAgent(ABC):
    """Steps topic + table + agent; see the module docstring."""

    def __init__(self, app: faust.App, executor: ThreadPoolExecutor, *, name: str, steps: str, table: str, app_id: str,
                 partitions: int, batch_size: int, within_s: float, commit_interval_s: float = 0.0,
                 buffered: int | None = None, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        """``buffered``: most messages of the steps topic queued for the agent, and in one of its batches
        (None: Faust's ``stream_buffer_maxsize`` and ``batch_size``); bulk step messages hold hundreds of
        steps each (streams/kafka/step_codec.py), so a count meant for single steps would hold gigabytes."""
        self.app = app
        self.commit_interval_s = commit_interval_s
        self._held: dict[int, list[Any]] = {}  # partition -> events of finished batches, state not written yet
        self._dirty: set[int] = set()  # partitions whose state changed since the last flush
        self._flushed = time.monotonic()
        self.executor = executor
        self.batch_size, self.within_s = batch_size, within_s
        self.ready = ready  # awaited before the first batch: the output topics exist
        self.steps_topic = app.topic(f"{app_id}-{steps}", partitions=partitions, internal=True,
                                     key_serializer="raw", value_serializer="raw", maxsize=buffered)
        if buffered is not None:
            self.batch_size = min(batch_size, buffered)
        self.table = app.Table(table, partitions=partitions, key_type=bytes)  # values: JSON plain data
        self.table.on_recover(self._recovered)
        self.restored: set[int] = set()
        self.last_step = time.monotonic()
        self.turn = asyncio.Lock()
        self.name = name
        app.agent(self.steps_topic, name=name)(self._agent)
        faust_commits.guard_topics([self.steps_topic.get_topic_name()])  # acked by finish_batch only
        faust_commits.on_wait_empty(self.flush)  # before a revocation's or a stop's commit
        app.timer(max(0.1, commit_interval_s), name=f"{name}-commit")(self._commit_timer)

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    async def _batch(self, partition: int, values: list[bytes]) -> None:
        """Process one partition's steps (called under :attr:`turn`, the partition loaded)."""

    @abstractmethod
    async def _write_state(self, partition: int) -> None:
        """Write to the changelog what changed in ``partition``'s state since the last call (called under
        :attr:`turn`, the partition loaded); return once the broker has acked it."""

    @abstractmethod
    def _load(self, partition: int, items: list[tuple[bytes, Any]]) -> None:
        """Rebuild ``partition``'s state from the table's items (all partitions' items: filter)."""

    @abstractmethod
    def _drop(self, partition: int) -> None:
        """Forget ``partition``'s state (revoked: its new owner recovers it)."""

    # ------------------------------------------------------------------ steps in
    async def send_steps(self, steps: list[tuple[int, bytes]]) -> list[Any]:
        """Publish bulk step messages ``(partition, message)`` (the events agent calls this;
        streams/kafka/step_codec.py); returns the send futures to await."""
        return [await self.steps_topic.send(key=None, value=v, partition=p) for p, v in steps]

    async def _agent(self, stream: faust.StreamT) -> None:
        if self.ready is not None:
            await self.ready()
        try:
            async for events in stream.noack().take_events(self.batch_size, within=self.within_s):  # see app.py
                self.last_step = time.monotonic()
                done: list[Any] = []
                try:  # streams/worker/batches.py; held until the flush (module docstring)
                    await finish_batch(self.name, events, self._partitions(events), held=done)
                finally:
                    for event in done:
                        self._held.setdefault(event.message.partition, []).append(event)
                if time.monotonic() - self._flushed >= self.commit_interval_s:
                    await self.flush()
        except asyncio.CancelledError:  # stopping: what the batches changed goes out before the last commit
            await self.flush()
            raise

    async def _partitions(self, events: list[Any]) -> None:
        by_partition: dict[int, list[bytes]] = {}
        for e in events:
            by_partition.setdefault(e.message.partition, []).append(bytes(e.value or b""))
        for partition, values in sorted(by_partition.items()):
            async with self.turn:
                if partition not in self.restored:  # assigned after our last recovery callback
                    self._restore(partition)
                await self._batch(partition, values)
                self._dirty.add(partition)

    # ------------------------------------------------------------------ commit interval
    async def flush(self) -> None:
        """Write the state the batches since the last flush changed, then release their offsets (module
        docstring). Runs to its end across a cancellation (which it re-raises)."""
        task = asyncio.ensure_future(self._flush())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task])
            raise

    async def _flush(self) -> None:
        async with self.turn:
            held, self._held = self._held, {}
            dirty, self._dirty = self._dirty, set()
            self._flushed = time.monotonic()
            for partition in sorted(dirty | set(held)):
                events = held.get(partition, [])
                if partition not in self.restored:  # handed over: its new owner reads them from the last commit
                    _let_go(events)
                    continue
                try:
                    if partition in dirty:
                        await self._write_state(partition)
                except Exception as exc:  # noqa: BLE001 - withheld: Kafka re-delivers them to the next owner
                    _let_go(events)
                    metrics.BATCHES_WITHHELD.labels(self.name).inc()
                    log.error("%s: partition %d: its state since the last commit could not be written (%s: %s); "
                              "its %d steps are not committed, Kafka re-delivers them", self.name, partition,
                              type(exc).__name__, exc, len(events))
                    continue
                faust_commits.release(events)

    async def _commit_timer(self) -> None:
        if (self._held or self._dirty) and time.monotonic() - self._flushed >= self.commit_interval_s:
            await self.flush()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the pipeline thread (the state is not shared between threads)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # ------------------------------------------------------------------ effects out
    async def _write(self, partition: int, key: bytes, value: Any, *, keep: Any = None) -> Any:
        """Set (or delete, ``None``) a table key: the table's store, and its changelog partition ``partition``.

        ``keep`` is what the local store keeps instead of ``value`` (default: ``value``):
        a state whose records are large can keep a placeholder, as only a recovery reads
        the values back, and Faust's recovery replays the full values from the changelog.

        Not ``table[key] = value``: that takes the partition from the current event
        (a ``take_events`` batch sets none) and queues the changelog message in
        Faust's producer buffer, which stalls stream processing once a batch writes
        more than 100 keys. The partition is known here, and the send is awaited
        with the batch's other sends, before its offsets are committed.
        """
        topic = self.table.changelog_topic
        if value is None:
            if key not in self.table.data:
                return None
            del self.table.data[key]
            return await topic.send(key=key, value=None, partition=partition, key_serializer="raw",
                                    value_serializer="raw")
        self.table.data[key] = value if keep is None else keep
        return await topic.send(key=key, value=value, partition=partition, key_serializer="raw",
                                value_serializer="json")

    async def _write_records(self, partition: int, records: list[tuple[bytes, Any]], *, keep: Any = None) -> None:
        """:meth:`_write` each record, the last one alone in its own produce request once the others are acked:
        Tansu answers "latest offset" with the last record batch's base offset + 1, so Faust's recovery would
        stop short of a multi-record last batch; one record last makes that exact."""
        futures = [fut for key, value in records[:-1]
                   if (fut := await self._write(partition, key, value, keep=keep)) is not None]
        if futures:
            await wait_sent(futures)
        key, value = records[-1]
        last = await self._write(partition, key, value, keep=keep)
        if last is not None:
            await wait_sent([last])

    # ------------------------------------------------------------------ recovery
    def _active(self) -> set[int]:
        name = self.steps_topic.get_topic_name()
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == name}

    async def _recovered(self) -> None:
        """After every recovery: drop partitions no longer ours, rebuild the newly assigned ones."""
        active = self._active()
        for partition in sorted(self.restored - active):
            self._drop(partition)
            self.restored.discard(partition)
            log.info("%s: partition %d revoked, handed over", self.name, partition)
        for partition in sorted(active - self.restored):
            self._restore(partition)

    def _restore(self, partition: int) -> None:
        self._drop(partition)
        self._load(partition, list(self.table.data.items()))
        self.restored.add(partition)


def _let_go(events: list[Any]) -> None:
    """Held events whose state will not be written by this worker: never committed here, no longer in flight."""
    faust_commits.unhold(events)
    withhold(events)
