"""Entity keys and peer groups: which entities an event names, and whom an entity is compared with. Pure.

An entity is ``(type, id)`` where ``type`` is an event field (:data:`ENTITY_FIELDS`).
Its peer groups are the type's population (``(type, "*")``) and, for address
types, its /24 (IPv4) or /64 (IPv6) network (:func:`peer_group`). A group holds
the sum of its members' unit base embeddings, so its mean direction (the cold
start prior of a new member, the reference of peer distances) costs O(dim) to
keep current, and the means it published at its last two commits, so that an
event can be compared with the prior as it stood before its own window.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detection.vocabulary import DEFAULT_ENTITY_TYPES, ENTITY_FIELDS, validate_types

__all__ = ["DEFAULT_TYPES", "ENTITY_FIELDS", "IP_TYPES", "POPULATION", "EntityKey", "PeerGroups", "entity_keys", "peer_group",
           "scatter_add", "segment_add", "unit_rows", "unit_rows_into", "validate_types"]

#: (ENTITY_FIELDS and validate_types live in the numpy-free detection/vocabulary.py; re-exported here)
DEFAULT_TYPES: tuple[str, ...] = DEFAULT_ENTITY_TYPES
IP_TYPES = frozenset({"src_ip", "dst_ip"})
POPULATION = "*"
#: An entity: ``(type, id)``, e.g. ``("src_ip", "10.1.2.3")``.
EntityKey = tuple[str, str]


def entity_keys(event: Mapping[str, Any], types: Sequence[str] = DEFAULT_TYPES) -> list[EntityKey]:
    """The ``(type, id)`` entities of a decoded event, in ``types`` order.

    Empty values are skipped; addresses are normalized (``ipaddress`` compressed
    form) and skipped when they do not parse.
    """
    out: list[EntityKey] = []
    for kind in types:
        value = event.get(kind)
        if value is None or isinstance(value, bool):
            continue
        text = str(value).strip()
        if not text:
            continue
        if kind in IP_TYPES:
            try:
                text = ipaddress.ip_address(text).compressed
            except ValueError:
                continue
        out.append((kind, text))
    return out


def peer_group(key: EntityKey) -> str | None:
    """The specific peer group of an entity: ``a.b.c.0/24`` or ``x:…::/64`` for addresses, else ``None``."""
    kind, ident = key
    if kind not in IP_TYPES:
        return None
    parts = ident.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return f"{int(parts[0])}.{int(parts[1])}.{int(parts[2])}.0/24"  # fast path, as ipaddress would say
    try:
        addr = ipaddress.ip_address(ident)
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    n2 = np.einsum("...i,...i->...", x, x)
    inv = np.zeros_like(n2)
    np.divide(1.0, np.sqrt(n2), out=inv, where=n2 > 1e-24)
    return x * inv[..., None]


def unit_rows_into(x: np.ndarray, out: np.ndarray) -> None:
    """``out ← x`` with rows scaled to unit norm (zero rows stay zero); ``x`` and ``out`` 2-d float32."""
    n2 = np.einsum("ij,ij->i", x, x)
    inv = np.zeros_like(n2)
    np.divide(1.0, np.sqrt(n2), out=inv, where=n2 > 1e-24)
    np.multiply(x, inv[:, None], out=out)


def scatter_add(target: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
    """``target[idx] += vals`` with repeated indices summed (sort + reduceat)."""
    if idx.size == 0:
        return
    order = np.argsort(idx, kind="stable")
    segment_add(target, idx[order], vals[order])


def segment_add(target: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
    """``target[idx] += vals`` for ``idx`` whose equal values are contiguous (sorted); ``idx < 0`` is skipped.

    Few blocks: one contiguous sum per block; many: one reduceat. No gather of ``vals``.
    """
    if idx.size == 0:
        return
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    heads = idx[starts]
    if starts.size <= 512:
        ends = np.r_[starts[1:], idx.size]
        for a, b, h in zip(starts.tolist(), ends.tolist(), heads.tolist()):
            if h >= 0:
                target[h] += vals[a:b].sum(axis=0)
        return
    keep = heads >= 0
    target[heads[keep]] += np.add.reduceat(vals, starts, axis=0)[keep]


class PeerGroups:
    """Peer groups keyed ``(type, group)``: sums and counts of the members' unit bases and the mean
    directions published at the last two commits (for as-of reads). Rows are recycled when a group empties."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rows: dict[tuple[str, str], int] = {}
        self.keys: list[tuple[str, str] | None] = []
        self.free: list[int] = []
        self.changed: set[tuple[str, str]] = set()  # groups published or emptied since the last take
        self.removed: set[tuple[str, str]] = set()
        self.sum = np.zeros((0, dim), dtype=np.float64)
        self.count = np.zeros(0, dtype=np.int64)
        self.cur = np.zeros((0, dim), dtype=np.float32)
        self.prev = np.zeros((0, dim), dtype=np.float32)
        self.cur_end = np.zeros(0, dtype=np.float64)
        self.prev_end = np.zeros(0, dtype=np.float64)
        self._grow()  # never empty: gathers at row 0 stay in bounds

    def _grow(self) -> None:
        old = self.count.size
        grow = max(8, old)
        self.sum = np.concatenate([self.sum, np.zeros((grow, self.dim))])
        self.count = np.concatenate([self.count, np.zeros(grow, dtype=np.int64)])
        self.cur = np.concatenate([self.cur, np.zeros((grow, self.dim), dtype=np.float32)])
        self.prev = np.concatenate([self.prev, np.zeros((grow, self.dim), dtype=np.float32)])
        self.cur_end = np.concatenate([self.cur_end, np.full(grow, np.inf)])
        self.prev_end = np.concatenate([self.prev_end, np.full(grow, np.inf)])
        self.keys.extend([None] * grow)
        self.free.extend(range(old + grow - 1, old - 1, -1))

    def row(self, key: tuple[str, str]) -> int:
        """The row of group ``key``, created (empty) when new."""
        r = self.rows.get(key)
        if r is not None:
            return r
        if not self.free:
            self._grow()
        r = self.free.pop()
        self.rows[key] = r
        self.keys[r] = key
        self.sum[r] = 0.0
        self.count[r] = 0
        self.cur_end[r] = self.prev_end[r] = np.inf
        return r

    def release_empty(self, rows: np.ndarray) -> None:
        for r in np.unique(rows):
            r = int(r)
            key = self.keys[r]
            if r >= 0 and key is not None and self.count[r] <= 0:
                del self.rows[key]
                self.keys[r] = None
                self.changed.discard(key)
                self.removed.add(key)
                self.free.append(r)

    def publish(self, rows: np.ndarray, end: float) -> None:
        """New version of each touched group's mean direction, the old one kept as previous."""
        rows = np.unique(rows)
        self.changed.update(k for r in rows.tolist() if (k := self.keys[r]) is not None)
        self.removed.difference_update(self.changed)
        self.prev[rows] = self.cur[rows]
        self.prev_end[rows] = self.cur_end[rows]
        self.cur[rows] = unit_rows(self.sum[rows])
        self.cur_end[rows] = end

    def as_of(self, rows: np.ndarray, cutoffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Newest published mean with end ≤ cutoff per row (``rows`` −1: none) and whether there was one."""
        r = np.maximum(rows, 0)
        ok_cur = (rows >= 0) & (self.cur_end[r] <= cutoffs)
        ok_prev = (rows >= 0) & ~ok_cur & (self.prev_end[r] <= cutoffs)
        out = np.zeros((rows.size, self.dim), dtype=np.float32)
        out[ok_cur] = self.cur[r[ok_cur]]
        out[ok_prev] = self.prev[r[ok_prev]]
        return out, ok_cur | ok_prev

    def peer_distances(self, units: np.ndarray, spec: np.ndarray, pop: np.ndarray,
                       min_peers: int) -> tuple[np.ndarray, list[str]]:
        """Chord from each unit base (``units``, rows of members) to the leave-one-out mean of its peer group.

        The peer group is the member's specific group (``spec``, −1: none) when it
        has at least ``min_peers`` other members, else its population (``pop``);
        nan without any other member. With ``S`` the group's sum (the member
        included) and ``c = S/‖S‖`` its published mean: ``u·S = ‖S‖·(u·c)`` and
        ``‖S − u‖² = ‖S‖² − 2u·S + 1``, so one gathered float32 row per member suffices.
        Returns the distances and the ``type/group`` label each was measured against.
        """
        spec_ok = (spec >= 0) & (self.count[np.maximum(spec, 0)] - 1 >= min_peers)
        g = np.where(spec_ok, spec, pop)
        valid = self.count[g] - 1 >= 1
        used = np.unique(g)
        norm = np.zeros(self.count.size, dtype=np.float64)
        norm[used] = np.sqrt(np.einsum("ij,ij->i", self.sum[used], self.sum[used]))
        dots = np.zeros(g.size, dtype=np.float64)
        for a in range(0, g.size, 8192):
            dots[a:a + 8192] = np.einsum("ij,ij->i", units[a:a + 8192], self.cur[g[a:a + 8192]])
        dots *= norm[g]
        rest = np.sqrt(np.maximum(norm[g] ** 2 - 2.0 * dots + 1.0, 1e-12))  # ‖S − u‖
        cos = np.clip((dots - 1.0) / rest, -1.0, 1.0)
        peer = np.where(valid, np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0)), np.nan)
        labels = {int(r): "/".join(self.keys[int(r)] or ("?", "?")) for r in used}
        return peer, [labels[int(r)] for r in g]
