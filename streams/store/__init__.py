"""The vector store: one small interface over Qdrant's embedded engines and its server.

The store modules (``streams/store*.py``) are the only ones that import ``qdrant_client``
or ``qdrant_edge``: this one is the public API; the engines live in :mod:`streams.store.edge_engine`
and :mod:`streams.store.client_engine`, the shared types in :mod:`streams.store.base` and the engine
base in :mod:`streams.store.engine`.
Every collection has a named dense vector (``hybrid``, cosine) and optionally a named
sparse vector (``terms``, IDF modifier), on every engine, and optionally a named multivector
(:class:`MultiVectorSpec`: rows of one dimension per point, compared by MaxSim over cosine,
searched with :meth:`VectorStore.search_multi`; both engines, no HNSW graph on it, int8 by
default, its own quantization that never follows the store default). Point ids are UUIDv5
of a stable key (:func:`point_id`), so a replayed event overwrites itself. Third-party errors
surface as :class:`StoreError`.

Engines: :class:`EdgeStore` (qdrant-edge, the embedded default: one ``EdgeShard`` per
collection in ``root/<collection>``, created on the first ``ensure``, loaded with its
config checked on later ones) and :class:`ClientStore` (qdrant-client: a server by URL, or
local mode on disk / in memory — numpy brute force plus one SQLite commit per point,
for tests and small data).

Quantization of the dense vector (``CollectionSpec.quantization``; ``None`` takes the
store's default, ``open_store(quantization=...)``, int8 unless configured): ``int8``
(Qdrant scalar quantization, 1 byte a dimension) is the default; ``binary`` (1 bit a
dimension) is an option; ``none`` keeps float32 only. The float32 vectors are always kept:
searches fetch ``oversampling`` (2.0) × ``limit`` candidates by the quantized vectors and
rescore them with the originals (``rescore=True``); ``search_dense(..., rescore=False)``
returns approximate scores, ``exact=True`` scans float32 with no index or quantization.
When the edge engine actually uses quantized vectors (measured, qdrant-edge 0.9):
int8 only in optimized segments, which only :meth:`EdgeStore.optimize` builds, and only
for segments above the indexing threshold (HNSW and int8 are built together; a small
collection stays one appendable float32 segment, searched exactly, and ``optimize()``
returns False); binary already in the appendable segment, from the first upsert.
:meth:`VectorStore.info` reports ``indexed_vectors`` (points in optimized segments) and
the quantization in effect. Local mode stores the config but always searches float32 by
brute force (search parameters are sent to a server only). Recall against float32 on
real hybrid vectors: ``python -m bench.quantization``.

A multivector is quantized in the same places as the dense vector (edge: int8 after
``optimize()``; local mode: never), int8 by default, with the float32 rows kept for rescoring.
Measured on edge (``python -m bench.session_store``, 10k points of 8–32 rows × 433-d, 2 shared
cores): 600–800 upserts/s; MaxSim p50 29–44 ms before ``optimize()`` (exact scan), after it
10–12.5 ms with int8 rows (rescored, recall@10 1.0 vs exact) and 42–52 ms with float32 rows;
about 130 KiB of disk a point after ``optimize()``. The multivector has no HNSW graph (Qdrant
``m=0``): with one (m=16), ``optimize()`` of 2k such points took 16.6 s instead of 1.0 s, and
MaxSim answered slower (2.6 vs 2.0 ms p50) and missed 2 of 30 top hits.

An existing collection keeps the quantization it was created with: if the spec leaves it
``None`` (store default) and the stored one differs, the stored one stays in effect and a
warning is logged (so changing the default never rewrites or breaks existing data);
if the spec asks explicitly for a different one, ``ensure`` raises :class:`StoreError`
naming both. (``EdgeShard.load(path, config)`` would silently overwrite the stored config,
so the edge engine reads ``edge_config.json`` first.)

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

Filters and payload indexes: ``search_dense``/``search_sparse``/``search_multi`` take
``where=StoreFilter(must=..., should=...)`` of :class:`FieldMatch` (exact values),
:class:`FieldContains` (prefix or substring of a string) and :class:`FieldRange` (numbers, or
RFC 3339 strings such as an event's ``time`` compared as instants, bounds in epoch seconds),
applied inside the engine's search (filtered HNSW), on both engines. ``ensure`` creates the
payload indexes of ``CollectionSpec.indexes`` (:data:`DEFAULT_INDEXES`: entity fields,
``entity.type``/``entity.id``, ``template_id``, ``severity``, ``kind``, ``session_id`` as
keywords, ``time`` as datetime, ``start_epoch``/``end_epoch`` as floats) where missing, on
edge and a server; local mode has no payload indexes and scans. Measured on edge (24k sample
events as payloads, 506-d random vectors, batches of 2,000): 8.0k upserts/s with the default
indexes vs 9.1-9.7k without, about 15% slower writes.

Readers: :meth:`VectorStore.attach` opens an existing collection with its stored spec (a hunt
does not know the dimensions); :meth:`VectorStore.retrieve_points` returns stored vectors.
An edge shard is exclusive to one process (its write-ahead log is locked): opening a store
that a running worker holds raises StoreError saying so; hunt next to a running worker
needs a Qdrant server.

Threads: every public method holds a per-store lock. Local mode is not thread-safe
(concurrent calls raised ``sqlite3.OperationalError``); an ``EdgeShard`` survived 4
threads mixing upserts and queries, but its calls hold the GIL, so serializing costs
nothing and also makes ``close()`` safe against an in-flight query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from streams.store.base import (
    DEFAULT_INDEXES,
    NAMESPACE,
    QUANTIZATIONS,
    CollectionInfo,
    CollectionSpec,
    FieldContains,
    FieldMatch,
    FieldRange,
    Hit,
    IndexKind,
    MultiVectorSpec,
    Quantization,
    SparseTerms,
    StoreError,
    StoreFilter,
    StorePoint,
    VectorStore,
    check_quantization,
    point_id,
)
from streams.store.edge_engine import EdgeStore

__all__ = ["DEFAULT_INDEXES", "ENGINES", "NAMESPACE", "QUANTIZATIONS", "ClientStore", "CollectionInfo",
           "CollectionSpec", "EdgeStore", "FieldContains", "FieldMatch", "FieldRange", "Hit", "IndexKind",
           "MultiVectorSpec", "Quantization", "SparseTerms", "StoreError", "StoreFilter", "StorePoint", "VectorStore",
           "open_store", "point_id"]

ENGINES = ("edge", "local")


def __getattr__(name: str) -> Any:
    """``ClientStore`` on first use: qdrant-client costs 1.3 s of imports that a worker on the edge engine (the
    default) never needs."""
    if name == "ClientStore":
        from streams.store.client_engine import ClientStore

        return ClientStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(*, url: str = "", api_key: str = "", engine: Literal["edge", "local"] = "edge",
               path: Path | None = None, quantization: Quantization = "int8", ca_file: str = "") -> VectorStore:
    """The store for a configuration: a server if ``url`` (``ca_file``: PEM CA bundle for its TLS
    certificate), else the embedded ``engine`` at ``path``.

    ``engine="edge"`` needs ``path`` (a directory of shards); ``engine="local"`` without
    ``path`` runs in memory. ``quantization`` is the default for collections whose spec
    leaves it ``None`` (see the module docstring).
    """
    check_quantization(quantization)
    if url:
        from streams.store.client_engine import ClientStore

        return ClientStore(url=url, api_key=api_key, quantization=quantization, ca_file=ca_file)
    if engine == "edge":
        if path is None:
            raise StoreError("engine 'edge' needs path=<directory>; use engine='local' for an in-memory store")
        return EdgeStore(path, quantization=quantization)
    if engine == "local":
        from streams.store.client_engine import ClientStore

        return ClientStore(path=path, quantization=quantization)
    raise StoreError(f"unknown store engine {engine!r}; valid engines: {', '.join(ENGINES)}")
