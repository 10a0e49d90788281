"""Benchmark: one micro-batch update of N entities × D dims (issue #5: 100k × 433 in < 1 s on 2 cores).

    python -m bench.entity_update [--entities 100000] [--dim 433] [--repeats 5] [--slices 4] [--seed 7] [--json]

Data. Synthetic unit "interaction means" for N entities: 40% users, 10% hosts,
50% source addresses spread over N/200 /24 networks (so peer groups exist), each
entity near one of 64 behaviour centres. Everything below is measured in the same
run, the median of ``--repeats`` (after one untimed warm-up):

- ``formula``: the vectorized update alone, ``e + lr·(mean − e)`` on all rows
  (:func:`detection.entities.batch_update`), against ``formula loop``: the same
  formula entity by entity in a Python loop (numpy per row). ``ratio`` = loop / vectorized.
- ``commit steady``: :meth:`detection.entities.EntityTable.commit` of a window in
  which all N entities already have versions (past warm start): gather, update,
  slice adjustment, moves, peer-group sums and published means, leave-one-out
  peer distances, version bookkeeping; against ``commit loop``: the per-entity
  math of it (update, slice adjustment, normalization, move) in a Python loop,
  without the bookkeeping. This is the number the target is about.
- ``commit cold``: the same window into an empty table (row allocation, peer
  groups, priors): the first window of a stream.
- ``drift``: :meth:`detection.entity_drift.DriftScorer.score` and ``learn`` over the commit's rows.

Memory of the table at N entities is printed with the table (see
:mod:`detection.entities` for the formula).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from detection.entities import EntityTable, batch_update, hour_slices
from detection.entity_drift import DriftScorer
from detection.entity_groups import unit_rows

__all__ = ["Row", "main", "measure", "render", "synthesize"]

LR = 0.2
T0 = 1_765_000_000.0  # a window boundary (multiple of 300 s)


@dataclass
class Row:
    """One measured operation."""

    operation: str
    entities: int
    dim: int
    median_s: float
    min_s: float
    per_entity_us: float
    ratio_vs_loop: float | None = None


def synthesize(n: int, dim: int, seed: int) -> tuple[list[tuple[str, str]], np.ndarray]:
    """N entity keys (users, hosts, addresses in N/200 /24s) and their unit interaction means ``[n, dim]``."""
    rng = np.random.default_rng(seed)
    keys: list[tuple[str, str]] = []
    nets = max(1, n // 200)
    for i in range(n):
        r = i % 10
        if r < 4:
            keys.append(("user", f"user{i}"))
        elif r == 4:
            keys.append(("host", f"host{i}"))
        else:
            net = i % nets
            keys.append(("src_ip", f"10.{net // 256 % 256}.{net % 256}.{i // nets % 254 + 1}"))
    centres = unit_rows(rng.standard_normal((64, dim)).astype(np.float32))
    noise = rng.standard_normal((n, dim)).astype(np.float32) * np.float32(0.5 / np.sqrt(dim))
    means = unit_rows(centres[rng.integers(0, 64, n)] + noise)
    return keys, means


def _time(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up (page faults, allocator)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _formula_loop(e: np.ndarray, means: np.ndarray) -> np.ndarray:
    out = np.empty_like(e)
    for i in range(e.shape[0]):
        out[i] = e[i] + LR * (means[i] - e[i])
    return out


def _commit_loop(base: np.ndarray, adj: np.ndarray, means: np.ndarray, s: int) -> np.ndarray:
    """The per-entity math of a commit, one entity at a time (no bookkeeping)."""
    moves = np.empty(base.shape[0])
    for i in range(base.shape[0]):
        e_old = base[i]
        e_new = e_old + LR * (means[i] - e_old)
        adj[i, s] = adj[i, s] + LR * ((means[i] - e_new) - adj[i, s])
        u_old = e_old / max(float(np.linalg.norm(e_old)), 1e-12)
        u_new = e_new / max(float(np.linalg.norm(e_new)), 1e-12)
        moves[i] = float(np.linalg.norm(u_new - u_old))
        base[i] = e_new
    return moves


def measure(n: int, dim: int, repeats: int, slices: int, seed: int) -> tuple[list[Row], dict[str, float]]:
    """Run every measurement; returns the rows and facts about the table."""
    keys, means = synthesize(n, dim, seed)
    rng = np.random.default_rng(seed + 1)
    rows: list[Row] = []

    def row(op: str, times: list[float], ratio_to: list[float] | None = None) -> Row:
        med = statistics.median(times)
        ratio = round(statistics.median(ratio_to) / med, 1) if ratio_to else None
        r = Row(op, n, dim, round(med, 4), round(min(times), 4), round(med / n * 1e6, 3), ratio)
        rows.append(r)
        return r

    e = unit_rows(means + rng.standard_normal(means.shape).astype(np.float32) * np.float32(0.1))
    vec = _time(lambda: batch_update(e, means, LR), repeats)
    loop = _time(lambda: _formula_loop(e, means), max(1, repeats // 2))
    row("formula loop", loop)
    row("formula", vec, loop)

    table = EntityTable(dim, lr=LR, slices=slices, max_entities=n)
    ends = iter(T0 + 300.0 * k for k in range(1, 10_000))
    for _ in range(4):  # past warm start: versions 1..4, lr_eff = lr from version 3 on
        end = next(ends)
        table.commit(keys, means, end - 300.0, end)

    def steady() -> None:
        end = next(ends)
        table.commit(keys, means, end - 300.0, end)

    commit_times = _time(steady, repeats)
    base, adj = table.base[:n].copy(), np.zeros((n, slices, dim), dtype=np.float32)
    s = int(hour_slices([T0], slices)[0])
    loop = _time(lambda: _commit_loop(base, adj, means, s), max(1, repeats // 2))
    row("commit loop", loop)
    row("commit steady", commit_times, loop)
    facts = {"table_mib": round(table.memory_bytes() / 2**20, 1), "groups": float(len(table.groups.rows))}

    def cold() -> None:
        EntityTable(dim, lr=LR, slices=slices, max_entities=n).commit(keys, means, T0, T0 + 300.0)

    row("commit cold", _time(cold, max(1, repeats // 2)))

    commit = table.commit(keys, means, T0 + 300.0 * 9_000, T0 + 300.0 * 9_001)
    drift = DriftScorer()
    kinds = [k[0] for k in keys]
    r = commit.rows

    def score() -> None:
        ds = drift.score(kinds, commit.move, commit.peer, table.ew_move[r], table.ew_peer[r],
                         np.full(n, 3), commit.steady, np.full(n, 5), table.ew_count[r])
        drift.learn(kinds, commit.move, commit.peer, ds, commit.steady)

    row("drift", _time(score, repeats))
    return rows, facts


def render(rows: list[Row], facts: dict[str, float]) -> str:
    """A plain-text table of the rows."""
    head = ("operation", "entities", "dim", "median s", "min s", "µs/entity", "speed-up vs loop")
    body = [(r.operation, r.entities, r.dim, r.median_s, r.min_s, r.per_entity_us,
             "-" if r.ratio_vs_loop is None else f"{r.ratio_vs_loop}x") for r in rows]
    cells = [[str(v) for v in line] for line in [head, *body]]
    widths = [max(len(line[c]) for line in cells) for c in range(len(head))]
    table = "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in cells)
    return table + f"\ntable memory {facts['table_mib']} MiB, {int(facts['groups'])} peer groups"


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints a table (or JSON) and returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m bench.entity_update", description=__doc__.split("\n\n")[0])
    ap.add_argument("--entities", type=int, default=100_000, help="entities in the window")
    ap.add_argument("--dim", type=int, default=433, help="embedding width")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (median; the loops run half as many)")
    ap.add_argument("--slices", type=int, default=4, help="hour-of-day slices of the table")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    if min(args.entities, args.dim, args.repeats) < 1:
        ap.error("--entities, --dim and --repeats must be >= 1")
    if not args.json:
        print(f"measuring {args.entities} entities x {args.dim} dims ...", file=sys.stderr, flush=True)
    rows, facts = measure(args.entities, args.dim, args.repeats, args.slices, args.seed)
    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "lr": LR, "slices": args.slices, **facts,
                          "rows": [asdict(r) for r in rows]}))
    else:
        print(render(rows, facts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
