"""streams.tuning.weights: encode-once recombination is exact, the grid ranks the component
that carries the signal first, labels load from parquet/JSON lines, and a tiny real-data run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from streams.tuning import weights as tw
from detection.session_score import SessionScorer
from detection.sessions import Sessionizer
from encoders.categorical import CategoricalEncoder
from encoders.hybrid import HybridEncoder
from encoders.network import NetworkEncoder
from encoders.numerical import NumericalEncoder

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
NAMES = ("categorical", "numerical", "network")


def _encoder(weights: dict[str, float] | None = None) -> HybridEncoder:
    comps = {"categorical": CategoricalEncoder(seed=7), "numerical": NumericalEncoder(), "network": NetworkEncoder()}
    return HybridEncoder(comps, weights or {n: 1.0 for n in NAMES})


def _synthetic(n_sessions: int = 240, seed: int = 3) -> tuple[list[dict], dict[str, bool]]:
    """Normal sessions: noisy categorical and numerical, internal network on 443.
    Anomalous (every 8th after the first 40): same noise, but a public source to port 4444."""
    rng = np.random.default_rng(seed)
    events, labels, t = [], {}, 0.0
    for s in range(n_sessions):
        sid = f"s{s}"
        bad = s >= 40 and s % 8 == 0
        labels[sid] = bad
        for e in range(int(rng.integers(3, 7))):
            t += 1.0
            ev = {"time": int(t * 1000), "message": f"event {e}", "event_id": f"{sid}-{e}", "session_id": sid,
                  "event_type": str(rng.choice(["login", "read", "write", "list", "delete"])),
                  "severity": str(rng.choice(["informational", "low", "medium"])), "source": "app",
                  "bytes_in": int(rng.lognormal(6, 2)), "duration_ms": int(rng.lognormal(3, 1.5))}
            if bad:
                ev.update(src_ip=f"203.0.113.{rng.integers(1, 250)}", dst_ip="10.0.0.5", dst_port=4444)
            else:
                ev.update(src_ip=f"10.0.{rng.integers(0, 3)}.{rng.integers(1, 250)}", dst_ip="10.0.0.5", dst_port=443)
            if e % 3 == 2:  # some events without any address: a second presence pattern
                for k in ("src_ip", "dst_ip", "dst_port"):
                    ev.pop(k)
            events.append(ev)
    return events, labels


def test_grids() -> None:
    grid = tw.simplex_grid(4, 0.1)
    assert len(grid) == 286 and all(abs(sum(w) - 1) < 1e-9 and min(w) >= 0 for w in grid)
    fine = tw.refine_grid((0.5, 0.3, 0.2), 0.025)
    assert (0.5, 0.3, 0.2) in fine and all(abs(sum(w) - 1) < 1e-9 and min(w) >= 0 for w in fine)
    assert all(abs(a - b) <= 0.05 + 1e-9 for w in fine for a, b in zip(w, (0.5, 0.3, 0.2)))


def test_recombined_session_vectors_equal_the_real_hybrid() -> None:
    events, _ = _synthetic(60)
    prep = tw.prepare(events, _encoder(), Sessionizer(gap_s=1800), batch_size=50)
    assert len(prep.patterns) >= 2  # with and without network
    weights = {"categorical": 0.5, "numerical": 0.2, "network": 0.3}
    real_enc, sz, closed = _encoder(weights), Sessionizer(gap_s=1800), []
    for i in range(0, len(events), 50):
        batch = events[i:i + 50]
        hb = real_enc.encode(batch)
        closed += sz.observe(batch, hb.dense, hb.template_ids).closed
        real_enc.update(batch)
    closed += sz.flush()
    assert [s.session_id for s in closed] == [s.session_id for s in prep.sessions]
    got = tw.session_vectors(prep, tw.weight_vector(prep, weights))
    want = np.stack([s.vec for s in closed])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_tuner_prefers_the_component_that_carries_the_signal() -> None:
    events, labels = _synthetic()
    prep = tw.prepare(events, _encoder(), Sessionizer(gap_s=1800), batch_size=100)

    def scorer(dim: int) -> SessionScorer:
        return SessionScorer(dim, k=10, warmup=10)

    res = tw.tune(prep, labels, step=0.25, refine_step=0.125, proxy_sessions=10_000, k=10, top=5, faithful=2,
                  current={"categorical": 0.4, "numerical": 0.4, "network": 0.2}, make_scorer=scorer)
    assert res["best"]["weights"]["network"] >= 0.5
    table = {tuple(r["weights"][n] for n in NAMES): r for r in
             (tw.tune(prep, labels, step=0.25, refine_step=0.25, proxy_sessions=10_000, k=10, top=100,
                      faithful=0)["top"])}
    with_net = [r["roc_auc"] for w, r in table.items() if w[2] >= 0.75]
    without = [r["roc_auc"] for w, r in table.items() if w[2] == 0.0]
    assert min(with_net) > max(without) + 0.3 and min(with_net) > 0.8
    rows = res["faithful"]["rows"]
    assert rows[-1]["current"] and rows[0]["roc_auc"] > rows[-1]["roc_auc"] - 1e-9
    assert "warning" in res and "optimistic" in res["warning"]
    held = tw.tune(prep, labels, step=0.25, refine_step=0.125, k=10, holdout=0.5, faithful=1, make_scorer=scorer)
    assert held["tune_sessions"] == len(prep.sessions) // 2 and "holdout" in held["faithful"]["evaluated_on"]
    assert held["faithful"]["rows"][0]["sessions"] < len(labels)


def test_main_on_jsonl_with_jsonl_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events, labels = _synthetic(120)
    data, lab = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    stamp = "2024-01-01T00:{:02d}:{:02d}Z"
    data.write_text("".join(json.dumps({**e, "time": stamp.format(*divmod(e["time"] // 1000 % 3600, 60))}) + "\n"
                            for e in events))
    lab.write_text("".join(json.dumps({"session_id": k, "anomaly": v}) + "\n" for k, v in labels.items()))
    assert tw.read_labels(lab) == labels
    rc = tw.main([str(data), "--labels", str(lab), "--format", "jsonl", "--components", "categorical,network",
                  "--step", "0.5", "--faithful", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["components"] == ["categorical", "network"] and out["top"] and out["faithful"]["rows"][-1]["current"]
    assert tw.main([str(tmp_path / "missing.jsonl"), "--labels", str(lab)]) == 2


@pytest.mark.skipif(not (DATA / "hdfs" / "hdfs_events_2percent.parquet").exists(),
                    reason=f"HDFS sample not found under {DATA}/hdfs")
def test_tiny_run_on_hdfs() -> None:
    from schemas.models import decode_event
    from streams.adapters import read_records

    labels = tw.read_labels(DATA / "hdfs" / "hdfs_seqs_2percent.parquet")
    recs = itertools.islice(read_records(DATA / "hdfs" / "hdfs_events_2percent.parquet", "parquet"), 3000)
    docs = [decode_event(r.value).to_dict() for r in recs if r.value is not None]
    prep = tw.prepare(docs, _encoder(), Sessionizer(gap_s=1800))
    assert prep.ever_present == ["categorical", "network"]  # HDFS has no byte counts
    res = tw.tune(prep, labels, step=0.5, refine_step=0.25, proxy_sessions=300, k=50, faithful=1,
                  current={"categorical": 0.5, "numerical": 0.2, "network": 0.3},
                  make_scorer=lambda dim: SessionScorer(dim, k=50, warmup=50))
    assert res["no_effect"] == ["numerical"] and res["labelled_keys"] > 0
    assert 0.0 <= res["best"]["roc_auc"] <= 1.0 and len(res["faithful"]["rows"]) == 2
