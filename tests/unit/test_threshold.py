"""The alert threshold of a score kind (detection.threshold): target-rate quantile, floor, cap, warm-up,
forgetting, state; and that the event pipeline, the session stage and the entity stage decide with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detection.entity_tracker import EntityTracker
from detection.session_score import SessionScorer
from detection.sessions import Sessionizer
from detection.threshold import AlertThreshold, default_warmup
from schemas.alert import validate_alert
from streams.stages.entity_stage import EntityStage, EntityStep
from streams.stages.factory import build_pipeline, build_threshold
from streams.stages.session_stage import SessionStage
from streams.config.settings import Settings
from streams.stages.snapshots import load_thresholds, save_thresholds
from tests.unit.test_entities import T0, iso, two_behaviours


def _feed(th: AlertThreshold, scores: np.ndarray, batch: int = 500) -> np.ndarray:
    """Decide each batch with the threshold in effect before it, then observe it; returns the alert flags."""
    out = np.zeros(scores.size, dtype=bool)
    for i in range(0, scores.size, batch):
        part = scores[i:i + batch]
        out[i:i + batch] = part >= th.value
        th.observe(part)
    return out


def test_converges_to_the_rate_quantile_of_a_known_distribution() -> None:
    rng = np.random.default_rng(1)
    th = AlertThreshold(90.0, mode="adaptive", rate=0.01, half_life=20_000)
    alerts = _feed(th, rng.uniform(0, 100, 60_000))
    assert th.value == pytest.approx(99.0, abs=0.3)  # P(U[0,100] >= 99) = 1 %
    assert 0.007 <= alerts[30_000:].mean() <= 0.013  # the realized alert rate is the target
    # a calibrated-tail-like score, P(score >= s) = 10^(-s/50): the 5 % quantile is 50·log10(20) = 65.05
    tail = np.minimum(100.0, -50.0 * np.log10(rng.uniform(0, 1, 60_000)))
    th2 = AlertThreshold(0.0, mode="adaptive", rate=0.05)
    _feed(th2, tail)
    assert th2.value == pytest.approx(65.05, abs=1.0)


def test_adapts_when_the_distribution_shifts_and_back() -> None:
    rng = np.random.default_rng(2)
    th = AlertThreshold(90.0, mode="adaptive", rate=0.01, half_life=2_000)
    quiet = _feed(th, rng.uniform(0, 80, 10_000))
    assert th.value == 90.0 and not quiet.any()  # nothing reaches the floor: the floor holds
    noisy_scores = rng.uniform(0, 100, 20_000)
    noisy = _feed(th, noisy_scores)
    assert th.value == pytest.approx(99.0, abs=0.5)
    assert noisy[-10_000:].mean() < 0.015  # the realized rate is the target
    assert (noisy_scores[-10_000:] >= 90).mean() > 0.09  # where the floor alone would alert on 10 %
    _feed(th, rng.uniform(0, 80, 20_000))  # ten half-lives of quiet: back to the floor
    assert th.value == 90.0


def test_the_floor_and_the_cap_bound_it() -> None:
    th = AlertThreshold(90.0, mode="adaptive", rate=0.01, warmup=100)
    _feed(th, np.full(5_000, 40.0))
    assert th.value == 90.0 and th.estimate == 90.0  # a quiet stream keeps the floor
    capped = np.where(np.arange(5_000) % 5 == 0, 100.0, 95.0)  # 20 % score exactly 100: no rate fits
    top = th.fresh()
    alerts = _feed(top, capped)
    assert top.value == 100.0  # at the cap, never above: the items scoring 100 still alert
    assert alerts[-1_000:].sum() == 200 and top.share_at(100.0) == pytest.approx(0.2, abs=0.01)


def test_warmup_holds_the_floor_and_fixed_mode_only_tracks() -> None:
    assert default_warmup(0.01) == 2_000 and default_warmup(0.5) == 200
    th = AlertThreshold(90.0, mode="adaptive", rate=0.01, warmup=1_000)
    th.observe(np.full(999, 99.0))
    assert th.value == 90.0  # 999 items seen: still warming up
    th.observe([99.0])
    assert th.value > 99.0
    fixed = AlertThreshold(90.0, mode="fixed", rate=0.01, warmup=1_000)
    fixed.observe(np.full(1_000, 99.0))
    assert fixed.value == 90.0 and fixed.estimate > 99.0  # fixed decides at the floor, still says what adaptive would
    assert fixed.alerts(90.0) and not th.alerts(90.0)


def test_batched_and_one_by_one_observation_agree() -> None:
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 100, 3_000)
    a = AlertThreshold(90.0, mode="adaptive", rate=0.02, half_life=500, warmup=0)
    b = a.fresh()
    a.observe(scores)
    for s in scores:
        b.observe([s])
    assert a.snapshot()["bins"] == b.snapshot()["bins"]
    assert np.allclose(a.snapshot()["weights"], b.snapshot()["weights"]) and a.value == b.value


def test_snapshot_round_trip_through_json() -> None:
    rng = np.random.default_rng(4)
    th = AlertThreshold(90.0, mode="adaptive", rate=0.01, half_life=5_000)
    _feed(th, rng.uniform(0, 100, 8_000))
    copy = th.fresh()
    copy.restore(json.loads(json.dumps(th.snapshot())))
    assert copy.value == th.value and copy.seen == th.seen
    more = rng.uniform(0, 100, 3_000)
    assert (_feed(copy, more) == _feed(th, more)).all() and copy.value == th.value
    with pytest.raises(ValueError):
        AlertThreshold(resolution=0.1).restore(th.snapshot())
    with pytest.raises(ValueError):
        copy.restore({**th.snapshot(), "bins": [10_000], "weights": [1.0]})


def test_the_worker_state_keeps_each_kinds_threshold(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    kinds = {k: AlertThreshold(90.0, mode="adaptive", rate=0.01, warmup=100) for k in ("event", "session", "entity")}
    for i, th in enumerate(kinds.values()):
        _feed(th, rng.uniform(0, 100 - 3 * i, 3_000))  # three different distributions
    save_thresholds(tmp_path, "m1", kinds)
    back = {k: th.fresh() for k, th in kinds.items()}
    assert load_thresholds(tmp_path, "m1", back) == 3
    assert {k: th.value for k, th in back.items()} == {k: th.value for k, th in kinds.items()}
    assert len({th.value for th in back.values()}) == 3
    other = {k: th.fresh() for k, th in kinds.items()}
    assert load_thresholds(tmp_path, "m2", other) == 0  # scores of another model version: start again
    assert all(th.value == 90.0 and th.seen == 0 for th in other.values())
    (tmp_path / "thresholds.json").write_text("{not json", encoding="utf-8")
    assert load_thresholds(tmp_path, "m1", other) == 0 and load_thresholds(tmp_path / "none", "m1", other) == 0


@pytest.mark.parametrize("kw", [{"mode": "auto"}, {"floor": 101.0}, {"rate": 0.0}, {"rate": 1.0},
                                {"half_life": 0.0}, {"warmup": -1}])
def test_rejects_bad_configuration(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AlertThreshold(**kw)


def test_settings_build_it() -> None:
    th = build_threshold(Settings(alert_threshold=85, alert_threshold_mode="adaptive", alert_rate=0.002,
                                  alert_threshold_half_life=1_000))
    assert (th.floor, th.mode, th.rate, th.half_life, th.warmup) == (85.0, "adaptive", 0.002, 1_000.0, 10_000)
    assert build_threshold(Settings()).mode == "fixed" and build_threshold(Settings()).value == 90.0


# ------------------------------------------------------------------ the stages decide with it


def test_the_event_pipeline_decides_with_it_and_feeds_it() -> None:
    """The bundled sample through an adaptive pipeline: it alerts on fewer events than the floor would, each
    alert reached the threshold learned from earlier batches, and every scored event is learned."""
    from streams.sample import iter_sample

    values = list(iter_sample())
    pipeline = build_pipeline(Settings(alert_threshold_mode="adaptive", alert_rate=0.005), store=None)
    assert pipeline.alert_threshold.adaptive and pipeline.alert_threshold.warmup == 4_000
    # the sample has ~6k scored events: a shorter warm-up lets the threshold act on most of them
    th = pipeline.alert_threshold = AlertThreshold(90.0, mode="adaptive", rate=0.005, warmup=1_000)
    alerts: list[dict[str, Any]] = []
    at_floor = learned = 0
    raised = False
    for i in range(0, len(values), 500):
        before = pipeline.threshold
        raised = raised or before > th.floor
        out = pipeline.process(values[i:i + 500])
        scored = [r for r in out.accepted if not r.warmup]
        assert [r.alert for r in out.accepted] == [not r.warmup and r.score >= before for r in out.accepted]
        learned += len(scored)
        at_floor += sum(r.score >= th.floor for r in scored)
        alerts += out.alerts
        assert all(a["threshold"] == round(before, 2) and a["score"] >= before - 0.05 for a in out.alerts)
    assert raised and th.seen == learned
    again = pipeline.process(values[-500:])  # re-delivered: scored, not learned, not counted again
    assert all(r.repeated for r in again.accepted) and not again.alerts and th.seen == learned
    assert 0 < len(alerts) < at_floor  # the learned threshold rose above the floor: fewer alerts
    for a in alerts[:3]:
        validate_alert(a)


def test_the_session_stage_learns_closed_sessions_only_after_warmup() -> None:
    scorer = SessionScorer(8, warmup=5, bag_dim=16, invariants=False)
    stage = SessionStage(scorer, lambda: Sessionizer(gap_s=60), threshold=AlertThreshold(90.0, mode="adaptive"),
                         model_version="test")
    vec = np.eye(8, dtype=np.float32)
    closed = 0
    for i in range(30):
        t = 100.0 * i
        events = [{"time": int((t + k) * 1000), "session_id": f"s{i}", "event_id": f"s{i}-{k}"} for k in range(3)]
        out = stage.observe(events, vec[[1, 2, 3]], ["t1", "t2", "t3"], ["a", "b", "c"], [0.0] * 3)
        closed += sum(not c.result.warmup for c in out.closed)
    closed += sum(not c.result.warmup for c in stage.flush().closed)
    assert closed == 25 and stage.alert_threshold.seen == 25 and stage.threshold == 90.0  # still warming up


def _steps(events: list[dict[str, Any]], score: float) -> list[EntityStep]:
    return [EntityStep(("user", e["user"]), e["time"], e["event_id"], score, False, "t1", "login <*>",
                       {"event_type": "authentication", "user": e["user"], "message": "m"}) for e in events]


@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_the_entity_stage_decides_joined_scores_with_it(mode: str) -> None:
    """Same stream, same probe: the joined score reaches the floor; it alerts unless the entity kind's
    learned threshold is above it (a stream where 5 % of the joined scores were 96)."""
    events, vectors = two_behaviours(windows=10, change_at=99)
    th = AlertThreshold(90.0, mode=mode, rate=0.01, warmup=100)  # type: ignore[arg-type]
    stage = EntityStage(lambda: EntityTracker(16, types=("user",), lateness_s=0), model_version="v1", warmup=50,
                        threshold=th)
    steps = _steps(events, score=10.0)
    for j, s in enumerate(steps):
        s.score = 96.0 if j % 20 == 0 else 10.0
        s.alerted = s.score >= 90  # as if the event stage had alerted on them
    out = stage.observe(steps, vectors)
    assert th.seen == len({s.event_id for s in steps})
    assert th.estimate > 95.0 and stage.threshold == (th.estimate if mode == "adaptive" else 90.0)
    other1 = vectors[[i for i, e in enumerate(events) if e["user"] == "other1"][-1]]
    probe = _steps([{"user": "u", "time": iso(T0 + 300 * 11), "event_id": "x-u"}], score=35.0)  # joined: about 92
    out = stage.observe(probe, other1[None, :])
    joined = out.scores["x-u"][0]
    assert 90.0 <= joined < th.estimate
    if mode == "fixed":
        assert out.event_alerts == 1 and out.alerts[0]["threshold"] == 90.0
        validate_alert(out.alerts[0])
    else:
        assert out.event_alerts == 0
