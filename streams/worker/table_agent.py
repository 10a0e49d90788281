"""A Faust agent over a repartitioned internal topic, its per-partition state mirrored in a
changelog-backed table: the machinery the session and entity agents share.

The events agent sends *steps* to ``<app_id>-<steps>``, in bulk: one message per partition per batch,
each step on the partition its key (what the state is kept per: a session key, an entity) hashes to
(streams/kafka/step_codec.py); every step of a key thus reaches one partition, hence one worker. A subclass processes one partition's batch of steps at a time
(:meth:`TableAgent._batch`), writes what changed with :meth:`TableAgent._write`, and
rebuilds a partition from the table in :meth:`TableAgent._load`.

Recovery: Faust replays the changelog into ``table.data`` before agents resume (the
in-memory store always replays a partition from its start when it is assigned), then
:meth:`TableAgent._recovered` drops partitions no longer ours and loads the new ones.
A partition first seen in a batch before that callback ran is loaded then.

One batch (process → changelog → sends) runs at a time, under :attr:`TableAgent.turn`,
so timers and the agent never interleave their writes for a partition.
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
from streams.worker.batches import finish_batch

log = logging.getLogger(__name__)


class TableAgent(ABC):
    """Steps topic + table + agent; see the module docstring."""

    def __init__(self, app: faust.App, executor: ThreadPoolExecutor, *, name: str, steps: str, table: str, app_id: str,
                 partitions: int, batch_size: int, within_s: float,
                 ready: Callable[[], Awaitable[None]] | None = None) -> None:
        self.app = app
        self.executor = executor
        self.batch_size, self.within_s = batch_size, within_s
        self.ready = ready  # awaited before the first batch: the output topics exist
        self.steps_topic = app.topic(f"{app_id}-{steps}", partitions=partitions, internal=True,
                                     key_serializer="raw", value_serializer="raw")
        self.table = app.Table(table, partitions=partitions, key_type=bytes)  # values: JSON plain data
        self.table.on_recover(self._recovered)
        self.restored: set[int] = set()
        self.last_step = time.monotonic()
        self.turn = asyncio.Lock()
        self.name = name
        app.agent(self.steps_topic, name=name)(self._agent)
        faust_commits.guard_topics([self.steps_topic.get_topic_name()])  # acked by finish_batch only

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    async def _batch(self, partition: int, values: list[bytes]) -> None:
        """Process one partition's steps (called under :attr:`turn`, the partition loaded)."""

    @abstractmethod
    def _load(self, partition: int, items: list[tuple[bytes, Any]]) -> None:
        """Rebuild ``partition``'s state from the table's items (all partitions' items: filter)."""

    @abstractmethod
    def _drop(self, partition: int) -> None:
        """Forget ``partition``'s state (revoked: its new owner recovers it)."""

    # ------------------------------------------------------------------ steps in
    async def send_steps(self, steps: list[tuple[int, bytes]]) -> list[Any]:
        """Publish bulk step messages ``(partition, message)`` (the events agent calls this; streams/kafka/step_codec.py);
        returns the send futures to await."""
        return [await self.steps_topic.send(key=None, value=v, partition=p) for p, v in steps]

    async def _agent(self, stream: faust.StreamT) -> None:
        if self.ready is not None:
            await self.ready()
        async for events in stream.noack().take_events(self.batch_size, within=self.within_s):  # see app.py
            self.last_step = time.monotonic()
            await finish_batch(self.name, events, self._partitions(events))  # streams/worker/batches.py

    async def _partitions(self, events: list[Any]) -> None:
        by_partition: dict[int, list[bytes]] = {}
        for e in events:
            by_partition.setdefault(e.message.partition, []).append(bytes(e.value or b""))
        for partition, values in sorted(by_partition.items()):
            async with self.turn:
                if partition not in self.restored:  # assigned after our last recovery callback
                    self._restore(partition)
                await self._batch(partition, values)

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
