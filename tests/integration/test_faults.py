"""Fault tests on real components (issue 7): the embedded Tansu broker over loopback, the worker as
its own process, the real Qdrant edge engine on disk.

Each test streams the OpenSSH sample (2,000 valid events), malformed messages and two unmistakable
attack events through a worker, injures one component mid-stream, lets it recover, and checks the
same things (:func:`check_nothing_lost`):

- every valid event produced is in the store exactly once (by id: as many points as distinct ids,
  each id retrievable with its own payload), and none went to the DLQ;
- every malformed message is on the DLQ with its reason;
- every alert published is stored under its id, the attack events are alerted, and no alert id is
  published as new twice;
- the worker never exited on its own (the wait helpers assert it at every poll).

Faults: the store failing then slow, and a stop while it fails (test_store_outage...); a graceful stop
with a slow batch in flight, then a SIGKILL mid-batch (test_worker_stop_and_kill...); a SIGKILLed and
restarted broker whose log survives in S3 storage (a moto S3 server: Tansu's only durable engine here).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka_helpers import INJECTED, INJECTED_IDS, SAMPLE_YEAR, WorkerProc, committed_offset, drain, metric, stored_points

from schemas.models import decode_event
from streams.adapters import read_records
from streams.kafka.embedded_broker import EmbeddedBroker, create_topic, free_port

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
OPENSSH = DATA / "loghub" / "OpenSSH_2k.log"
TOPIC = "secstream.events"

MALFORMED: dict[bytes, str] = {
    b"this is not json": "not_json",
    b'{"message": "no time here"}': "missing_field",
    b'{"time": "2026-01-01T00:00:00Z", "message": 42}': "wrong_type",
    b'{"time": "2026-01-01T00:00:00Z", "message": "x", "src_ip": "999.1.1.1"}': "invalid_value",
    b'{"time": "2026-01-01T00:00:00Z", "message": "x", "dst_port": 70000}': "invalid_value",
    b"\xff\xfe\x00garbage\x80\x81": "not_utf8",
    b'{"time": "2026-01-01T00:00:00Z", "message": "' + b"A" * 200_000 + b'"}': "too_large",
}

needs_data = pytest.mark.skipif(not OPENSSH.exists(), reason=f"sample data not found at {OPENSSH}")


def stream() -> tuple[list[bytes], list[bytes], set[str]]:
    """(first part, second part, distinct valid ids): malformed messages spread over both parts."""
    valid = [r.value for r in read_records(OPENSSH, "sshd", year=SAMPLE_YEAR) if r.value is not None]
    bad = list(MALFORMED)
    first = valid[:1000] + bad[:3]
    second = valid[1000:1500] + bad[3:] + valid[1500:] + INJECTED
    return first, second, {decode_event(v).event_id for v in valid + INJECTED}


class Producer(threading.Thread):
    """Produces messages at ``rate``/s in chunks and retries a chunk until the broker acks all of it,
    across broker restarts (a producer's at-least-once: a chunk may be written twice)."""

    def __init__(self, bootstrap: str, messages: list[bytes], rate: float = 400.0) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.messages, self.rate = bootstrap, messages, rate
        self.acked, self.retries, self.error = 0, 0, ""

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = f"{type(exc).__name__}: {exc}"

    async def _run(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer: AIOKafkaProducer | None = None
        chunk = 50
        for start in range(0, len(self.messages), chunk):
            part = self.messages[start:start + chunk]
            while True:
                try:
                    if producer is None:
                        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                                    request_timeout_ms=5000, max_request_size=1_048_576)
                        await producer.start()
                    futures = [await producer.send(TOPIC, value) for value in part]
                    await asyncio.gather(*futures)
                    break
                except Exception:  # noqa: BLE001 - the broker is down: reconnect and resend the chunk
                    self.retries += 1
                    if producer is not None:
                        try:
                            await producer.stop()
                        except Exception:  # noqa: BLE001
                            pass
                    producer = None
                    await asyncio.sleep(0.5)
            self.acked += len(part)
            await asyncio.sleep(len(part) / self.rate)
        if producer is not None:
            await producer.stop()


def produce(bootstrap: str, messages: list[bytes], rate: float = 2000.0) -> None:
    producer = Producer(bootstrap, messages, rate)
    producer.run()
    assert producer.acked == len(messages), producer.error


def wait_stored(worker: WorkerProc, n: int, timeout: float = 120.0) -> None:
    """Until the store holds ``n`` event points (the worker's gauge, refreshed every 5 s). On a timeout the
    test goes on to stop the worker and :func:`check_nothing_lost` says what is missing."""
    try:
        worker.wait_metric("secstream_store_points", n, timeout=timeout, labels='collection="events"')
    except AssertionError as exc:
        assert worker.proc.poll() is None, f"worker exited with {worker.proc.returncode}"
        print(f"{exc}; worker counters: {worker.metric_sums('secstream_events')} "
              f"{worker.metric_sums('secstream_dlq')} {worker.metric_sums('secstream_batches')}")


def set_fault(path: Path, what: str) -> None:
    """Switch the injected store fault atomically (the worker reads the file on every store call)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(what)
    tmp.replace(path)


def fault_worker(bootstrap: str, tmp: Path, name: str, **env: str) -> WorkerProc:
    return WorkerProc(bootstrap, tmp / "data", tmp / f"{name}.log", argv=[sys.executable, "-m", "bench.fault_store"],
                      SECSTREAM_TEST_FAULT_FILE=str(tmp / "fault"), SECSTREAM_STORE_RETRY_MAX_BACKOFF_S="1",
                      **env)


def wait_finished(worker: WorkerProc, bootstrap: str, timeout: float = 90.0) -> None:
    """Until every event is finished and committed (a re-delivered batch included: the store can be complete
    while one is still being worked through), then until the attack events' alerts are on the alerts topic
    (after a fault, re-delivered alert steps make the worker's raised/handled counters useless as a test of
    "settled")."""
    worker.wait_caught_up()
    worker.wait_alerts_settled()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, f"worker exited with {worker.proc.returncode}"
        alerts = [json.loads(v) for _, v in asyncio.run(drain(bootstrap, "secstream.alerts"))]
        if INJECTED_IDS <= {e for a in alerts for e in a["evidence"]["event_ids"]}:
            return
        time.sleep(2)


def check_nothing_lost(bootstrap: str, data_dir: Path, ids: set[str]) -> dict[str, int]:
    """The checks of the module docstring, on the stopped worker's store and the topics; returns figures."""
    from encoders.hybrid import build_default_encoder
    from streams.store import CollectionSpec, open_store, point_id

    dlq = [json.loads(v) for _, v in asyncio.run(drain(bootstrap, "secstream.events.dlq"))]
    reasons = Counter(d["reason"] for d in dlq)
    assert reasons["processing_error"] == 0, [d for d in dlq if d["reason"] == "processing_error"][:2]
    got = {(d["raw_bytes"], d["reason"]) for d in dlq}
    for raw, reason in MALFORMED.items():
        assert (len(raw), reason) in got, f"{raw[:40]!r} not on the DLQ with reason {reason}: {sorted(got)}"

    alerts = [json.loads(v) for _, v in asyncio.run(drain(bootstrap, "secstream.alerts"))]
    # at-least-once: a batch re-delivered after a fault publishes its documents again under the same ids
    # (consumers keep the newest document per alert id); what must not happen is one situation under two ids
    ids_of: dict[tuple[str, str], set[str]] = {}
    for a in alerts:
        ids_of.setdefault((a["kind"], a["evidence"]["event_ids"][0]), set()).add(a["alert_id"])
    twice = {k: v for k, v in ids_of.items() if len(v) > 1}
    assert not twice, f"one alert under several ids: {list(twice.items())[:3]}"
    new = Counter(a["alert_id"] for a in alerts if not a.get("update"))
    alerted = {e for a in alerts for e in a["evidence"]["event_ids"]}
    assert INJECTED_IDS <= alerted, f"attack events not alerted: {INJECTED_IDS - alerted}"

    store = open_store(engine="edge", path=data_dir / "qdrant")
    try:
        store.ensure(CollectionSpec(name="events", dense_dim=build_default_encoder().dim))
        hits = store.retrieve("events", [point_id(i) for i in sorted(ids)])
        missing = ids - {h.payload["event_id"] for h in hits}
        assert not missing, f"{len(missing)} events not in the store: {sorted(missing)[:5]}"
        assert store.count("events") == len(ids)  # one point per distinct id: none missing, none twice
        alert_ids = {a["alert_id"] for a in alerts}
        assert store.attach("alerts") is not None
        stored = store.retrieve("alerts", [point_id(i) for i in sorted(alert_ids)])
        assert {h.payload["alert_id"] for h in stored} == alert_ids, "published alerts missing from the store"
    finally:
        store.close()
    return {"events": len(ids), "dlq": len(dlq), "alerts": len(new), "alert_documents": len(alerts),
            "alerts_resent": sum(n - 1 for n in new.values())}


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """The embedded broker (in memory) with the events topic of one partition: input order is scoring order."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        asyncio.run(create_topic(running.bootstrap, TOPIC, partitions=1))
        yield running


@needs_data
def test_store_outage_then_slow_store_loses_nothing(tmp_path: Path, broker: EmbeddedBroker) -> None:
    first, second, ids = stream()
    fault = tmp_path / "fault"
    worker = fault_worker(broker.bootstrap, tmp_path, "worker1")
    try:
        produce(broker.bootstrap, first)
        wait_stored(worker, 1000)
        set_fault(fault, "fail")  # the store goes down mid-stream
        produce(broker.bootstrap, second[:300])
        # any store call fails now (the events' upsert, or an entities batch's ensure that holds the pipeline
        # thread first: which one meets the outage first is a matter of timing)
        deadline = time.monotonic() + 120
        while worker.metric_sums("secstream_store_errors").get("secstream_store_errors_total", 0.0) < 3:
            assert time.monotonic() < deadline, f"no store errors counted: {worker.metric_sums('secstream_store')}"
            assert worker.proc.poll() is None, f"worker exited with {worker.proc.returncode}"
            time.sleep(0.5)
        assert metric(worker.port, "secstream_store_up") == 0
        time.sleep(1)  # the batch waits; nothing is dead-lettered, the worker stays up
        assert metric(worker.port, "secstream_dlq_total", 'reason="processing_error"') <= 0
        assert worker.proc.poll() is None
    finally:
        code = worker.stop()  # a stop while the store is down: the batch in flight is withheld
    assert code == 0, (tmp_path / "worker1.log").read_text()[-3000:]
    assert "could not finish" in (tmp_path / "worker1.log").read_text()

    set_fault(fault, "slow 0.3")  # back, but slow
    worker = fault_worker(broker.bootstrap, tmp_path, "worker2")
    try:
        produce(broker.bootstrap, second[300:])
        wait_stored(worker, 1300)  # the withheld batch and those produced during the outage, on the slow store
        set_fault(fault, "")
        wait_stored(worker, len(ids))
        wait_finished(worker, broker.bootstrap)
    finally:
        code = worker.stop()
    assert code == 0, (tmp_path / "worker2.log").read_text()[-3000:]
    figures = check_nothing_lost(broker.bootstrap, tmp_path / "data", ids)
    print("store outage:", figures)


@needs_data
def test_worker_stop_and_kill_mid_batch_lose_nothing(tmp_path: Path, broker: EmbeddedBroker) -> None:
    first, second, ids = stream()
    fault = tmp_path / "fault"
    # 1. a graceful stop with a slow batch in flight: it is finished, acked and committed
    worker = fault_worker(broker.bootstrap, tmp_path, "worker1")
    try:
        produce(broker.bootstrap, first[:600])
        wait_stored(worker, 600)
        set_fault(fault, "slow 1.5")
        produce(broker.bootstrap, first[600:])
        time.sleep(2.0)  # a batch is waiting on the slow store now
    finally:
        code = worker.stop()
    assert code == 0, (tmp_path / "worker1.log").read_text()[-3000:]
    # it committed what it finished, and nothing more: offsets 0..committed-1 are the events it stored (the
    # first 1,000 messages are valid events; the malformed ones follow). The next worker's repeated events
    # are no test of this: a worker's first records, fetched before Faust's seek to the committed offset,
    # are delivered again after it (streams/kafka/faust_consumer.py), recognised and not stored twice.
    committed = committed_offset(broker.bootstrap, TOPIC)
    assert committed is not None and min(committed, 1000) == stored_points(tmp_path / "data"), committed
    set_fault(fault, "")
    worker = fault_worker(broker.bootstrap, tmp_path, "worker2")
    try:
        wait_stored(worker, 1000)
        # 2. SIGKILL in the middle of a (slow) batch: no shutdown at all
        set_fault(fault, "slow 1.5")
        produce(broker.bootstrap, second[:400])
        time.sleep(2.0)
    finally:
        worker.kill()
    set_fault(fault, "")
    # the replacement starts at once, while the broker still holds the dead member: two rebalances (the
    # restart stall of issue 15 struck here; docs/operations.md "Restarts")
    worker = fault_worker(broker.bootstrap, tmp_path, "worker3")
    try:
        produce(broker.bootstrap, second[400:])
        wait_stored(worker, len(ids))
        wait_finished(worker, broker.bootstrap)
        redelivered = metric(worker.port, "secstream_events_total", 'result="ok"')
        # caught up by itself, not by the stall guard's rejoin (streams/worker/consumer_watch.py)
        assert worker.metric_sums("secstream_consumer_stall").get("secstream_consumer_stalls_total", 0) == 0
    finally:
        code = worker.stop()
    assert code == 0, (tmp_path / "worker3.log").read_text()[-3000:]
    figures = check_nothing_lost(broker.bootstrap, tmp_path / "data", ids)
    print("worker stop and kill:", figures, "events consumed after the kill:", redelivered)


@needs_data
@pytest.mark.timeout(600)  # its own waits add up past the suite's 300 s (240 s for the store alone)
def test_broker_killed_and_restarted_mid_stream_loses_nothing(tmp_path: Path, s3: dict[str, str]) -> None:
    first, second, ids = stream()
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log", storage="s3://tansu/", env=s3).start()
    try:
        asyncio.run(create_topic(broker.bootstrap, TOPIC, partitions=1))
        # on S3 storage the broker starved the step topics of a consumer behind it until the fetch wait grew
        # (streams/kafka/fetch_wait.py): no partition may stall for want of records (no `no_progress` or `hole`).
        # A batch waiting on sends lost with the broker is a `batch` stall the guard cancels and re-delivers
        # (docs/operations.md "The liveness guard"; 1 run in 5 of the fault loop, 2026-12-07)
        worker = WorkerProc(broker.bootstrap, tmp_path / "data", tmp_path / "worker.log")
        try:
            produce(broker.bootstrap, first)
            wait_stored(worker, 1000)
            producer = Producer(broker.bootstrap, second, rate=400)
            producer.start()
            while producer.acked < 400:
                assert producer.is_alive(), producer.error
                time.sleep(0.1)
            broker.kill()  # mid-stream: SIGKILL, no shutdown
            time.sleep(3)
            assert worker.proc.poll() is None, "the worker exited while the broker was down"
            broker = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log", storage="s3://tansu/",
                                    env=s3).start()
            producer.join(120)
            assert producer.acked == len(second), producer.error
            wait_stored(worker, len(ids))
            wait_finished(worker, broker.bootstrap)
            starved = [line for line in urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5)
                       .read().decode().splitlines() if line.startswith("secstream_consumer_stalls_total{")
                       and 'reason="batch"' not in line and not line.endswith(" 0.0")]
            assert not starved, (starved, (tmp_path / "worker.log").read_text()[-3000:])
        finally:
            code = worker.stop()
        assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]
        figures = check_nothing_lost(broker.bootstrap, tmp_path / "data", ids)
        print("broker kill:", figures, "producer retries:", producer.retries)
    finally:
        broker.stop()
