"""Recall@10 of quantized dense search (int8, binary) against exact float32, on real hybrid vectors.

``python -m bench.quantization [--data PATH --format F] [--limit N] [--queries 500] [--json]``
(also ``secstream bench quantization``). Events are encoded with the project's hybrid
encoder; by default the bundled sample (6,149 events) plus, when present, the first
20,000 events of the HDFS parquet sample and the OpenSSH 2k log. ``--queries`` events
(seeded shuffle) are held out as queries; the rest are indexed. For each quantization the
edge engine is filled, searched as written (the appendable segment), then ``optimize()``d
and searched with and without rescoring. The truth is exact float32 cosine in numpy.

Recall@10 is tie-aware: a returned point counts when its true cosine is at least the
10th-best true cosine (minus 1e-6), because log streams are full of near-duplicates
whose order among equal scores is arbitrary. ``id_recall`` is plain set overlap.
``sim_loss`` is the mean, over queries and ranks, of true top-10 cosine minus the true
cosine of what was returned: how much farther the found neighbours are (0 = exact).
Latency is per query (p50, one thread); ``disk MiB`` is the allocated size of the shard
directory after ``flush()``; ``RSS Δ`` the resident-memory growth since the store opened.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.memory import rss_mib
from streams.store import QUANTIZATIONS, CollectionSpec, EdgeStore, StorePoint, point_id

SHARED = Path("/work/shared/data")
DEFAULT_EXTRA: tuple[tuple[Path, str, int], ...] = (
    (SHARED / "hdfs" / "hdfs_events_2percent.parquet", "parquet", 20_000),
    (SHARED / "loghub" / "OpenSSH_2k.log", "sshd", 2_000),
)
COLLECTION = "quant"
K = 10
BATCH = 1_024


@dataclass
class Row:
    """One measurement: a quantization, a phase (as written / optimized) and a rescore setting."""

    quantization: str
    phase: str
    rescore: bool
    oversampling: float
    recall_at_10: float
    sim_loss: float
    id_recall_at_10: float
    p50_ms: float
    indexed_vectors: int
    segments: int
    disk_mib: float
    rss_delta_mib: float | None
    upsert_s: float
    optimize_s: float | None


def _events(path: Path, fmt: str, limit: int | None) -> Iterator[dict[str, Any]]:
    from schemas.models import decode_event
    from streams.adapters import read_records

    n = 0
    for rec in read_records(path, fmt):
        if limit is not None and n >= limit:
            return
        if rec.value is None:
            continue
        try:
            yield decode_event(rec.value).to_dict()
        except Exception:  # a bad record is not this benchmark's business
            continue
        n += 1


def load_events(data: Path | None, fmt: str, limit: int | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The events to encode and a description of where they came from."""
    from schemas.models import decode_event
    from streams.sample import iter_sample

    if data is not None:
        events = list(_events(data, fmt, limit))
        return events, [f"{data.name}: {len(events)}"]
    events = [decode_event(v).to_dict() for v in iter_sample()]
    sources = [f"bundled sample: {len(events)}"]
    for path, f, n in DEFAULT_EXTRA:
        if path.exists():
            got = list(_events(path, f, n))
            events += got
            sources.append(f"{path.name}: {len(got)}")
    if limit is not None:
        events = events[:limit]
    return events, sources


def encode(events: list[dict[str, Any]]) -> np.ndarray:
    """Unit-norm dense hybrid vectors of the events (rows with no component dropped)."""
    from encoders.hybrid import build_default_encoder

    enc = build_default_encoder()
    parts = [enc.encode(events[i:i + 4096]).dense for i in range(0, len(events), 4096)]
    dense = np.concatenate(parts).astype(np.float32)
    norms = np.linalg.norm(dense, axis=1)
    dense = dense[norms > 0] / norms[norms > 0, None]
    return np.ascontiguousarray(dense, dtype=np.float32)


def _recall(store: EdgeStore, base: np.ndarray, queries: np.ndarray, ids: list[str],
            rescore: bool, oversampling: float) -> tuple[float, float, float, float]:
    index = {pid: i for i, pid in enumerate(ids)}
    sims = queries @ base.T
    top = np.argsort(-sims, axis=1)[:, :K]
    tie_hits = id_hits = 0
    loss = 0.0
    lat = []
    for q in range(len(queries)):
        t0 = time.perf_counter()
        hits = store.search_dense(COLLECTION, queries[q], K, rescore=rescore, oversampling=oversampling)
        lat.append(time.perf_counter() - t0)
        kth = sims[q, top[q, -1]] - 1e-6
        got = [index[h.id] for h in hits]
        tie_hits += sum(1 for g in got if sims[q, g] >= kth)
        id_hits += len(set(got) & set(top[q].tolist()))
        loss += float(sims[q, top[q]].sum() - sims[q, got].sum())
    n = len(queries) * K
    return tie_hits / n, id_hits / n, loss / n, float(np.percentile(np.array(lat) * 1000.0, 50))


def bench_quantization(kind: str, base: np.ndarray, queries: np.ndarray, oversamplings: list[float]) -> list[Row]:
    """Fill an edge shard with ``kind`` quantization and measure it as written and optimized."""
    rows: list[Row] = []
    ids = [point_id(f"q-{i}") for i in range(len(base))]
    with tempfile.TemporaryDirectory(prefix=f"secstream-quant-{kind}-") as tmp:
        gc.collect()
        rss0 = rss_mib()
        store = EdgeStore(Path(tmp))
        try:
            store.ensure(CollectionSpec(name=COLLECTION, dense_dim=base.shape[1], sparse_name=None,
                                        quantization=kind))  # type: ignore[arg-type]
            t0 = time.perf_counter()
            for s in range(0, len(base), BATCH):
                store.upsert(COLLECTION, [StorePoint(id=ids[i], dense=base[i])
                                          for i in range(s, min(len(base), s + BATCH))])
            upsert_s = time.perf_counter() - t0
            optimize_s: float | None = None
            for phase in ("as written", "optimized"):
                if phase == "optimized":
                    t0 = time.perf_counter()
                    store.optimize(COLLECTION)
                    optimize_s = time.perf_counter() - t0
                store.flush()
                info = store.info(COLLECTION)
                rss = rss_mib()
                settings = [(True, o) for o in oversamplings] + [(False, 1.0)] if kind != "none" else [(True, 1.0)]
                for rescore, over in settings:
                    rec, id_rec, loss, p50 = _recall(store, base, queries, ids, rescore, over)
                    rows.append(Row(kind, phase, rescore, over, rec, loss, id_rec, p50, info.indexed_vectors,
                                    info.segments,
                                    (info.disk_bytes or 0) / 2**20,
                                    None if rss is None or rss0 is None else rss - rss0, upsert_s, optimize_s))
        finally:
            store.close()
    return rows


def render(rows: list[Row], meta: dict[str, Any]) -> str:
    """A plain-text table of the rows."""
    head = ["quantization", "phase", "rescore", "overs.", "recall@10", "sim loss", "id recall", "p50 ms", "indexed", "segs",
            "disk MiB", "RSS Δ MiB", "upsert s", "optimize s"]
    body = [[r.quantization, r.phase, "yes" if r.rescore else "no", f"{r.oversampling:g}", f"{r.recall_at_10:.4f}",
             f"{r.sim_loss:.5f}",
             f"{r.id_recall_at_10:.4f}", f"{r.p50_ms:.2f}", f"{r.indexed_vectors:,}", str(r.segments),
             f"{r.disk_mib:.1f}", "-" if r.rss_delta_mib is None else f"{r.rss_delta_mib:.0f}", f"{r.upsert_s:.1f}",
             "-" if r.optimize_s is None else f"{r.optimize_s:.1f}"] for r in rows]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = [f"edge engine, {meta['points']:,} indexed {meta['dim']}-d hybrid vectors, {meta['queries']} held-out "
             f"queries, k={K}; data: {'; '.join(meta['sources'])}"]
    for row in [head, ["-" * w for w in widths], *body]:
        lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    ap = argparse.ArgumentParser(prog="secstream bench quantization", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="a log file instead of the default sample mix")
    ap.add_argument("--format", default="auto", help="input format of --data (jsonl, sshd, hdfs, parquet, ...)")
    ap.add_argument("--limit", type=int, default=None, help="use at most this many events")
    ap.add_argument("--queries", type=int, default=500, help="held-out query events")
    ap.add_argument("--quantizations", default=",".join(QUANTIZATIONS), help="comma-separated, from none,int8,binary")
    ap.add_argument("--oversampling", default="2,4", help="comma-separated oversampling factors with rescore")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.quantizations.split(",") if k.strip()]
    try:
        overs = [float(o) for o in args.oversampling.split(",") if o.strip()]
    except ValueError:
        ap.error(f"--oversampling must be comma-separated numbers, got {args.oversampling!r}")
    if not overs or min(overs) < 1.0:
        ap.error("--oversampling factors must be ≥ 1")
    if any(k not in QUANTIZATIONS for k in kinds) or args.queries < 1 or (args.limit is not None and args.limit < 1):
        ap.error(f"need positive --queries/--limit and quantizations from {', '.join(QUANTIZATIONS)}")
    say = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    events, sources = load_events(args.data, args.format, args.limit)
    dense = encode(events)
    say(f"encoded {len(dense):,} events ({dense.shape[1]}-d) in {time.perf_counter() - t0:.1f} s")
    if len(dense) <= args.queries + K:
        ap.error(f"only {len(dense)} encodable events; need more than --queries + {K}")
    order = np.random.default_rng(args.seed).permutation(len(dense))
    queries, base = dense[order[:args.queries]], dense[order[args.queries:]]
    rows: list[Row] = []
    for kind in kinds:
        say(f"measuring {kind} ...")
        rows += bench_quantization(kind, base, queries, overs)
    meta = {"points": len(base), "dim": int(dense.shape[1]), "queries": len(queries), "k": K, "sources": sources}
    if args.json:
        print(json.dumps({**meta, "rows": [asdict(r) for r in rows]}))
    else:
        print(render(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
