"""SessionStage (shared by replay and the worker) and the session wire format: rolling
early warnings, silent-stream closing, per-partition state, what a batch reports for
the changelog, and Session plain-data round trips (members included)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detection.session_score import SessionScorer
from detection.sessions import Session, Sessionizer
from schemas.alert import validate_alert
from streams.stages.session_stage import SessionStage

DIM = 8


def _vec(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v


def _stage(**kw: object) -> SessionStage:
    scorer = SessionScorer(DIM, warmup=kw.pop("warmup", 5), bag_dim=16, invariants=False)  # type: ignore[arg-type]
    return SessionStage(scorer, lambda: Sessionizer(gap_s=60), threshold=90.0, model_version="test", **kw)


def _batch(stage: SessionStage, rows: list[tuple[float, str, str]], partition: int = 0):
    """rows: (time s, session id, template id)."""
    events = [{"time": int(t * 1000), "session_id": sid, "event_id": f"{sid}-{t}"} for t, sid, _ in rows]
    vecs = np.stack([_vec(int(tid[1:])) for _, _, tid in rows])
    tids = [tid for _, _, tid in rows]
    return stage.observe(events, vecs, tids, [f"template {t}" for t in tids], [0.0] * len(rows),
                         partition=partition)


def _normal_history(stage: SessionStage, n: int = 150) -> float:
    t = 0.0
    for i in range(n):
        _batch(stage, [(t, f"n{i}", "t1"), (t + 1, f"n{i}", "t2"), (t + 2, f"n{i}", "t3")])
        t += 100.0  # each next batch's watermark closes the previous session by gap
    return t


def test_closed_sessions_are_scored_in_order_and_reported_for_the_changelog() -> None:
    stage = _stage()
    out = _batch(stage, [(0, "a", "t1"), (1, "b", "t2"), (2, "a", "t3")])
    assert out.closed == [] and {s.key for s in out.touched} == {"a", "b"}
    out = _batch(stage, [(500, "a", "t1")])  # a's gap passed: a closes and reopens as a#2, b is evicted
    assert [c.session.session_id for c in out.closed] == ["a", "b"]
    assert out.ended == ["b"] and out.segments == [("a", 1, {}), ("b", 1, {})]
    assert [s.session_id for s in out.touched] == ["a#2"]


def test_rolling_score_warns_once_on_a_long_open_session() -> None:
    stage = _stage(rolling_every=10)
    t = _normal_history(stage)
    rows = [(t + i, "long", f"t{4 + i % 3}") for i in range(25)]  # templates the history never had
    outs = [_batch(stage, rows[i:i + 5]) for i in range(0, 25, 5)]
    assert sum(o.rolling for o in outs) == 2  # at 10 and 20 events
    alerts = [a for o in outs for a in o.alerts]
    assert len(alerts) == 1, "an open session alerts at most once"
    validate_alert(alerts[0])
    assert alerts[0]["kind"] == "session_anomaly" and "so far" in alerts[0]["title"]
    assert alerts[0]["evidence"]["session_id"] == "long"
    sess = stage.sessionizer(0).get("long")
    assert sess is not None and sess.alerted and sess.scored_at == 20
    closed = stage.flush()
    assert closed.alerts and closed.alerts[0]["alert_id"] == alerts[0]["alert_id"]  # the close alert supersedes


def test_rolling_off_scores_nothing_early() -> None:
    stage = _stage(rolling_every=0)
    t = _normal_history(stage)
    out = _batch(stage, [(t + i, "long", "t5") for i in range(50)])
    assert out.rolling == 0 and out.alerts == []


def test_advance_closes_sessions_of_a_silent_stream_without_moving_the_watermark() -> None:
    stage = _stage()
    _batch(stage, [(0, "a", "t1"), (10, "a", "t2")])
    sz = stage.sessionizer(0)
    assert stage.advance(0, 30).closed == [] and len(sz) == 1
    out = stage.advance(0, 61)
    assert [c.session.session_id for c in out.closed] == ["a"] and out.ended == ["a"]
    assert sz.watermark == 10.0
    assert stage.advance(5, 1000).closed == []  # a partition never seen


def test_partitions_are_independent_and_drop_forgets_one() -> None:
    stage = _stage()
    _batch(stage, [(0, "a", "t1")], partition=0)
    _batch(stage, [(0, "b", "t1"), (1, "c", "t1")], partition=3)
    assert stage.open_sessions() == 3
    assert stage.drop(3) == 2 and stage.open_sessions() == 1
    assert stage.drop(3) == 0


def test_bad_rolling_argument_is_rejected() -> None:
    with pytest.raises(ValueError, match="rolling_every"):
        _stage(rolling_every=-1)


def test_session_round_trips_through_json_with_members() -> None:
    sz = Sessionizer(max_members=2)
    events = [{"time": i * 1000, "session_id": "s", "event_id": f"e{i}"} for i in range(4)]
    vecs = np.stack([_vec(i) * (i + 1) for i in range(4)])
    sz.observe(events, vecs, ["t1", "t2", "t1", "t3"], ["x", "y", "x", "z"], [1, 2, 3, 4])
    sess = sz.get("s")
    assert sess is not None and list(sess.members) == ["t1", "t2"]  # first vector per template, at most 2
    m = sess.member_matrix()
    assert m.shape == (2, DIM) and np.allclose(np.linalg.norm(m, axis=1), 1.0)
    back = Session.from_dict(json.loads(json.dumps(sess.to_dict())))
    assert back.session_id == sess.session_id and back.bag == sess.bag and back.sequence == sess.sequence
    assert np.allclose(back.vector, sess.vector, atol=1e-6)
    assert np.allclose(back.member_matrix(), m, atol=1e-3)  # members travel as float16


def test_adopt_and_remember_continue_numbering_after_a_restart() -> None:
    sz = Sessionizer(gap_s=60)
    evs = [{"time": 0, "session_id": "k", "event_id": "e0"}]
    sz.observe(evs, np.stack([_vec(0)]), ["t1"])
    restored = Sessionizer(gap_s=60)
    restored.remember("k", 3)  # the changelog says k has had 3 sessions
    out = restored.observe([{"time": 10_000, "session_id": "k", "event_id": "e1"}], np.stack([_vec(0)]), ["t1"])
    assert out.session_ids == ["k#4"]
    again = Sessionizer(gap_s=60)
    again.adopt(Session.from_dict(json.loads(json.dumps(restored.get("k").to_dict()))))  # type: ignore[union-attr]
    out = again.observe([{"time": 20_000, "session_id": "k", "event_id": "e2"}], np.stack([_vec(1)]), ["t2"])
    assert out.session_ids == ["k#4"] and again.get("k").events == 2  # type: ignore[union-attr]
    assert again.watermark == 20.0


def test_forgotten_keys_are_reported() -> None:
    sz = Sessionizer(gap_s=60, max_closed_keys=2)
    evs = [{"time": i * 1000, "session_id": f"k{i}", "event_id": f"e{i}"} for i in range(4)]
    out = sz.observe(evs, np.stack([_vec(i) for i in range(4)]), ["t"] * 4)
    assert out.forgotten == ["k0", "k1"]
