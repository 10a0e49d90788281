"""The consumer watch (streams/worker/consumer_watch.py) against an injected stall, on real components.

The worker is ``bench.fault_store`` (``secstream run`` whose control file can make its Faust consumer
pause the events partitions once, behind its back: a consumer that stops fetching) on the embedded
broker over loopback. With a 4 s stall timeout:

- recovery on: the stall is logged with its reason, counted, the consumer rejoins the group, and
  every event produced while it was stalled is then processed;
- recovery off: the same stall turns ``/readyz`` false with the reason and
  ``secstream_consumer_stalled`` to 1, while ``/healthz`` stays true (the loop runs);
- a record the delivery loop never hands to its stream (the control file's ``skip-record``) leaves a hole
  below the records processed after it: the watch seeks the partition back to it within half the stall
  timeout, logs it with its offset and counts it, and the commit passes the hole once it is processed;
- SIGUSR2 logs the consumer's state (offsets per partition) and the worker goes on (Faust's own
  handler opened pdb, blocking the event loop).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka_helpers import WorkerProc, metric

from streams.kafka.embedded_broker import EmbeddedBroker, create_topic

pytestmark = pytest.mark.integration

TOPIC = "secstream.events"


def events(start: int, n: int) -> list[bytes]:
    return [json.dumps({"event_id": f"stall-{i}", "time": "2026-12-07T10:00:00Z", "source": "sshd",
                        "event_type": "authentication", "host": "bastion", "user": f"u{i % 7}",
                        "message": f"Accepted publickey for u{i % 7} from 10.0.0.{i % 250} port {40000 + i}"}).encode()
            for i in range(start, start + n)]


def produce(bootstrap: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(TOPIC, v) for v in values])
        finally:
            await producer.stop()

    asyncio.run(run())


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return -1, ""


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        asyncio.run(create_topic(running.bootstrap, TOPIC, partitions=1))
        yield running


def stalled_worker(broker: EmbeddedBroker, tmp: Path, name: str, **env: str) -> WorkerProc:
    """A worker that has processed a first part, then stops fetching while a second part is produced."""
    fault = tmp / "fault"
    fault.write_text("")
    worker = WorkerProc(broker.bootstrap, tmp / "data", tmp / f"{name}.log",
                        argv=[sys.executable, "-m", "bench.fault_store"], SECSTREAM_TEST_FAULT_FILE=str(fault),
                        SECSTREAM_STALL_TIMEOUT_S="4", SECSTREAM_LOG_LEVEL="info", **env)
    return worker


def test_a_consumer_that_stops_fetching_is_found_logged_counted_and_recovered(tmp_path: Path,
                                                                             broker: EmbeddedBroker) -> None:
    worker = stalled_worker(broker, tmp_path, "worker")
    try:
        produce(broker.bootstrap, events(0, 100))
        worker.wait_processed(100)
        (tmp_path / "fault").write_text("stop-fetching")
        time.sleep(2)  # the worker's fault timer pauses its events partition
        produce(broker.bootstrap, events(100, 150))
        worker.wait_metric("secstream_consumer_stalls_total", 1, timeout=60,
                           labels=f'reason="no_progress",topic="{TOPIC}"')
        # counted after the stall's state report is written (an await apart): read it once it is there
        worker.wait_metric("secstream_consumer_stall_recoveries_total", 1, timeout=10)
        worker.wait_processed(250, timeout=60)  # the rejoin resumed it: the stalled backlog is processed
        deadline = time.monotonic() + 30  # the lag gauge (every second at this timeout) comes back to 0
        while metric(worker.port, "secstream_consumer_lag_messages", f'partition="0",topic="{TOPIC}"') != 0:
            assert time.monotonic() < deadline, "the lag gauge did not come back to 0"
            time.sleep(0.5)
        assert metric(worker.port, "secstream_consumer_stalled") == 0
        assert readyz(worker.port)[0] == 200
        worker.proc.send_signal(signal.SIGUSR2)  # logs the consumer's state; Faust's default opened pdb
        produce(broker.bootstrap, events(250, 10))
        worker.wait_processed(260, timeout=60)  # the loop was never blocked
        (tmp_path / "fault").write_text("skip-record")
        time.sleep(1)
        produce(broker.bootstrap, events(260, 40))  # the first one is never handed to the stream: a hole
        worker.wait_metric("secstream_consumer_holes_repaired_total", 1, timeout=60, labels=f'topic="{TOPIC}"')
        worker.wait_caught_up(TOPIC, timeout=60)  # the commit passed the hole: it was processed after the seek
    finally:
        code = worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert code == 0, log[-3000:]
    assert "fault: stopped fetching [0]" in log
    # under load a 4 s timeout can also catch the worker's first commit late (a `hole` with committed None,
    # recovered by a rejoin, seen once on 2026-12-07 with the fault loop beside it): the injected stall is this one
    line = next(ln for ln in log.splitlines() if "consumer stalled:" in ln and "no progress for" in ln)
    assert f"{TOPIC}/0: no progress for" in line and "committed 100" in line and "rejoining the group (1 of 3)" in line
    assert "consumer stall cleared" in log
    skipped = int(re.search(r"fault: skipped record 0/(\d+)", log).group(1))  # type: ignore[union-attr]
    assert skipped == 260  # offsets 0..259 were the first three parts
    assert f"{TOPIC}/0: hole at offset {skipped} for " in log and "seeking back to it" in log
    report = log[log.index("consumer state: "):]
    assert f"{TOPIC}/0: listed end" in report and "committed 250" in report and "Starting debugger" not in log


def test_with_recovery_off_a_stall_turns_readiness_false_with_the_reason(tmp_path: Path,
                                                                        broker: EmbeddedBroker) -> None:
    worker = stalled_worker(broker, tmp_path, "worker", SECSTREAM_STALL_RECOVERY="false")
    try:
        produce(broker.bootstrap, events(0, 50))
        worker.wait_processed(50)
        deadline = time.monotonic() + 10  # readiness is refreshed every second
        while readyz(worker.port)[0] != 200:
            assert time.monotonic() < deadline, readyz(worker.port)
            time.sleep(0.2)
        (tmp_path / "fault").write_text("stop-fetching")
        time.sleep(2)
        produce(broker.bootstrap, events(50, 80))
        worker.wait_metric("secstream_consumer_stalled", 1, timeout=60)
        status, text = readyz(worker.port)
        assert status == 503 and text.startswith(f"consumer stalled: {TOPIC}/0: no progress for"), text
        assert urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/healthz", timeout=5).status == 200
        assert metric(worker.port, "secstream_consumer_stall_recoveries_total") == 0
        assert worker.processed() == 50  # nothing recovered it
    finally:
        code = worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert code == 0, log[-3000:]
    assert "recovery is off: not ready, replace this worker" in log
