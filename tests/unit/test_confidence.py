"""Confidence of scores and what alerts explain (issue 6: confidence, warm-up, explanations).

Real code end to end: the confidence math, the detector's template/entity counters,
the pipeline's alerts with the real encoder, session alerts' unusual transitions,
entity alerts, the OCSF rendering and the console line; every alert is validated
against alert.v1.json.
"""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from detection.confidence import SeenCounter, age_factor, event_confidence
from detection.detector import NoveltyDetector
from detection.entity_alerts import entity_event_alert
from detection.entity_drift import DriftFinding, entity_drift_alert
from detection.ocsf import to_ocsf
from detection.session_score import SessionScorer, session_alert
from detection.sessions import Session
from schemas.alert import validate_alert
from streams.cli.alert_lines import format_alert_line
from streams.stages.pipeline import Pipeline
from streams.stages.factory import build_pipeline
from streams.config.settings import Settings

# ------------------------------------------------------------------ the math


def test_seen_counter_is_prequential_read_only_and_bounded() -> None:
    c = SeenCounter(capacity=2)
    assert c.seen(["a", "b", "a", None, "a"]) == [0, 0, 1, None, 2]
    assert len(c) == 0 and c.total == 0  # seen() changes nothing
    c.learn(["a", "b", "a", None])
    assert (c.get("a"), c.get("b"), c.total) == (2, 1, 3)
    assert c.seen(["a", "b", "c"]) == [2, 1, 0]
    c.learn(["a"])  # a is now the most recently seen ...
    c.learn(["c"])  # ... so the over-capacity eviction drops b
    assert (c.get("a"), c.get("b"), c.get("c"), len(c), c.total) == (3, 0, 1, 2, 5)
    other = SeenCounter(capacity=2)
    other.restore(json.loads(json.dumps(c.snapshot())))
    assert other.seen(["a", "c", "b"]) == [3, 1, 0] and other.total == 5
    other.learn(["d"])  # the restored recency order still decides what goes
    assert other.get("a") == 0 and other.get("c") == 1 and other.get("d") == 1


def test_confidence_increases_with_support_history_and_age() -> None:
    base: dict[str, Any] = {"history": 5000, "warmup": 200, "neighbours": 3, "support": 10, "k": 5,
                            "template_seen": 50, "template_total": 5000, "entity_seen": 50}
    by_support = [event_confidence(**{**base, "support": s}).confidence for s in range(1, 8)]
    by_history = [event_confidence(**{**base, "history": h}).confidence for h in (0, 100, 500, 999, 1000, 4000)]
    by_template = [event_confidence(**{**base, "template_seen": t}).confidence for t in range(13)]
    by_entity = [event_confidence(**{**base, "entity_seen": e}).confidence for e in range(25)]
    for series in (by_support, by_history, by_template, by_entity):
        assert all(b >= a for a, b in pairwise(series)), series
        assert series[0] < series[-1] == 1.0
    assert by_support[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # support / k
    assert by_template[0] == pytest.approx(0.5) and by_entity[0] == pytest.approx(0.5)  # first sighting
    assert age_factor(0, 10) == 0.5 and age_factor(5, 10) == 0.75 and age_factor(10, 10) == age_factor(99, 10) == 1.0
    assert age_factor(None, 10) == 1.0 and age_factor(0, 0) == 1.0
    young = event_confidence(**{**base, "template_seen": 0, "entity_seen": 2})
    assert young.confidence == pytest.approx(0.5 * (0.5 + 0.5 * 2 / 20))
    assert young.confidence == pytest.approx(np.prod(list(young.factors.values())))


def test_warmup_reasons_name_every_warmup_that_applies() -> None:
    def reasons(**kw: Any) -> tuple[str, ...]:
        args = {"history": 5000, "warmup": 200, "neighbours": 3, "support": 10, "k": 5, "template_seen": 50,
                "entity_seen": 50}
        return event_confidence(**{**args, **kw}).warmup_reasons

    assert reasons() == ()
    assert reasons(history=199) == ("stream",) and reasons(history=200) == ()
    assert reasons(template_seen=9) == ("template",) and reasons(template_seen=10) == ()
    assert reasons(entity_seen=19) == ("entity",) and reasons(entity_seen=20) == ()
    assert reasons(history=3, template_seen=0, entity_seen=0) == ("stream", "template", "entity")
    assert reasons(template_seen=None, entity_seen=None) == ()  # not known: no claim either way


# ------------------------------------------------------------------ the event detector


def _unit(rng: np.random.Generator, centre: int, n: int, dim: int = 16, noise: float = 0.02) -> np.ndarray:
    v = noise * rng.standard_normal((n, dim))
    v[:, centre] += 1.0
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _feed(det: NoveltyDetector, vecs: np.ndarray, templates: list[str], entities: list[str], start: int) -> list:
    scores = det.score(vecs, templates=templates, entities=entities)
    ids = [f"e{start + i}" for i in range(len(vecs))]
    det.learn(vecs, scores, ids, ids, [([], [])] * len(vecs))
    det.observe(templates, entities)
    return scores


def test_a_new_template_and_entity_keep_their_score_and_are_marked_warmup() -> None:
    rng = np.random.default_rng(7)
    det = NoveltyDetector(16, k=5, warmup=50)
    first = _feed(det, _unit(rng, 0, 20), ["A"] * 20, ["user:alice"] * 20, 0)
    assert first[0].warmup and first[0].warmup_reasons == ("stream", "template", "entity")
    assert first[-1].warmup_reasons == ("stream", "entity")  # 19 sightings: template mature (10), entity not (20)
    for b in range(10):
        _feed(det, _unit(rng, 0, 50), ["A"] * 50, ["user:alice"] * 50, 20 + 50 * b)
    batch = np.concatenate([_unit(rng, 0, 1), _unit(rng, 9, 2)])
    scores = det.score(batch, templates=["A", "B", "B"], entities=["user:alice", "user:mallory", "user:mallory"])
    normal, novel, again = scores
    assert normal.warmup_reasons == () and not normal.warmup and normal.confidence == 1.0
    assert novel.warmup_reasons == ("template", "entity") and not novel.warmup  # may alert
    assert novel.score > 90 and novel.confidence < normal.confidence  # a real score, lower confidence
    assert novel.basis is not None and normal.basis is not None and again.basis is not None
    assert (novel.basis.template_seen, novel.basis.entity_seen) == (0, 0)
    assert (again.basis.template_seen, again.basis.entity_seen) == (1, 1)  # prequential inside the batch
    assert normal.basis.template_seen == 520 and normal.basis.template_share == pytest.approx(1.0)
    assert again.basis.template_share == pytest.approx(1 / 522)
    assert novel.basis.factors["template"] == novel.basis.factors["entity"] == 0.5


def test_detector_counters_survive_a_snapshot_and_old_snapshots_restart_warmup() -> None:
    rng = np.random.default_rng(3)
    det = NoveltyDetector(16, k=5, warmup=10)
    _feed(det, _unit(rng, 0, 30), ["A"] * 30, ["host:h1"] * 30, 0)
    snap = det.snapshot()
    meta = json.loads(json.dumps(snap["meta"]))
    other = NoveltyDetector(16, k=5, warmup=10)
    other.restore({"meta": meta, "arrays": snap["arrays"]})
    probe = _unit(rng, 0, 1)
    a = det.score(probe, templates=["A"], entities=["host:h1"])[0]
    b = other.score(probe, templates=["A"], entities=["host:h1"])[0]
    assert a.basis == b.basis and a.basis is not None and a.basis.template_seen == 30
    old = NoveltyDetector(16, k=5, warmup=10)
    old.restore({"meta": {k: v for k, v in meta.items() if k not in ("templates_seen", "entities_seen")},
                 "arrays": snap["arrays"]})
    c = old.score(probe, templates=["A"], entities=["host:h1"])[0]
    assert c.score == a.score and c.warmup_reasons == ("template", "entity")


# ------------------------------------------------------------------ event alerts from the pipeline


def _line(i: int, **extra: object) -> bytes:
    return json.dumps({"time": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                       "message": f"Accepted password for u{i % 3}", "source": "sshd", "user": f"u{i % 3}",
                       "process": "sshd", **extra}).encode()


@pytest.fixture(scope="module")
def trained() -> Pipeline:
    pipeline = build_pipeline(Settings(warmup_events=5), store=None)
    pipeline.process([_line(i) for i in range(300)])
    return pipeline


def test_event_alert_of_a_new_template_and_user_says_warmup_and_why(trained: Pipeline) -> None:
    odd = json.dumps({"time": "2026-01-01T01:00:00Z", "message": "mimikatz sekurlsa::logonpasswords",
                      "source": "sysmon", "event_type": "process_start", "process": "mimikatz.exe",
                      "user": "eve"}).encode()
    out = trained.process([odd])
    assert out.accepted[0].alert and len(out.alerts) == 1
    alert = out.alerts[0]
    validate_alert(alert)
    assert alert["score"] > 90 and alert["warmup"] is False
    assert alert["warmup_reasons"] == ["template", "entity"]
    basis = alert["confidence_basis"]
    assert basis["template_seen"] == 0 and basis["entity_seen"] == 0 and basis["history"] == 300
    assert basis["factors"]["template"] == basis["factors"]["entity"] == 0.5
    assert alert["confidence"] == pytest.approx(np.prod(list(basis["factors"].values())), abs=1e-3)
    assert alert["confidence"] <= 0.25
    assert alert["explanation"]["template_frequency"] == {"count": 0, "share": 0.0}
    assert basis["support"] >= basis["neighbours"] == len(alert["explanation"]["neighbours"])
    assert basis["density"] == pytest.approx(basis["support"] / basis["neighbours"], abs=1e-3)
    assert format_alert_line(alert).endswith("(warm-up: template, entity)")
    finding = to_ocsf(alert)
    assert finding["unmapped"]["secstream"]["warmup_reasons"] == ["template", "entity"]
    assert finding["unmapped"]["secstream"]["confidence_basis"] == basis
    assert format_alert_line(finding).endswith("(warm-up: template, entity)")


def test_event_alert_on_a_known_template_counts_its_frequency(trained: Pipeline) -> None:
    seen = trained.detector.templates_seen
    tid = trained.encoder.encode([json.loads(_line(301))]).template_ids[0]
    before, total = seen.get(tid), seen.total
    assert before >= 300
    # first-seen categorical values on a known line (several: one alone moves an untrained 8-d field vector by
    # a random amount, which may or may not reach the threshold)
    out = trained.process([_line(301, process="mimikatz.exe", event_type="process_start", outcome="failure",
                                 severity="critical")])
    assert len(out.alerts) == 1
    alert = out.alerts[0]
    validate_alert(alert)
    assert alert["explanation"]["template_id"] == tid
    assert alert["explanation"]["template_frequency"] == {"count": before, "share": pytest.approx(before / total, rel=1e-3)}
    assert alert["warmup_reasons"] == [] and alert["confidence"] == 1.0
    assert "warm-up" not in format_alert_line(alert)


def test_stream_warmup_scores_are_flagged_and_never_alert() -> None:
    pipeline = build_pipeline(Settings(warmup_events=50), store=None)
    out = pipeline.process([_line(i) for i in range(10)])
    assert not out.alerts and all(r.warmup for r in out.accepted)
    probe = pipeline.encoder.encode([json.loads(_line(11))])
    sc = pipeline.detector.score(probe.dense, templates=probe.template_ids, entities=["user:u2"])[0]
    assert sc.warmup and "stream" in sc.warmup_reasons and sc.confidence < 0.1


# ------------------------------------------------------------------ session alerts


def _session(sid: str, tids: list[str], dim: int = 8) -> Session:
    vec = np.zeros(dim)
    vec[sum(map(ord, tids[-1])) % dim] = 1.0
    s = Session(session_id=sid, key=sid, entity=("session", sid), start=0.0, end=float(len(tids)),
                events=len(tids), vec=vec, event_ids=[f"{sid}-{i}" for i in range(len(tids))])
    for tid in tids:
        s.bag[tid] += 1
        s.sequence.append(tid)
        s.templates[tid] = f"template {tid}"
    return s


def test_session_alert_lists_its_unusual_transitions_and_template_warmup() -> None:
    sc = SessionScorer(8, k=5, bag_dim=32, warmup=20)
    for i in range(300):
        sc.process(_session(f"n{i}", ["open", "read", "close"]))
    odd = _session("odd", ["open", "close", "read", "wipe"])
    res = sc.score(odd)
    alert = session_alert(odd, res, model_version="test")
    validate_alert(alert)
    transitions = alert["explanation"]["transitions"]
    assert 1 <= len(transitions) <= 3
    surprises = [t["surprise"] for t in transitions]
    assert surprises == sorted(surprises, reverse=True)
    assert all(t["probability"] <= 0.1 for t in transitions)
    worst = res.worst_transition
    assert (transitions[0]["from_id"], transitions[0]["to_id"]) == worst[:2]
    assert transitions[0]["probability"] == pytest.approx(worst[2], rel=1e-4)
    assert transitions[0]["surprise"] == pytest.approx(res.surprise, abs=1e-3)
    pairs = {(t["from"], t["to"]) for t in transitions}
    assert ("template open", "template close") in pairs and ("template read", "template wipe") in pairs
    assert ("template read", "template close") not in pairs  # the usual step is not listed
    # the rarest template was never in a session: template warm-up, still scored
    assert alert["explanation"]["template_id"] == "wipe"
    assert alert["explanation"]["template_frequency"] == {"count": 0, "share": 0.0}
    assert alert["warmup_reasons"] == ["template"] and res.score > 0
    assert alert["confidence_basis"]["history"] == 300 and alert["confidence_basis"]["factors"]["template"] == 0.5
    normal = session_alert(_session("n", ["open", "read", "close"]), sc.score(_session("n", ["open", "read", "close"])),
                           model_version="test")
    validate_alert(normal)
    assert normal["explanation"]["transitions"] == [] and normal["warmup_reasons"] == []
    assert normal["confidence"] > alert["confidence"]


def test_ranked_transitions_agree_with_the_worst_surprise() -> None:
    sc = SessionScorer(8, k=5, bag_dim=32, warmup=0)
    for i in range(50):
        sc.process(_session(f"n{i}", ["a", "b", "a", "b", "c"]))
    seq = ["a", "c", "a", "c", "b"]
    _, worst = sc.markov.surprise(seq)
    ranked = sc.markov.ranked(seq)
    assert ranked[0] == worst and len(ranked) == len(set(zip(["^", *seq], [*seq, "$"])))
    assert [p for _, _, p in ranked] == sorted(p for _, _, p in ranked)


# ------------------------------------------------------------------ entity alerts


def test_entity_alerts_carry_their_warmup_and_basis() -> None:
    finding = DriftFinding(key=("user", "bob"), version=3, window_start=0.0, window_end=60.0, score=96.0, move=0.4,
                           move_ratio=4.0, peer=None, peer_ratio=None, peer_group="g", history=1, warmup=True,
                           components={"text": 1.0}, event_ids=["e1"])
    drift = entity_drift_alert(finding, model_version="test")
    validate_alert(drift)
    assert drift["warmup_reasons"] == ["stream", "entity"] and drift["confidence"] == 0.4
    assert drift["confidence_basis"] == {"history": 1, "factors": {"entity": 0.4}}
    grown = entity_drift_alert(DriftFinding(**{**finding.__dict__, "history": 9, "warmup": False}),
                               model_version="test")
    validate_alert(grown)
    assert grown["warmup_reasons"] == [] and grown["confidence"] == 1.0
    v = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    ref = np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32)
    alert = entity_event_alert(event={"source": "sshd", "message": "x"}, event_id="e9", time="2026-01-01T00:00:00Z",
                               entity=("user", "bob"), score=95.0, entity_score=99.0, event_score=60.0, distance=0.9,
                               version=3, basis="own", vector=v, reference=ref, parts={"text": slice(0, 4)},
                               template=None, template_id=None, model_version="test", confidence=0.6)
    validate_alert(alert)
    assert alert["warmup_reasons"] == ["entity"] and alert["confidence_basis"]["entity_seen"] == 3
    assert format_alert_line(alert).endswith("(warm-up: entity)")


def test_console_line_marks_low_confidence_alike_in_both_formats() -> None:
    from detection.alerts import event_alert

    alert = event_alert(event={"event_id": "e1", "time": "2026-01-01T00:00:00Z", "message": "m", "user": "u"},
                        entity=("user", "u"), score=93.0, confidence=0.305, warmup=False, components={"text": 1.0},
                        neighbours=[], terms=[], template=None, template_id=None, model_version="t",
                        warmup_reasons=[], confidence_basis={"history": 900, "factors": {"stream": 0.9}})
    validate_alert(alert)
    line = format_alert_line(alert)
    assert line.endswith(("(low confidence 30%)", "(low confidence 31%)"))
    assert format_alert_line(to_ocsf(alert)) == line
    assert "confidence" not in format_alert_line({**alert, "confidence": 0.9})
