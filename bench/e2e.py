"""Load benchmark: a sustained stream through the embedded broker and a worker process, at several rates.

    python -m bench.e2e [--rates 100,250,500,1000,2000] [--seconds 20] [--json]   (or `secstream bench e2e`)
    python -m bench.e2e --overload 3 --seconds 60                                   (`secstream bench backpressure`)

The worker is ``secstream run`` as deployed (its own process, 4 partitions, the embedded Qdrant
engine, sessions and entities on); the producer (this process, sharing the machine) sends the bundled
sample stream with fresh event ids and current times (nothing is a re-delivery) at a fixed rate per
step, keyed by entity as ``secstream produce`` does, plus ``--canaries`` per second never-seen process
starts (each on its own user and host); recurring at that rate they are soon a learned behaviour (the
robust baseline promotes a pattern seen 5 times), so most latency samples are the sample's own attacks. Event→alert latency: for every event sent
in the step that appears in an alert document (new, or an update folding it in), the time from its
send to that document's arrival on the alerts topic: the whole path (events agent, alert-steps
repartition, dedup agent, alerts topic).

Per step: offered and achieved events/s (the worker's ``secstream_events_total``, from the step's first send
until it has consumed all of the step's events, at most 30 s after the last send), the backlog when the
sending stops (sent minus consumed) and the worker's lag gauge then (it lags behind: it reads the highwater
of the last fetch, and a paused consumer does not fetch), events alerted, p50/p99 event→alert latency, the
worker's RSS, and the workers' CPU time (user + system, ``/proc``) over the step per event consumed (µs). A
step is *sustained* when the worker consumed the step within a second of its last send; the summary names
the highest sustained rate whose p99 is under 250 ms (none, if no rate qualifies).

``--workers N``: N worker processes in one consumer group share the 4 partitions (how a deployment uses
a machine's cores: one worker is one core, the GIL); achieved rates and lag are their sums, RSS is the
first one's. Each keeps its own embedded store (the engine is one process's; several workers in
production share a Qdrant server).

``--overload F``: backpressure. One step at F times the highest rate sustained in a short probe,
for ``--seconds``; the worker's RSS is sampled every second: memory must stay flat (bounded
queues) while the consumer lag grows. Reports RSS first/last/max over the step and the lag.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from bench.memory import cpu_seconds, rss_mib
from streams.cli.terminal import table

TOPIC = "secstream.events"


def metric_sum(port: int, name: str) -> float:
    """The sum of a metric family over its labels on a worker's /metrics; -1 when unreachable."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and (line[len(name)] in " {"))


def metric_total(ports: Sequence[int], name: str) -> float:
    """:func:`metric_sum` over several workers (an unreachable one counts 0)."""
    return sum(max(0.0, metric_sum(port, name)) for port in ports)


def canary(i: int, rng: random.Random, run: str) -> tuple[str, bytes]:
    tool = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(9))
    eid = f"canary-{run}-{i}"
    doc = {"event_id": eid, "time": _now_iso(), "source": "sysmon", "event_type": "process_start",
           "host": f"ws-{rng.randrange(10**6):06d}", "user": f"svc-{tool}", "dst_port": rng.randrange(40000, 65000),
           "process": f"C:\\Users\\Public\\{tool}.exe",
           "message": f"Process Create: Image: C:\\Users\\Public\\{tool}.exe CommandLine: {tool}.exe -nop -w hidden "
                      f"-enc {rng.getrandbits(96):024x} connect {rng.randrange(1, 223)}.{rng.randrange(256)}."
                      f"{rng.randrange(256)}.{rng.randrange(1, 255)}"}
    return eid, json.dumps(doc).encode()


def _now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class Stream:
    """Sample events with fresh ids and current times, endlessly."""

    def __init__(self, run: str) -> None:
        from streams.sample import iter_sample

        self.docs = [json.loads(v) for v in iter_sample()]
        self.run, self.i = run, 0

    def next(self) -> tuple[bytes | None, bytes, str]:
        from streams.kafka.partition_keys import entity_key

        doc = dict(self.docs[self.i % len(self.docs)])
        doc["event_id"] = eid = f"e2e-{self.run}-{self.i}"
        doc["time"] = _now_iso()
        self.i += 1
        return entity_key(doc), json.dumps(doc).encode(), eid


class Load:
    """Producer at a fixed rate with canaries, and a reader of the alerts topic (its own thread)."""

    def __init__(self, bootstrap: str, run: str, canaries_per_s: float) -> None:
        self.bootstrap, self.run, self.canaries_per_s = bootstrap, run, canaries_per_s
        self.sent: dict[str, float] = {}
        self.latency: dict[str, float] = {}
        self.stream = Stream(run)
        self.rng = random.Random(7)
        self.n_canary = 0
        self.total = 0  # messages sent since the start, warm-up included
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._reader = asyncio.run_coroutine_threadsafe(self._read_alerts(), self.loop)

    async def _read_alerts(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer("secstream.alerts", bootstrap_servers=self.bootstrap, group_id=None,
                                    auto_offset_reset="earliest", metadata_max_age_ms=2000,
                                    fetch_max_wait_ms=10)  # Tansu holds a fetch its whole wait
        await consumer.start()
        try:
            async for record in consumer:
                now = time.time()
                try:
                    alert = json.loads(record.value)
                except ValueError:
                    continue
                for eid in (alert.get("evidence") or {}).get("event_ids") or []:
                    if eid in self.sent and eid not in self.latency:
                        self.latency[eid] = now - self.sent[eid]
        finally:
            await consumer.stop()

    def produce(self, rate: float, seconds: float) -> int:
        return asyncio.run_coroutine_threadsafe(self._produce(rate, seconds), self.loop).result()

    async def _produce(self, rate: float, seconds: float) -> int:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks=1)
        await producer.start()
        sent, started = 0, time.monotonic()
        every = max(1, round(rate / self.canaries_per_s)) if self.canaries_per_s > 0 else 0
        try:
            while (elapsed := time.monotonic() - started) < seconds:
                due = int(rate * elapsed) - sent
                for _ in range(max(0, due)):
                    if every and sent % every == every - 1:
                        eid, value = canary(self.n_canary, self.rng, self.run)
                        self.n_canary += 1
                        self.sent[eid] = time.time()
                        await producer.send(TOPIC, value, key=eid.encode())
                    else:
                        key, value, eid = self.stream.next()
                        self.sent[eid] = time.time()
                        await producer.send(TOPIC, value, key=key)
                    sent += 1
                    self.total += 1
                await asyncio.sleep(0.01)
            await producer.flush()
        finally:
            await producer.stop()
        return sent

    def close(self) -> None:
        """Stop the alerts reader (its consumer closed), then the loop and its thread."""
        async def stop_reader() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
                    try:
                        await task
                    except BaseException:  # noqa: BLE001, S110 - cancelled as asked
                        pass

        try:
            asyncio.run_coroutine_threadsafe(stop_reader(), self.loop).result(15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(15)
            self.loop.close()


#: capacities that fill within a short probe (a few thousand events), so that RSS growth after it is
#: not state reaching its caps but what is buffered: the backpressure bench's worker
SMALL_STATE = {"SECSTREAM_EXEMPLAR_CAPACITY": "2000", "SECSTREAM_TEXT_CACHE_SIZE": "2000",
               "SECSTREAM_RECENT_EVENT_IDS": "5000", "SECSTREAM_ENTITY_MAX": "300",
               "SECSTREAM_BASELINE_QUARANTINE": "500", "SECSTREAM_SESSION_MAX_EVENTS": "200"}


def rss_slope(rss: list[float]) -> float:
    """Least-squares slope of RSS samples taken a second apart, over their second half, in MiB/min."""
    half = rss[len(rss) // 2:]
    n = len(half)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(half) / n
    return 60 * sum((i - mx) * (y - my) for i, y in enumerate(half)) / sum((i - mx) ** 2 for i in range(n))


def _pct(values: list[float], q: float) -> float:
    xs = sorted(values)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run_step(load: Load, port: int | Sequence[int], pid: int, rate: float, seconds: float, sample_rss: bool = False,
             drain: bool = True, cpu_pids: Sequence[int] = ()) -> dict[str, Any]:
    """One step of the load at ``rate``; ``port``: the /metrics port of each worker (their sums are read);
    RSS is sampled from ``pid``; the CPU time of ``cpu_pids`` (default ``pid``) over the step, per event
    consumed, is ``cpu_us_per_event``."""
    ports = [port] if isinstance(port, int) else list(port)
    cpu_of = list(cpu_pids) or [pid]
    cpu_before = sum(cpu_seconds(p) for p in cpu_of)
    before = metric_total(ports, "secstream_events_total")
    canaries_before = set(load.sent)  # every event sent before this step
    rss: list[float] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(1.0):
            rss.append(rss_mib(pid))

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    t0 = time.monotonic()
    sent = load.produce(rate, seconds)
    produced = time.monotonic() - t0
    lag = metric_total(ports, "secstream_consumer_lag_messages")
    total_consumed = metric_total(ports, "secstream_events_total")
    backlog = load.total - total_consumed  # what the producer has sent and the worker not yet consumed
    consumed = total_consumed - before
    while drain and consumed < sent and time.monotonic() - t0 < produced + 30:  # the step's tail, up to 30 s
        time.sleep(0.2)
        consumed = metric_total(ports, "secstream_events_total") - before
    elapsed = time.monotonic() - t0  # from the first event sent to the last consumed
    cpu = sum(cpu_seconds(p) for p in cpu_of) - cpu_before
    time.sleep(2.0)  # alerts of the step's last events
    stop.set()
    mine = [e for e in load.sent if e not in canaries_before]
    lat = [load.latency[e] for e in mine if e in load.latency]
    canaries = [e for e in mine if e.startswith("canary-")]
    achieved = consumed / elapsed
    return {"rate": rate, "sent": sent, "achieved": round(achieved, 1), "backlog_end": int(backlog),
            "lag_end": int(max(lag, 0)),
            "canaries": len(canaries), "canaries_alerted": sum(e in load.latency for e in canaries),
            "alerted": len(lat), "p50_ms": round(_pct(lat, 0.5) * 1000, 1) if lat else None,
            "p99_ms": round(_pct(lat, 0.99) * 1000, 1) if lat else None, "rss_first": round(rss[0], 1) if rss else -1,
            "rss_last": round(rss[-1], 1) if rss else -1, "rss_max": round(max(rss), 1) if rss else -1,
            "cpu_us_per_event": round(cpu / consumed * 1e6) if consumed > 0 and cpu >= 0 else None,
            "sustained": achieved >= 0.95 * sent / produced and elapsed - produced < 1.0, **({"rss": rss} if sample_rss else {})}


class Rig:
    """Embedded broker + worker processes (one consumer group; + the load), torn down on exit.

    Several workers share the partitions, each with its own data directory: the embedded Qdrant engine
    is one process's (a deployment of several workers shares a Qdrant server instead)."""

    def __init__(self, canaries_per_s: float, batch_size: int | None, env_extra: dict[str, str] | None = None,
                 workers: int = 1) -> None:
        from streams.kafka.embedded_broker import EmbeddedBroker, create_topic, free_port

        self.tmp = Path(tempfile.mkdtemp(prefix="secstream-e2e-"))
        self.broker = EmbeddedBroker(log_path=self.tmp / "tansu.log").start()
        self.ports = [free_port() for _ in range(workers)]
        self.port = self.ports[0]
        asyncio.run(create_topic(self.broker.bootstrap, TOPIC, 4))
        # the workers' store can be made to fail (bench/fault_store.py: a file switches it)
        self.fault = self.tmp / "fault"
        self.logs, self.workers = [], []
        for i, port in enumerate(self.ports):
            data = self.tmp if i == 0 else self.tmp / f"worker{i + 1}"
            env = {**os.environ, "SECSTREAM_KAFKA_BOOTSTRAP": self.broker.bootstrap, "SECSTREAM_DATA_DIR": str(data),
                   "SECSTREAM_PRINT_ALERTS": "false", "SECSTREAM_METRICS_PORT": str(port),
                   "SECSTREAM_METRICS_HOST": "127.0.0.1", "SECSTREAM_LOG_LEVEL": "warning", "HF_HUB_OFFLINE": "1",
                   "SECSTREAM_TEST_FAULT_FILE": str(self.fault)}
            if batch_size:
                env["SECSTREAM_BATCH_SIZE"] = str(batch_size)
            env.update(env_extra or {})
            log = open(self.tmp / f"worker{'' if i == 0 else i + 1}.log", "wb")  # noqa: SIM115 - closed in close()
            self.logs.append(log)
            self.workers.append(subprocess.Popen([sys.executable, "-m", "bench.fault_store"], env=env, stdout=log,
                                                 stderr=subprocess.STDOUT))
        self.worker = self.workers[0]
        self.pids = [w.pid for w in self.workers]
        self.canaries_per_s = canaries_per_s
        self.load: Load | None = None

    def close(self) -> None:
        if self.load is not None:
            self.load.close()
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
        for log in self.logs:
            log.close()
        self.broker.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Every worker ready (it holds partitions of the events topic: the group has settled)."""
        deadline = time.monotonic() + timeout
        waiting = list(self.ports)
        while time.monotonic() < deadline:
            for worker in self.workers:
                if worker.poll() is not None:
                    raise SystemExit(f"worker exited ({worker.returncode}); see {self.tmp}/worker*.log")
            for port in list(waiting):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                        if resp.status == 200:  # output topics exist now: the alerts reader can subscribe
                            waiting.remove(port)
                except OSError:
                    pass
            if not waiting:
                self.load = Load(self.broker.bootstrap, str(os.getpid()), self.canaries_per_s)
                return
            time.sleep(0.5)
        raise SystemExit(f"worker not ready in {timeout:.0f}s; see {self.tmp}/worker*.log")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="secstream bench e2e", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="100,250,500,1000,2000", help="events/s per step, comma-separated")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each step")
    ap.add_argument("--canaries", type=float, default=4.0, help="canary anomalies per second")
    ap.add_argument("--warmup-seconds", type=float, default=10.0,
                    help="length of the 300 ev/s warm-up before the steps (model loaded, detector past warm-up)")
    ap.add_argument("--batch-size", type=int, default=None, help="SECSTREAM_BATCH_SIZE of the worker")
    ap.add_argument("--overload", type=float, default=0.0,
                    help="backpressure: one step at this many times the highest sustained rate of a probe")
    ap.add_argument("--overload-seconds", type=float, default=60.0, help="length of the overload step")
    ap.add_argument("--stall-seconds", type=float, default=0.0,
                    help="before the overload: this long at the overload rate with the store failing (nothing "
                         "processed: RSS that grows is buffering)")
    ap.add_argument("--small-state", action="store_true",
                    help="small caches and baselines, full within the probe: RSS that grows after it is queues")
    ap.add_argument("--workers", type=int, default=1,
                    help="worker processes in the group (they share the 4 partitions; each has its own store)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    if not 1 <= args.workers <= 4:
        ap.error(f"--workers must be 1 to 4 (the events topic has 4 partitions); got {args.workers}")
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        ap.error(f"--rates takes numbers separated by commas, e.g. 250,500,1000; got {args.rates!r}")
    if not rates or min(rates) <= 0 or args.seconds <= 0 or args.warmup_seconds < 0:
        ap.error("--rates must be positive numbers, --seconds > 0 and --warmup-seconds >= 0")
    rig = Rig(args.canaries, args.batch_size, SMALL_STATE if args.small_state else None, workers=args.workers)
    try:
        rig.wait_ready()
        assert rig.load is not None
        if args.warmup_seconds:  # model loaded, detector past warm-up
            run_step(rig.load, rig.ports, rig.worker.pid, 300, args.warmup_seconds, cpu_pids=rig.pids)
        steps = [run_step(rig.load, rig.ports, rig.worker.pid, r, args.seconds, cpu_pids=rig.pids) for r in rates]
        if args.overload:
            best = max([s["rate"] for s in steps if s["sustained"]] or [rates[0]])
            if args.stall_seconds:
                rig.fault.write_text("fail")
                stalled = run_step(rig.load, rig.ports, rig.worker.pid, best * args.overload, args.stall_seconds,
                                   sample_rss=True, drain=False, cpu_pids=rig.pids)
                rig.fault.write_text("")
                rss = stalled.pop("rss")
                steps.append({**stalled, "overload": True, "store": "failing",
                              "rss_slope_mib_per_min_2nd_half": round(rss_slope(rss), 1),
                              "rss_mid": round(rss[len(rss) // 2], 1) if rss else -1})
            over = run_step(rig.load, rig.ports, rig.worker.pid, best * args.overload, args.overload_seconds,
                            sample_rss=True, cpu_pids=rig.pids)
            rss = over.pop("rss")
            steps.append({**over, "overload": True, "rss_slope_mib_per_min_2nd_half": round(rss_slope(rss), 1),
                          "rss_mid": round(rss[len(rss) // 2], 1) if rss else -1})
    finally:
        rig.close()
    good = [s["rate"] for s in steps if s["sustained"] and s["p99_ms"] is not None and s["p99_ms"] < 250
            and not s.get("overload")]
    summary = {"max_sustained_p99_under_250ms": max(good) if good else None, "steps": steps}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    cols = ["rate", "sent", "achieved", "backlog_end", "lag_end", "canaries", "canaries_alerted", "alerted", "p50_ms",
            "p99_ms", "rss_first", "rss_last", "rss_max", "cpu_us_per_event", "sustained"]
    print(table([["-" if s[c] is None else s[c] for c in cols] for s in steps], cols))
    print(f"highest rate sustained with p99 event->alert < 250 ms: {summary['max_sustained_p99_under_250ms']}")
    for s in steps:
        if s.get("overload"):
            print(f"overload at {s['rate']:.0f} events/s{' (store failing)' if s.get('store') else ''}: "
                  f"backlog {s['backlog_end']} messages when sending stopped; RSS "
                  f"{s['rss_first']} -> {s['rss_mid']} (middle) -> {s['rss_last']} MiB, second-half slope "
                  f"{s['rss_slope_mib_per_min_2nd_half']} MiB/min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
