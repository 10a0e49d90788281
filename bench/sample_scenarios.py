"""Detection on the bundled sample stream, per injected scenario.

`python -m bench.sample_scenarios [--json]` (or `secstream bench sample`) scores the
bundled sample exactly as `secstream run` and `replay` do (the same `Pipeline`,
prequential, no labels), then joins each event's score with the scenario tag the
generator put in ``attributes.scenario`` — which the detector never reads — and
prints, per scenario: events, events that alerted, mean and max score. The
"normal" row is the false-alert side.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from typing import Any

from streams.console import table


def run(batch_size: int = 500) -> dict[str, Any]:
    """Score the bundled sample; per-scenario statistics and throughput."""
    from streams.runtime import build_pipeline
    from streams.sample import iter_sample
    from streams.settings import Settings

    values = list(iter_sample())
    scenarios = [json.loads(v).get("attributes", {}).get("scenario", "normal") for v in values]
    pipeline = build_pipeline(Settings(), store=None)
    started = time.perf_counter()
    results = []
    alerts = 0
    for i in range(0, len(values), batch_size):
        out = pipeline.process(values[i : i + batch_size])
        results.extend(out.results)
        alerts += len(out.alerts)
    seconds = time.perf_counter() - started
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"events": 0, "alerted": 0, "score_sum": 0.0,
                                                           "score_max": 0.0})
    for res, scenario in zip(results, scenarios):
        row = rows[scenario]
        row["events"] += 1
        score = getattr(res, "score", 0.0)
        row["alerted"] += int(bool(getattr(res, "alert", False)))
        row["score_sum"] += score
        row["score_max"] = max(row["score_max"], score)
    per = {name: {"events": r["events"], "alerted": r["alerted"], "mean_score": round(r["score_sum"] / r["events"], 1),
                  "max_score": round(r["score_max"], 1)} for name, r in sorted(rows.items())}
    return {"events": len(values), "alerts": alerts, "seconds": round(seconds, 2),
            "events_per_s": round(len(values) / seconds, 1), "threshold": pipeline.threshold, "scenarios": per}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="secstream bench sample", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run()
    if args.json:
        print(json.dumps(result))
        return 0
    rows = [[name, r["events"], r["alerted"], f"{100 * r['alerted'] / r['events']:.1f}%", r["mean_score"],
             r["max_score"]] for name, r in result["scenarios"].items()]
    print(table(rows, ["scenario", "events", "alerted", "alerted %", "mean score", "max score"]))
    print(f"\n{result['events']} events, {result['alerts']} alerts (threshold {result['threshold']:.0f}), "
          f"{result['events_per_s']:,.0f} events/s scoring (model warm-up included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
