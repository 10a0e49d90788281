"""Online count invariants: mined from the stream, violations scored, prequential, restorable."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from detection.invariants import InvariantMiner, wilson_bounds


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
    m = _trained(1000)  # 0 of 1000 sessions: the 99 % upper bound of its share (0.54 %) is below 0.7 %
    res = m.score("bad", Counter({"open": 1, "write": 3, "ack": 3, "panic": 1}))
    assert [t for t, _ in res.rare] == ["panic"]
    assert res.rare[0][1] == pytest.approx(m.share_upper("panic")) and res.rare[0][1] <= m.zero_rate


def test_rare_needs_evidence_not_a_raw_ratio() -> None:
    # A young stream: 0 of 300 sessions has a raw share of 0.5/301 = 0.17 %, yet it does not show
    # the rate is below 0.7 % (3 sessions in 300 would be 1 %); no alert until the bound says so.
    young = _trained(300)
    bag = Counter({"open": 1, "write": 3, "ack": 3, "served": 1})
    assert young.score("x", bag).violations == 0
    assert young.share_upper("served") > young.zero_rate
    # Seen in 4 of 1000 sessions (0.4 %): compatible with 0.7 %, so not rare either ...
    m = _trained(996)
    for i in range(4):
        m.learn(f"s{i}", bag)
    assert m.n == 1000 and m.score("x", bag).rare == []
    # ... while 4 of 5000 (0.08 %) is rare at 0.99 confidence.
    for i in range(4000):
        m.learn(f"t{i}", _normal(i))
    assert [t for t, _ in m.score("x", bag).rare] == ["served"]
    # confidence=0.5 is the raw-ratio rule: 0.5/301 ≤ 0.7 % flags the first sighting.
    loose = _trained(300, confidence=0.5)
    assert loose.score("x", bag).rare == [("served", pytest.approx(0.5 / 301))]


def test_wilson_bounds() -> None:
    lo, hi = wilson_bounds(np.array([0.0, 5.0, 10.0]), np.array([10.0, 10.0, 10.0]), 1.96)
    assert lo[0] == 0.0 and hi[2] == 1.0 and lo[1] < 0.5 < hi[1]
    assert (lo <= np.array([0.0, 0.5, 1.0])).all() and (hi >= np.array([0.0, 0.5, 1.0])).all()
    assert wilson_bounds(0.0, 0.0, 2.0) == (0.0, 1.0)
    # more trials at the same rate: a narrower interval
    lo2, hi2 = wilson_bounds(50.0, 100.0, 1.96)
    assert lo[1] < lo2 < 0.5 < hi2 < hi[1]


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
    with pytest.raises(ValueError, match="confidence"):
        InvariantMiner(confidence=1.0)
