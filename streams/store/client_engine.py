"""The qdrant-client engine: a Qdrant server by URL, or local mode on disk / in memory.

Behaviour and the quantization rules are in the :mod:`streams.store` docstring.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from streams.store.base import (
    CollectionInfo,
    CollectionSpec,
    FieldContains,
    FieldMatch,
    Hit,
    IndexKind,
    MultiVectorSpec,
    Prepared,
    Quantization,
    SearchOptions,
    SparseTerms,
    StoreError,
    StoreFilter,
)
from streams.store.engine import Engine, boundary, hit, mismatch, multi_mismatch

__all__ = ["ClientStore"]


def _quant_config(kind: Quantization, always_ram: bool) -> qm.QuantizationConfig | None:
    if kind == "int8":
        return qm.ScalarQuantization(scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8,
                                                                        always_ram=always_ram))
    if kind == "binary":
        return qm.BinaryQuantization(binary=qm.BinaryQuantizationConfig(always_ram=always_ram))
    return None


_INDEX_TYPES: dict[IndexKind, qm.PayloadSchemaType] = {
    "keyword": qm.PayloadSchemaType.KEYWORD, "integer": qm.PayloadSchemaType.INTEGER,
    "float": qm.PayloadSchemaType.FLOAT, "datetime": qm.PayloadSchemaType.DATETIME}


def _condition(cond: Any) -> qm.FieldCondition:
    if isinstance(cond, FieldMatch):
        values = list(cond.values)
        match: Any = qm.MatchValue(value=values[0]) if len(values) == 1 else qm.MatchAny(any=values)
        return qm.FieldCondition(key=cond.key, match=match)
    if isinstance(cond, FieldContains):
        text: Any = qm.MatchPrefix(prefix=cond.text) if cond.at_start else qm.MatchSubstring(substring=cond.text)
        return qm.FieldCondition(key=cond.key, match=text)
    if cond.datetime:
        def instant(epoch_s: float | None) -> datetime | None:
            return None if epoch_s is None else datetime.fromtimestamp(epoch_s, tz=UTC)
        return qm.FieldCondition(key=cond.key, range=qm.DatetimeRange(gte=instant(cond.gte), lte=instant(cond.lte)))
    return qm.FieldCondition(key=cond.key, range=qm.Range(gte=cond.gte, lte=cond.lte))


def client_filter(where: StoreFilter | None, exclude: list[str]) -> qm.Filter | None:
    """The qdrant-client filter of a :class:`StoreFilter` plus excluded point ids (None when empty)."""
    must: list[Any] = [_condition(c) for c in where.must] if where else []
    should: list[Any] = [_condition(c) for c in where.should] if where else []
    must_not: list[Any] = [qm.HasIdCondition(has_id=list(exclude))] if exclude else []
    if not (must or should or must_not):
        return None
    return qm.Filter(must=must or None, should=should or None, must_not=must_not or None)


def _kind(config: Any, name: str) -> Quantization:
    """The quantization of a stored per-vector or collection-level config."""
    if config is None:
        return "none"
    if isinstance(config, qm.ScalarQuantization) and config.scalar.type == qm.ScalarType.INT8:
        return "int8"
    if isinstance(config, qm.BinaryQuantization) and config.binary.encoding in (
            None, qm.BinaryQuantizationEncoding.ONE_BIT):
        return "binary"
    raise StoreError(f"collection {name!r} uses quantization {config}, which this store does not manage "
                     f"(int8 scalar or one-bit binary)")


class ClientStore(Engine):
    """qdrant-client: a Qdrant server (``url``, ``api_key``, ``timeout`` in s), else local mode
    on disk (``path``), else local mode in memory. ``url`` and ``path`` are exclusive.

    An ``https://`` url is verified against the system CAs, or against ``ca_file`` (PEM) for a
    server whose certificate a private CA signed; the API key travels in the ``api-key`` header.

    ``quantization`` is the default for new collections. Local mode stores the quantization
    config but searches float32 by brute force; search parameters go to a server only.
    """

    def __init__(self, *, url: str = "", api_key: str = "", path: Path | None = None, timeout: int = 30,
                 quantization: Quantization = "int8", ca_file: str = "") -> None:
        super().__init__(quantization)
        if url and path is not None:
            raise StoreError("give either url (server) or path (local mode), not both")
        self.url, self.path = url, path
        with boundary(f"open qdrant-client ({url or path or ':memory:'})"):
            if url:
                tls = {"verify": ssl.create_default_context(cafile=ca_file)} if ca_file else {}
                self._client = QdrantClient(url=url, api_key=api_key or None, timeout=timeout, **tls)
            elif path is not None:
                Path(path).mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=str(path))
            else:
                self._client = QdrantClient(location=":memory:")

    def _do_open(self, spec: CollectionSpec, explicit: bool) -> Quantization:
        kind: Quantization = spec.quantization or "none"
        if not self._client.collection_exists(spec.name):
            sparse = None
            if spec.sparse_name is not None:
                sparse = {spec.sparse_name: qm.SparseVectorParams(modifier=qm.Modifier.IDF)}
            dense = {spec.dense_name: qm.VectorParams(size=spec.dense_dim, distance=qm.Distance.COSINE,
                                                      quantization_config=_quant_config(kind, spec.always_ram))}
            if spec.multivector is not None:
                mv = spec.multivector
                dense[mv.name] = qm.VectorParams(
                    size=mv.dim, distance=qm.Distance.COSINE,
                    multivector_config=qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM),
                    hnsw_config=qm.HnswConfigDiff(m=0),  # no graph (measured, see streams.store)
                    quantization_config=_quant_config(mv.quantization, spec.always_ram))
            try:
                self._client.create_collection(spec.name, vectors_config=dense, sparse_vectors_config=sparse)
            except Exception:
                if not self._client.collection_exists(spec.name):  # else another worker won the race
                    raise
        info = self._client.get_collection(spec.name)  # one round trip: config and payload indexes
        config = info.config
        params = config.params
        have = params.vectors.get(spec.dense_name) if isinstance(params.vectors, dict) else None
        if have is None or have.size != spec.dense_dim or have.distance != qm.Distance.COSINE:
            raise StoreError(f"collection {spec.name!r} exists with dense vectors {params.vectors}, "
                             f"expected {spec.dense_name!r}: {spec.dense_dim}-d cosine")
        if spec.sparse_name is not None and spec.sparse_name not in (params.sparse_vectors or {}):
            raise StoreError(f"collection {spec.name!r} has no sparse vector {spec.sparse_name!r}")
        where = self.url or str(self.path or ":memory:")
        if spec.multivector is not None:
            self._check_multi(spec, params.vectors, config.quantization_config, where)
        if self.url:  # local mode has no payload indexes (qdrant-client warns and ignores them): it scans
            indexed = info.payload_schema or {}
            for key, index_kind in spec.indexes:
                if key not in indexed:
                    self._client.create_payload_index(spec.name, key, field_schema=_INDEX_TYPES[index_kind])
        # A per-vector config overrides the collection-level one.
        stored = _kind(have.quantization_config or config.quantization_config, spec.name)
        return mismatch(spec, stored, explicit, where)

    def _do_describe(self, collection: str) -> CollectionSpec | None:
        if not self._client.collection_exists(collection):
            return None
        config = self._client.get_collection(collection).config
        vectors = config.params.vectors if isinstance(config.params.vectors, dict) else {}
        plain = sorted(name for name, v in vectors.items() if v.multivector_config is None)
        multi = sorted(name for name, v in vectors.items() if v.multivector_config is not None)
        sparse = sorted(config.params.sparse_vectors or {})
        if len(plain) != 1 or len(multi) > 1 or len(sparse) > 1:
            raise StoreError(f"collection {collection!r} has vectors {sorted(vectors)} and sparse vectors {sparse}; "
                             f"this store describes one named dense, at most one multivector and at most one "
                             f"sparse vector")
        dense = vectors[plain[0]]
        quant = dense.quantization_config or config.quantization_config
        always_ram = bool(getattr(getattr(quant, "scalar", None) or getattr(quant, "binary", None),
                                  "always_ram", True))
        mv = None
        if multi:
            rows = vectors[multi[0]]
            mv = MultiVectorSpec(name=multi[0], dim=int(rows.size),
                                 quantization=_kind(rows.quantization_config or config.quantization_config,
                                                    collection))
        return CollectionSpec(name=collection, dense_dim=int(dense.size), dense_name=plain[0],
                              sparse_name=sparse[0] if sparse else None, quantization=_kind(quant, collection),
                              always_ram=always_ram, multivector=mv)

    @staticmethod
    def _check_multi(spec: CollectionSpec, vectors: dict[str, Any], collection_quant: Any, where: str) -> None:
        mv = spec.multivector
        assert mv is not None
        have = vectors.get(mv.name)
        if have is None:
            raise StoreError(f"collection {spec.name!r} at {where} has no multivector {mv.name!r} "
                             f"(vectors: {sorted(vectors)}); recreate it to add one")
        comparator = have.multivector_config.comparator if have.multivector_config is not None else None
        if have.size != mv.dim or have.distance != qm.Distance.COSINE or comparator != qm.MultiVectorComparator.MAX_SIM:
            raise StoreError(f"collection {spec.name!r} at {where} stores {mv.name!r} as {have}; expected a "
                             f"{mv.dim}-d cosine MaxSim multivector")
        multi_mismatch(spec, _kind(have.quantization_config or collection_quant, spec.name), where)

    def _do_upsert(self, spec: CollectionSpec, points: list[Prepared]) -> None:
        batch = [qm.PointStruct(id=pid, payload=payload, vector={
            name: qm.SparseVector(indices=list(v.indices), values=list(v.values))
            if isinstance(v, SparseTerms) else v for name, v in vectors.items()})
            for pid, vectors, payload in points]
        self._client.upsert(spec.name, points=batch, wait=True)

    def _do_count(self, collection: str) -> int:
        return self._client.count(collection, exact=True).count

    def _do_query(self, collection: str, using: str, query: list[float] | list[list[float]] | SparseTerms,
                  limit: int, exclude: list[str], options: SearchOptions | None,
                  where: StoreFilter | None) -> list[Hit]:
        vector: Any = query
        if isinstance(query, SparseTerms):
            vector = qm.SparseVector(indices=list(query.indices), values=list(query.values))
        flt = client_filter(where, exclude)
        params = None
        if self.url and options is not None and (options.exact or options.quantization != "none"):
            quant = None
            if options.quantization != "none":
                quant = qm.QuantizationSearchParams(ignore=options.exact, rescore=options.rescore,
                                                    oversampling=options.oversampling)
            params = qm.SearchParams(exact=options.exact, quantization=quant)
        res = self._client.query_points(collection, query=vector, using=using, limit=limit, query_filter=flt,
                                        with_payload=True, with_vectors=False, search_params=params)
        return [hit(p.id, p.score, p.payload) for p in res.points]

    def _do_retrieve(self, collection: str, ids: list[str]) -> list[Hit]:
        records = self._client.retrieve(collection, ids=ids, with_payload=True, with_vectors=False)
        return [hit(r.id, None, r.payload) for r in records]

    def _do_retrieve_points(self, collection: str, ids: list[str]) -> list[Prepared]:
        out: list[Prepared] = []
        for r in self._client.retrieve(collection, ids=ids, with_payload=True, with_vectors=True):
            named = r.vector if isinstance(r.vector, dict) else {}
            vectors = {name: SparseTerms(list(v.indices), list(v.values)) if isinstance(v, qm.SparseVector) else v
                       for name, v in named.items()}
            out.append((str(r.id), vectors, dict(r.payload or {})))
        return out

    def _do_info(self, spec: CollectionSpec) -> CollectionInfo:
        info = self._client.get_collection(spec.name)
        points = info.points_count if info.points_count is not None else self._do_count(spec.name)
        return CollectionInfo(name=spec.name, points=int(points), indexed_vectors=int(info.indexed_vectors_count or 0),
                              segments=int(info.segments_count or 0), quantization=spec.quantization or "none")

    def _do_flush(self) -> None:
        """Local mode and the server persist every upsert before it returns."""

    def _do_close(self) -> None:
        self._client.close()
