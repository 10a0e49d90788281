"""HDFS session evaluation: chronological, prequential replay, joined with the block labels.

    python -m bench.eval_hdfs [--data DIR] [--limit-sessions N] [--gap S] [--sequence on|off]
                              [--threshold-mode fixed|adaptive] [--alert-rate R] [--plot PATH] [--json]

Replays ``hdfs/hdfs_events_2percent.parquet`` through :func:`streams.cli.replay.replay_records`
with a fresh pipeline (no store), sorted by event time (stable) when it is not
already, and joins ``sessions.jsonl`` with ``hdfs_seqs_2percent.parquet``'s
``anomaly``. A block that the inactivity gap split into several sessions
(``blk_x``, ``blk_x#2`` …) scores the max of its sessions. No label reaches the
model: labels are read after the replay. Prints ROC-AUC, PR-AUC, P/R/F1 at the
system's own decisions (the session threshold of ``SECSTREAM_ALERT_THRESHOLD_MODE``,
per session as decided at scoring time: the floor ``Settings().alert_threshold`` when
fixed, learned from earlier sessions' scores when adaptive), P/R/F1 at the floor, and
the best F1 over all thresholds (reference only), plus throughput. Writes the
PR curve as PNG (with the system's operating point) and as CSV points next to it
(``--plot PATH``, default ``.secstream/bench/eval_hdfs_pr.png``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detection.ranking_metrics import pr_auc, pr_curve, prf, roc_auc
from detection.sessions import Sessionizer
from detection.times import event_time
from streams.adapters import Record, read_records

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"



def load_records(events: Path, limit_sessions: int | None) -> tuple[list[Record], bool]:
    """Records in chronological order (stable sort if needed); optionally only the first N sessions."""
    recs = [r for r in read_records(events, "parquet")]
    docs = [json.loads(r.value) if r.value is not None else None for r in recs]
    if limit_sessions is not None:
        keep: set[str] = set()
        sel = []
        for r, d in zip(recs, docs):
            sid = d.get("session_id") if d else None
            if sid is not None and sid not in keep and len(keep) < limit_sessions:
                keep.add(sid)
            if sid in keep:
                sel.append((r, d))
        recs, docs = [r for r, _ in sel], [d for _, d in sel]
    t = np.array([event_time(d["time"]) if d else -np.inf for d in docs])
    ordered = bool(np.all(np.diff(t) >= 0)) if t.size else True
    if not ordered:
        idx = np.argsort(t, kind="stable")
        recs = [recs[i] for i in idx]
    return recs, ordered


def evaluate(data: Path, *, limit_sessions: int | None = None, gap_s: float = 1800.0,
             plot: Path | None = None, batch_size: int = 2000, sequence: bool | None = None,
             threshold_mode: str | None = None, alert_rate: float | None = None) -> dict[str, Any]:
    """Run the replay and compute the metrics (see the module docstring)."""
    import pyarrow.parquet as pq

    from streams.cli.replay import replay_records
    from streams.stages.factory import build_pipeline, build_sessions, build_threshold
    from streams.stages.session_stage import SessionStage
    from streams.config.settings import Settings

    overrides = {k: v for k, v in (("alert_threshold_mode", threshold_mode), ("alert_rate", alert_rate))
                 if v is not None}
    settings = Settings(**overrides)
    recs, was_ordered = load_records(data / "hdfs" / "hdfs_events_2percent.parquet", limit_sessions)
    pipeline = build_pipeline(settings, store=None)
    with tempfile.TemporaryDirectory(prefix="secstream-eval-") as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        _, scorer = build_sessions(settings, pipeline.encoder.dim, sequence=sequence)
        sz = Sessionizer(gap_s=gap_s)
        stage = SessionStage(scorer, lambda: sz, threshold=build_threshold(settings),
                             model_version=pipeline.model_version)
        summary = replay_records(iter(recs), pipeline, out, batch_size=batch_size, sessions=stage)
        wall = time.perf_counter() - t0
        sessions = [json.loads(x) for x in (out / "sessions.jsonl").read_text(encoding="utf-8").splitlines()]
        kinds: dict[str, int] = {}
        crossed: list[float] = []  # the thresholds the session alerts reached, as decided at scoring time
        for x in (out / "alerts.jsonl").read_text(encoding="utf-8").splitlines():
            a = json.loads(x)
            kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
            if a["kind"] == "session_anomaly" and a.get("threshold") is not None:
                crossed.append(float(a["threshold"]))
    labels = pq.read_table(data / "hdfs" / "hdfs_seqs_2percent.parquet", columns=["seq_id", "anomaly"]).to_pydict()
    label = dict(zip(labels["seq_id"], labels["anomaly"]))
    block_score: dict[str, float] = {}
    block_alert: dict[str, bool] = {}
    block_floor: dict[str, bool] = {}  # alerted at the floor (sessions.jsonl is in closing order: warm-up first)
    floor = settings.alert_threshold
    for i, s in enumerate(sessions):
        b = str(s["session_id"]).split("#", 1)[0]
        block_score[b] = max(block_score.get(b, 0.0), float(s["score"]))
        block_alert[b] = block_alert.get(b, False) or bool(s["alert"])
        block_floor[b] = block_floor.get(b, False) or (i >= scorer.warmup and float(s["score"]) >= floor)
    blocks = [b for b in block_score if b in label]
    y = np.array([bool(label[b]) for b in blocks])
    sc = np.array([block_score[b] for b in blocks])
    own = np.array([block_alert[b] for b in blocks])
    prec, rec, thr = pr_curve(y, sc)
    f1s = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    best = int(np.argmax(f1s)) if f1s.size else 0
    p, r, f = prf(y, own)
    pf, rf, ff = prf(y, np.array([block_floor[b] for b in blocks]))
    result = {
        "events": summary.events, "sessions": summary.sessions, "blocks": len(blocks),
        "anomalous_blocks": int(y.sum()), "input_was_chronological": was_ordered, "gap_s": gap_s,
        "threshold": floor, "threshold_mode": settings.alert_threshold_mode,
        "alert_rate": settings.alert_rate if settings.alert_threshold_mode == "adaptive" else None,
        "session_threshold_final": round(stage.threshold, 2),
        "session_threshold_crossed": [min(crossed), max(crossed)] if crossed else None,
        "roc_auc": round(roc_auc(y, sc), 4), "pr_auc": round(pr_auc(y, sc), 4),
        "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
        "precision_at_floor": round(pf, 4), "recall_at_floor": round(rf, 4), "f1_at_floor": round(ff, 4),
        "best_f1": round(float(f1s[best]), 4) if f1s.size else 0.0,
        "best_f1_threshold": round(float(thr[best]), 3) if f1s.size else None,
        "sequence_model": sequence, "alerts": kinds, "baseline": _baseline_stats(pipeline, scorer),
        "wall_s": round(wall, 1),
        "events_per_s": round(summary.events / wall, 1) if wall else 0.0,
        "sessions_per_s": round(summary.sessions / wall, 1) if wall else 0.0,
    }
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        csv = plot.with_suffix(".csv")
        lines = ["threshold,precision,recall"] + [f"{t:.3f},{a:.5f},{b:.5f}" for t, a, b in zip(thr, prec, rec)]
        csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result["pr_curve_csv"] = str(csv)
        from bench.plots import pr_curve_png

        png = pr_curve_png(plot.with_suffix(".png"), prec, rec, operating_point=(p, r),
                           baseline=float(y.mean()) if y.size else None,
                           label=f"session score (PR-AUC {result['pr_auc']:.3f})",
                           title=f"HDFS sample, {len(blocks):,} blocks ({int(y.sum())} anomalous), prequential")
        result["pr_curve_png"] = str(png)
    return result


def _baseline_stats(pipeline: Any, scorer: Any) -> dict[str, Any]:
    """Exemplars, pending (quarantined) exemplars, rows held back and promotions, events and sessions."""
    out: dict[str, Any] = {"admission_level": pipeline.detector.admit_below}
    for name, base in (("events", pipeline.detector.baseline), ("sessions", scorer.baseline)):
        out[name] = {"exemplars": len(base), "pending": base.pending(), "held": base.held,
                     "promoted": base.promoted, "expired": base.expired}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="eval-hdfs", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding hdfs/*.parquet")
    ap.add_argument("--limit-sessions", type=int, default=None, help="only the first N blocks (quick run)")
    ap.add_argument("--gap", type=float, default=1800.0, help="session inactivity gap, seconds of event time")
    ap.add_argument("--plot", type=Path, default=Path(".secstream/bench/eval_hdfs_pr.png"),
                    help="PR curve PNG (and CSV points beside it)")
    ap.add_argument("--sequence", choices=("on", "off"), default=None,
                    help="session sequence model (GRU) on or off; default: the scorer's default (off)")
    ap.add_argument("--threshold-mode", choices=("fixed", "adaptive"), default=None,
                    help="alert threshold mode; default: SECSTREAM_ALERT_THRESHOLD_MODE (fixed)")
    ap.add_argument("--alert-rate", type=float, default=None,
                    help="adaptive mode's target alert rate per score kind; default: SECSTREAM_ALERT_RATE (0.01)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if not (args.data / "hdfs" / "hdfs_events_2percent.parquet").exists():
        print(f"HDFS sample not found under {args.data}/hdfs", file=sys.stderr)
        return 2
    res = evaluate(args.data, limit_sessions=args.limit_sessions, gap_s=args.gap, plot=args.plot,
                   sequence=None if args.sequence is None else args.sequence == "on",
                   threshold_mode=args.threshold_mode, alert_rate=args.alert_rate)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>24}  {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
