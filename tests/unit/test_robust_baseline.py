"""Robust baseline (issue 6.1): admission gate, quarantine, promotion, in-batch copies, TTL, snapshots."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from detection.admission import GatedBaseline
from detection.detector import NoveltyDetector
from detection.novelty import ExemplarBaseline
from detection.session_score import SessionScorer
from detection.sessions import Session

DIM = 16
T0 = 1_700_000_000.0  # event times, epoch seconds


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(5)


def feed(det: NoveltyDetector, x: np.ndarray, times: np.ndarray) -> list:
    """Score then learn one batch, as the pipeline does."""
    scores = det.score(x)
    det.learn(x, scores, [f"e{i}" for i in range(len(x))], [""] * len(x), [([], [])] * len(x), times=times)
    return scores


def trained(rng: np.random.Generator, **kw: object) -> tuple[NoveltyDetector, np.ndarray, float]:
    """A detector past warm-up on a stream of 40 recurring normal behaviours with small variations; its clock."""
    det = NoveltyDetector(DIM, k=3, warmup=300, **kw)  # type: ignore[arg-type]
    protos = unit(rng.normal(size=(40, DIM)))
    stream = unit(protos[rng.integers(0, 40, size=3000)] + 0.02 * rng.normal(size=(3000, DIM)))
    t = T0
    for chunk in np.array_split(stream, 6):
        feed(det, chunk, t + np.arange(len(chunk), dtype=np.float64))
        t += len(chunk)
    return det, protos, t


def test_gate_off_copies_of_an_anomaly_become_familiar(rng: np.random.Generator) -> None:
    """What the gate is for: without it, k copies of an anomaly make it normal."""
    det, _, t = trained(rng)
    odd = unit(rng.normal(size=(1, DIM)))
    scores = [s.score for s in feed(det, np.repeat(odd, 50, axis=0), t + np.arange(50) * 0.5)]
    assert scores[0] > 90 and scores[-1] < 10


def test_copies_in_one_batch_all_score_anomalous(rng: np.random.Generator) -> None:
    det, protos, t = trained(rng, admit_below=90.0)
    odd = unit(rng.normal(size=(1, DIM)))
    normal = unit(protos[rng.integers(0, 40, size=100)] + 0.02 * rng.normal(size=(100, DIM)))
    batch = np.concatenate([normal[:50], np.repeat(odd, 200, axis=0), normal[50:]])
    scores = feed(det, batch, t + np.arange(300) * 0.2)  # all within a minute
    copies, rest = scores[50:250], scores[:50] + scores[250:]
    assert all(s.score >= 90 and not s.admitted for s in copies), min(s.score for s in copies)
    assert all(s.admitted and s.score < 50 for s in rest)
    # later copies are never vouched for by earlier (held) ones
    assert all(nb.similarity < 0.99 for s in copies for nb in s.neighbours)
    assert all(s.repeat for s in copies[1:]) and not copies[0].repeat
    assert det.baseline.pending() == 1 and det.baseline.held == 200 and det.baseline.promoted == 0
    counts, first, last = det.baseline.quarantine.support()
    assert counts[0] == 200 and last[0] - first[0] < 60


def test_copies_across_batches_keep_scoring_anomalous(rng: np.random.Generator) -> None:
    det, _, t = trained(rng, admit_below=90.0)
    odd = unit(rng.normal(size=(1, DIM)))
    scores = []
    for b in range(20):  # 200 copies in 20 batches within a minute
        scores += [s.score for s in feed(det, np.repeat(odd, 10, axis=0), t + 3.0 * b + np.arange(10) * 0.3)]
    assert len(scores) == 200 and min(scores) >= 90
    assert det.baseline.promoted == 0 and det.baseline.pending() == 1


def test_persistent_recurrence_is_promoted_and_becomes_normal(rng: np.random.Generator) -> None:
    det, _, t = trained(rng, admit_below=90.0, promote_count=20, promote_span_s=3600.0)
    new = unit(rng.normal(size=(1, DIM)))
    scores = []
    for i in range(30):  # a new behaviour, once every 5 minutes
        scores.append(feed(det, new, np.array([t + 300.0 * i]))[0].score)
    assert scores[0] >= 90
    # promoted once seen 20 times over at least an hour: its 13th sighting spans 3600 s, its 20th reaches the count
    assert det.baseline.promoted == 1 and det.baseline.pending() == 0
    assert all(s >= 90 for s in scores[:20]) and all(s < 10 for s in scores[20:]), scores
    counts = det.baseline.support()[0]
    assert counts[int(np.argmax(det.baseline.vectors() @ new[0]))] >= 20


def test_promotion_counts_near_variants_together(rng: np.random.Generator) -> None:
    """Variants too far apart to merge (< merge_at) still recur together (>= promote_at)."""
    base = GatedBaseline(DIM, k=3, merge_at=0.995, promote_count=10, promote_span_s=100.0, promote_at=0.95)
    basis = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0].T.astype(np.float32)
    variants = unit(basis[0] + 0.2 * basis[1:13])  # pairwise similarity 1 / 1.04 = 0.96
    held = np.zeros(1, dtype=bool)
    for i, v in enumerate(variants[:9]):
        base.learn(v[None, :], [f"v{i}"], [""], [T0 + 20.0 * i], held)
    assert base.pending() == 9 and base.promoted == 0  # nine: not yet
    base.learn(variants[9:10], ["v9"], [""], [T0 + 180.0], held)
    assert base.promoted == 10 and base.pending() == 0 and len(base) == 10
    assert int(base.support()[0].sum()) == 10


def test_a_one_minute_burst_is_not_promoted_but_quarantine_is_bounded(rng: np.random.Generator) -> None:
    base = GatedBaseline(DIM, k=3, quarantine=50, promote_count=5, promote_span_s=120.0)
    x = unit(rng.normal(size=(1, DIM)))
    base.learn(np.repeat(x, 200, axis=0), [f"c{i}" for i in range(200)], [""] * 200,
               T0 + np.linspace(0, 59, 200), np.zeros(200, dtype=bool))
    assert base.pending() == 1 and base.promoted == 0 and len(base) == 0
    others = unit(rng.normal(size=(300, DIM)))
    for i in range(0, 300, 20):
        base.learn(others[i : i + 20], [f"o{j}" for j in range(20)], [""] * 20, np.full(20, T0 + 60.0),
                   np.zeros(20, dtype=bool))
    assert base.pending() <= 50 and base.held == 500
    assert (base.quarantine.support()[0] == 200).any()  # the best supported pending one stays


def test_batch_with_gate_equals_one_at_a_time(rng: np.random.Generator) -> None:
    """The in-batch resolution gives what one-by-one scoring and learning would."""
    det, _, t = trained(rng, admit_below=90.0, promote_count=1000)
    known = det.baseline.vectors().copy()  # copies of exemplars merge exactly, as in-batch copies count
    odd = unit(rng.normal(size=(4, DIM)))
    rows = np.concatenate([known[rng.integers(0, len(known), size=150)], odd[rng.integers(0, 4, size=60)],
                           unit(rng.normal(size=(20, DIM)))])
    x = rows[rng.permutation(len(rows))]
    times = t + np.arange(len(x), dtype=np.float64)
    one = copy.deepcopy(det)
    batched = feed(det, x, times)
    singles = [feed(one, x[i : i + 1], times[i : i + 1])[0] for i in range(len(x))]
    assert [s.admitted for s in batched] == [s.admitted for s in singles]
    assert np.allclose([s.score for s in batched], [s.score for s in singles], atol=1e-3)
    assert sum(not s.admitted for s in batched) >= 60  # the copies of the four odd ones are all held
    assert det.baseline.pending() == one.baseline.pending() and len(det.baseline) == len(one.baseline)


def test_exemplars_keep_first_and_last_seen() -> None:
    base = ExemplarBaseline(4, k=1)
    v = unit(np.array([[1.0, 0.0, 0.0, 0.0]]))
    base.learn(np.repeat(v, 3, axis=0), ["a", "b", "c"], [""] * 3, [T0 + 10, T0 + 20, T0 + 5])  # one late
    counts, first, last = base.support()
    assert counts.tolist() == [3] and first.tolist() == [T0 + 5] and last.tolist() == [T0 + 20]
    assert base.newest == T0 + 20


def test_ttl_drops_exemplars_not_seen_for_ttl(rng: np.random.Generator) -> None:
    x = unit(rng.normal(size=(3, DIM)))
    base = ExemplarBaseline(DIM, k=1, ttl_s=100.0)
    base.learn(x[:2], ["a", "b"], ["", ""], [T0, T0])
    base.learn(x[:1], ["a2"], [""], [T0 + 90])  # a seen again
    base.learn(x[2:], ["c"], [""], [T0 + 150])  # b last seen 150 s ago: gone
    assert len(base) == 2 and base.expired == 1
    assert sorted(base.ident(r) for r in range(len(base))) == ["a", "c"]
    base.learn(x[2:], ["c2"], [""], [T0 + 300])
    assert [base.ident(r) for r in range(len(base))] == ["c"]
    keep = ExemplarBaseline(DIM, k=1, ttl_s=0.0)  # 0: forever
    keep.learn(x[:2], ["a", "b"], ["", ""], [T0, T0])
    keep.learn(x[2:], ["c"], [""], [T0 + 10 * 365 * 86_400])
    assert len(keep) == 3


def test_ttl_applies_to_pending_exemplars(rng: np.random.Generator) -> None:
    base = GatedBaseline(DIM, k=1, ttl_s=100.0)
    x = unit(rng.normal(size=(2, DIM)))
    base.learn(x[:1], ["odd"], [""], [T0], np.zeros(1, dtype=bool))
    assert base.pending() == 1
    base.learn(x[1:], ["n"], [""], [T0 + 500])  # admitted, the clock moves on
    assert base.pending() == 0 and len(base) == 1


def test_snapshot_round_trip_with_quarantine_and_times(rng: np.random.Generator) -> None:
    det, _, t = trained(rng, admit_below=90.0, ttl_s=86_400.0)
    odd = unit(rng.normal(size=(1, DIM)))
    feed(det, np.repeat(odd, 5, axis=0), t + np.arange(5))
    snap = det.snapshot()
    json.dumps(snap["meta"])  # plain data
    other, _, _ = trained(np.random.default_rng(99), admit_below=90.0, ttl_s=86_400.0)
    other.restore(copy.deepcopy(snap))
    assert other.baseline.pending() == 1 and other.baseline.quarantine.support()[0].tolist() == [5]
    assert np.array_equal(other.baseline.support()[2], det.baseline.support()[2])
    assert other.baseline.newest == det.baseline.newest
    q = unit(rng.normal(size=(4, DIM)))
    assert [s.score for s in other.score(q)] == [s.score for s in det.score(q)]
    assert [s.score for s in other.score(odd)] == [s.score for s in det.score(odd)]


def test_old_snapshot_without_times_restores_and_is_dated_at_the_next_learn(rng: np.random.Generator) -> None:
    det, protos, t = trained(rng, admit_below=90.0, ttl_s=3600.0)
    snap = det.snapshot()
    # the format before issue 6: no times, no quarantine
    for name in [k for k in snap["arrays"] if k.startswith("quarantine.")] + ["first_seen", "last_seen"]:
        del snap["arrays"][name]
    for name in ("newest", "quarantine"):
        del snap["meta"]["baseline"][name]
    old = NoveltyDetector(DIM, k=3, warmup=50, admit_below=90.0, ttl_s=3600.0)
    old.restore(snap)
    assert len(old.baseline) == len(det.baseline) and old.baseline.pending() == 0
    q = protos[:5]
    assert [s.score for s in old.score(q)] == [s.score for s in det.score(q)]
    feed(old, protos[:1], np.array([t + 10 * 86_400.0]))  # restarted ten days later
    assert len(old.baseline) == len(det.baseline)  # not expired: dated when first seen again
    assert np.isfinite(old.baseline.support()[1]).all()


def _session(sid: str, seq: list[str], end: float) -> Session:
    s = Session(session_id=sid, key=sid, entity=("host", "h"), start=end - 10.0, end=end, events=len(seq))
    for tid in seq:
        s.bag[tid] += 1
        s.sequence.append(tid)
        s.templates[tid] = f"template {tid}"
    return s


def test_session_gate_holds_a_burst_and_promotes_a_recurring_pattern() -> None:
    sc = SessionScorer(8, k=5, bag_dim=64, warmup=20, invariants=False, admit_below=90.0,
                       promote_count=10, promote_span_s=3600.0)
    t = T0
    for i in range(300):
        sc.process(_session(f"n{i}", ["a", "b", "c"] if i % 2 else ["a", "b", "d"], t))
        t += 60.0
    burst = [sc.process(_session(f"x{i}", ["q", "r", "s", "t"], t + i)) for i in range(30)]  # half a minute
    assert all(r.score >= 90 and r.knn_score >= 90 for r in burst)
    assert sc.baseline.pending() == 1 and sc.baseline.promoted == 0
    later = [sc.process(_session(f"y{i}", ["q", "r", "s", "t"], t + 600.0 * (i + 1))) for i in range(8)]
    assert sc.baseline.promoted == 1 and later[-1].knn_score < 50
