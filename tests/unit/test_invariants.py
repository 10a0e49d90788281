"""Online count invariants: mined from the stream, violations scored, prequential, restorable."""

from __future__ import annotations

from collections import Counter

import pytest

from detection.invariants import InvariantMiner


def _normal(i: int) -> Counter[str]:
    # one "open", three "write", three "ack" — plus an occasional benign extra
    bag = Counter({"open": 1, "write": 3, "ack": 3})
    if i % 4 == 0:
        bag["read"] = 2
    return bag


def _trained(n: int = 100, **kw) -> InvariantMiner:
    m = InvariantMiner(min_support=20, **kw)
    for i in range(n):
        m.learn(f"k{i}", _normal(i))
    return m


def test_learns_ratio_invariants_and_normal_sessions_pass() -> None:
    m = _trained()
    assert m.invariants >= 3  # open:write 1:3, open:ack 1:3, write:ack 1:1
    res = m.score("fresh", _normal(1))
    assert res.violations == 0 and res.weight == 0.0


def test_missing_ack_violates_ratio_invariant() -> None:
    m = _trained()
    res = m.score("bad", Counter({"open": 1, "write": 3, "ack": 2}))
    assert res.violations >= 1 and res.weight > 1.0
    assert any({"write", "ack"} == {a, b} for a, b, _, _ in res.pairs)


def test_rare_template_is_a_zero_invariant_violation() -> None:
    m = _trained()
    res = m.score("bad", Counter({"open": 1, "write": 3, "ack": 3, "panic": 1}))
    assert [t for t, _ in res.rare] == ["panic"]


def test_counts_accumulate_over_segments_of_a_key() -> None:
    m = _trained()
    m.learn("blk", Counter({"open": 1, "write": 3, "ack": 3}))
    # a later segment of the same key with more acks breaks write:ack on the entity's totals
    assert m.score("blk", Counter({"ack": 1})).violations >= 1
    # a fresh key with the same counts as an entity split in two is fine
    m.learn("blk2", Counter({"open": 1, "write": 3}))
    assert m.score("blk2", Counter({"ack": 3})).violations == 0


def test_score_is_pure_and_snapshot_round_trips() -> None:
    m = _trained()
    before = m.snapshot()
    m.score("x", Counter({"open": 5}))
    assert m.snapshot() == before
    r = InvariantMiner(min_support=20)
    r.restore(before)
    bad = Counter({"open": 1, "write": 3, "ack": 2})
    assert r.score("bad", bad).violations == m.score("bad", bad).violations


def test_immature_miner_flags_nothing() -> None:
    m = InvariantMiner(min_support=20)
    for i in range(5):
        m.learn(f"k{i}", _normal(i))
    assert m.score("bad", Counter({"open": 1, "panic": 9})).violations == 0


def test_key_memory_is_bounded() -> None:
    m = InvariantMiner(max_keys=10)
    for i in range(50):
        m.learn(f"k{i}", _normal(i))
    assert len(m.cumulative) == 10


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        InvariantMiner(min_hold=1.5)
