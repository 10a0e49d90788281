"""Sessions survive a worker restart (issue 4): the embedded Tansu broker over loopback,
the worker as its own process, two session partitions, the real Qdrant edge engine.

A session gets three events, the worker stops (SIGTERM, as a deploy does), a new
worker process starts on the same broker, and the session gets two more events;
then a late event moves the watermark past the inactivity gap. The session must
close ONCE, with all five events and the first event's start time: the open
session came back from the Faust table's changelog, not from a new start. A key
that had closed before the restart reopens with the next number (``#2``), and the
closed sessions are in the ``sessions`` collection of the store.

Between the two workers the group's offsets are rewound to 0 (events and session
steps), as a crash that lost its commits leaves them: the second worker reads every
event and every step again. A re-delivered step must not count twice, nor reopen a
session that closed: each step carries its event's source offset, and a session key
remembers the offsets applied to it (detection/sessions.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from kafka_helpers import WorkerProc, drain, rewind_group

from streams.kafka.embedded_broker import EmbeddedBroker, create_topic
from streams.cli.topic_commands import produce_values

pytestmark = pytest.mark.integration

T0 = 1_790_000_000  # epoch seconds (2026-09-21)
ENV = {"SECSTREAM_TOPIC_PARTITIONS": "2", "SECSTREAM_SESSION_GAP_S": "60", "SECSTREAM_SESSION_IDLE_S": "3600",
       "SECSTREAM_SESSION_ROLLING_EVERY": "0", "SECSTREAM_SESSION_MAX_EVENTS": "6"}


def _event(t: float, sid: str, n: int, text: str) -> bytes:
    return json.dumps({"event_id": f"{sid}-{n}", "time": int((T0 + t) * 1000), "session_id": sid,
                       "source": "app", "event_type": "authentication", "host": "web-1", "user": "alice",
                       "message": f"{text} for session {sid} step {n}"}).encode()


def _open_sessions(worker: WorkerProc, n: int) -> None:
    worker.wait_metric("secstream_sessions_open", n)


def test_open_sessions_survive_a_worker_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # Event times never go back once a gap is crossed: the three keys may share one session partition, whose
    # watermark (the latest event time of its batch) closes every session idle for the gap at the end of each
    # batch. 'burst#2' at t=10..15 after 'short' at t=150 was closed by that (gap, 3 events) whenever a batch
    # ended inside it, and never reached max_events (1 run in 6 alone, more under load, 2026-12-07).
    burst = [_event(i, "burst", i, "login failed") for i in range(6)]  # closes at 6 events, before the restart
    first = [_event(0, "keep", 1, "login accepted"), _event(1, "keep", 2, "list files"),
             _event(2, "keep", 3, "read file"), _event(0, "short", 1, "login accepted"), *burst]
    second = [_event(3, "keep", 4, "write file"), _event(4, "keep", 5, "logout"),
              _event(150, "short", 2, "login accepted"),  # gap: closes 'short', opens 'short#2'
              *[_event(160 + i, "burst", 10 + i, "login failed") for i in range(6)],  # 'burst#2', 6 events
              _event(300, "keep", 6, "login accepted")]  # gap: closes 'keep' with 5 events

    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        asyncio.run(create_topic(broker.bootstrap, "secstream.events", partitions=1))
        worker = WorkerProc(broker.bootstrap, data_dir, tmp_path / "worker1.log", **ENV)
        try:
            assert asyncio.run(produce_values(broker.bootstrap, "secstream.events", first)) == len(first)
            worker.wait_processed(len(first))
            worker.wait_metric("secstream_sessions_closed_total", 1, labels='reason="max_events"')
            _open_sessions(worker, 2)
        finally:
            code = worker.stop()
        assert code == 0, (tmp_path / "worker1.log").read_text()[-3000:]
        rewind_group(broker.bootstrap, {("secstream.events", 0): 0, ("secstream-session-steps", 0): 0,
                                        ("secstream-session-steps", 1): 0})

        worker = WorkerProc(broker.bootstrap, data_dir, tmp_path / "worker2.log", **ENV)
        try:
            # the restarted worker holds both open sessions again before it sees anything new
            _open_sessions(worker, 2)
            assert asyncio.run(produce_values(broker.bootstrap, "secstream.events", second)) == len(second)
            worker.wait_processed(len(first) + len(second))  # the first events again, then the new ones
            worker.wait_metric("secstream_sessions_closed_total", 2, labels='reason="gap"')
            worker.wait_metric("secstream_sessions_closed_total", 1, labels='reason="max_events"')
            # every step of the first worker came twice (its events re-read, its steps re-read): all skipped (more
            # when the new worker's first fetch is delivered again after Faust's seek: skipped as well)
            worker.wait_metric("secstream_session_steps_repeated_total", 2 * len(first))
        finally:
            code = worker.stop()
        assert code == 0, (tmp_path / "worker2.log").read_text()[-3000:]
        records = [json.loads(v) for _, v in asyncio.run(drain(broker.bootstrap, "secstream.sessions"))]

    by_id = {r["session_id"]: r for r in records}
    assert len(by_id) == len(records), f"a session closed twice: {sorted(r['session_id'] for r in records)}"
    keep = by_id.get("keep")
    assert keep is not None, f"'keep' never closed: {sorted(by_id)}"
    assert keep["events"] == 5, f"'keep' lost events over the restart: {keep}"
    assert keep["start"] == "2026-09-21T14:13:20.000Z" and keep["reason"] == "gap"
    assert by_id["short"]["events"] == 1
    # 'burst' had closed before the restart: its next session is numbered on from the changelog
    assert by_id["burst"]["events"] == 6 and by_id["burst#2"]["events"] == 6
    assert "keep#2" not in by_id  # still open

    from detection.session_score import SessionScorer
    from encoders.hybrid import build_default_encoder
    from streams.store.session_points import SESSIONS, session_point_id, session_spec
    from streams.store import open_store

    dim = build_default_encoder().dim
    store = open_store(engine="edge", path=data_dir / "qdrant")
    try:
        store.ensure(session_spec(dim + SessionScorer(dim).bag_dim, dim))
        hits = store.retrieve(SESSIONS, [session_point_id("keep")])
        assert hits and hits[0].payload["events"] == 5
    finally:
        store.close()
