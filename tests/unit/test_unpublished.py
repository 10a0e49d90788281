"""A batch learned and never published (streams/stages/unpublished.py): its re-delivery publishes the first
outcome, alerts and entity steps included, not "already seen"; held outcomes survive a state save and load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streams.config.settings import Settings
from streams.stages.entity_stage import entity_steps
from streams.stages.factory import build_pipeline
from streams.stages.pipeline import Pipeline
from streams.stages.snapshots import load_state, save_state
from streams.stages.unpublished import FirstOutcome, Unpublished


def ev(i: int) -> bytes:
    return json.dumps({"event_id": f"n-{i}", "time": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                       "message": f"Accepted password for u{i % 3}", "source": "sshd", "user": f"u{i % 3}",
                       "host": "srv-1"}).encode()


ATTACK = [json.dumps({"event_id": f"inj-{i}", "time": f"2026-01-01T01:00:0{i}Z", "source": "sysmon",
                      "event_type": "process_start", "host": "ws-07", "user": "mallory", "process": name,
                      "message": f"Process Create: {name} {args}"}).encode()
          for i, (name, args) in enumerate([("mimikatz.exe", "sekurlsa::logonpasswords"),
                                            ("procdump.exe", "-ma lsass.exe out.dmp")])]


def warmed() -> Pipeline:
    pipeline = build_pipeline(Settings(warmup_events=20), store=None)
    pipeline.process([ev(i) for i in range(300)])
    return pipeline


def test_held_outcomes_keep_the_first_one_release_and_a_bounded_capacity() -> None:
    held = Unpublished(capacity=3)
    assert not held and held.hold([("a", FirstOutcome(1.0, False)), ("b", FirstOutcome(2.0, False))]) == 2
    assert held.hold([("a", FirstOutcome(9.0, True))]) == 0 and held.get("a") == FirstOutcome(1.0, False)
    held.hold([("c", FirstOutcome(3.0, False)), ("d", FirstOutcome(4.0, False))])
    assert len(held) == 3 and held.get("a") is None and held.dropped == 1  # the oldest went first
    held.release(["b", "zzz"])
    assert held.get("b") is None and len(held) == 2
    assert Unpublished(capacity=0).hold([("a", FirstOutcome(1.0, False))]) == 0
    with pytest.raises(ValueError, match="capacity"):
        Unpublished(capacity=-1)


def test_held_outcomes_round_trip_as_json_with_their_alert_and_vector() -> None:
    held = Unpublished()
    vec = np.arange(4, dtype=np.float32) / 7
    held.hold([("a", FirstOutcome(97.5, False, {"alert_id": "x", "evidence": {"event_ids": ["a"]}}, vec)),
               ("b", FirstOutcome(3.0, True))])
    again = Unpublished()
    again.load_meta(json.loads(json.dumps(held.to_meta())))
    a = again.get("a")
    assert a is not None and a.score == 97.5 and a.alert == {"alert_id": "x", "evidence": {"event_ids": ["a"]}}
    assert a.vector is not None and np.array_equal(a.vector, vec)
    assert again.get("b") == FirstOutcome(3.0, True)


def test_a_re_delivered_unpublished_batch_publishes_its_first_alerts_and_entity_steps() -> None:
    pipeline = warmed()
    batch = [ev(300), *ATTACK, ev(301)]
    first = pipeline.process(batch)
    raised = {a["alert_id"] for a in first.alerts}
    assert {a["evidence"]["event_ids"][0] for a in first.alerts} >= {"inj-0", "inj-1"}
    types = ("user", "host")
    first_steps = [(s.key, s.event_id, s.score, s.alerted) for s in entity_steps(first, types)[0]]
    assert first_steps

    # published: the same batch again is "already seen" (no alert, no entity step), as before
    pipeline.release_unpublished(first)
    seen = pipeline.process(batch)
    assert not seen.alerts and all(r.repeated for r in seen.accepted) and not entity_steps(seen, types)[0]

    # not published (the guard cancelled its sends): the re-delivery gets the first outcome
    pipeline = warmed()
    first = pipeline.process(batch)
    assert pipeline.hold_unpublished(first) == len(batch)
    exemplars, seen_count = len(pipeline.detector.baseline), pipeline.detector.baseline.seen
    again = pipeline.process(batch)
    assert {a["alert_id"] for a in again.alerts} == raised
    assert [r.score for r in again.accepted] == [r.score for r in first.accepted]
    assert [(s.key, s.event_id, s.score, s.alerted) for s in entity_steps(again, types)[0]] == first_steps
    assert (len(pipeline.detector.baseline), pipeline.detector.baseline.seen) == (exemplars, seen_count)  # not learned twice
    assert len(pipeline.unpublished) == 0  # given out once: a third copy is "already seen"
    assert not pipeline.process(batch).alerts


def test_held_outcomes_survive_a_state_save_and_a_restart(tmp_path: Path) -> None:
    pipeline = warmed()
    first = pipeline.process(ATTACK)
    pipeline.hold_unpublished(first)
    save_state(pipeline, tmp_path)

    restarted = build_pipeline(Settings(warmup_events=20), store=None)
    assert load_state(restarted, tmp_path) and len(restarted.unpublished) == len(ATTACK)
    again = restarted.process(ATTACK)
    assert {a["alert_id"] for a in again.alerts} == {a["alert_id"] for a in first.alerts}
    assert all(np.array_equal(v, w) for v, w in zip(again.alert_vectors, first.alert_vectors))
