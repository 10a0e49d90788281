"""The embedded engine: Qdrant Edge (``qdrant-edge-py``), one ``EdgeShard`` per collection.

Behaviour, measurements and the quantization rules are in the :mod:`streams.store` docstring.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from streams.store_base import (
    CollectionInfo,
    CollectionSpec,
    Hit,
    Prepared,
    Quantization,
    SearchOptions,
    SparseTerms,
    StoreError,
    log,
)
from streams.store_engine import Engine, boundary, hit, mismatch, multi_mismatch

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
        if exists:
            shard = qe.EdgeShard.load(str(path), config)  # checks compatibility with the stored config
        else:
            path.mkdir(parents=True, exist_ok=True)
            shard = qe.EdgeShard.create(str(path), config)
        self._shards[spec.name] = shard
        return kind

    def _do_upsert(self, spec: CollectionSpec, points: list[Prepared]) -> None:
        batch = [qe.Point(id=pid, payload=payload, vector={
            name: qe.SparseVector(list(v.indices), list(v.values)) if isinstance(v, SparseTerms) else v
            for name, v in vectors.items()}) for pid, vectors, payload in points]
        self._shards[spec.name].update(qe.UpdateOperation.upsert_points(batch))

    def _do_count(self, collection: str) -> int:
        return self._shards[collection].count(qe.CountRequest(exact=True))

    def _do_query(self, collection: str, using: str, query: list[float] | list[list[float]] | SparseTerms,
                  limit: int, exclude: list[str], options: SearchOptions | None) -> list[Hit]:
        vector = qe.SparseVector(list(query.indices), list(query.values)) if isinstance(query, SparseTerms) else query
        flt = qe.Filter(must_not=[qe.HasIdCondition(set(exclude))]) if exclude else None
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
