"""Types and the :class:`VectorStore` interface shared by the store modules.

Imports no Qdrant package: the engine base (validation, locking, error wrapping) is in
:mod:`streams.store.engine`, the engines in :mod:`streams.store.edge_engine` and
:mod:`streams.store.client_engine`; the public entry point is :mod:`streams.store`, whose
docstring describes the behaviour of the engines.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
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
Prepared = tuple[str, dict[str, Any], dict[str, Any]]  # id, {vector name: dense list | SparseTerms | rows}, payload

#: How a payload field is indexed: exact values, whole numbers, numbers, RFC 3339 instants.
IndexKind = Literal["keyword", "integer", "float", "datetime"]
INDEX_KINDS: tuple[str, ...] = get_args(IndexKind)
#: Payload indexes of every collection unless its spec says otherwise: the fields hunts filter on
#: (the entity fields of events, the ``entity`` of sessions, entities and alerts, templates, severity,
#: alert kind, event time and session bounds). An index on a field no point has costs nothing.
DEFAULT_INDEXES: tuple[tuple[str, IndexKind], ...] = (
    ("user", "keyword"), ("host", "keyword"), ("src_ip", "keyword"), ("dst_ip", "keyword"),
    ("entity.type", "keyword"), ("entity.id", "keyword"), ("template_id", "keyword"),
    ("severity", "keyword"), ("kind", "keyword"), ("session_id", "keyword"),
    ("time", "datetime"), ("start_epoch", "float"), ("end_epoch", "float"),
)


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


FieldValue = str | int | bool


@dataclass(frozen=True)
class FieldMatch:
    """Condition: the payload field ``key`` (a dotted path such as ``entity.id``) equals one of ``values``.

    ``values`` are all strings or all integers (one boolean alone is allowed too).
    """

    key: str
    values: tuple[FieldValue, ...]

    def __post_init__(self) -> None:
        if not self.key:
            raise StoreError("FieldMatch needs a payload key")
        if not self.values:
            raise StoreError(f"FieldMatch on {self.key!r} needs at least one value")
        kinds = {bool if isinstance(v, bool) else int if isinstance(v, int) else str if isinstance(v, str) else None
                 for v in self.values}
        if None in kinds or len(kinds) > 1 or (bool in kinds and len(self.values) > 1):
            raise StoreError(f"FieldMatch on {self.key!r}: values must be all strings or all integers "
                             f"(or one boolean), got {self.values!r}")


@dataclass(frozen=True)
class FieldRange:
    """Condition: the payload field ``key`` lies in ``[gte, lte]``; a bound of None is open.

    Bounds are numbers; with ``datetime`` the field holds RFC 3339 strings (e.g. an event's
    ``time``) and the bounds are epoch seconds, compared as instants.
    """

    key: str
    gte: float | None = None
    lte: float | None = None
    datetime: bool = False

    def __post_init__(self) -> None:
        if not self.key:
            raise StoreError("FieldRange needs a payload key")
        for bound in (self.gte, self.lte):
            if bound is not None and not math.isfinite(bound):
                raise StoreError(f"FieldRange on {self.key!r}: bounds must be finite, got {bound!r}")
        if self.gte is None and self.lte is None:
            raise StoreError(f"FieldRange on {self.key!r} needs gte, lte or both")
        if self.gte is not None and self.lte is not None and self.gte > self.lte:
            raise StoreError(f"FieldRange on {self.key!r}: gte {self.gte} is after lte {self.lte}")


@dataclass(frozen=True)
class FieldContains:
    """Condition: the string payload field ``key`` contains ``text`` (``at_start``: begins with it).

    Byte-wise and case-sensitive, like exact matching.
    """

    key: str
    text: str
    at_start: bool = False

    def __post_init__(self) -> None:
        if not self.key or not self.text:
            raise StoreError("FieldContains needs a payload key and a non-empty text")


Condition = FieldMatch | FieldRange | FieldContains


@dataclass(frozen=True)
class StoreFilter:
    """Payload conditions of a search: every ``must`` holds and, when ``should`` is not empty,
    at least one ``should`` holds. A point without the field fails a condition on it."""

    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.must or self.should)


@dataclass
class StorePoint:
    """One point to upsert: a UUID id (see :func:`point_id`), vectors and a JSON-able payload.

    ``multi``: float32 ``[m ≥ 1, dim]`` non-zero rows, for a collection with a :class:`MultiVectorSpec`;
    ``None`` stores the point without it (MaxSim searches then never return it).
    """

    id: str
    dense: np.ndarray
    sparse: SparseTerms | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    multi: np.ndarray | None = None


@dataclass(frozen=True)
class Hit:
    """A search or retrieve result: point id, score (cosine similarity, sparse dot, or 1.0), payload."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class MultiVectorSpec:
    """A named multivector of a collection: each point holds a matrix of ``dim``-d rows, compared by
    MaxSim (late interaction, ColBERT-style) over cosine similarity.

    The MaxSim score of a point for a query of ``q`` rows is the sum, over the query rows, of the
    best cosine similarity with any of the point's rows: in ``[-q, q]``.

    ``quantization`` is explicit (never the store default; ``int8`` unless given, measured in
    :mod:`streams.store`) and must match what is stored, else :meth:`VectorStore.ensure` raises.
    No HNSW graph is built on a multivector: MaxSim searches scan its (quantized) rows.
    """

    name: str
    dim: int
    quantization: Quantization = "int8"

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise StoreError(f"multivector name {self.name!r} must match {_NAME_RE.pattern}")
        if self.dim < 1:
            raise StoreError(f"multivector dim must be ≥ 1, got {self.dim}")
        check_quantization(self.quantization)


@dataclass(frozen=True)
class CollectionSpec:
    """Shape of a collection: name, dense dimension, vector names, and how the dense vector is quantized.

    ``quantization`` ``None`` means the store's default (``open_store(quantization=...)``,
    int8 unless configured); a collection that already exists keeps the quantization it
    was created with (logged). An explicit value must match what is stored, else
    :meth:`VectorStore.ensure` raises. ``always_ram`` keeps the quantized vectors in RAM.
    ``rescore`` and ``oversampling`` are search-time: fetch ``oversampling × limit``
    candidates by the quantized vectors and re-rank them by the original float32 ones (dense
    and multivector searches alike). ``multivector`` adds a named MaxSim multivector
    (:class:`MultiVectorSpec`, its own quantization), searched by :meth:`VectorStore.search_multi`.
    """

    name: str
    dense_dim: int
    dense_name: str = "hybrid"
    sparse_name: str | None = "terms"
    quantization: Quantization | None = None
    always_ram: bool = True
    oversampling: float = 2.0
    rescore: bool = True
    multivector: MultiVectorSpec | None = None
    indexes: tuple[tuple[str, IndexKind], ...] = DEFAULT_INDEXES

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise StoreError(f"collection name {self.name!r} must match {_NAME_RE.pattern}")
        for key, kind in self.indexes:
            if not key or kind not in INDEX_KINDS:
                raise StoreError(f"payload index ({key!r}, {kind!r}): kind must be one of {', '.join(INDEX_KINDS)}")
        if self.dense_dim < 1:
            raise StoreError(f"dense_dim must be ≥ 1, got {self.dense_dim}")
        if not self.dense_name or self.sparse_name == "" or self.sparse_name == self.dense_name:
            raise StoreError("dense_name must be non-empty; sparse_name must be None or a different non-empty name")
        if self.quantization is not None:
            check_quantization(self.quantization)
        if not self.oversampling >= 1.0:
            raise StoreError(f"oversampling must be ≥ 1.0, got {self.oversampling}")
        if self.multivector is not None and self.multivector.name in (self.dense_name, self.sparse_name):
            raise StoreError(f"multivector name {self.multivector.name!r} must differ from the dense and sparse names")


@dataclass(frozen=True)
class CollectionInfo:
    """What an engine reports about a collection.

    ``quantization`` is the one in effect (as stored by the engine); ``indexed_vectors``
    counts dense vectors in optimized (HNSW, quantized) segments, multivectors included (Qdrant
    sums the named vectors: 2 a point when each has both); ``disk_bytes`` is the size of the
    collection's directory where the engine has one, else None.
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
    def attach(self, collection: str) -> CollectionSpec | None:
        """Open an existing collection with the spec it is stored with (as :meth:`ensure` would),
        and return that spec; None, creating nothing, when it does not exist.

        For readers that do not know a collection's dimensions (a hunt). A collection whose
        stored vectors this store cannot describe (several plain dense vectors) raises StoreError.
        """

    @abstractmethod
    def search_dense(self, collection: str, vector: np.ndarray, limit: int, *,
                     exclude_ids: Sequence[str] = (), rescore: bool | None = None,
                     oversampling: float | None = None, exact: bool = False,
                     where: StoreFilter | None = None) -> list[Hit]:
        """The ``limit`` nearest points by cosine similarity (score in [-1, 1]), best first.

        Only points matching ``where`` (:class:`StoreFilter`) are considered.
        Points whose id is in ``exclude_ids`` are never returned. ``rescore`` and
        ``oversampling`` override the collection's settings (re-rank ``oversampling × limit``
        quantized candidates by float32); ``exact`` scans all
        float32 vectors (no HNSW, no quantization). Without rescoring, scores of quantized
        segments are approximate.
        """

    @abstractmethod
    def search_sparse(self, collection: str, terms: SparseTerms, limit: int, *,
                      where: StoreFilter | None = None) -> list[Hit]:
        """The ``limit`` best points matching ``where`` by IDF-weighted sparse dot product, best first."""

    @abstractmethod
    def search_multi(self, collection: str, rows: np.ndarray, limit: int, *,
                     exclude_ids: Sequence[str] = (), rescore: bool | None = None,
                     oversampling: float | None = None, exact: bool = False,
                     where: StoreFilter | None = None) -> list[Hit]:
        """The ``limit`` best points by MaxSim of the query ``rows`` (float32 ``[q, dim]``) against
        the collection's multivector, best first; score in ``[-q, q]`` (see :class:`MultiVectorSpec`).

        The collection must have a multivector (else :class:`StoreError`); points stored
        without one are never returned. ``exclude_ids``, ``rescore``, ``oversampling``,
        ``exact`` and ``where`` as in :meth:`search_dense`, applied to the multivector's quantization.
        """

    @abstractmethod
    def retrieve(self, collection: str, ids: Sequence[str]) -> list[Hit]:
        """Stored payloads of ``ids`` in request order, score 1.0; missing ids are omitted."""

    @abstractmethod
    def retrieve_points(self, collection: str, ids: Sequence[str]) -> list[StorePoint]:
        """Stored points of ``ids`` with their vectors (float32 dense and multivector rows at unit
        length, as cosine compares them; sparse) and payloads, in request order; missing ids are omitted."""

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
