"""kNN novelty against a compact in-memory baseline of exemplars.

Why in memory: one store query per event caps a worker near 700 events/s
(docs/architecture.md, "Facts about the platform"); a matrix product of a batch against a few
thousand exemplars answers thousands of queries at once. The store keeps every event for durability and
hunting; this baseline is its compacted summary.

Compaction: an event whose nearest exemplar is at cosine similarity >= ``merge_at``
does not become a new exemplar, it adds 1 to that exemplar's count. The baseline
grows with the diversity of the stream, not its volume, and is bounded by
``capacity`` (the least-supported, oldest exemplars are evicted first).

Novelty: the *support-weighted* k-NN distance. Neighbours are walked from the
most similar down, accumulating their counts, until ``k`` past events are
covered; the raw novelty is ``1 - similarity`` at that point. An event identical
to something seen a thousand times has novelty 0; one identical to a single past
event still has to reach further for its k-th neighbour, so rare looks novel.

Prequential within a batch: event ``i`` of a batch is scored against the
baseline as it was before the batch plus the batch's events ``0..i-1``, never
against itself or anything later, so batch size does not change the scores.
:class:`BatchSearch` keeps a batch's candidates (each row's nearest exemplars and
the batch's own similarities) so rows can be re-scored with some earlier batch
rows left out, without another pass over the exemplars: that is how an admission
gate (:mod:`detection.admission`) keeps an anomalous event from vouching for a
later copy of itself in the same batch.

Time: each exemplar carries the event time (epoch seconds) it was first and last
seen. With ``ttl_s > 0`` an exemplar not seen for ``ttl_s`` before the newest event
time learned is dropped, so retention follows the stream's clock (a replay of old
logs ages exactly as the live stream did).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_NEG = np.float32(-4.0)  # below any cosine similarity


@dataclass
class Neighbour:
    """One past event (or exemplar) that backs a score."""

    id: str
    similarity: float
    count: int
    in_batch: bool
    row: int  # exemplar row, or batch position when in_batch


@dataclass
class NoveltyResult:
    """Raw novelty of one event and the neighbours that determined it."""

    raw: float
    neighbours: list[Neighbour] = field(default_factory=list)


def support_weighted_knn(sims: np.ndarray, counts: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """Raw novelty ``1 - s`` where ``s`` is the similarity at which ``k`` past events are covered.

    ``sims`` and ``counts`` are 1-d over the candidates. Returns the novelty and the
    candidate order (most similar first) that was walked. With no candidates, or
    fewer than ``k`` events in total, the last (furthest) similarity counts and a
    missing candidate set gives the maximum novelty 1.0.
    """
    if sims.size == 0:
        return 1.0, np.empty(0, dtype=np.int64)
    order = np.argsort(-sims, kind="stable")
    covered = np.cumsum(counts[order])
    pos = int(np.searchsorted(covered, k, side="left"))
    pos = min(pos, order.size - 1)
    raw = 1.0 - float(sims[order[pos]])
    return float(np.clip(raw, 0.0, 2.0)), order


#: similarity slack when deciding which earlier batch rows a row's result rests on
_EPS = 1e-6


class BatchSearch:
    """The kNN candidates of one batch against a baseline, re-scorable with batch rows left out.

    Built once per batch: each row's ``max(k, top)`` most similar exemplars (the
    exemplars do not change within a batch, so that set is final) and the batch's
    similarities to its own earlier rows. :meth:`rescore` walks chosen rows again
    with some batch rows excluded as candidates, at the cost of the batch's width,
    not the baseline's. Use it before the baseline learns the batch.
    """

    def __init__(self, base: ExemplarBaseline, vectors: np.ndarray, top: int = 3) -> None:
        n, m = vectors.shape[0], len(base)
        self.n, self.k, self.top = n, base.k, top
        w = min(max(base.k, top), m)
        if m:
            sims = vectors @ base._vecs[:m].T
            idx = (np.argpartition(sims, m - w, axis=1)[:, m - w:] if w < m  # the w largest, no negated copy
                   else np.broadcast_to(np.arange(m), (n, m)).copy())
            self.base_sims = np.take_along_axis(sims, idx, axis=1)
            self.base_counts = base._counts[idx]
        else:
            idx = np.zeros((n, 0), dtype=np.int64)
            self.base_sims = np.zeros((n, 0), dtype=np.float32)
            self.base_counts = np.zeros((n, 0), dtype=np.int64)
        self.base_idx = idx
        self.w = w  # baseline candidates per row: columns [0, w) of a row's candidates, batch rows after
        self._ids = base._ids  # read by results(): use the search before the baseline learns
        # only earlier events of the batch; the others get distinct values below _NEG (not candidates):
        # ties would make every row's partial sort several times slower
        self._pad = _NEG - np.arange(n, dtype=np.float32) * np.float32(1e-3)
        intra = (vectors @ vectors.T).astype(np.float32, copy=False)
        self.intra = np.where(np.tri(n, k=-1, dtype=bool), intra, self._pad[None, :])
        self.width = min(max(base.k, top), w + n)
        self.raw = np.ones(n, dtype=np.float64)
        self.kth = np.full(n, _NEG, dtype=np.float32)  # similarity that decided; _NEG: every candidate counts
        self._cand = np.zeros((n, self.width), dtype=np.int64)
        self._csims = np.full((n, self.width), _NEG, dtype=np.float32)
        self._counts = np.zeros((n, self.width), dtype=np.int64)
        if n:
            self.rescore(np.arange(n))

    def rescore(self, rows: np.ndarray, exclude: np.ndarray | None = None) -> None:
        """Walk ``rows`` again with the batch rows in ``exclude`` (bool mask) left out as candidates."""
        r = rows.size
        if r == 0:
            return
        sims = np.concatenate([self.base_sims[rows], self.intra[rows]], axis=1)
        if exclude is not None and exclude.any():
            cols = np.flatnonzero(exclude)
            sims[:, self.w + cols] = self._pad[cols]
        total, width = sims.shape[1], self.width
        if width < total:
            cand = np.argpartition(sims, total - width, axis=1)[:, total - width:]
        else:
            cand = np.broadcast_to(np.arange(total), (r, total)).copy()
        csims = np.take_along_axis(sims, cand, axis=1)
        order = np.argsort(-csims, axis=1, kind="stable")
        cand = np.take_along_axis(cand, order, axis=1)
        csims = np.take_along_axis(csims, order, axis=1)
        valid = csims > _NEG
        counts = np.ones(cand.shape, dtype=np.int64)
        if self.w:
            on_base = cand < self.w
            picked = np.take_along_axis(self.base_counts[rows], np.minimum(cand, self.w - 1), axis=1)
            counts[on_base] = picked[on_base]
        covered = np.cumsum(np.where(valid, counts, 0), axis=1)
        reach = np.minimum((covered < self.k).sum(axis=1), width - 1)
        # fewer than k past events: the furthest valid neighbour decides
        reach = np.minimum(reach, np.maximum(valid.sum(axis=1) - 1, 0))
        kth = csims[np.arange(r), reach]
        self.raw[rows] = np.where(valid[:, 0], np.clip(1.0 - kth.astype(np.float64), 0.0, 2.0), 1.0)
        # a row that covers fewer than k events rests on every candidate it has
        self.kth[rows] = np.where(covered[:, -1] < self.k, _NEG, kth)
        self._cand[rows], self._csims[rows], self._counts[rows] = cand, csims, counts

    def dependents(self, changed: np.ndarray) -> np.ndarray:
        """Rows whose result may change when the batch rows in ``changed`` (bool mask) join or leave
        the candidates: a later row within whose reach (similarity >= its deciding one) they lie."""
        cols = np.flatnonzero(changed)
        if cols.size == 0:
            return np.zeros(self.n, dtype=bool)
        s = self.intra[:, cols]  # <= _NEG where the column is not earlier than the row
        return ((s > _NEG) & (s >= self.kth[:, None] - _EPS)).any(axis=1)

    def closure(self, seed: np.ndarray) -> np.ndarray:
        """Rows that depend on ``seed`` rows directly or through other rows (``seed`` itself excluded)."""
        found = np.zeros(self.n, dtype=bool)
        frontier = seed
        while frontier.any():
            new = self.dependents(frontier) & ~found & ~seed
            found |= new
            frontier = new
        return found

    def results(self) -> list[NoveltyResult]:
        """One :class:`NoveltyResult` per row with its ``top`` nearest candidates."""
        out: list[NoveltyResult] = []
        top = self.top
        for i in range(self.n):
            neighbours = []
            for c, s_ij, cnt in zip(self._cand[i, :top], self._csims[i, :top], self._counts[i, :top]):
                if s_ij <= _NEG:
                    break
                c = int(c)
                if c < self.w:
                    row = int(self.base_idx[i, c])
                    neighbours.append(Neighbour(self._ids[row], float(s_ij), int(cnt), False, row))
                else:
                    neighbours.append(Neighbour("", float(s_ij), 1, True, c - self.w))
            out.append(NoveltyResult(raw=float(self.raw[i]), neighbours=neighbours))
        return out


class ExemplarBaseline:
    """Bounded set of exemplar vectors with support counts and first/last seen times; kNN novelty per batch."""

    def __init__(self, dim: int, *, capacity: int = 50_000, k: int = 5, merge_at: float = 0.995,
                 ttl_s: float = 0.0) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        if capacity < 1 or k < 1:
            raise ValueError(f"capacity and k must be >= 1, got capacity={capacity}, k={k}")
        if not 0.0 < merge_at <= 1.0:
            raise ValueError(f"merge_at must be in (0, 1], got {merge_at}")
        if ttl_s < 0:
            raise ValueError(f"ttl_s must be >= 0 (0 = keep forever), got {ttl_s}")
        self.dim = dim
        self.capacity = capacity
        self.k = k
        self.merge_at = merge_at
        self.ttl_s = ttl_s
        size = min(capacity, 1024)
        self._vecs = np.zeros((size, dim), dtype=np.float32)
        self._counts = np.zeros(size, dtype=np.int64)
        self._last = np.zeros(size, dtype=np.int64)  # sequence number last hit
        self._first_t = np.zeros(size, dtype=np.float64)  # event time first seen (epoch s; NaN = unknown)
        self._last_t = np.zeros(size, dtype=np.float64)  # event time last seen
        self._touch = np.zeros(size, dtype=bool)  # hit or added by the learn() in progress
        self._ids: list[str] = []
        self._summaries: list[str] = []
        self._size = 0
        self.seen = 0  # events learned so far (admitted or not)
        self.newest = 0.0  # newest event time learned (epoch s; 0 = none yet)
        self.expired = 0  # exemplars dropped by the TTL (in this process: a statistic, not state)
        self._oldest = math.inf  # lower bound of the exemplars' last seen times (skips TTL scans)
        self._undated = False  # restored from a snapshot without times: dated at the next learn

    def __len__(self) -> int:
        return self._size

    def search(self, vectors: np.ndarray, top: int = 3) -> BatchSearch:
        """The batch's candidates (see :class:`BatchSearch`) — changes no state."""
        return BatchSearch(self, vectors, top)

    def score(self, vectors: np.ndarray, top: int = 3) -> list[NoveltyResult]:
        """Novelty of each row of ``vectors`` (unit rows, float32) — changes no state.

        Every candidate has a count >= 1, so covering ``k`` events never needs
        more than ``k`` candidates: a row-wise partial sort of the top
        ``max(k, top)`` similarities is enough (vectorized over the batch).
        """
        if vectors.shape[0] == 0:
            return []
        return self.search(vectors, top).results()

    def learn(self, vectors: np.ndarray, ids: Sequence[str], summaries: Sequence[str],
              times: Sequence[float] | np.ndarray | None = None, admit: np.ndarray | None = None) -> np.ndarray:
        """Fold a scored batch into the baseline (merge near-duplicates, else add); the rows it touched.

        ``times`` are the events' times (epoch seconds; absent: the newest time
        learned so far). ``admit`` (bool per row) keeps the rows that are False out
        (every row still counts in ``seen`` and the newest time). Events near an
        existing exemplar add to its count (vectorized); the rest are deduplicated
        among themselves greedily in stream order. Then exemplars past the TTL go.
        Returns the exemplar rows that were hit or added (and are still there).
        """
        n = vectors.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        t = self._times(times, n)
        if times is not None and self._undated:
            self._date(float(np.nanmin(t)) if np.isfinite(t).any() else self.newest)
        if np.isfinite(t).any():
            self.newest = max(self.newest, float(np.nanmax(t)))
        rows = np.arange(n) if admit is None else np.flatnonzero(np.asarray(admit, dtype=bool))
        self.seen += n
        self._touch[: self._size] = False
        if rows.size:
            self._fold(vectors, ids, summaries, t, rows)
        self.expire()
        touched = np.flatnonzero(self._touch[: self._size])
        self._touch[touched] = False
        return touched

    def _times(self, times: Sequence[float] | np.ndarray | None, n: int) -> np.ndarray:
        if times is None:
            return np.full(n, self.newest, dtype=np.float64)
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        if t.size != n:
            raise ValueError(f"{t.size} times for {n} vectors")
        return t

    def _date(self, when: float) -> None:
        n = self._size
        for arr in (self._first_t, self._last_t):
            arr[:n] = np.where(np.isnan(arr[:n]), when, arr[:n])
        self._undated = False
        self._oldest = min(self._oldest, when)

    def _fold(self, vectors: np.ndarray, ids: Sequence[str], summaries: Sequence[str], t: np.ndarray,
              rows: np.ndarray) -> None:
        v = vectors[rows]
        fresh = np.arange(rows.size)
        m = self._size
        if m:
            sims = v @ self._vecs[:m].T
            best = np.argmax(sims, axis=1)
            hit = sims[np.arange(rows.size), best] >= self.merge_at
            rows_hit, when = best[hit], t[rows[hit]]
            np.add.at(self._counts, rows_hit, 1)
            self._last[rows_hit] = self.seen
            self._touch[rows_hit] = True
            np.fmin.at(self._first_t, rows_hit, when)
            np.fmax.at(self._last_t, rows_hit, when)
            fresh = np.flatnonzero(~hit)
        if fresh.size == 0:
            return
        if self._size + fresh.size > self.capacity:
            self._evict(self._size + fresh.size - self.capacity)
        among = v[fresh] @ v[fresh].T
        added: list[int] = []  # positions in `fresh` that became exemplars
        made: list[int] = []  # their exemplar rows
        for pos, f in enumerate(fresh):
            i = int(rows[f])
            if added:
                s = among[pos, added]
                j = int(np.argmax(s))
                if s[j] >= self.merge_at:
                    r = made[j]
                    self._counts[r] += 1
                    self._first_t[r] = np.fmin(self._first_t[r], t[i])
                    self._last_t[r] = np.fmax(self._last_t[r], t[i])
                    continue
            if self._size >= self.capacity:  # only when a batch exceeds the capacity itself
                keep = self._evict(1)
                where = {int(old): new for new, old in enumerate(keep)}
                kept = [(p, where[r]) for p, r in zip(added, made) if r in where]
                added, made = [p for p, _ in kept], [r for _, r in kept]
            made.append(self._add(v[f], ids[i], summaries[i], 1, float(t[i]), float(t[i])))
            added.append(pos)

    def add_exemplar(self, vector: np.ndarray, ident: str, summary: str, count: int, first: float,
                     last: float) -> int:
        """Add one exemplar with its support (or fold it into an exemplar it nearly duplicates); its row."""
        if self._size:
            sims = self._vecs[: self._size] @ vector
            j = int(np.argmax(sims))
            if sims[j] >= self.merge_at:
                self._counts[j] += count
                self._last[j] = self.seen
                self._first_t[j] = np.fmin(self._first_t[j], first)
                self._last_t[j] = np.fmax(self._last_t[j], last)
                return j
        if self._size >= self.capacity:
            self._evict(1)
        return self._add(vector, ident, summary, count, first, last)

    def remove(self, rows: np.ndarray) -> None:
        """Drop the exemplars at ``rows`` (later rows move up)."""
        if len(rows) == 0:
            return
        keep = np.ones(self._size, dtype=bool)
        keep[np.asarray(rows, dtype=np.int64)] = False
        self._keep(np.flatnonzero(keep))

    def expire(self, now: float | None = None) -> int:
        """Drop exemplars last seen more than ``ttl_s`` before ``now`` (default: the newest time learned)."""
        now = self.newest if now is None else now
        if self.ttl_s <= 0 or self._size == 0 or now <= 0:
            return 0
        cutoff = now - self.ttl_s
        if not cutoff > self._oldest:
            return 0
        last = self._last_t[: self._size]
        keep = np.flatnonzero(~(last < cutoff))  # NaN (undated) stays
        dropped = self._size - keep.size
        if dropped:
            self._keep(keep)
            self.expired += dropped
        self._oldest = self._min_last()
        return dropped

    def support(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Views of the exemplars' counts, first seen and last seen times (epoch s)."""
        n = self._size
        return self._counts[:n], self._first_t[:n], self._last_t[:n]

    def vectors(self) -> np.ndarray:
        """View of the exemplar vectors (rows ``0..len-1``)."""
        return self._vecs[: self._size]

    def ident(self, row: int) -> str:
        return self._ids[row]

    def summary(self, row: int) -> str:
        return self._summaries[row]

    def vector(self, row: int) -> np.ndarray:
        return self._vecs[row]

    def _min_last(self) -> float:
        last = self._last_t[: self._size]
        return float(np.nanmin(last)) if last.size and not np.isnan(last).all() else math.inf

    def _add(self, v: np.ndarray, ident: str, summary: str, count: int, first: float, last: float) -> int:
        if self._size == self._vecs.shape[0]:
            grow = min(self.capacity, self._vecs.shape[0] * 2)
            self._vecs = np.resize(self._vecs, (grow, self.dim))
            self._counts = np.resize(self._counts, grow)
            self._last = np.resize(self._last, grow)
            self._first_t = np.resize(self._first_t, grow)
            self._last_t = np.resize(self._last_t, grow)
            self._touch = np.resize(self._touch, grow)
        r = self._size
        self._vecs[r] = v
        self._counts[r] = count
        self._last[r] = self.seen
        self._first_t[r], self._last_t[r] = first, last
        self._touch[r] = True
        self._oldest = min(self._oldest, last)
        self._ids.append(ident)
        self._summaries.append(summary)
        self._size += 1
        return r

    def _evict(self, needed: int) -> np.ndarray:
        """Drop at least ``needed`` (and at least a tenth): lowest count, then least recently hit.
        Returns the old rows kept, in their new order."""
        n = self._size
        drop = min(n, max(needed, n // 10))
        order = np.lexsort((self._last[:n], self._counts[:n]))
        keep = np.sort(order[drop:])
        self._keep(keep)
        return keep

    def _keep(self, keep: np.ndarray) -> None:
        m = keep.size
        for arr in (self._vecs, self._counts, self._last, self._first_t, self._last_t, self._touch):
            arr[:m] = arr[keep]
        self._ids = [self._ids[j] for j in keep]
        self._summaries = [self._summaries[j] for j in keep]
        self._size = m

    def snapshot(self) -> dict[str, Any]:
        """Plain-data state: arrays as float32/int64/float64 numpy (the caller writes safetensors)."""
        n = self._size
        return {
            "meta": {"dim": self.dim, "capacity": self.capacity, "k": self.k, "merge_at": self.merge_at,
                     "seen": self.seen, "newest": self.newest, "ids": list(self._ids), "summaries": list(self._summaries)},
            "arrays": {"vecs": self._vecs[:n].copy(), "counts": self._counts[:n].copy(),
                       "last": self._last[:n].copy(), "first_seen": self._first_t[:n].copy(),
                       "last_seen": self._last_t[:n].copy()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`; one written before exemplars had times is dated at the next learn."""
        meta, arrays = state["meta"], state["arrays"]
        if int(meta["dim"]) != self.dim:
            raise ValueError(f"baseline snapshot has dim {meta['dim']}, encoder has {self.dim}")
        n = len(meta["ids"])
        cap = max(n, min(self.capacity, 1024))
        self._vecs = np.zeros((cap, self.dim), dtype=np.float32)
        self._counts = np.zeros(cap, dtype=np.int64)
        self._last = np.zeros(cap, dtype=np.int64)
        self._first_t = np.zeros(cap, dtype=np.float64)
        self._last_t = np.zeros(cap, dtype=np.float64)
        self._touch = np.zeros(cap, dtype=bool)
        self._vecs[:n] = np.asarray(arrays["vecs"], dtype=np.float32).reshape(n, self.dim)
        self._counts[:n] = np.asarray(arrays["counts"], dtype=np.int64)
        self._last[:n] = np.asarray(arrays["last"], dtype=np.int64)
        dated = "first_seen" in arrays and "last_seen" in arrays
        self._first_t[:n] = np.asarray(arrays["first_seen"], dtype=np.float64) if dated else np.nan
        self._last_t[:n] = np.asarray(arrays["last_seen"], dtype=np.float64) if dated else np.nan
        self._undated = not dated and n > 0
        self._ids = [str(x) for x in meta["ids"]]
        self._summaries = [str(x) for x in meta["summaries"]]
        self._size = n
        self.seen = int(meta["seen"])
        self.newest = float(meta.get("newest", 0.0))
        self._oldest = self._min_last()
