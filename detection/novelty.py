"""kNN novelty against a compact in-memory baseline of exemplars.

Why in memory: one store query per event caps a worker near 700 events/s
(design.md); a matrix product of a batch against a few thousand exemplars answers
thousands of queries at once. The store keeps every event for durability and
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
"""

from __future__ import annotations

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


class ExemplarBaseline:
    """Bounded set of exemplar vectors with support counts; kNN novelty per batch."""

    def __init__(self, dim: int, *, capacity: int = 50_000, k: int = 5, merge_at: float = 0.995) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        if capacity < 1 or k < 1:
            raise ValueError(f"capacity and k must be >= 1, got capacity={capacity}, k={k}")
        if not 0.0 < merge_at <= 1.0:
            raise ValueError(f"merge_at must be in (0, 1], got {merge_at}")
        self.dim = dim
        self.capacity = capacity
        self.k = k
        self.merge_at = merge_at
        self._vecs = np.zeros((min(capacity, 1024), dim), dtype=np.float32)
        self._counts = np.zeros(self._vecs.shape[0], dtype=np.int64)
        self._last = np.zeros(self._vecs.shape[0], dtype=np.int64)  # sequence number last hit
        self._ids: list[str] = []
        self._summaries: list[str] = []
        self._size = 0
        self.seen = 0  # events learned so far

    def __len__(self) -> int:
        return self._size

    def score(self, vectors: np.ndarray, top: int = 3) -> list[NoveltyResult]:
        """Novelty of each row of ``vectors`` (unit rows, float32) — changes no state.

        Every candidate has a count >= 1, so covering ``k`` events never needs
        more than ``k`` candidates: a row-wise partial sort of the top
        ``max(k, top)`` similarities is enough (vectorized over the batch).
        """
        n = vectors.shape[0]
        if n == 0:
            return []
        m = self._size
        sims = np.empty((n, m + n), dtype=np.float32)
        if m:
            np.matmul(vectors, self._vecs[:m].T, out=sims[:, :m])
        intra = vectors @ vectors.T
        intra[np.triu_indices(n)] = _NEG  # only earlier events of the batch
        sims[:, m:] = intra
        counts = np.concatenate([self._counts[:m], np.ones(n, dtype=np.int64)])
        width = min(max(self.k, top), m + n)
        if width < m + n:
            cand = np.argpartition(-sims, width - 1, axis=1)[:, :width]
        else:
            cand = np.broadcast_to(np.arange(m + n), (n, m + n)).copy()
        csims = np.take_along_axis(sims, cand, axis=1)
        order = np.argsort(-csims, axis=1, kind="stable")
        cand = np.take_along_axis(cand, order, axis=1)
        csims = np.take_along_axis(csims, order, axis=1)
        valid = csims > _NEG
        ccounts = np.where(valid, counts[cand], 0)
        covered = np.cumsum(ccounts, axis=1)
        reach = np.minimum((covered < self.k).sum(axis=1), width - 1)
        # fewer than k past events: the furthest valid neighbour decides
        last_valid = np.maximum(valid.sum(axis=1) - 1, 0)
        reach = np.minimum(reach, last_valid)
        kth = csims[np.arange(n), reach]
        raw = np.where(valid[:, 0], np.clip(1.0 - kth, 0.0, 2.0), 1.0)
        out: list[NoveltyResult] = []
        for i in range(n):
            neighbours = []
            for j, s_ij, ok in zip(cand[i, :top], csims[i, :top], valid[i, :top]):
                if not ok:
                    break
                j = int(j)
                if j < m:
                    neighbours.append(Neighbour(self._ids[j], float(s_ij), int(counts[j]), False, j))
                else:
                    neighbours.append(Neighbour("", float(s_ij), 1, True, j - m))
            out.append(NoveltyResult(raw=float(raw[i]), neighbours=neighbours))
        return out

    def learn(self, vectors: np.ndarray, ids: list[str], summaries: Sequence[str]) -> None:
        """Fold a scored batch into the baseline (merge near-duplicates, else add).

        Events near an existing exemplar add to its count (vectorized); the rest
        are deduplicated among themselves greedily in stream order.
        """
        n = vectors.shape[0]
        if n == 0:
            return
        m = self._size
        fresh = np.arange(n)
        if m:
            sims = vectors @ self._vecs[:m].T
            best = np.argmax(sims, axis=1)
            hit = sims[np.arange(n), best] >= self.merge_at
            np.add.at(self._counts, best[hit], 1)
            self._last[best[hit]] = self.seen + n
            fresh = np.flatnonzero(~hit)
        self.seen += n
        if fresh.size == 0:
            return
        if self._size + fresh.size > self.capacity:
            self._evict(self._size + fresh.size - self.capacity)
        among = vectors[fresh] @ vectors[fresh].T
        added: list[int] = []  # positions in `fresh` that became exemplars
        rows: list[int] = []
        for pos, i in enumerate(fresh):
            if added:
                s = among[pos, added]
                j = int(np.argmax(s))
                if s[j] >= self.merge_at:
                    self._counts[rows[j]] += 1
                    continue
            rows.append(self._add(vectors[i], ids[i], summaries[i]))
            added.append(pos)

    def summary(self, row: int) -> str:
        return self._summaries[row]

    def vector(self, row: int) -> np.ndarray:
        return self._vecs[row]

    def _add(self, v: np.ndarray, ident: str, summary: str) -> int:
        if self._size >= self.capacity:  # only when a batch exceeds the capacity itself
            self._evict(1)
        if self._size == self._vecs.shape[0]:
            grow = min(self.capacity, self._vecs.shape[0] * 2)
            self._vecs = np.resize(self._vecs, (grow, self.dim))
            self._counts = np.resize(self._counts, grow)
            self._last = np.resize(self._last, grow)
        r = self._size
        self._vecs[r] = v
        self._counts[r] = 1
        self._last[r] = self.seen
        self._ids.append(ident)
        self._summaries.append(summary)
        self._size += 1
        return r

    def _evict(self, needed: int) -> None:
        """Drop at least ``needed`` (and at least a tenth): lowest count, then least recently hit."""
        n = self._size
        drop = min(n, max(needed, n // 10))
        order = np.lexsort((self._last[:n], self._counts[:n]))
        keep = np.sort(order[drop:])
        m = keep.size
        self._vecs[:m] = self._vecs[keep]
        self._counts[:m] = self._counts[keep]
        self._last[:m] = self._last[keep]
        self._ids = [self._ids[j] for j in keep]
        self._summaries = [self._summaries[j] for j in keep]
        self._size = m

    def snapshot(self) -> dict[str, Any]:
        """Plain-data state: arrays as float32/int64 numpy (the caller writes safetensors)."""
        n = self._size
        return {
            "meta": {"dim": self.dim, "capacity": self.capacity, "k": self.k, "merge_at": self.merge_at,
                     "seen": self.seen, "ids": list(self._ids), "summaries": list(self._summaries)},
            "arrays": {"vecs": self._vecs[:n].copy(), "counts": self._counts[:n].copy(), "last": self._last[:n].copy()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        meta, arrays = state["meta"], state["arrays"]
        if int(meta["dim"]) != self.dim:
            raise ValueError(f"baseline snapshot has dim {meta['dim']}, encoder has {self.dim}")
        n = len(meta["ids"])
        cap = max(n, min(self.capacity, 1024))
        self._vecs = np.zeros((cap, self.dim), dtype=np.float32)
        self._counts = np.zeros(cap, dtype=np.int64)
        self._last = np.zeros(cap, dtype=np.int64)
        self._vecs[:n] = np.asarray(arrays["vecs"], dtype=np.float32)
        self._counts[:n] = np.asarray(arrays["counts"], dtype=np.int64)
        self._last[:n] = np.asarray(arrays["last"], dtype=np.int64)
        self._ids = [str(x) for x in meta["ids"]]
        self._summaries = [str(x) for x in meta["summaries"]]
        self._size = n
        self.seen = int(meta["seen"])
