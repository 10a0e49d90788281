"""Helpers of the integration tests that run a worker process against the embedded broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Self

from aiokafka import AIOKafkaConsumer

from streams.kafka.embedded_broker import free_port


def metric(port: int, name: str, labels: str = "") -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return -1.0
    sel = rf"\{{{re.escape(labels)}\}}" if labels else ""
    m = re.search(rf"^{re.escape(name)}{sel} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else -1.0


# The year the OpenSSH sample's syslog dates are read with. Left to the adapter, the year is the latest
# in which "Dec 10" is not in the future (2025 until 2026-12-10): the INJECTED events below, dated a year
# later, moved the baseline's clock past its 30-day TTL and expired every exemplar, so the second one,
# when it came in a batch of its own, was scored against nothing ("alert without neighbours").
SAMPLE_YEAR = 2026

# Unmistakable valid events appended after a sample stream (an hour after the OpenSSH sample read with
# SAMPLE_YEAR): a process and a port this stream has never had, on a source it has never seen. They must alert.
INJECTED = [
    json.dumps({"event_id": f"inj-{i}", "time": f"2026-12-10T12:00:0{i}Z", "source": "sysmon",
                "event_type": "process_start", "host": "ws-07", "user": "mallory",
                "process": f"C:\\Tools\\{name}", "dst_port": 4444,
                "message": f"Process Create: Image: C:\\Tools\\{name} CommandLine: {name} {args}"}).encode()
    for i, (name, args) in enumerate([("mimikatz.exe", "sekurlsa::logonpasswords"),
                                      ("procdump.exe", "-ma lsass.exe out.dmp")])
]
INJECTED_IDS = {f"inj-{i}" for i in range(len(INJECTED))}


class WorkerProc:
    def __init__(self, bootstrap: str, data_dir: Path, log_path: Path, argv: list[str] | None = None,
                 **env_extra: str) -> None:
        self.port = free_port()
        env = {**os.environ, "SECSTREAM_KAFKA_BOOTSTRAP": bootstrap, "SECSTREAM_DATA_DIR": str(data_dir),
               "SECSTREAM_PRINT_ALERTS": "false", "SECSTREAM_METRICS_PORT": str(self.port),
               "SECSTREAM_METRICS_HOST": "127.0.0.1",
               "SECSTREAM_LOG_LEVEL": os.environ.get("TEST_WORKER_LOG_LEVEL", "warning"),  # info, debug: to diagnose
               # one partition unless asked: the worker consumes in input order, so events
               # produced last are scored last whatever their key
               "SECSTREAM_TOPIC_PARTITIONS": "1", "HF_HUB_OFFLINE": "1",
               "SECSTREAM_STORE_COUNT_INTERVAL_S": "1",  # wait_metric on secstream_store_points: a fresh count
               **env_extra}
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv or [sys.executable, "-m", "streams.cli.main", "run"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def processed(self) -> float:
        ok = metric(self.port, "secstream_events_total", 'result="ok"')
        bad = metric(self.port, "secstream_events_total", 'result="invalid"')
        return ok + bad if ok >= 0 and bad >= 0 else -1.0

    def wait_processed(self, n: int, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited with {self.proc.returncode}"
            if self.processed() >= n:
                return
            time.sleep(0.5)
        self.proc.send_signal(signal.SIGUSR1)  # the worker dumps its stacks to its log: say where it hangs
        time.sleep(2)
        raise AssertionError(f"worker processed {self.processed()} of {n} messages in {timeout:.0f}s")

    def wait_metric(self, name: str, at_least: float, timeout: float = 120.0, labels: str = "") -> float:
        """Poll /metrics until ``name`` reaches ``at_least``; returns the value."""
        deadline = time.monotonic() + timeout
        value = -1.0
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited with {self.proc.returncode}"
            value = metric(self.port, name, labels)
            if value >= at_least:
                return value
            time.sleep(0.5)
        raise AssertionError(f"{name} stayed at {value} (< {at_least}) for {timeout:.0f}s")

    def metric_sums(self, prefix: str) -> dict[str, float]:
        """Every ``prefix*`` metric family's total over its labels (empty when /metrics is not up)."""
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2).read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for name, value in re.findall(rf"^({re.escape(prefix)}\w*?)(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text,
                                      re.MULTILINE):
            out[name] = out.get(name, 0.0) + float(value)
        return out

    def wait_alerts_settled(self, timeout: float = 120.0) -> dict[str, float]:
        """Wait until the alerts agent has handled every alert raised so far (new + folded + suppressed ==
        raised): alerts reach the alerts topic one hop after the events that raised them. Returns the
        ``secstream_alert*`` sums."""
        deadline = time.monotonic() + timeout
        sums: dict[str, float] = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited with {self.proc.returncode}"
            sums = self.metric_sums("secstream_alert")
            raised = sums.get("secstream_alerts_raised_total", 0.0)
            handled = sums.get("secstream_alerts_total", 0.0) + sums.get("secstream_alerts_folded_total", 0.0) \
                + sums.get("secstream_alerts_suppressed_total", 0.0)
            if sums and handled >= raised:
                return sums
            time.sleep(0.5)
        raise AssertionError(f"alerts agent did not catch up: {sums}")

    def wait_caught_up(self, topic: str = "secstream.events", partitions: int = 1, timeout: float = 120.0) -> None:
        """Until the worker's lag gauge (end offset minus committed offset, refreshed every few seconds) is 0 on
        every partition of ``topic``: every message is finished and committed, re-deliveries included. Stores
        and alerts can be complete while a re-delivered batch is still being worked through; a stop then cuts
        it short (its DLQ records were missing in a broker-kill run, 2026-12-07)."""
        deadline = time.monotonic() + timeout
        values: list[float] = []
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited with {self.proc.returncode}"
            values = [metric(self.port, "secstream_consumer_lag_messages", f'partition="{p}",topic="{topic}"')
                      for p in range(partitions)]
            if all(v == 0.0 for v in values):
                return
            time.sleep(0.5)
        raise AssertionError(f"{topic} lag stayed at {values} for {timeout:.0f}s")

    def kill(self) -> None:
        """SIGKILL: no shutdown at all (a crash, an OOM kill)."""
        self.proc.kill()
        self.proc.wait(30)
        self.log.close()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)  # the worker dumps its threads' stacks to its log
            time.sleep(2)
            raise
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()
        return code


def stored_points(data_dir: Path, collection: str = "events") -> int:
    """Points in a stopped worker's embedded store (the edge engine locks its files while a worker runs)."""
    from encoders.hybrid import build_default_encoder
    from streams.store import CollectionSpec, open_store

    store = open_store(engine="edge", path=data_dir / "qdrant")
    try:
        store.ensure(CollectionSpec(name=collection, dense_dim=build_default_encoder().dim))
        return store.count(collection)
    finally:
        store.close()


def committed_offset(bootstrap: str, topic: str, partition: int = 0, group: str = "secstream") -> int | None:
    """The group's committed offset of ``topic``/``partition`` as the broker answers an OffsetFetch, asked by a
    consumer that carries the group id and never joins the group."""
    from aiokafka import TopicPartition

    async def read() -> int | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            return await consumer.committed(TopicPartition(topic, partition))
        finally:
            await consumer.stop()

    return asyncio.run(read())


def rewind_group(bootstrap: str, offsets: dict[tuple[str, int], int], group: str = "secstream",
                 timeout_s: float = 60.0) -> None:
    """Commit ``offsets`` ((topic, partition) → offset) for ``group`` while no worker runs: its next worker reads
    again from there, as after a crash that lost the commits (forces a re-delivery). The committer joins the
    group as its only member (Tansu refuses a commit from a consumer outside the group) and leaves."""
    from aiokafka import TopicPartition
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.structs import OffsetAndMetadata

    class AsFaust(RoundRobinPartitionAssignor):
        name = "faust"  # the group's protocol: a stopped worker's member may linger in Tansu's group

    async def commit() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                    partition_assignment_strategy=(AsFaust,))
        await consumer.start()
        try:
            consumer.subscribe(sorted({t for t, _ in offsets}))
            wanted = {TopicPartition(t, p) for t, p in offsets}
            deadline = time.monotonic() + timeout_s
            while not wanted <= consumer.assignment():
                assert time.monotonic() < deadline, f"never assigned {sorted(wanted)}: {consumer.assignment()}"
                await consumer.getmany(timeout_ms=200)  # polls: joins the group
            await consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), o in offsets.items()})
        finally:
            await consumer.stop()

    asyncio.run(commit())


async def drain(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[tuple[bytes | None, bytes]]:
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


class TlsProxy:
    """A TLS-terminating TCP proxy on a loopback port in front of a plaintext broker, served by a
    thread of its own: Tansu does not serve TLS itself (streams/kafka/embedded_broker.py), so Kafka clients' TLS is
    tested against this, with the broker advertising the proxy's address. ``client_ca``: require
    client certificates it signed (mutual TLS)."""

    def __init__(self, target: str, cert: Path, key: Path, client_ca: Path | None = None,
                 port: int | None = None) -> None:
        host, target_port = target.rsplit(":", 1)
        self.target = (host, int(target_port))
        self.port = port or free_port()
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        if client_ca is not None:
            self.ctx.load_verify_locations(client_ca)
            self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tls-proxy", daemon=True)
        self.server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.thread.start()
        start = asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.ctx)
        self.server = asyncio.run_coroutine_threadsafe(start, self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()
