"""The pipeline function shared by the worker and `replay` (real encoder, no store)."""

from __future__ import annotations

import itertools
import json

import pytest

from streams.stages.pipeline import PROCESSING_ERROR, Accepted, Pipeline, Rejected
from streams.stages.factory import build_pipeline
from streams.config.settings import Settings


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return build_pipeline(Settings(warmup_events=5), store=None)


def ev(i: int, **extra: object) -> bytes:
    return json.dumps({"time": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z", "message": f"Accepted password for u{i % 3}",
                       "source": "sshd", "user": f"u{i % 3}", **extra}).encode()


def test_every_input_gets_one_result_in_order(pipeline: Pipeline) -> None:
    values = [ev(1), b"not json", ev(2), b'{"time": 1}', ev(3)]
    out = pipeline.process(values)
    assert [r.index for r in out.results] == [0, 1, 2, 3, 4]
    assert [type(r) for r in out.results] == [Accepted, Rejected, Accepted, Rejected, Accepted]
    rej = out.rejected
    assert rej[0].reason == "not_json" and rej[1].reason == "missing_field"
    dlq = rej[0].dlq_record()
    assert dlq["raw"] == "not json" and dlq["raw_encoding"] == "utf-8" and dlq["detail"]
    assert Rejected(0, "not_utf8", "x", b"\xff\x00").dlq_record()["raw_encoding"] == "base64"


def test_unexpected_failure_rejects_only_the_failing_event(pipeline: Pipeline, monkeypatch) -> None:
    real = pipeline.encoder.encode

    def flaky(docs):  # fails for any batch holding the poisoned event
        if any(d.get("host") == "poison" for d in docs):
            raise RuntimeError("boom")
        return real(docs)

    monkeypatch.setattr(pipeline.encoder, "encode", flaky)
    out = pipeline.process([ev(10), ev(11, host="poison"), ev(12)])
    kinds = [(type(r).__name__, getattr(r, "reason", None)) for r in out.results]
    assert kinds == [("Accepted", None), ("Rejected", PROCESSING_ERROR), ("Accepted", None)]
    assert "RuntimeError: boom" in out.results[1].detail


def test_a_re_sent_event_is_recognised_not_learned_twice(pipeline: Pipeline) -> None:
    """At-least-once: the same event (same id) again is scored but not learned, stored or alerted again."""
    pipeline.process([ev(i) for i in range(100, 400)])  # past warm-up, calibration filled
    odd = json.dumps({"time": "2026-01-01T01:00:00Z", "message": "mimikatz sekurlsa::logonpasswords",
                      "source": "sysmon", "event_type": "process_start", "process": "mimikatz.exe"}).encode()
    first = pipeline.process([odd])
    seen = pipeline.detector.baseline.seen
    runs = [pipeline.process([odd]).accepted[0] for _ in range(pipeline.detector.baseline.k + 2)]
    assert first.accepted[0].alert and not first.accepted[0].repeated
    assert len({r.event_id for r in runs} | {first.accepted[0].event_id}) == 1
    assert all(r.repeated and not r.alert and r.row == 0 for r in runs)  # its row: it still joins its session
    assert all(r.score > 90 for r in runs), [r.score for r in runs]  # never became familiar by repetition
    assert pipeline.detector.baseline.seen == seen
    twice = pipeline.process([ev(5000), ev(5000)]).accepted  # the same id twice in one batch
    assert [r.repeated for r in twice] == [False, True]


def test_copies_of_an_anomaly_with_their_own_ids_keep_alerting(pipeline: Pipeline) -> None:
    base = {"time": "2026-01-01T02:00:00Z", "message": "vssadmin delete shadows /all /quiet", "source": "sysmon",
            "event_type": "process_start", "process": "vssadmin.exe"}

    def copy(i: int) -> bytes:
        return json.dumps({**base, "event_id": f"copy-{i}"}).encode()

    k = pipeline.detector.baseline.k
    runs = [pipeline.process([copy(i)]).accepted[0] for i in range(k + 2)]
    scores = [r.score for r in runs]
    # the gate (on by default) holds it out of the baseline: copies at one time never become familiar
    assert all(r.alert for r in runs) and min(scores) > 90, scores
    assert pipeline.detector.baseline.pending() >= 1
    level, pipeline.detector.admit_below = pipeline.detector.admit_below, None
    try:  # without the gate, k copies make it familiar
        again = [pipeline.process([copy(100 + i)]).accepted[0].score for i in range(k + 2)]
        assert all(b <= a for a, b in itertools.pairwise(again)), again  # never more novel when repeated
        assert again[-1] < 50, again
    finally:
        pipeline.detector.admit_below = level
