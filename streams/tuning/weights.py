"""Tune the hybrid's component weights on labelled sessions (issue 3, item 6).

    secstream tune-weights [DATA] [--format F] [--labels PATH] [--limit-sessions N]
                           [--holdout F] [--step 0.1] [--refine-step 0.025] [--top N]
                           [--faithful N] [--proxy-sessions N] [--json]

``DATA`` is an event file in any format of :func:`streams.adapters.read_records`
(default: the HDFS 2 % sample), or a folder holding ``hdfs/hdfs_events_2percent.parquet``.
Labels: the HDFS ``hdfs_seqs_2percent.parquet`` (``seq_id``, ``anomaly``; found next to
the HDFS events by default), any parquet with ``session_id``/``seq_id`` and ``anomaly``,
or JSON lines ``{"session_id": ..., "anomaly": bool}``. A label's id is the session
key (a session the inactivity gap split, ``key#2`` …, counts with its key; the key
scores the max of its segments, as in ``bench/eval_hdfs.py``).

How it stays fast (every number below is exact unless marked *proxy*):

1. Encode every event ONCE, prequentially (encode a batch, then ``update``, as the
   worker does), with every component in the layout. Each component block is unit
   norm or absent, so a weight set only changes how the blocks are scaled:
   ``sqrt(w_c / Σ_{d present} w_d)``.
2. Sessionize once (:class:`detection.sessions.Sessionizer`, the configured gap and
   limits). A session's vector is the decayed sum ``Σ_i decay^(n-1-i) v_i``, linear in
   the event vectors, so it is stored per *presence pattern* ``p`` (which components an
   event has): ``A[s, p] = Σ_{i in s, pattern p} decay^(n-1-i) · unit blocks``. For any
   weights, ``vec(s) = Σ_p A[s, p] · sqrt(share_p(w))`` blockwise — exactly the vector the
   pipeline + Sessionizer would produce (float rounding aside).
3. *Proxy* (the grid): per weight set, the session vectors as
   :meth:`SessionScorer.vector` builds them (events ⊕ hashed template bag), and the
   prequential kNN distance of each session to the EARLIER sessions (``1 −`` the k-th
   largest cosine; k scaled by the subsample rate), over a chronological subsample of
   ``--proxy-sessions`` sessions, in numpy (blocks projected onto their exact span).
   Its ROC-AUC/PR-AUC rank the grid: coarse (``--step``) over the simplex of the
   components the data has (a component never present, e.g. ``numerical`` on HDFS, has
   no effect and stays at 0), then a refinement (``--refine-step``, ±2 steps) around the best.
4. *Faithful*: the top ``--faithful`` distinct weight sets and the configured weights
   are replayed through the project's :class:`detection.session_score.SessionScorer`
   (kNN novelty ⊕ transition surprise, calibrated, prequential) on all sessions; its
   score's ROC-AUC/PR-AUC are printed (and its kNN part alone, ``knn_*``, the part the
   weights act on).

Tuning on labels and then reporting on the same labels is optimistic: ``--holdout F``
tunes on the chronologically first ``1 − F`` of the sessions and reports the faithful
metrics on the last ``F`` only (the replay still runs over everything, prequentially).
No label reaches the encoders or the scorer; labels only pick weights.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detection.ranking_metrics import pr_auc, roc_auc
from streams.tuning.labelled_data import OPTIMISM, load_events, read_labels, resolve_paths


@dataclass
class Prepared:
    """Everything weight-independent: per-session, per-presence-pattern decayed block sums."""

    names: list[str]  # components, block order
    parts: dict[str, slice]
    dim: int
    patterns: np.ndarray  # bool [P, C]
    acc: np.ndarray  # float64 [S, P, D]
    sessions: list[Any]  # closed Session objects in closing order (``vec`` is set per weight set)
    keys: list[str]  # label key of each session
    events: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ever_present(self) -> list[str]:
        return [n for j, n in enumerate(self.names) if self.patterns[:, j].any()]


def prepare(docs: Sequence[dict[str, Any]], encoder: Any, sessionizer: Any, *, batch_size: int = 2000) -> Prepared:
    """Encode each event once (prequentially), sessionize once, and accumulate the blocks.

    ``encoder`` is a :class:`encoders.hybrid.HybridEncoder` with every component to tune
    weighted > 0 (the weights do not matter here); ``sessionizer`` a fresh Sessionizer.
    """
    from scipy import sparse

    t0 = time.perf_counter()
    names, parts, dim = encoder.names, encoder.parts, encoder.dim
    n = len(docs)
    units = np.zeros((n, dim), dtype=np.float32)
    pat_codes = np.zeros(n, dtype=np.int64)
    sid_of: list[str | None] = [None] * n
    pos = np.zeros(n, dtype=np.int64)
    counts: dict[str, int] = {}
    closed: list[Any] = []
    weights_pow = 1 << np.arange(len(names))
    for start in range(0, n, batch_size):
        batch = list(docs[start:start + batch_size])
        hb = encoder.encode(batch)
        rows = slice(start, start + len(batch))
        for sl in parts.values():
            blk = hb.dense[:, sl].astype(np.float64)
            norm = np.linalg.norm(blk, axis=1, keepdims=True)
            units[rows, sl] = np.divide(blk, norm, out=np.zeros_like(blk), where=norm > 1e-12)
        pat_codes[rows] = hb.present.astype(np.int64) @ weights_pow
        obs = sessionizer.observe(batch, np.zeros((len(batch), 1), dtype=np.float32), hb.template_ids, hb.templates)
        for i, sid in enumerate(obs.session_ids):
            if sid is not None:
                sid_of[start + i] = sid
                pos[start + i] = counts.get(sid, 0)
                counts[sid] = pos[start + i] + 1
        closed.extend(obs.closed)
        encoder.update(batch)
    closed.extend(sessionizer.flush())
    t1 = time.perf_counter()
    index = {s.session_id: j for j, s in enumerate(closed)}
    codes = sorted({int(c) for c, s in zip(pat_codes, sid_of) if s is not None})
    code_ix = {c: j for j, c in enumerate(codes)}
    patterns = np.array([[(c >> j) & 1 == 1 for j in range(len(names))] for c in codes], dtype=bool).reshape(
        len(codes), len(names))
    ev = np.array([i for i in range(n) if sid_of[i] is not None], dtype=np.int64)
    s_ix = np.array([index[sid_of[i]] for i in ev], dtype=np.int64)
    n_s = np.array([closed[j].events for j in s_ix], dtype=np.float64)
    w = sessionizer.decay ** (n_s - 1 - pos[ev])
    groups = s_ix * max(len(codes), 1) + np.array([code_ix[int(pat_codes[i])] for i in ev], dtype=np.int64)
    mat = sparse.csr_matrix((w, (groups, np.arange(ev.size))), shape=(len(closed) * max(len(codes), 1), ev.size))
    acc = np.asarray(mat @ units[ev].astype(np.float64)).reshape(len(closed), max(len(codes), 1), dim)
    keys = [str(s.key) for s in closed]
    return Prepared(names, parts, dim, patterns, acc, closed, keys, n,
                    {"encode": round(t1 - t0, 2), "accumulate": round(time.perf_counter() - t1, 2)})


def shares(patterns: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sqrt`` of the renormalized weight of each component in each presence pattern ``[P, C]``."""
    eff = patterns * w[None, :]
    tot = eff.sum(axis=1, keepdims=True)
    return np.sqrt(np.divide(eff, tot, out=np.zeros_like(eff), where=tot > 0))


def session_vectors(prep: Prepared, w: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Decayed sums of the hybrid event vectors under weights ``w`` (``[S, D]``, unnormalized)."""
    coef = shares(prep.patterns, w)
    per_dim = np.zeros((coef.shape[0], prep.dim))
    for j, name in enumerate(prep.names):
        per_dim[:, prep.parts[name]] = coef[:, j:j + 1]
    acc = prep.acc if rows is None else prep.acc[rows]
    return np.einsum("spd,pd->sd", acc, per_dim)


def weight_vector(prep: Prepared, weights: Mapping[str, float]) -> np.ndarray:
    w = np.array([float(weights.get(n, 0.0)) for n in prep.names])
    return w / w.sum() if w.sum() > 0 else w


# ----------------------------------------------------------------------------- metrics

def block_metrics(keys: Sequence[str], scores: np.ndarray, labels: Mapping[str, bool],
                  only: set[str] | None = None) -> dict[str, Any]:
    """ROC-AUC and PR-AUC of the max score per labelled key."""
    best: dict[str, float] = {}
    for k, s in zip(keys, scores):
        if k in labels and (only is None or k in only):
            best[k] = max(best.get(k, -math.inf), float(s))
    y = np.array([labels[k] for k in best], dtype=bool)
    sc = np.array(list(best.values()), dtype=np.float64)
    if y.size == 0 or y.all() or not y.any():
        return {"roc_auc": float("nan"), "pr_auc": float("nan"), "sessions": int(y.size), "anomalous": int(y.sum())}
    return {"roc_auc": round(roc_auc(y, sc), 4), "pr_auc": round(pr_auc(y, sc), 4), "sessions": int(y.size),
            "anomalous": int(y.sum())}


# ----------------------------------------------------------------------------- proxy

class Proxy:
    """Prequential kNN distance of session vectors (the scorer's layout) over a chronological subsample."""

    def __init__(self, prep: Prepared, rows: np.ndarray, *, k: int, bag_dim: int = 512, bag_weight: float = 0.5) -> None:
        from detection.session_score import bag_vector

        self.prep, self.rows, self.k, self.bw = prep, rows, max(1, k), bag_weight
        bags = np.stack([bag_vector(prep.sessions[r].bag, bag_dim) for r in rows]).astype(np.float64) \
            if rows.size else np.zeros((0, bag_dim))
        self.bag_gram = bags @ bags.T
        self.has_bag = (np.linalg.norm(bags, axis=1) > 0).astype(np.float64)
        # exact projection of each component block onto the span of its rows (rank ≪ width)
        acc = prep.acc[rows]
        blocks = []
        for name in prep.names:
            sl = prep.parts[name]
            m = acc[:, :, sl].reshape(-1, sl.stop - sl.start)
            if not m.size:
                blocks.append(np.zeros(acc.shape[:2] + (0,)))
                continue
            _, sv, vt = np.linalg.svd(m, full_matrices=False)
            r = int((sv > sv[0] * 1e-7).sum()) if sv.size and sv[0] > 0 else 0
            blocks.append((m @ vt[:r].T).reshape(acc.shape[0], acc.shape[1], r))
        self.proj_parts: dict[str, slice] = {}
        start = 0
        for name, b in zip(prep.names, blocks):
            self.proj_parts[name] = slice(start, start + b.shape[2])
            start += b.shape[2]
        self.proj = np.concatenate(blocks, axis=2) if blocks else np.zeros(acc.shape[:2] + (0,))
        self.width = start

    def raw(self, w: np.ndarray) -> np.ndarray:
        """``1 −`` the k-th largest cosine to earlier subsampled sessions (1.0 with no past)."""
        coef = shares(self.prep.patterns, w)
        per_dim = np.zeros((coef.shape[0], self.width))
        for j, name in enumerate(self.prep.names):
            per_dim[:, self.proj_parts[name]] = coef[:, j:j + 1]
        e = np.einsum("spd,pd->sd", self.proj, per_dim)
        norm = np.linalg.norm(e, axis=1)
        e = np.divide(e, norm[:, None], out=np.zeros_like(e), where=norm[:, None] > 1e-12)
        has_e = (norm > 1e-12).astype(np.float64)
        tot = np.sqrt((1 - self.bw) * has_e + self.bw * self.has_bag)
        tot[tot == 0] = 1.0
        sims = ((1 - self.bw) * (e @ e.T) + self.bw * self.bag_gram) / np.outer(tot, tot)
        n = sims.shape[0]
        sims[np.triu_indices(n)] = -4.0  # only earlier sessions
        out = np.ones(n)
        k = self.k
        if n > k:
            kth = -np.partition(-sims[k:], k - 1, axis=1)[:, k - 1]
            out[k:] = 1.0 - kth
        for i in range(1, min(k, n)):
            out[i] = 1.0 - sims[i, :i].min()
        return np.clip(out, 0.0, 2.0)


# ----------------------------------------------------------------------------- faithful

def faithful_scores(prep: Prepared, w: np.ndarray, make_scorer: Callable[[int], Any]) -> tuple[np.ndarray, np.ndarray]:
    """Session score (0–100) and kNN raw of every session, replayed through a fresh SessionScorer."""
    vecs = session_vectors(prep, w)
    scorer = make_scorer(prep.dim)
    score, knn = np.zeros(len(prep.sessions)), np.zeros(len(prep.sessions))
    for j, sess in enumerate(prep.sessions):
        sess.vec = vecs[j]
        res = scorer.process(sess)
        score[j], knn[j] = res.score, res.knn_raw
    return score, knn


# ----------------------------------------------------------------------------- grid

def simplex_grid(c: int, step: float) -> list[tuple[float, ...]]:
    """Weight vectors on a lattice of ``step`` over ``c`` components, summing to 1."""
    m = round(1.0 / step)
    out = []
    for combo in itertools.product(range(m + 1), repeat=c - 1):
        if sum(combo) <= m:
            out.append(tuple(round(x * step, 6) for x in (*combo, m - sum(combo))))
    return out


def refine_grid(center: Sequence[float], step: float, radius: int = 2) -> list[tuple[float, ...]]:
    """Lattice points of ``step`` within ``±radius`` steps of ``center`` (non-negative, summing to 1)."""
    c = len(center)
    out = []
    for off in itertools.product(range(-radius, radius + 1), repeat=c - 1):
        head = [center[i] + off[i] * step for i in range(c - 1)]
        last = 1.0 - sum(head)
        vec = [*head, last]
        if all(v >= -1e-9 for v in vec) and abs(last - center[-1]) <= radius * step + 1e-9:
            out.append(tuple(round(max(v, 0.0), 6) for v in vec))
    return out


def effective_key(prep: Prepared, w: Sequence[float]) -> tuple[float, ...]:
    """Weights over the components the data ever has, renormalized (others have no effect)."""
    mask = prep.patterns.any(axis=0)
    v = np.asarray(w, dtype=np.float64) * mask
    return tuple(np.round(v / v.sum(), 6)) if v.sum() > 0 else tuple(v)


def tune(prep: Prepared, labels: Mapping[str, bool], *, step: float = 0.1, refine_step: float = 0.025,
         proxy_sessions: int = 3000, k: int = 50, holdout: float = 0.0, top: int = 10, faithful: int = 5,
         current: Mapping[str, float] | None = None, make_scorer: Callable[[int], Any] | None = None,
         seed: int = 0, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Grid on the proxy, then the faithful scorer on the best; returns a JSON-ready result."""
    log = log or (lambda _msg: None)
    s = len(prep.sessions)
    cut = round(s * (1.0 - holdout)) if holdout > 0 else s
    tune_keys = set(prep.keys[:cut])
    eval_keys = (set(prep.keys[cut:]) - tune_keys) if holdout > 0 else None
    pool = np.arange(cut)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(pool, size=proxy_sessions, replace=False)) if pool.size > proxy_sessions else pool
    k_proxy = max(1, round(k * rows.size / max(pool.size, 1)))
    t0 = time.perf_counter()
    proxy = Proxy(prep, rows, k=k_proxy)
    row_keys = [prep.keys[r] for r in rows]
    cache: dict[tuple[float, ...], dict[str, Any]] = {}

    def run(w: tuple[float, ...]) -> dict[str, Any]:
        if w not in cache:
            m = block_metrics(row_keys, proxy.raw(np.asarray(w)), labels)
            cache[w] = {"weights": dict(zip(prep.names, w)), "roc_auc": m["roc_auc"], "pr_auc": m["pr_auc"]}
        return cache[w]

    def rank(r: dict[str, Any]) -> tuple[float, float]:
        return (-np.nan_to_num(r["roc_auc"], nan=-1.0), -np.nan_to_num(r["pr_auc"], nan=-1.0))

    active = [j for j, n in enumerate(prep.names) if n in prep.ever_present]
    if not active:
        raise ValueError("no component is ever present in the data: nothing to weigh")

    def full(sub: Sequence[float]) -> tuple[float, ...]:
        vec = [0.0] * len(prep.names)
        for j, x in zip(active, sub):
            vec[j] = float(x)
        return tuple(vec)

    coarse = [run(full(w)) for w in simplex_grid(len(active), step)]
    t1 = time.perf_counter()
    log(f"coarse grid: {len(coarse)} weight sets in {t1 - t0:.1f}s")
    best = min(coarse, key=rank)
    fine = [run(full(w)) for w in refine_grid([best["weights"][prep.names[j]] for j in active], refine_step)]
    t2 = time.perf_counter()
    log(f"refined grid: {len(fine)} weight sets around the best in {t2 - t1:.1f}s")
    ranked = sorted(cache.values(), key=rank)
    cur = weight_vector(prep, current or {})
    cur_t = tuple(round(float(x), 6) for x in cur)
    current_proxy = run(cur_t)
    out: dict[str, Any] = {
        "components": prep.names, "ever_present": prep.ever_present,
        "no_effect": [n for n in prep.names if n not in prep.ever_present],
        "events": prep.events, "sessions": s, "labelled_keys": len(set(prep.keys) & set(labels)),
        "holdout": holdout, "tune_sessions": cut, "proxy": {
            "sessions": int(rows.size), "k": k_proxy, "grid_coarse": len(coarse), "grid_refined": len(fine),
            "projected_width": proxy.width, "seconds": round(t2 - t0, 1)},
        "top": ranked[:top], "current": current_proxy, "best": ranked[0],
    }
    if make_scorer is not None and faithful > 0:
        chosen, seen = [], set()
        for r in ranked:
            key = effective_key(prep, [r["weights"][n] for n in prep.names])
            if key not in seen:
                seen.add(key)
                chosen.append(r)
            if len(chosen) >= faithful:
                break
        t3 = time.perf_counter()
        rows_out = []
        for r in [*chosen, {"weights": dict(zip(prep.names, cur_t)), "current": True}]:
            w = np.array([r["weights"][n] for n in prep.names])
            score, knn = faithful_scores(prep, w, make_scorer)
            ms, mk = block_metrics(prep.keys, score, labels, eval_keys), block_metrics(prep.keys, knn, labels, eval_keys)
            row = {"weights": r["weights"], "current": bool(r.get("current")),
                   "proxy_roc_auc": r.get("roc_auc", current_proxy["roc_auc"]),
                   "roc_auc": ms["roc_auc"], "pr_auc": ms["pr_auc"],
                   "knn_roc_auc": mk["roc_auc"], "knn_pr_auc": mk["pr_auc"], "sessions": ms["sessions"],
                   "anomalous": ms["anomalous"]}
            rows_out.append(row)
            log(f"faithful {_fmt_w(r['weights'])}: roc {row['roc_auc']} pr {row['pr_auc']}")
        out["faithful"] = {"evaluated_on": "holdout (last %.0f%% of sessions)" % (100 * holdout) if holdout > 0
                           else "all sessions (same labels as tuning: optimistic)",
                           "rows": rows_out, "seconds": round(time.perf_counter() - t3, 1)}
    if holdout <= 0:
        out["warning"] = OPTIMISM
    return out


# ----------------------------------------------------------------------------- cli

def _fmt_w(w: Mapping[str, float]) -> str:
    return " ".join(f"{k[:4]}={v:.3f}" for k, v in w.items())


def render(res: dict[str, Any]) -> str:
    names = res["components"]
    head = "  ".join(f"{n[:11]:>11}" for n in names)
    lines = [(f"events {res['events']}  sessions {res['sessions']}  labelled keys {res['labelled_keys']}  "
              f"tuned on the first {res['tune_sessions']} sessions"),
             (f"proxy: prequential kNN distance (k={res['proxy']['k']}) over {res['proxy']['sessions']} sessions, "
              f"{res['proxy']['grid_coarse']} coarse + {res['proxy']['grid_refined']} refined weight sets, "
              f"{res['proxy']['seconds']}s")]
    if res["no_effect"]:
        lines.append(f"never present in this data (their weight has no effect): {', '.join(res['no_effect'])}")
    lines += ["", f"{'rank':>4}  {head}  {'proxy ROC':>9}  {'proxy PR':>8}"]
    for i, r in enumerate(res["top"], 1):
        lines.append(f"{i:>4}  " + "  ".join(f"{r['weights'][n]:>11.3f}" for n in names)
                     + f"  {r['roc_auc']:>9.4f}  {r['pr_auc']:>8.4f}")
    c = res["current"]
    lines.append(f"{'cur':>4}  " + "  ".join(f"{c['weights'][n]:>11.3f}" for n in names)
                 + f"  {c['roc_auc']:>9.4f}  {c['pr_auc']:>8.4f}")
    if "faithful" in res:
        f = res["faithful"]
        lines += ["", f"faithful SessionScorer replay, metrics on {f['evaluated_on']} ({f['seconds']}s):",
                  f"{'':>4}  {head}  {'ROC-AUC':>8}  {'PR-AUC':>7}  {'kNN ROC':>8}  {'kNN PR':>7}"]
        for r in f["rows"]:
            lines.append(f"{'cur' if r['current'] else '':>4}  " + "  ".join(f"{r['weights'][n]:>11.3f}" for n in names)
                         + f"  {r['roc_auc']:>8.4f}  {r['pr_auc']:>7.4f}  {r['knn_roc_auc']:>8.4f}  {r['knn_pr_auc']:>7.4f}")
    if "warning" in res:
        lines += ["", f"warning: {res['warning']}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="secstream tune-weights", description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", type=Path, default=None,
                    help="event file (any read_records format) or a folder holding hdfs/*.parquet; "
                         "default: the HDFS 2%% sample")
    ap.add_argument("--data", dest="data_opt", type=Path, default=None, help="same as DATA")
    ap.add_argument("--format", default="auto", help="input format of DATA (jsonl, sshd, hdfs, windows-json, parquet, auto)")
    ap.add_argument("--labels", type=Path, default=None,
                    help="labels: parquet (seq_id/session_id, anomaly) or JSON lines {session_id, anomaly}")
    ap.add_argument("--limit-sessions", type=int, default=None, help="only the first N session keys (quick run)")
    ap.add_argument("--holdout", type=float, default=0.0,
                    help="tune on the chronologically first 1-F of the sessions, report on the last F (e.g. 0.5)")
    ap.add_argument("--step", type=float, default=0.1, help="coarse grid step")
    ap.add_argument("--refine-step", type=float, default=0.025, help="refinement step around the best (±2 steps)")
    ap.add_argument("--top", type=int, default=10, help="weight sets in the table")
    ap.add_argument("--faithful", type=int, default=5, help="distinct top weight sets replayed through SessionScorer")
    ap.add_argument("--proxy-sessions", type=int, default=3000, help="chronological subsample for the grid proxy")
    ap.add_argument("--components", default="text,categorical,numerical,network",
                    help="components to weigh (comma list of text, categorical, numerical, network, time)")
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0, help="seed of the proxy subsample")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(None if argv is None else list(argv))
    if not 0.0 <= args.holdout < 1.0:
        print("--holdout must be in [0, 1)", file=sys.stderr)
        return 2
    if not (0 < args.step <= 0.5 and 0 < args.refine_step <= args.step):
        print("need 0 < --refine-step <= --step <= 0.5", file=sys.stderr)
        return 2
    data, labels_path = resolve_paths(args.data_opt or args.data, args.labels)
    if not data.exists():
        print(f"data not found: {data}", file=sys.stderr)
        return 2
    if labels_path is None or not labels_path.exists():
        print(f"labels not found: {labels_path or '(none given; use --labels)'}", file=sys.stderr)
        return 2

    from detection.session_score import SessionScorer
    from encoders.hybrid import (
        DEFAULT_WEIGHTS,
        OPTIONAL_COMPONENTS,
        build_default_encoder,
    )
    from streams.stages.factory import build_sessions
    from streams.config.settings import Settings

    def log(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    settings = Settings()
    t0 = time.perf_counter()
    labels = read_labels(labels_path)
    sessionizer, _ = build_sessions(settings, 1)
    fmt = "parquet" if args.format == "auto" and data.suffix.lower() == ".parquet" else args.format
    docs = load_events(data, fmt, limit_sessions=args.limit_sessions, key_of=sessionizer.key_of)
    t1 = time.perf_counter()
    log(f"loaded {len(docs)} events, {len(labels)} labels in {t1 - t0:.1f}s")
    if not docs:
        print(f"no valid events in {data} (format {fmt})", file=sys.stderr)
        return 2
    comps = [c.strip() for c in args.components.split(",") if c.strip()]
    valid = [*DEFAULT_WEIGHTS, *OPTIONAL_COMPONENTS]
    if not comps or any(c not in valid for c in comps):
        print(f"--components: valid names are {', '.join(valid)}", file=sys.stderr)
        return 2
    encoder = build_default_encoder(weights={n: 1.0 for n in comps}, model_path=settings.model_path or None,
                                    cache_size=settings.text_cache_size, seed=settings.seed,
                                    categorical_artifact=settings.categorical_artifact or None)
    prep = prepare(docs, encoder, sessionizer, batch_size=args.batch_size)
    log(f"encoded once + sessionized: {len(prep.sessions)} sessions, {len(prep.patterns)} presence patterns "
        f"({prep.seconds})")

    def make_scorer(dim: int) -> SessionScorer:
        return SessionScorer(dim, k=settings.session_knn_k, warmup=settings.session_warmup)

    if not set(prep.keys) & set(labels):
        print("no session key of the data has a label (labels are keyed by session key, e.g. the HDFS block id)",
              file=sys.stderr)
        return 2
    res = tune(prep, labels, step=args.step, refine_step=args.refine_step, proxy_sessions=args.proxy_sessions,
               k=settings.session_knn_k, holdout=args.holdout, top=args.top, faithful=args.faithful,
               current=settings.weights(), make_scorer=make_scorer, seed=args.seed, log=log)
    res["data"], res["labels"] = str(data), str(labels_path)
    res["seconds"] = {"load": round(t1 - t0, 1), **prep.seconds, "total": round(time.perf_counter() - t0, 1)}
    if args.json:
        print(json.dumps(res, default=float))
    else:
        print(render(res))
        print(f"\ntotal {res['seconds']['total']}s (load {res['seconds']['load']}s, encode {prep.seconds['encode']}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
