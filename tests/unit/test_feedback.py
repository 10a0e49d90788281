"""Analyst feedback (issue 6): verdict parsing, the verdict memory, and what verdicts do to the pipeline
(real encoder and detector, no store; the worker path is tests/integration/test_feedback_worker.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detection.feedback import (
    FALSE_POSITIVE,
    TRUE_POSITIVE,
    FeedbackMemory,
    InvalidFeedback,
    attach_vector,
    confirmed_score,
    parse_feedback,
    screen,
    take_vector,
    teach_normal,
)
from detection.novelty import ExemplarBaseline
from schemas.alert import validate_alert
from streams.cli.main import main as cli_main
from streams.stages.pipeline import BatchOutcome, Pipeline
from streams.stages.factory import build_pipeline
from streams.config.settings import Settings


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_parse_feedback_accepts_the_cli_document_and_names_what_is_wrong() -> None:
    v = parse_feedback(b'{"alert_id": " a1 ", "verdict": "false_positive", "note": "backup job"}')
    assert (v.alert_id, v.verdict, v.note) == ("a1", FALSE_POSITIVE, "backup job")
    for raw, reason in ((b"nope", "not_json"), (b"[1]", "not_an_object"), (b'{"verdict": "true_positive"}',
                                                                           "missing_alert_id"),
                        (b'{"alert_id": "a", "verdict": "maybe"}', "bad_verdict")):
        with pytest.raises(InvalidFeedback) as exc:
            parse_feedback(raw)
        assert exc.value.reason == reason
    assert "false_positive, true_positive" in str(pytest.raises(InvalidFeedback, parse_feedback,
                                                                {"alert_id": "a", "verdict": "x"}).value)


def test_vector_travels_with_a_raised_alert_and_is_removed_before_publishing() -> None:
    alert = {"alert_id": "a", "kind": "event_anomaly"}
    vec = np.array([3.0, 4.0, 0.0], dtype=np.float32)
    wire = json.loads(json.dumps(attach_vector(dict(alert), "session", vec)))
    space, got = take_vector(wire)
    assert wire == alert and space == "session"
    assert np.allclose(got, [0.6, 0.8, 0.0])
    assert take_vector({"alert_id": "b"}) is None
    assert take_vector(attach_vector({}, "event", np.zeros(3))) is None  # no direction: nothing to compare


def test_memory_suppresses_near_copies_of_a_false_positive_of_the_same_kind_only() -> None:
    rng = np.random.default_rng(3)
    fp = unit(rng.normal(size=16))
    mem = FeedbackMemory(suppress_at=0.97)
    assert mem.add("a1", FALSE_POSITIVE, "event_anomaly", "event", fp, note="scanner")
    assert not mem.add("a1", FALSE_POSITIVE, "event_anomaly", "event", fp)  # idempotent
    assert mem.known("a1", FALSE_POSITIVE) and not mem.known("a1", TRUE_POSITIVE)
    near = unit(fp + 0.05 * unit(rng.normal(size=16)))
    far = unit(rng.normal(size=16))
    m = mem.suppressing("event", "event_anomaly", near)
    assert m is not None and m.alert_id == "a1" and m.similarity >= 0.97 and m.note == "scanner"
    assert mem.suppressing("event", "event_anomaly", far) is None
    assert mem.suppressing("event", "session_anomaly", near) is None  # another kind
    assert mem.suppressing("session", "event_anomaly", near) is None  # another space
    assert mem.confirming("event", near[None, :]) == [None]  # a false positive confirms nothing


def test_a_later_verdict_replaces_the_earlier_one_and_memory_is_bounded() -> None:
    rng = np.random.default_rng(4)
    vecs = unit(rng.normal(size=(5, 8)))
    mem = FeedbackMemory(max_items=3)
    assert mem.add("two-rows", FALSE_POSITIVE, "event_anomaly", "event", vecs[3:5])
    assert mem.suppressing("event", "event_anomaly", vecs[4]).alert_id == "two-rows"
    assert mem.add("a", FALSE_POSITIVE, "event_anomaly", "event", vecs[0])
    assert mem.add("a", TRUE_POSITIVE, "event_anomaly", "event", vecs[0])  # the analyst changed their mind
    assert mem.counts() == {FALSE_POSITIVE: 1, TRUE_POSITIVE: 1}  # "two-rows" and "a"
    assert mem.suppressing("event", "event_anomaly", vecs[0]) is None
    assert mem.confirming("event", vecs[:1])[0].alert_id == "a"
    for i in range(1, 4):
        mem.add(f"b{i}", FALSE_POSITIVE, "event_anomaly", "event", vecs[i])
    assert len(mem) == 3 and not mem.known("two-rows", FALSE_POSITIVE) and not mem.known("a", TRUE_POSITIVE)
    assert mem.suppressing("event", "event_anomaly", vecs[4]) is None  # both rows of the evicted verdict left


def test_memory_snapshot_round_trip() -> None:
    rng = np.random.default_rng(5)
    v = unit(rng.normal(size=(2, 12)))
    mem = FeedbackMemory()
    mem.add("fp", FALSE_POSITIVE, "event_anomaly", "event", v[0])
    mem.add("tp", TRUE_POSITIVE, "session_anomaly", "session", v[1], note="lateral movement")
    copy = FeedbackMemory()
    copy.restore(json.loads(json.dumps(mem.snapshot())))
    assert copy.counts() == mem.counts() and copy.known("tp", TRUE_POSITIVE)
    assert copy.suppressing("event", "event_anomaly", v[0]).alert_id == "fp"
    assert copy.confirming("session", v[1:])[0].note == "lateral movement"


def test_confirmed_score_starts_at_the_threshold_and_reaches_100() -> None:
    assert confirmed_score(0.92, 0.93, 90.0) == 0.0
    assert confirmed_score(0.93, 0.93, 90.0) == pytest.approx(90.0)
    assert confirmed_score(1.0, 0.93, 90.0) == pytest.approx(100.0)
    assert 90.0 < confirmed_score(0.97, 0.93, 90.0) < 100.0


def test_teach_normal_makes_an_identical_event_familiar() -> None:
    rng = np.random.default_rng(6)
    base = ExemplarBaseline(16, k=5)
    base.learn(unit(rng.normal(size=(200, 16))), [str(i) for i in range(200)], [""] * 200)
    odd = unit(rng.normal(size=16))
    before = base.score(odd[None, :])[0].raw
    teach_normal(base, odd, "feedback:a1", "false positive")
    after = base.score(odd[None, :])[0].raw
    assert before > 0.3 and after == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------------------- the pipeline
def ev(i: int, **extra: object) -> bytes:
    return json.dumps({"time": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                       "message": f"Accepted password for u{i % 3} from 10.0.0.{i % 5}",
                       "source": "sshd", "user": f"u{i % 3}", "src_ip": f"10.0.0.{i % 5}", **extra}).encode()


def odd(i: int, message: str = "mimikatz sekurlsa::logonpasswords") -> bytes:
    return json.dumps({"time": f"2026-01-01T01:00:{i % 60:02d}Z", "event_id": f"odd-{message[:8]}-{i}",
                       "message": message, "source": "sysmon", "event_type": "process_start",
                       "host": "ws-7", "user": "u1", "process": "mimikatz.exe"}).encode()


@pytest.fixture()
def warmed() -> Pipeline:
    pipe = build_pipeline(Settings(warmup_events=20), store=None)
    pipe.feedback = FeedbackMemory()
    pipe.process([ev(i) for i in range(400)])
    return pipe


def test_every_raised_alert_carries_its_evidence_vector(warmed: Pipeline) -> None:
    out = warmed.process([odd(1)])
    assert out.alerts and len(out.alert_vectors) == len(out.alerts)
    row = out.accepted[0].row
    assert np.allclose(out.alert_vectors[0], out.vectors[row])


def evidence(pipe: Pipeline, out: BatchOutcome) -> np.ndarray:
    """The alert's vector as first seen and the event re-encoded now (streams/worker/feedback_agent.py)."""
    return np.vstack([out.alert_vectors[0][None, :], pipe.encode_stored([out.accepted[0].event])])


def test_first_sighting_encodes_like_later_copies(warmed: Pipeline) -> None:
    """A verdict on a first sighting covers its copies: new values encode the same from their first sighting
    (encoders/categorical.py); the re-encoded row is kept anyway, for encoders with learned state."""
    outs = [warmed.process([odd(i)]) for i in range(1, 4)]
    first, second, third = (o.vectors[0] for o in outs)
    assert float(first @ second) > 0.999 and float(second @ third) > 0.999
    now = warmed.encode_stored([outs[0].accepted[0].event])[0]
    assert float(now @ first) > 0.999


def test_a_false_positive_makes_its_evidence_normal_and_suppresses_re_sends(warmed: Pipeline) -> None:
    first = warmed.process([odd(1)])
    assert first.alerts, "the odd event must alert before any verdict"
    alert, rows = first.alerts[0], evidence(warmed, first)
    warmed.feedback.add(alert["alert_id"], FALSE_POSITIVE, "event_anomaly", "event", rows)
    warmed.learn_normal(rows, "feedback:" + alert["alert_id"], "false positive")
    again = warmed.process([odd(2)])  # the same evidence, another event id
    sc = warmed.detector.score(again.vectors)[0]
    assert sc.raw < 0.01 and sc.vector_score < 10.0, sc
    # the fleet-wide rare value (a process seen once) may still score: one verdict on one host does not make
    # mimikatz.exe common. Such an alert is what the alerts stage suppresses, as like the false positive:
    for out in (again, warmed.process([odd(3)])):
        for vec in out.alert_vectors:
            m = warmed.feedback.suppressing("event", "event_anomaly", vec)
            assert m is not None and m.alert_id == alert["alert_id"]
    other = warmed.process([odd(4, "vssadmin delete shadows /all /quiet")])  # a different anomaly
    assert other.alerts and warmed.feedback.suppressing("event", "event_anomaly", other.alert_vectors[0]) is None


def test_a_true_positive_raises_similar_events_to_alerts_that_name_it(warmed: Pipeline) -> None:
    def recurring(i: int) -> bytes:  # one copy every 2 minutes: a recurring behaviour the baseline promotes
        doc = json.loads(odd(i))
        doc["time"] = f"2026-01-01T02:{2 * i:02d}:00Z"
        return json.dumps(doc).encode()

    k = warmed.detector.baseline.k
    seen = [warmed.process([recurring(i)]) for i in range(k + 6)]  # until the detector finds it familiar
    assert seen[0].alerts and not seen[-1].alerts, [s.accepted[0].score for s in seen]
    tp_id = seen[0].alerts[0]["alert_id"]
    warmed.feedback.add(tp_id, TRUE_POSITIVE, "event_anomaly", "event", evidence(warmed, seen[0]),
                        note="credential dumping")
    out = warmed.process([recurring(25)])
    acc = out.accepted[0]
    assert acc.alert and acc.score >= warmed.threshold
    doc = out.alerts[0]
    validate_alert(doc)
    assert doc["explanation"]["confirmed_like"]["alert_id"] == tp_id
    assert doc["explanation"]["confirmed_like"]["note"] == "credential dumping"
    assert doc["title"].startswith("Like confirmed alert")
    normal = warmed.process([ev(1000)]).accepted[0]  # unrelated events are not touched
    assert not normal.alert


def test_feedback_cli_rejects_bad_arguments_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["feedback", "6f1c1f3e-8a4b-5d2e-9c7a-2b3d4e5f6a7b", "--verdict", "maybe"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "false_positive, true_positive" in err
    assert cli_main(["feedback", "not-an-id", "--verdict", "fp"]) == 2
    assert "not an alert id" in capsys.readouterr().err
    assert cli_main(["feedback", "6f1c1f3e-8a4b-5d2e-9c7a-2b3d4e5f6a7b"]) == 2  # --verdict is required
    assert "--verdict" in capsys.readouterr().err


def test_screen_drops_alerts_like_a_false_positive_and_keeps_the_rest_with_their_vectors() -> None:
    rng = np.random.default_rng(8)
    fp, other = unit(rng.normal(size=(2, 16)))
    mem = FeedbackMemory()
    mem.add("verdict", FALSE_POSITIVE, "event_anomaly", "event", fp)
    raised = [({"alert_id": "a", "kind": "event_anomaly"}, ("event", fp)),
              ({"alert_id": "b", "kind": "event_anomaly"}, ("event", other)),
              ({"alert_id": "c", "kind": "session_anomaly"}, ("event", fp)),  # another kind
              ({"alert_id": "d", "kind": "entity_drift"}, None)]  # no vector: never suppressed
    kept, vectors, suppressed = screen(mem, raised)
    assert [a["alert_id"] for a in kept] == ["b", "c", "d"]
    assert set(vectors) == {"b", "c"} and np.allclose(vectors["b"][1], other)
    assert [(a["alert_id"], m.alert_id) for a, m in suppressed] == [("a", "verdict")]
    assert screen(None, raised)[0] == [a for a, _ in raised]
