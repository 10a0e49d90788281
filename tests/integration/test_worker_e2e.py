"""End to end on real components: the embedded Tansu broker over loopback, the worker
as its own process (`secstream run`), the real Qdrant edge engine on disk.

Produces the OpenSSH sample plus malformed messages and checks: schema-valid
alerts on the alerts topic, every malformed message on the DLQ with its reason,
exactly one store point per valid event, and that producing the same events
again (after a worker restart) adds no points.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from schemas.errors import InvalidEvent
from schemas.models import decode_event, validate_alert
from streams.adapters import read_records
from streams.broker import EmbeddedBroker, free_port
from streams.tools import produce_values

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
OPENSSH = DATA / "loghub" / "OpenSSH_2k.log"

MALFORMED: dict[bytes, str] = {
    b"this is not json": "not_json",
    b'{"message": "no time here"}': "missing_field",
    b'{"time": "2026-01-01T00:00:00Z"}': "missing_field",
    b'{"time": "2026-01-01T00:00:00Z", "message": 42}': "wrong_type",
    b'{"time": "2026-01-01T00:00:00Z", "message": "x", "src_ip": "999.1.1.1"}': "invalid_value",
    b'{"time": "2026-01-01T00:00:00Z", "message": "x", "dst_port": 70000}': "invalid_value",
    b'["an", "array"]': "not_object",
    b"\xff\xfe\x00garbage\x80\x81": "not_utf8",
    b'{"time": "2026-01-01T00:00:00Z", "message": "' + b"A" * (10 * 1024 * 1024) + b'"}': "too_large",
}


# Unmistakable valid events appended after the sshd sample: a process and a port this
# stream has never had, on a source it has never seen. They must alert.
INJECTED = [
    json.dumps({"event_id": f"inj-{i}", "time": f"2026-12-10T12:00:0{i}Z", "source": "sysmon",
                "event_type": "process_start", "host": "ws-07", "user": "mallory",
                "process": f"C:\\Tools\\{name}", "dst_port": 4444,
                "message": f"Process Create: Image: C:\\Tools\\{name} CommandLine: {name} {args}"}).encode()
    for i, (name, args) in enumerate([("mimikatz.exe", "sekurlsa::logonpasswords"),
                                      ("procdump.exe", "-ma lsass.exe out.dmp")])
]
INJECTED_IDS = {f"inj-{i}" for i in range(len(INJECTED))}


def _metric(port: int, name: str, labels: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return -1.0
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else -1.0


class WorkerProc:
    def __init__(self, bootstrap: str, data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "SECSTREAM_KAFKA_BOOTSTRAP": bootstrap, "SECSTREAM_DATA_DIR": str(data_dir),
               "SECSTREAM_PRINT_ALERTS": "false", "SECSTREAM_METRICS_PORT": str(self.port),
               "SECSTREAM_METRICS_HOST": "127.0.0.1", "SECSTREAM_LOG_LEVEL": "warning",
               # one partition: the worker consumes in input order, so the injected events
               # come after the warm-up whatever their key
               "SECSTREAM_TOPIC_PARTITIONS": "1", "HF_HUB_OFFLINE": "1"}
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "run"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def processed(self) -> float:
        ok = _metric(self.port, "secstream_events_total", 'result="ok"')
        bad = _metric(self.port, "secstream_events_total", 'result="invalid"')
        return ok + bad if ok >= 0 and bad >= 0 else -1.0

    def wait_processed(self, n: int, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited with {self.proc.returncode}"
            if self.processed() >= n:
                return
            time.sleep(0.5)
        raise AssertionError(f"worker processed {self.processed()} of {n} messages in {timeout:.0f}s")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(120)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()
        return code


async def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create ``name`` up front: a producer racing the worker would otherwise auto-create it
    with the broker's default partition count, and events keyed by entity would then be
    consumed out of input order."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def _drain(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[tuple[bytes | None, bytes]]:
    """Everything in ``topic`` now: read up to each partition's end offset (no idle guess)."""
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=32 * 1024 * 1024)
    await consumer.start()
    out = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout_s
        while not partitions and time.monotonic() < deadline:
            await consumer.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
            await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any(pos < ends[tp] for tp, pos in zip(tps, [await consumer.position(tp) for tp in tps])):
            assert time.monotonic() < deadline, f"could not read {topic} to its end in {timeout_s:.0f}s"
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                out.extend((r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return out


def _points(data_dir: Path) -> int:
    """Points in the worker's embedded store, opened after the worker has exited."""
    from encoders.hybrid import build_default_encoder
    from streams.store import CollectionSpec, open_store

    store = open_store(engine="edge", path=data_dir / "qdrant")
    try:
        store.ensure(CollectionSpec(name="events", dense_dim=build_default_encoder().dim))
        return store.count("events")
    finally:
        store.close()


@pytest.mark.skipif(not OPENSSH.exists(), reason=f"sample data not found at {OPENSSH} (needs ../shared/data)")
def test_worker_end_to_end(tmp_path: Path) -> None:
    valid = [r.value for r in read_records(OPENSSH, "sshd") if r.value is not None]
    assert len(valid) == 2000
    distinct_ids = {decode_event(v).event_id for v in valid + INJECTED}
    for raw, reason in MALFORMED.items():
        with pytest.raises(InvalidEvent) as err:
            decode_event(raw)
        assert err.value.reason == reason
    messages = valid[:1000] + list(MALFORMED) + valid[1000:] + INJECTED
    data_dir = tmp_path / "data"

    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        asyncio.run(_create_topic(broker.bootstrap, "secstream.events", partitions=1))
        worker = WorkerProc(broker.bootstrap, data_dir, tmp_path / "worker.log")
        try:
            sent = asyncio.run(produce_values(broker.bootstrap, "secstream.events", messages))
            assert sent == len(messages)
            worker.wait_processed(len(messages))
        finally:
            code = worker.stop()
        assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]

        alerts = [json.loads(v) for _, v in asyncio.run(_drain(broker.bootstrap, "secstream.alerts"))]
        assert alerts, "no alerts from the OpenSSH sample"
        for alert in alerts:
            validate_alert(alert)
            assert alert["explanation"]["neighbours"], "alert without neighbours"
            assert abs(sum(alert["explanation"]["components"].values()) - 1.0) < 1e-3
        assert len({a["alert_id"] for a in alerts}) == len(alerts)
        alerted = {a["evidence"]["event_ids"][0] for a in alerts}
        assert INJECTED_IDS <= alerted, f"injected attack events not alerted: {INJECTED_IDS - alerted}"

        dlq = [json.loads(v) for _, v in asyncio.run(_drain(broker.bootstrap, "secstream.events.dlq"))]
        assert len(dlq) == len(MALFORMED)
        got = {d["raw_bytes"]: d["reason"] for d in dlq}
        for raw, reason in MALFORMED.items():
            assert got.get(len(raw)) == reason, f"{raw[:40]!r}: DLQ says {got.get(len(raw))}, want {reason}"
            assert all(d["detail"] for d in dlq)

        assert _points(data_dir) == len(distinct_ids)

        # the same events again, through a restarted worker: no new points
        worker = WorkerProc(broker.bootstrap, data_dir, tmp_path / "worker2.log")
        try:
            asyncio.run(produce_values(broker.bootstrap, "secstream.events", valid + INJECTED))
            worker.wait_processed(len(valid) + len(INJECTED))
        finally:
            assert worker.stop() == 0
        assert _points(data_dir) == len(distinct_ids)
