"""Bulk steps on the internal topics (streams/kafka/step_codec.py): one message per partition per batch, the
partition Kafka's default partitioner gives each step's key, an event's rows shared, cut by size."""

from __future__ import annotations

import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.kafka.partition_keys import partition_of
from streams.kafka.step_codec import pack, unpack


@pytest.mark.parametrize("partitions", [1, 2, 4, 12])
def test_partition_of_is_the_producers_default_partitioner(partitions: int) -> None:
    every = list(range(partitions))
    for key in [b"user:alice", b"host:ws-1", b"src_ip:10.0.0.1", "user:\u00e9l\u00e8ve".encode(), b""]:
        assert partition_of(key, partitions) == DefaultPartitioner()(key, every, every)


def test_pack_keeps_order_per_partition_and_shares_an_events_row() -> None:
    vectors = np.arange(3 * 4, dtype=np.float32).reshape(3, 4)
    keys = [b"user:a", b"host:h", b"user:b", b"host:h", b"user:a"]
    rows = [0, 0, 1, 1, 2]  # event 0 names user a and host h, event 1 user b and host h, ...
    steps = [(k, {"i": i}, r) for i, (k, r) in enumerate(zip(keys, rows))]
    messages = pack(steps, vectors, 3)
    assert len(messages) == len({partition_of(k, 3) for k in keys})  # one per partition
    seen = []
    for partition, message in messages:
        found = unpack(message)
        mine = [i for i, k in enumerate(keys) if partition_of(k, 3) == partition]
        assert [d["i"] for d, _ in found] == mine
        for d, vec in found:
            assert np.array_equal(vec, vectors[rows[d["i"]]])
        n_rows = int.from_bytes(message[5:9], "little")
        assert n_rows == len({rows[i] for i in mine})  # one row per event, however many of its steps are here
        seen += mine
    assert sorted(seen) == list(range(len(keys)))


def test_pack_cuts_a_partitions_steps_by_size_and_loses_none() -> None:
    vectors = np.random.default_rng(0).standard_normal((50, 16)).astype(np.float32)
    steps = [(b"user:same", {"i": i}, i) for i in range(50)]
    messages = pack(steps, vectors, 2, max_bytes=10 * 16 * 4)  # ten rows a message
    assert len(messages) == 5 and len({p for p, _ in messages}) == 1
    found = [item for _, m in messages for item in unpack(m)]
    assert [d["i"] for d, _ in found] == list(range(50))
    assert np.array_equal(np.stack([v for _, v in found]), vectors)


def test_unreadable_bulk_messages_raise() -> None:
    message = pack([(b"k", {"i": 0}, 0)], np.ones((1, 4), dtype=np.float32), 1)[0][1]
    for bad in (message[:5], message[:-1], message + b"\0\0\0\0\0", b"\x02" + message[1:5] + b"\0\0\0\0"):
        with pytest.raises(ValueError):
            unpack(bad)


def test_a_rows_shared_fields_travel_once_and_reach_each_of_its_steps() -> None:
    vectors = np.ones((2, 4), dtype=np.float32)
    shared = {0: {"id": "e0", "ev": {"message": "x" * 50}}, 1: {"id": "e1", "ev": {"message": "y" * 50}}}
    steps = [(b"user:a", {"en": ["user", "a"]}, 0), (b"user:a", {"en": ["host", "h"]}, 0),
             (b"user:a", {"en": ["user", "a"]}, 1)]
    ((_, message),) = pack(steps, vectors, 1, row_fields=shared)
    assert message.count(b"x" * 50) == 1 and message.count(b"y" * 50) == 1
    found = [d for d, _ in unpack(message)]
    assert [(d["id"], d["en"][0]) for d in found] == [("e0", "user"), ("e0", "host"), ("e1", "user")]
    assert all(d["ev"] == shared[int(d["id"][1])]["ev"] for d in found)
