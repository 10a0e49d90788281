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
from streams.kafka.partition_keys import partition_of
from streams.kafka.json_codec import dumps
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
    steps = _steps([dict(user=u, time=iso(T0 + i), event_id=f"e{i}") for i, u in enumerate(["alice", "bob", "alice"])])
    steps[0].severity, steps[0].session_id = "high", "s1"
    vecs = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    wire = encode_entity_steps(steps, vecs, 4)
    # one bulk message per partition, each step on the partition Kafka's default partitioner gives its key
    assert sorted(p for p, _ in wire) == sorted({partition_of(s.key, 4) for s in steps})
    for partition, message in wire:
        assert message[:1] == b"\x02" and b'"v"' not in message
        back, v = decode_entity_steps([message])
        mine = [i for i, s in enumerate(steps) if partition_of(s.key, 4) == partition]
        assert back == [steps[i] for i in mine] and np.array_equal(v, vecs[mine])  # in batch order
    back, v = decode_entity_steps([m for _, m in wire] + [b"{not json", b'{"en": 1}'])
    assert sorted(s.event_id for s in back) == ["e0", "e1", "e2"]
    # a step in the earlier formats (a single frame; JSON with a base64 vector) is still read
    single = frame(_fields(steps[1]), vecs[1])
    old = json.dumps(dict(_fields(steps[1]), v=b64(vecs[1], "<f4"))).encode()
    back, v = decode_entity_steps([single, old])
    assert back == [steps[1], steps[1]] and np.array_equal(v, vecs[[1, 1]])
    # truncated or padded messages are skipped whole; the others are read
    bulk = wire[0][1]
    back, v = decode_entity_steps([bulk[:3], bulk[:-2], bulk + b"\0", single])
    assert back == [steps[1]]


def frame(fields: dict[str, Any], vector: np.ndarray) -> bytes:
    """A step as workers wrote it before bulk steps (streams/kafka/step_codec.py reads it still)."""
    meta = dumps(fields)
    return b"\x01" + len(meta).to_bytes(4, "little") + meta + vector.astype("<f4").tobytes()


def _fields(step: EntityStep) -> dict[str, Any]:
    return {"en": list(step.entity), "t": step.time, "id": step.event_id, "s": step.score, "a": step.alerted,
            "tid": step.template_id, "tpl": step.template, "ev": step.summary, "sid": step.session_id,
            "sev": step.severity}


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
