"""The sessions-memory bench on a small stream: its generator (exact, chronological, re-keyed) and
the session stage's bounded state (open sessions within what the gap allows, caps respected).
Counts and sizes only. Uses ../shared/data/hdfs (skipped when absent)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.session_memory import (
    Probe,
    SessionStream,
    load_segments,
    marked,
    plan_sessions,
    run_session_stage,
    verdict,
)
from streams.stages.factory import build_sessions
from streams.config.settings import Settings

PARQUET = Path(__file__).resolve().parents[3] / "shared" / "data" / "hdfs" / "hdfs_events_2percent.parquet"
needs_data = pytest.mark.skipif(not PARQUET.is_file(), reason="needs ../shared/data/hdfs (sample data not in this checkout)")
DIM = 16
EVENTS, SESSIONS, RATE = 20_000, 2_000, 0.2  # 10,000 s of event time: several gaps long


@pytest.fixture(scope="module")
def segments() -> Any:
    return load_segments(PARQUET, 1800.0)


class _TemplateVectors:
    """One seeded unit vector per template (digits masked): the session stage needs no model."""

    def __init__(self) -> None:
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, evs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], np.ndarray, list[str], list[str]]:
        texts = [re.sub(r"\d+", "<n>", str(ev["message"])) for ev in evs]
        tids = [hashlib.blake2b(t.encode(), digest_size=8).hexdigest() for t in texts]
        for tid in tids:
            if tid not in self.cache:
                v = np.random.default_rng(int(tid, 16)).standard_normal(DIM)
                self.cache[tid] = (v / np.linalg.norm(v)).astype(np.float32)
        return evs, np.stack([self.cache[t] for t in tids]), tids, texts


@needs_data
def test_stream_is_exact_chronological_and_rekeyed(segments: Any) -> None:
    plan = plan_sessions(segments, EVENTS, SESSIONS, rate=RATE, seed=3)
    assert plan.length.size == SESSIONS and int(plan.length.sum()) == EVENTS
    stream = SessionStream(segments, plan)
    times, ids = [], set()
    for ev in stream:
        times.append(ev["time"])
        ids.add(ev["session_id"])
        assert set(re.findall(r"blk_-?\d+", ev["message"])) <= {ev["session_id"]}
    assert len(times) == EVENTS and times == sorted(times)
    assert len(ids) == SESSIONS and stream.started == SESSIONS and stream.pending == 0


@needs_data
def test_session_state_stays_within_the_gap_and_the_caps(segments: Any) -> None:
    plan = plan_sessions(segments, EVENTS, SESSIONS, rate=RATE, seed=3)
    stream = SessionStream(segments, plan)
    sessionizer, scorer = build_sessions(Settings(), DIM)
    # the defaults' caps (100k keys, 20k exemplars) are far above this stream: make them bind
    sessionizer.max_closed_keys = 500
    assert scorer.miner is not None
    scorer.miner.max_keys = 500
    scorer.baseline.capacity = 100
    scorer.markov.max_states = 10
    probe = Probe(sessionizer, scorer, plan, stream)
    closed = run_session_stage(marked(stream, 2_000, probe), _TemplateVectors(), sessionizer, scorer, batch=500)
    assert closed == SESSIONS and scorer.seen == SESSIONS
    rows = probe.rows
    assert [r["events"] for r in rows] == list(range(2_000, EVENTS + 1, 2_000))
    for r in rows:
        assert r["open"] <= r["open_bound"] < SESSIONS // 3  # the gap, not the stream, sizes the open set
        assert r["open"] + r["closed"] == r["started"]  # one sessionizer session per synthetic session
        assert r["remembered_keys"] <= 500 and r["miner_keys"] <= 500
        assert r["session_exemplars"] <= 100 and r["markov_states"] <= 10
        assert r["texts"] <= r["doc_freq"] < 200  # one per template, not per session
    assert rows[-1]["remembered_keys"] == 500 and rows[-1]["miner_keys"] == 500  # the caps did bind
    assert max(r["open"] for r in rows) > 100  # sessions do overlap


def _row(events: int, rss: float, **sizes: int) -> dict[str, Any]:
    return {"events": events, "label": "", "rss_mb": rss, **sizes}


def test_verdict_from_the_runs_own_growth() -> None:
    caps = {"keys": 100, "free": None}
    flat = [_row(0, 500, keys=0, free=1), _row(200, 600, keys=20, free=5), _row(1000, 610, keys=100, free=5)]
    assert verdict(flat, caps)["status"] == "bounded"
    capped = [_row(0, 500, keys=0, free=1), _row(200, 520, keys=20, free=5), _row(1000, 600, keys=100, free=5)]
    v = verdict(capped, caps)
    assert v["status"] == "bounded by caps, not flat yet" and v["ratio"] == 1.0 and list(v["grew"]) == ["keys"]
    leak = [_row(0, 500, keys=0, free=1), _row(200, 520, keys=20, free=50), _row(1000, 600, keys=100, free=250)]
    assert verdict(leak, caps)["status"] == "unbounded"
