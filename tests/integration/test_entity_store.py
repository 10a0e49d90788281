"""The ``entities`` collection on the real Qdrant engine (qdrant-edge, in-process): every committed entity
version is a point, its history is queryable in version order, and a replayed window rewrites the same points."""

from __future__ import annotations

from pathlib import Path

import pytest

from detection.entity_tracker import EntityTracker
from streams.store.entity_points import ENTITIES, entity_history, similar_entities
from streams.stages.entity_stage import EntityStage
from streams.store import EdgeStore
from tests.unit.test_entities import two_behaviours
from tests.unit.test_entity_stage import _steps

pytestmark = pytest.mark.integration


def _run(store: EdgeStore) -> EntityStage:
    events, vectors = two_behaviours(windows=8, change_at=5)
    stage = EntityStage(lambda: EntityTracker(16, types=("user",), lateness_s=0), store=store, model_version="v")
    stage.observe(_steps(events), vectors)
    stage.flush()
    return stage


def test_entity_versions_are_points_with_a_queryable_history(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "q") as store:
        stage = _run(store)
        tr = stage.tracker(0)
        assert store.count(ENTITIES) == int(sum(tr.table.version[tr.table.row(k)] for k in tr.table.keys()))
        view = tr.current(("user", "u"))
        assert view is not None and view.version == 8
        history = entity_history(store, ("user", "u"), view.version)
        assert [h.payload["version"] for h in history] == list(range(1, 9))
        ends = [h.payload["window_end_epoch"] for h in history]
        assert ends == sorted(ends) and len(set(ends)) == 8
        assert history[0].payload["new"] and not history[1].payload["new"]
        assert {h.payload["entity_id"] for h in history} == {"u"} and history[-1].payload["interactions"] == 4
        # the abrupt change at window 5 (versions 6 and 7 catch up with it) moves u far more than before
        move = {h.payload["version"]: h.payload["move"] for h in history}
        assert min(move[6], move[7]) > 3 * max(move[4], move[5])
        hits = similar_entities(store, view.vector, 3)
        assert hits[0].payload["entity_id"] == "u" and hits[0].payload["version"] == 8
        before = store.count(ENTITIES)
        _run(store)  # the same windows again: the same point ids
        assert store.count(ENTITIES) == before
