"""Benchmark: the raw text model vs the full hybrid encoder pipeline, same events.

``secstream bench encode [--data PATH] [--format auto] [--limit N] [--json]``

Events are read and decoded to dicts before any timing. Then, in one process:

* raw model: each message embedded by the sentence-transformers model (the
  first ``--raw-sample`` messages, 1,000 by default; events/s extrapolates);
* pipeline: ``build_default_encoder().encode`` + ``.update`` in batches of
  ``--batch`` (4,096) over all events: masking, template mining, cached
  template embeddings, parameter hashing, categorical, numerical, network and
  sparse terms.

Reports events/s of both, their ratio, the template count, the text cache hit
rate and the peak resident memory (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.memory import peak_rss_mib

__all__ = ["default_data", "load_events", "main", "run"]

_HDFS = Path(__file__).resolve().parents[2] / "shared" / "data" / "hdfs" / "hdfs_events_2percent.parquet"


def default_data() -> Path | None:
    """The HDFS parquet sample when present, else ``None`` (the bundled sample)."""
    return _HDFS if _HDFS.is_file() else None


def load_events(path: Path | None, fmt: str = "auto", limit: int = 100_000) -> list[dict[str, Any]]:
    """Up to ``limit`` decoded events (dicts) of ``path``; ``None`` = the bundled sample."""
    from schemas.models import InvalidEvent, decode_event

    if path is None:
        from streams.sample import iter_sample

        values = iter_sample()
    else:
        from streams.adapters import read_records

        values = (rec.value for rec in read_records(path, fmt) if rec.value is not None)
    events: list[dict[str, Any]] = []
    for raw in values:
        try:
            events.append(decode_event(raw).to_dict())
        except InvalidEvent:
            continue
        if len(events) >= limit:
            break
    return events


def run(events: list[dict[str, Any]], raw_sample: int = 1000, batch: int = 4096,
        model_path: str | None = None) -> dict[str, Any]:
    """Time the raw model and the pipeline on ``events``; returns the results dict."""
    from encoders.hybrid import build_default_encoder

    encoder = build_default_encoder(model_path=model_path)
    text = encoder.components["text"]
    model = text.model  # load outside the timings
    model.encode(["warm up"], show_progress_bar=False)
    messages = [str(e.get("message") or "") for e in events[:raw_sample]]
    t0 = time.perf_counter()
    for i in range(0, len(messages), 64):
        model.encode(messages[i : i + 64], batch_size=64, show_progress_bar=False)
    raw_s = time.perf_counter() - t0
    raw_eps = len(messages) / raw_s if raw_s > 0 else 0.0

    t0 = time.perf_counter()
    encode_s = update_s = 0.0
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        t1 = time.perf_counter()
        encoder.encode(chunk)
        t2 = time.perf_counter()
        encoder.update(chunk)
        encode_s += t2 - t1
        update_s += time.perf_counter() - t2
    pipe_s = time.perf_counter() - t0
    pipe_eps = len(events) / pipe_s if pipe_s > 0 else 0.0
    return {
        "events": len(events),
        "raw_model_events": len(messages),
        "raw_model_events_per_s": round(raw_eps, 1),
        "pipeline_events_per_s": round(pipe_eps, 1),
        "ratio": round(pipe_eps / raw_eps, 1) if raw_eps else None,
        "pipeline_seconds": round(pipe_s, 3),
        "encode_seconds": round(encode_s, 3),
        "update_seconds": round(update_s, 3),
        "templates": len(encoder.stage.miner),
        "template_embeddings": text.cache_len,
        "model_calls_texts": text.cache_misses,
        "cache_hit_rate": round(text.hit_rate, 5),
        "rss_mb": round(peak_rss_mib(), 1),
        "batch": batch,
    }


def _table(result: dict[str, Any], data: str) -> str:
    rows = [
        ("data", data),
        ("events", f"{result['events']:,}"),
        (f"raw model (first {result['raw_model_events']:,} messages)", f"{result['raw_model_events_per_s']:,.0f} events/s"),
        (f"hybrid pipeline (encode+update, batches of {result['batch']:,})",
         f"{result['pipeline_events_per_s']:,.0f} events/s"),
        ("ratio pipeline / raw model", f"{result['ratio']}x"),
        ("templates mined", f"{result['templates']:,}"),
        ("template embeddings computed", f"{result['model_calls_texts']:,}"),
        ("text cache hit rate", f"{result['cache_hit_rate']:.2%}"),
        ("peak RSS", f"{result['rss_mb']:,.0f} MB"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="secstream bench encode", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="input file (default: the HDFS parquet sample if present, else the bundled sample)")
    ap.add_argument("--format", default="auto", help="input format (default: auto)")
    ap.add_argument("--limit", type=int, default=100_000, help="most events (default 100000)")
    ap.add_argument("--raw-sample", type=int, default=1000, help="messages timed with the raw model (default 1000)")
    ap.add_argument("--batch", type=int, default=4096, help="pipeline batch size (default 4096)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.limit < 1 or args.raw_sample < 1 or args.batch < 1:
        ap.error("--limit, --raw-sample and --batch must be >= 1")
    path = args.data if args.data is not None else default_data()
    if path is not None and not path.exists():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    events = load_events(path, args.format, args.limit)
    if not events:
        print("error: no readable events", file=sys.stderr)
        return 1
    result = run(events, raw_sample=args.raw_sample, batch=args.batch)
    label = str(path) if path is not None else "bundled sample"
    result["data"] = label
    print(json.dumps(result) if args.json else _table(result, label))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
