"""Live sessions in the worker: a repartitioned step stream and a changelog-backed Faust table.

The events agent scores events and sends one compact *step* per sessionized event
(time, event id, template, score, vector) to the internal topic
``<app_id>-session-steps``, on the partition of its session key (in bulk:
streams/kafka/step_codec.py). That is a repartition, as Faust's ``group_by`` does, made
explicit because what travels is the pipeline's output (the vector), not the raw event,
so nothing is encoded twice. Every step of a session thus reaches the same partition,
hence one worker.

The session agent consumes the steps in batches, one
:class:`~streams.stages.session_stage.SessionStage` sessionizer per partition, and once per
commit interval (streams/worker/table_agent.py) mirrors what the interval's batches changed
into the Faust table ``sessions`` (changelog topic ``<app_id>-sessions-changelog``,
co-partitioned with the steps), each key once, with its latest value:

- ``s:<key>`` → the open session (plain data, vectors base64) — written when a
  batch touches it, deleted (tombstone) when it closes;
- ``n:<key>`` → ``[partition, n, sources]``, the reopen counter of a closed key (so
  the next session of the key is ``key#n+1`` after a restart too) and the source
  offsets applied to it, deleted when the bounded memory of closed keys forgets it;
- ``w:<partition>`` → ``[partition, watermark]``, written last at every flush (see
  :meth:`TableAgent._write_records` for why).

A (re)started worker recovers the table from the changelog (Faust does that before
its agents resume) and rebuilds each assigned partition's open sessions from it;
revoked partitions are dropped (their new owner recovers them). Memory stays
bounded: closed sessions leave the table, and the reopen counters are an LRU.

At-least-once, like the rest (Tansu has no transactions): a crash replays the steps
since the last commit (the last flush's), and a
restarted events agent sends again the steps of the events it re-reads. Each step
carries its event's source (events partition, offset); a key's record keeps the
highest source offsets applied to it, so a replayed step is skipped instead of
counted twice (detection/sessions.py; metric ``secstream_session_steps_repeated_total``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from detection.sessions import Session, sources_in, sources_out
from detection.times import iso_time
from streams.ops import metrics
from streams.stages.session_stage import SessionOutcome, SessionStage
from streams.worker.alert_sink import AlertSink
from streams.kafka.step_codec import decode_session_steps
from streams.worker.batches import wait_sent
from streams.worker.table_agent import BULK_MESSAGES_BUFFERED, TableAgent
from streams.kafka.json_codec import dumps

log = logging.getLogger(__name__)

TABLE = "sessions"



def session_record(c: Any) -> dict[str, Any]:
    """The ``secstream.sessions`` message of a closed session (replay's sessions.jsonl line, plus context)."""
    s: Session = c.session
    return {"session_id": s.session_id, "score": round(c.result.score, 3), "alert": c.alert, "events": s.events,
            "start": iso_time(s.start), "end": iso_time(s.end), "entity": {"type": s.entity[0], "id": s.entity[1]},
            "reason": s.reason, "warmup": c.result.warmup,
            "templates": [{"id": t, "count": n} for t, n in s.bag.most_common(10)]}


class SessionAgent(TableAgent):
    """The session half of a worker; see the module docstring."""

    def __init__(self, app: faust.App, stage: SessionStage, executor: ThreadPoolExecutor, *, app_id: str,
                 partitions: int, batch_size: int, within_s: float, idle_s: float, alerts: AlertSink,
                 sessions_topic: Any, commit_interval_s: float = 0.0,
                 ready: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__(app, executor, name="sessions", steps="session-steps", table=TABLE, app_id=app_id,
                         partitions=partitions, batch_size=batch_size, within_s=within_s,
                         commit_interval_s=commit_interval_s, buffered=BULK_MESSAGES_BUFFERED, ready=ready)
        self.stage = stage
        self._pending: dict[int, dict[bytes, Any]] = {}  # partition -> key -> latest value (a Session: serialized
        # when written) since the last flush; None: delete
        self.idle_s = idle_s
        self.alerts, self.sessions_topic = alerts, sessions_topic
        app.timer(5.0, name="sessions-idle")(self._idle_timer)

    async def _batch(self, partition: int, values: list[bytes]) -> None:
        outcome = await self.run(self._observe, partition, values)
        await self._emit(partition, outcome)

    def _observe(self, partition: int, values: list[bytes]) -> SessionOutcome:
        steps, vectors = decode_session_steps(values)
        if not steps:
            return SessionOutcome()
        events = [{"time": d["t"], "event_id": d["id"]} for d in steps]
        keys = [(str(d["k"]), (str(d["en"][0]), str(d["en"][1]))) for d in steps]
        sources = [(int(d["src"][0]), int(d["src"][1])) if d.get("src") else None for d in steps]
        return self.stage.observe(events, vectors, [d["tid"] for d in steps], [d["tpl"] for d in steps],
                                  [float(d["s"]) for d in steps], partition=partition, keys=keys, sources=sources)

    async def _idle_timer(self) -> None:
        """Close sessions when the stream has been silent: advance each watermark by the silence."""
        silence = time.monotonic() - self.last_step
        if silence < self.idle_s:
            return
        for partition in sorted(self.restored):
            async with self.turn:
                outcome = await self.run(self.stage.advance, partition, silence)
                if outcome.closed:
                    await self._emit(partition, outcome)
                    self._dirty.add(partition)  # written by the next flush

    # ------------------------------------------------------------------ effects out
    async def _emit(self, partition: int, outcome: SessionOutcome) -> None:
        self._stage_writes(partition, outcome)
        sends = []
        for c in outcome.closed:
            sends.append(await self.sessions_topic.send(key=c.session.session_id.encode("utf-8"),
                                                        value=dumps(session_record(c))))
        sends.extend(await self.alerts.send_alerts(outcome.alerts, outcome.alert_vectors, "session"))
        if sends:  # acked before the batch's offsets can be committed
            await wait_sent(sends)
        for c in outcome.closed:
            metrics.SESSIONS_CLOSED.labels(c.session.reason or "gap").inc()
            if not c.result.warmup:
                metrics.SESSION_SCORE.observe(c.result.score)
        if outcome.rolling:
            metrics.SESSIONS_ROLLING.inc(outcome.rolling)
        if outcome.repeated:
            metrics.SESSION_STEPS_REPEATED.inc(outcome.repeated)
        metrics.SESSIONS_OPEN.set(self.stage.open_sessions())
        metrics.observe_threshold("session", self.stage.alert_threshold)
        if outcome.closed:
            metrics.observe_baseline("sessions", self.stage.scorer.baseline)

    def _stage_writes(self, partition: int, outcome: SessionOutcome) -> None:
        """Note what ``outcome`` changed for the next flush, in the order a batch's writes had: a key's last
        change wins."""
        pending = self._pending.setdefault(partition, {})
        for s in outcome.touched:
            pending[b"s:" + s.key.encode("utf-8")] = s
        for key in outcome.ended:
            pending[b"s:" + key.encode("utf-8")] = None
        for key, n, src in outcome.segments:
            pending[b"n:" + key.encode("utf-8")] = [partition, n, sources_out(src)]
        for key in outcome.forgotten:
            pending[b"n:" + key.encode("utf-8")] = None

    async def _write_state(self, partition: int) -> None:
        """Each key the batches since the last flush changed, its latest value; the watermark last, alone."""
        records = [(key, {"p": partition, **value.to_dict()} if isinstance(value, Session) else value)
                   for key, value in self._pending.pop(partition, {}).items()]
        sz = self.stage.sessionizers.get(partition)
        wm = sz.watermark if sz is not None and sz.watermark != float("-inf") else None
        await self._write_records(partition, records + [(f"w:{partition}".encode(), [partition, wm])])

    # ------------------------------------------------------------------ recovery
    def _drop(self, partition: int) -> None:
        self.stage.drop(partition)
        self._pending.pop(partition, None)

    def _load(self, partition: int, items: list[tuple[bytes, Any]]) -> None:
        """Rebuild ``partition``'s open sessions, reopen counters and watermark from the table."""
        sz = self.stage.sessionizer(partition)
        opened = remembered = 0
        for key, value in items:
            kind, name = bytes(key)[:2], bytes(key)[2:].decode("utf-8", "replace")
            try:
                if kind == b"s:" and value.get("p") == partition:
                    sz.adopt(Session.from_dict(value))
                    opened += 1
                elif kind == b"n:" and value[0] == partition and sz.get(name) is None:
                    sz.remember(name, int(value[1]), sources_in(value[2]) if len(value) > 2 else None)
                    remembered += 1
                elif kind == b"w:" and value[0] == partition and value[1] is not None:
                    sz.watermark = max(sz.watermark, float(value[1]))
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                log.warning("sessions: skipping unreadable table entry %r: %s", key[:80], exc)
        metrics.SESSIONS_OPEN.set(self.stage.open_sessions())
        if opened or remembered:
            log.info("sessions: partition %d recovered %d open sessions, %d closed keys", partition, opened,
                     remembered)
