"""Entity embeddings: one per ``(type, id)``, evolving in vectorized micro-batch updates. Pure (numpy).

Entities are the values of configurable event fields (default ``user``, ``host``,
``src_ip``; :func:`entity_keys`). Each committed entity has

- a base embedding ``b`` and hour-of-day slice adjustments ``a[s]`` (``slices``
  equal slices of the UTC day); its effective embedding at time ``t`` is
  ``unit(b + slice_weight · a[slice(t)])`` (default weight 0.1);
- a version counter and the ``window_end`` of its last committed version.

**Batch update** (:meth:`EntityTable.commit`, one call per closed window, numpy
over all the window's entities at once, no Python loop over rows for the math)::

    b ← b + lr·(mean(interactions) − b)            (:func:`batch_update`)
    a[s] ← a[s] + lr·((mean − b_new) − a[s])        s = slice of the window start

With ``warm_start`` (default) a young entity uses ``max(lr, 1/(version + 2))``:
its prior weighs as one window and its first versions are running means, so it
reaches its own behaviour in a few windows instead of ``~1/lr``.

**Cold start.** A new entity's first version starts from its peer group's prior,
never zeros or noise: the mean direction of the committed entities of the same
type in the same /24 (IPv4) or /64 (IPv6) for address types, else of the whole
type; for the very first window of a type, the mean of that window's entities.

**Serving without leakage** (:meth:`EntityTable.as_of`). Each entity keeps its
latest and its previous version; each peer group the means it published at the
last two commits. An event at ``t`` is compared with the newest version whose
``window_end ≤ window_start(t) − lateness``: never its own window or a later one,
and the same version whatever the arrival order within the lateness (such a
window is certainly closed when any event of ``t``'s window arrives). With
``lateness ≤ window`` two versions always suffice for an event whose window is
open. An entity without such a version is compared with its peer group's prior.

**Memory** is bounded: at most ``max_entities`` entities, the least recently
committed evicted first (an evicted entity that returns starts again from its
prior). Per entity ``(3 + slices) · dim · 4`` bytes (base, previous base,
previous slice row, slices), per peer group ``16 · dim`` bytes; at 433 dims and 4
slices about 12 KiB per entity, 240 MiB for 20,000.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detection.entity_groups import (
    POPULATION,
    EntityKey,
    PeerGroups,
    peer_group,
    scatter_add,
    segment_add,
    unit_rows,
    unit_rows_into,
)
from detection.vocabulary import SLICE_CHOICES  # valid numbers of hour-of-day slices; numpy-free home

__all__ = ["BASIS_NAMES", "SLICE_CHOICES", "Commit", "EntityTable", "EntityView", "batch_update", "hour_slices"]

#: Where a served embedding came from (:meth:`EntityTable.as_of`).
NONE, OWN, PREVIOUS, PRIOR = 0, 1, 2, 3
BASIS_NAMES = ("none", "own", "previous", "prior")
_CHUNK = 8192  # rows per block of the batch update (bounds temporaries, keeps blocks in cache)


def hour_slices(times: np.ndarray | Sequence[float], slices: int) -> np.ndarray:
    """Hour-of-day slice (0..slices−1, UTC) of each epoch time in seconds."""
    t = np.asarray(times, dtype=np.float64)
    return (np.floor(np.mod(t, 86_400.0) / (86_400.0 / slices))).astype(np.int64) % slices


def batch_update(e: np.ndarray, means: np.ndarray, lr: float | np.ndarray,
                 out: np.ndarray | None = None) -> np.ndarray:
    """``e + lr·(means − e)`` for all rows at once (``lr`` a scalar or one per row), float32.

    ``out`` (float32, may be ``means`` itself) receives the result without a new allocation.
    """
    e = np.asarray(e, dtype=np.float32)
    rate = np.asarray(lr, dtype=np.float32)
    if rate.ndim == 1:
        rate = rate[:, None]
    res = np.subtract(means, e, out=out, dtype=np.float32)
    res *= rate
    res += e
    return res


@dataclass
class EntityView:
    """An entity's committed embedding as served."""

    key: EntityKey
    vector: np.ndarray  # unit effective embedding (float32)
    version: int  # 0: no committed version, ``vector`` is the peer prior
    window_end: float | None
    basis: str  # "own" or "prior"


@dataclass
class Commit:
    """What one window's batch update committed (row-aligned arrays over ``keys``)."""

    window_start: float
    window_end: float
    keys: list[EntityKey]
    rows: np.ndarray  # table rows
    versions: np.ndarray  # int64, the new version numbers
    new: np.ndarray  # bool: first version (started from the prior)
    steady: np.ndarray  # bool: updated at the configured lr (not in warm start)
    move: np.ndarray  # chord ‖unit(b_new) − unit(b_old)‖ (from the prior for new entities)
    peer: np.ndarray  # chord from the leave-one-out peer-group mean (nan: no peers)
    peer_groups: list[str]  # the peer group each ``peer`` was measured against


def _empty_rows(cap: int, dim: int, slices: int) -> dict[str, np.ndarray]:
    """The per-entity arrays of :class:`EntityTable` for ``cap`` empty rows."""
    return {
        "base": np.zeros((cap, dim), dtype=np.float32),
        "adj": np.zeros((slices, cap, dim), dtype=np.float32),  # slice-major: adj[s] is one contiguous matrix
        "prev_base": np.zeros((cap, dim), dtype=np.float32),
        "prev_adj": np.zeros((cap, dim), dtype=np.float32),  # the slice row the latest commit changed
        "last_slice": np.zeros(cap, dtype=np.int64),
        "version": np.zeros(cap, dtype=np.int64),
        "end": np.full(cap, -np.inf),
        "prev_end": np.full(cap, np.inf),  # inf: no previous own version
        "tcode": np.zeros(cap, dtype=np.int64),
        "grp": np.full(cap, -1, dtype=np.int64),  # specific peer group row, −1: none
        "pop": np.zeros(cap, dtype=np.int64),  # the type's population group row
        "ew_move": np.zeros(cap, dtype=np.float32),  # drift statistics (detection.entity_drift)
        "ew_peer": np.zeros(cap, dtype=np.float32),
        "ew_count": np.zeros(cap, dtype=np.float32),
        "n_scored": np.zeros(cap, dtype=np.int64),
    }


_ROW_ARRAYS = tuple(_empty_rows(0, 1, 1))
_ROW_AXIS = {"adj": 1}  # the axis over entities, where it is not the first


class EntityTable:
    """Committed entity embeddings with versions, peer priors and LRU bounds; see the module docstring.

    Args:
        dim: width of the event vectors.
        lr: update rate in (0, 1].
        slices: hour-of-day slices, one of :data:`SLICE_CHOICES`.
        slice_weight: weight of the slice adjustment in the effective embedding (≥ 0).
        max_entities: most entities kept (least recently committed evicted first).
        warm_start: young entities update at ``max(lr, 1/(version + 2))``.
        min_peers: other members an address group needs to be the peer group (else the type's population).
    """

    def __init__(self, dim: int, *, lr: float = 0.2, slices: int = 4, slice_weight: float = 0.1,
                 max_entities: int = 20_000, warm_start: bool = True, min_peers: int = 2) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not 0.0 < lr <= 1.0:
            raise ValueError(f"lr must be in (0, 1], got {lr}")
        if slices not in SLICE_CHOICES:
            raise ValueError(f"slices must divide the day into equal hours: one of {SLICE_CHOICES}, got {slices}")
        if not slice_weight >= 0.0:
            raise ValueError(f"slice_weight must be >= 0, got {slice_weight}")
        if max_entities < 1 or min_peers < 1:
            raise ValueError(f"need max_entities >= 1 and min_peers >= 1, got {max_entities}, {min_peers}")
        self.dim, self.lr, self.slices, self.slice_weight = dim, float(lr), int(slices), float(slice_weight)
        self.max_entities, self.warm_start, self.min_peers = int(max_entities), bool(warm_start), int(min_peers)
        self.types: list[str] = []
        self.evicted = 0
        # entities committed / evicted since the last ``detection.entity_records.take_records``
        self.changed: set[EntityKey] = set()
        self.removed: set[EntityKey] = set()
        self.groups = PeerGroups(dim)
        self._rows: OrderedDict[EntityKey, int] = OrderedDict()  # LRU order: least recently committed first
        self._keys: list[EntityKey | None] = []
        self._free: list[int] = []
        self._alloc_arrays(0)
        self._grow(1)  # never empty: gathers at row 0 stay in bounds

    # ------------------------------------------------------------------ storage

    def _alloc_arrays(self, cap: int) -> None:
        for name, value in _empty_rows(cap, self.dim, self.slices).items():
            setattr(self, name, value)

    def _grow(self, need: int) -> None:
        old = self.base.shape[0]
        cap = min(self.max_entities, max(need, 2 * old, 64))
        for name, value in _empty_rows(cap - old, self.dim, self.slices).items():
            setattr(self, name, np.concatenate([getattr(self, name), value], axis=_ROW_AXIS.get(name, 0)))
        self._keys.extend([None] * (cap - old))
        self._free.extend(range(cap - 1, old - 1, -1))

    def _type_code(self, kind: str) -> int:
        if kind not in self.types:
            self.types.append(kind)
        return self.types.index(kind)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def keys(self) -> list[EntityKey]:
        """Entities held, least recently committed first."""
        return list(self._rows)

    def row(self, key: EntityKey) -> int | None:
        """The row of ``key`` in the arrays (``base``, ``prev_base``, …), ``None`` when not held."""
        return self._rows.get(key)

    def _evict(self, n: int) -> None:
        rows = np.array([self._rows.popitem(last=False)[1] for _ in range(n)], dtype=np.int64)
        u = unit_rows(self.base[rows]).astype(np.float64)
        for g in (self.grp[rows], self.pop[rows]):
            ok = g >= 0
            scatter_add(self.groups.sum, g[ok], -u[ok])
            np.add.at(self.groups.count, g[ok], -1)
            self.groups.changed.update(k for r in np.unique(g[ok]).tolist() if (k := self.groups.keys[r]))
            self.groups.release_empty(g[ok])
        for r in rows:
            key = self._keys[int(r)]
            if key is not None:
                self.changed.discard(key)
                self.removed.add(key)
            self._keys[int(r)] = None
        self._free.extend(int(r) for r in rows)
        self.evicted += n

    def allocate(self, keys: list[EntityKey]) -> np.ndarray:
        """Rows for new entities (evicting the least recently committed when full), zeroed, in their groups."""
        n = len(keys)
        short = n - len(self._free)
        if short > 0 and self.base.shape[0] < self.max_entities:
            self._grow(self.base.shape[0] + short)
        short = n - len(self._free)
        if short > 0:
            self._evict(short)
        rows = np.array([self._free.pop() for _ in range(n)], dtype=np.int64)
        for key, r in zip(keys, rows):
            r = int(r)
            self._rows[key] = r
            self._keys[r] = key
            self.tcode[r] = self._type_code(key[0])
            group = peer_group(key)
            self.grp[r] = self.groups.row((key[0], group)) if group else -1
            self.pop[r] = self.groups.row((key[0], POPULATION))
        self.base[rows] = 0.0
        self.adj[:, rows] = 0.0
        self.version[rows] = 0
        self.end[rows] = -np.inf
        self.prev_end[rows] = np.inf
        self.ew_move[rows] = self.ew_peer[rows] = self.ew_count[rows] = 0.0
        self.n_scored[rows] = 0
        return rows

    # ------------------------------------------------------------------ update

    def commit(self, keys: Sequence[EntityKey], means: np.ndarray, window_start: float,
               window_end: float) -> Commit:
        """One batch update: a new committed version for each entity of a closed window.

        ``means`` holds the mean interaction vector of each key (``[m, dim]``).
        Vectorized over the rows (in blocks of 8192 to bound temporaries).

        Raises:
            ValueError: more keys than ``max_entities``, or a shape mismatch.
        """
        keys = list(keys)
        m = len(keys)
        means = np.asarray(means)
        if means.shape != (m, self.dim):
            raise ValueError(f"means must have shape ({m}, {self.dim}), got {means.shape}")
        if m > self.max_entities:
            raise ValueError(f"{m} entities in one window exceed max_entities={self.max_entities}")
        rows = np.array([self._rows.get(k, -1) for k in keys], dtype=np.int64)
        for k in keys:
            if k in self._rows:
                self._rows.move_to_end(k)
        self.changed.update(keys)
        self.removed.difference_update(keys)
        new = rows < 0
        new_idx = np.flatnonzero(new)
        if new_idx.size:
            rows[new_idx] = self.allocate([keys[i] for i in new_idx])
        prior = self._priors(rows[new_idx], rows, means)
        ver = self.version[rows]
        rate = np.full(m, self.lr, dtype=np.float32)
        if self.warm_start:
            rate = np.maximum(rate, 1.0 / (ver + 2.0)).astype(np.float32)
        s = int(hour_slices([window_start], self.slices)[0])
        fresh_all = np.full(m, -1, dtype=np.int64)  # position in ``prior`` of each new entity
        fresh_all[new_idx] = np.arange(new_idx.size)
        # rows sorted by peer group: each group's members are contiguous, so the group
        # sums take a reduceat over each block without gathering
        order = np.lexsort((self.grp[rows], self.pop[rows]))
        move = np.zeros(m, dtype=np.float64)
        units = np.empty((m, self.dim), dtype=np.float32)  # new unit bases, in ``order``
        work = np.empty((5, min(m, _CHUNK), self.dim), dtype=np.float32)  # reused: no page faults per block
        groups, adj_s = self.groups, self.adj[s]
        for a in range(0, m, _CHUNK):
            o = order[a:a + _CHUNK]
            k = o.size
            r, lr, pos = rows[o], rate[o], fresh_all[o]
            e_old, e_new, a_old, mu, diff = (w[:k] for w in work)
            fresh = pos >= 0
            np.take(self.base, r, axis=0, out=e_old, mode="clip")  # "raise" would buffer
            e_old[fresh] = prior[pos[fresh]]
            mu[:] = means[o]
            batch_update(e_old, mu, lr, out=e_new)
            np.take(adj_s, r, axis=0, out=a_old, mode="clip")
            mu -= e_new  # the window's residual from the new base
            batch_update(a_old, mu, lr, out=mu)  # the new slice row, in place of the residual
            u_new = units[a:a + k]
            unit_rows_into(e_new, u_new)
            unit_rows_into(e_old, diff)
            np.subtract(u_new, diff, out=diff)
            move[o] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
            diff[fresh] = u_new[fresh]  # what the entity adds to its groups' sums
            for g in (self.grp[r], self.pop[r]):
                segment_add(groups.sum, g, diff)
                np.add.at(groups.count, g[(g >= 0) & fresh], 1)
            self.prev_base[r] = e_old
            self.prev_adj[r] = a_old
            self.prev_end[r] = np.where(fresh, np.inf, self.end[r])
            self.base[r] = e_new
            adj_s[r] = mu
        self.last_slice[rows] = s
        self.end[rows] = window_end
        self.version[rows] = ver + 1
        touched = np.concatenate([self.grp[rows][self.grp[rows] >= 0], self.pop[rows]])
        groups.publish(touched, window_end)
        rs = rows[order]
        peer_sorted, labels_sorted = groups.peer_distances(units, self.grp[rs], self.pop[rs], self.min_peers)
        peer = np.empty(m)
        peer[order] = peer_sorted
        labels = [""] * m
        for i, label in zip(order.tolist(), labels_sorted):
            labels[i] = label
        steady = ~new & ((1.0 / (ver + 2.0) <= self.lr) if self.warm_start else True)
        return Commit(window_start=window_start, window_end=window_end, keys=keys, rows=rows, versions=ver + 1,
                      new=new, steady=steady, move=move, peer=peer, peer_groups=labels)

    def _priors(self, new_rows: np.ndarray, rows: np.ndarray, means: np.ndarray) -> np.ndarray:
        """Unit priors of new entities from the groups as committed before this batch."""
        n = new_rows.size
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        cnt, done = self.groups.count, np.zeros(n, dtype=bool)
        for g in (self.grp[new_rows], self.pop[new_rows]):
            ok = ~done & (g >= 0) & (cnt[np.maximum(g, 0)] > 0)
            out[ok] = unit_rows(self.groups.sum[g[ok]])
            done |= ok
        if not done.all():  # the type's first window: the mean of its entities in this window
            codes = self.tcode[rows]
            for code in np.unique(self.tcode[new_rows[~done]]):
                sel = ~done & (self.tcode[new_rows] == code)
                out[sel] = unit_rows(unit_rows(means[codes == code]).mean(axis=0))
        return out

    # ------------------------------------------------------------------ serving

    def as_of(self, keys: Sequence[EntityKey], cutoffs: np.ndarray,
              slices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit embeddings as committed by windows ending at or before ``cutoffs`` (one per key).

        Returns ``(vectors [n, dim], basis [n], versions [n])``; ``basis`` is
        ``OWN`` (latest version), ``PREVIOUS`` (the one before), ``PRIOR`` (the
        peer group's published mean) or ``NONE`` (zero row). No state change.
        """
        n = len(keys)
        cut = np.asarray(cutoffs, dtype=np.float64)
        sl = np.asarray(slices, dtype=np.int64)
        rows = np.array([self._rows.get(k, -1) for k in keys], dtype=np.int64)
        r = np.maximum(rows, 0)
        has = rows >= 0
        ver = np.where(has, self.version[r], 0)
        own = has & (ver >= 1) & (self.end[r] <= cut)
        prev = has & ~own & (self.prev_end[r] <= cut)
        out = np.zeros((n, self.dim), dtype=np.float32)
        basis = np.zeros(n, dtype=np.int64)
        versions = np.zeros(n, dtype=np.int64)
        w = np.float32(self.slice_weight)
        if own.any():
            ro = r[own]
            out[own] = self.base[ro] + w * self.adj[sl[own], ro]
            basis[own], versions[own] = OWN, ver[own]
        if prev.any():
            rp, sp = r[prev], sl[prev]
            row_adj = np.where((self.last_slice[rp] == sp)[:, None], self.prev_adj[rp], self.adj[sp, rp])
            out[prev] = self.prev_base[rp] + w * row_adj
            basis[prev], versions[prev] = PREVIOUS, ver[prev] - 1
        rest = np.flatnonzero(~own & ~prev)
        if rest.size:
            spec = np.array([self._group_row(keys[i], specific=True) for i in rest], dtype=np.int64)
            pops = np.array([self._group_row(keys[i], specific=False) for i in rest], dtype=np.int64)
            vec, ok = self.groups.as_of(spec, cut[rest])
            vec_p, ok_p = self.groups.as_of(pops, cut[rest])
            use_p = ~ok & ok_p
            vec[use_p] = vec_p[use_p]
            out[rest] = vec
            basis[rest] = np.where(ok | ok_p, PRIOR, NONE)
        return unit_rows(out), basis, versions

    def _group_row(self, key: EntityKey, *, specific: bool) -> int:
        group = peer_group(key) if specific else POPULATION
        return -1 if group is None else self.groups.rows.get((key[0], group), -1)

    def current(self, key: EntityKey, at: float | None = None) -> EntityView | None:
        """The latest committed embedding of ``key`` (at the slice of ``at``, else of its last window).

        An entity without a committed version gets its peer group's current prior
        (``version`` 0); ``None`` when there is none either.
        """
        r = self._rows.get(key)
        if r is None or self.version[r] < 1:
            rows = [self._group_row(key, specific=True), self._group_row(key, specific=False)]
            for g in rows:
                if g >= 0 and self.groups.count[g] > 0:
                    return EntityView(key, unit_rows(self.groups.sum[g]), 0, None, "prior")
            return None
        s = int(hour_slices([at], self.slices)[0]) if at is not None else int(self.last_slice[r])
        vec = unit_rows(self.base[r] + np.float32(self.slice_weight) * self.adj[s, r])
        return EntityView(key, vec, int(self.version[r]), float(self.end[r]), "own")

    def nearest(self, vector: np.ndarray, kind: str, k: int = 3,
                exclude: EntityKey | None = None) -> list[tuple[EntityKey, float, int]]:
        """The ``k`` committed entities of type ``kind`` whose unit base is closest to ``vector``:
        ``(key, cosine similarity, version)``, most similar first."""
        if kind not in self.types:
            return []
        live = np.array([r for key, r in self._rows.items() if key != exclude and key[0] == kind], dtype=np.int64)
        live = live[self.version[live] >= 1] if live.size else live
        if live.size == 0:
            return []
        sims = unit_rows(self.base[live]) @ unit_rows(np.asarray(vector)[None])[0]
        top = np.argsort(-sims, kind="stable")[:k]
        return [(self._keys[int(live[i])], float(sims[i]), int(self.version[live[i]]))  # type: ignore[misc]
                for i in top]

    def memory_bytes(self) -> int:
        """Bytes held by the row and group arrays."""
        arrays = [getattr(self, name) for name in _ROW_ARRAYS]
        g = self.groups
        arrays += [g.sum, g.count, g.cur, g.prev, g.cur_end, g.prev_end]
        return int(sum(a.nbytes for a in arrays))

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """``{"meta": plain data, "arrays": numpy arrays}``, rows compacted in LRU order (never pickle)."""
        rows = np.array(list(self._rows.values()), dtype=np.int64)
        g_keys = [k for k in self.groups.keys if k is not None]
        g_rows = np.array([self.groups.rows[k] for k in g_keys], dtype=np.int64)
        remap = np.full(max(self.groups.count.size, 1), -1, dtype=np.int64)
        remap[g_rows] = np.arange(g_rows.size)
        arrays = {name: np.take(getattr(self, name), rows, axis=_ROW_AXIS.get(name, 0)) for name in _ROW_ARRAYS}
        arrays["grp"] = np.where(arrays["grp"] >= 0, remap[np.maximum(arrays["grp"], 0)], -1)
        arrays["pop"] = remap[arrays["pop"]]
        g = self.groups
        for name in ("sum", "count", "cur", "prev", "cur_end", "prev_end"):
            arrays[f"group.{name}"] = getattr(g, name)[g_rows].copy()
        meta = {"dim": self.dim, "slices": self.slices, "lr": self.lr, "slice_weight": self.slice_weight,
                "types": list(self.types), "evicted": self.evicted, "keys": [list(k) for k in self._rows],
                "group_keys": [list(k) for k in g_keys]}
        return {"meta": meta, "arrays": arrays}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot` taken with the same dim and slices (more keys than
        ``max_entities``: the least recently committed are dropped)."""
        meta, arrays = state["meta"], state["arrays"]
        if int(meta["dim"]) != self.dim or int(meta["slices"]) != self.slices:
            raise ValueError(f"entity snapshot has dim {meta['dim']} and {meta['slices']} slices, "
                             f"expected {self.dim} and {self.slices}")
        keys = [(str(k[0]), str(k[1])) for k in meta["keys"]]
        n = len(keys)
        self._alloc_arrays(n)
        for name in _ROW_ARRAYS:
            getattr(self, name)[:] = np.asarray(arrays[name], dtype=getattr(self, name).dtype)
        self._rows = OrderedDict((k, i) for i, k in enumerate(keys))
        self._keys = list(keys)
        self._free = []
        if n == 0:
            self._grow(1)
        self.types = [str(t) for t in meta["types"]]
        self.evicted = int(meta["evicted"])
        g = self.groups = PeerGroups(self.dim)
        for key in meta["group_keys"]:
            g.row((str(key[0]), str(key[1])))
        for name in ("sum", "count", "cur", "prev", "cur_end", "prev_end"):
            getattr(g, name)[: len(meta["group_keys"])] = np.asarray(arrays[f"group.{name}"])
        if n > self.max_entities:
            self._evict(n - self.max_entities)
