"""Store filters, payload indexes, attach and retrieve_points against both real engines (edge, local)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from streams.store import (
    ClientStore,
    CollectionSpec,
    EdgeStore,
    FieldContains,
    FieldMatch,
    FieldRange,
    MultiVectorSpec,
    SparseTerms,
    StoreError,
    StoreFilter,
    StorePoint,
    VectorStore,
    point_id,
)

pytestmark = pytest.mark.integration

DIM = 16
SPEC = CollectionSpec(name="events", dense_dim=DIM)
USERS = ["ann", "bob", "cyd"]
HOSTS = ["db-01", "db-010", "web-01"]
T0 = datetime(2025, 3, 11, tzinfo=UTC).timestamp()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _points(n: int = 60) -> list[StorePoint]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return [StorePoint(id=point_id(f"e{i}"), dense=x[i] / np.linalg.norm(x[i]),
                       sparse=SparseTerms([1, 10 + i % 3], [1.0, 2.0]),
                       payload={"i": i, "user": USERS[i % 3], "host": HOSTS[i % 3], "time": _iso(T0 + 60 * i),
                                "entity": {"type": "user", "id": f"{USERS[i % 3]}@{HOSTS[i % 3]}"},
                                "end_epoch": T0 + 60 * i + 30, "severity": "high" if i % 10 == 0 else "low"})
            for i in range(n)]


@pytest.fixture(params=["edge", "local"])
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[VectorStore, list[StorePoint]]]:
    store: VectorStore = EdgeStore(tmp_path / "s") if request.param == "edge" else ClientStore(path=tmp_path / "s")
    store.ensure(SPEC)
    points = _points()
    store.upsert(SPEC.name, points)
    yield store, points
    store.close()


def _ids(hits: list) -> set[int]:  # type: ignore[type-arg]
    return {h.payload["i"] for h in hits}


def test_filters_select_exact_sets_in_dense_and_sparse(filled: tuple[VectorStore, list[StorePoint]]) -> None:
    store, points = filled
    everything = set(range(len(points)))
    cases = [
        (StoreFilter(must=(FieldMatch("user", ("bob",)),)), {i for i in everything if i % 3 == 1}),
        (StoreFilter(must=(FieldMatch("user", ("ann", "cyd")),)), {i for i in everything if i % 3 != 1}),
        (StoreFilter(should=(FieldMatch("user", ("bob",)), FieldMatch("host", ("web-01",)))),
         {i for i in everything if i % 3 in (1, 2)}),
        (StoreFilter(must=(FieldRange("time", gte=T0 + 600, lte=T0 + 1200, datetime=True),)), set(range(10, 21))),
        (StoreFilter(must=(FieldRange("end_epoch", gte=T0 + 600),)), set(range(10, 60))),
        (StoreFilter(must=(FieldContains("entity.id", "@db-01"),)), {i for i in everything if i % 3 in (0, 1)}),
        (StoreFilter(must=(FieldContains("entity.id", "bo", at_start=True), FieldMatch("severity", ("high",)))),
         {10, 40}),
        (StoreFilter(must=(FieldMatch("severity", ("high",)),)), {0, 10, 20, 30, 40, 50}),
    ]
    for where, expected in cases:
        assert _ids(store.search_dense(SPEC.name, points[0].dense, 100, where=where)) == expected, where
        assert _ids(store.search_sparse(SPEC.name, SparseTerms([1], [1.0]), 100, where=where)) == expected, where
    excluded = store.search_dense(SPEC.name, points[3].dense, 100, exclude_ids=[points[3].id],
                                  where=StoreFilter(must=(FieldMatch("user", ("ann",)),)))
    assert _ids(excluded) == {i for i in everything if i % 3 == 0} - {3}
    assert store.search_dense(SPEC.name, points[0].dense, 5, where=StoreFilter())[0].payload["i"] == 0


def test_filter_arguments_are_validated() -> None:
    with pytest.raises(StoreError, match="all strings or all integers"):
        FieldMatch("user", ("a", 1))
    with pytest.raises(StoreError, match="at least one value"):
        FieldMatch("user", ())
    with pytest.raises(StoreError, match="after lte"):
        FieldRange("t", gte=2.0, lte=1.0)
    with pytest.raises(StoreError, match="gte, lte or both"):
        FieldRange("t")
    with pytest.raises(StoreError, match="kind must be one of"):
        CollectionSpec(name="x", dense_dim=2, indexes=(("f", "text"),))  # type: ignore[arg-type]


def test_edge_creates_payload_indexes_once(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "s") as store:
        store.ensure(SPEC)
        store.upsert(SPEC.name, _points(5))
    with EdgeStore(tmp_path / "s") as store:
        store.ensure(SPEC)  # reopening finds them and creates nothing
        schema = store._shards[SPEC.name].info().payload_schema  # type: ignore[attr-defined]
        assert {key for key, _ in SPEC.indexes} == set(schema)
        assert schema["user"].points == 5 and schema["time"].points == 5


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_attach_reopens_with_the_stored_spec_and_retrieve_points_returns_vectors(engine: str, tmp_path: Path) -> None:
    spec = CollectionSpec(name="sessions", dense_dim=8, dense_name="session", sparse_name="templates",
                          quantization="none", multivector=MultiVectorSpec(name="members", dim=4))

    def make() -> VectorStore:
        return EdgeStore(tmp_path / "s") if engine == "edge" else ClientStore(path=tmp_path / "s")

    dense = np.arange(1, 9, dtype=np.float32)
    rows = np.array([[1, 0, 0, 0], [0, 1, 1, 0]], dtype=np.float32)
    with make() as store:
        store.ensure(spec)
        store.upsert("sessions", [StorePoint(id=point_id("s1"), dense=dense, sparse=SparseTerms([3, 7], [0.5, 2.0]),
                                             payload={"k": "v"}, multi=rows)])
    with make() as store:
        assert store.attach("absent") is None
        got = store.attach("sessions")
        assert got is not None
        assert (got.dense_dim, got.dense_name, got.sparse_name, got.quantization) == (8, "session", "templates", "none")
        assert got.multivector == MultiVectorSpec(name="members", dim=4)
        (point,) = store.retrieve_points("sessions", [point_id("missing"), point_id("s1")])
        assert point.id == point_id("s1") and point.payload == {"k": "v"}
        assert point.dense.dtype == np.float32
        np.testing.assert_allclose(point.dense, dense / np.linalg.norm(dense), rtol=1e-5)  # cosine: stored unit
        assert point.sparse == SparseTerms([3, 7], [0.5, 2.0])
        assert point.multi is not None and point.multi.shape == (2, 4)
        assert store.search_multi("sessions", rows[:1], 1)[0].id == point_id("s1")


def test_edge_store_held_by_another_process_gives_a_clear_error(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "s") as holder:
        holder.ensure(SPEC)
        other = EdgeStore(tmp_path / "s")
        with pytest.raises(StoreError, match="open in another process") as info:
            other.ensure(SPEC)
        assert "\n" not in str(info.value)
        other.close()
