"""Contract tests of the vector store against the real engines (edge and local), in-process."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from streams.store import (
    ClientStore,
    CollectionSpec,
    EdgeStore,
    SparseTerms,
    StoreError,
    StorePoint,
    VectorStore,
    open_store,
    point_id,
)

pytestmark = pytest.mark.integration

DIM = 32
SPEC = CollectionSpec(name="events", dense_dim=DIM)
N = 300
RARE_TERM = 9_999


def make_store(engine: str, path: Path) -> VectorStore:
    return EdgeStore(path) if engine == "edge" else ClientStore(path=path)


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_points(n: int = N) -> list[StorePoint]:
    vectors = unit_vectors(n)
    points = []
    for i in range(n):
        # Every document shares the common terms 1 and 2; only document 7 carries the rare term.
        indices = [1, 2, RARE_TERM] if i == 7 else [1, 2, 100 + i % 10]
        points.append(StorePoint(
            id=point_id(f"event-{i}"),
            dense=vectors[i],
            sparse=SparseTerms(indices=indices, values=[1.0] * len(indices)),
            payload={"i": i, "host": f"h{i % 5}", "nested": {"user": "zoë", "tags": ["ssh", "fail"], "n": 1.5},
                     "msg": "Anmeldung fehlgeschlagen — 登录失败"},
        ))
    return points


@pytest.fixture(params=["edge", "local"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def filled(engine: str, tmp_path: Path) -> Iterator[tuple[VectorStore, list[StorePoint], Path]]:
    store = make_store(engine, tmp_path / "store")
    store.ensure(SPEC)
    points = make_points()
    store.upsert(SPEC.name, points)
    yield store, points, tmp_path / "store"
    store.close()


def test_point_id_is_deterministic_uuid() -> None:
    assert point_id("event-1") == point_id("event-1")
    assert point_id("event-1") != point_id("event-2")
    assert len(point_id("x")) == 36


def test_ensure_twice_is_idempotent(engine: str, tmp_path: Path) -> None:
    store = make_store(engine, tmp_path / "s")
    try:
        store.ensure(SPEC)
        store.ensure(SPEC)
        assert store.count(SPEC.name) == 0
        with pytest.raises(StoreError):
            store.ensure(CollectionSpec(name=SPEC.name, dense_dim=DIM + 1))
    finally:
        store.close()


def test_upsert_count_and_idempotent_replay(filled: tuple[VectorStore, list[StorePoint], Path]) -> None:
    store, points, _ = filled
    assert store.count(SPEC.name) == N
    store.upsert(SPEC.name, points)
    assert store.count(SPEC.name) == N


def test_dense_search_finds_identical_vector(filled: tuple[VectorStore, list[StorePoint], Path]) -> None:
    store, points, _ = filled
    hits = store.search_dense(SPEC.name, points[42].dense, 5)
    assert hits[0].id == points[42].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    excluded = store.search_dense(SPEC.name, points[42].dense, 5, exclude_ids=[points[42].id])
    assert points[42].id not in {h.id for h in excluded}
    assert len(excluded) == 5


def test_sparse_search_ranks_rare_term_first(filled: tuple[VectorStore, list[StorePoint], Path]) -> None:
    store, points, _ = filled
    # Equal query weights: IDF must make the rare term outweigh the ubiquitous ones.
    hits = store.search_sparse(SPEC.name, SparseTerms(indices=[1, 2, RARE_TERM], values=[1.0, 1.0, 1.0]), 3)
    assert hits[0].id == points[7].id
    assert hits[0].score > hits[1].score


def test_retrieve_returns_payload_intact(filled: tuple[VectorStore, list[StorePoint], Path]) -> None:
    store, points, _ = filled
    missing = point_id("never-stored")
    hits = store.retrieve(SPEC.name, [points[3].id, missing, points[1].id])
    assert [h.id for h in hits] == [points[3].id, points[1].id]
    assert hits[0].payload == points[3].payload
    assert hits[0].score == 1.0


def test_close_and_reopen_keeps_points(engine: str, filled: tuple[VectorStore, list[StorePoint], Path]) -> None:
    store, points, path = filled
    store.flush()
    store.close()
    again = make_store(engine, path)
    try:
        again.ensure(SPEC)
        assert again.count(SPEC.name) == N
        assert again.retrieve(SPEC.name, [points[5].id])[0].payload == points[5].payload
        assert again.search_dense(SPEC.name, points[9].dense, 1)[0].id == points[9].id
    finally:
        again.close()


def test_concurrent_calls_from_threads(filled: tuple[VectorStore, list[StorePoint], Path]) -> None:
    store, points, _ = filled
    extra = unit_vectors(40, seed=1)

    def work(k: int) -> int:
        for j in range(10):
            pid = point_id(f"thread-{k}-{j}")
            store.upsert(SPEC.name, [StorePoint(id=pid, dense=extra[k * 10 + j], sparse=None, payload={"k": k})])
            assert store.search_dense(SPEC.name, extra[k * 10 + j], 1)[0].id == pid
        return store.count(SPEC.name)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(work, range(4)))
    assert store.count(SPEC.name) == N + 40


def test_bad_input_raises_store_error(filled: tuple[VectorStore, list[StorePoint], Path]) -> None:
    store, _, _ = filled
    with pytest.raises(StoreError):
        store.upsert(SPEC.name, [StorePoint(id="not-a-uuid", dense=unit_vectors(1)[0], sparse=None, payload={})])
    with pytest.raises(StoreError):
        store.search_dense(SPEC.name, np.ones(DIM + 1, np.float32), 3)
    with pytest.raises(StoreError):
        store.count("unknown")


def test_edge_optimize_keeps_results(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge")
    try:
        store.ensure(SPEC)
        points = make_points()
        store.upsert(SPEC.name, points)
        store.optimize()
        assert store.count(SPEC.name) == N
        assert store.search_dense(SPEC.name, points[11].dense, 1)[0].id == points[11].id
    finally:
        store.close()


def test_open_store_validates_engine(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="edge"):
        open_store(engine="edge")
    with pytest.raises(StoreError, match="valid engines"):
        open_store(engine="nope", path=tmp_path)  # type: ignore[arg-type]
    store = open_store(engine="local")
    try:
        store.ensure(SPEC)
        assert store.count(SPEC.name) == 0
    finally:
        store.close()


# --- quantization -------------------------------------------------------------------------------

QDIM = 512
QN = 6_000  # 6,000 × 512 float32 = 12 MB: above the edge indexing threshold, so optimize() builds HNSW + quantization


@pytest.fixture(scope="module")
def quant_vectors() -> np.ndarray:
    x = np.random.default_rng(3).standard_normal((QN, QDIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["int8", "binary"])
def test_edge_quantized_collection_finds_exact_top_hit_after_optimize(
        kind: str, quant_vectors: np.ndarray, tmp_path: Path) -> None:
    spec = CollectionSpec(name="q", dense_dim=QDIM, sparse_name=None, quantization=kind)  # type: ignore[arg-type]
    store = EdgeStore(tmp_path / "edge")
    try:
        store.ensure(spec)
        ids = [point_id(f"q-{i}") for i in range(QN)]
        store.upsert(spec.name, [StorePoint(id=ids[i], dense=quant_vectors[i]) for i in range(QN)])
        assert store.optimize(spec.name)
        info = store.info(spec.name)
        assert info.quantization == kind
        assert info.indexed_vectors == QN and info.points == QN
        for i in (0, 17, 4_321):
            hits = store.search_dense(spec.name, quant_vectors[i], 5)
            assert hits[0].id == ids[i]
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)  # rescored with the float32 vector
        # Without rescoring the quantized vectors score: approximate, so quantization is in use.
        raw = store.search_dense(spec.name, quant_vectors[17], 5, rescore=False)
        assert abs(raw[0].score - 1.0) > 1e-6
        assert store.search_dense(spec.name, quant_vectors[17], 1, exact=True)[0].score == pytest.approx(1.0, abs=1e-5)
    finally:
        store.close()


def test_edge_int8_is_unused_before_optimize_binary_is_used(tmp_path: Path) -> None:
    vectors = unit_vectors(50)
    for kind, quantized in (("int8", False), ("binary", True)):
        spec = CollectionSpec(name=f"small-{kind}", dense_dim=DIM, sparse_name=None, quantization=kind)  # type: ignore[arg-type]
        store = EdgeStore(tmp_path / kind)
        try:
            store.ensure(spec)
            store.upsert(spec.name, [StorePoint(id=point_id(str(i)), dense=vectors[i]) for i in range(50)])
            score = store.search_dense(spec.name, vectors[3], 1, rescore=False)[0].score
            assert (abs(score - 1.0) > 1e-4) is quantized, (kind, score)
            assert store.info(spec.name).indexed_vectors == 0
        finally:
            store.close()


def test_default_quantization_is_int8_and_configurable(engine: str, tmp_path: Path) -> None:
    store = open_store(engine=engine, path=tmp_path / "s")  # type: ignore[arg-type]
    try:
        store.ensure(SPEC)
        assert store.info(SPEC.name).quantization == "int8"
    finally:
        store.close()
    store = open_store(engine=engine, path=tmp_path / "t", quantization="binary")  # type: ignore[arg-type]
    try:
        store.ensure(SPEC)
        assert store.info(SPEC.name).quantization == "binary"
    finally:
        store.close()
    with pytest.raises(StoreError, match="valid: none, int8, binary"):
        open_store(engine="local", quantization="pq")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="quantization"):
        CollectionSpec(name="x", dense_dim=4, quantization="fp16")  # type: ignore[arg-type]


def test_reopen_with_other_quantization(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "s"
    explicit = CollectionSpec(name="events", dense_dim=DIM, quantization="int8")
    store = make_store(engine, path)
    store.ensure(explicit)
    store.upsert("events", make_points(20))
    store.close()
    # An explicit, different request is refused and names both; nothing on disk changes.
    store = open_store(engine=engine, path=path, quantization="int8")  # type: ignore[arg-type]
    try:
        with pytest.raises(StoreError, match="stored with quantization 'int8', requested 'binary'"):
            store.ensure(CollectionSpec(name="events", dense_dim=DIM, quantization="binary"))
    finally:
        store.close()
    # A store default that differs keeps what is stored (and logs).
    store = open_store(engine=engine, path=path, quantization="binary")  # type: ignore[arg-type]
    try:
        store.ensure(SPEC)
        assert store.info("events").quantization == "int8"
        assert store.count("events") == 20
    finally:
        store.close()
    if engine == "edge":
        assert '"scalar"' in (path / "events" / "edge_config.json").read_text()
