"""Dynamic entity embeddings over a stream: windows → batch updates → drift, and entity scores of events. Pure.

:class:`EntityTracker` composes :class:`detection.entity_windows.TumblingWindows`,
:class:`detection.entities.EntityTable` and :class:`detection.entity_drift.DriftScorer`.
For each batch of events (in stream order), :meth:`EntityTracker.process`

1. moves the watermark event by event and, whenever it passes a window's end +
   lateness, closes that window: one vectorized batch update of its entities,
   their drift scores (reported as :class:`DriftFinding` from ``alert_at``);
2. scores each event against its entities' embeddings as committed by windows
   ending at or before ``window_start(t) − lateness`` (no temporal leakage, and
   independent of the arrival order within the lateness): the cosine distance
   of the event vector to each entity's effective embedding, calibrated 0–100
   per entity type (own embeddings and peer priors calibrated apart, the prior
   being what a new entity is compared with); the event's score is the max over
   its entities (an event usual for the population but not for this user counts);
3. adds the event to its window, or drops it when its window has closed.

Segments of a batch between two window closes are processed vectorized.
``flush()`` closes the remaining windows at the end of input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detection.calibration import TailCalibrator
from detection.entities import (
    BASIS_NAMES,
    NONE,
    OWN,
    PREVIOUS,
    Commit,
    EntityTable,
    EntityView,
    hour_slices,
)
from detection.entity_drift import DriftFinding, DriftScorer, DriftScores
from detection.entity_groups import (
    DEFAULT_TYPES,
    entity_keys,
    unit_rows,
    validate_types,
)
from detection.entity_windows import ClosedWindow, EntityKey, TumblingWindows
from detection.explain import component_shares
from detection.times import event_time

__all__ = ["EntityScores", "EntityTracker", "WindowReport"]

_SEQ_CHUNK = 1024  # calibrator prequential blocks (score_sequence is quadratic in its block)


@dataclass
class WindowReport:
    """One closed window: the committed versions, their drift and the drifts to alert on."""

    commit: Commit
    counts: np.ndarray  # interactions per entity
    drift: DriftScores
    findings: list[DriftFinding]


@dataclass
class EntityScores:
    """Result of :meth:`EntityTracker.process` for a batch of ``n`` events."""

    score: np.ndarray  # [n] 0–100, max over the event's entities (0: no entity or nothing committed)
    raw: np.ndarray  # [n] cosine distance behind ``score`` (nan: none)
    entity: list[EntityKey | None]  # the entity that gave ``score``
    basis: list[str]  # "own", "previous", "prior" or "none"
    version: np.ndarray  # [n] version of that entity's embedding used (0: the peer prior or none)
    late: np.ndarray  # [n] bool: too late for its window, left out of the update
    reference: np.ndarray  # [n, dim] the embedding behind ``score`` (zeros: none), for explanations
    windows: list[WindowReport] = field(default_factory=list)


class EntityTracker:
    """Entity embeddings, drift and entity scores for a stream; see the module docstring.

    Args:
        dim: event vector width.
        types: entity types (event fields), default ``user``, ``host``, ``src_ip``.
        window_s, lateness_s: tumbling windows on event time (60–900 s; lateness ≤ window).
        lr, slices, slice_weight, max_entities, warm_start: see :class:`EntityTable`.
        parts: hybrid component name → slice of the event vector (for "what moved"); default one block.
        event_scale: cosine distance at which an entity score can reach 100.
        decades: calibrator tail decades.
        drift: the drift scorer (default :class:`DriftScorer()`).
        neighbours: nearest peers listed before and after a drift.
        max_window_keys: most entities per window (default ``max_entities``).
    """

    def __init__(self, dim: int, *, types: Sequence[str] = DEFAULT_TYPES, window_s: float = 300.0,
                 lateness_s: float = 60.0, lr: float = 0.2, slices: int = 4, slice_weight: float = 0.1,
                 max_entities: int = 20_000, warm_start: bool = True, parts: Mapping[str, slice] | None = None,
                 event_scale: float = 0.1, decades: float = 2.0, drift: DriftScorer | None = None,
                 neighbours: int = 3, max_window_keys: int | None = None) -> None:
        self.types = validate_types(types)
        if event_scale <= 0 or decades <= 0 or neighbours < 0:
            raise ValueError(f"need event_scale > 0, decades > 0, neighbours >= 0; "
                             f"got {event_scale}, {decades}, {neighbours}")
        keys_cap = max_entities if max_window_keys is None else max_window_keys
        if not 1 <= keys_cap <= max_entities:
            raise ValueError(f"max_window_keys must be in [1, max_entities={max_entities}], got {max_window_keys}")
        self.dim = dim
        self.windows = TumblingWindows(dim, window_s=window_s, lateness_s=lateness_s, max_keys=keys_cap)
        self.table = EntityTable(dim, lr=lr, slices=slices, slice_weight=slice_weight,
                                 max_entities=max_entities, warm_start=warm_start)
        self.drift = drift if drift is not None else DriftScorer()
        self.parts = dict(parts) if parts is not None else {"all": slice(0, dim)}
        bad = [name for name, sl in self.parts.items() if not 0 <= (sl.start or 0) < (sl.stop or 0) <= dim]
        if bad:
            raise ValueError(f"parts {bad} are not slices inside the {dim}-d vector")
        self.event_scale, self.decades, self.neighbours = float(event_scale), float(decades), int(neighbours)
        self._event_cals: dict[str, TailCalibrator] = {}
        #: called with each window's report right after its commit (before later windows of the same
        #: batch commit): what must read the committed embeddings at their version reads them there
        self.on_commit: Callable[[WindowReport], None] | None = None

    # ------------------------------------------------------------------ stream

    def process(self, events: Sequence[Mapping[str, Any]], vectors: np.ndarray) -> EntityScores:
        """Score a batch of decoded events (stream order), then fold it in; see the module docstring.

        Raises:
            ValueError: ``vectors`` is not ``[len(events), dim]``.
        """
        n = len(events)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (n, self.dim):
            raise ValueError(f"vectors must have shape ({n}, {self.dim}), got {vectors.shape}")
        out = EntityScores(score=np.zeros(n), raw=np.full(n, np.nan), entity=[None] * n, basis=["none"] * n,
                           version=np.zeros(n, dtype=np.int64), late=np.zeros(n, dtype=bool),
                           reference=np.zeros((n, self.dim), dtype=np.float32))
        if n == 0:
            return out
        times = np.array([event_time(ev["time"]) for ev in events], dtype=np.float64)
        keys = [entity_keys(ev, self.types) for ev in events]
        ids = [ev.get("event_id") for ev in events]
        w, late_s = self.windows.window_s, self.windows.lateness_s
        wm = np.maximum.accumulate(np.maximum(times, self.windows.watermark))
        upto = np.floor((wm - late_s) / w) * w
        cuts = np.flatnonzero(np.diff(upto) != 0) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, n]):
            a, b = int(a), int(b)
            out.windows += [self._close(cw) for cw in self.windows.advance(float(wm[b - 1]))]
            self._score(times, keys, vectors, a, b, out)
            joined = self.windows.add(times[a:b], keys[a:b], vectors[a:b], ids[a:b])
            out.late[a:b] = ~joined & np.array([bool(k) for k in keys[a:b]])
        return out

    def flush(self) -> list[WindowReport]:
        """Close every open window (end of input)."""
        return [self._close(cw) for cw in self.windows.flush()]

    def _score(self, times: np.ndarray, keys: list[list[EntityKey]], vectors: np.ndarray, a: int, b: int,
               out: EntityScores) -> None:
        ev = np.array([i for i in range(a, b) for _ in keys[i]], dtype=np.int64)
        if ev.size == 0:
            return
        pair_keys = [k for i in range(a, b) for k in keys[i]]
        w = self.windows.window_s
        cut = np.floor(times[ev] / w) * w - self.windows.lateness_s
        ref, basis, versions = self.table.as_of(pair_keys, cut, hour_slices(times[ev], self.table.slices))
        v = unit_rows(vectors[ev])
        ok = (basis != NONE) & (np.linalg.norm(v, axis=1) > 0)
        raw = np.where(ok, 1.0 - np.einsum("ij,ij->i", v, ref), np.nan)
        score = np.zeros(ev.size)
        groups: dict[str, list[int]] = {}
        for j in np.flatnonzero(ok):
            own = basis[j] in (OWN, PREVIOUS)
            groups.setdefault(f"{pair_keys[j][0]}/{'own' if own else 'prior'}", []).append(int(j))
        for name, idx_list in groups.items():
            cal = self._event_cals.get(name)
            if cal is None:
                cal = self._event_cals[name] = TailCalibrator(scale=self.event_scale, decades=self.decades)
            idx = np.asarray(idx_list, dtype=np.int64)
            for c in range(0, idx.size, _SEQ_CHUNK):
                part = idx[c:c + _SEQ_CHUNK]
                score[part] = cal.score_sequence(raw[part])
                cal.update(raw[part])
        for j in range(ev.size):  # max over the event's entities (few per event)
            i = int(ev[j])
            if ok[j] and (out.entity[i] is None or score[j] > out.score[i]):
                out.score[i], out.raw[i], out.entity[i] = float(score[j]), float(raw[j]), pair_keys[j]
                out.basis[i], out.version[i] = BASIS_NAMES[int(basis[j])], int(versions[j])
                out.reference[i] = ref[j]

    def _close(self, cw: ClosedWindow) -> WindowReport:
        commit = self.table.commit(cw.keys, cw.means(), cw.start, cw.end)
        t, r = self.table, commit.rows
        kinds = [k[0] for k in cw.keys]
        ds = self.drift.score(kinds, commit.move, commit.peer, t.ew_move[r], t.ew_peer[r], t.n_scored[r],
                              commit.steady, cw.counts, t.ew_count[r])
        self.drift.learn(kinds, commit.move, commit.peer, ds, commit.steady)
        st = commit.steady
        rs = r[st]
        history = t.n_scored[r].copy()
        t.ew_move[rs] = self.drift.smooth(t.ew_move[rs], commit.move[st], t.n_scored[rs])
        t.ew_peer[rs] = self.drift.smooth(t.ew_peer[rs], commit.peer[st], t.n_scored[rs])
        t.ew_count[rs] = self.drift.smooth(t.ew_count[rs], cw.counts[st], t.n_scored[rs])
        t.n_scored[rs] += 1
        findings = [self._finding(cw, commit, ds, int(i), int(history[i]))
                    for i in np.flatnonzero(ds.score >= self.drift.alert_at)]
        report = WindowReport(commit=commit, counts=cw.counts, drift=ds, findings=findings)
        if self.on_commit is not None:
            self.on_commit(report)
        return report

    def _finding(self, cw: ClosedWindow, commit: Commit, ds: DriftScores, i: int, history: int) -> DriftFinding:
        key, row = commit.keys[i], int(commit.rows[i])
        old = unit_rows(self.table.prev_base[row])
        new = unit_rows(self.table.base[row])
        peer = float(commit.peer[i])
        return DriftFinding(
            key=key, version=int(commit.versions[i]), window_start=cw.start, window_end=cw.end,
            score=float(ds.score[i]), move=float(commit.move[i]), move_ratio=float(ds.move_ratio[i]),
            peer=peer if np.isfinite(peer) else None,
            peer_ratio=float(ds.peer_ratio[i]) if np.isfinite(ds.peer_ratio[i]) else None,
            peer_group=commit.peer_groups[i], history=history, warmup=bool(ds.warmup[i]),
            components=component_shares(new, old[None, :], self.parts),
            before=self.table.nearest(old, key[0], self.neighbours, exclude=key),
            after=self.table.nearest(new, key[0], self.neighbours, exclude=key),
            event_ids=list(cw.event_ids[i]))

    # ------------------------------------------------------------------ serving and state

    def current(self, key: EntityKey, at: float | None = None) -> EntityView | None:
        """The entity's last committed embedding (see :meth:`EntityTable.current`)."""
        return self.table.current(key, at)

    def scored(self, kind: str, own: bool = True) -> float:
        """Events of type ``kind`` scored so far against own embeddings (``own``) or peer priors."""
        cal = self._event_cals.get(f"{kind}/{'own' if own else 'prior'}")
        return 0.0 if cal is None else float(cal.count)

    def stats(self) -> dict[str, Any]:
        """Counters for metrics: entities, evictions, open accumulators, dropped and overflowing events."""
        return {"entities": len(self.table), "evicted": self.table.evicted, "pending": self.windows.pending(),
                "dropped_late": dict(self.windows.dropped), "overflow": dict(self.windows.overflow),
                "watermark": self.windows.watermark if np.isfinite(self.windows.watermark) else None,
                "memory_bytes": self.table.memory_bytes()}

    def snapshot(self) -> dict[str, Any]:
        """``{"meta": plain data, "arrays": numpy arrays}`` (arrays prefixed ``windows.`` / ``table.``)."""
        win, tab = self.windows.snapshot(), self.table.snapshot()
        arrays = {f"windows.{k}": v for k, v in win["arrays"].items()}
        arrays.update({f"table.{k}": v for k, v in tab["arrays"].items()})
        meta = {"types": list(self.types), "windows": win["meta"], "table": tab["meta"],
                "drift": self.drift.snapshot(),
                "event_cals": {k: cal.snapshot() for k, cal in self._event_cals.items()}}
        return {"meta": meta, "arrays": arrays}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot` taken with the same dim, window length and slices."""
        meta, arrays = state["meta"], state["arrays"]
        if tuple(meta["types"]) != self.types:
            raise ValueError(f"entity snapshot tracks types {meta['types']}, this tracker {list(self.types)}")

        def sub(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

        self.windows.restore({"meta": meta["windows"], "arrays": sub("windows.")})
        self.table.restore({"meta": meta["table"], "arrays": sub("table.")})
        self.drift.restore(meta["drift"])
        self._event_cals = {}
        for name, cal_state in meta["event_cals"].items():
            cal = self._event_cals[str(name)] = TailCalibrator(scale=self.event_scale, decades=self.decades)
            cal.restore(cal_state)
