"""The ``sessions`` collection (dense + sparse bag of templates + MaxSim multivector) against the real engines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from detection.sessions import Session
from streams.store import session_points
from streams.store.session_points import (
    MEMBERS,
    SESSIONS,
    session_point,
    session_point_id,
    session_spec,
    sessions_by_templates,
    similar_sessions,
    template_index,
    template_terms,
)
from streams.store import (
    ClientStore,
    CollectionSpec,
    EdgeStore,
    MultiVectorSpec,
    StoreError,
    StorePoint,
    VectorStore,
    point_id,
)

pytestmark = pytest.mark.integration

DENSE_DIM, MEMBER_DIM = 24, 16
N_TEMPLATES, N_SESSIONS = 40, 60
RARE = "T-rare"
Built = list[tuple[Session, np.ndarray, np.ndarray]]  # (session, dense vector, members)
Filled = tuple[VectorStore, Built]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def template_vectors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    names = [f"T{i}" for i in range(N_TEMPLATES)] + [RARE]
    return dict(zip(names, unit(rng.standard_normal((len(names), MEMBER_DIM)))))


def make_session(i: int, tids: list[str], counts: list[int]) -> Session:
    bag = Counter(dict(zip(tids, counts)))
    return Session(session_id=f"user:alice@h{i}", key=f"user+host:alice@h{i}", entity=("user", f"alice@h{i}"),
                   start=1_700_000_000.0 + i, end=1_700_000_060.5 + i, events=sum(counts), bag=bag,
                   sequence=[t for t, n in bag.items() for _ in range(n)],
                   templates={t: f"text of {t} <*>" for t in tids},
                   event_ids=[f"e{i}-{k}" for k in range(30)], reason="gap")


def members_of(session: Session, vectors: dict[str, np.ndarray]) -> np.ndarray:
    """What ``Session.member_matrix()`` gives: one unit row per distinct template, at most 32."""
    return np.stack([vectors[t] for t in list(session.bag)[:32]]).astype(np.float32)


def build(vectors: dict[str, np.ndarray]) -> Built:
    rng = np.random.default_rng(11)
    out = []
    for i in range(N_SESSIONS):
        k = int(rng.integers(3, 9))
        tids = [f"T{j}" for j in rng.choice(N_TEMPLATES, k, replace=False)]
        if i == 13:
            tids.append(RARE)
        session = make_session(i, tids, [int(c) for c in rng.integers(1, 6, len(tids))])
        out.append((session, unit(rng.standard_normal(DENSE_DIM)), members_of(session, vectors)))
    return out


def make_store(engine: str, path: Path) -> VectorStore:
    return EdgeStore(path) if engine == "edge" else ClientStore(path=path)


@pytest.fixture(params=["edge", "local"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def filled(engine: str, tmp_path: Path, template_vectors: dict[str, np.ndarray]
           ) -> Iterator[Filled]:
    store = make_store(engine, tmp_path / "store")
    store.ensure(session_spec(DENSE_DIM, MEMBER_DIM))
    sessions = build(template_vectors)
    store.upsert(SESSIONS, [session_point(s, vector=v, members=m, score=float(i), alert=i == 13, model_version="v1")
                            for i, (s, v, m) in enumerate(sessions)])
    yield store, sessions
    store.close()


def test_template_terms_are_stable_sqrt_counts_and_merge_collisions(monkeypatch: pytest.MonkeyPatch) -> None:
    assert template_index("T1") == template_index("T1") and 0 <= template_index("T1") < 2 ** 32
    terms = template_terms({"T2": 9, "T1": 4, "T0": 0})
    assert terms.indices == sorted([template_index("T1"), template_index("T2")])
    assert dict(zip(terms.indices, terms.values)) == {template_index("T1"): 2.0, template_index("T2"): 3.0}
    # A real 32-bit collision is too rare to find in a test: force one, counts are summed before the sqrt.
    monkeypatch.setattr(session_points, "template_index", lambda tid: 5)
    merged = session_points.template_terms({"a": 4, "b": 5})
    assert merged.indices == [5] and merged.values == [3.0]


def test_point_id_and_payload(template_vectors: dict[str, np.ndarray]) -> None:
    session, vector, members = build(template_vectors)[13]
    p = session_point(session, vector=vector, members=members, score=97.5, alert=True, model_version="v1",
                      extra={"partition": 3})
    assert p.id == point_id("session:" + session.session_id) == session_point_id(session.session_id)
    assert p.payload["entity"] == {"type": "user", "id": "alice@h13"}
    assert p.payload["start"] == "2023-11-14T22:13:33.000Z" and p.payload["end"] == "2023-11-14T22:14:33.500Z"
    span = {"start_epoch": session.start, "duration_s": 60.5}  # payload fields, not a measured time
    assert {k: p.payload[k] for k in span} == span
    assert p.payload["events"] == session.events and len(p.payload["event_ids"]) == 20
    assert p.payload["templates"][0]["count"] == max(session.bag.values())
    assert {"id", "text", "count"} == set(p.payload["templates"][0])
    assert p.payload["partition"] == 3 and p.payload["reason"] == "gap" and p.payload["alert"] is True
    assert p.multi is not None and p.multi.shape == (len(session.bag), MEMBER_DIM)
    holes = members.copy()
    holes[0], holes[1] = 0.0, np.nan  # rows without a cosine are dropped, not a failed batch
    p = session_point(session, vector=vector, members=holes, score=None, alert=False, model_version="v1")
    assert p.multi is not None and np.array_equal(p.multi, members[2:])
    with pytest.raises(StoreError, match="overwrite"):
        session_point(session, vector=vector, members=members, score=None, alert=False, model_version="v1",
                      extra={"score": 1})


def test_upsert_count_retrieve_and_replay(filled: Filled) -> None:
    store, sessions = filled
    assert store.count(SESSIONS) == N_SESSIONS
    session, vector, members = sessions[5]
    got = store.retrieve(SESSIONS, [session_point_id(session.session_id)])[0]
    assert got.payload["session_id"] == session.session_id and got.payload["score"] == 5.0
    assert got.payload["templates"][0]["text"].startswith("text of T")
    # The same session closed again (replay, restart) overwrites itself.
    again = session_point(session, vector=vector, members=members, score=42.0, alert=False, model_version="v2")
    store.upsert(SESSIONS, [again])
    assert store.count(SESSIONS) == N_SESSIONS
    assert store.retrieve(SESSIONS, [again.id])[0].payload["model_version"] == "v2"


def test_maxsim_ranks_session_containing_query_rows_first(filled: Filled,
                                                          template_vectors: dict[str, np.ndarray]) -> None:
    store, sessions = filled
    target = sessions[13][0]
    query = np.stack([template_vectors[RARE], template_vectors[next(iter(target.bag))]])
    hits = similar_sessions(store, query, 5)
    assert hits[0].id == session_point_id(target.session_id)
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)  # every query row is a member: mean best cosine 1
    assert all(h.score < hits[0].score for h in hits[1:])
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Raw MaxSim from the store is the sum over the query rows.
    raw = store.search_multi(SESSIONS, query, 1)
    assert raw[0].score == pytest.approx(2.0, abs=2e-3)
    # A session's own members find it first; excluding it finds another.
    own = sessions[30]
    assert similar_sessions(store, own[2], 1)[0].id == session_point_id(own[0].session_id)
    other = similar_sessions(store, own[2], 3, exclude_session_ids=[own[0].session_id])
    assert session_point_id(own[0].session_id) not in {h.id for h in other} and len(other) == 3


def test_sparse_query_by_template_bag(filled: Filled) -> None:
    store, sessions = filled
    hits = sessions_by_templates(store, {RARE: 1, "T1": 1, "T2": 1}, 3)
    assert hits[0].id == session_point_id(sessions[13][0].session_id)
    assert hits[0].score > hits[1].score
    assert sessions_by_templates(store, {}, 3) == []


def test_dense_session_vector_search(filled: Filled) -> None:
    store, sessions = filled
    session, vector, _ = sessions[7]
    assert store.search_dense(SESSIONS, vector, 1)[0].id == session_point_id(session.session_id)


def test_session_without_members_is_stored_but_not_maxsim_matched(filled: Filled,
                                                                  template_vectors: dict[str, np.ndarray]) -> None:
    store, _ = filled
    lone = make_session(999, [RARE], [3])
    p = session_point(lone, vector=unit(np.ones(DENSE_DIM)), members=np.zeros((0, MEMBER_DIM), np.float32),
                      score=None, alert=False, model_version="v1")
    assert p.multi is None
    store.upsert(SESSIONS, [p])
    assert store.count(SESSIONS) == N_SESSIONS + 1
    hits = similar_sessions(store, template_vectors[RARE][None, :], N_SESSIONS + 1)
    assert p.id not in {h.id for h in hits} and len(hits) == N_SESSIONS


def test_bad_multivectors_raise_store_error(filled: Filled) -> None:
    store, sessions = filled
    session, vector, members = sessions[0]
    for bad in (members[:, :-1], members[0], np.full((2, MEMBER_DIM), np.nan, np.float32),
                np.zeros((2, MEMBER_DIM), np.float32)):
        p = session_point(session, vector=vector, members=members, score=None, alert=False, model_version="v1")
        p.multi = bad
        with pytest.raises(StoreError, match="multivector"):
            store.upsert(SESSIONS, [p])
    with pytest.raises(StoreError, match=rf"expects \(m ≥ 1, {MEMBER_DIM}\) for 'members'"):
        store.search_multi(SESSIONS, np.ones((2, MEMBER_DIM + 1), np.float32), 3)
    with pytest.raises(StoreError, match="expects"):
        similar_sessions(store, np.zeros((0, MEMBER_DIM), np.float32), 3)
    # A collection without a multivector refuses both a point with one and a MaxSim query.
    plain = CollectionSpec(name="plain", dense_dim=DENSE_DIM, sparse_name=None)
    store.ensure(plain)
    with pytest.raises(StoreError, match="has no multivector"):
        store.upsert("plain", [StorePoint(id=point_id("p"), dense=vector, multi=members)])
    with pytest.raises(StoreError, match="has no multivector"):
        store.search_multi("plain", members, 3)
    assert store.count(SESSIONS) == N_SESSIONS


def test_spec_validation() -> None:
    with pytest.raises(StoreError, match="dim"):
        MultiVectorSpec(name="m", dim=0)
    with pytest.raises(StoreError, match="valid: none, int8, binary"):
        MultiVectorSpec(name="m", dim=4, quantization="pq")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="must differ"):
        CollectionSpec(name="x", dense_dim=4, multivector=MultiVectorSpec(name="terms", dim=4))


def test_reopen_checks_the_stored_multivector(engine: str, tmp_path: Path,
                                              template_vectors: dict[str, np.ndarray]) -> None:
    path = tmp_path / "s"
    store = make_store(engine, path)
    store.ensure(session_spec(DENSE_DIM, MEMBER_DIM))
    session, vector, members = build(template_vectors)[13]
    store.upsert(SESSIONS, [session_point(session, vector=vector, members=members, score=1.0, alert=False,
                                          model_version="v1")])
    store.close()
    store = make_store(engine, path)
    try:
        store.ensure(session_spec(DENSE_DIM, MEMBER_DIM))
        assert store.count(SESSIONS) == 1
        assert similar_sessions(store, members, 1)[0].id == session_point_id(session.session_id)
    finally:
        store.close()
    wrong = [
        (CollectionSpec(name=SESSIONS, dense_dim=DENSE_DIM, dense_name="session", sparse_name="templates",
                        multivector=MultiVectorSpec(name=MEMBERS, dim=MEMBER_DIM, quantization="none")),
         "stored with quantization 'int8', requested 'none'"),
        (session_spec(DENSE_DIM, MEMBER_DIM + 1), "MaxSim multivector"),
        (CollectionSpec(name=SESSIONS, dense_dim=DENSE_DIM, dense_name="session", sparse_name="templates",
                        multivector=MultiVectorSpec(name="rows", dim=MEMBER_DIM)), "no multivector 'rows'"),
    ]
    for spec, message in wrong:
        store = make_store(engine, path)
        try:
            with pytest.raises(StoreError, match=message):
                store.ensure(spec)
        finally:
            store.close()


def test_edge_multivector_is_int8_after_optimize(tmp_path: Path) -> None:
    dim, n, rows = 512, 600, 10  # 600 × 10 × 512 float32 = 12 MB: above the edge indexing threshold
    rng = np.random.default_rng(5)
    spec = CollectionSpec(name="mq", dense_dim=8, sparse_name=None,
                          multivector=MultiVectorSpec(name="members", dim=dim))
    mats = [unit(rng.standard_normal((rows, dim))) for _ in range(n)]
    store = EdgeStore(tmp_path / "edge")
    try:
        store.ensure(spec)
        store.upsert("mq", [StorePoint(id=point_id(str(i)), dense=unit(rng.standard_normal(8)), multi=mats[i])
                            for i in range(n)])
        assert store.search_multi("mq", mats[5][:3], 1, rescore=False)[0].score == pytest.approx(3.0, abs=1e-5)
        assert store.optimize("mq")
        hits = store.search_multi("mq", mats[5][:3], 2)
        assert hits[0].id == point_id("5") and hits[0].score == pytest.approx(3.0, abs=1e-4)  # rescored
        raw = store.search_multi("mq", mats[5][:3], 1, rescore=False)[0]
        assert raw.id == point_id("5") and abs(raw.score - 3.0) > 1e-5  # int8 rows in use
        assert store.search_multi("mq", mats[5][:3], 1, exact=True)[0].score == pytest.approx(3.0, abs=1e-5)
    finally:
        store.close()
