"""The embedded engine: Qdrant Edge (``qdrant-edge-py``), one ``EdgeShard`` per collection.

Behaviour, measurements and the quantization rules are in the :mod:`streams.store` docstring.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import qdrant_edge as qe

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
    log,
)
from streams.store.engine import Engine, boundary, hit, mismatch, multi_mismatch

__all__ = ["EdgeStore"]

EDGE_SEGMENTS = 16
_CONFIG_FILE = "edge_config.json"
QuantConfig = qe.ScalarQuantizationConfig | qe.BinaryQuantizationConfig | None


def _quant_config(kind: Quantization, always_ram: bool) -> QuantConfig:
    if kind == "int8":
        return qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=always_ram)
    if kind == "binary":
        return qe.BinaryQuantizationConfig(always_ram=always_ram)
    return None


_INDEX_TYPES: dict[IndexKind, qe.PayloadSchemaType] = {
    "keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float, "datetime": qe.PayloadSchemaType.Datetime}


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat().replace("+00:00", "Z")


def _condition(cond: Any) -> Any:
    if isinstance(cond, FieldMatch):
        values = list(cond.values)
        match = qe.MatchValue(values[0]) if len(values) == 1 else qe.MatchAny(values)
        return qe.FieldCondition(cond.key, match=match)
    if isinstance(cond, FieldContains):
        text = qe.MatchPrefix(cond.text) if cond.at_start else qe.MatchSubstring(cond.text)
        return qe.FieldCondition(cond.key, match=text)
    if cond.datetime:
        lo = None if cond.gte is None else _rfc3339(cond.gte)
        hi = None if cond.lte is None else _rfc3339(cond.lte)
        return qe.FieldCondition(cond.key, range=qe.RangeDateTime(gte=lo, lte=hi))
    return qe.FieldCondition(cond.key, range=qe.RangeFloat(gte=cond.gte, lte=cond.lte))


def edge_filter(where: StoreFilter | None, exclude: list[str]) -> qe.Filter | None:
    """The qdrant-edge filter of a :class:`StoreFilter` plus excluded point ids (None when empty)."""
    must = [_condition(c) for c in where.must] if where else []
    should = [_condition(c) for c in where.should] if where else []
    must_not = [qe.HasIdCondition(set(exclude))] if exclude else []
    if not (must or should or must_not):
        return None
    return qe.Filter(must=must or None, should=should or None, must_not=must_not or None)


def _stored_config(path: Path) -> dict[str, Any] | None:
    """The shard's config file as written; None if absent.

    The config file is the only place qdrant-edge exposes the stored config;
    ``EdgeShard.load(path, config)`` overwrites it with ``config`` (quantization included),
    so it must be read first.
    """
    try:
        raw = json.loads((path / _CONFIG_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {path / _CONFIG_FILE}: {exc}") from exc
    return raw if isinstance(raw, dict) else {}


def _stored_quantization(raw: dict[str, Any], name: str, spec: CollectionSpec,
                         path: Path) -> tuple[Quantization, bool]:
    """(kind, always_ram) of vector ``name`` in a stored config (a per-vector config overrides the collection's)."""
    vector = (raw.get("vectors") or {}).get(name) or {}
    quant: dict[str, Any] = vector.get("quantization_config") or raw.get("quantization_config") or {}
    if not quant:
        return "none", spec.always_ram
    if "scalar" in quant and str((quant["scalar"] or {}).get("type", "int8")).lower() == "int8":
        return "int8", bool(quant["scalar"].get("always_ram", False))
    if "binary" in quant and (quant["binary"] or {}).get("encoding") in (None, "one_bit"):
        return "binary", bool((quant["binary"] or {}).get("always_ram", False))
    raise StoreError(f"collection {spec.name!r} at {path} uses quantization {quant}, which this store "
                     f"does not manage (int8 scalar or one-bit binary)")


def _check_stored_multi(raw: dict[str, Any], spec: CollectionSpec, path: Path) -> None:
    """StoreError unless the stored config has the spec's multivector (MaxSim, cosine, same dim and quantization).

    ``EdgeShard.load`` refuses other vector names or sizes in Qdrant's words; this also checks the
    comparator and the quantization, which ``load`` would overwrite, and names what to do.
    """
    mv = spec.multivector
    assert mv is not None
    stored = (raw.get("vectors") or {}).get(mv.name)
    if stored is None:
        raise StoreError(f"collection {spec.name!r} at {path} has no multivector {mv.name!r} "
                         f"(vectors: {sorted(raw.get('vectors') or {})}); recreate it to add one")
    comparator = (stored.get("multivector_config") or {}).get("comparator")
    if stored.get("size") != mv.dim or comparator != "max_sim" or stored.get("distance") != "Cosine":
        raise StoreError(f"collection {spec.name!r} at {path} stores {mv.name!r} as size {stored.get('size')}, "
                         f"distance {stored.get('distance')}, comparator {comparator}; expected a {mv.dim}-d "
                         f"cosine MaxSim multivector")
    multi_mismatch(spec, _stored_quantization(raw, mv.name, spec, path)[0], str(path))


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512  # allocated, not apparent (mmaps are sparse)
            except OSError:
                pass
    return total


class EdgeStore(Engine):
    """Qdrant Edge in-process engine: one ``EdgeShard`` per collection in ``root/<collection>`` (created if absent).

    HNSW and int8 quantization are built only by :meth:`optimize`; until then queries scan
    exactly (see :mod:`streams.store`). ``quantization`` is the default for new collections.
    """

    def __init__(self, root: Path, *, quantization: Quantization = "int8") -> None:
        super().__init__(quantization)
        self.root = Path(root)
        with boundary(f"create store directory {self.root}"):
            self.root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, qe.EdgeShard] = {}

    def _do_open(self, spec: CollectionSpec, explicit: bool) -> Quantization:
        path = self.root / spec.name
        exists = (path / _CONFIG_FILE).exists() or (path / "segments").exists()
        kind: Quantization = spec.quantization or "none"
        always_ram = spec.always_ram
        raw = _stored_config(path) if exists else None
        if raw is not None:
            stored = _stored_quantization(raw, spec.dense_name, spec, path)
            kind = mismatch(spec, stored[0], explicit, str(path))
            if kind != spec.quantization:
                always_ram = stored[1]
            if spec.multivector is not None:
                _check_stored_multi(raw, spec, path)
        sparse = None
        if spec.sparse_name is not None:
            sparse = {spec.sparse_name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
        vectors = {spec.dense_name: qe.EdgeVectorParams(size=spec.dense_dim, distance=qe.Distance.Cosine,
                                                        quantization_config=_quant_config(kind, always_ram))}
        if spec.multivector is not None:
            mv = spec.multivector
            vectors[mv.name] = qe.EdgeVectorParams(
                size=mv.dim, distance=qe.Distance.Cosine,
                multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
                # m=0: no graph on the multivector (measured, see streams.store); the others are Qdrant's defaults
                hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
                quantization_config=_quant_config(mv.quantization, spec.always_ram))
        config = qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse,
                               optimizers=qe.EdgeOptimizersConfig(default_segment_number=EDGE_SEGMENTS))
        try:
            if exists:
                shard = qe.EdgeShard.load(str(path), config)  # checks compatibility with the stored config
            else:
                path.mkdir(parents=True, exist_ok=True)
                shard = qe.EdgeShard.create(str(path), config)
        except Exception as exc:
            if "WouldBlock" in str(exc):  # the shard's WAL is locked: another process has it open
                raise StoreError(f"the embedded store {self.root} is open in another process (a running "
                                 f"`secstream run`?); it cannot be shared: stop that process, or use a Qdrant "
                                 f"server (SECSTREAM_QDRANT_URL)") from exc
            raise
        self._shards[spec.name] = shard
        have = shard.info().payload_schema
        for key, index_kind in spec.indexes:
            if key not in have:
                shard.update(qe.UpdateOperation.create_field_index(key, _INDEX_TYPES[index_kind]))
        return kind

    def _do_describe(self, collection: str) -> CollectionSpec | None:
        path = self.root / collection
        raw = _stored_config(path)
        if raw is None:
            return None
        vectors: dict[str, Any] = raw.get("vectors") or {}
        plain = sorted(name for name, v in vectors.items() if not v.get("multivector_config"))
        multi = sorted(name for name, v in vectors.items() if v.get("multivector_config"))
        sparse = sorted(raw.get("sparse_vectors") or {})
        if len(plain) != 1 or len(multi) > 1 or len(sparse) > 1:
            raise StoreError(f"collection {collection!r} at {path} has vectors {sorted(vectors)} and sparse "
                             f"vectors {sparse}; this store describes one dense, at most one multivector and "
                             f"at most one sparse vector")
        probe = CollectionSpec(name=collection, dense_dim=1)
        kind, always_ram = _stored_quantization(raw, plain[0], probe, path)
        mv = None
        if multi:
            mv = MultiVectorSpec(name=multi[0], dim=int(vectors[multi[0]]["size"]),
                                 quantization=_stored_quantization(raw, multi[0], probe, path)[0])
        return CollectionSpec(name=collection, dense_dim=int(vectors[plain[0]]["size"]), dense_name=plain[0],
                              sparse_name=sparse[0] if sparse else None, quantization=kind,
                              always_ram=always_ram, multivector=mv)

    def _do_upsert(self, spec: CollectionSpec, points: list[Prepared]) -> None:
        batch = [qe.Point(id=pid, payload=payload, vector={
            name: qe.SparseVector(list(v.indices), list(v.values)) if isinstance(v, SparseTerms) else v
            for name, v in vectors.items()}) for pid, vectors, payload in points]
        self._shards[spec.name].update(qe.UpdateOperation.upsert_points(batch))

    def _do_count(self, collection: str) -> int:
        return self._shards[collection].count(qe.CountRequest(exact=True))

    def _do_query(self, collection: str, using: str, query: list[float] | list[list[float]] | SparseTerms,
                  limit: int, exclude: list[str], options: SearchOptions | None,
                  where: StoreFilter | None) -> list[Hit]:
        vector = qe.SparseVector(list(query.indices), list(query.values)) if isinstance(query, SparseTerms) else query
        flt = edge_filter(where, exclude)
        params = None
        if options is not None and (options.exact or options.quantization != "none"):
            quant = None
            if options.quantization != "none":
                quant = qe.QuantizationSearchParams(ignore=options.exact, rescore=options.rescore,
                                                    oversampling=options.oversampling)
            params = qe.SearchParams(exact=options.exact, quantization=quant)
        request = qe.QueryRequest(limit=limit, query=qe.Query.Nearest(vector, using=using), filter=flt,
                                  with_payload=True, with_vector=False, params=params)
        return [hit(p.id, p.score, p.payload) for p in self._shards[collection].query(request)]

    def _do_retrieve(self, collection: str, ids: list[str]) -> list[Hit]:
        return [hit(r.id, None, r.payload) for r in self._shards[collection].retrieve(ids, True, False)]

    def _do_retrieve_points(self, collection: str, ids: list[str]) -> list[Prepared]:
        out: list[Prepared] = []
        for r in self._shards[collection].retrieve(ids, True, True):
            vectors = {name: SparseTerms(list(v.indices), list(v.values)) if isinstance(v, qe.SparseVector) else v
                       for name, v in (r.vector or {}).items()}
            out.append((str(r.id), vectors, dict(r.payload or {})))
        return out

    def _do_info(self, spec: CollectionSpec) -> CollectionInfo:
        info = self._shards[spec.name].info()
        return CollectionInfo(name=spec.name, points=int(info.points_count),
                              indexed_vectors=int(info.indexed_vectors_count), segments=int(info.segments_count),
                              quantization=spec.quantization or "none", disk_bytes=_dir_bytes(self.root / spec.name))

    def optimize(self, collection: str | None = None) -> bool:
        """Build HNSW (and int8 quantized vectors) for the points added since the last optimize.

        Blocks and holds the GIL; only segments above the indexing threshold are rebuilt.
        """
        with self._lock:
            self._check_open()
            did = False
            for name in [self._spec(collection).name] if collection is not None else list(self._shards):
                t0 = time.perf_counter()
                with boundary(f"optimize {name!r}"):
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
