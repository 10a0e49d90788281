"""Types, the :class:`VectorStore` interface and the engine base shared by the store modules.

Imports no Qdrant package: the engines live in :mod:`streams.store_edge` and
:mod:`streams.store_client`; the public entry point is :mod:`streams.store`, whose
docstring describes the behaviour of the engines.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal, get_args

import numpy as np

from schemas.errors import SecstreamError

log = logging.getLogger("streams.store")

#: Namespace of the UUIDv5 point ids. Never change it: ids of stored points depend on it.
NAMESPACE: uuid.UUID = uuid.UUID("3b0f6c1e-5a7d-5e2b-9c41-8d2f0a6e7b19")

#: How the dense vector is quantized: not at all, scalar int8 (4x smaller), binary 1 bit/dim (32x smaller).
Quantization = Literal["none", "int8", "binary"]
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
Prepared = tuple[str, dict[str, Any], dict[str, Any]]  # id, {vector name: dense list | SparseTerms}, payload


class StoreError(SecstreamError):
    """A vector-store operation failed (bad argument, engine or server error)."""


def point_id(key: str) -> str:
    """UUIDv5(NAMESPACE, key) as str — a replayed event never duplicates."""
    return str(uuid.uuid5(NAMESPACE, key))


def check_quantization(value: str) -> Quantization:
    """``value`` if it names a quantization, else StoreError listing the valid ones."""
    if value not in QUANTIZATIONS:
        raise StoreError(f"unknown quantization {value!r}; valid: {', '.join(QUANTIZATIONS)}")
    return value  # type: ignore[return-value]


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
    """Shape of a collection: name, dense dimension, vector names, and how the dense vector is quantized.

    ``quantization`` ``None`` means the store's default (``open_store(quantization=...)``,
    int8 unless configured); a collection that already exists keeps the quantization it
    was created with (logged). An explicit value must match what is stored, else
    :meth:`VectorStore.ensure` raises. ``always_ram`` keeps the quantized vectors in RAM.
    ``rescore`` and ``oversampling`` are search-time: fetch ``oversampling × limit``
    candidates by the quantized vectors and re-rank them by the original float32 ones.
    """

    name: str
    dense_dim: int
    dense_name: str = "hybrid"
    sparse_name: str | None = "terms"
    quantization: Quantization | None = None
    always_ram: bool = True
    oversampling: float = 2.0
    rescore: bool = True

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise StoreError(f"collection name {self.name!r} must match {_NAME_RE.pattern}")
        if self.dense_dim < 1:
            raise StoreError(f"dense_dim must be ≥ 1, got {self.dense_dim}")
        if not self.dense_name or self.sparse_name == "" or self.sparse_name == self.dense_name:
            raise StoreError("dense_name must be non-empty; sparse_name must be None or a different non-empty name")
        if self.quantization is not None:
            check_quantization(self.quantization)
        if not self.oversampling >= 1.0:
            raise StoreError(f"oversampling must be ≥ 1.0, got {self.oversampling}")


@dataclass(frozen=True)
class CollectionInfo:
    """What an engine reports about a collection.

    ``quantization`` is the one in effect (as stored by the engine); ``indexed_vectors``
    counts dense vectors in optimized (HNSW, quantized) segments; ``disk_bytes`` is the
    size of the collection's directory where the engine has one, else None.
    """

    name: str
    points: int
    indexed_vectors: int
    segments: int
    quantization: Quantization
    disk_bytes: int | None = None


@dataclass(frozen=True)
class SearchOptions:
    """Resolved parameters of one dense search, handed to the engines."""

    quantization: Quantization
    rescore: bool
    oversampling: float
    exact: bool


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
        stored config differs (dimension, vector names, an explicitly requested
        quantization) raises :class:`StoreError`.
        """

    @abstractmethod
    def upsert(self, collection: str, points: Sequence[StorePoint]) -> None:
        """Insert or replace ``points`` by id; idempotent. Visible to queries on return."""

    @abstractmethod
    def count(self, collection: str) -> int:
        """Exact number of points in ``collection``."""

    @abstractmethod
    def search_dense(self, collection: str, vector: np.ndarray, limit: int, *,
                     exclude_ids: Sequence[str] = (), rescore: bool | None = None,
                     oversampling: float | None = None, exact: bool = False) -> list[Hit]:
        """The ``limit`` nearest points by cosine similarity (score in [-1, 1]), best first.

        Points whose id is in ``exclude_ids`` are never returned. ``rescore`` and
        ``oversampling`` override the collection's settings (re-rank ``oversampling × limit``
        quantized candidates by float32); ``exact`` scans all
        float32 vectors (no HNSW, no quantization). Without rescoring, scores of quantized
        segments are approximate.
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

    @abstractmethod
    def info(self, collection: str) -> CollectionInfo:
        """Counts, segments, the quantization in effect and the size on disk of ``collection``."""

    def optimize(self, collection: str | None = None) -> bool:
        """Build search indexes now (one collection or all); True if any work was done.

        May block for a long time (see :mod:`streams.store`). Engines that index
        in the background, or never, do nothing and return False.
        """
        return False

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@contextmanager
def boundary(what: str) -> Iterator[None]:
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


def hit(pid: Any, score: float | None, payload: dict[str, Any] | None) -> Hit:
    """A :class:`Hit` from an engine's id, score (None → 1.0) and payload."""
    return Hit(id=str(pid), score=1.0 if score is None else float(score), payload=dict(payload or {}))


class Engine(VectorStore):
    """Locking, validation and error wrapping shared by the engines; subclasses implement the
    ``_do_*`` hooks, which run under the lock with validated arguments.

    ``quantization`` is the default for specs that leave it ``None``.
    """

    def __init__(self, quantization: Quantization = "int8") -> None:
        self._lock = threading.RLock()
        self._requested: dict[str, CollectionSpec] = {}
        self._specs: dict[str, CollectionSpec] = {}
        self._closed = False
        self.default_quantization: Quantization = check_quantization(quantization)

    @abstractmethod
    def _do_open(self, spec: CollectionSpec, explicit: bool) -> Quantization:
        """Create or open the collection; return the quantization in effect.

        ``spec.quantization`` is resolved (never None); ``explicit`` tells whether the
        caller asked for it (a stored mismatch then raises) or it is the store default
        (a stored mismatch is kept and logged).
        """
    @abstractmethod
    def _do_upsert(self, spec: CollectionSpec, points: list[Prepared]) -> None: ...
    @abstractmethod
    def _do_count(self, collection: str) -> int: ...
    @abstractmethod
    def _do_query(self, collection: str, using: str, query: list[float] | SparseTerms, limit: int,
                  exclude: list[str], options: SearchOptions | None) -> list[Hit]: ...
    @abstractmethod
    def _do_retrieve(self, collection: str, ids: list[str]) -> list[Hit]: ...
    @abstractmethod
    def _do_info(self, spec: CollectionSpec) -> CollectionInfo: ...
    @abstractmethod
    def _do_flush(self) -> None: ...
    @abstractmethod
    def _do_close(self) -> None: ...

    def ensure(self, spec: CollectionSpec) -> None:
        """See :meth:`VectorStore.ensure`."""
        with self._lock:
            self._check_open()
            have = self._requested.get(spec.name)
            if have is not None:
                if have != spec:
                    raise StoreError(f"collection {spec.name!r} is open as {have}, not {spec}")
                return
            explicit = spec.quantization is not None
            wanted = spec if explicit else replace(spec, quantization=self.default_quantization)
            with boundary(f"ensure collection {spec.name!r}"):
                effective = self._do_open(wanted, explicit)
            self._specs[spec.name] = replace(wanted, quantization=effective)
            self._requested[spec.name] = spec

    def spec(self, collection: str) -> CollectionSpec:
        """The effective spec of an ensured collection (quantization resolved to what is stored)."""
        with self._lock:
            return self._spec(collection)

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
            with boundary(f"upsert {len(prepared)} points into {collection!r}"):
                self._do_upsert(spec, prepared)

    def count(self, collection: str) -> int:
        """See :meth:`VectorStore.count`."""
        with self._lock:
            self._spec(collection)
            with boundary(f"count {collection!r}"):
                return int(self._do_count(collection))

    def search_dense(self, collection: str, vector: np.ndarray, limit: int, *,
                     exclude_ids: Sequence[str] = (), rescore: bool | None = None,
                     oversampling: float | None = None, exact: bool = False) -> list[Hit]:
        """See :meth:`VectorStore.search_dense`."""
        with self._lock:
            spec = self._spec(collection)
            query, excluded = _dense(spec, vector, "query"), _uuids(exclude_ids)
            options = SearchOptions(quantization=spec.quantization or "none",
                                    rescore=spec.rescore if rescore is None else bool(rescore),
                                    oversampling=spec.oversampling if oversampling is None else float(oversampling),
                                    exact=bool(exact))
            if options.oversampling < 1.0:
                raise StoreError(f"oversampling must be ≥ 1.0, got {options.oversampling}")
            with boundary(f"dense search in {collection!r}"):
                return self._do_query(collection, spec.dense_name, query, _limit(limit), excluded, options)

    def search_sparse(self, collection: str, terms: SparseTerms, limit: int) -> list[Hit]:
        """See :meth:`VectorStore.search_sparse`; an empty query returns no hits."""
        with self._lock:
            spec = self._spec(collection)
            name, limit = _sparse_name(spec), _limit(limit)
            if not terms.indices:
                return []
            with boundary(f"sparse search in {collection!r}"):
                return self._do_query(collection, name, terms, limit, [], None)

    def retrieve(self, collection: str, ids: Sequence[str]) -> list[Hit]:
        """See :meth:`VectorStore.retrieve`."""
        with self._lock:
            self._spec(collection)
            wanted = list(dict.fromkeys(_uuids(ids)))
            if not wanted:
                return []
            with boundary(f"retrieve from {collection!r}"):
                by_id = {h.id: h for h in self._do_retrieve(collection, wanted)}
            return [by_id[i] for i in wanted if i in by_id]

    def info(self, collection: str) -> CollectionInfo:
        """See :meth:`VectorStore.info`."""
        with self._lock:
            spec = self._spec(collection)
            with boundary(f"info of {collection!r}"):
                return self._do_info(spec)

    def flush(self) -> None:
        """See :meth:`VectorStore.flush`."""
        with self._lock:
            self._check_open()
            with boundary("flush"):
                self._do_flush()

    def close(self) -> None:
        """See :meth:`VectorStore.close`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with boundary("close"):
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


def mismatch(spec: CollectionSpec, stored: Quantization, explicit: bool, where: str) -> Quantization:
    """Resolve a stored quantization against the requested one (see :mod:`streams.store`).

    Equal: ``stored``. Explicitly requested and different: StoreError naming both. Store
    default and different: ``stored``, with a warning in the log.
    """
    if stored == spec.quantization:
        return stored
    if explicit:
        raise StoreError(f"collection {spec.name!r} at {where} is stored with quantization {stored!r}, "
                         f"requested {spec.quantization!r}; open it with quantization={stored!r} "
                         f"(or None to keep what is stored), or recreate it")
    log.warning(
        "collection %r at %s keeps its stored quantization %r (store default is %r)",
        spec.name, where, stored, spec.quantization)
    return stored
