"""The ``secstream_store_points`` gauge, refreshed by the worker's ``points`` timer without ever overrunning it.

The count is exact (:meth:`VectorStore.count`): on an edge shard it counts every point, on a server it
is a request, and while the store is down :class:`~streams.store.retry.RetryingStore` retries it until
it answers. It used to be awaited inside the 5 s timer on the pipeline's one thread, behind every
queued events, sessions, entities and alerts batch and the state save: under load the timer's body
waited longer than its interval and mode logged ``Timer points is overlapping`` (and each count
delayed the next batch by its own length).

Now :meth:`StorePointsGauge.tick` (the timer's body) only starts a count, on a thread of its own,
and returns at once; a tick that finds the previous count still running is skipped (``skipped``
counts them), so two counts never run together and a store that is slow or down costs no tick and
no batch time. The gauge is set when a count finishes; a failed count leaves the last value.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor, ThreadPoolExecutor

from streams.ops import metrics
from streams.store.base import VectorStore

log = logging.getLogger(__name__)

__all__ = ["StorePointsGauge"]


class StorePointsGauge:
    """Keeps ``secstream_store_points{collection}`` current; see the module docstring."""

    def __init__(self, store: VectorStore, collection: str, *, executor: Executor | None = None) -> None:
        """``executor``: where the count runs (default: a one-thread pool of its own, never the pipeline's)."""
        self.store = store
        self.collection = collection
        self._own = executor is None
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-count")
        self._running: asyncio.Future[int] | None = None
        self._error = ""
        self.skipped = 0  # ticks that found the previous count still running
        self.last: int | None = None  # the latest count, once one finished

    @property
    def running(self) -> bool:
        """A count started by :meth:`tick` has not finished yet."""
        return self._running is not None and not self._running.done()

    async def tick(self) -> None:
        """Start a count unless one is running; returns without waiting for it (the timer's body)."""
        if self.running:
            self.skipped += 1
            log.debug("store count of %r still running: tick skipped (%d so far)", self.collection, self.skipped)
            return
        future = asyncio.get_running_loop().run_in_executor(self.executor, self.store.count, self.collection)
        future.add_done_callback(self._done)
        self._running = future

    def _done(self, future: asyncio.Future[int]) -> None:
        if future.cancelled():
            return
        exc = future.exception()  # retrieved, so asyncio never logs it as unretrieved
        if exc is not None:
            error = f"{type(exc).__name__}: {exc}"
            if error != self._error:  # once per distinct failure, not every tick
                log.warning("store count of %r failed (%s); secstream_store_points keeps its last value",
                            self.collection, error)
            self._error = error
            return
        self._error = ""
        self.last = int(future.result())
        metrics.STORE_POINTS.labels(self.collection).set(self.last)

    def close(self) -> None:
        """Stop counting (the worker stops): a count not started yet is dropped, a running one is not waited for."""
        if self._own:
            self.executor.shutdown(wait=False, cancel_futures=True)
