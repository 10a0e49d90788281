"""The engine base shared by :mod:`streams.store.edge_engine` and :mod:`streams.store.client_engine`: argument
validation, the per-store lock, error wrapping (:func:`boundary`) and stored-config checks.

Imports no Qdrant package; the types and the interface are in :mod:`streams.store.base`.
"""

from __future__ import annotations

import threading
import uuid
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from streams.store.base import (
    CollectionInfo,
    CollectionSpec,
    Hit,
    MultiVectorSpec,
    Prepared,
    Quantization,
    SearchOptions,
    SparseTerms,
    StoreError,
    StoreFilter,
    StorePoint,
    VectorStore,
    check_quantization,
    log,
)

__all__ = ["Engine", "boundary", "hit", "mismatch", "multi_mismatch"]


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


def _multi_spec(spec: CollectionSpec) -> MultiVectorSpec:
    if spec.multivector is None:
        raise StoreError(f"collection {spec.name!r} has no multivector")
    return spec.multivector


def _multi(spec: CollectionSpec, rows: np.ndarray, what: str) -> list[list[float]]:
    mv = _multi_spec(spec)
    arr = np.asarray(rows, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != mv.dim:
        raise StoreError(f"{what}: multivector shape {arr.shape}, collection {spec.name!r} expects "
                         f"(m ≥ 1, {mv.dim}) for {mv.name!r}")
    if not np.isfinite(arr).all() or not arr.any(axis=1).all():
        raise StoreError(f"{what}: multivector rows must be finite and non-zero (cosine)")
    return arr.tolist()  # type: ignore[no-any-return]


def _limit(limit: int) -> int:
    if limit < 1:
        raise StoreError(f"limit must be ≥ 1, got {limit}")
    return int(limit)


def _sparse_name(spec: CollectionSpec) -> str:
    if spec.sparse_name is None:
        raise StoreError(f"collection {spec.name!r} has no sparse vector")
    return spec.sparse_name


def _unit(vectors: Any) -> np.ndarray:
    """float32 rows scaled to unit length, as cosine compares them (edge stores them so, local mode does not)."""
    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)


def _where(where: StoreFilter | None) -> StoreFilter | None:
    if where is not None and not isinstance(where, StoreFilter):
        raise StoreError(f"where must be a StoreFilter or None, not {type(where).__name__}")
    return where if where else None


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
    def _do_describe(self, collection: str) -> CollectionSpec | None:
        """The spec of a stored collection (quantizations as stored, explicit); None if absent."""
    @abstractmethod
    def _do_query(self, collection: str, using: str, query: list[float] | list[list[float]] | SparseTerms,
                  limit: int, exclude: list[str], options: SearchOptions | None,
                  where: StoreFilter | None) -> list[Hit]:
        """Nearest points to a dense vector, a multivector (rows) or a sparse vector named ``using``,
        among those matching ``where`` and not in ``exclude``."""
    @abstractmethod
    def _do_retrieve(self, collection: str, ids: list[str]) -> list[Hit]: ...
    @abstractmethod
    def _do_retrieve_points(self, collection: str, ids: list[str]) -> list[Prepared]:
        """Stored points with every vector (dense and rows as float lists, sparse as SparseTerms)."""
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

    def attach(self, collection: str) -> CollectionSpec | None:
        """See :meth:`VectorStore.attach`."""
        with self._lock:
            self._check_open()
            if collection in self._specs:
                return self._specs[collection]
            with boundary(f"describe collection {collection!r}"):
                stored = self._do_describe(collection)
            if stored is None:
                return None
            self.ensure(stored)
            return self._specs[collection]

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
                if p.multi is not None:
                    vectors[_multi_spec(spec).name] = _multi(spec, p.multi, f"point {pid}")
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
                     oversampling: float | None = None, exact: bool = False,
                     where: StoreFilter | None = None) -> list[Hit]:
        """See :meth:`VectorStore.search_dense`."""
        with self._lock:
            spec = self._spec(collection)
            query, excluded = _dense(spec, vector, "query"), _uuids(exclude_ids)
            options = _options(spec, spec.quantization or "none", rescore, oversampling, exact)
            flt = _where(where)
            with boundary(f"dense search in {collection!r}"):
                return self._do_query(collection, spec.dense_name, query, _limit(limit), excluded, options, flt)

    def search_multi(self, collection: str, rows: np.ndarray, limit: int, *,
                     exclude_ids: Sequence[str] = (), rescore: bool | None = None,
                     oversampling: float | None = None, exact: bool = False,
                     where: StoreFilter | None = None) -> list[Hit]:
        """See :meth:`VectorStore.search_multi`."""
        with self._lock:
            spec = self._spec(collection)
            mv = _multi_spec(spec)
            query, excluded = _multi(spec, rows, "query"), _uuids(exclude_ids)
            options = _options(spec, mv.quantization, rescore, oversampling, exact)
            flt = _where(where)
            with boundary(f"multivector search in {collection!r}"):
                return self._do_query(collection, mv.name, query, _limit(limit), excluded, options, flt)

    def search_sparse(self, collection: str, terms: SparseTerms, limit: int, *,
                      where: StoreFilter | None = None) -> list[Hit]:
        """See :meth:`VectorStore.search_sparse`; an empty query returns no hits."""
        with self._lock:
            spec = self._spec(collection)
            name, limit, flt = _sparse_name(spec), _limit(limit), _where(where)
            if not terms.indices:
                return []
            with boundary(f"sparse search in {collection!r}"):
                return self._do_query(collection, name, terms, limit, [], None, flt)

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

    def retrieve_points(self, collection: str, ids: Sequence[str]) -> list[StorePoint]:
        """See :meth:`VectorStore.retrieve_points`; dense vectors and rows come back at unit length."""
        with self._lock:
            spec = self._spec(collection)
            wanted = list(dict.fromkeys(_uuids(ids)))
            if not wanted:
                return []
            with boundary(f"retrieve points from {collection!r}"):
                found = {pid: (vectors, payload) for pid, vectors, payload in self._do_retrieve_points(collection, wanted)}
            out = []
            for pid in wanted:
                if pid not in found:
                    continue
                vectors, payload = found[pid]
                sparse = vectors.get(spec.sparse_name) if spec.sparse_name is not None else None
                rows = vectors.get(spec.multivector.name) if spec.multivector is not None else None
                out.append(StorePoint(id=pid, dense=_unit(vectors[spec.dense_name]),
                                      sparse=sparse if isinstance(sparse, SparseTerms) else None,
                                      payload=dict(payload or {}), multi=None if rows is None else _unit(rows)))
            return out

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


def _options(spec: CollectionSpec, quantization: Quantization, rescore: bool | None,
             oversampling: float | None, exact: bool) -> SearchOptions:
    options = SearchOptions(quantization=quantization, rescore=spec.rescore if rescore is None else bool(rescore),
                            oversampling=spec.oversampling if oversampling is None else float(oversampling),
                            exact=bool(exact))
    if options.oversampling < 1.0:
        raise StoreError(f"oversampling must be ≥ 1.0, got {options.oversampling}")
    return options


def multi_mismatch(spec: CollectionSpec, stored: Quantization, where: str) -> None:
    """StoreError if the stored quantization of the multivector differs from the (always explicit) spec."""
    mv = _multi_spec(spec)
    if stored != mv.quantization:
        raise StoreError(f"multivector {mv.name!r} of collection {spec.name!r} at {where} is stored with "
                         f"quantization {stored!r}, requested {mv.quantization!r}; ask for {stored!r} or recreate it")


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
