"""The ``sessions`` collection: upsert rate and MaxSim (late interaction) query latency.

``python -m bench.session_store [--sessions 10000] [--engines edge] [--quantization int8,none] [--json]``.
Synthetic sessions, generated from a seed: a pool of ``--templates`` unit template vectors
(``--member-dim``, 433 like the hybrid event vector); each session draws 8–32 distinct
templates (Zipf-like popularity) with counts 1–50, and its members are its template vectors
with a little per-session noise (unit rows, what ``Session.member_matrix()`` gives); its dense
vector is random (``--dense-dim``, 945 = 433 + the 512-d bag). Points are built with
:func:`streams.store.session_points.session_point` and upserted in batches of 256.

Per engine and multivector quantization it reports: points built/s and upserted/s;
MaxSim queries (``--query-rows`` noisy rows of a stored session, limit 10): p50/p99 latency,
how often that session is the top hit, recall@10 against an exact float32 scan; sparse
(bag of templates) and dense query p50; then, on edge, the same after ``optimize()`` and
its duration; and the collection's size on disk.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from detection.sessions import Session
from streams.store.session_points import (
    DENSE,
    MEMBERS,
    SESSIONS,
    SPARSE,
    session_point,
    session_point_id,
    sessions_by_templates,
    similar_sessions,
)
from streams.store import (
    ENGINES,
    QUANTIZATIONS,
    CollectionSpec,
    MultiVectorSpec,
    Quantization,
    StorePoint,
    VectorStore,
    open_store,
)

BATCH = 256
LIMIT = 10


@dataclass
class Row:
    """One measurement: an engine, a multivector quantization, before or after optimize()."""

    engine: str
    quantization: str
    phase: str
    sessions: int
    mean_members: float
    built_per_s: float | None
    upserts_per_s: float | None
    optimize_s: float | None
    maxsim_p50_ms: float
    maxsim_p99_ms: float
    top1_own: float
    recall_at_10: float
    sparse_p50_ms: float
    dense_p50_ms: float
    disk_mib: float | None


@dataclass
class Synthetic:
    sessions: list[Session]
    dense: np.ndarray
    members: list[np.ndarray]


def synthesize(n: int, *, templates: int, member_dim: int, dense_dim: int, seed: int = 0) -> Synthetic:
    """``n`` sessions as described in the module docstring."""
    rng = np.random.default_rng(seed)
    pool = _unit(rng.standard_normal((templates, member_dim)))
    popularity = 1.0 / np.arange(1, templates + 1) ** 0.8
    popularity /= popularity.sum()
    sessions, members = [], []
    for i in range(n):
        k = int(rng.integers(8, 33))
        idx = rng.choice(templates, k, replace=False, p=popularity)
        rows = _unit(pool[idx] + 0.05 * rng.standard_normal((k, member_dim)).astype(np.float32))
        bag = Counter({f"T{j}": int(c) for j, c in zip(idx, rng.integers(1, 51, k))})
        start = 1_700_000_000.0 + 7.0 * i
        sessions.append(Session(session_id=f"bench:{i}", key=f"host:h{i % 500}", entity=("host", f"h{i % 500}"),
                                start=start, end=start + float(rng.integers(1, 1800)), events=sum(bag.values()),
                                bag=bag, templates={t: f"template {t} <*>" for t in bag},
                                event_ids=[f"e{i}-{j}" for j in range(20)], reason="gap"))
        members.append(rows)
    return Synthetic(sessions, _unit(rng.standard_normal((n, dense_dim))), members)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _ms(samples: list[float], q: float) -> float:
    return round(1e3 * float(np.percentile(samples, q)), 2)


def _queries(store: VectorStore, data: Synthetic, n: int, rows: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    multi, sparse, dense = [], [], []
    own = recall = 0.0
    for _ in range(n):
        i = int(rng.integers(len(data.sessions)))
        m = data.members[i]
        q = _unit(m[rng.choice(len(m), min(rows, len(m)), replace=False)]
                  + 0.02 * rng.standard_normal((min(rows, len(m)), m.shape[1])).astype(np.float32))
        t0 = time.perf_counter()
        hits = similar_sessions(store, q, LIMIT)
        multi.append(time.perf_counter() - t0)
        exact = store.search_multi(SESSIONS, q, LIMIT, exact=True)
        own += hits[0].id == session_point_id(data.sessions[i].session_id)
        recall += len({h.id for h in hits} & {h.id for h in exact}) / max(len(exact), 1)
        t0 = time.perf_counter()
        sessions_by_templates(store, dict(list(data.sessions[i].bag.items())[:3]), LIMIT)
        sparse.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        store.search_dense(SESSIONS, data.dense[i], LIMIT)
        dense.append(time.perf_counter() - t0)
    return {"maxsim_p50_ms": _ms(multi, 50), "maxsim_p99_ms": _ms(multi, 99), "top1_own": round(own / n, 3),
            "recall_at_10": round(recall / n, 3), "sparse_p50_ms": _ms(sparse, 50), "dense_p50_ms": _ms(dense, 50)}


def bench_engine(engine: str, quantization: Quantization, data: Synthetic, *, queries: int,
                 query_rows: int) -> list[Row]:
    """Rows for one engine and multivector quantization (edge: before and after ``optimize()``)."""
    dense_dim, member_dim = data.dense.shape[1], data.members[0].shape[1]
    spec = CollectionSpec(name=SESSIONS, dense_dim=dense_dim, dense_name=DENSE, sparse_name=SPARSE,
                          multivector=MultiVectorSpec(name=MEMBERS, dim=member_dim, quantization=quantization))
    mean_members = round(float(np.mean([len(m) for m in data.members])), 1)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        store = open_store(engine=engine, path=Path(tmp))
        try:
            store.ensure(spec)
            build_s = upsert_s = 0.0
            for start in range(0, len(data.sessions), BATCH):
                t0 = time.perf_counter()
                points: list[StorePoint] = [
                    session_point(data.sessions[i], vector=data.dense[i], members=data.members[i], score=50.0,
                                  alert=False, model_version="bench")
                    for i in range(start, min(start + BATCH, len(data.sessions)))]
                t1 = time.perf_counter()
                store.upsert(SESSIONS, points)
                build_s, upsert_s = build_s + t1 - t0, upsert_s + time.perf_counter() - t1
            n = len(data.sessions)

            def row(phase: str, built: float | None, upserts: float | None, opt: float | None) -> Row:
                disk = store.info(SESSIONS).disk_bytes
                return Row(engine=engine, quantization=quantization, phase=phase, sessions=n,
                           mean_members=mean_members, built_per_s=built, upserts_per_s=upserts, optimize_s=opt,
                           disk_mib=None if disk is None else round(disk / 2**20, 1),
                           **_queries(store, data, queries, query_rows, seed=1))  # type: ignore[arg-type]

            rows.append(row("as written", round(n / build_s), round(n / upsert_s), None))
            if engine == "edge":
                t0 = time.perf_counter()
                store.optimize(SESSIONS)
                rows.append(row("optimized", None, None, round(time.perf_counter() - t0, 1)))
        finally:
            store.close()
    return rows


def render(rows: list[Row]) -> str:
    """A plain-text table of the rows."""
    head = ("engine", "members q", "phase", "sessions", "rows/sess", "built/s", "upserts/s", "optimize s",
            "MaxSim p50 ms", "p99 ms", "top1 own", "recall@10", "sparse p50", "dense p50", "disk MiB")
    body = [(r.engine, r.quantization, r.phase, r.sessions, r.mean_members, r.built_per_s, r.upserts_per_s,
             r.optimize_s, r.maxsim_p50_ms, r.maxsim_p99_ms, r.top1_own, r.recall_at_10, r.sparse_p50_ms,
             r.dense_p50_ms, r.disk_mib) for r in rows]
    cells = [[("-" if v is None else str(v)) for v in line] for line in [head, *body]]
    widths = [max(len(line[c]) for line in cells) for c in range(len(head))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in cells)


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints a table (or JSON) and returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m bench.session_store", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10_000, help="sessions to store")
    ap.add_argument("--engines", default="edge", help=f"comma-separated, from {', '.join(ENGINES)}")
    ap.add_argument("--quantization", default="int8", help=f"multivector quantizations to compare, from "
                                                            f"{', '.join(QUANTIZATIONS)}")
    ap.add_argument("--member-dim", type=int, default=433, help="dimension of a member (event) vector")
    ap.add_argument("--dense-dim", type=int, default=945, help="dimension of the dense session vector")
    ap.add_argument("--templates", type=int, default=300, help="distinct templates in the pool (≥ 32)")
    ap.add_argument("--queries", type=int, default=100, help="queries per measurement")
    ap.add_argument("--query-rows", type=int, default=4, help="rows of a MaxSim query")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    kinds = [q.strip() for q in args.quantization.split(",") if q.strip()]
    bad = [e for e in engines if e not in ENGINES] + [q for q in kinds if q not in QUANTIZATIONS]
    if bad or not engines or not kinds:
        ap.error(f"engines from {', '.join(ENGINES)}, quantizations from {', '.join(QUANTIZATIONS)} (got {bad})")
    if min(args.sessions, args.member_dim, args.dense_dim, args.queries, args.query_rows) < 1 or args.templates < 32:
        ap.error("need positive --sessions/--member-dim/--dense-dim/--queries/--query-rows and --templates ≥ 32")
    data = synthesize(args.sessions, templates=args.templates, member_dim=args.member_dim, dense_dim=args.dense_dim)
    rows: list[Row] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # local mode warns about large collections
        for engine in engines:
            for kind in kinds:
                if not args.json:
                    print(f"measuring {engine}, members {kind} ...", file=sys.stderr, flush=True)
                rows += bench_engine(engine, kind, data, queries=args.queries,  # type: ignore[arg-type]
                                     query_rows=args.query_rows)
    if args.json:
        print(json.dumps({"batch": BATCH, "limit": LIMIT, "query_rows": args.query_rows,
                          "rows": [asdict(r) for r in rows]}))
    else:
        print(render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
