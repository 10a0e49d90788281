"""Recently learned event ids (detection/recent.py)."""

from __future__ import annotations

from detection.recent import RecentIds


def test_repeated_within_and_across_batches_without_state_change() -> None:
    r = RecentIds(capacity=10)
    assert r.repeated(["a", "b", "a"]) == [False, False, True]
    assert len(r) == 0  # repeated() changes nothing
    r.add(["a", "b"])
    assert r.repeated(["b", "c"]) == [True, False]


def test_oldest_ids_are_forgotten_past_capacity_and_survive_a_snapshot() -> None:
    r = RecentIds(capacity=3)
    r.add(["a", "b", "c"])
    r.add(["a"])  # seen again: now the newest
    r.add(["d"])
    assert r.repeated(["a", "b", "c", "d"]) == [True, False, True, True]
    copy = RecentIds(capacity=2)
    copy.load_array(r.to_array())  # a smaller capacity keeps the newest
    assert copy.repeated(["c", "a", "d"]) == [False, True, True]


def test_capacity_zero_never_repeats() -> None:
    r = RecentIds(capacity=0)
    r.add(["a"])
    assert r.repeated(["a", "a"]) == [False, False] and len(r) == 0
