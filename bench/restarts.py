"""Restart stress: a worker restarted many times under a steady stream must never stall or skip.

    python -m bench.restarts [--restarts 30] [--partitions 1,4] [--rate 80] [--seed 7] [--json]
    (or `secstream bench restarts ...`)

Per phase (one per ``--partitions`` value, each with its own embedded broker and data directory),
a producer thread sends fresh sample events (unique ids, keyed by entity as ``secstream produce``
does) at ``--rate`` per second for the whole phase, while worker processes (``secstream run``: the
embedded Qdrant engine, the session, entity and alert tables on) are started and stopped in turn.
Each restart, drawn from ``--seed``:

- the signal that ends the previous worker: SIGTERM (graceful) or SIGKILL (a crash, an OOM kill);
- whether the next worker starts at once (the dead member still in the group: two rebalances) or
  after the group's session timeout;
- how long the worker lives: until it has caught up, plus 0-6 s, or killed 1-4 s after start,
  in the middle of joining the group (a crash loop).

A worker *caught up* when the group's committed offset of every partition (as the broker answers
an OffsetFetch) reached what had been produced before it started. Once it processes its first
event, it **stalled** if a partition still behind had its committed offset frozen for
``--stall-s`` (90 s), or if it exited. It was **slow** if it processed nothing for ``--catch-up-s``
(300 s: start-up and table recovery, which grow with every restart since Tansu never compacts a
changelog) or had not caught up by then although its offsets moved. A stalled
worker's committed offsets, metrics and a stack dump (SIGUSR1) go to the phase's log folder, and it
is stopped like any other. After the last restart the producer stops, one more worker drains the
topic and stops gracefully, and the store is checked: every event produced is there exactly once
(one point per id, none missing, none extra).

The table has one row per phase: restarts (SIGTERM/SIGKILL, at once/after the session timeout),
stalls, slow restarts, catch-up time p50/max, events produced, stored, missing, extra, and, summed over the
workers, the guard's own ``secstream_consumer_stalls_total`` and rejoins, and the holes the watch repaired by a
seek before they became stalls (``secstream_consumer_holes_repaired_total``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.e2e import metric_sum
from streams.cli.terminal import table

TOPIC = "secstream.events"
GROUP = "secstream"


class SteadyProducer(threading.Thread):
    """Fresh sample events at ``rate``/s until stopped; remembers every id and each partition's next offset."""

    def __init__(self, bootstrap: str, rate: float, run: str) -> None:
        super().__init__(daemon=True)
        from bench.e2e import Stream

        self.bootstrap, self.rate = bootstrap, rate
        self.stream = Stream(run)
        self.ids: list[str] = []
        self.next_offset: dict[int, int] = {}  # partition -> last acked offset + 1
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.error = ""

    def produced(self) -> dict[int, int]:
        with self.lock:
            return dict(self.next_offset)

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # noqa: BLE001 - reported by the bench
            self.error = f"{type(exc).__name__}: {exc}"

    async def _run(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        sent, started = 0, time.monotonic()
        try:
            while not self.stopping.is_set():
                due = int(self.rate * (time.monotonic() - started)) - sent
                futures = []
                for _ in range(max(0, due)):
                    key, value, eid = self.stream.next()
                    futures.append((eid, await producer.send(TOPIC, value, key=key)))
                    sent += 1
                for eid, fut in futures:
                    meta = await fut
                    with self.lock:
                        self.ids.append(eid)
                        self.next_offset[meta.partition] = max(self.next_offset.get(meta.partition, 0),
                                                               meta.offset + 1)
                await asyncio.sleep(0.02)
        finally:
            await producer.stop()


class CommittedReader:
    """The group's committed offsets as the broker answers an OffsetFetch, from a consumer of its own thread
    that carries the group id but never joins the group (it subscribes to nothing). aiokafka's admin client
    cannot read Tansu's OffsetFetch answer; the consumer's request is the one Faust itself uses."""

    def __init__(self, bootstrap: str, partitions: int) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tps = [TopicPartition(TOPIC, p) for p in range(partitions)]

        async def start() -> Any:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
            await consumer.start()
            return consumer

        self.consumer = asyncio.run_coroutine_threadsafe(start(), self.loop).result(60)

    def read(self) -> dict[int, int]:
        async def read() -> dict[int, int]:
            out = {}
            for tp in self.tps:
                offset = await self.consumer.committed(tp)
                if offset is not None and offset >= 0:
                    out[tp.partition] = offset
            return out

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.consumer.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Phase:
    partitions: int
    restarts: list[dict[str, Any]] = field(default_factory=list)
    produced: int = 0
    stored: int = 0
    missing: int = 0
    extra: int = 0
    guard_stalls: float = 0.0
    guard_recoveries: float = 0.0
    holes_repaired: float = 0.0
    error: str = ""


#: ``--worker-tree``: the checkout whose code the workers run (None: this one); the bench itself, the broker
#: and the store check stay this checkout's, so two commits are compared by one harness
WORKER_TREE: Path | None = None


class WorkerRun:
    """One ``secstream run`` process of the stress."""

    def __init__(self, bootstrap: str, data_dir: Path, log_path: Path, partitions: int, env_extra: dict[str, str]) -> None:
        from streams.kafka.embedded_broker import free_port

        self.port = free_port()
        env = {**os.environ, "SECSTREAM_KAFKA_BOOTSTRAP": bootstrap, "SECSTREAM_DATA_DIR": str(data_dir),
               "SECSTREAM_PRINT_ALERTS": "false", "SECSTREAM_METRICS_PORT": str(self.port),
               "SECSTREAM_METRICS_HOST": "127.0.0.1", "SECSTREAM_LOG_LEVEL": "warning", "HF_HUB_OFFLINE": "1",
               "SECSTREAM_TOPIC_PARTITIONS": str(partitions), **env_extra}
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in end()
        tree = WORKER_TREE
        # a tree from before streams/ was split into folders starts its worker with `python -m streams.cli run`
        module = "streams.cli" if tree is not None and not (tree / "streams" / "cli" / "main.py").exists() \
            else "streams.cli.main"
        self.proc = subprocess.Popen([sys.executable, "-m", module, "run"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=tree)

    def guard(self) -> tuple[float, float, float]:
        """The watch's stalls, its rejoins, and the holes it repaired by a seek (0 where a worker has no such metric)."""
        return (max(0.0, metric_sum(self.port, "secstream_consumer_stalls_total")),
                max(0.0, metric_sum(self.port, "secstream_consumer_stall_recoveries_total")),
                max(0.0, metric_sum(self.port, "secstream_consumer_holes_repaired_total")))

    def end(self, sig: int) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            self.proc.kill()
            code = self.proc.wait(30)
        self.log.close()
        return code


def watch_catch_up(worker: WorkerRun, reader: CommittedReader, target: dict[int, int], catch_up_s: float,
                   stall_s: float) -> tuple[bool, dict[int, int], float, str, str]:
    """Poll the group's committed offsets until they reach ``target``: (caught up, committed, the longest time a
    partition behind its target went without its committed offset moving, the verdict, why).

    Verdicts: ``""`` (caught up), ``"stall"`` (once the worker processes events, a partition behind whose
    committed offset did not move for ``stall_s``; or it exited), ``"slow_start"`` (no event processed in
    ``catch_up_s``: start-up and table recovery, which grow with the changelogs Tansu never compacts), ``"slow"``
    (offsets moving, not caught up in ``catch_up_s``)."""
    started = time.monotonic()
    last: dict[int, tuple[int | None, float]] = {}
    ok, got, frozen, processing = False, {}, 0.0, False
    while True:
        now = time.monotonic()
        if worker.proc.poll() is not None:
            return False, got, frozen, "stall", f"worker exited with {worker.proc.returncode}"
        ok, got = caught_up(reader, target)
        if ok:
            return True, got, frozen, "", ""
        if not processing:
            processing = metric_sum(worker.port, "secstream_events_total") > 0
            if not processing and now - started >= catch_up_s:
                return False, got, frozen, "slow_start", f"processed nothing in {catch_up_s:.0f} s"
        for p, want in target.items():
            value = got.get(p)
            if value is not None and value >= want:
                continue
            if not processing or last.get(p, (None, 0.0))[0] != value:
                last[p] = (value, now)  # the clock starts when the worker processes its first event
            frozen = max(frozen, now - last[p][1])
        if frozen >= stall_s:
            stuck = sorted(p for p, (v, t) in last.items() if now - t >= stall_s)
            return False, got, frozen, "stall", f"committed offset of partition(s) {stuck} frozen for {frozen:.0f} s"
        if now - started >= catch_up_s:
            return False, got, frozen, "slow", f"not caught up in {catch_up_s:.0f} s (offsets moving)"
        time.sleep(0.5)


def caught_up(reader: CommittedReader, target: dict[int, int]) -> tuple[bool, dict[int, int]]:
    try:
        got = reader.read()
    except Exception:  # noqa: BLE001 - the coordinator is moving: not yet
        return False, {}
    return all(got.get(p, 0) >= n for p, n in target.items()), got


def run_phase(partitions: int, restarts: int, rate: float, rng: random.Random, catch_up_s: float, stall_s: float,
              session_s: float, out: Path, env_extra: dict[str, str]) -> Phase:
    from streams.kafka.embedded_broker import EmbeddedBroker, create_topic

    phase = Phase(partitions)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    broker = EmbeddedBroker(log_path=out / "tansu.log").start()
    producer = SteadyProducer(broker.bootstrap, rate, f"{os.getpid()}-{partitions}")
    try:
        asyncio.run(create_topic(broker.bootstrap, TOPIC, partitions))
        reader = CommittedReader(broker.bootstrap, partitions)
        producer.start()
        while not producer.produced() and not producer.error:  # the first worker has a backlog to catch up
            time.sleep(0.2)
        for i in range(restarts + 1):
            last = i == restarts
            if last:  # the drain: no more input, one worker reads everything and stops gracefully
                producer.stopping.set()
                producer.join(60)
            sig = signal.SIGTERM if last or rng.random() < 0.5 else signal.SIGKILL
            crash_loop = not last and rng.random() < 0.2
            target = producer.produced()
            started = time.monotonic()
            worker = WorkerRun(broker.bootstrap, data, out / f"worker{i:02d}.log", partitions, env_extra)
            row: dict[str, Any] = {"i": i, "signal": sig.name, "crash_loop": crash_loop, "target": target}
            if crash_loop:
                time.sleep(rng.uniform(1.0, 4.0))
            else:
                ok, got, frozen, verdict, why = watch_catch_up(worker, reader, target, catch_up_s, stall_s)
                row.update(caught_up=ok, verdict=verdict, why=why, frozen_s=round(frozen, 1),
                           seconds=round(time.monotonic() - started, 1), committed=got, exited=worker.proc.poll())
                if verdict:
                    worker.proc.send_signal(signal.SIGUSR2)  # the consumer's state into its log
                    time.sleep(1)
                    worker.proc.send_signal(signal.SIGUSR1)  # stacks into its log
                    time.sleep(2)
                    row["metrics"] = {name: metric_sum(worker.port, name) for name in
                                      ("secstream_events_total", "secstream_consumer_lag_messages",
                                       "secstream_store_points")}
                    print(f"  [{partitions}p] restart {i}: {verdict.upper()} {row}", flush=True)
                if not last:
                    time.sleep(rng.uniform(0.0, 6.0))
            stalls, recoveries, holes = worker.guard()
            phase.guard_stalls += stalls
            phase.guard_recoveries += recoveries
            phase.holes_repaired += holes
            row["exit"] = worker.end(sig)
            row["after_session_timeout"] = not last and rng.random() < 0.5
            phase.restarts.append(row)
            print(f"  [{partitions}p] restart {i}: {sig.name} crash_loop={crash_loop} "
                  f"caught_up={row.get('caught_up')} in {row.get('seconds')} s", flush=True)
            if row["after_session_timeout"]:
                time.sleep(session_s + 1.0)
        if producer.error:
            phase.error = producer.error
        reader.close()
        phase.produced, phase.stored, phase.missing, phase.extra = check_store(data, producer.ids)
    finally:
        producer.stopping.set()
        producer.join(60)
        broker.stop()
    return phase


def check_store(data_dir: Path, ids: list[str]) -> tuple[int, int, int, int]:
    """(produced, stored, missing, extra): every produced id in the events collection exactly once."""
    from encoders.hybrid import build_default_encoder
    from streams.store import CollectionSpec, open_store, point_id

    distinct = sorted(set(ids))
    store = open_store(engine="edge", path=data_dir / "qdrant")
    try:
        store.ensure(CollectionSpec(name="events", dense_dim=build_default_encoder().dim))
        found: set[str] = set()
        for start in range(0, len(distinct), 2000):
            chunk = distinct[start:start + 2000]
            found.update(h.payload["event_id"] for h in store.retrieve("events", [point_id(i) for i in chunk]))
        count = store.count("events")
    finally:
        store.close()
    missing = len(set(distinct) - found)
    return len(distinct), count, missing, count - len(found)


def summarize(phase: Phase) -> list[Any]:
    measured = [r for r in phase.restarts if "caught_up" in r]
    stalls = sum(1 for r in measured if r["verdict"] == "stall")
    slow = sum(1 for r in measured if r["verdict"] in ("slow", "slow_start"))
    secs = sorted(r["seconds"] for r in measured if r["caught_up"])
    by_sig = f"{sum(r['signal'] == 'SIGTERM' for r in phase.restarts[:-1])}/" \
             f"{sum(r['signal'] == 'SIGKILL' for r in phase.restarts[:-1])}"
    waited = sum(bool(r.get("after_session_timeout")) for r in phase.restarts[:-1])
    return [phase.partitions, len(phase.restarts) - 1, by_sig, f"{len(phase.restarts) - 1 - waited}/{waited}",
            sum(r["crash_loop"] for r in phase.restarts), stalls, slow,
            secs[len(secs) // 2] if secs else "-", secs[-1] if secs else "-",
            phase.produced, phase.stored, phase.missing, phase.extra, int(phase.guard_stalls),
            int(phase.guard_recoveries), int(phase.holes_repaired)]


HEADERS = ["partitions", "restarts", "TERM/KILL", "at once/waited", "crash loops", "stalls", "slow", "catch-up p50 s",
           "max s", "produced", "stored", "missing", "extra", "guard stalls", "guard recoveries",
           "holes repaired"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="secstream bench restarts", description=__doc__.split("\n\n")[0])
    ap.add_argument("--restarts", type=int, default=30, help="restarts in all, split over the phases")
    ap.add_argument("--partitions", default="1,4", help="partitions of the events topic, one phase each")
    ap.add_argument("--rate", type=float, default=80.0, help="events/s produced for the whole run")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--stall-s", type=float, default=90.0,
                    help="once the worker processes events, a partition behind whose committed offset does not move "
                         "this long stalled")
    ap.add_argument("--catch-up-s", type=float, default=300.0, help="a worker not caught up by then was slow")
    ap.add_argument("--out", type=Path, default=None, help="folder for logs (default: a temporary one, removed)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra worker setting")
    ap.add_argument("--worker-tree", type=Path, default=None,
                    help="run the workers from this checkout (e.g. a worktree of an older commit)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        parts = [int(p) for p in args.partitions.split(",") if p.strip()]
        env_extra = dict(kv.split("=", 1) for kv in args.env)
    except ValueError:
        ap.error("--partitions takes integers separated by commas; --env takes NAME=VALUE")
    if not parts or any(p < 1 for p in parts) or args.restarts < len(parts):
        ap.error("--partitions: at least one count >= 1, and --restarts at least one per phase")
    if args.worker_tree is not None and not (args.worker_tree / "streams").is_dir():
        ap.error(f"--worker-tree: no streams/ package in {args.worker_tree}")
    global WORKER_TREE
    WORKER_TREE = args.worker_tree.resolve() if args.worker_tree is not None else None
    from streams.config.settings import load_settings

    session_s = load_settings().kafka_session_timeout_s
    rng = random.Random(args.seed)
    out = args.out or Path(tempfile.mkdtemp(prefix="secstream-restarts-"))
    phases = []
    try:
        for n, p in enumerate(parts):
            share = args.restarts // len(parts) + (1 if n < args.restarts % len(parts) else 0)
            print(f"phase: {p} partition(s), {share} restarts", flush=True)
            phases.append(run_phase(p, share, args.rate, rng, args.catch_up_s, args.stall_s, session_s, out / f"p{p}",
                                    env_extra))
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    rows = [summarize(ph) for ph in phases]
    if args.json:
        print(json.dumps([dict(zip(HEADERS, r, strict=True)) | {"restarts_detail": ph.restarts, "error": ph.error}
                          for r, ph in zip(rows, phases, strict=True)], default=str))
    else:
        print(table(rows, HEADERS))
    bad = any(r[5] or r[11] or r[12] for r in rows) or any(ph.error for ph in phases)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
