"""Worker state snapshots on disk (streams/stages/snapshots.py): the pipeline's and the session scorer's
state round-trip through safetensors + JSON, and a snapshot of another model version is ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streams.stages.factory import build_pipeline, build_session_stage
from streams.sample import iter_sample
from streams.config.settings import Settings
from streams.stages.snapshots import load_session_state, load_state, save_session_state, save_state

pytestmark = pytest.mark.integration


def test_pipeline_and_session_state_round_trip(tmp_path: Path) -> None:
    settings = Settings()
    pipeline = build_pipeline(settings, store=None)
    stage = build_session_stage(settings, pipeline, store=None)
    values = list(iter_sample())[:1500]
    out = pipeline.process(values)
    acc = [r for r in out.accepted if r.event is not None]
    assert out.vectors is not None
    stage.observe([r.event for r in acc], out.vectors[[r.row for r in acc]], [r.template_id or "" for r in acc],
                  [r.template or "" for r in acc], [r.score for r in acc])
    stage.flush()
    assert stage.scorer.seen > 0
    save_state(pipeline, tmp_path)
    save_session_state(stage.scorer, tmp_path, pipeline.model_version)

    fresh = build_pipeline(settings, store=None)
    fresh_stage = build_session_stage(settings, fresh, store=None)
    assert load_state(fresh, tmp_path) and load_session_state(fresh_stage.scorer, tmp_path, fresh.model_version)
    assert fresh.detector.baseline.seen == pipeline.detector.baseline.seen == len(acc)
    assert fresh_stage.scorer.seen == stage.scorer.seen
    assert len(fresh.recent) == len(acc)  # the learned event ids came back with the state they are in
    again = fresh.process(values[:10]).accepted
    assert all(r.repeated and not r.alert for r in again) and fresh.detector.baseline.seen == len(acc)
    nxt = list(iter_sample())[1500:1700]
    assert np.allclose([r.score for r in fresh.process(nxt).accepted], [r.score for r in pipeline.process(nxt).accepted])

    other = build_session_stage(settings, fresh, store=None)
    assert not load_session_state(other.scorer, tmp_path, "another-model")
    assert other.scorer.seen == 0
    assert not load_state(fresh, tmp_path / "missing")
