"""The fetch wait that grows while the broker starves a partition (streams/kafka/fetch_wait.py), on the real
embedded broker with its S3 storage engine (a local moto server): after a restart the broker serves its
log from storage, and with the worker's 50 ms wait a consumer behind got nothing from it (measured
2026-12-07: 0 records in 4 s of fetching; docs/operations.md "After a broker crash")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer.fetcher import Fetcher

from streams.kafka.embedded_broker import EmbeddedBroker, create_topic, free_port
from streams.kafka.fetch_wait import STARVED_WAIT_CAP_MS, adapt_fetch_wait

pytestmark = pytest.mark.integration

TOPIC = "fetch-wait"
N = 2000
SIZE = 4096  # bytes a message: step messages carry vectors


async def _produce(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for start in range(0, N, 50):  # many record batches, as a worker's step topics have
            await asyncio.gather(*[await producer.send(TOPIC, f"m{i}".encode().ljust(SIZE, b".")) for i in range(start, start + 50)])
    finally:
        await producer.stop()


async def _consume(bootstrap: str, timeout_s: float) -> tuple[list[int], int]:
    """Every offset read from the start within ``timeout_s``, and the fetcher's wait once caught up."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    tp = TopicPartition(TOPIC, 0)
    offsets: list[int] = []
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout_s
        while len(offsets) < N and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            offsets.extend(r.offset for r in batch.get(tp, []))
        await consumer.getmany(tp, timeout_ms=3000)  # a few fetches at the end of the log
        return offsets, consumer._fetcher._fetch_max_wait_ms
    finally:
        await consumer.stop()


def test_a_consumer_behind_is_fed_from_storage(tmp_path: Path, s3: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log", storage="s3://tansu/", env=s3).start()
    try:
        asyncio.run(create_topic(broker.bootstrap, TOPIC, partitions=1))
        asyncio.run(_produce(broker.bootstrap))
        broker.stop()  # restarted, the broker holds nothing in memory: it reads the log from S3
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log", storage="s3://tansu/", env=s3).start()

        monkeypatch.setattr(Fetcher, "_proc_fetch_request", Fetcher._proc_fetch_request)  # undone after the test
        waits: list[tuple[int, bool]] = []
        adapt_fetch_wait(lambda wait_ms, starved: waits.append((wait_ms, starved)))
        offsets, final_wait = asyncio.run(_consume(broker.bootstrap, timeout_s=120))
    finally:
        broker.stop()
    assert offsets == list(range(N)), f"read {len(offsets)} of {N}; waits {waits[-10:]}"
    starved = sum(1 for _, s in waits if s)
    print(f"{len(waits)} fetches, {starved} starved, longest wait {max(w for w, _ in waits)} ms")
    assert all(50 <= w <= STARVED_WAIT_CAP_MS for w, _ in waits)
    assert final_wait == 50, "caught up, the wait is the short one again"
