"""Entity state as changelog records (detection.entity_records): a tracker rebuilt from the latest value of
each record continues exactly as the original, records stay small and deletions keep the table bounded."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from detection.entity_records import META, load_records, take_records
from detection.entity_tracker import EntityTracker
from tests.unit.test_entities import two_behaviours


def _changelog(tracker: EntityTracker, table: dict[str, Any], batches: list[tuple[list[Any], np.ndarray]]) -> int:
    """Process batches, applying each batch's records to ``table`` as a compacted changelog; returns writes."""
    writes = 0
    for events, vectors in batches:
        tracker.process(events, vectors)
        records = take_records(tracker)
        assert records[-1][0] == META  # the meta record goes last
        for key, value in records:
            writes += 1
            if value is None:
                table.pop(key, None)
            else:
                table[key] = json.loads(json.dumps(value))  # plain data, as the changelog carries it
    return writes


def _batches(events: list[Any], vectors: np.ndarray, size: int) -> list[tuple[list[Any], np.ndarray]]:
    return [(events[a:a + size], vectors[a:a + size]) for a in range(0, len(events), size)]


@pytest.mark.parametrize("max_entities", [200, 12])
def test_a_tracker_rebuilt_from_its_records_continues_exactly(max_entities: int) -> None:
    events, vectors = two_behaviours(windows=12, change_at=8)
    half = len(events) // 2 + 7  # mid-window: open accumulators must travel too
    a = EntityTracker(16, max_entities=max_entities)
    table: dict[str, Any] = {}
    _changelog(a, table, _batches(events[:half], vectors[:half], 97))
    assert any(k.startswith("a:") for k in table) and any(k.startswith("e:") for k in table)
    assert any(k.startswith("g:") for k in table)
    assert sum(k.startswith("e:") for k in table) == len(a.table) <= max_entities  # evicted ones deleted
    b = EntityTracker(16, max_entities=max_entities)
    counts = load_records(b, reversed(list(table.values())))  # any order
    assert counts["entities"] == len(a.table) and counts["meta"] == 1
    ra, rb = a.process(events[half:], vectors[half:]), b.process(events[half:], vectors[half:])
    np.testing.assert_array_equal(ra.score, rb.score)
    np.testing.assert_array_equal(ra.version, rb.version)
    assert ra.basis == rb.basis
    for wa, wb in zip(ra.windows + a.flush(), rb.windows + b.flush(), strict=True):
        assert wa.commit.keys == wb.commit.keys
        np.testing.assert_array_equal(wa.commit.versions, wb.commit.versions)
        np.testing.assert_allclose(wa.drift.score, wb.drift.score, atol=1e-9)
        assert [f.key for f in wa.findings] == [f.key for f in wb.findings]
    assert a.stats()["dropped_late"] == b.stats()["dropped_late"]


def test_records_are_per_entity_and_only_what_a_batch_changed() -> None:
    events, vectors = two_behaviours(windows=6, change_at=99)
    tr = EntityTracker(16)
    tr.process(events, vectors)
    first = dict(take_records(tr))
    assert sum(k.startswith("e:") for k in first) == len(tr.table)  # 21 users + 84 addresses
    tail = [dict(events[-1], event_id="again")]
    tr.process(tail, vectors[-1:])  # inside an open window: no commit
    again = take_records(tr)
    keys = [k for k, _ in again]
    assert keys[-1] == META and not any(k.startswith(("e:", "g:")) for k in keys)
    assert 1 <= sum(k.startswith("a:") for k in keys) <= 2  # the event's user and address accumulators
    closed = take_records(tr) + [(k, v) for rep in [tr.flush()] for k, v in take_records(tr)]
    assert any(k.startswith("a:") and v is None for k, v in closed)  # accumulators deleted at close


def test_records_of_another_configuration_are_refused() -> None:
    events, vectors = two_behaviours(windows=3, change_at=99)
    tr = EntityTracker(16)
    tr.process(events, vectors)
    values = [v for _, v in take_records(tr) if v is not None]
    with pytest.raises(ValueError, match="window"):
        load_records(EntityTracker(16, window_s=600), values)
    with pytest.raises(ValueError, match="types"):
        load_records(EntityTracker(16, types=("user",)), values)
