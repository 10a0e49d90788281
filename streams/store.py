"""The vector store: one small interface over Qdrant's embedded engines and its server.

The only module that imports ``qdrant_client`` or ``qdrant_edge``. Every collection has a
named dense vector (``hybrid``, cosine) and optionally a named sparse vector (``terms``,
IDF modifier), on every engine. Point ids are UUIDv5 of a stable key (:func:`point_id`),
so a replayed event overwrites itself. Third-party errors surface as :class:`StoreError`.

Engines: :class:`EdgeStore` (qdrant-edge, the embedded default: one ``EdgeShard`` per
collection in ``root/<collection>``, created on the first ``ensure``, loaded with its
config checked on later ones) and :class:`ClientStore` (qdrant-client: a server by URL, or
local mode on disk / in memory — numpy brute force plus one SQLite commit per point,
for tests and small data).

Measured (2 cores shared with other jobs, 433-d random unit vectors, two runs of
``python -m bench.store_compare``): edge upserts 6k-13k points/s (26k on an idle machine),
local mode 130-735/s. Edge without ``optimize()`` keeps new points in a plain appendable
segment and scans it exactly: at 100k points p50 7.7-12 ms (63-125 queries/s) vs local
mode's 81 ms (11/s). ``optimize()`` builds HNSW, 63 s (idle) to 104-276 s (contended)
for those 100k, then p50 1.9-3.1 ms (280-510 queries/s).

Optimizer policy: ``EdgeShard.optimize()`` blocks *and holds the GIL* for its whole run
(a Python thread ticked once instead of ~8000 times during a 9 s optimize), so even from
an executor thread it freezes a Faust worker's event loop past its Kafka session timeout.
Nothing here optimizes implicitly; ``flush()`` stays cheap for checkpoints. Call
:meth:`VectorStore.optimize` where a pause is acceptable (maintenance command, before a
worker joins its group, after a replay). Shards use ``default_segment_number=16`` so a
later optimize indexes only the points added since the previous one (10k points: 3.7 s)
instead of re-merging everything (default: 22 s at 50k). Unindexed segments answer exactly.

Threads: every public method holds a per-store lock. Local mode is not thread-safe
(concurrent calls raised ``sqlite3.OperationalError``); an ``EdgeShard`` survived 4
threads mixing upserts and queries, but its calls hold the GIL, so serializing costs
nothing and also makes ``close()`` safe against an in-flight query.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import qdrant_edge as qe
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from schemas.errors import SecstreamError

__all__ = ["NAMESPACE", "ClientStore", "CollectionSpec", "EdgeStore", "Hit", "SparseTerms", "StoreError",
           "StorePoint", "VectorStore", "open_store", "point_id"]

log = logging.getLogger(__name__)

#: Namespace of the UUIDv5 point ids. Never change it: ids of stored points depend on it.
NAMESPACE: uuid.UUID = uuid.UUID("3b0f6c1e-5a7d-5e2b-9c41-8d2f0a6e7b19")

ENGINES = ("edge", "local")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_EDGE_SEGMENTS = 16
_Prepared = tuple[str, dict[str, Any], dict[str, Any]]  # id, {vector name: dense list | SparseTerms}, payload


class StoreError(SecstreamError):
    """A vector-store operation failed (bad argument, engine or server error)."""


def point_id(key: str) -> str:
    """UUIDv5(NAMESPACE, key) as str — a replayed event never duplicates."""
    return str(uuid.uuid5(NAMESPACE, key))


@dataclass(frozen=True)
class SparseTerms:
    """A sparse vector: parallel lists of term indices (unique, ≥ 0) and weights."""

    indices: list[int]
    values: list[float]

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.values):
            raise StoreError(f"sparse vector has {len(self.indices)} indices but {len(self.values)} values")


@dataclass
class StorePoint:
    """One point to upsert: a UUID id (see :func:`point_id`), vectors and a JSON-able payload."""

    id: str
    dense: np.ndarray
    sparse: SparseTerms | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A search or retrieve result: point id, score (cosine similarity, sparse dot, or 1.0), payload."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class CollectionSpec:
    """Shape of a collection: name, dense dimension and the names of its vectors."""

    name: str
    dense_dim: int
    dense_name: str = "hybrid"
    sparse_name: str | None = "terms"

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise StoreError(f"collection name {self.name!r} must match {_NAME_RE.pattern}")
        if self.dense_dim < 1:
            raise StoreError(f"dense_dim must be ≥ 1, got {self.dense_dim}")
        if not self.dense_name or self.sparse_name == "" or self.sparse_name == self.dense_name:
            raise StoreError("dense_name must be non-empty; sparse_name must be None or a different non-empty name")


class VectorStore(ABC):
    """A set of collections of points with dense + sparse vectors and payloads.

    Every method may raise :class:`StoreError`; none lets a third-party exception
    escape. ``ensure`` a collection before any other call on it. The engines here
    serialize calls with a lock, so one store may be shared by threads.
    """

    @abstractmethod
    def ensure(self, spec: CollectionSpec) -> None:
        """Create the collection if absent, else open it and check it matches ``spec``.

        Idempotent; after a restart it reopens the existing data. A collection whose
        stored config differs (dimension, vector names) raises :class:`StoreError`.
        """

    @abstractmethod
    def upsert(self, collection: str, points: Sequence[StorePoint]) -> None:
        """Insert or replace ``points`` by id; idempotent. Visible to queries on return."""

    @abstractmethod
    def count(self, collection: str) -> int:
        """Exact number of points in ``collection``."""

    @abstractmethod
    def search_dense(self, collection: str, vector: np.ndarray, limit: int, *,
                     exclude_ids: Sequence[str] = ()) -> list[Hit]:
        """The ``limit`` nearest points by cosine similarity (score in [-1, 1]), best first.

        Points whose id is in ``exclude_ids`` are never returned.
        """

    @abstractmethod
    def search_sparse(self, collection: str, terms: SparseTerms, limit: int) -> list[Hit]:
        """The ``limit`` best points by IDF-weighted sparse dot product, best first."""

    @abstractmethod
    def retrieve(self, collection: str, ids: Sequence[str]) -> list[Hit]:
        """Stored payloads of ``ids`` in request order, score 1.0; missing ids are omitted."""

    @abstractmethod
    def flush(self) -> None:
        """Make everything upserted so far durable on disk. Cheap; call it at checkpoints."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release files and connections. Idempotent; later calls raise StoreError."""

    def optimize(self, collection: str | None = None) -> bool:
        """Build search indexes now (one collection or all); True if any work was done.

        May block for a long time (see the module docstring). Engines that index
        in the background, or never, do nothing and return False.
        """
        return False

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@contextmanager
def _boundary(what: str) -> Iterator[None]:
    """Turn any third-party exception into StoreError naming the operation."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _uuids(ids: Sequence[str]) -> list[str]:
    out: list[str] = []
    for i in ids:
        try:
            out.append(str(uuid.UUID(str(i))))
        except ValueError as exc:
            raise StoreError(f"point id {i!r} is not a UUID; use point_id(key)") from exc
    return out


def _dense(spec: CollectionSpec, vector: np.ndarray, what: str) -> list[float]:
    arr = np.asarray(vector, dtype=np.float32)
    if arr.shape != (spec.dense_dim,):
        raise StoreError(f"{what}: dense shape {arr.shape}, collection {spec.name!r} expects ({spec.dense_dim},)")
    if not np.isfinite(arr).all() or not arr.any():
        raise StoreError(f"{what}: dense vector must be finite and non-zero (cosine)")
    return arr.tolist()  # type: ignore[no-any-return]


def _limit(limit: int) -> int:
    if limit < 1:
        raise StoreError(f"limit must be ≥ 1, got {limit}")
    return int(limit)


def _sparse_name(spec: CollectionSpec) -> str:
    if spec.sparse_name is None:
        raise StoreError(f"collection {spec.name!r} has no sparse vector")
    return spec.sparse_name


def _hit(pid: Any, score: float | None, payload: dict[str, Any] | None) -> Hit:
    return Hit(id=str(pid), score=1.0 if score is None else float(score), payload=dict(payload or {}))


class _Engine(VectorStore):
    """Locking, validation and error wrapping shared by the engines; subclasses implement the
    ``_do_*`` hooks, which run under the lock with validated arguments."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._specs: dict[str, CollectionSpec] = {}
        self._closed = False

    @abstractmethod
    def _do_open(self, spec: CollectionSpec) -> None: ...
    @abstractmethod
    def _do_upsert(self, spec: CollectionSpec, points: list[_Prepared]) -> None: ...
    @abstractmethod
    def _do_count(self, collection: str) -> int: ...
    @abstractmethod
    def _do_query(self, collection: str, using: str, query: list[float] | SparseTerms, limit: int,
                  exclude: list[str]) -> list[Hit]: ...
    @abstractmethod
    def _do_retrieve(self, collection: str, ids: list[str]) -> list[Hit]: ...
    @abstractmethod
    def _do_flush(self) -> None: ...
    @abstractmethod
    def _do_close(self) -> None: ...

    def ensure(self, spec: CollectionSpec) -> None:
        """See :meth:`VectorStore.ensure`."""
        with self._lock:
            self._check_open()
            have = self._specs.get(spec.name)
            if have is not None:
                if have != spec:
                    raise StoreError(f"collection {spec.name!r} is open as {have}, not {spec}")
                return
            with _boundary(f"ensure collection {spec.name!r}"):
                self._do_open(spec)
            self._specs[spec.name] = spec

    def upsert(self, collection: str, points: Sequence[StorePoint]) -> None:
        """See :meth:`VectorStore.upsert`."""
        with self._lock:
            spec = self._spec(collection)
            if not points:
                return
            prepared = []
            for pid, p in zip(_uuids([p.id for p in points]), points):
                vectors: dict[str, Any] = {spec.dense_name: _dense(spec, p.dense, f"point {pid}")}
                if p.sparse is not None and p.sparse.indices:
                    vectors[_sparse_name(spec)] = p.sparse
                if not isinstance(p.payload, dict):
                    raise StoreError(f"point {pid}: payload must be a dict, not {type(p.payload).__name__}")
                prepared.append((pid, vectors, p.payload))
            with _boundary(f"upsert {len(prepared)} points into {collection!r}"):
                self._do_upsert(spec, prepared)

    def count(self, collection: str) -> int:
        """See :meth:`VectorStore.count`."""
        with self._lock:
            self._spec(collection)
            with _boundary(f"count {collection!r}"):
                return int(self._do_count(collection))

    def search_dense(self, collection: str, vector: np.ndarray, limit: int, *,
                     exclude_ids: Sequence[str] = ()) -> list[Hit]:
        """See :meth:`VectorStore.search_dense`."""
        with self._lock:
            spec = self._spec(collection)
            query, excluded = _dense(spec, vector, "query"), _uuids(exclude_ids)
            with _boundary(f"dense search in {collection!r}"):
                return self._do_query(collection, spec.dense_name, query, _limit(limit), excluded)

    def search_sparse(self, collection: str, terms: SparseTerms, limit: int) -> list[Hit]:
        """See :meth:`VectorStore.search_sparse`; an empty query returns no hits."""
        with self._lock:
            spec = self._spec(collection)
            name, limit = _sparse_name(spec), _limit(limit)
            if not terms.indices:
                return []
            with _boundary(f"sparse search in {collection!r}"):
                return self._do_query(collection, name, terms, limit, [])

    def retrieve(self, collection: str, ids: Sequence[str]) -> list[Hit]:
        """See :meth:`VectorStore.retrieve`."""
        with self._lock:
            self._spec(collection)
            wanted = list(dict.fromkeys(_uuids(ids)))
            if not wanted:
                return []
            with _boundary(f"retrieve from {collection!r}"):
                by_id = {h.id: h for h in self._do_retrieve(collection, wanted)}
            return [by_id[i] for i in wanted if i in by_id]

    def flush(self) -> None:
        """See :meth:`VectorStore.flush`."""
        with self._lock:
            self._check_open()
            with _boundary("flush"):
                self._do_flush()

    def close(self) -> None:
        """See :meth:`VectorStore.close`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with _boundary("close"):
                self._do_close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    def _spec(self, collection: str) -> CollectionSpec:
        self._check_open()
        spec = self._specs.get(collection)
        if spec is None:
            raise StoreError(f"collection {collection!r} is not ensured; known: {sorted(self._specs)}")
        return spec


class EdgeStore(_Engine):
    """Qdrant Edge in-process engine: one ``EdgeShard`` per collection in ``root/<collection>`` (created if absent).

    HNSW is built only by :meth:`optimize`; until then queries scan exactly (module docstring).
    """

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = Path(root)
        with _boundary(f"create store directory {self.root}"):
            self.root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, qe.EdgeShard] = {}

    def _do_open(self, spec: CollectionSpec) -> None:
        sparse = None
        if spec.sparse_name is not None:
            sparse = {spec.sparse_name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
        config = qe.EdgeConfig(
            vectors={spec.dense_name: qe.EdgeVectorParams(size=spec.dense_dim, distance=qe.Distance.Cosine)},
            sparse_vectors=sparse,
            optimizers=qe.EdgeOptimizersConfig(default_segment_number=_EDGE_SEGMENTS),
        )
        path = self.root / spec.name
        if (path / "edge_config.json").exists() or (path / "segments").exists():
            shard = qe.EdgeShard.load(str(path), config)  # checks compatibility with the stored config
        else:
            path.mkdir(parents=True, exist_ok=True)
            shard = qe.EdgeShard.create(str(path), config)
        self._shards[spec.name] = shard

    def _do_upsert(self, spec: CollectionSpec, points: list[_Prepared]) -> None:
        batch = [qe.Point(id=pid, payload=payload, vector={
            name: qe.SparseVector(list(v.indices), list(v.values)) if isinstance(v, SparseTerms) else v
            for name, v in vectors.items()}) for pid, vectors, payload in points]
        self._shards[spec.name].update(qe.UpdateOperation.upsert_points(batch))

    def _do_count(self, collection: str) -> int:
        return self._shards[collection].count(qe.CountRequest(exact=True))

    def _do_query(self, collection: str, using: str, query: list[float] | SparseTerms, limit: int,
                  exclude: list[str]) -> list[Hit]:
        vector = qe.SparseVector(list(query.indices), list(query.values)) if isinstance(query, SparseTerms) else query
        flt = qe.Filter(must_not=[qe.HasIdCondition(set(exclude))]) if exclude else None
        request = qe.QueryRequest(limit=limit, query=qe.Query.Nearest(vector, using=using), filter=flt,
                                  with_payload=True, with_vector=False)
        return [_hit(p.id, p.score, p.payload) for p in self._shards[collection].query(request)]

    def _do_retrieve(self, collection: str, ids: list[str]) -> list[Hit]:
        return [_hit(r.id, None, r.payload) for r in self._shards[collection].retrieve(ids, True, False)]

    def optimize(self, collection: str | None = None) -> bool:
        """Build HNSW for the points added since the last optimize; blocks and holds the GIL."""
        with self._lock:
            self._check_open()
            did = False
            for name in [self._spec(collection).name] if collection is not None else list(self._shards):
                t0 = time.perf_counter()
                with _boundary(f"optimize {name!r}"):
                    if self._shards[name].optimize():
                        did = True
                        log.info("optimized edge shard %r in %.1f s", name, time.perf_counter() - t0)
            return did

    def _do_flush(self) -> None:
        for shard in self._shards.values():
            shard.flush()

    def _do_close(self) -> None:
        errors = []
        for name, shard in self._shards.items():
            try:
                shard.flush()
                shard.close()
            except Exception as exc:  # close the others before reporting
                errors.append(f"{name}: {exc}")
        self._shards.clear()
        if errors:
            raise StoreError(f"closing edge shards failed: {'; '.join(errors)}")


class ClientStore(_Engine):
    """qdrant-client: a Qdrant server (``url``, ``api_key``, ``timeout`` in s), else local mode
    on disk (``path``), else local mode in memory. ``url`` and ``path`` are exclusive."""

    def __init__(self, *, url: str = "", api_key: str = "", path: Path | None = None, timeout: int = 30) -> None:
        super().__init__()
        if url and path is not None:
            raise StoreError("give either url (server) or path (local mode), not both")
        self.url, self.path = url, path
        with _boundary(f"open qdrant-client ({url or path or ':memory:'})"):
            if url:
                self._client = QdrantClient(url=url, api_key=api_key or None, timeout=timeout)
            elif path is not None:
                Path(path).mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=str(path))
            else:
                self._client = QdrantClient(location=":memory:")

    def _do_open(self, spec: CollectionSpec) -> None:
        if not self._client.collection_exists(spec.name):
            sparse = None
            if spec.sparse_name is not None:
                sparse = {spec.sparse_name: qm.SparseVectorParams(modifier=qm.Modifier.IDF)}
            dense = {spec.dense_name: qm.VectorParams(size=spec.dense_dim, distance=qm.Distance.COSINE)}
            try:
                self._client.create_collection(spec.name, vectors_config=dense, sparse_vectors_config=sparse)
            except Exception:
                if not self._client.collection_exists(spec.name):  # else another worker won the race
                    raise
        params = self._client.get_collection(spec.name).config.params
        have = params.vectors.get(spec.dense_name) if isinstance(params.vectors, dict) else None
        if have is None or have.size != spec.dense_dim or have.distance != qm.Distance.COSINE:
            raise StoreError(f"collection {spec.name!r} exists with dense vectors {params.vectors}, "
                             f"expected {spec.dense_name!r}: {spec.dense_dim}-d cosine")
        if spec.sparse_name is not None and spec.sparse_name not in (params.sparse_vectors or {}):
            raise StoreError(f"collection {spec.name!r} has no sparse vector {spec.sparse_name!r}")

    def _do_upsert(self, spec: CollectionSpec, points: list[_Prepared]) -> None:
        batch = [qm.PointStruct(id=pid, payload=payload, vector={
            name: qm.SparseVector(indices=list(v.indices), values=list(v.values))
            if isinstance(v, SparseTerms) else v for name, v in vectors.items()})
            for pid, vectors, payload in points]
        self._client.upsert(spec.name, points=batch, wait=True)

    def _do_count(self, collection: str) -> int:
        return self._client.count(collection, exact=True).count

    def _do_query(self, collection: str, using: str, query: list[float] | SparseTerms, limit: int,
                  exclude: list[str]) -> list[Hit]:
        vector: Any = query
        if isinstance(query, SparseTerms):
            vector = qm.SparseVector(indices=list(query.indices), values=list(query.values))
        flt = qm.Filter(must_not=[qm.HasIdCondition(has_id=list(exclude))]) if exclude else None
        res = self._client.query_points(collection, query=vector, using=using, limit=limit, query_filter=flt,
                                        with_payload=True, with_vectors=False)
        return [_hit(p.id, p.score, p.payload) for p in res.points]

    def _do_retrieve(self, collection: str, ids: list[str]) -> list[Hit]:
        records = self._client.retrieve(collection, ids=ids, with_payload=True, with_vectors=False)
        return [_hit(r.id, None, r.payload) for r in records]

    def _do_flush(self) -> None:
        """Local mode and the server persist every upsert before it returns."""

    def _do_close(self) -> None:
        self._client.close()


def open_store(*, url: str = "", api_key: str = "", engine: Literal["edge", "local"] = "edge",
               path: Path | None = None) -> VectorStore:
    """The store for a configuration: a server if ``url``, else the embedded ``engine`` at ``path``.

    ``engine="edge"`` needs ``path`` (a directory of shards); ``engine="local"`` without
    ``path`` runs in memory.
    """
    if url:
        return ClientStore(url=url, api_key=api_key)
    if engine == "edge":
        if path is None:
            raise StoreError("engine 'edge' needs path=<directory>; use engine='local' for an in-memory store")
        return EdgeStore(path)
    if engine == "local":
        return ClientStore(path=path)
    raise StoreError(f"unknown store engine {engine!r}; valid engines: {', '.join(ENGINES)}")
