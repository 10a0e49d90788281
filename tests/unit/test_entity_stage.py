"""The entity stage (streams.stages.entity_stage): how the entity score joins the event score, the alert it raises,
steps on the wire, and what the stage refuses."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from detection.alerts import alert_id
from detection.entity_alerts import joined_score
from detection.entity_tracker import EntityTracker
from detection.plain import b64
from schemas.alert import validate_alert
from streams.kafka.step_codec import decode_entity_steps, encode_entity_steps
from streams.stages.entity_stage import EntityStage, EntityStep
from tests.unit.test_entities import T0, iso, two_behaviours


def test_joined_score_raises_an_unusual_event_and_never_lowers_one() -> None:
    assert joined_score(0.0, 100.0) < 90  # a common event never alerts on the entity score alone
    assert joined_score(45.0, 100.0) >= 90  # somewhat unusual for everyone, very unusual for this user
    assert joined_score(95.0, 0.0) == 95.0  # an entity cannot hide an alert
    assert joined_score(50.0, 50.0) < 90
    grid = [joined_score(e, n) for e in (10, 30, 60) for n in (20, 60, 99)]
    assert all(0 <= x <= 100 for x in grid)
    assert joined_score(40, 99) > joined_score(40, 96) > joined_score(40, 0) == 40


def _steps(events: list[dict[str, Any]], score: float = 10.0) -> list[EntityStep]:
    return [EntityStep(("user", e["user"]), e["time"], e["event_id"], score, False, "t1", "login <*>",
                       {"event_type": "authentication", "user": e["user"], "message": "m"}) for e in events]


@pytest.fixture()
def trained() -> tuple[EntityStage, np.ndarray, list[dict[str, Any]]]:
    events, vectors = two_behaviours(windows=10, change_at=99)
    stage = EntityStage(lambda: EntityTracker(16, types=("user",), lateness_s=0), model_version="v1", warmup=50)
    out = stage.observe(_steps(events), vectors)
    assert out.commits > 0 and not out.alerts  # everyone as usual: no alert
    return stage, vectors, events


def test_an_event_usual_for_the_population_but_not_for_this_user_alerts(trained: Any) -> None:
    stage, vectors, events = trained
    other1 = vectors[[i for i, e in enumerate(events) if e["user"] == "other1"][-1]]
    t = iso(T0 + 300 * 11)
    probe = [dict(user="u", time=t, event_id="x-u"), dict(user="other1", time=t, event_id="x-o")]
    out = stage.observe(_steps(probe, score=50.0), np.stack([other1, other1]))
    joined = {k: v[0] for k, v in out.scores.items()}
    assert joined["x-u"] >= 90 and joined["x-o"] == pytest.approx(50.0)  # same event, different users
    assert len(out.alerts) == 1 and out.event_alerts == 1
    alert = out.alerts[0]
    validate_alert(alert)
    assert alert["alert_id"] == alert_id("event_anomaly", "x-u", "v1")  # the id the event's own alert has
    assert alert["entity"] == {"type": "user", "id": "u"} and alert["evidence"]["event_ids"] == ["x-u"]
    assert "user u" in alert["title"] and alert["explanation"]["neighbours"][0]["id"] == "user:u"
    # already alerted on its own score: the entity adds no second alert (its joined score still shows)
    again = _steps([dict(user="u", time=t, event_id="x-u2")], score=95.0)
    again[0].alerted = True
    out2 = stage.observe(again, other1[None])
    assert not out2.alerts and out2.scores["x-u2"][0] >= 95.0


def test_a_common_event_does_not_alert_on_the_entity_score_alone(trained: Any) -> None:
    stage, vectors, events = trained
    other1 = vectors[[i for i, e in enumerate(events) if e["user"] == "other1"][-1]]
    out = stage.observe(_steps([dict(user="u", time=iso(T0 + 300 * 11), event_id="c")], score=0.0), other1[None])
    assert not out.alerts and out.scores["c"][1] >= 95  # far from "u", but the event is ordinary for everyone


def test_steps_round_trip_on_the_wire_and_bad_ones_are_skipped() -> None:
    steps = _steps([dict(user="alice", time=iso(T0), event_id="e1")])
    steps[0].severity, steps[0].session_id = "high", "s1"
    vecs = np.random.default_rng(1).standard_normal((1, 8)).astype(np.float32)
    wire = encode_entity_steps(steps, vecs)
    assert wire[0][0] == b"user:alice"
    back, v = decode_entity_steps([wire[0][1], b"{not json", b'{"en": 1}'])
    assert back == steps and np.array_equal(v, vecs)
    # a binary frame: the vector as raw float32 after the fields, not base64 inside them
    frame = wire[0][1]
    assert frame[:1] == b"\x01" and frame.endswith(vecs[0].astype("<f4").tobytes()) and b'"v"' not in frame
    # truncated or padded frames are skipped, and a step in the earlier JSON format is still read
    old = dict(json.loads(frame[5:5 + int.from_bytes(frame[1:5], "little")]), v=b64(vecs[0], "<f4"))
    back, v = decode_entity_steps([frame[:3], frame[:-2], frame + b"\0", json.dumps(old).encode()])
    assert back == steps and np.array_equal(v, vecs)


def test_join_types_must_be_tracked() -> None:
    with pytest.raises(ValueError, match="join types"):
        EntityStage(lambda: EntityTracker(8, types=("host",)), join_types=("user",))


def test_a_batch_without_entities_gives_no_steps() -> None:
    from streams.stages.entity_stage import entity_steps
    from streams.stages.pipeline import Accepted, BatchOutcome

    out = BatchOutcome()
    out.results = [Accepted(0, "e1", None, 1.0, False, False, event={"time": iso(T0), "message": "m"}, row=0)]
    out.vectors = np.zeros((1, 8), dtype=np.float32)
    steps, vectors = entity_steps(out, ("user",))
    assert steps == [] and vectors.shape == (0, 8)
