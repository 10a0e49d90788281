"""The retrying store (streams/store/retry.py) over the real embedded Qdrant engine.

A server outage cannot be produced here (no Qdrant server), so the engine's ``upsert`` is made to
raise what the engine raises for an unreachable server: a StoreError caused by ConnectionRefusedError.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from streams.store import CollectionSpec, StorePoint, open_store, point_id
from streams.store.base import StoreError
from streams.store.retry import RetryingStore, StoreUnavailable, transient


def _point(i: int) -> StorePoint:
    vec = np.zeros(8, dtype=np.float32)
    vec[i % 8] = 1.0
    return StorePoint(id=point_id(f"e{i}"), dense=vec, payload={"event_id": f"e{i}"})


class _Outage:
    """Make ``store.upsert`` fail like an unreachable server for the next ``n`` calls."""

    def __init__(self, store: object, n: int) -> None:
        self.left, self.calls = n, 0
        real = store.upsert  # type: ignore[attr-defined]

        def upsert(*args: object, **kwargs: object) -> None:
            self.calls += 1
            if self.left > 0:
                self.left -= 1
                raise StoreError("upsert: connection refused") from ConnectionRefusedError(111, "refused")
            real(*args, **kwargs)

        store.upsert = upsert  # type: ignore[attr-defined]


@pytest.fixture()
def engine(tmp_path: Path):
    store = open_store(engine="edge", path=tmp_path / "qdrant")
    store.ensure(CollectionSpec(name="events", dense_dim=8, sparse_name=None))
    yield store
    store.close()


def test_transient_is_judged_on_the_cause() -> None:
    assert transient(StoreError("x").with_traceback(None)) is False
    try:
        raise StoreError("upsert: refused") from ConnectionRefusedError(111, "refused")
    except StoreError as exc:
        assert transient(exc)

    class UnexpectedResponse(Exception):
        def __init__(self, status_code: int) -> None:
            self.status_code = status_code

    for status, want in ((503, True), (429, True), (500, True), (400, False), (404, False)):
        try:
            raise StoreError("server said no") from UnexpectedResponse(status)
        except StoreError as exc:
            assert transient(exc) is want, status
    try:
        raise StoreError("dense shape (3,), collection expects (8,)") from ValueError("shape")
    except StoreError as exc:
        assert not transient(exc)
    import ssl

    try:  # a connection error caused by a certificate that does not verify: no wait cures it
        try:
            raise ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
        except ssl.SSLError as inner:
            raise StoreError("upsert: ConnectError") from ConnectionError(str(inner))
    except StoreError as exc:
        assert not transient(exc)


def test_an_outage_is_waited_out_and_the_points_land_once(engine) -> None:
    outage = _Outage(engine, 4)
    sleeps: list[float] = []
    store = RetryingStore(engine, backoff_s=0.1, backoff_max_s=0.3, sleep=sleeps.append)
    store.upsert("events", [_point(i) for i in range(5)])
    assert outage.calls == 5 and sleeps == [0.1, 0.2, 0.3, 0.3]  # backoff doubles up to its cap
    assert store.count("events") == 5
    store.upsert("events", [_point(i) for i in range(5)])  # idempotent by id
    assert store.count("events") == 5


def test_a_permanent_failure_is_raised_at_once(engine) -> None:
    store = RetryingStore(engine, sleep=lambda s: pytest.fail("a permanent error must not be retried"))
    bad = StorePoint(id=point_id("x"), dense=np.ones(3, dtype=np.float32), payload={})
    with pytest.raises(StoreError) as err:
        store.upsert("events", [bad])
    assert not isinstance(err.value, StoreUnavailable)


def test_abort_ends_the_wait_of_a_call_in_flight(engine) -> None:
    _Outage(engine, 10**6)
    store = RetryingStore(engine, backoff_s=0.05, backoff_max_s=0.05)
    failed: list[BaseException] = []

    def call() -> None:
        try:
            store.upsert("events", [_point(0)])
        except BaseException as exc:  # noqa: BLE001 - inspected below
            failed.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # still waiting for the store
    store.abort()
    thread.join(5)
    assert not thread.is_alive()
    assert len(failed) == 1 and isinstance(failed[0], StoreUnavailable)
    assert engine.count("events") == 0


def test_give_up_after_a_bound(engine) -> None:
    _Outage(engine, 10**6)
    clock = [0.0]
    store = RetryingStore(engine, backoff_s=1.0, backoff_max_s=1.0, give_up_s=2.5,
                          sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    real_monotonic = time.monotonic
    start = real_monotonic()
    import streams.store.retry as mod

    mod.time.monotonic = lambda: start + clock[0]  # type: ignore[assignment]
    try:
        with pytest.raises(StoreUnavailable, match="kept failing"):
            store.upsert("events", [_point(0)])
    finally:
        mod.time.monotonic = real_monotonic  # type: ignore[assignment]
    assert clock[0] == 3.0
