"""The worker's ``points`` timer (streams/worker/store_points.py) never overruns, never runs two counts at
once and never runs a count on the event loop, however slow the store's count is.

Real code paths: mode's own ``Timer`` (the loop behind ``app.timer``/``Service.itertimer``, which logs
"Timer points is overlapping"), the worker's real timer body ``Worker._points_timer`` and
:class:`StorePointsGauge`, the real ``secstream_store_points`` gauge. The one stand-in is the store:
``BlockedCountStore.count`` blocks until the test releases it, like an exact count of a large
collection (or one behind a busy server), and records where and how many counts run. No timing is
asserted: the tests wait on events and count calls.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from mode.timers import Timer

from streams.ops import metrics
from streams.store.base import StoreError
from streams.worker.faust_app import Worker
from streams.worker.store_points import StorePointsGauge

INTERVAL = 0.1  # the timer's interval (the worker's is 5 s)


class BlockedCountStore:
    """Stand-in for the vector store's exact count: it blocks until released, and records the threads
    it ran on and how many ran at once."""

    def __init__(self, points: int = 1234, fail: bool = False, released: bool = False) -> None:
        self.points, self.fail = points, fail
        self.release = threading.Event()
        if released:
            self.release.set()
        self.calls = 0
        self.active = 0
        self.most_at_once = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def count(self, collection: str) -> int:
        with self._lock:
            self.calls += 1
            self.active += 1
            self.most_at_once = max(self.most_at_once, self.active)
            self.threads.add(threading.current_thread().name)
        try:
            self.release.wait(60)
            if self.fail:
                raise StoreError(f"count {collection!r}: disk on fire")
            return self.points
        finally:
            with self._lock:
                self.active -= 1


def _gauge_value(collection: str) -> float | None:
    return metrics.REGISTRY.get_sample_value("secstream_store_points", {"collection": collection})


async def _drive(body, ticks: int) -> None:  # noqa: ANN001
    """Run ``body`` on mode's Timer named "points" (as ``app.timer`` does) for ``ticks`` ticks."""
    done = 0
    async for _ in Timer(INTERVAL, name="points"):
        await body()
        done += 1
        if done >= ticks:
            return


def _overlaps(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mode.timers" and "overlapping" in r.getMessage()]


def test_points_timer_with_a_slow_count_never_overlaps_nor_counts_on_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    store = BlockedCountStore(points=4321)
    gauge = StorePointsGauge(store, "events-slow")  # type: ignore[arg-type] - the stand-in has count() only
    worker = SimpleNamespace(points=gauge)  # the state Worker._points_timer reads
    caplog.set_level(logging.DEBUG, logger="mode.timers")

    async def scenario() -> None:
        await _drive(lambda: Worker._points_timer(worker), 8)  # type: ignore[arg-type]
        # eight ticks came and went while the first count was still blocked
        assert store.calls == 1 and gauge.skipped == 7 and gauge.last is None
        store.release.set()
        while gauge.last is None:
            await asyncio.sleep(0.01)

    try:
        asyncio.run(scenario())
    finally:
        gauge.close()
    assert _overlaps(caplog) == []
    assert store.most_at_once == 1  # never two counts together
    assert "MainThread" not in store.threads and not any(t.startswith("pipeline") for t in store.threads)
    assert gauge.last == 4321 and _gauge_value("events-slow") == 4321


def test_the_count_does_not_wait_behind_a_busy_pipeline_thread() -> None:
    """A long batch holds the pipeline's one thread; the count runs on its own thread meanwhile and the
    gauge is set while the batch still runs (before, the count queued behind the batch)."""
    store = BlockedCountStore(points=77, released=True)
    gauge = StorePointsGauge(store, "events-busy")  # type: ignore[arg-type]
    pipeline_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline")
    batch_may_end = threading.Event()

    async def scenario() -> bool:
        batch = asyncio.get_running_loop().run_in_executor(pipeline_thread, batch_may_end.wait, 60)
        await gauge.tick()
        while gauge.last is None:
            await asyncio.sleep(0.01)
        batch_still_running = not batch.done()
        batch_may_end.set()
        await batch
        return batch_still_running

    try:
        assert asyncio.run(scenario())
    finally:
        gauge.close()
        pipeline_thread.shutdown(wait=True)
    assert _gauge_value("events-busy") == 77


def test_a_failing_count_keeps_the_last_value_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    store = BlockedCountStore(points=5, released=True)
    gauge = StorePointsGauge(store, "events-failing")  # type: ignore[arg-type]

    async def ticks(n: int) -> None:
        for _ in range(n):
            await gauge.tick()
            while gauge.running:
                await asyncio.sleep(0.005)
            await asyncio.sleep(0)  # the done callback runs

    caplog.set_level(logging.WARNING, logger="streams.worker.store_points")
    try:
        asyncio.run(ticks(1))
        store.fail = True
        asyncio.run(ticks(3))
    finally:
        gauge.close()
    assert _gauge_value("events-failing") == 5 and gauge.last == 5 and store.calls == 4
    warnings = [r.getMessage() for r in caplog.records if r.name == "streams.worker.store_points"]
    assert len(warnings) == 1 and "disk on fire" in warnings[0]
