"""`secstream bench traffic`: what one worker writes to Kafka for a stream, topic by topic.

The bundled sample (or a JSONL file of events) goes through one worker process on the embedded broker;
once every event is processed and every step its agents send is consumed and committed (the group is 0
behind on every partition it reads), the worker stops and each topic is read from its start: messages and bytes (keys + values), and bytes per input event. The worker reads its
internal topics back too, so their bytes cross the broker twice. Issue 17 asks for fewer and smaller
internal messages (binary bulk steps, a commit interval): this is the table that shows them shrink.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.e2e import metric_sum
from streams.cli.terminal import table

SAMPLE = Path(__file__).resolve().parents[1] / "streams" / "sample" / "sample_events.jsonl.gz"
TOPIC = "secstream.events"


def read_values(path: Path) -> list[bytes]:
    """One event per non-empty line (gzip when the name ends in .gz)."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return [line.rstrip(b"\n") for line in f if line.strip()]


async def topic_bytes(bootstrap: str) -> dict[str, tuple[int, int]]:
    """Every topic's (messages, key + value bytes), read from the start to the end offsets of now."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    partitions = await partitions_of(bootstrap)  # every topic the worker created
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=32 * 1024 * 1024)
    await consumer.start()
    try:
        out: dict[str, tuple[int, int]] = {}
        for topic, numbers in sorted(partitions.items()):
            tps = [TopicPartition(topic, p) for p in numbers]
            if not tps:
                continue
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            n = size = 0
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(*tps, timeout_ms=1000)).values():
                    n += len(records)
                    size += sum(len(r.key or b"") + len(r.value or b"") for r in records)
            out[topic] = (n, size)
        return out
    finally:
        await consumer.stop()


async def partitions_of(bootstrap: str) -> dict[str, list[int]]:
    """Every topic on the broker and its partition numbers."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described}


async def behind(bootstrap: str, group: str = "secstream") -> int:
    """Messages the worker's group has not committed yet on the topics its agents read (events and steps);
    -1 while one of them has no committed offset."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tps = [TopicPartition(t, p) for t, ps in (await partitions_of(bootstrap)).items()
           if t == TOPIC or t.endswith("-steps") for p in ps]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()  # carries the group id, never joins: reads the group's commits
    try:
        ends = await consumer.end_offsets(tps)
        committed = {tp: await consumer.committed(tp) for tp in tps if ends[tp] > 0}
    finally:
        await consumer.stop()
    if any(c is None for c in committed.values()):
        return -1
    return sum(max(0, ends[tp] - c) for tp, c in committed.items() if c is not None)


def run(values: list[bytes], batch_size: int, timeout_s: float) -> dict[str, Any]:
    from streams.cli.topic_commands import produce_values
    from streams.kafka.embedded_broker import EmbeddedBroker, create_topic, free_port

    tmp = Path(tempfile.mkdtemp(prefix="secstream-traffic-"))
    port = free_port()
    env = {**os.environ, "SECSTREAM_DATA_DIR": str(tmp), "SECSTREAM_PRINT_ALERTS": "false",
           "SECSTREAM_METRICS_PORT": str(port), "SECSTREAM_METRICS_HOST": "127.0.0.1",
           "SECSTREAM_LOG_LEVEL": "warning", "SECSTREAM_BATCH_SIZE": str(batch_size), "HF_HUB_OFFLINE": "1"}
    try:
        with EmbeddedBroker(log_path=tmp / "tansu.log") as broker, open(tmp / "worker.log", "wb") as log:
            env["SECSTREAM_KAFKA_BOOTSTRAP"] = broker.bootstrap
            asyncio.run(create_topic(broker.bootstrap, TOPIC, partitions=1))
            worker = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "run"], env=env, stdout=log,
                                      stderr=subprocess.STDOUT)
            try:
                asyncio.run(produce_values(broker.bootstrap, TOPIC, values))
                t0, deadline = time.monotonic(), time.monotonic() + timeout_s
                while True:  # every event processed, every step and alert consumed and committed
                    if worker.poll() is not None:
                        raise SystemExit(f"worker exited ({worker.returncode}); see {tmp / 'worker.log'}")
                    if metric_sum(port, "secstream_events_total") >= len(values) and \
                            asyncio.run(behind(broker.bootstrap)) == 0:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"worker did not finish {len(values)} events in {timeout_s:.0f} s")
                    time.sleep(0.5)
                elapsed = time.monotonic() - t0
            finally:
                worker.terminate()
                worker.wait(120)
            topics = asyncio.run(topic_bytes(broker.bootstrap))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"events": len(values), "processed_s": round(elapsed, 1),
            "topics": {t: {"messages": n, "bytes": b} for t, (n, b) in topics.items() if n}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="secstream bench traffic", description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=Path, default=SAMPLE, help="JSONL events (.gz read as gzip); default: the bundled sample")
    ap.add_argument("--batch-size", type=int, default=500, help="SECSTREAM_BATCH_SIZE of the worker")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the worker to finish")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    if not args.events.is_file():
        ap.error(f"--events {args.events}: no such file")
    result = run(read_values(args.events), args.batch_size, args.timeout)
    if args.json:
        print(json.dumps(result))
        return 0
    n = result["events"]
    rows = [[t, f"{v['messages']:,}", f"{v['bytes'] / 1e6:,.1f}", f"{v['bytes'] / n:,.0f}"]
            for t, v in sorted(result["topics"].items())]
    total = sum(v["bytes"] for v in result["topics"].values())
    rows.append(["all topics", f"{sum(v['messages'] for v in result['topics'].values()):,}", f"{total / 1e6:,.1f}",
                 f"{total / n:,.0f}"])
    print(f"{n:,} events processed in {result['processed_s']} s by one worker")
    print(table(rows, ["topic", "messages", "MB", "bytes per event"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
