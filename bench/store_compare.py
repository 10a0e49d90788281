"""Compare the embedded vector-store engines: qdrant-edge vs qdrant-client local mode.

``python -m bench.store_compare [--sizes 10000,100000] [--dim 433] [--json]``
(also ``secstream bench store``). For each engine, in one process and a temporary
directory, the collection grows to each size in batches of 512 points (random unit
float32 vectors, a 3-term sparse vector, a small payload); at each size it measures
upserts/s of that growth step, then 200 dense kNN queries (limit 10): p50/p99
latency and queries/s, and the resident-memory growth since the engine opened.
Edge is measured as written (no ``optimize()``: exact scan of an appendable
segment), then once more at the largest size after ``optimize()`` builds HNSW.
An engine that exceeds ``--budget-s`` while upserting stops growing; its queries
are measured at the size it reached and the row says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.memory import rss_mib
from streams.store import (
    ENGINES,
    CollectionSpec,
    SparseTerms,
    StorePoint,
    VectorStore,
    open_store,
    point_id,
)

COLLECTION = "bench"
BATCH = 512
VOCAB = 5_000


@dataclass
class Row:
    """One measurement: an engine at a collection size."""

    engine: str
    target: int
    points: int
    upserts_per_s: float | None
    p50_ms: float
    p99_ms: float
    queries_per_s: float
    rss_delta_mib: float | None
    note: str = ""


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _batch(rng: np.random.Generator, start: int, n: int, dim: int) -> list[StorePoint]:
    vectors = _unit(rng, n, dim)
    points = []
    for k in range(n):
        i = start + k
        terms = sorted({int(t) for t in rng.integers(0, VOCAB, 3)})
        points.append(StorePoint(
            id=point_id(f"bench-{i}"),
            dense=vectors[k],
            sparse=SparseTerms(indices=terms, values=[1.0] * len(terms)),
            payload={"event_id": f"bench-{i}", "host": f"host-{i % 200}", "severity": "low", "n": i,
                     "attributes": {"template": i % 46, "user": f"u{i % 1000}"}},
        ))
    return points


def _queries(store: VectorStore, vectors: np.ndarray) -> tuple[float, float, float]:
    for v in vectors[:5]:  # warm-up, not counted
        store.search_dense(COLLECTION, v, 10)
    lat = []
    for v in vectors:
        t0 = time.perf_counter()
        store.search_dense(COLLECTION, v, 10)
        lat.append(time.perf_counter() - t0)
    arr = np.array(lat) * 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99)), float(len(arr) / (arr.sum() / 1000.0))


def bench_engine(name: str, sizes: list[int], dim: int, n_queries: int, budget_s: float, optimize: bool,
                 seed: int = 0) -> list[Row]:
    """Grow one engine's collection through ``sizes`` and measure it at each; see the module docstring."""
    rows: list[Row] = []
    rng = np.random.default_rng(seed)
    queries = _unit(np.random.default_rng(seed + 1), n_queries, dim)
    with tempfile.TemporaryDirectory(prefix=f"secstream-bench-{name}-") as tmp:
        gc.collect()
        rss0 = rss_mib()
        store = open_store(engine=name, path=Path(tmp) / "store")
        try:
            store.ensure(CollectionSpec(name=COLLECTION, dense_dim=dim))
            have, spent = 0, 0.0
            for target in sizes:
                step_points, step_s, capped = 0, 0.0, False
                while have < target:
                    if spent > budget_s:
                        capped = True
                        break
                    points = _batch(rng, have, min(BATCH, target - have), dim)
                    t0 = time.perf_counter()
                    store.upsert(COLLECTION, points)
                    dt = time.perf_counter() - t0
                    step_s, spent = step_s + dt, spent + dt
                    step_points += len(points)
                    have += len(points)
                p50, p99, qps = _queries(store, queries)
                rss = rss_mib()
                note = f"capped: upserts stopped after {budget_s:.0f} s at {have}" if capped else ""
                rows.append(Row(name, target, store.count(COLLECTION), step_points / step_s if step_s else None,
                                p50, p99, qps, None if rss is None or rss0 is None else rss - rss0, note))
                if capped:
                    break
            if optimize:
                t0 = time.perf_counter()
                did = store.optimize(COLLECTION)
                took = time.perf_counter() - t0
                if did:
                    p50, p99, qps = _queries(store, queries)
                    rss = rss_mib()
                    rows.append(Row(f"{name}+optimize", rows[-1].target, store.count(COLLECTION), None, p50, p99,
                                    qps, None if rss is None or rss0 is None else rss - rss0,
                                    f"after optimize() took {took:.1f} s (HNSW build)"))
        finally:
            store.close()
    return rows


def ratios(rows: list[Row]) -> list[dict[str, Any]]:
    """edge/local ratios of upserts/s, queries/s and p50 latency per target size (local may have been capped)."""
    out = []
    local = {r.target: r for r in rows if r.engine == "local"}
    for e in (r for r in rows if r.engine in ("edge", "edge+optimize")):
        lo = local.get(e.target)
        if lo is None:
            continue
        up = e.upserts_per_s / lo.upserts_per_s if e.upserts_per_s and lo.upserts_per_s else None
        out.append({"engine": e.engine, "points": e.points, "local_points": lo.points, "upserts_per_s": up,
                    "queries_per_s": e.queries_per_s / lo.queries_per_s, "p50_ms": e.p50_ms / lo.p50_ms})
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(rows: list[Row], dim: int) -> str:
    """A plain-text table of the rows and the edge/local ratios."""
    head = ["engine", "points", "upserts/s", "p50 ms", "p99 ms", "queries/s", "RSS Δ MiB", "note"]
    body = [[r.engine, f"{r.points:,}", _fmt(r.upserts_per_s, ",.0f"), f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}",
             f"{r.queries_per_s:,.0f}", _fmt(r.rss_delta_mib, ",.0f"), r.note] for r in rows]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = [f"vector store, {dim}-d cosine, batches of {BATCH}, kNN limit 10"]
    for row in [head, ["-" * w for w in widths], *body]:
        cells = [c.ljust(w) if i in (0, len(head) - 1) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    rat = ratios(rows)
    if rat:
        lines.append("")
        lines.append("edge / local:")
        for r in rat:
            size = f"{r['points']:,} vs {r['local_points']:,} points"
            up = "" if r["upserts_per_s"] is None else f"upserts/s x{r['upserts_per_s']:.1f}, "
            lines.append(f"  {r['engine']:<14} {size:>24}: {up}queries/s x{r['queries_per_s']:.1f}, "
                         f"p50 latency x{r['p50_ms']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    ap = argparse.ArgumentParser(prog="secstream bench store", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated collection sizes")
    ap.add_argument("--dim", type=int, default=433, help="dense vector dimension")
    ap.add_argument("--queries", type=int, default=200, help="kNN queries per measurement")
    ap.add_argument("--engines", default="edge,local", help=f"comma-separated, from {', '.join(ENGINES)}")
    ap.add_argument("--budget-s", type=float, default=180.0, help="max seconds of upserts per engine")
    ap.add_argument("--no-optimize", action="store_true", help="skip the edge optimize() measurement")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        ap.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad or not sizes or min(sizes) < 1 or args.dim < 1 or args.queries < 1:
        ap.error(f"need positive sizes/dim/queries and engines from {', '.join(ENGINES)} (got {bad or engines})")
    rows: list[Row] = []
    with warnings.catch_warnings():
        # Local mode warns about large collections: that is what is being measured.
        warnings.simplefilter("ignore", UserWarning)
        for name in engines:
            if not args.json:
                print(f"measuring {name} ...", file=sys.stderr, flush=True)
            rows += bench_engine(name, sizes, args.dim, args.queries, args.budget_s, not args.no_optimize)
    if args.json:
        print(json.dumps({"dim": args.dim, "batch": BATCH, "queries": args.queries, "sizes": sizes,
                          "rows": [asdict(r) for r in rows], "ratios": ratios(rows)}))
    else:
        print(render(rows, args.dim))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
