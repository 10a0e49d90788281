"""Benchmark: memory of the session stage over a long stream (issue #4).

    secstream bench sessions-memory [--events 1000000] [--sessions 100000] [--rate 2]
        [--every 100000] [--mode replay|sessions] [--data PATH] [--seed 7] [--json]

Stream. Real HDFS events (``hdfs_events_2percent.parquet``: 222k events in 11.5k
blocks) re-keyed into ``--sessions`` fresh sessions with exactly ``--events``
events in all. The sample's blocks, cut where idle for more than the session gap,
give 26.4k real gap-free sessions (1 to 36 events, mean 8.4); each synthetic
session replays one of them, drawn with weights ``∝ exp(λ·length)`` so the mean is
events/sessions (then a few are swapped for longer/shorter ones until the total
is exact): its messages, fields and inter-event times, with a fresh block id
(``blk_9…``, in the messages too) and a start at ``(i + u) / rate`` seconds of
event time (steady arrivals, jitter ``u``). Sessions overlap; each is one session
of the sessionizer, closed by its inactivity gap; every key is new, the worst
case for the structures that remember keys. The merged stream is chronological
and generated lazily (a heap of the events of the sessions in progress), so the
generator holds O(open sessions) events, not the stream.

Paths. ``--mode replay`` (default) runs :func:`streams.cli.replay.replay_records`, the
path of ``secstream replay``: ``Pipeline`` (decode, hybrid encoder, event kNN +
rare values) and the session stage, with no vector store: the store keeps every
event by design (durability, hunting), its growth is the store engine's and not
the stream state's. ``--mode sessions`` skips the event detector: the real
encoder's vectors feed the session stage directly. Both build the sessionizer
and the scorer with :func:`streams.stages.factory.build_sessions` defaults (replay wraps
them in its session stage: no store; its rolling early scores start at 100 events,
longer than any HDFS session).

Measured every ``--every`` events (after the batches before that mark are fully
processed, sessions closed and scored): VmRSS from ``/proc/self/status`` after a
``gc.collect()`` (no tracemalloc), open and closed sessions, the open-session
bound the gap allows (sessions whose planned span touches ``[watermark − gap,
watermark]``), and the size of each bounded structure against its cap.

Verdict (ratios of one run, never absolute times): ``late`` = RSS growth from the
20% mark to the end of the stream, ``linear`` = the growth over the first 20%
scaled to the rest (what a state growing with the stream would add).
``bounded`` when ``late <= 0.25 · linear`` (or under 5% of the RSS at the 20%
mark); otherwise the structures that still grew are named: with a cap, the
memory is bounded by that cap but not flat yet; without one, it is unbounded.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.memory import peak_rss_mib, rss_mib

__all__ = ["Plan", "Probe", "Segments", "SessionStream", "load_segments", "main", "marked", "plan_sessions",
           "run_session_stage", "verdict"]

_HDFS = Path(__file__).resolve().parents[2] / "shared" / "data" / "hdfs" / "hdfs_events_2percent.parquet"
#: SessionScorer.learn keeps at most this many template texts (a literal there)
TEXTS_CAP = 100_000
EARLY = 0.2  # the verdict's early segment: the first 20% of the stream
#: a batch of events → (the events as the sessionizer gets them, vectors, template ids, template texts)
Vectorize = Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any]], np.ndarray, list[str], list[str]]]


@dataclass
class Segments:
    """Source sessions: the gap-free runs of each HDFS block (adapter JSON records, time offsets in s)."""

    names: list[str]  # the block id, as it appears in the messages
    values: list[list[bytes]]
    offsets: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(v) for v in self.values], dtype=np.int64)


def load_segments(path: Path, gap_s: float) -> Segments:
    """Each block of the parquet sample, in time order, cut where it is idle for more than ``gap_s``."""
    from detection.times import event_time
    from streams.adapters import read_records

    by_block: dict[str, list[tuple[float, bytes]]] = {}
    for rec in read_records(path, "parquet"):
        if rec.value is None:
            continue
        doc = json.loads(rec.value)
        sid = doc.get("session_id")
        if sid:
            by_block.setdefault(str(sid), []).append((event_time(doc["time"]), rec.value))
    out = Segments([], [], [])
    for name, rows in by_block.items():
        rows.sort(key=lambda r: r[0])
        t = np.array([r[0] for r in rows], dtype=np.float64)
        cuts = np.flatnonzero(np.diff(t) > gap_s) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, t.size]):
            out.names.append(name)
            out.values.append([r[1] for r in rows[a:b]])
            out.offsets.append(t[a:b] - t[a])
    if not out.names:
        raise ValueError(f"{path}: no events with a session id")
    return out


@dataclass
class Plan:
    """One row per synthetic session: first and last event time (epoch ms), events, source segment."""

    start_ms: np.ndarray
    end_ms: np.ndarray
    length: np.ndarray
    segment: np.ndarray

    def open_bound(self, watermark: float, gap_s: float) -> int:
        """Most sessions that can be open after a batch whose watermark is ``watermark`` (epoch s):
        those started by then whose last event is at most ``gap_s`` (+1 ms for rounding) before it."""
        w = round(watermark * 1000.0)
        return int(np.count_nonzero((self.start_ms <= w) & (self.end_ms >= w - round(gap_s * 1000.0) - 1)))


def _tilt(lengths: np.ndarray, mean: float) -> np.ndarray:
    """Sampling weights ``∝ exp(λ·length)`` whose mean length is ``mean`` (bisection on λ)."""
    x = lengths.astype(np.float64)
    lo, hi = -10.0, 10.0
    for _ in range(100):
        lam = (lo + hi) / 2.0
        w = np.exp(lam * (x - (x.max() if lam > 0 else x.min())))
        if float((w * x).sum() / w.sum()) < mean:
            lo = lam
        else:
            hi = lam
    return w / w.sum()


def plan_sessions(segments: Segments, n_events: int, n_sessions: int, *, rate: float, seed: int = 7,
                  t0: float = 1_226_262_930.0) -> Plan:
    """Start times, source segments and lengths (summing exactly to ``n_events``) of ``n_sessions`` sessions."""
    sizes = segments.lengths
    mean = n_events / max(n_sessions, 1)
    if n_sessions < 1 or rate <= 0 or not sizes.min() <= mean <= sizes.max():
        raise ValueError(f"need sessions >= 1, rate > 0 and events/sessions within the sample's session "
                         f"lengths [{sizes.min()}, {sizes.max()}], got {mean:.2f}")
    rng = np.random.default_rng(seed)
    seg = rng.choice(sizes.size, size=n_sessions, p=_tilt(sizes, mean))
    by_len = {int(n): np.flatnonzero(sizes == n) for n in np.unique(sizes)}
    have = np.array(sorted(by_len))
    short = n_events - int(sizes[seg].sum())
    for _ in range(100 * n_sessions):  # swap sessions for longer/shorter segments until the total is exact
        if short == 0:
            break
        i = int(rng.integers(n_sessions))
        cur = int(sizes[seg[i]])
        want = cur + short
        step = have[(have > cur) & (have <= want)] if short > 0 else have[(have < cur) & (have >= want)]
        if step.size:
            new = int(step[np.argmin(np.abs(step - want))])
            seg[i] = rng.choice(by_len[new])
            short -= new - cur
    if short:
        raise ValueError(f"could not make {n_sessions} sessions of exactly {n_events} events")
    start_ms = np.round((t0 + (np.arange(n_sessions) + rng.random(n_sessions)) / rate) * 1000.0).astype(np.int64)
    end_ms = start_ms + np.array([round(float(segments.offsets[int(j)][-1]) * 1000.0) for j in seg], dtype=np.int64)
    return Plan(start_ms, end_ms, sizes[seg], seg.astype(np.int64))


class SessionStream:
    """The merged, chronological event stream of a :class:`Plan` (event dicts, generated lazily)."""

    def __init__(self, segments: Segments, plan: Plan) -> None:
        self.segments, self.plan = segments, plan
        self._heap: list[tuple[int, int, int]] = []  # (time ms, session, event index)
        self.started = 0  # sessions whose first event was handed out

    @property
    def pending(self) -> int:
        """Events generated but not yet handed out (sessions in progress)."""
        return len(self._heap)

    @staticmethod
    def session_id(i: int) -> str:
        return f"blk_9{i:012d}"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        plan, heap = self.plan, self._heap
        n, nxt, start_ms = plan.start_ms.size, 0, plan.start_ms
        while nxt < n or heap:
            if nxt < n and (not heap or start_ms[nxt] <= heap[0][0]):
                off = np.round(self.segments.offsets[int(plan.segment[nxt])] * 1000.0).astype(np.int64)
                for j, o in enumerate(off):
                    heapq.heappush(heap, (int(start_ms[nxt] + o), nxt, j))
                nxt += 1
                continue
            t, i, j = heapq.heappop(heap)
            self.started += j == 0
            yield self._event(i, j, t)

    def _event(self, i: int, j: int, t_ms: int) -> dict[str, Any]:
        k = int(self.plan.segment[i])
        doc = json.loads(self.segments.values[k][j])
        sid = self.session_id(i)
        doc["message"] = str(doc.get("message", "")).replace(self.segments.names[k], sid)
        doc["session_id"] = sid
        doc["time"] = t_ms
        return doc


class Probe:
    """Takes the measurement rows: RSS and the sizes of the stream state's bounded structures."""

    def __init__(self, sessionizer: Any, scorer: Any, plan: Plan, stream: SessionStream | None = None,
                 pipeline: Any = None, encoder: Any = None) -> None:
        self.sessionizer, self.scorer, self.plan, self.stream, self.pipeline = \
            sessionizer, scorer, plan, stream, pipeline
        self.encoder = encoder if encoder is not None or pipeline is None else pipeline.encoder
        self.rows: list[dict[str, Any]] = []

    def caps(self) -> dict[str, int | None]:
        """The cap of each measured structure (``None``: no explicit cap)."""
        sc, miner = self.scorer, self.scorer.miner
        caps: dict[str, int | None] = {
            "remembered_keys": self.sessionizer.max_closed_keys, "session_exemplars": sc.baseline.capacity,
            "markov_states": sc.markov.max_states, "markov_transitions": None,
            "miner_keys": miner.max_keys if miner is not None else None,
            "miner_doc_freq": 10 * miner.max_keys if miner is not None else None,
            "doc_freq": None, "texts": TEXTS_CAP}
        if self.pipeline is not None:
            det = self.pipeline.detector
            caps.update({"event_exemplars": det.baseline.capacity, "term_doc_freq": det.max_terms,
                         "rare_values": det.rarity.max_values * len(det.rarity.fields)})
        if self.encoder is not None:
            enc = self.encoder
            caps.update({"templates": enc.stage.miner.max_clusters, "line_cache": enc.stage.miner.cache_size,
                         "text_cache": enc.components["text"].cache_size})
            if enc.sparse is not None:
                caps.update({"word_cache": 2 * enc.sparse.word_cache_size, "terms": enc.sparse.describe_size})
        return caps

    def sizes(self) -> dict[str, int]:
        sz, sc, miner = self.sessionizer, self.scorer, self.scorer.miner
        out = {"open": len(sz), "closed": sc.seen, "remembered_keys": len(sz._segments),  # no public count
               "session_exemplars": len(sc.baseline), "markov_states": len(sc.markov.symbols),
               "markov_transitions": sum(len(c) for c in sc.markov.counts.values()),
               "miner_keys": len(miner.cumulative) if miner is not None else 0,
               "miner_doc_freq": len(miner.doc_freq) if miner is not None else 0,
               "doc_freq": len(sc.doc_freq), "texts": len(sc.texts)}
        if self.pipeline is not None:
            det = self.pipeline.detector
            out.update({"event_exemplars": len(det.baseline), "term_doc_freq": len(det.doc_freq),
                        "rare_values": sum(len(c) for c in det.rarity.counts.values())})
        if self.encoder is not None:  # the encoder's caches (private: no public sizes)
            enc = self.encoder
            out.update({"templates": len(enc.stage.miner), "line_cache": enc.stage.miner.cache_len,
                        "text_cache": enc.components["text"].cache_len})
            if enc.sparse is not None:
                out.update({"word_cache": len(enc.sparse._words) + len(enc.sparse._runs),
                            "terms": len(enc.sparse._terms)})
        return out

    def mark(self, events: int, label: str = "") -> None:
        gc.collect()
        rss, hwm = rss_mib(), peak_rss_mib()
        wm = self.sessionizer.watermark
        row: dict[str, Any] = {"events": events, "label": label, "rss_mb": round(rss, 1), "peak_mb": round(hwm, 1),
                               "open_bound": self.plan.open_bound(wm, self.sessionizer.gap_s)
                               if wm != float("-inf") else 0,
                               "pending": self.stream.pending if self.stream is not None else 0,
                               "started": self.stream.started if self.stream is not None else 0}
        row.update(self.sizes())
        self.rows.append(row)


def marked(events: Iterable[dict[str, Any]], every: int, probe: Probe) -> Iterator[dict[str, Any]]:
    """Pass ``events`` through, measuring before event ``k·every`` is handed out and at the end.

    A consumer that takes batches of a size dividing ``every`` has fully processed
    the events before a mark when it asks for the next one.
    """
    it, n = iter(events), 0
    while True:
        if n and n % every == 0:
            probe.mark(n)  # before the stream makes event n: it counts what the consumer has
        try:
            ev = next(it)
        except StopIteration:
            break
        yield ev
        n += 1
    if probe.rows and probe.rows[-1]["events"] == n:
        probe.rows[-1]["label"] = "end"
    else:
        probe.mark(n, "end")


def run_session_stage(events: Iterable[dict[str, Any]], vectorize: Vectorize, sessionizer: Any, scorer: Any,
                      batch: int = 2000) -> int:
    """The session stage alone: ``vectorize`` gives each batch's (events, vectors, template ids, texts);
    sessions that close are scored then learned (prequential), the rest at the end. Returns sessions closed."""
    closed = 0
    chunk: list[dict[str, Any]] = []

    def _one(evs: list[dict[str, Any]]) -> int:
        docs, vecs, tids, texts = vectorize(evs)
        obs = sessionizer.observe(docs, vecs, tids, texts)
        for sess in obs.closed:
            scorer.process(sess)
        return len(obs.closed)

    for ev in events:
        chunk.append(ev)
        if len(chunk) >= batch:
            closed += _one(chunk)
            chunk = []
    if chunk:
        closed += _one(chunk)
    for sess in sessionizer.flush():
        scorer.process(sess)
        closed += 1
    return closed


def verdict(rows: list[dict[str, Any]], caps: dict[str, int | None], early: float = EARLY) -> dict[str, Any]:
    """Bounded or not, from the stream's own early growth (see the module docstring)."""
    stream_rows = [r for r in rows if r["label"] != "flush"]
    first, last = stream_rows[0], stream_rows[-1]
    total = last["events"]
    mid = next((r for r in stream_rows if r["events"] >= early * total and r is not first), last)
    early_growth = mid["rss_mb"] - first["rss_mb"]
    late_growth = last["rss_mb"] - mid["rss_mb"]
    linear = max(early_growth, 0.0) * (total - mid["events"]) / max(mid["events"] - first["events"], 1)
    ratio = late_growth / linear if linear > 0 else None
    flat = late_growth <= 0.25 * linear or late_growth <= 0.05 * mid["rss_mb"]
    grew = {name: (mid[name], last[name], cap) for name, cap in caps.items()
            if name in last and last[name] > mid[name]}
    over = [name for name, cap in caps.items() if cap is not None and name in last and last[name] > cap]
    uncapped = [name for name, (_, _, cap) in grew.items() if cap is None]
    if flat and not over:
        status = "bounded"
    elif over or uncapped:
        status = "unbounded"
    else:
        status = "bounded by caps, not flat yet"
    return {"status": status, "early_mb": round(early_growth, 1), "late_mb": round(late_growth, 1),
            "linear_mb": round(linear, 1), "ratio": None if ratio is None else round(ratio, 3),
            "from_events": mid["events"], "to_events": total,
            "grew": {k: {"from": a, "to": b, "cap": c} for k, (a, b, c) in grew.items()}, "over_cap": over}


_COLUMNS = (("events", "events"), ("rss_mb", "RSS MB"), ("open", "open"), ("open_bound", "gap bound"),
            ("closed", "closed"), ("remembered_keys", "seg keys"), ("miner_keys", "miner keys"),
            ("session_exemplars", "sess exem"), ("markov_states", "markov st"), ("markov_transitions", "markov tr"),
            ("doc_freq", "doc_freq"), ("texts", "texts"), ("event_exemplars", "event exem"),
            ("rare_values", "rare vals"), ("templates", "templates"), ("line_cache", "line cache"),
            ("word_cache", "word cache"), ("pending", "gen pending"))  # the JSON has every size


def render(result: dict[str, Any]) -> str:
    """The table, the caps and the verdict as text."""
    from streams.cli.terminal import table

    rows, caps, v = result["rows"], result["caps"], result["verdict"]
    cols = [(k, h) for k, h in _COLUMNS if k in rows[0]]
    body = [[(f"{r[k]:,}" + (f" ({r['label']})" if k == "events" and r["label"] else "")) if isinstance(r[k], int)
             else f"{r[k]:,.1f}" for k, _ in cols] for r in rows]
    lines = [(f"session-stage memory: {result['events']:,} events, {result['sessions']:,} sessions, "
              f"mode {result['mode']}, {result['rate']} sessions/s of event time, gap {result['gap_s']:.0f} s"),
             f"data: {result['data']}", "", table(body, [h for _, h in cols]), "",
             "caps: " + ", ".join(f"{k} {c:,}" for k, c in caps.items() if c is not None)
             + "; no cap: " + ", ".join(k for k, c in caps.items() if c is None),
             (f"RSS growth: first {v['from_events']:,} events {v['early_mb']:+.1f} MB; "
              f"{v['from_events']:,} -> {v['to_events']:,}: {v['late_mb']:+.1f} MB vs {v['linear_mb']:.1f} MB if "
              f"linear (ratio {v['ratio']})")]
    for name, g in v["grew"].items():
        cap = f"cap {g['cap']:,}" if g["cap"] is not None else "NO CAP"
        lines.append(f"  still growing: {name} {g['from']:,} -> {g['to']:,} ({cap})")
    lines.append(f"verdict: {v['status'].upper()}")
    if result["mode"] != "replay":
        lines.append("(session stage fed by the encoder alone: no event detector, no store)")
    else:
        lines.append("(full replay path: Pipeline without a vector store, then the session stage)")
    return "\n".join(lines)


def run(data: Path, *, events: int, sessions: int, rate: float, every: int, mode: str, seed: int = 7,
        batch: int | None = None) -> dict[str, Any]:
    """Build the stream and the stage, run it with marks; returns rows, caps and the verdict."""
    from schemas.models import decode_event
    from streams.stages.factory import build_pipeline, build_sessions, settle_heap
    from streams.config.settings import Settings

    settings = Settings()
    batch = batch or settings.batch_size
    if every % batch:
        raise ValueError(f"--every ({every}) must be a multiple of the batch size ({batch})")
    pipeline = build_pipeline(settings, store=None)
    sessionizer, scorer = build_sessions(settings, pipeline.encoder.dim)
    segments = load_segments(data, sessionizer.gap_s)
    plan = plan_sessions(segments, events, sessions, rate=rate, seed=seed)
    stream = SessionStream(segments, plan)
    text = pipeline.encoder.components["text"]
    text.model.encode(["warm up"], show_progress_bar=False)  # the model loads before the first mark
    settle_heap()
    probe = Probe(sessionizer, scorer, plan, stream, pipeline if mode == "replay" else None, pipeline.encoder)
    probe.mark(0, "start")
    started = time.perf_counter()
    if mode == "replay":
        from streams.adapters import Record
        from streams.cli.replay import replay_records

        records = (Record(k + 1, json.dumps(ev, separators=(",", ":")).encode("utf-8"))
                   for k, ev in enumerate(marked(stream, every, probe)))
        with tempfile.TemporaryDirectory(prefix="secstream-sessmem-") as tmp:
            summary = replay_records(records, pipeline, Path(tmp), batch_size=batch, sessionizer=sessionizer,
                                     session_scorer=scorer)
        closed = summary.sessions
    else:
        encoder = pipeline.encoder

        def vectorize(evs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], np.ndarray, list[str], list[str]]:
            docs = [decode_event(json.dumps(ev).encode("utf-8")).to_dict() for ev in evs]
            enc = encoder.encode(docs)
            encoder.update(docs)
            return docs, enc.dense, list(enc.template_ids), list(enc.templates)

        closed = run_session_stage(marked(stream, every, probe), vectorize, sessionizer, scorer, batch)
    wall = time.perf_counter() - started
    probe.mark(events, "flush")
    caps = probe.caps()
    return {"events": events, "sessions": sessions, "rate": rate, "gap_s": sessionizer.gap_s, "mode": mode,
            "batch": batch, "closed_sessions": closed, "wall_s": round(wall, 1),
            "rows": probe.rows, "caps": caps, "verdict": verdict(probe.rows, caps)}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="secstream bench sessions-memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=_HDFS, help="HDFS parquet sample (default: the shared one)")
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the stream (default 1000000)")
    ap.add_argument("--sessions", type=int, default=100_000, help="sessions in the stream (default 100000)")
    ap.add_argument("--rate", type=float, default=2.0, help="sessions starting per second of event time (default 2)")
    ap.add_argument("--every", type=int, default=100_000, help="events between measurements (default 100000)")
    ap.add_argument("--mode", choices=("replay", "sessions"), default="replay",
                    help="replay: the full replay path (default); sessions: encoder + session stage only")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.sessions < 1 or args.events < args.sessions or args.every < 1 or args.rate <= 0:
        ap.error("need --sessions >= 1, --events >= --sessions, --every >= 1 and --rate > 0")
    if not args.data.is_file():
        print(f"error: {args.data} does not exist (the HDFS parquet sample)", file=sys.stderr)
        return 2
    try:
        result = run(args.data, events=args.events, sessions=args.sessions, rate=args.rate, every=args.every,
                     mode=args.mode, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["data"] = str(args.data)
    print(json.dumps(result) if args.json else render(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
